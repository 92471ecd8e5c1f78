//! ChargeBalance, GetBalance and the ledger listing.

use crate::combine::{Combiner, Lost};
use crate::idempotent::{self, Answered, Settled};
use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::keys;
use crate::ports::store::{LedgerChange, StoreError};
use crate::views::{BalanceView, ChargeReceipt, TransactionView};
use crate::{AppError, Replayable, Stockade};
use std::collections::HashSet;
use std::time::Duration;
use stockade_domain::{ChargeAmount, IdempotencyKey, LedgerKind, UserId};

/// The per-wallet queues of charges.
pub(crate) type ChargeLanes = Combiner<UserId, ChargeJob, Settled<ChargeReceipt>>;

/// One charge on its way through a turn.
#[derive(Debug)]
pub(crate) struct ChargeJob {
    cmd: ChargeBalance,
    /// The ledger reference the charge is made under, if keyed.
    reference: Option<String>,
    ticket: Option<Ticket>,
}

/// Add points to a wallet.
#[derive(Debug, Clone)]
pub struct ChargeBalance {
    pub user_id: UserId,
    pub amount: ChargeAmount,
}

impl Stockade {
    /// Charges a wallet. With an idempotency key the charge happens at most once: the key is
    /// also the ledger entry's reference, so even a retry that runs after its first attempt's
    /// in-flight lease ran out cannot charge twice.
    ///
    /// # Errors
    /// `CHARGE_LIMIT_EXCEEDED` past the wallet cap; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`; the
    /// idempotency outcomes.
    #[tracing::instrument(skip_all, fields(user = %cmd.user_id, amount = cmd.amount.money().won()))]
    pub async fn charge(
        &self,
        cmd: ChargeBalance,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<ChargeReceipt>, AppError> {
        let canonical = format!("amount={}", cmd.amount.money().won());
        let reference = key.map(|k| format!("charge:{}:{}", cmd.user_id, k));
        let user = cmd.user_id;
        let key = key.cloned();
        self.detached(move |app| async move {
            app.idempotent(user, key.as_ref(), "charge", canonical, |ticket| {
                let app = &app;
                async move {
                    let job = ChargeJob {
                        cmd,
                        reference,
                        ticket,
                    };
                    app.charge_combined(job).await
                }
            })
            .await
        })
        .await
    }

    /// Queues a charge on its wallet's lane: charges of one wallet that arrive together run in
    /// one turn (docs/decisions/0012).
    async fn charge_combined(&self, job: ChargeJob) -> Settled<ChargeReceipt> {
        let app = self.clone();
        let user = job.cmd.user_id;
        self.core
            .charge_lanes
            .submit(user, job, move |jobs| {
                let app = app.clone();
                async move { app.charge_batch(jobs).await }
            })
            .await
            .unwrap_or_else(|Lost| {
                Settled::unrecorded(Err(AppError::Internal("the charge's turn failed".into())))
            })
    }

    /// Runs one batch of charges of one wallet and answers each: a turn for all of them, or
    /// each alone (in order) when the store refused a write the turn could not foresee.
    async fn charge_batch(&self, jobs: Vec<ChargeJob>) -> Vec<Settled<ChargeReceipt>> {
        metrics::histogram!("stockade_combine_batch_size", "use_case" => "charge")
            .record(jobs.len() as f64);
        if jobs.len() > 1 {
            match self.retry_contention(|| self.charge_turn(&jobs)).await {
                Ok(Some(answers)) => return answers,
                Err(e) => {
                    return jobs
                        .iter()
                        .map(|_| Settled::unrecorded(Err(e.shared())))
                        .collect()
                }
                Ok(None) => {
                    tracing::debug!(
                        batch = jobs.len(),
                        "a charge of the turn was refused; one by one"
                    );
                }
            }
        }
        let mut answers = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let alone = self
                .retry_contention(|| {
                    self.charge_once(job.cmd.clone(), job.reference.clone(), job.ticket.as_ref())
                })
                .await;
            answers.push(alone.into());
        }
        answers
    }

