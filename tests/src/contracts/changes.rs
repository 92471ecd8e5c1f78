//! The `ChangeFeed` contract: a published change reaches every subscriber of every instance on
//! the same backend, the publisher's own included, and `publish` does not wait for them.

use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::changes::{Change, ChangeFeed};
use stockade_domain::ProductId;
use tokio::sync::broadcast;

/// The next change other than `Everything` (which a feed may send whenever it (re)connects).
async fn next_named(rx: &mut broadcast::Receiver<Change>) -> Change {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(Change::Everything) => continue,
                Ok(change) => return change,
                Err(e) => panic!("the feed failed: {e:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a change within 5 s")
}

/// `a` and `b` are two instances' feeds on one backend (the same feed twice where the backend
/// is one process). Changes published by either reach both, in the order each published them.
pub async fn a_change_reaches_every_instance(a: Arc<dyn ChangeFeed>, b: Arc<dyn ChangeFeed>) {
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    // A feed that listens through a connection of its own may need a moment to listen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = crate::contracts::store::unique_id();
    let (p, q) = (ProductId::new(id).unwrap(), ProductId::new(id + 1).unwrap());
    a.publish(Change::Restocked(p)).await.unwrap();
    a.publish(Change::Restocked(q)).await.unwrap();
    for rx in [&mut on_a, &mut on_b] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let c = next_named(rx).await;
            // Other tests may share the backend: keep only this test's changes.
            if c == Change::Restocked(p) || c == Change::Restocked(q) {
                seen.push(c);
            }
        }
        assert_eq!(seen, vec![Change::Restocked(p), Change::Restocked(q)]);
    }
    b.publish(Change::Restocked(p)).await.unwrap();
    loop {
        if next_named(&mut on_a).await == Change::Restocked(p) {
            break;
        }
    }
}

/// Text forms survive the trip; anything unreadable is `Everything`.
pub fn changes_encode_and_decode() {
    let p = ProductId::new(42).unwrap();
    assert_eq!(
        Change::decode(&Change::Restocked(p).encode()),
        Change::Restocked(p)
    );
    assert_eq!(
        Change::decode(&Change::Everything.encode()),
        Change::Everything
    );
    assert_eq!(
        Change::decode(&Change::Edited(p).encode()),
        Change::Edited(p)
    );
    assert_ne!(Change::Edited(p).encode(), Change::Restocked(p).encode());
    assert_eq!(Change::decode("restocked:-1"), Change::Everything);
    assert_eq!(Change::decode("edited:x"), Change::Everything);
    assert_eq!(Change::decode("garbage"), Change::Everything);
}
