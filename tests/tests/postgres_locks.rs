//! What the Postgres lock manager promises beyond the shared contract.

#![allow(clippy::unwrap_used)]

use sqlx::Connection;
use std::time::Duration;
use stockade_application::ports::lock::{LockError, LockManager};
use stockade_postgres::lock_id;
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
    // Find the holder's backend through pg_locks (a bigint advisory lock shows its high and
    // low 32 bits as classid and objid) and terminate it.
    let id = lock_id(&db.schema, "pg:terminate");
    let (classid, objid) = (
        ((id as u64) >> 32) as i64,
        ((id as u64) & 0xffff_ffff) as i64,
    );
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut pid: Option<i32> = None;
    for _ in 0..100 {
        pid = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        )
        .bind(classid)
        .bind(objid)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
        if pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = pid.expect("the holder's backend shows in pg_locks");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
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
