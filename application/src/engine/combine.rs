//! Per-key request combining (flat combining, Hendler et al., SPAA 2010).
//!
//! A hot key makes its writers serial: each takes the key's lock, opens a unit of work, commits
//! and releases, so the key serves at most `1 / (lock + unit + commit)` requests a second
//! whatever the hardware. A [`Combiner`] turns that cost into a per-*batch* cost: requests for
//! one key queue in this process, and one drainer task takes what is waiting (up to a bound) and
//! runs it as one turn, one lock grant, one unit of work and one commit for the batch, then
//! answers each request with its own result.
//!
//! - A request that arrives when nothing is queued or running for its key starts a drainer at
//!   once: a lone request is never held back to wait for company.
//! - Requests that arrive while a turn runs wait for the next one, which takes them in arrival
//!   order (first come, first served), at most `max_batch` at a time.
//! - The drainer ends when it finds the queue empty; the key's entry goes with it, so idle keys
//!   cost nothing.
//! - A drainer that panics drops the answers of its batch and of everything queued (their
//!   callers see [`Lost`]) and frees the key for the next request.
//!
//! What a batch promises (all-or-nothing per batch, each answer equal to the serial one) is the
//! batch runner's business, not this module's; see docs/decisions/0012.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A request waiting for its turn, and where its answer goes.
pub(crate) type Waiting<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Each key's queue; a key present here has a drainer running.
type Lanes<K, Req, Resp> = Arc<Mutex<HashMap<K, VecDeque<Waiting<Req, Resp>>>>>;

/// The answer of a request was lost: its drainer failed before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost;

/// Queues of requests per key, each drained by at most one task at a time.
pub(crate) struct Combiner<K, Req, Resp> {
    lanes: Lanes<K, Req, Resp>,
    max_batch: usize,
}

impl<K, Req, Resp> fmt::Debug for Combiner<K, Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combiner")
            .field("keys", &self.lanes.lock().len())
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl<K, Req, Resp> Combiner<K, Req, Resp>
where
    K: Hash + Eq + Clone + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    pub(crate) fn new(max_batch: usize) -> Self {
        Combiner {
            lanes: Arc::default(),
            max_batch: max_batch.max(1),
        }
    }

    /// Queues `req` under `key` and waits for its answer. When no drainer runs for `key`, one
    /// is spawned that calls `run` with each batch (in arrival order) until the queue is empty;
    /// `run` MUST answer every request of its batch with one response, in the batch's order.
    ///
    /// # Errors
    /// [`Lost`] when the drainer failed (panicked) before answering.
    pub(crate) async fn submit<F, Fut>(&self, key: K, req: Req, run: F) -> Result<Resp, Lost>
    where
        F: Fn(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut lanes = self.lanes.lock();
            match lanes.get_mut(&key) {
                Some(queue) => {
                    queue.push_back((req, tx));
                    false
                }
                None => {
                    lanes.insert(key.clone(), VecDeque::from([(req, tx)]));
                    true
                }
            }
        };
        if lead {
            let drainer = Drainer {
                lanes: self.lanes.clone(),
                key,
                max_batch: self.max_batch,
                done: false,
                in_flight: Vec::new(),
            };
            tokio::spawn(drainer.run(run));
        }
        rx.await.map_err(|_| Lost)
    }

    /// How many requests wait, over every key (for the queue-depth gauge).
    pub(crate) fn depth(&self) -> usize {
        self.lanes.lock().values().map(VecDeque::len).sum()
    }
}

/// The task that drains one key's queue. Its entry in the map marks it as running; it removes
/// the entry when it finds the queue empty, or when it is dropped unfinished (a panic).
struct Drainer<K: Hash + Eq, Req, Resp> {
    lanes: Lanes<K, Req, Resp>,
    key: K,
    max_batch: usize,
    done: bool,
    /// Where the answers of the batch being run go. Held here, not in a local of `run`, so
    /// that a drainer dropped unfinished frees its key *before* these senders drop: a caller
    /// told `Lost` that submits again at once then starts a drainer of its own instead of
    /// queueing behind the one going away.
    in_flight: Vec<oneshot::Sender<Resp>>,
}

