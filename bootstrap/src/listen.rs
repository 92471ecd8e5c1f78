//! Serving the router on the bound listener with the connection settings of the flags: raises
//! the open-file limit, derives the connection cap from it, and runs [`stockade_http::serve`]
//! (ADR 0019).

use crate::config::ServeArgs;
use axum::Router;
use rlimit::Resource;
use std::future::Future;
use std::time::Duration;
use stockade_http::ServeOptions;
use tokio::net::TcpListener;

/// File descriptors kept back from client connections for everything else the process opens:
/// the Postgres pools (counted from their flags on top of this), Redis connections, the
/// runtime's own descriptors, logs and the odd file.
pub const RESERVED_FDS: u64 = 128;

/// The smallest connection cap derived from the open-file limit.
const MIN_CONNECTIONS: u64 = 16;

/// The largest: a host whose open-file limit is in the millions still gets a cap that means
/// something (`--max-connections` sets a larger one).
const MAX_DERIVED_CONNECTIONS: u64 = 65_536;

/// Serves until `shutdown` completes, then drains (see [`stockade_http::serve`]); `files` is
/// the open-file limit [`raise_open_file_limit`] left in force.
///
/// # Errors
/// What [`stockade_http::serve`] returns.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    args: &ServeArgs,
    files: Option<u64>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let options = options(args, files);
    tracing::info!(
        open_files = ?files,
        max_connections = options.max_connections,
        header_timeout_s = args.http_header_timeout,
        idle_timeout_s = args.http_idle_timeout,
        "connection limits"
    );
    stockade_http::serve(listener, router, options, shutdown).await
}

/// The serve loop's settings: the flags, and the connection cap derived from `files` (the
/// open-file limit) when `--max-connections` is not given.
pub fn options(args: &ServeArgs, files: Option<u64>) -> ServeOptions {
    let max_connections = match (args.max_connections, files) {
        (Some(n), _) => n,
        (None, Some(files)) => default_max_connections(files, args),
        (None, None) => ServeOptions::default().max_connections as u64,
    };
    ServeOptions {
        header_timeout: Duration::from_secs(args.http_header_timeout),
        idle_timeout: Duration::from_secs(args.http_idle_timeout),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
    }
}

/// The open-file limit less [`RESERVED_FDS`] and both Postgres pools, between
/// [`MIN_CONNECTIONS`] and [`MAX_DERIVED_CONNECTIONS`].
pub fn default_max_connections(files: u64, args: &ServeArgs) -> u64 {
    let reserved =
        RESERVED_FDS + u64::from(args.db_max_connections) + u64::from(args.lock_max_connections);
    files
        .saturating_sub(reserved)
        .clamp(MIN_CONNECTIONS, MAX_DERIVED_CONNECTIONS)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (an unlimited hard limit counts as the
/// kernel's `fs.nr_open`) and returns the soft limit in force; `None` when it cannot be read.
/// Called first thing, before the pools open their connections.
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = match rlimit::getrlimit(Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    let target = if hard == rlimit::INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1_048_576)
    } else {
        hard
    };
    if soft >= target {
        return Some(soft);
    }
    match rlimit::setrlimit(Resource::NOFILE, target, hard) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["stockade", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Serve(args)) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_cap_is_the_open_file_limit_less_the_pools_and_a_reserve() {
        let a = args(&["--db-max-connections", "10", "--lock-max-connections", "20"]);
        assert_eq!(default_max_connections(1_024, &a), 1_024 - 128 - 30);
        assert_eq!(default_max_connections(100, &a), 16);
        assert_eq!(default_max_connections(1_048_576, &a), 65_536);
        assert_eq!(options(&a, Some(4_096)).max_connections, 4_096 - 158);
        let given = args(&["--max-connections", "20"]);
        assert_eq!(options(&given, Some(4_096)).max_connections, 20);
    }

    #[test]
    fn the_time_outs_come_from_the_flags() {
        let a = args(&["--http-header-timeout", "3", "--http-idle-timeout", "7"]);
        let o = options(&a, None);
        assert_eq!(o.header_timeout, Duration::from_secs(3));
        assert_eq!(o.idle_timeout, Duration::from_secs(7));
        assert!(Cli::try_parse_from(["stockade", "serve", "--http-header-timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["stockade", "serve", "--max-connections", "0"]).is_err());
    }
}
