//! The `IdempotencyStore` contract.
//!
//! Timing: every check uses real time (the adapter's own clock) with leases and TTLs of 150 to
//! 300 ms and sleeps at least twice as long, so it runs unchanged against a store over the
//! network; no check relies on a margin under 100 ms. Keys and scopes are fresh per check, so
//! suites may share one backend.

use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_domain::IdempotencyKey;

use super::store::unique_id;

/// A lease long enough never to run out during a check.
const LONG: Duration = Duration::from_secs(30);
/// A TTL long enough never to run out during a check.
const KEEP: Duration = Duration::from_secs(60);

fn fresh_scope() -> Scope {
    Scope(format!("contract:user:{}", unique_id()))
}

fn fresh_key() -> IdempotencyKey {
    IdempotencyKey::parse(&format!("contract-key-{}", unique_id())).unwrap()
}

fn fp(s: &str) -> Fingerprint {
    Fingerprint(s.to_owned())
}

/// JSON with odd spacing, key order and non-ASCII text: a store must keep the bytes as given.
fn outcome(ok: bool, tag: &str) -> StoredOutcome {
    StoredOutcome {
        ok,
        body: format!("{{\"z\": 1,  \"a\":[ 2 ,3],\"tag\":\"{tag}\",\"note\":\"잔액 ✓\"}}")
            .into_bytes(),
    }
}

