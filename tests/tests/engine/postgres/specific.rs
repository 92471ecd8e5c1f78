//! What the Postgres adapters promise beyond the shared contracts: the lock manager, and the pool.

#![allow(clippy::unwrap_used)]

use sqlx::Connection;
use std::time::Duration;
use stockade_application::ports::lock::{LockError, LockManager};
use stockade_application::ports::section::{Outcomes, Section, Sections};
use stockade_application::ports::store::{Store, StoreError, UnitOfWork};
use stockade_domain::NewProduct;
use stockade_postgres::{lock_id, PgLockManager, PgSections};
use stockade_tests::contracts::lock::{key, opts};
use stockade_tests::pg::TestDb;

/// The backend holding a lock is killed: the waiter queued behind it gets the lock, with a
/// larger fencing token, and the store refuses the dead holder's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_holder_hands_the_lock_to_the_next_waiter() {
    let db = TestDb::new().await;
    let locks = db.locks().await;
    let k = key("pg:terminate");
    let holder = locks
        .acquire(std::slice::from_ref(&k), opts(1_000, 60_000))
        .await
        .unwrap();
    let waiter = {
        let locks = locks.clone();
        let k = k.clone();
        tokio::spawn(async move { locks.acquire(&[k], opts(20_000, 60_000)).await })
    };
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pid = holder_pid(&mut admin, &db.schema, "pg:terminate").await;
    terminate(&mut admin, pid).await;
    let next = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("the waiter is served once the holder's session ends")
        .unwrap()
        .expect("granted");
    assert!(next.fences()[0].token > holder.fences()[0].token);
    // The dead holder's token is refused once the new holder has written.
    let store = db.store();
    let mut uow = stockade_application::ports::store::Store::begin(&store)
        .await
        .unwrap();
    uow.check_fences(next.fences()).await.unwrap();
    uow.commit().await.unwrap();
    let mut uow = stockade_application::ports::store::Store::begin(&store)
        .await
        .unwrap();
    assert!(uow.check_fences(holder.fences()).await.is_err());
    drop(uow);
    // Releasing the dead grant fails or does nothing; it must not free the new holder's lock.
    let _ = holder.release().await;
    let third = locks
        .acquire(std::slice::from_ref(&k), opts(200, 60_000))
        .await;
    assert!(matches!(third, Err(LockError::Timeout)), "{third:?}");
    next.release().await.unwrap();
    db.drop_schema().await;
}

/// A wait that times out in the server (`lock_timeout`) leaves nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_side_timeout_holds_nothing() {
    let db = TestDb::new().await;
    let locks = db.locks().await;
    let held = locks
        .acquire(&[key("pg:a")], opts(1_000, 60_000))
        .await
        .unwrap();
    for _ in 0..20 {
        let r = locks
            .acquire(&[key("pg:b"), key("pg:a")], opts(30, 60_000))
            .await;
        assert!(matches!(r, Err(LockError::Timeout)), "{r:?}");
        // `pg:b` is free again at once.
        let b = locks
            .acquire(&[key("pg:b")], opts(0, 60_000))
            .await
            .unwrap();
        b.release().await.unwrap();
    }
    held.release().await.unwrap();
    db.drop_schema().await;
}

/// A connection lost in the middle of a unit of work: the next operation answers
/// `Unavailable` and nothing of the unit is visible afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_mid_unit_applies_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut uow = store.begin().await.unwrap();
    uow.products()
        .insert(NewProduct::new("half", 100, 5, 1).unwrap())
        .await
        .unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND state = 'idle in transaction'",
    )
    .bind(&db.schema)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 1, "exactly the unit's connection");
    let next = uow
        .products()
        .insert(NewProduct::new("other", 100, 5, 1).unwrap())
        .await;
    assert!(matches!(next, Err(StoreError::Unavailable(_))), "{next:?}");
    assert!(uow.commit().await.is_err());
    let mut check = store.begin().await.unwrap();
    assert!(check.products().list().await.unwrap().is_empty());
    drop(check);
    db.drop_schema().await;
}

