//! The in-memory issuance queue: bounded, at-least-once, with delayed retries, a visibility
//! time-out (a delivery not acked in time is delivered again, as if its consumer died) and a
//! dead-letter list.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::queue::{Delivery, IssuanceQueue, IssuanceRequest, QueueDepth};
use stockade_application::BackendError;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Message {
    seq: u64,
    request: IssuanceRequest,
    /// Deliveries so far.
    attempts: u32,
}

#[derive(Debug, Default)]
struct Inner {
    ready: VecDeque<Message>,
    delayed: BTreeMap<(Instant, u64), Message>,
    in_flight: HashMap<u64, (Message, Instant)>,
    dead: Vec<(Message, String)>,
    next_seq: u64,
}

impl Inner {
    fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.in_flight.len()
    }

    /// Moves due retries and timed-out deliveries back to `ready`.
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            self.ready.push_back(msg);
        }
        let timed_out: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in timed_out {
            if let Some((msg, _)) = self.in_flight.remove(&seq) {
                self.ready.push_back(msg);
            }
        }
    }

    /// Removes a message wherever it is (in flight, or back in `ready` / `delayed` after its
    /// visibility time-out).
    fn take(&mut self, seq: u64) -> Option<Message> {
        if let Some((msg, _)) = self.in_flight.remove(&seq) {
            return Some(msg);
        }
        if let Some(pos) = self.ready.iter().position(|m| m.seq == seq) {
            return self.ready.remove(pos);
        }
        let key = self.delayed.keys().find(|(_, s)| *s == seq).copied();
        key.and_then(|k| self.delayed.remove(&k))
    }

    /// [`Inner::take`], but only for the latest delivery of the message: `attempt` must be the
    /// deliveries it has had (a later receive means another receiver holds it now).
    fn take_latest(&mut self, seq: u64, attempt: u32) -> Option<Message> {
        let latest = self
            .in_flight
            .get(&seq)
            .map(|(m, _)| m.attempts)
            .or_else(|| self.ready.iter().find(|m| m.seq == seq).map(|m| m.attempts))
            .or_else(|| {
                self.delayed
                    .iter()
                    .find(|((_, s), _)| *s == seq)
                    .map(|(_, m)| m.attempts)
            })?;
        if latest == attempt {
            self.take(seq)
        } else {
            None
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let retry = self.delayed.keys().next().map(|(at, _)| *at);
        let visibility = self.in_flight.values().map(|(_, until)| *until).min();
        match (retry, visibility) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The in-memory [`IssuanceQueue`].
#[derive(Debug, Clone)]
pub struct MemoryIssuanceQueue {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
    capacity: usize,
    visibility: Duration,
}

impl MemoryIssuanceQueue {
    /// A queue holding at most `capacity` undelivered or unacked messages; a delivery not acked
    /// within `visibility` is delivered again.
    pub fn new(capacity: usize, visibility: Duration) -> Self {
        MemoryIssuanceQueue {
            inner: Arc::default(),
            notify: Arc::new(Notify::new()),
            capacity,
            visibility,
        }
    }

    /// Drops every message, delivered or not (the demo profile's reset).
    pub fn clear(&self) {
        *self.inner.lock() = Inner::default();
    }

    /// The dead letters with their reasons.
    pub fn dead_letters(&self) -> Vec<(IssuanceRequest, String)> {
        self.inner
            .lock()
            .dead
            .iter()
            .map(|(m, r)| (m.request, r.clone()))
            .collect()
    }
}

impl Default for MemoryIssuanceQueue {
    fn default() -> Self {
        MemoryIssuanceQueue::new(1_000_000, Duration::from_secs(30))
    }
}

fn seq_of(delivery: &Delivery) -> Result<u64, BackendError> {
    delivery.id.parse().map_err(|_| {
        BackendError::new(
            "memory queue",
            format!("unknown delivery id {}", delivery.id),
        )
    })
}

#[async_trait]
impl IssuanceQueue for MemoryIssuanceQueue {
    async fn publish(&self, request: IssuanceRequest) -> Result<(), BackendError> {
        {
            let mut inner = self.inner.lock();
            if inner.len() >= self.capacity {
                return Err(BackendError::new("memory queue", "the queue is full"));
            }
            inner.next_seq += 1;
            let seq = inner.next_seq;
            inner.ready.push_back(Message {
                seq,
                request,
                attempts: 0,
            });
        }
        self.notify.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish in between is not missed.
            let notified = self.notify.notified();
            let wake = {
                let now = Instant::now();
                let mut inner = self.inner.lock();
                inner.promote(now);
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(mut msg) = inner.ready.pop_front() else {
                        break;
                    };
                    msg.attempts += 1;
                    inner
                        .in_flight
                        .insert(msg.seq, (msg, now + self.visibility));
                    out.push(Delivery {
                        id: msg.seq.to_string(),
                        request: msg.request,
                        attempt: msg.attempts,
                    });
                }
                if !out.is_empty() {
                    if !inner.ready.is_empty() {
                        self.notify.notify_one();
                    }
                    return Ok(out);
                }
                if now >= deadline {
                    return Ok(out);
                }
                inner.next_wake().map_or(deadline, |w| w.min(deadline))
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), BackendError> {
        let seq = seq_of(delivery)?;
        // Also a late ack (the visibility time-out already put the message back): it is done
        // all the same, so it must not be delivered again.
        self.inner.lock().take(seq);
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<(), BackendError> {
        let seq = seq_of(delivery)?;
        {
            let mut inner = self.inner.lock();
            // Also when the visibility time-out already put it back, as long as nobody received
            // it since: the consumer's word wins.
            if let Some(msg) = inner.take_latest(seq, delivery.attempt) {
                inner.delayed.insert((Instant::now() + delay, seq), msg);
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<bool, BackendError> {
        let seq = seq_of(delivery)?;
        let mut inner = self.inner.lock();
        match inner.take_latest(seq, delivery.attempt) {
            Some(msg) => {
                inner.dead.push((msg, reason.to_owned()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn depth(&self) -> Result<QueueDepth, BackendError> {
        let inner = self.inner.lock();
        Ok(QueueDepth {
            ready: (inner.ready.len() + inner.delayed.len()) as u64,
            in_flight: inner.in_flight.len() as u64,
            dead: inner.dead.len() as u64,
        })
    }
}