    /// One turn of charges of one wallet: one grant, one unit, each charge in arrival order
    /// against what the ones before it left (the unit reads its own writes), the outcomes
    /// recorded with the commit. `None`: a write the turn cannot answer as serial execution
    /// would (a reference already taken), nothing kept.
    async fn charge_turn(
        &self,
        jobs: &[ChargeJob],
    ) -> Result<Option<Vec<Settled<ChargeReceipt>>>, AppError> {
        let Some(first) = jobs.first() else {
            return Ok(Some(Vec::new()));
        };
        let user = first.cmd.user_id;
        let mut guard = self.enter(&[keys::balance(user)]).await?;
        let uow = guard.begin().await?;
        let now = self.core.ports.clock.now();
        let mut results: Vec<Result<ChargeReceipt, AppError>> = Vec::with_capacity(jobs.len());
        let mut seen: HashSet<&str> = HashSet::new();
        for job in jobs {
            if let Some(reference) = job.reference.as_deref() {
                if !seen.insert(reference) {
                    results.push(Err(AppError::RequestInProgress {
                        retry_after: Duration::from_secs(1),
                    }));
                    continue;
                }
                if uow
                    .wallets()
                    .find_entry(reference, LedgerKind::Charge)
                    .await?
                    .is_some()
                {
                    // A second execution of a charge made before: answered alone.
                    return Ok(None);
                }
            }
            let change = LedgerChange {
                user_id: user,
                kind: LedgerKind::Charge,
                amount: job.cmd.amount.money(),
                reference: job.reference.clone(),
            };
            match uow.wallets().append(change, now).await {
                Ok(entry) => results.push(Ok(ChargeReceipt {
                    user_id: user.get(),
                    balance: entry.balance_after.won(),
                    transaction_id: entry.id.get(),
                })),
                Err(StoreError::Rejected(d)) => results.push(Err(d.into())),
                Err(StoreError::Conflict(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let mut outcomes: Vec<(Ticket, StoredOutcome)> = Vec::new();
        for (job, result) in jobs.iter().zip(&results) {
            if let (Some(ticket), Some(outcome)) = (&job.ticket, idempotent::outcome_of(result)) {
                outcomes.push((ticket.clone(), outcome));
            }
        }
        let recorded = match guard.finish_recording(&outcomes).await? {
            Ok(recorded) => recorded,
            Err(StoreError::TicketLost) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(
            jobs.iter()
                .zip(results)
                .map(|(job, result)| Settled {
                    recorded: recorded
                        && job.ticket.is_some()
                        && idempotent::outcome_of(&result).is_some(),
                    result,
                })
                .collect(),
        ))
    }

    async fn charge_once(
        &self,
        cmd: ChargeBalance,
        reference: Option<String>,
        ticket: Option<&Ticket>,
    ) -> Result<Answered<ChargeReceipt>, AppError> {
        let mut guard = self.enter(&[keys::balance(cmd.user_id)]).await?;
        let uow = guard.begin().await?;
        if let Some(reference) = &reference {
            if let Some(done) = uow
                .wallets()
                .find_entry(reference, LedgerKind::Charge)
                .await?
            {
                let balance = uow.wallets().balance(cmd.user_id).await?;
                return Ok(Answered {
                    value: ChargeReceipt {
                        user_id: cmd.user_id.get(),
                        balance: balance.won(),
                        transaction_id: done.id.get(),
                    },
                    recorded: false,
                });
            }
        }
        let now = self.core.ports.clock.now();
        let entry = uow
            .wallets()
            .append(
                LedgerChange {
                    user_id: cmd.user_id,
                    kind: LedgerKind::Charge,
                    amount: cmd.amount.money(),
                    reference,
                },
                now,
            )
            .await?;
        let receipt = ChargeReceipt {
            user_id: cmd.user_id.get(),
            balance: entry.balance_after.won(),
            transaction_id: entry.id.get(),
        };
        guard.answer(ticket, receipt).await
    }

    /// The wallet balance (0 for a user seen for the first time).
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn balance(&self, user: UserId) -> Result<BalanceView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let balance = uow.wallets().balance(user).await?;
        Ok(BalanceView {
            user_id: user.get(),
            balance: balance.won(),
        })
    }

    /// The ledger, newest first.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn transactions(&self, user: UserId) -> Result<Vec<TransactionView>, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let entries = uow.wallets().entries(user).await?;
        Ok(entries.iter().rev().map(TransactionView::from).collect())
    }
}
