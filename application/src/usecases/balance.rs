//! ChargeBalance, GetBalance and the ledger listing.

use crate::idempotent::Answered;
use crate::ports::idempotency::Ticket;
use crate::ports::lock::keys;
use crate::ports::store::LedgerChange;
use crate::views::{BalanceView, ChargeReceipt, TransactionView};
use crate::{AppError, Replayable, Stockade};
use stockade_domain::{ChargeAmount, IdempotencyKey, LedgerKind, UserId};

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
                let (app, cmd, reference) = (&app, &cmd, &reference);
                async move {
                    app.retry_contention(|| {
                        app.charge_once(cmd.clone(), reference.clone(), ticket.as_ref())
                    })
                    .await
                    .into()
                }
            })
            .await
        })
        .await
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
