//! The Postgres [`IdempotencyStore`]: a claim is one `INSERT … ON CONFLICT DO UPDATE` that only
//! takes over a record whose lease or TTL has run out, so concurrent claims race inside the
//! database and exactly one wins. Leases and TTLs use the database's clock, which every
//! instance shares.
//!
//! When the store is Postgres on the same database, successful outcomes are written by the
//! business transaction itself ([`crate::PgSections::recording_outcomes`]), and this store only claims,
//! abandons and records refusals. Its pool may then run with `synchronous_commit = off`: a
//! claim lost in a server crash makes the request's own commit fail with `TicketLost` (nothing
//! is applied) and a lost refusal is simply computed again by the retry.

use crate::error::backend;
use crate::sessions::Sessions;
use async_trait::async_trait;
use sqlx::postgres::types::PgInterval;
use sqlx::PgPool;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::idempotency::{
    Begin, Claim, Fingerprint, IdempotencyError, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_domain::IdempotencyKey;

#[derive(Clone)]
pub struct PgIdempotencyStore {
    sessions: Sessions,
    ids: Arc<dyn IdGenerator>,
}

impl fmt::Debug for PgIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgIdempotencyStore").finish_non_exhaustive()
    }
}

impl PgIdempotencyStore {
    /// A store on a pool it may share with others.
    pub fn new(pool: PgPool, ids: Arc<dyn IdGenerator>) -> Self {
        PgIdempotencyStore {
            sessions: Sessions::shared(pool, "store"),
            ids,
        }
    }

    /// A store on a pool of its own: it keeps its connections checked out between requests,
    /// so that a claim is one round trip (no check of the connection as it goes back to the
    /// pool, see `sessions.rs`). Nothing else may use `pool`.
    pub fn on_own_pool(pool: PgPool, ids: Arc<dyn IdGenerator>) -> Self {
        PgIdempotencyStore {
            sessions: Sessions::own(pool, "claims"),
            ids,
        }
    }
}

fn err(e: sqlx::Error) -> IdempotencyError {
    IdempotencyError::Unavailable(backend(e))
}

/// `d` as an interval of whole milliseconds (at least one).
fn interval(d: Duration) -> PgInterval {
    let millis = i64::try_from(d.as_millis().max(1)).unwrap_or(i64::MAX / 1_000);
    PgInterval {
        months: 0,
        days: 0,
        microseconds: millis.saturating_mul(1_000),
    }
}

/// A record a claim did not win, as the claim reads it.
#[derive(Debug, sqlx::FromRow)]
struct Record {
    fingerprint: String,
    state: String,
    ok: Option<bool>,
    body: Option<Vec<u8>>,
    /// How long its lease has left, in milliseconds (at least one).
    left_ms: i64,
}

/// What a claim that lost answers, from the record that won.
fn held_by_another(record: Record, fingerprint: &Fingerprint) -> Begin {
    if record.fingerprint != fingerprint.0 {
        return Begin::Mismatch;
    }
    if record.state == "DONE" {
        return Begin::Replay(StoredOutcome {
            ok: record.ok.unwrap_or(false),
            body: record.body.unwrap_or_default(),
        });
    }
    Begin::InProgress {
        retry_after: Duration::from_millis(u64::try_from(record.left_ms).unwrap_or(1)),
    }
}

