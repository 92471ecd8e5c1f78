//! Runs jobs on `concurrency` workers with a progress bar, until the jobs or the time run out.

use crate::stats::{Recorder, LATE_AFTER};
use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A deterministic random source (SplitMix64), so a seed reproduces a run's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A progress bar on a terminal; nothing when output is captured (CI logs).
pub fn progress(total: Option<u64>, label: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// How a run offers its load.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Closed model: the workers; open model: the most requests in flight.
    pub concurrency: usize,
    /// Stop sending once this much time has passed (what is in flight finishes).
    pub duration: Option<Duration>,
    /// Open model: arrivals per second on a fixed schedule, not waiting for answers.
    pub rate: Option<f64>,
}

/// Runs `job(i)` for `i` in `0..jobs`, stopping early once `duration` has passed: in the
/// closed model on `concurrency` workers, each starting its next job when the last one ended;
/// with a `rate`, in the open model ([`open`]). Records on `recorder` how many jobs ran (and
/// were dropped or late). Returns how many jobs ran and how long it took.
pub async fn run<F, Fut>(
    jobs: usize,
    pace: &Pace,
    bar: &ProgressBar,
    recorder: &Arc<Recorder>,
    job: F,
) -> (usize, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (ran, elapsed) = match pace.rate {
        Some(rate) => open(jobs, rate, pace, bar, recorder, job).await,
        None => closed(jobs, pace.concurrency, pace.duration, bar, recorder, job).await,
    };
    recorder.jobs(jobs, ran);
    (ran, elapsed)
}

/// The open model: arrival `i` is due at `i / rate` seconds after the start, whether or not
/// earlier ones were answered. An arrival that finds `concurrency` jobs in flight is dropped
/// (counted, not sent); one sent more than [`LATE_AFTER`] behind its schedule (the generator
/// itself fell behind) is counted as late. Latency is measured from the moment of sending.
async fn open<F, Fut>(
    jobs: usize,
    rate: f64,
    pace: &Pace,
    bar: &ProgressBar,
    recorder: &Arc<Recorder>,
    job: F,
) -> (usize, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(pace.concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..jobs {
        let Ok(offset) = Duration::try_from_secs_f64(i as f64 / rate) else {
            break;
        };
        if pace.duration.is_some_and(|d| offset >= d) {
            break;
        }
        let due = started + offset;
        tokio::time::sleep_until(due).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            recorder.dropped();
            continue;
        };
        if due.elapsed() > LATE_AFTER {
            recorder.late();
        }
        let (done, bar, recorder) = (done.clone(), bar.clone(), recorder.clone());
        let sent = job(i);
        in_flight.spawn(async move {
            sent.await;
            drop(slot);
            done.fetch_add(1, Ordering::Relaxed);
            bar.set_position(recorder.requests());
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    (done.load(Ordering::Relaxed), started.elapsed())
}

/// The closed model: `concurrency` workers, each starting its next job when the last ended.
async fn closed<F, Fut>(
    jobs: usize,
    concurrency: usize,
    duration: Option<Duration>,
    bar: &ProgressBar,
    recorder: &Arc<Recorder>,
    job: F,
) -> (usize, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (job, next, done, stop, bar, recorder) = (
            job.clone(),
            next.clone(),
            done.clone(),
            stop.clone(),
            bar.clone(),
            recorder.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if duration.is_some_and(|d| started.elapsed() >= d) {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                job(i).await;
                done.fetch_add(1, Ordering::Relaxed);
                bar.set_position(recorder.requests());
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}
