//! The `Sections` contract: units of work under locks.
//!
//! A fixture gives the sections, the store they write to (to read what was committed) and the
//! idempotency store whose tickets a section's last unit may record outcomes for. Each check
//! writes one product's stock, the simplest guarded write every store has.

use crate::contracts::lock::{key, opts};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_application::ports::lock::{LockError, LockKey};
use stockade_application::ports::section::{Outcomes, Section, Sections};
use stockade_application::ports::store::{Store, StoreError};
use stockade_domain::{IdempotencyKey, NewProduct, ProductId};

/// What a section contract test works with.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub sections: Arc<dyn Sections>,
    pub store: Arc<dyn Store>,
    pub idempotency: Arc<dyn IdempotencyStore>,
}

async fn product(store: &Arc<dyn Store>, stock: i64) -> ProductId {
    let mut uow = store.begin().await.unwrap();
    let p = uow
        .products()
        .insert(NewProduct::new("section", 100, stock, 10).unwrap())
        .await
        .unwrap();
    uow.commit().await.unwrap();
    p.id
}

async fn stock(store: &Arc<dyn Store>, id: ProductId) -> u32 {
    let mut uow = store.begin().await.unwrap();
    uow.products().get(id).await.unwrap().unwrap().stock
}

async fn claim(idem: &Arc<dyn IdempotencyStore>, key: &str, lease: Duration) -> Ticket {
    let begun = idem
        .begin(
            &Scope("user:1".into()),
            &IdempotencyKey::parse(key).unwrap(),
            &Fingerprint("f".into()),
            lease,
        )
        .await
        .unwrap();
    match begun {
        Begin::Started(ticket) => ticket,
        other => panic!("not started: {other:?}"),
    }
}

/// Enters a section over `k`.
async fn enter(f: &Fixture, k: &LockKey, wait_ms: u64, lease_ms: u64) -> Box<dyn Section> {
    f.sections
        .enter(std::slice::from_ref(k), opts(wait_ms, lease_ms))
        .await
        .unwrap()
}

/// Writes `stock` for `id` in a new unit of `section`.
async fn write(section: &mut Box<dyn Section>, id: ProductId, stock: u32) {
    section
        .begin()
        .await
        .unwrap()
        .products()
        .set_stock(id, stock)
        .await
        .unwrap();
}

fn outcome() -> StoredOutcome {
    StoredOutcome {
        ok: true,
        body: b"{\"answer\":1}".to_vec(),
    }
}