async fn started(
    store: &Arc<dyn IdempotencyStore>,
    scope: &Scope,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    lease: Duration,
) -> Ticket {
    match store.begin(scope, key, fingerprint, lease).await.unwrap() {
        Begin::Started(ticket) => ticket,
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn begin(
    store: &Arc<dyn IdempotencyStore>,
    scope: &Scope,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Begin {
    store.begin(scope, key, fingerprint, LONG).await.unwrap()
}

/// `begin` on a new key starts; after `complete` the same request replays the outcome, bytes
/// and `ok` flag unchanged.
pub async fn begin_complete_replay(store: Arc<dyn IdempotencyStore>) {
    let scope = fresh_scope();
    for ok in [true, false] {
        let key = fresh_key();
        let f = fp("charge:1000");
        let ticket = started(&store, &scope, &key, &f, LONG).await;
        assert_eq!((&ticket.scope, &ticket.key), (&scope, &key));
        let done = outcome(ok, "first");
        store.complete(&ticket, done.clone(), KEEP).await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                begin(&store, &scope, &key, &f).await,
                Begin::Replay(done.clone())
            );
        }
    }
}

/// A different fingerprint on a used key is a `Mismatch`, in flight and after completion, and
/// changes nothing.
pub async fn mismatch_in_flight_and_completed(store: Arc<dyn IdempotencyStore>) {
    let (scope, key) = (fresh_scope(), fresh_key());
    let (f, other) = (fp("charge:1000"), fp("charge:2000"));
    let ticket = started(&store, &scope, &key, &f, LONG).await;
    assert_eq!(begin(&store, &scope, &key, &other).await, Begin::Mismatch);
    assert!(matches!(
        begin(&store, &scope, &key, &f).await,
        Begin::InProgress { .. }
    ));
    let done = outcome(true, "mismatch");
    store.complete(&ticket, done.clone(), KEEP).await.unwrap();
    assert_eq!(begin(&store, &scope, &key, &other).await, Begin::Mismatch);
    assert_eq!(begin(&store, &scope, &key, &f).await, Begin::Replay(done));
}

/// A record in flight answers `InProgress` with the time left, more than zero and at most the
/// lease.
pub async fn in_progress_reports_time_left(store: Arc<dyn IdempotencyStore>) {
    let (scope, key, f) = (fresh_scope(), fresh_key(), fp("pay:order:1"));
    let lease = Duration::from_secs(5);
    let _ticket = started(&store, &scope, &key, &f, lease).await;
    match store.begin(&scope, &key, &f, lease).await.unwrap() {
        Begin::InProgress { retry_after } => {
            assert!(retry_after > Duration::ZERO, "retry_after is zero");
            assert!(retry_after <= lease, "retry_after {retry_after:?} > lease");
        }
        other => panic!("expected InProgress, got {other:?}"),
    }
}

/// `abandon` deletes the in-flight record so the next `begin` starts at once, with a new
/// ticket.
pub async fn abandon_lets_a_retry_run(store: Arc<dyn IdempotencyStore>) {
    let (scope, key, f) = (fresh_scope(), fresh_key(), fp("order:cart"));
    let first = started(&store, &scope, &key, &f, LONG).await;
    store.abandon(&first).await.unwrap();
    let second = started(&store, &scope, &key, &f, LONG).await;
    assert_ne!(first.owner, second.owner, "tickets must be unique");
    // The first ticket is gone for good.
    assert!(matches!(
        store.abandon(&first).await,
        Err(IdempotencyError::TicketLost)
    ));
    let done = outcome(true, "after-abandon");
    store.complete(&second, done.clone(), KEEP).await.unwrap();
    assert_eq!(begin(&store, &scope, &key, &f).await, Begin::Replay(done));
}

/// A completed record is forgotten after its TTL: the next `begin` starts again.
pub async fn completed_record_expires(store: Arc<dyn IdempotencyStore>) {
    let (scope, key, f) = (fresh_scope(), fresh_key(), fp("charge:5"));
    let ticket = started(&store, &scope, &key, &f, LONG).await;
    let done = outcome(true, "short-lived");
    store
        .complete(&ticket, done.clone(), Duration::from_millis(250))
        .await
        .unwrap();
    assert_eq!(begin(&store, &scope, &key, &f).await, Begin::Replay(done));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = started(&store, &scope, &key, &f, LONG).await;
    assert_ne!(again.owner, ticket.owner);
}

/// A holder whose lease ran out and was taken over can neither complete nor abandon: it gets
/// `TicketLost` and changes nothing; the new holder's outcome is the one replayed.
pub async fn late_writer_is_refused(store: Arc<dyn IdempotencyStore>) {
    let (scope, key, f) = (fresh_scope(), fresh_key(), fp("pay:order:9"));
    let old = started(&store, &scope, &key, &f, Duration::from_millis(150)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = started(&store, &scope, &key, &f, LONG).await;
    assert_ne!(old.owner, new.owner, "the take-over needs a new ticket");

    let late = store.complete(&old, outcome(true, "late"), KEEP).await;
    assert!(
        matches!(late, Err(IdempotencyError::TicketLost)),
        "late complete accepted: {late:?}"
    );
    let late = store.abandon(&old).await;
    assert!(
        matches!(late, Err(IdempotencyError::TicketLost)),
        "late abandon accepted: {late:?}"
    );
    // The new holder still holds the key.
    assert!(matches!(
        begin(&store, &scope, &key, &f).await,
        Begin::InProgress { .. }
    ));

    let done = outcome(true, "new");
    store.complete(&new, done.clone(), KEEP).await.unwrap();
    assert_eq!(
        begin(&store, &scope, &key, &f).await,
        Begin::Replay(done.clone())
    );

    // Still refused after the new holder finished, and still harmless.
    assert!(matches!(
        store.complete(&old, outcome(false, "late"), KEEP).await,
        Err(IdempotencyError::TicketLost)
    ));
    assert!(matches!(
        store.abandon(&old).await,
        Err(IdempotencyError::TicketLost)
    ));
    assert_eq!(begin(&store, &scope, &key, &f).await, Begin::Replay(done));
}

/// 100 concurrent `begin`s of one key: exactly one starts, every other sees it in progress.
pub async fn concurrent_begins_start_once(store: Arc<dyn IdempotencyStore>) {
    let (scope, key, f) = (fresh_scope(), fresh_key(), fp("coupon:7"));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (store, scope, key, f) = (store.clone(), scope.clone(), key.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            store.begin(&scope, &key, &f, LONG).await.unwrap()
        }));
    }
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            Begin::Started(_) => started += 1,
            Begin::InProgress { .. } => {}
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    assert_eq!(started, 1, "{started} concurrent begins started");
}

