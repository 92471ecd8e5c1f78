#!/usr/bin/env python3
"""The capacity model of docs/scaling.md: what 1x, 10x and 100x the largest loads measured here
would need, from the costs measured on this machine. Prints Markdown. Standard library only.

Every input is a figure of docs/benchmarks.md or of the cluster run in
bench/notes/2026-12-cluster.md (named next to it); change them there first, then here, and paste
the output into docs/scaling.md. The model is arithmetic, not a simulation: it multiplies the
CPU each request costs each tier, adds the headroom below, and names what no number of cores
fixes (one key, one slot, one primary).
"""

import math

# ---- measured on this machine (2 vCPUs, client and servers sharing them) ----
# FLASH issue over HTTP, production profile, one Redis with AOF: median req/s at 256
# connections, the highest FLASH rate measured here.
FLASH_RPS = 67_744  # bench/notes/2026-12-cluster.md, "one Redis", 256 connections
# CPU per FLASH request (µs), read from /proc around the same runs (medians).
FLASH_SERVICE_US = 14.2  # the service process (HTTP, JWT, policy cache, gate client)
FLASH_REDIS_US = 4.0  # the Redis server (EVALSHA gate_reserve, sent in batches)
# One Redis core's ceiling for one coupon's reserves, sent in batches as the gate sends them
# (redis-benchmark, one command per round trip, reaches 80,000-90,000: docs/benchmarks.md).
GATE_CEILING_RPS = 1e6 / FLASH_REDIS_US
# Orders and payments on Postgres (order-pay, 32 clients, median): transactions/s, and the
# Postgres / service CPU per transaction (µs).
ORDER_PAY_TPS = 1_393  # docs/benchmarks.md, "Orders and payments on Postgres next to pgbench"
PG_US_PER_TX = 1_045
SERVICE_US_PER_TX = 253
# One hot product (stock-rush, 6,000 buyers for 5,000, production, 256 connections, median).
HOT_PRODUCT_RPS = 11_724  # docs/benchmarks.md, "Hot items"
# One product's orders before combined turns: one lock + unit + commit per order (ADR 0012);
# a turn now takes up to 128 orders (Settings::combine_max_batch).
SERIAL_TURNS_PER_SEC = 810
TURN_MAX = 128

# ---- assumptions (not measured here) ----
UTILISATION = 0.6  # run every tier at 60% of its cores at the peak
PG_PRIMARY_CORES = 32  # the largest primary assumed to scale about linearly in cores
SERVICE_CORES_PER_INSTANCE = 8


def cores(rate, us):
    return rate * us / 1e6 / UTILISATION


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |")


def main():
    print("| | 1x (largest test here) | 10x | 100x |")
    print("|---|---|---|---|")
    scales = [1, 10, 100]
    flash = [FLASH_RPS * k for k in scales]
    tx = [ORDER_PAY_TPS * k for k in scales]
    hot = [HOT_PRODUCT_RPS * k for k in scales]
    row("FLASH issue attempts, req/s (one drop)", *(f"{x:,.0f}" for x in flash))
    row("orders + payments, transactions/s", *(f"{x:,.0f}" for x in tx))
    row("orders on one hot product, req/s", *(f"{x:,.0f}" for x in hot))
    svc = [cores(f, FLASH_SERVICE_US) + cores(t, SERVICE_US_PER_TX) for f, t in zip(flash, tx)]
    row("service cores (FLASH + orders)", *(f"{c:,.1f}" for c in svc))
    row(f"service instances of {SERVICE_CORES_PER_INSTANCE} cores",
        *(max(1, math.ceil(c / SERVICE_CORES_PER_INSTANCE)) for c in svc))
    redis = [cores(f, FLASH_REDIS_US) for f in flash]
    row("Redis cores for the gate (attempts spread over coupons)", *(f"{c:,.1f}" for c in redis))
    one = [f / GATE_CEILING_RPS for f in flash]
    row(f"one coupon's master: load / one core ({GATE_CEILING_RPS:,.0f} reserves/s), all attempts on one coupon",
        *(f"{x:,.1f}x{' **over**' if x > UTILISATION else ''}" for x in one))
    pg = [cores(t, PG_US_PER_TX) for t in tx]
    row("Postgres cores for orders + payments", *(f"{c:,.1f}" for c in pg))
    row(f"Postgres primaries of {PG_PRIMARY_CORES} cores (orders partitioned by user past one)",
        *(max(1, math.ceil(c / PG_PRIMARY_CORES)) for c in pg))
    cap = SERIAL_TURNS_PER_SEC * TURN_MAX
    row(f"one product's orders / its turn ceiling ({SERIAL_TURNS_PER_SEC} turns/s x {TURN_MAX})",
        *(f"{h / cap:.2f}{' **over**' if h > cap else ''}" for h in hot))


if __name__ == "__main__":
    main()
