//! The `AccountStore` contract: one account per email under any concurrency, fresh ids above
//! the demo users, and the window of failed sign-ins (recorded, read since a time oldest
//! first, forgotten). Times are passed in explicitly, so nothing here sleeps.

use std::collections::HashSet;
use std::sync::Arc;
use stockade_application::ports::accounts::{
    AccountError, AccountStore, NewAccount, FIRST_ACCOUNT_ID,
};
use stockade_domain::{Email, Timestamp, UserId};

use super::store::unique_id;

/// 2026-01-01T00:00:00Z.
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn email(tag: &str) -> Email {
    Email::parse(&format!("{tag}-{}@example.com", unique_id())).unwrap()
}

fn new(email: &Email, name: &str) -> NewAccount {
    NewAccount {
        email: email.clone(),
        name: name.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
    }
}

fn secs(s: i64) -> Timestamp {
    NOW.plus_millis(s * 1_000)
}

/// A created account is found by email and by id, with a fresh id above the demo users; its
/// email cannot be taken again.
pub async fn created_accounts_are_found_and_their_email_is_taken(store: Arc<dyn AccountStore>) {
    let ann = email("ann");
    let a = store.create(new(&ann, "Ann")).await.unwrap();
    assert!(a.id.get() >= FIRST_ACCOUNT_ID, "{:?}", a.id);
    assert_eq!((a.email.clone(), a.name.as_str()), (ann.clone(), "Ann"));
    assert_eq!(store.by_email(&ann).await.unwrap(), Some(a.clone()));
    assert_eq!(store.by_id(a.id).await.unwrap(), Some(a.clone()));

    let again = store.create(new(&ann, "Other")).await;
    assert!(matches!(again, Err(AccountError::EmailTaken)), "{again:?}");
    assert_eq!(store.by_email(&ann).await.unwrap(), Some(a.clone()));

    let bob = store.create(new(&email("bob"), "Bob")).await.unwrap();
    assert_ne!(bob.id, a.id);
    assert!(bob.id.get() >= FIRST_ACCOUNT_ID);

    assert_eq!(store.by_email(&email("nobody")).await.unwrap(), None);
    for demo in [1, 500, 1_000] {
        assert_eq!(store.by_id(UserId::new(demo).unwrap()).await.unwrap(), None);
    }
}

/// 100 creates of one email at once: exactly one account, 99 `EmailTaken`.
pub async fn one_account_per_email_under_100_concurrent_creates(store: Arc<dyn AccountStore>) {
    let shared = email("race");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            store.create(new(&shared, &format!("n{i}"))).await
        }));
    }
    let (mut made, mut taken) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => made.push(a),
            Err(AccountError::EmailTaken) => taken += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((made.len(), taken), (1, 99));
    assert_eq!(store.by_email(&shared).await.unwrap(), made.pop());
}

/// Distinct emails created at once get distinct ids.
pub async fn concurrent_accounts_get_distinct_ids(store: Arc<dyn AccountStore>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create(new(&email("many"), "M")).await.unwrap().id
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.unwrap()));
    }
}

/// Failures are counted per email since a time, oldest first; old ones may be forgotten as
/// new ones arrive; `clear_failures` forgets them all.
pub async fn failures_are_counted_per_email_within_the_window(store: Arc<dyn AccountStore>) {
    let (ann, bob) = (email("ann"), email("bob"));
    assert!(store.failures(&ann, NOW).await.unwrap().is_empty());
    for s in [30, 10, 20] {
        store
            .record_failure(&ann, secs(s), secs(-900))
            .await
            .unwrap();
    }
    store
        .record_failure(&bob, secs(15), secs(-900))
        .await
        .unwrap();
    assert_eq!(
        store.failures(&ann, NOW).await.unwrap(),
        vec![secs(10), secs(20), secs(30)]
    );
    assert_eq!(
        store.failures(&ann, secs(20)).await.unwrap(),
        vec![secs(20), secs(30)],
        "a failure at the start of the window counts"
    );
    assert!(store.failures(&ann, secs(31)).await.unwrap().is_empty());
    assert_eq!(store.failures(&bob, NOW).await.unwrap(), vec![secs(15)]);

    // Fifteen minutes on, the old failures have left the window.
    store
        .record_failure(&ann, secs(1_000), secs(100))
        .await
        .unwrap();
    assert_eq!(
        store.failures(&ann, secs(100)).await.unwrap(),
        vec![secs(1_000)]
    );

    store.clear_failures(&ann).await.unwrap();
    assert!(store.failures(&ann, NOW).await.unwrap().is_empty());
    assert_eq!(store.failures(&bob, NOW).await.unwrap(), vec![secs(15)]);
}

/// Failures recorded at once are all counted.
pub async fn concurrent_failures_are_all_counted(store: Arc<dyn AccountStore>) {
    let ann = email("ann");
    let mut tasks = Vec::new();
    for s in 0..10 {
        let store = store.clone();
        let ann = ann.clone();
        tasks.push(tokio::spawn(async move {
            store.record_failure(&ann, secs(s), secs(-900)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.failures(&ann, NOW).await.unwrap().len(), 10);
}

/// Instantiates the `AccountStore` contract for one adapter. `$make` is an async expression
/// giving a fresh `Arc<dyn AccountStore>`; the invoking module declares `CONTRACT_TIME`.
#[macro_export]
macro_rules! accounts_contract {
    ($make:expr) => {
        $crate::accounts_contract!(@one $make, created_accounts_are_found_and_their_email_is_taken);
        $crate::accounts_contract!(@one $make, one_account_per_email_under_100_concurrent_creates);
        $crate::accounts_contract!(@one $make, concurrent_accounts_get_distinct_ids);
        $crate::accounts_contract!(@one $make, failures_are_counted_per_email_within_the_window);
        $crate::accounts_contract!(@one $make, concurrent_failures_are_all_counted);
    };
    (@one $make:expr, $name:ident) => {
        #[test]
        fn $name() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::accounts::$name($make.await).await;
            });
        }
    };
}