/// The same key in two scopes names two independent records.
pub async fn scopes_are_isolated(store: Arc<dyn IdempotencyStore>) {
    let key = fresh_key();
    let (alice, bob) = (fresh_scope(), fresh_scope());
    let a = started(&store, &alice, &key, &fp("charge:1"), LONG).await;
    // A different fingerprint in another scope is no mismatch, and the key is free there.
    let b = started(&store, &bob, &key, &fp("charge:2"), LONG).await;
    let (done_a, done_b) = (outcome(true, "alice"), outcome(false, "bob"));
    store.complete(&a, done_a.clone(), KEEP).await.unwrap();
    assert!(matches!(
        begin(&store, &bob, &key, &fp("charge:2")).await,
        Begin::InProgress { .. }
    ));
    store.complete(&b, done_b.clone(), KEEP).await.unwrap();
    assert_eq!(
        begin(&store, &alice, &key, &fp("charge:1")).await,
        Begin::Replay(done_a)
    );
    assert_eq!(
        begin(&store, &bob, &key, &fp("charge:2")).await,
        Begin::Replay(done_b)
    );
    assert_eq!(
        begin(&store, &bob, &key, &fp("charge:1")).await,
        Begin::Mismatch
    );
    // A ticket of one scope cannot act on the other.
    let forged = Ticket {
        scope: fresh_scope(),
        ..a
    };
    assert!(matches!(
        store.abandon(&forged).await,
        Err(IdempotencyError::TicketLost)
    ));
}

/// `purge_expired` removes lapsed records (in flight and completed) and keeps live ones.
/// `counts`: the adapter purges itself and must report at least the two lapsed records (an
/// adapter whose backend expires records by itself may report 0).
pub async fn purge_expired_removes_lapsed(store: Arc<dyn IdempotencyStore>, counts: bool) {
    let scope = fresh_scope();
    let f = fp("purge");
    let (hung, done, live) = (fresh_key(), fresh_key(), fresh_key());
    let _hung = started(&store, &scope, &hung, &f, Duration::from_millis(150)).await;
    let t = started(&store, &scope, &done, &f, LONG).await;
    store
        .complete(&t, outcome(true, "purged"), Duration::from_millis(150))
        .await
        .unwrap();
    let t = started(&store, &scope, &live, &f, LONG).await;
    let kept = outcome(true, "kept");
    store.complete(&t, kept.clone(), KEEP).await.unwrap();

    tokio::time::sleep(Duration::from_millis(450)).await;
    let purged = store.purge_expired().await.unwrap();
    if counts {
        assert!(purged >= 2, "purged {purged}, expected at least 2");
    }
    assert_eq!(begin(&store, &scope, &live, &f).await, Begin::Replay(kept));
    started(&store, &scope, &hung, &f, LONG).await;
    started(&store, &scope, &done, &f, LONG).await;
}

/// `complete_many` records each outcome as `complete` would: the tickets still held complete
/// (and replay), a ticket whose record a newer request took over is `TicketLost` and changes
/// nothing.
pub async fn complete_many_answers_as_complete(store: Arc<dyn IdempotencyStore>) {
    let scope = fresh_scope();
    let (a, b, lapsed) = (fresh_key(), fresh_key(), fresh_key());
    let ta = started(&store, &scope, &a, &fp("a"), LONG).await;
    let tb = started(&store, &scope, &b, &fp("b"), LONG).await;
    let stale = started(
        &store,
        &scope,
        &lapsed,
        &fp("c"),
        Duration::from_millis(150),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let newer = started(&store, &scope, &lapsed, &fp("c"), LONG).await;
    let answers = store
        .complete_many(
            &[
                (ta, outcome(true, "a")),
                (stale, outcome(true, "stale")),
                (tb, outcome(false, "b")),
            ],
            KEEP,
        )
        .await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(IdempotencyError::TicketLost)),
        "{answers:?}"
    );
    assert!(answers[2].is_ok(), "{answers:?}");
    assert_eq!(
        begin(&store, &scope, &a, &fp("a")).await,
        Begin::Replay(outcome(true, "a"))
    );
    assert_eq!(
        begin(&store, &scope, &b, &fp("b")).await,
        Begin::Replay(outcome(false, "b"))
    );
    store
        .complete(&newer, outcome(true, "newer"), KEEP)
        .await
        .expect("the newer holder still holds its record");
    assert_eq!(
        begin(&store, &scope, &lapsed, &fp("c")).await,
        Begin::Replay(outcome(true, "newer"))
    );
}

