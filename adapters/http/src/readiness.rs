//! Readiness (docs/decisions/0020): whether this process serves business requests yet, how
//! long `/ready` may wait for the backends, and what `/ready` reports besides "they answer".
//!
//! A process listens before its start-up work (the reconciliation of the FLASH gates) is done:
//! until [`Readiness::mark_ready`], `/ready` answers 503 with the reason and every `/api/`
//! request answers 503 `BACKEND_UNAVAILABLE`, while `/health`, `/metrics` and the documents
//! answer as usual.

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long `/ready` waits for the backends (and each [`ReadyCheck`]) unless told otherwise:
/// well under a second, and independent of the pools' own acquire time-outs, so that a
/// load balancer hears "not ready" at once during an outage.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Something `/ready` reports on besides the backends answering, such as a backend
/// configured so that a promise made to clients may not survive its restart.
#[async_trait]
pub trait ReadyCheck: Send + Sync + std::fmt::Debug {
    /// Warnings for `/ready`'s body; empty when all is well. Called on every `/ready`, so it
    /// should be cheap (cache what it asks a backend).
    async fn warnings(&self) -> Vec<String>;
}

/// Shared by the HTTP state and whoever runs the start-up work; cloning shares it.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    starting: AtomicBool,
    reason: String,
    probe_timeout: Duration,
    checks: Vec<Arc<dyn ReadyCheck>>,
}

impl Readiness {
    /// Ready at once, with no checks (a router built for tests, for instance).
    pub fn serving() -> Readiness {
        Readiness::new(None, DEFAULT_PROBE_TIMEOUT, Vec::new())
    }

    /// Not ready until [`Readiness::mark_ready`] when `starting` names a reason (shown in
    /// `/ready`'s 503 and in the 503 of business requests).
    pub fn new(
        starting: Option<String>,
        probe_timeout: Duration,
        checks: Vec<Arc<dyn ReadyCheck>>,
    ) -> Readiness {
        Readiness {
            inner: Arc::new(Inner {
                starting: AtomicBool::new(starting.is_some()),
                reason: starting.unwrap_or_default(),
                probe_timeout,
                checks,
            }),
        }
    }

    /// The start-up work is done: business requests are served and `/ready` probes.
    pub fn mark_ready(&self) {
        self.inner.starting.store(false, Ordering::Release);
    }

    /// Why the process is not serving yet, or `None` once it is.
    pub fn starting(&self) -> Option<&str> {
        self.inner
            .starting
            .load(Ordering::Acquire)
            .then_some(self.inner.reason.as_str())
    }

    /// How long `/ready` waits for the backends.
    pub fn probe_timeout(&self) -> Duration {
        self.inner.probe_timeout
    }

    /// Every check's warnings, in order; a check that does not answer within the probe
    /// time-out is reported as such.
    pub async fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for check in &self.inner.checks {
            match tokio::time::timeout(self.inner.probe_timeout, check.warnings()).await {
                Ok(warnings) => out.extend(warnings),
                Err(_) => out.push(format!(
                    "a readiness check did not answer within {} ms",
                    self.inner.probe_timeout.as_millis()
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str);

    #[async_trait]
    impl ReadyCheck for Fixed {
        async fn warnings(&self) -> Vec<String> {
            vec![self.0.to_owned()]
        }
    }

    #[derive(Debug)]
    struct Hangs;

    #[async_trait]
    impl ReadyCheck for Hangs {
        async fn warnings(&self) -> Vec<String> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn starting_until_marked_ready_and_checks_are_bounded() {
        let r = Readiness::new(
            Some("starting: reconciling".to_owned()),
            Duration::from_millis(20),
            vec![Arc::new(Fixed("one")), Arc::new(Hangs)],
        );
        assert_eq!(r.clone().starting(), Some("starting: reconciling"));
        r.mark_ready();
        assert_eq!(r.starting(), None);
        let w = r.warnings().await;
        assert_eq!(w[0], "one");
        assert!(w[1].contains("did not answer within 20 ms"), "{w:?}");
        assert_eq!(Readiness::serving().starting(), None);
    }
}
