//! The Postgres [`ChangeFeed`]: `NOTIFY` on one channel of the database every instance shares,
//! followed by one `LISTEN`ing connection per process.

use crate::error::backend;
use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::time::Duration;
use stockade_application::ports::changes::{Change, ChangeFeed};
use stockade_application::BackendError;
use tokio::sync::broadcast;

/// The channel every instance notifies and listens on.
const CHANNEL: &str = "stockade_changes";

/// A [`ChangeFeed`] over `LISTEN` / `NOTIFY`. Cheap to clone; clones share the listener.
#[derive(Debug, Clone)]
pub struct PgChangeFeed {
    pool: PgPool,
    tx: broadcast::Sender<Change>,
}

impl PgChangeFeed {
    /// Starts following the database's change channel in a task of its own (for as long as a
    /// clone of the feed lives), and publishes through `pool`.
    pub fn start(pool: PgPool) -> PgChangeFeed {
        let tx = broadcast::channel(1_024).0;
        let feed = PgChangeFeed {
            pool: pool.clone(),
            tx: tx.clone(),
        };
        let weak = tx.downgrade();
        drop(tx);
        tokio::spawn(follow(pool, weak));
        feed
    }
}

/// Forwards notifications to the feed's subscribers; after a broken connection (when changes
/// may have been missed) sends `Everything`. Ends when every feed is gone.
async fn follow(pool: PgPool, weak: broadcast::WeakSender<Change>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                if weak.upgrade().is_none() {
                    return;
                }
                tracing::warn!(error = %e, "change feed: cannot listen; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        // Whatever happened while not listening is unknown.
        match weak.upgrade() {
            Some(tx) => {
                let _ = tx.send(Change::Everything);
            }
            None => return,
        }
        // `None` or an error: the connection was lost; a new one is made above.
        while let Ok(Some(n)) = listener.try_recv().await {
            match weak.upgrade() {
                Some(tx) => {
                    let _ = tx.send(Change::decode(n.payload()));
                }
                None => return,
            }
        }
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn publish(&self, change: Change) -> Result<(), BackendError> {
        sqlx::query!("SELECT pg_notify($1, $2)", CHANNEL, change.encode())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}
