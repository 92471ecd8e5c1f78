//! The charge engine: charges of one wallet that arrive together run in one turn
//! (docs/decisions/0012); `usecases::charge_balance` hands its requests to [`submit`].

use super::combine::Lost;
use super::context::Context;
use super::lanes::ChargeJob;
use super::outcome::{self, Answered, Settled};
use crate::error::AppError;
use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::keys;
use crate::ports::store::{LedgerChange, StoreError};
use crate::views::ChargeReceipt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use stockade_domain::LedgerKind;

/// Queues a charge on its wallet's lane: charges of one wallet that arrive together run in
/// one turn (docs/decisions/0012).
pub(crate) async fn submit(ctx: &Arc<Context>, job: ChargeJob) -> Settled<ChargeReceipt> {
    let lanes = Arc::clone(ctx);
    let user = job.user_id;
    ctx.charge_lanes
        .submit(user, job, move |jobs| {
            let ctx = lanes.clone();
            async move { charge_batch(&ctx, jobs).await }
        })
        .await
        .unwrap_or_else(|Lost| {
            Settled::unrecorded(Err(AppError::Internal("the charge's turn failed".into())))
        })
}

/// Runs one batch of charges of one wallet and answers each: a turn for all of them, or
/// each alone (in order) when the store refused a write the turn could not foresee.
async fn charge_batch(ctx: &Context, jobs: Vec<ChargeJob>) -> Vec<Settled<ChargeReceipt>> {
    metrics::histogram!("stockade_combine_batch_size", "use_case" => "charge")
        .record(jobs.len() as f64);
    if jobs.len() > 1 {
        match ctx.retry_contention(|| charge_turn(ctx, &jobs)).await {
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
        let alone = ctx.retry_contention(|| charge_once(ctx, job)).await;
        answers.push(alone.into());
    }
    answers
}

/// One turn of charges of one wallet: one grant, one unit, each charge in arrival order
/// against what the ones before it left (the unit reads its own writes), the outcomes
/// recorded with the commit. `None`: a write the turn cannot answer as serial execution
/// would (a reference already taken), nothing kept.
async fn charge_turn(
    ctx: &Context,
    jobs: &[ChargeJob],
) -> Result<Option<Vec<Settled<ChargeReceipt>>>, AppError> {
    let Some(first) = jobs.first() else {
        return Ok(Some(Vec::new()));
    };
    let user = first.user_id;
    let mut guard = ctx.enter(&[keys::balance(user)]).await?;
    let uow = guard.begin().await?;
    let now = ctx.ports.clock.now();
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
            amount: job.amount.money(),
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
        if let (Some(ticket), Some(outcome)) = (&job.ticket, outcome::outcome_of(result)) {
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
                    && outcome::outcome_of(&result).is_some(),
                result,
            })
            .collect(),
    ))
}

/// One charge alone, under its wallet's lock: a keyed charge whose reference the ledger
/// already holds answers with that entry instead of charging again.
async fn charge_once(ctx: &Context, job: &ChargeJob) -> Result<Answered<ChargeReceipt>, AppError> {
    let mut guard = ctx.enter(&[keys::balance(job.user_id)]).await?;
    let uow = guard.begin().await?;
    if let Some(reference) = &job.reference {
        if let Some(done) = uow
            .wallets()
            .find_entry(reference, LedgerKind::Charge)
            .await?
        {
            let balance = uow.wallets().balance(job.user_id).await?;
            return Ok(Answered {
                value: ChargeReceipt {
                    user_id: job.user_id.get(),
                    balance: balance.won(),
                    transaction_id: done.id.get(),
                },
                recorded: false,
            });
        }
    }
    let now = ctx.ports.clock.now();
    let entry = uow
        .wallets()
        .append(
            LedgerChange {
                user_id: job.user_id,
                kind: LedgerKind::Charge,
                amount: job.amount.money(),
                reference: job.reference.clone(),
            },
            now,
        )
        .await?;
    let receipt = ChargeReceipt {
        user_id: job.user_id.get(),
        balance: entry.balance_after.won(),
        transaction_id: entry.id.get(),
    };
    guard.answer(job.ticket.as_ref(), receipt).await
}
