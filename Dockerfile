# syntax=docker/dockerfile:1
# The `stockade` binary in a small image. Build: `docker build -t stockade .`
# Run (demo profile, in memory): `docker run --rm -p 8080:8080 stockade`
# Production: see compose.yaml and docs/operations.md ("Deploying").

FROM rust:1-bookworm AS build
WORKDIR /src
# The SQL statements are checked against the query data in .sqlx/ (SQLX_OFFLINE, set in
# .cargo/config.toml): building needs no database.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p stockade \
 && install -m 0755 target/release/stockade /usr/local/bin/stockade

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 stockade \
 && useradd --system --uid 10001 --gid stockade --home-dir /nonexistent --shell /usr/sbin/nologin stockade
COPY --from=build /usr/local/bin/stockade /usr/local/bin/stockade
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/stockade/
USER stockade:stockade
ENV STOCKADE_LISTEN=0.0.0.0:8080 \
    STOCKADE_LOG_FORMAT=json
EXPOSE 8080
# tini forwards SIGTERM, so `docker stop` drains in-flight requests before the process exits.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/stockade"]
CMD ["serve"]
