//! Background workers: issuance consumers, order expiry, popularity refresh, reconciliation,
//! idempotency clean-up and queue-depth metrics. Each stops when the shutdown signal flips.

use std::time::Duration;
use stockade_application::Stockade;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often each periodic worker runs.
#[derive(Debug, Clone)]
pub struct Intervals {
    pub issuance_consumers: usize,
    pub expiry: Duration,
    pub popularity: Duration,
    pub reconcile: Duration,
    pub purge: Duration,
    pub metrics: Duration,
    pub saga_recovery: Duration,
    /// How long a saga must have been open before recovery takes it.
    pub saga_recovery_after: Duration,
}

/// Runs `tick` every `every` until shutdown.
async fn periodic<F, Fut>(every: Duration, mut shutdown: watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => tick().await,
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

/// Starts every worker; they end once `shutdown` turns true.
pub fn spawn(
    app: &Stockade,
    intervals: &Intervals,
    shutdown: &watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..intervals.issuance_consumers.max(1) {
        let (app, rx) = (app.clone(), shutdown.clone());
        set.spawn(async move { app.run_issuance_consumer(rx).await });
    }
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(async move { a.follow_changes(rx).await });
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(periodic(intervals.expiry, rx, move || {
        let a = a.clone();
        async move {
            match a.expire_orders(1_000).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("stockade_orders_expired_total").increment(n as u64);
                    tracing::info!(expired = n, "unpaid orders expired");
                }
                Err(e) => tracing::warn!(error = %e, "order expiry failed"),
            }
        }
    }));
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(periodic(intervals.popularity, rx, move || {
        let a = a.clone();
        async move {
            if let Err(e) = a.refresh_popular(3, 5).await {
                tracing::warn!(error = %e, "popularity refresh failed");
            }
        }
    }));
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(periodic(intervals.reconcile, rx, move || {
        let a = a.clone();
        async move {
            match a.reconcile_all().await {
                Ok(r) if r.repaired + r.rolled_back > 0 => {
                    tracing::warn!(
                        repaired = r.repaired,
                        rolled_back = r.rolled_back,
                        "reconciliation repaired drift"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
            }
        }
    }));
    let (a, rx, after) = (app.clone(), shutdown.clone(), intervals.saga_recovery_after);
    set.spawn(periodic(intervals.saga_recovery, rx, move || {
        let a = a.clone();
        async move {
            match a.recover_sagas(after, 100).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(settled = n, "interrupted payment sagas finished"),
                Err(e) => tracing::warn!(error = %e, "saga recovery failed"),
            }
        }
    }));
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(periodic(intervals.purge, rx, move || {
        let a = a.clone();
        async move {
            if let Err(e) = a.ports().idempotency.purge_expired().await {
                tracing::warn!(error = %e, "idempotency purge failed");
            }
        }
    }));
    let (a, rx) = (app.clone(), shutdown.clone());
    set.spawn(periodic(intervals.metrics, rx, move || {
        let a = a.clone();
        async move {
            if let Ok(d) = a.ports().queue.depth().await {
                metrics::gauge!("issuance_queue_depth", "state" => "ready").set(d.ready as f64);
                metrics::gauge!("issuance_queue_depth", "state" => "in_flight")
                    .set(d.in_flight as f64);
                metrics::gauge!("issuance_queue_depth", "state" => "dead").set(d.dead as f64);
            }
        }
    }));
    set
}