/// With the store and the idempotency records in one database, an outcome commits with its
/// write. A request whose in-flight lease lapsed while it waited, and whose key a retry took
/// over, cannot commit its order: exactly one order exists, and the key replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_request_cannot_commit_a_second_order() {
    use stockade_application::ports::lock::LockKey;
    use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
    use stockade_application::{AppError, Settings};
    use stockade_domain::{IdempotencyKey, LineRequest, Quantity};
    use stockade_tests::harness::{user, TestApp};
    let db = TestDb::new().await;
    let t = TestApp::on_postgres(
        &db,
        Settings {
            idempotency_lease: Duration::from_millis(300),
            lock_wait: Duration::from_secs(30),
            ..Settings::default()
        },
    )
    .await;
    let product = t.product(1_000, 10, 5).await;
    let cmd = CreateOrder {
        user_id: user(1),
        source: OrderSource::Lines(vec![LineRequest {
            product_id: product,
            quantity: Quantity::new(1, "quantity").unwrap(),
            user_coupon_id: None,
        }]),
        user_coupon_ids: vec![],
    };
    let key = IdempotencyKey::parse("one-order").unwrap();
    // Hold the product's stock lock so that both requests queue behind it.
    let held = t
        .app
        .ports()
        .locks
        .acquire(
            &[LockKey::new(format!("stock:product:{product}")).unwrap()],
            opts(1_000, 60_000),
        )
        .await
        .unwrap();
    let first = {
        let (app, cmd, key) = (t.app.clone(), cmd.clone(), key.clone());
        tokio::spawn(async move { app.create_order(cmd, Some(&key)).await })
    };
    // Wait until the first request holds the key, then let its lease lapse.
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = {
        let (app, cmd, key) = (t.app.clone(), cmd.clone(), key.clone());
        tokio::spawn(async move { app.create_order(cmd, Some(&key)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.release().await.unwrap();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert!(
        matches!(first, Err(AppError::RequestInProgress { .. })),
        "the taken-over request must not commit: {first:?}"
    );
    let order = second.expect("the retry places the order").value;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(orders, 1);
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stock, 9);
    let replay = t.app.create_order(cmd, Some(&key)).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.value, order);
    db.drop_schema().await;
}

/// Ends the server session `pid` (as an administrator would), and checks that it was there.
async fn terminate(admin: &mut sqlx::PgConnection, pid: i32) {
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin)
        .await
        .unwrap();
    assert!(killed, "backend {pid} was there to terminate");
}

/// The backend holding the advisory lock of `key` in `namespace`, found through pg_locks (a
/// bigint advisory lock shows its high and low 32 bits as classid and objid).
async fn holder_pid(admin: &mut sqlx::PgConnection, namespace: &str, key: &str) -> i32 {
    let id = lock_id(namespace, key);
    let (classid, objid) = (
        ((id as u64) >> 32) as i64,
        ((id as u64) & 0xffff_ffff) as i64,
    );
    for _ in 0..100 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        )
        .bind(classid)
        .bind(objid)
        .fetch_optional(&mut *admin)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the holder's backend of {key} does not show in pg_locks");
}

/// Takes the lock of `name` alone, answers the backend holding it, and releases it.
async fn one_grant(
    locks: &PgLockManager,
    admin: &mut sqlx::PgConnection,
    db: &TestDb,
    name: &str,
) -> i32 {
    let grant = locks
        .acquire(&[key(name)], opts(1_000, 60_000))
        .await
        .expect("granted");
    let pid = holder_pid(admin, &db.schema, name).await;
    grant.release().await.unwrap();
    pid
}

