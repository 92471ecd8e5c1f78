//! Wallets and their ledger: balances, the append-only entries, the `(reference, kind)` index
//! that makes a second entry with the same reference a conflict, and the audit view.

use super::MemoryUnit;
use async_trait::async_trait;
use std::collections::BTreeMap;
use stockade_application::ports::store::{LedgerChange, StoreError, WalletAudit, WalletRepository};
use stockade_application::BackendError;
use stockade_domain::{LedgerEntry, LedgerKind, Money, Timestamp, TransactionId, UserId, Wallet};

impl MemoryUnit {
    fn set_wallet(&mut self, user: UserId, balance: Money) {
        let previous = self.state.wallets.insert(user, balance);
        self.on_rollback(move |s| match previous {
            Some(b) => {
                s.wallets.insert(user, b);
            }
            None => {
                s.wallets.remove(&user);
            }
        });
    }
}

#[async_trait]
impl WalletRepository for MemoryUnit {
    async fn balance(&mut self, user: UserId) -> Result<Money, StoreError> {
        self.op()?;
        Ok(self.state.wallets.get(&user).copied().unwrap_or_default())
    }

    async fn append(
        &mut self,
        change: LedgerChange,
        now: Timestamp,
    ) -> Result<LedgerEntry, StoreError> {
        self.op()?;
        if let Some(reference) = &change.reference {
            if self
                .state
                .ledger_refs
                .contains_key(&(reference.clone(), change.kind))
            {
                return Err(StoreError::Conflict("ledger reference"));
            }
        }
        let mut wallet = Wallet {
            user_id: change.user_id,
            balance: self
                .state
                .wallets
                .get(&change.user_id)
                .copied()
                .unwrap_or_default(),
        };
        let draft = wallet.apply(change.kind, change.amount, change.reference)?;
        let id = TransactionId::new(self.state.next_id("ledger"))
            .map_err(|e| StoreError::Unavailable(BackendError::new("memory store", e)))?;
        let entry = LedgerEntry {
            id,
            user_id: draft.user_id,
            kind: draft.kind,
            amount: draft.amount,
            balance_after: draft.balance_after,
            reference: draft.reference,
            created_at: now,
        };
        self.set_wallet(change.user_id, wallet.balance);
        let index = self.state.ledger.len();
        self.state.ledger.push(entry.clone());
        self.state
            .ledger_by_user
            .entry(entry.user_id)
            .or_default()
            .push(index);
        let reference = entry.reference.clone().map(|r| (r, entry.kind));
        if let Some(r) = &reference {
            self.state.ledger_refs.insert(r.clone(), index);
        }
        let user = entry.user_id;
        self.on_rollback(move |s| {
            s.ledger.pop();
            if let Some(v) = s.ledger_by_user.get_mut(&user) {
                v.pop();
            }
            if let Some(r) = reference {
                s.ledger_refs.remove(&r);
            }
        });
        Ok(entry)
    }

    async fn entries(&mut self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .ledger_by_user
            .get(&user)
            .map(|ix| ix.iter().map(|i| self.state.ledger[*i].clone()).collect())
            .unwrap_or_default())
    }

    async fn entries_page(
        &mut self,
        user: UserId,
        before: Option<TransactionId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.op()?;
        let Some(ix) = self.state.ledger_by_user.get(&user) else {
            return Ok(Vec::new());
        };
        Ok(ix
            .iter()
            .rev()
            .map(|i| &self.state.ledger[*i])
            .filter(|e| before.is_none_or(|b| e.id < b))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn find_entry(
        &mut self,
        reference: &str,
        kind: LedgerKind,
    ) -> Result<Option<LedgerEntry>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .ledger_refs
            .get(&(reference.to_owned(), kind))
            .map(|i| self.state.ledger[*i].clone()))
    }

    async fn audit(&mut self) -> Result<Vec<WalletAudit>, StoreError> {
        self.op()?;
        let mut out: BTreeMap<UserId, WalletAudit> = BTreeMap::new();
        for (user, balance) in &self.state.wallets {
            out.insert(
                *user,
                WalletAudit {
                    user_id: *user,
                    balance: balance.won(),
                    ledger_sum: 0,
                    charges: 0,
                    uses: 0,
                    refunds: 0,
                },
            );
        }
        for e in &self.state.ledger {
            let a = out.entry(e.user_id).or_insert(WalletAudit {
                user_id: e.user_id,
                balance: 0,
                ledger_sum: 0,
                charges: 0,
                uses: 0,
                refunds: 0,
            });
            a.ledger_sum += e.kind.signed(e.amount);
            match e.kind {
                LedgerKind::Charge => a.charges += e.amount.won(),
                LedgerKind::Use => a.uses += e.amount.won(),
                LedgerKind::Refund => a.refunds += e.amount.won(),
            }
        }
        Ok(out.into_values().collect())
    }
}