/// `begin_many` answers each claim as `begin` would: a fresh key is started, a second claim
/// of it in the same call is in progress, a completed key replays, a key in flight is in
/// progress, another command under a key is a mismatch. Two calls racing over the same 50
/// fresh keys start each exactly once, and the tickets they give can complete.
pub async fn begin_many_answers_as_begin(store: Arc<dyn IdempotencyStore>) {
    use stockade_application::ports::idempotency::Claim;
    let scope = fresh_scope();
    let claim = |key: &IdempotencyKey, f: &str| Claim {
        scope: scope.clone(),
        key: key.clone(),
        fingerprint: fp(f),
    };
    let (fresh, done, busy, other) = (fresh_key(), fresh_key(), fresh_key(), fresh_key());
    let t = started(&store, &scope, &done, &fp("a"), LONG).await;
    store
        .complete(&t, outcome(true, "done"), KEEP)
        .await
        .unwrap();
    started(&store, &scope, &busy, &fp("a"), LONG).await;
    started(&store, &scope, &other, &fp("a"), LONG).await;
    let answers = store
        .begin_many(
            &[
                claim(&fresh, "a"),
                claim(&done, "a"),
                claim(&fresh, "a"),
                claim(&busy, "a"),
                claim(&other, "b"),
            ],
            LONG,
        )
        .await;
    let answers: Vec<Begin> = answers.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(&answers[0], Begin::Started(t) if t.key == fresh && t.scope == scope),
        "{answers:?}"
    );
    assert_eq!(answers[1], Begin::Replay(outcome(true, "done")));
    assert!(
        matches!(answers[2], Begin::InProgress { .. }),
        "{answers:?}"
    );
    assert!(
        matches!(answers[3], Begin::InProgress { .. }),
        "{answers:?}"
    );
    assert_eq!(answers[4], Begin::Mismatch);

    let keys: Vec<IdempotencyKey> = (0..50).map(|_| fresh_key()).collect();
    let claims: Vec<Claim> = keys.iter().map(|k| claim(k, "race")).collect();
    let mut reversed = claims.clone();
    reversed.reverse();
    let (first, second) = tokio::join!(
        store.begin_many(&claims, LONG),
        store.begin_many(&reversed, LONG)
    );
    let mut tickets = Vec::new();
    for answer in first.into_iter().chain(second) {
        match answer.unwrap() {
            Begin::Started(t) => tickets.push(t),
            Begin::InProgress { .. } => {}
            other => panic!("a raced claim answered {other:?}"),
        }
    }
    assert_eq!(tickets.len(), 50, "each key started exactly once");
    for t in &tickets {
        store
            .complete(t, outcome(true, "raced"), KEEP)
            .await
            .unwrap();
    }
}

/// Instantiates the idempotency contract for one adapter. `$make` is an expression (evaluated
/// per test) yielding a future of `Arc<dyn IdempotencyStore>`. Add `purge_counts` for an adapter
/// whose `purge_expired` deletes (and counts) lapsed records itself.
#[macro_export]
macro_rules! idempotency_contract {
    (@impl $make:expr, $counts:expr) => {
        #[test]
        fn idempotency_complete_many_answers_as_complete() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::complete_many_answers_as_complete($make.await)
                    .await;
            });
        }
        #[test]
        fn idempotency_begin_many_answers_as_begin() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::begin_many_answers_as_begin($make.await).await;
            });
        }
        #[test]
        fn idempotency_begin_complete_replay() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::begin_complete_replay($make.await).await;
            });
        }
        #[test]
        fn idempotency_mismatch_in_flight_and_completed() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::mismatch_in_flight_and_completed($make.await).await;
            });
        }
        #[test]
        fn idempotency_in_progress_reports_time_left() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::in_progress_reports_time_left($make.await).await;
            });
        }
        #[test]
        fn idempotency_abandon_lets_a_retry_run() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::abandon_lets_a_retry_run($make.await).await;
            });
        }
        #[test]
        fn idempotency_completed_record_expires() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::completed_record_expires($make.await).await;
            });
        }
        #[test]
        fn idempotency_late_writer_is_refused() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::late_writer_is_refused($make.await).await;
            });
        }
        #[test]
        fn idempotency_concurrent_begins_start_once() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::concurrent_begins_start_once($make.await).await;
            });
        }
        #[test]
        fn idempotency_scopes_are_isolated() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::scopes_are_isolated($make.await).await;
            });
        }
        #[test]
        fn idempotency_purge_expired_removes_lapsed() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::idempotency::purge_expired_removes_lapsed($make.await, $counts)
                    .await;
            });
        }
    };
    ($make:expr, purge_counts) => {
        $crate::idempotency_contract!(@impl $make, true);
    };
    ($make:expr) => {
        $crate::idempotency_contract!(@impl $make, false);
    };
}