/// A released grant's session is kept by the manager for the next grant instead of going back
/// to the pool (whose check of every returned connection is a round trip): the pool still
/// counts it as checked out, and the next grant runs on the same backend. The manager counts
/// the sessions in use against the pool's size, so a crowd far larger than the pool gets all
/// its grants, one after another, and never opens more connections than the pool allows; the
/// sessions it leaves kept go back to the pool once unused for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_sessions_are_kept_for_the_next_grant() {
    let db = TestDb::new().await;
    let pool = db.pool(3).await;
    let locks = PgLockManager::new(pool.clone(), db.schema.clone());
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let before = one_grant(&locks, &mut admin, &db, "pg:kept").await;
    assert_eq!((pool.size(), pool.num_idle()), (1, 0), "kept, not pooled");
    assert_eq!(one_grant(&locks, &mut admin, &db, "pg:kept").await, before);

    let crowd: Vec<_> = (0..50)
        .map(|i| {
            let locks = locks.clone();
            tokio::spawn(async move {
                let g = locks
                    .acquire(&[key(&format!("pg:crowd:{i}"))], opts(20_000, 60_000))
                    .await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
                g.release().await
            })
        })
        .collect();
    for task in crowd {
        task.await.unwrap().expect("every grant of the crowd");
    }
    assert!(pool.size() <= 3, "{} connections", pool.size());

    // What the crowd left kept goes back to the pool (and its idle time-out) once it has sat
    // unused for a while; the one session the next grant used is kept again.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    one_grant(&locks, &mut admin, &db, "pg:kept").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // (sqlx's idle count can read as wrapped for a moment while connections come back.)
    while pool.num_idle() != (pool.size() as usize).saturating_sub(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} idle of {}",
            pool.num_idle(),
            pool.size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pool.size() >= 2, "the crowd used more than one session");
    db.drop_schema().await;
}

/// A session kept for a second or more goes back through the pool's check before it is used
/// again: its backend was terminated while it was kept, and the next grant still gets a live
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_whose_backend_died_is_not_reused() {
    let db = TestDb::new().await;
    let locks = PgLockManager::new(db.pool(2).await, db.schema.clone());
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pid = one_grant(&locks, &mut admin, &db, "pg:kept-dead").await;
    terminate(&mut admin, pid).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_ne!(
        one_grant(&locks, &mut admin, &db, "pg:kept-dead").await,
        pid
    );
    db.drop_schema().await;
}

/// Checkouts do not ping a connection that was just given back (sqlx pings it on release), but
/// one idle for a while is checked first: its backend was terminated while it sat in the pool,
/// and the next checkout gets a live connection instead of the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_whose_backend_died_is_not_handed_out() {
    let db = TestDb::new().await;
    let pool = db.pool(1).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    terminate(&mut admin, pid).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let now: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a live connection");
    assert_ne!(now, pid);
    db.drop_schema().await;
}

/// Connections of `application_name` that are inside a transaction and waiting.
async fn idle_in_transaction(admin: &mut sqlx::PgConnection, application_name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = $1 AND state = 'idle in transaction'",
    )
    .bind(application_name)
    .fetch_one(admin)
    .await
    .unwrap()
}

async fn fence_rows(admin: &mut sqlx::PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".lock_fences"))
        .fetch_one(admin)
        .await
        .unwrap()
}

/// A schema with a Postgres lock manager, sections whose units run on the sessions holding
/// their locks, and an admin connection watching those sessions.
struct Hosting {
    db: TestDb,
    locks: PgLockManager,
    sections: PgSections,
    admin: sqlx::PgConnection,
    /// The `application_name` of the lock manager's sessions.
    lock_app: String,
}

impl Hosting {
    async fn new() -> Hosting {
        let db = TestDb::new().await;
        let locks = db.locks().await;
        let sections = PgSections::on_lock_sessions(db.store(), locks.clone());
        let admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let lock_app = format!("{}-locks", db.schema);
        Hosting {
            db,
            locks,
            sections,
            admin,
            lock_app,
        }
    }

    async fn enter(&self, lock: &str, wait_ms: u64, lease_ms: u64) -> Box<dyn Section> {
        self.sections
            .enter(&[key(lock)], opts(wait_ms, lease_ms))
            .await
            .unwrap()
    }

    /// Lock sessions inside a transaction and waiting.
    async fn open_on_lock_sessions(&mut self) -> i64 {
        idle_in_transaction(&mut self.admin, &self.lock_app).await
    }