impl PgIdempotencyStore {
    /// [`IdempotencyStore::complete_many`]'s statement: which `(scope, key, owner)` it completed.
    async fn complete_together<'a>(
        &self,
        outcomes: &'a [(Ticket, StoredOutcome)],
        ttl: Duration,
    ) -> Result<HashSet<(&'a str, &'a str, &'a str)>, sqlx::Error> {
        let mut sorted: Vec<&(Ticket, StoredOutcome)> = outcomes.iter().collect();
        sorted.sort_by(|(a, _), (b, _)| {
            (a.scope.0.as_str(), a.key.as_str()).cmp(&(b.scope.0.as_str(), b.key.as_str()))
        });
        let scope: Vec<&str> = sorted.iter().map(|(t, _)| t.scope.0.as_str()).collect();
        let key: Vec<&str> = sorted.iter().map(|(t, _)| t.key.as_str()).collect();
        let owner: Vec<&str> = sorted.iter().map(|(t, _)| t.owner.as_str()).collect();
        let ok: Vec<bool> = sorted.iter().map(|(_, o)| o.ok).collect();
        let body: Vec<&[u8]> = sorted.iter().map(|(_, o)| o.body.as_slice()).collect();
        let mut session = self.sessions.acquire().await?;
        let done = sqlx::query!(
            "UPDATE idempotency_keys k
             SET state = 'DONE', ok = t.ok, body = t.body, expires_at = now() + $6::interval,
                 updated_at = now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bytea[])
                  AS t(scope, key, owner, ok, body)
             WHERE k.scope = t.scope AND k.key = t.key AND k.owner = t.owner
               AND k.state = 'IN_FLIGHT'
             RETURNING k.scope, k.key, k.owner",
            &scope as &[&str],
            &key as &[&str],
            &owner as &[&str],
            &ok as &[bool],
            &body as &[&[u8]],
            interval(ttl),
        )
        .fetch_all(&mut *session)
        .await?;
        session.park();
        Ok(outcomes
            .iter()
            .map(|(t, _)| (t.scope.0.as_str(), t.key.as_str(), t.owner.as_str()))
            .filter(|k| {
                done.iter()
                    .any(|d| d.scope == k.0 && d.key == k.1 && d.owner == k.2)
            })
            .collect())
    }

    /// [`IdempotencyStore::begin_many`]'s two statements; fills the answers it can decide.
    async fn claim_together(
        &self,
        claims: &[Claim],
        lease: Duration,
        answers: &mut [Option<Result<Begin, IdempotencyError>>],
    ) -> Result<(), sqlx::Error> {
        // The first claim of each key, in key order.
        let mut firsts: Vec<usize> = Vec::with_capacity(claims.len());
        let mut seen = HashSet::new();
        for (i, c) in claims.iter().enumerate() {
            if seen.insert((c.scope.0.as_str(), c.key.as_str())) {
                firsts.push(i);
            }
        }
        firsts.sort_by(|a, b| {
            let (a, b) = (&claims[*a], &claims[*b]);
            (a.scope.0.as_str(), a.key.as_str()).cmp(&(b.scope.0.as_str(), b.key.as_str()))
        });
        let owners: Vec<String> = firsts.iter().map(|_| self.ids.unique()).collect();
        let scopes: Vec<&str> = firsts.iter().map(|i| claims[*i].scope.0.as_str()).collect();
        let keys: Vec<&str> = firsts.iter().map(|i| claims[*i].key.as_str()).collect();
        let prints: Vec<&str> = firsts
            .iter()
            .map(|i| claims[*i].fingerprint.0.as_str())
            .collect();
        let mut session = self.sessions.acquire().await?;
        let won = sqlx::query!(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, owner, state, lease_until)
             SELECT s, k, f, o, 'IN_FLIGHT', now() + $5::interval
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                  AS t(s, k, f, o, n)
             ORDER BY n
             ON CONFLICT (scope, key) DO UPDATE
               SET fingerprint = EXCLUDED.fingerprint, owner = EXCLUDED.owner,
                   state = 'IN_FLIGHT', lease_until = EXCLUDED.lease_until,
                   ok = NULL, body = NULL, expires_at = NULL, updated_at = now()
               WHERE (idempotency_keys.state = 'IN_FLIGHT' AND idempotency_keys.lease_until <= now()
                      AND idempotency_keys.fingerprint = EXCLUDED.fingerprint)
                  OR (idempotency_keys.state = 'DONE' AND idempotency_keys.expires_at <= now())
             RETURNING scope, key",
            &scopes as &[&str],
            &keys as &[&str],
            &prints as &[&str],
            &owners as &[String],
            interval(lease),
        )
        .fetch_all(&mut *session)
        .await?;
        let won: HashSet<(String, String)> = won.into_iter().map(|w| (w.scope, w.key)).collect();
        let mut lost: Vec<usize> = Vec::new();
        for (n, i) in firsts.iter().enumerate() {
            let c = &claims[*i];
            if won.contains(&(c.scope.0.clone(), c.key.as_str().to_owned())) {
                answers[*i] = Some(Ok(Begin::Started(Ticket {
                    scope: c.scope.clone(),
                    key: c.key.clone(),
                    owner: owners[n].clone(),
                })));
            } else {
                lost.push(*i);
            }
        }
        if !lost.is_empty() {
            let scopes: Vec<&str> = lost.iter().map(|i| claims[*i].scope.0.as_str()).collect();
            let keys: Vec<&str> = lost.iter().map(|i| claims[*i].key.as_str()).collect();
            let rows = sqlx::query!(
                r#"SELECT i.scope, i.key, i.fingerprint, i.state, i.ok, i.body,
                        GREATEST(EXTRACT(EPOCH FROM (i.lease_until - now())) * 1000, 1)::BIGINT AS "left_ms!"
                 FROM idempotency_keys i
                 JOIN unnest($1::text[], $2::text[]) AS t(s, k) ON i.scope = t.s AND i.key = t.k"#,
                &scopes as &[&str],
                &keys as &[&str],
            )
            .fetch_all(&mut *session)
            .await?;
            for row in rows {
                if let Some(i) = lost.iter().find(|i| {
                    claims[**i].scope.0 == row.scope && claims[**i].key.as_str() == row.key
                }) {
                    let record = Record {
                        fingerprint: row.fingerprint,
                        state: row.state,
                        ok: row.ok,
                        body: row.body,
                        left_ms: row.left_ms,
                    };
                    answers[*i] = Some(Ok(held_by_another(record, &claims[*i].fingerprint)));
                }
            }
        }
        session.park();
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Begin, IdempotencyError> {
        let mut session = self.sessions.acquire().await.map_err(err)?;
        for _ in 0..5 {
            let owner = self.ids.unique();
            let claimed = sqlx::query_scalar!(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, owner, state, lease_until)
                 VALUES ($1, $2, $3, $4, 'IN_FLIGHT', now() + $5::interval)
                 ON CONFLICT (scope, key) DO UPDATE
                   SET fingerprint = EXCLUDED.fingerprint, owner = EXCLUDED.owner,
                       state = 'IN_FLIGHT', lease_until = EXCLUDED.lease_until,
                       ok = NULL, body = NULL, expires_at = NULL, updated_at = now()
                   WHERE (idempotency_keys.state = 'IN_FLIGHT' AND idempotency_keys.lease_until <= now()
                          AND idempotency_keys.fingerprint = EXCLUDED.fingerprint)
                      OR (idempotency_keys.state = 'DONE' AND idempotency_keys.expires_at <= now())
                 RETURNING owner",
                &scope.0,
                key.as_str(),
                &fingerprint.0,
                &owner,
                interval(lease),
            )
            .fetch_optional(&mut *session)
            .await
            .map_err(err)?;
            if claimed.is_some() {
                session.park();
                return Ok(Begin::Started(Ticket {
                    scope: scope.clone(),
                    key: key.clone(),
                    owner,
                }));
            }
            let row = sqlx::query_as!(
                Record,
                r#"SELECT fingerprint, state, ok, body,
                        GREATEST(EXTRACT(EPOCH FROM (lease_until - now())) * 1000, 1)::BIGINT AS "left_ms!"
                 FROM idempotency_keys WHERE scope = $1 AND key = $2"#,
                &scope.0,
                key.as_str(),
            )
            .fetch_optional(&mut *session)
            .await
            .map_err(err)?;
            let Some(row) = row else {
                // Abandoned between the two statements: claim again.
                continue;
            };
            session.park();
            return Ok(held_by_another(row, fingerprint));
        }
        session.park();
        Err(IdempotencyError::Unavailable(backend(
            "the idempotency record kept changing under the claim",
        )))
    }

    /// The first claim of each `(scope, key)` in one statement (a multi-row upsert over
    /// `unnest`, in key order so that concurrent batches lock rows in one order), the records
    /// it did not win read in a second; a later claim of the same key, or one whose record
    /// vanished between the two, is then claimed alone.
    async fn begin_many(
        &self,
        claims: &[Claim],
        lease: Duration,
    ) -> Vec<Result<Begin, IdempotencyError>> {
        let mut answers: Vec<Option<Result<Begin, IdempotencyError>>> =
            claims.iter().map(|_| None).collect();
        if let Err(e) = self.claim_together(claims, lease, &mut answers).await {
            let reason = e.to_string();
            for answer in answers.iter_mut().filter(|a| a.is_none()) {
                *answer = Some(Err(IdempotencyError::Unavailable(backend(reason.clone()))));
            }
        }
        let mut out = Vec::with_capacity(claims.len());
        for (claim, answer) in claims.iter().zip(answers) {
            out.push(match answer {
                Some(answer) => answer,
                None => {
                    self.begin(&claim.scope, &claim.key, &claim.fingerprint, lease)
                        .await
                }
            });
        }
        out
    }

    async fn complete(
        &self,
        ticket: &Ticket,
        outcome: StoredOutcome,
        ttl: Duration,
    ) -> Result<(), IdempotencyError> {
        let mut session = self.sessions.acquire().await.map_err(err)?;
        let done = sqlx::query!(
            "UPDATE idempotency_keys
             SET state = 'DONE', ok = $4, body = $5, expires_at = now() + $6::interval, updated_at = now()
             WHERE scope = $1 AND key = $2 AND owner = $3 AND state = 'IN_FLIGHT'",
            &ticket.scope.0,
            ticket.key.as_str(),
            &ticket.owner,
            outcome.ok,
            &outcome.body,
            interval(ttl),
        )
        .execute(&mut *session)
        .await
        .map_err(err)?;
        session.park();
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::TicketLost)
        }
    }

    /// One `UPDATE … FROM unnest` for all of them (in key order); a ticket whose record it did
    /// not complete is lost.
    async fn complete_many(
        &self,
        outcomes: &[(Ticket, StoredOutcome)],
        ttl: Duration,
    ) -> Vec<Result<(), IdempotencyError>> {
        match self.complete_together(outcomes, ttl).await {
            Ok(done) => outcomes
                .iter()
                .map(|(t, _)| {
                    if done.contains(&(t.scope.0.as_str(), t.key.as_str(), t.owner.as_str())) {
                        Ok(())
                    } else {
                        Err(IdempotencyError::TicketLost)
                    }
                })
                .collect(),
            Err(e) => {
                let reason = e.to_string();
                outcomes
                    .iter()
                    .map(|_| Err(IdempotencyError::Unavailable(backend(reason.clone()))))
                    .collect()
            }
        }
    }

    async fn abandon(&self, ticket: &Ticket) -> Result<(), IdempotencyError> {
        let mut session = self.sessions.acquire().await.map_err(err)?;
        let done = sqlx::query!(
            "DELETE FROM idempotency_keys
             WHERE scope = $1 AND key = $2 AND owner = $3 AND state = 'IN_FLIGHT'",
            &ticket.scope.0,
            ticket.key.as_str(),
            &ticket.owner,
        )
        .execute(&mut *session)
        .await
        .map_err(err)?;
        session.park();
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(IdempotencyError::TicketLost)
        }
    }

    async fn purge_expired(&self) -> Result<u64, IdempotencyError> {
        let mut session = self.sessions.acquire().await.map_err(err)?;
        let done = sqlx::query!(
            "DELETE FROM idempotency_keys
             WHERE (state = 'DONE' AND expires_at <= now())
                OR (state = 'IN_FLIGHT' AND lease_until <= now())",
        )
        .execute(&mut *session)
        .await
        .map_err(err)?;
        session.park();
        Ok(done.rows_affected())
    }
}