/// 200 tasks each read the stock in a unit of their section, yield, and write it plus one:
/// with the units under the keys, no increment is lost and no two sections overlap.
pub async fn mutual_exclusion(f: Fixture) {
    let id = product(&f.store, 0).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (sections, inside, overlaps) = (f.sections.clone(), inside.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut section = sections
                .enter(&[key("contract:section")], opts(60_000, 30_000))
                .await
                .expect("entered within the wait");
            if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let uow = section.begin().await.unwrap();
            let seen = uow.products().get(id).await.unwrap().unwrap().stock;
            tokio::task::yield_now().await;
            uow.products().set_stock(id, seen + 1).await.unwrap();
            inside.fetch_sub(1, Ordering::SeqCst);
            section.finish(Outcomes::none()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(stock(&f.store, id).await, 200, "an increment was lost");
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two sections overlapped"
    );
}

/// A unit not committed is rolled back, whether the section begins another, rolls back, is
/// left or is dropped; leaving or dropping frees the keys.
pub async fn unfinished_units_roll_back(f: Fixture) {
    let id = product(&f.store, 5).await;
    let k = key("contract:section:rollback");
    let mut section = enter(&f, &k, 1_000, 30_000).await;
    write(&mut section, id, 1).await;
    // A second unit rolls the first back.
    write(&mut section, id, 2).await;
    section.rollback();
    section.begin().await.unwrap();
    section.commit().await.unwrap();
    assert_eq!(stock(&f.store, id).await, 5);
    write(&mut section, id, 3).await;
    section.leave().await;
    assert_eq!(stock(&f.store, id).await, 5);

    let mut again = f
        .sections
        .enter(std::slice::from_ref(&k), opts(1_000, 30_000))
        .await
        .expect("a section left frees its keys");
    write(&mut again, id, 4).await;
    drop(again);
    let last = f
        .sections
        .enter(&[k], opts(5_000, 30_000))
        .await
        .expect("a dropped section frees its keys");
    last.leave().await;
    assert_eq!(stock(&f.store, id).await, 5);
}

/// A mid-section commit makes the unit's writes visible and keeps the keys; finishing commits
/// the last unit and frees them.
pub async fn commit_keeps_the_keys(f: Fixture) {
    let id = product(&f.store, 5).await;
    let k = key("contract:section:commit");
    let mut section = enter(&f, &k, 1_000, 30_000).await;
    write(&mut section, id, 6).await;
    section.commit().await.unwrap();
    assert_eq!(stock(&f.store, id).await, 6);
    let other = f
        .sections
        .enter(std::slice::from_ref(&k), opts(200, 30_000))
        .await;
    assert!(matches!(other, Err(LockError::Timeout)), "{other:?}");
    write(&mut section, id, 7).await;
    section.finish(Outcomes::none()).await.unwrap();
    assert_eq!(stock(&f.store, id).await, 7);
    f.sections
        .enter(&[k], opts(1_000, 30_000))
        .await
        .expect("finished: the keys are free")
        .leave()
        .await;
}

/// Finishing with outcomes either records them with the commit (and says so), or records
/// nothing (the ticket is still in flight, for the caller to complete).
pub async fn finish_records_outcomes_or_says_not(f: Fixture) {
    let id = product(&f.store, 5).await;
    let ticket = claim(&f.idempotency, "section-outcome", Duration::from_secs(30)).await;
    let mut section = f
        .sections
        .enter(&[key("contract:section:outcome")], opts(1_000, 30_000))
        .await
        .unwrap();
    write(&mut section, id, 8).await;
    let items = [(ticket.clone(), outcome())];
    let recorded = section
        .finish(Outcomes {
            items: &items,
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert_eq!(stock(&f.store, id).await, 8);
    let again = f
        .idempotency
        .begin(
            &ticket.scope,
            &ticket.key,
            &Fingerprint("f".into()),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    if recorded {
        assert!(
            matches!(&again, Begin::Replay(o) if *o == outcome()),
            "{again:?}"
        );
    } else {
        assert!(matches!(again, Begin::InProgress { .. }), "{again:?}");
    }
}

/// A section that records outcomes refuses to commit an outcome whose record a newer request
/// took over (its lease ran out): nothing of the unit is kept. One that does not record
/// commits and says it recorded nothing.
pub async fn a_lost_ticket_commits_nothing(f: Fixture) {
    let id = product(&f.store, 5).await;
    let stale = claim(&f.idempotency, "section-lost", Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _newer = claim(&f.idempotency, "section-lost", Duration::from_secs(30)).await;
    let k = key("contract:section:lost");
    let mut section = enter(&f, &k, 1_000, 30_000).await;
    write(&mut section, id, 9).await;
    let items = [(stale, outcome())];
    let finished = section
        .finish(Outcomes {
            items: &items,
            ttl: Duration::from_secs(60),
        })
        .await;
    match finished {
        Err(StoreError::TicketLost) => assert_eq!(stock(&f.store, id).await, 5),
        Ok(false) => assert_eq!(stock(&f.store, id).await, 9),
        other => panic!("a lost ticket's outcome recorded: {other:?}"),
    }
    f.sections
        .enter(&[k], opts(5_000, 30_000))
        .await
        .expect("the keys are free either way")
        .leave()
        .await;
}

/// A section whose lease ran out says so, and once a newer section has written under the key,
/// it cannot begin a unit that would overwrite that work.
pub async fn a_lapsed_section_cannot_write(f: Fixture) {
    let id = product(&f.store, 5).await;
    let k = key("contract:section:lapse");
    let mut stale = enter(&f, &k, 1_000, 300).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        stale.lease_lost(),
        "the section must learn it lost its lease"
    );
    let mut fresh = f
        .sections
        .enter(std::slice::from_ref(&k), opts(5_000, 30_000))
        .await
        .expect("a lapsed section's keys are free");
    assert!(!fresh.lease_lost());
    write(&mut fresh, id, 1).await;
    fresh.finish(Outcomes::none()).await.unwrap();
    let refused = stale.begin().await.map(|_| ());
    assert!(
        matches!(refused, Err(StoreError::StaleFence { .. })),
        "a lapsed section began a unit: {refused:?}"
    );
    stale.leave().await;
    assert_eq!(stock(&f.store, id).await, 1);
}

/// Generates the `Sections` contract tests for one adapter. `$make` is an expression (run once
/// per test) yielding a future of [`Fixture`].
#[macro_export]
macro_rules! section_contract {
    ($make:expr) => {
        #[test]
        fn section_mutual_exclusion() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::mutual_exclusion($make.await).await;
            });
        }
        #[test]
        fn section_unfinished_units_roll_back() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::unfinished_units_roll_back($make.await).await;
            });
        }
        #[test]
        fn section_commit_keeps_the_keys() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::commit_keeps_the_keys($make.await).await;
            });
        }
        #[test]
        fn section_finish_records_outcomes_or_says_not() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::finish_records_outcomes_or_says_not($make.await).await;
            });
        }
        #[test]
        fn section_a_lost_ticket_commits_nothing() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::a_lost_ticket_commits_nothing($make.await).await;
            });
        }
        #[test]
        fn section_a_lapsed_section_cannot_write() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::section::a_lapsed_section_cannot_write($make.await).await;
            });
        }
    };
}