    /// Enters a section over `lock`, begins a unit and inserts product `name` there; answers
    /// the section and the session's backend pid (the one lock session in a transaction).
    async fn hosted_insert(&mut self, lock: &str, name: &str) -> (Box<dyn Section>, i32) {
        let mut section = self.enter(lock, 1_000, 60_000).await;
        insert_product(section.begin().await.unwrap(), name).await;
        let session = backends(&mut self.admin, &self.lock_app, "idle in transaction").await;
        assert_eq!(session.len(), 1);
        (section, session[0])
    }

    /// The names of the products the store holds, in a unit of its own.
    async fn product_names(&self) -> Vec<String> {
        let mut read = self.db.store().begin().await.unwrap();
        let names = read.products().list().await.unwrap();
        names.into_iter().map(|p| p.name).collect()
    }
}

async fn insert_product(uow: &mut dyn UnitOfWork, name: &str) {
    uow.products()
        .insert(NewProduct::new(name, 100, 5, 1).unwrap())
        .await
        .unwrap();
}

/// A section's units run on the session holding its locks: no connection of the store's
/// pool, no fence written, one unit after another on the same session. Sections under another
/// manager's grants run fenced units on the pool instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sections_units_run_on_the_session_holding_its_locks() {
    let mut h = Hosting::new().await;
    let mut section = h.enter("pg:host", 1_000, 60_000).await;
    insert_product(section.begin().await.unwrap(), "hosted").await;
    assert_eq!(h.open_on_lock_sessions().await, 1);
    assert_eq!(idle_in_transaction(&mut h.admin, &h.db.schema).await, 0);
    section.commit().await.unwrap();
    insert_product(section.begin().await.unwrap(), "hosted again").await;
    assert_eq!(h.open_on_lock_sessions().await, 1);
    section.finish(Outcomes::none()).await.unwrap();
    assert_eq!(fence_rows(&mut h.admin, &h.db.schema).await, 0);

    // Under another manager's grants (here the same manager, through the port): fenced.
    let fenced = PgSections::fenced(
        h.db.store(),
        std::sync::Arc::new(h.locks.clone()) as std::sync::Arc<dyn LockManager>,
    );
    let mut section = fenced
        .enter(&[key("pg:host")], opts(1_000, 60_000))
        .await
        .unwrap();
    insert_product(section.begin().await.unwrap(), "fenced").await;
    assert_eq!(idle_in_transaction(&mut h.admin, &h.db.schema).await, 1);
    section.finish(Outcomes::none()).await.unwrap();
    assert_eq!(fence_rows(&mut h.admin, &h.db.schema).await, 1);
    let mut names = h.product_names().await;
    names.sort();
    assert_eq!(names, vec!["fenced", "hosted", "hosted again"]);
    let next = h
        .locks
        .acquire(&[key("pg:host")], opts(0, 60_000))
        .await
        .expect("released");
    next.release().await.unwrap();
    h.db.drop_schema().await;
}

/// The session holding the locks dies while a unit runs on it: the unit applies nothing, and
/// the next waiter gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_unit_dies_with_its_lock_session() {
    let mut h = Hosting::new().await;
    let mut section = h.enter("pg:die", 1_000, 60_000).await;
    let uow = section.begin().await.unwrap();
    insert_product(uow, "lost").await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND state = 'idle in transaction'",
    )
    .bind(&h.lock_app)
    .fetch_one(&mut h.admin)
    .await
    .unwrap();
    assert_eq!(killed, 1);
    let next = uow
        .products()
        .insert(NewProduct::new("lost too", 100, 5, 1).unwrap())
        .await;
    assert!(matches!(next, Err(StoreError::Unavailable(_))), "{next:?}");
    let other = h
        .locks
        .acquire(&[key("pg:die")], opts(5_000, 60_000))
        .await
        .expect("the dead session's lock is free");
    let finished = section.finish(Outcomes::none()).await;
    assert!(
        matches!(finished, Err(StoreError::Unavailable(_))),
        "{finished:?}"
    );
    let third = h.locks.acquire(&[key("pg:die")], opts(200, 60_000)).await;
    assert!(matches!(third, Err(LockError::Timeout)), "{third:?}");
    other.release().await.unwrap();
    assert!(h.product_names().await.is_empty());
    h.db.drop_schema().await;
}

