//! A user's point wallet and its ledger.
//!
//! The ledger is the truth: every change of a balance is one [`LedgerKind`] entry and
//! `balance == sum(signed entries)` always holds (invariant 3 of docs/design.md). The balance never
//! goes negative. Charges are bounded per charge and per wallet; refunds are not bounded by the
//! wallet cap because a compensation must always be able to run.

use crate::{DomainError, Money, UserId};

/// The smallest and largest single charge, in won.
pub const MIN_CHARGE: i64 = 1;
pub const MAX_CHARGE: i64 = 1_000_000;
/// The most a wallet may hold after a charge, in won.
pub const MAX_WALLET_BALANCE: i64 = 100_000_000;

/// What a ledger entry did to the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerKind {
    /// Points bought: adds.
    Charge,
    /// Points spent on an order: subtracts.
    Use,
    /// Points given back for a payment: adds.
    Refund,
}

impl LedgerKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Charge => "CHARGE",
            LedgerKind::Use => "USE",
            LedgerKind::Refund => "REFUND",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        match s {
            "CHARGE" => Some(LedgerKind::Charge),
            "USE" => Some(LedgerKind::Use),
            "REFUND" => Some(LedgerKind::Refund),
            _ => None,
        }
    }

    /// The entry's effect on the balance: +amount or -amount.
    pub fn signed(self, amount: Money) -> i64 {
        match self {
            LedgerKind::Charge | LedgerKind::Refund => amount.won(),
            LedgerKind::Use => -amount.won(),
        }
    }
}

/// A validated charge amount (1..=1,000,000 won).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(Money);

impl ChargeAmount {
    /// # Errors
    /// `INVALID_INPUT` for a non-positive amount, `CHARGE_LIMIT_EXCEEDED` above the per-charge cap.
    pub fn new(won: i64) -> Result<ChargeAmount, DomainError> {
        if won < MIN_CHARGE {
            return Err(DomainError::invalid("amount", "must be at least 1"));
        }
        if won > MAX_CHARGE {
            return Err(DomainError::ChargeLimitExceeded(format!(
                "a single charge is at most {MAX_CHARGE} won"
            )));
        }
        Ok(ChargeAmount(Money::from_trusted(won)))
    }

    pub fn money(self) -> Money {
        self.0
    }
}

/// A user's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: UserId,
    pub balance: Money,
}

impl Wallet {
    pub fn empty(user_id: UserId) -> Wallet {
        Wallet {
            user_id,
            balance: Money::ZERO,
        }
    }

    /// The balance after applying `kind` of `amount`, or why it is refused.
    ///
    /// Stores call this inside their guarded update so the rule lives in one place.
    ///
    /// # Errors
    /// `INSUFFICIENT_BALANCE` when a USE would go below zero; `INVALID_INPUT` for a CHARGE below
    /// [`MIN_CHARGE`]; `CHARGE_LIMIT_EXCEEDED` for a CHARGE above [`MAX_CHARGE`] or one that
    /// would take the wallet above [`MAX_WALLET_BALANCE`].
    pub fn balance_after(&self, kind: LedgerKind, amount: Money) -> Result<Money, DomainError> {
        match kind {
            LedgerKind::Charge => {
                // The same per-charge bounds as `ChargeAmount`, so a caller passing raw `Money`
                // cannot record a zero or oversized charge.
                if amount.won() < MIN_CHARGE {
                    return Err(DomainError::invalid("amount", "must be at least 1"));
                }
                if amount.won() > MAX_CHARGE {
                    return Err(DomainError::ChargeLimitExceeded(format!(
                        "a single charge is at most {MAX_CHARGE} won"
                    )));
                }
                let after = self.balance.won() + amount.won();
                if after > MAX_WALLET_BALANCE {
                    return Err(DomainError::ChargeLimitExceeded(format!(
                        "a wallet holds at most {MAX_WALLET_BALANCE} won"
                    )));
                }
                Ok(Money::from_trusted(after))
            }
            LedgerKind::Use => {
                self.balance
                    .checked_sub(amount)
                    .ok_or(DomainError::InsufficientBalance {
                        balance: self.balance.won(),
                        required: amount.won(),
                    })
            }
            LedgerKind::Refund => self
                .balance
                .checked_add(amount)
                .ok_or_else(|| DomainError::invalid("amount", "refund overflows the wallet")),
        }
    }

    /// Applies a change in place and returns the entry to append to the ledger.
    ///
    /// # Errors
    /// See [`Wallet::balance_after`]; on error the wallet is unchanged.
    pub fn apply(
        &mut self,
        kind: LedgerKind,
        amount: Money,
        reference: Option<String>,
    ) -> Result<LedgerDraft, DomainError> {
        let after = self.balance_after(kind, amount)?;
        self.balance = after;
        Ok(LedgerDraft {
            user_id: self.user_id,
            kind,
            amount,
            balance_after: after,
            reference,
        })
    }
}

/// A ledger entry before the store gives it an id and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDraft {
    pub user_id: UserId,
    pub kind: LedgerKind,
    pub amount: Money,
    pub balance_after: Money,
    /// What caused the entry (`charge:{user}:{key}`, `payment:{id}`…). A store MUST refuse a
    /// second entry with the same `(reference, kind)`: that is what makes a retried charge or a
    /// repeated compensation a no-op.
    pub reference: Option<String>,
}

/// A recorded ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: crate::TransactionId,
    pub user_id: UserId,
    pub kind: LedgerKind,
    pub amount: Money,
    pub balance_after: Money,
    pub reference: Option<String>,
    pub created_at: crate::Timestamp,
}

/// `sum(signed entries)`: what the balance must equal.
pub fn ledger_sum<'a>(entries: impl IntoIterator<Item = &'a LedgerEntry>) -> i64 {
    entries.into_iter().map(|e| e.kind.signed(e.amount)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn user() -> UserId {
        UserId::new(1).expect("valid id")
    }

    #[test]
    fn charge_bounds() {
        assert_eq!(
            ChargeAmount::new(0).map_err(|e| e.code()),
            Err(ErrorCode::InvalidInput)
        );
        assert_eq!(
            ChargeAmount::new(1_000_001).map_err(|e| e.code()),
            Err(ErrorCode::ChargeLimitExceeded)
        );
        assert!(ChargeAmount::new(1_000_000).is_ok());
    }

    #[test]
    fn wallet_cap_and_no_overdraft() {
        let mut w = Wallet {
            user_id: user(),
            balance: Money::from_trusted(MAX_WALLET_BALANCE - 10),
        };
        let err = w
            .apply(LedgerKind::Charge, Money::from_trusted(11), None)
            .expect_err("over the cap");
        assert_eq!(err.code(), ErrorCode::ChargeLimitExceeded);
        assert_eq!(
            w.balance.won(),
            MAX_WALLET_BALANCE - 10,
            "unchanged on error"
        );
        let err = w
            .apply(
                LedgerKind::Use,
                Money::from_trusted(MAX_WALLET_BALANCE),
                None,
            )
            .expect_err("overdraft");
        assert_eq!(err.code(), ErrorCode::InsufficientBalance);
        let d = w
            .apply(LedgerKind::Use, Money::from_trusted(90), None)
            .expect("pay");
        assert_eq!(d.balance_after, w.balance);
    }
}