impl<K: Hash + Eq, Req, Resp> Drainer<K, Req, Resp> {
    async fn run<F, Fut>(mut self, run: F)
    where
        F: Fn(Vec<Req>) -> Fut,
        Fut: Future<Output = Vec<Resp>>,
    {
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                self.done = true;
                return;
            }
            let requests: Vec<Req>;
            (requests, self.in_flight) = batch.into_iter().unzip();
            let expected = self.in_flight.len();
            let answers = run(requests).await;
            debug_assert_eq!(answers.len(), expected, "a batch answers every request");
            for (tx, answer) in std::mem::take(&mut self.in_flight).into_iter().zip(answers) {
                // A caller that went away no longer needs its answer.
                let _ = tx.send(answer);
            }
        }
    }

    /// Up to `max_batch` of what waits; when nothing does, the key's entry is removed in the
    /// same critical section (so a request queued after it starts a drainer of its own).
    fn next_batch(&mut self) -> Vec<Waiting<Req, Resp>> {
        let mut lanes = self.lanes.lock();
        let Some(queue) = lanes.get_mut(&self.key) else {
            return Vec::new();
        };
        let n = queue.len().min(self.max_batch);
        let batch: Vec<_> = queue.drain(..n).collect();
        if batch.is_empty() {
            lanes.remove(&self.key);
        }
        batch
    }
}

impl<K: Hash + Eq, Req, Resp> Drop for Drainer<K, Req, Resp> {
    fn drop(&mut self) {
        if !self.done {
            // Unwinding: the key is freed first, then what waits is answered `Lost` (its
            // senders, and the batch's in `in_flight`, drop after this).
            self.lanes.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_batched_in_arrival_order_and_each_answered() {
        let combiner = Arc::new(Combiner::<u8, usize, usize>::new(16));
        let batches = Arc::new(Mutex::new(Vec::<Vec<usize>>::new()));
        let mut tasks = Vec::new();
        for i in 0..300 {
            let (c, b) = (combiner.clone(), batches.clone());
            tasks.push(tokio::spawn(async move {
                c.submit(0, i, move |reqs: Vec<usize>| {
                    let b = b.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        b.lock().push(reqs.clone());
                        reqs.iter().map(|r| r * 10).collect()
                    }
                })
                .await
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(
                t.await.unwrap(),
                Ok(i * 10),
                "request {i} got its own answer"
            );
        }
        let batches = batches.lock();
        let all: Vec<usize> = batches.iter().flatten().copied().collect();
        assert_eq!(all.len(), 300, "every request ran exactly once");
        assert!(batches.iter().all(|b| b.len() <= 16), "batches are bounded");
        assert!(batches.len() < 300, "waiting requests were combined");
        assert_eq!(combiner.depth(), 0);
        assert!(combiner.lanes.lock().is_empty(), "idle keys are forgotten");
    }

    #[tokio::test]
    async fn a_lone_request_runs_at_once_in_a_batch_of_one() {
        let combiner = Combiner::<u8, u8, usize>::new(16);
        let answer = combiner
            .submit(1, 7, |reqs: Vec<u8>| async move { vec![reqs.len()] })
            .await;
        assert_eq!(answer, Ok(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_drainer_frees_its_key() {
        let combiner = Arc::new(Combiner::<u8, u8, u8>::new(4));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let lost = combiner
            .submit(1, 1, move |_reqs: Vec<u8>| {
                r.fetch_add(1, Ordering::SeqCst);
                async move { panic!("batch failed") }
            })
            .await;
        assert_eq!(lost, Err(Lost));
        // The key is free again: the next request gets a drainer of its own.
        let ok = combiner
            .submit(1, 2, |reqs: Vec<u8>| async move { reqs })
            .await;
        assert_eq!(ok, Ok(2));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