/// A section dropped, or whose lease runs out, while a unit runs on its session: the locks stay
/// held until the unit ends (the transaction still needs them), then are released (the
/// session is not returned to the pool holding them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_during_a_hosted_unit_happens_when_the_unit_ends() {
    let h = Hosting::new().await;

    let mut dropped = h.enter("pg:drop", 1_000, 60_000).await;
    dropped.begin().await.unwrap();
    drop(dropped);
    h.locks
        .acquire(&[key("pg:drop")], opts(5_000, 60_000))
        .await
        .expect("released once the unit ended")
        .release()
        .await
        .unwrap();

    let mut lapsing = h.enter("pg:lease", 1_000, 300).await;
    lapsing.begin().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(lapsing.lease_lost(), "the lease ran out");
    let early = h.locks.acquire(&[key("pg:lease")], opts(300, 60_000)).await;
    assert!(matches!(early, Err(LockError::Timeout)), "{early:?}");
    lapsing.rollback();
    h.locks
        .acquire(&[key("pg:lease")], opts(5_000, 60_000))
        .await
        .expect("released once the unit ended")
        .release()
        .await
        .unwrap();
    let refused = lapsing.begin().await.map(|_| ());
    assert!(
        matches!(refused, Err(StoreError::StaleFence { .. })),
        "{refused:?}"
    );
    lapsing.leave().await;
    h.db.drop_schema().await;
}

/// A unit rolled back on the lock session is rolled back at once (not left open until the
/// session's next use, for the length of a platform call say); the session keeps its locks and
/// hosts the next unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_hosted_unit_ends_at_once() {
    let mut h = Hosting::new().await;
    let mut section = h.enter("pg:rollback", 1_000, 60_000).await;
    insert_product(section.begin().await.unwrap(), "dropped").await;
    assert_eq!(h.open_on_lock_sessions().await, 1);
    section.rollback();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.open_on_lock_sessions().await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = h
        .locks
        .acquire(&[key("pg:rollback")], opts(200, 60_000))
        .await;
    assert!(matches!(other, Err(LockError::Timeout)), "{other:?}");
    insert_product(section.begin().await.unwrap(), "kept").await;
    assert_eq!(h.open_on_lock_sessions().await, 1);
    section.finish(Outcomes::none()).await.unwrap();
    assert_eq!(h.product_names().await, vec!["kept".to_owned()]);
    assert_eq!(fence_rows(&mut h.admin, &h.db.schema).await, 0);
    h.db.drop_schema().await;
}

/// The backends of `application_name` in `state`.
async fn backends(admin: &mut sqlx::PgConnection, application_name: &str, state: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = $2 ORDER BY pid",
    )
    .bind(application_name)
    .bind(state)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// A section's last unit commits and unlocks in one step: the write is there, the lock is
/// free at once, and the session is kept alive for the next grant (not closed). If the session
/// dies before the commit, nothing is applied, the error says the backend is unavailable, and
/// the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sections_last_unit_commits_and_unlocks_in_one_step() {
    let mut h = Hosting::new().await;
    let (section, session) = h.hosted_insert("pg:one-step", "committed").await;
    section.finish(Outcomes::none()).await.unwrap();
    let idle = backends(&mut h.admin, &h.lock_app, "idle").await;
    assert!(idle.contains(&session), "{idle:?} vs {session}");
    assert_eq!(
        last_query(&mut h.admin, session).await,
        "COMMIT; SELECT pg_advisory_unlock_all()",
        "one round trip"
    );
    let next = h
        .locks
        .acquire(&[key("pg:one-step")], opts(0, 60_000))
        .await
        .expect("unlocked with the commit");
    next.release().await.unwrap();
    assert_eq!(h.product_names().await, vec!["committed".to_owned()]);

    let (section, session) = h.hosted_insert("pg:one-step", "lost").await;
    terminate(&mut h.admin, session).await;
    let failed = section.finish(Outcomes::none()).await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    h.locks
        .acquire(&[key("pg:one-step")], opts(5_000, 60_000))
        .await
        .expect("the dead session's lock is free")
        .release()
        .await
        .unwrap();
    assert_eq!(h.product_names().await, vec!["committed".to_owned()]);
    h.db.drop_schema().await;
}

