//! `stockade-load locks`: the lock managers measured directly (no HTTP): acquire + release
//! latency one at a time, and throughput with many tasks over a number of hot keys.

use crate::client::Outcome;
use crate::run::Rng;
use crate::stats::{check, Recorder, Summary};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockade_application::ports::lock::{LockKey, LockManager, LockOptions};

fn opts() -> LockOptions {
    LockOptions::new(Duration::from_secs(60), Duration::from_secs(30))
}

fn outcome(latency: Duration, ok: bool) -> Outcome {
    Outcome {
        status: if ok { 200 } else { 503 },
        code: (!ok).then(|| "LOCK_FAILED".to_owned()),
        message: (!ok).then(|| "the lock manager refused or failed".to_owned()),
        error: None,
        latency,
        body: serde_json::Value::Null,
        data_text: String::new(),
    }
}

fn key(ns: &str, i: u64) -> Result<LockKey, String> {
    LockKey::new(format!("{ns}:{i}"))
}

/// Acquire + release of one key, `n` times in a row.
pub async fn latency(
    label: &str,
    locks: Arc<dyn LockManager>,
    n: usize,
    ns: &str,
) -> Result<Summary, String> {
    let recorder = Recorder::default();
    let k = key(ns, 0)?;
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let ok = match locks.acquire(std::slice::from_ref(&k), opts()).await {
            Ok(g) => g.release().await.is_ok(),
            Err(_) => false,
        };
        recorder.record(&outcome(t.elapsed(), ok));
    }
    let elapsed = started.elapsed();
    let failures = n as u64 - recorder.answered("200");
    Ok(Summary::build(
        "lock-latency",
        label,
        &[],
        1,
        &recorder,
        elapsed,
        n as u64,
        vec![check(
            "every acquisition succeeded",
            failures == 0,
            format!("{failures} failed"),
        )],
    ))
}

/// `tasks` tasks acquire and release keys drawn from `hot_keys` for `duration`; every grant
/// also increments a plain counter per key under its lock, and the counters must add up.
pub async fn contention(
    label: &str,
    locks: Arc<dyn LockManager>,
    tasks: usize,
    hot_keys: u64,
    duration: Duration,
    ns: &str,
    seed: u64,
) -> Result<Summary, String> {
    let recorder = Arc::new(Recorder::default());
    let granted = Arc::new(AtomicU64::new(0));
    let counters: Arc<Vec<AtomicU64>> = Arc::new(
        (0..hot_keys.min(100_000))
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (locks, recorder, granted, counters, ns) = (
            locks.clone(),
            recorder.clone(),
            granted.clone(),
            counters.clone(),
            ns.to_owned(),
        );
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed.wrapping_add(t as u64));
            while started.elapsed() < duration {
                let i = rng.below(hot_keys);
                let Ok(k) = key(&ns, i) else { return };
                let at = Instant::now();
                match locks.acquire(&[k], opts()).await {
                    Ok(g) => {
                        // A read-modify-write that only the lock makes safe.
                        let c = &counters[(i as usize) % counters.len()];
                        let v = c.load(Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        c.store(v + 1, Ordering::SeqCst);
                        let ok = g.release().await.is_ok();
                        granted.fetch_add(1, Ordering::Relaxed);
                        recorder.record(&outcome(at.elapsed(), ok));
                    }
                    Err(_) => recorder.record(&outcome(at.elapsed(), false)),
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = started.elapsed();
    let granted = granted.load(Ordering::Relaxed);
    let counted: u64 = counters.iter().map(|c| c.load(Ordering::SeqCst)).sum();
    let summary = Summary::build(
        &format!("lock-contention-{tasks}-tasks"),
        label,
        &[],
        hot_keys as usize,
        &recorder,
        elapsed,
        granted,
        vec![check(
            "no increment lost under the locks",
            counted == granted,
            format!("{granted} grants, counters add up to {counted}"),
        )],
    );
    Ok(summary)
}
