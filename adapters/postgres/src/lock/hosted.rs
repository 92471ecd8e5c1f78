//! A unit of work's transaction run on the session of the grant that holds its locks.

use super::held::{After, Shared};
use super::{Acquiring, Conn, PgHeld};
use std::sync::Arc;

/// A unit of work's transaction on the session that holds its locks (borrowed from the grant,
/// given back when the unit ends). The locks cannot be lost while it runs: if the session dies,
/// so does the transaction.
pub(crate) struct HostedSession {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    after: After,
}

impl HostedSession {
    /// Begins a transaction on `held`'s session; `None` if the session is busy (another unit
    /// runs on it) or gone (released, or its lease ran out).
    pub(crate) async fn begin(held: &PgHeld) -> Result<Option<HostedSession>, sqlx::Error> {
        let Some((conn, ready)) = held.shared.lend() else {
            return Ok(None);
        };
        // Open from here on: dropped before `COMMIT` succeeds, it is rolled back.
        let mut hosted = HostedSession {
            shared: held.shared.clone(),
            conn: Some(conn),
            after: After::Open,
        };
        if !ready {
            sqlx::Executor::execute(hosted.conn_mut(), "BEGIN").await?;
        }
        Ok(Some(hosted))
    }

    /// Commits, and in the same round trip (`COMMIT; BEGIN`) opens the transaction of the
    /// grant's next unit (a payment's confirmation after its debit, say); the release rolls it
    /// back if none comes.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let (done, failure) = run_both(self.conn_mut(), "COMMIT; BEGIN").await;
        match (done, failure) {
            (2, None) => {
                self.after = After::Ready;
                Ok(())
            }
            // Committed, but the session did not open the next transaction: the next unit
            // begins its own (if the session still works).
            (1, _) => {
                self.after = After::Closed;
                Ok(())
            }
            (_, failure) => {
                Err(failure.unwrap_or_else(|| sqlx::Error::Protocol("no answer to COMMIT".into())))
            }
        }
    }

    /// Commits and ends the grant in one round trip: `COMMIT; SELECT pg_advisory_unlock_all()`
    /// as one simple query, after which the connection is parked for the next grant and the grant's
    /// release has nothing left to do. `Ok` once the `COMMIT` succeeded; an unlock failing
    /// after it closes the session instead, which ends its locks just the same. If the `COMMIT`
    /// failed, or its answer never came, the session is closed (so whatever it had not
    /// committed is rolled back and its locks end) and the error returned; so it is if this
    /// future is dropped midway.
    pub(crate) async fn commit_and_unlock(mut self) -> Result<(), sqlx::Error> {
        let mut closing = Acquiring {
            conn: self.conn.take(),
        };
        self.after = After::Closed;
        let (done, failure) = match closing.conn.as_mut() {
            Some(conn) => run_both(conn, "COMMIT; SELECT pg_advisory_unlock_all()").await,
            None => (0, None),
        };
        // The grant is over whatever happened: its session is unlocked or being closed.
        self.shared.end_hosting();
        match (done, failure) {
            (2, None) => {
                // Unlocked: parked for the next grant.
                if let Some(conn) = closing.conn.take() {
                    conn.park();
                }
                Ok(())
            }
            (0, failure) => {
                Err(failure.unwrap_or_else(|| sqlx::Error::Protocol("no answer to COMMIT".into())))
            }
            (_, failure) => {
                // The first statement to complete is the COMMIT.
                let error = failure.map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(%error, "unlock after commit failed; closing the lock session");
                Ok(())
            }
        }
    }

    fn conn_mut(&mut self) -> &mut sqlx::PgConnection {
        // Present from `begin` until drop.
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a hosted session keeps its connection until dropped"),
        }
    }
}

/// Runs a simple query of two statements, the first a `COMMIT`: how many completed, and the
/// error that stopped the rest, if one did.
async fn run_both(conn: &mut sqlx::PgConnection, sql: &'static str) -> (u8, Option<sqlx::Error>) {
    use futures::StreamExt;
    let mut done = 0;
    let mut answers = sqlx::raw_sql(sql).fetch_many(conn);
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(sqlx::Either::Left(_)) => done += 1,
            Ok(sqlx::Either::Right(_)) => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

impl std::ops::Deref for HostedSession {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("a hosted session keeps its connection until dropped"),
        }
    }
}

impl std::ops::DerefMut for HostedSession {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        self.conn_mut()
    }
}

impl Drop for HostedSession {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            Shared::give_back(&self.shared, conn, self.after);
        }
    }
}