/// The last statement `pid` sent.
async fn last_query(admin: &mut sqlx::PgConnection, pid: i32) -> String {
    sqlx::query_scalar("SELECT query FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// A section's grant opens the first unit's transaction in its own round trip, and a unit
/// committed mid-section opens the next one with its `COMMIT`: no unit sends a `BEGIN` of its
/// own. The open transaction holds no snapshot, and leaving rolls it back with the unlock; a
/// grant that had to wait takes its locks outside any transaction and its unit begins as
/// usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sections_grant_opens_its_units_in_round_trips_it_already_makes() {
    let mut h = Hosting::new().await;
    let mut section = h.enter("pg:ready", 1_000, 60_000).await;
    let session = backends(&mut h.admin, &h.lock_app, "idle in transaction").await;
    assert_eq!(session.len(), 1, "the grant's transaction is open");
    let session = session[0];
    assert!(last_query(&mut h.admin, session)
        .await
        .starts_with("BEGIN; SELECT k,"));
    let xmin: Option<String> =
        sqlx::query_scalar("SELECT backend_xmin::text FROM pg_stat_activity WHERE pid = $1")
            .bind(session)
            .fetch_one(&mut h.admin)
            .await
            .unwrap();
    assert_eq!(xmin, None, "the open transaction holds no snapshot");

    insert_product(section.begin().await.unwrap(), "first").await;
    section.commit().await.unwrap();
    assert_eq!(last_query(&mut h.admin, session).await, "COMMIT; BEGIN");
    assert_eq!(h.product_names().await, vec!["first".to_owned()]);
    insert_product(section.begin().await.unwrap(), "second").await;
    assert_eq!(
        backends(&mut h.admin, &h.lock_app, "idle in transaction").await,
        vec![session],
        "the second unit runs on the session"
    );
    section.commit().await.unwrap();
    section.leave().await;
    assert_eq!(
        last_query(&mut h.admin, session).await,
        "ROLLBACK; SELECT pg_advisory_unlock_all()"
    );
    assert!(backends(&mut h.admin, &h.lock_app, "idle")
        .await
        .contains(&session));

    // A grant that waits: the holder's leaving lets it in; its unit then begins and commits.
    let holder = h.enter("pg:ready", 1_000, 60_000).await;
    let sections = h.sections.clone();
    let waiter = tokio::spawn(async move {
        sections
            .enter(&[key("pg:ready")], opts(5_000, 60_000))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.leave().await;
    let mut waited = waiter.await.unwrap();
    insert_product(waited.begin().await.unwrap(), "third").await;
    waited.finish(Outcomes::none()).await.unwrap();
    let mut names = h.product_names().await;
    names.sort();
    assert_eq!(names, vec!["first", "second", "third"]);
    assert_eq!(h.open_on_lock_sessions().await, 0);
    h.db.drop_schema().await;
}

/// Every pooled connection runs its transactions at READ COMMITTED even where the server (or
/// the connection's own startup options) default to another level: a grant opens its first
/// unit's transaction before its lock is granted, which is only safe when each statement takes
/// a fresh snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_transactions_run_at_read_committed_whatever_the_default() {
    let db = TestDb::new().await;
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}options=-c%20default_transaction_isolation%3Dserializable",
        db.url
    );
    let mut plain = sqlx::PgConnection::connect(&url).await.unwrap();
    let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    assert_eq!(level, "serializable", "the startup option took effect");
    let pool = stockade_postgres::connect(&stockade_postgres::PgConfig {
        schema: Some(db.schema.clone()),
        ..stockade_postgres::PgConfig::new(url)
    })
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let level: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(level, "read committed");
    drop(tx);
    db.drop_schema().await;
}
