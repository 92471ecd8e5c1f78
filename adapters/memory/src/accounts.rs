//! The in-memory [`AccountStore`]: one map per index behind one mutex, so the check for a taken
//! email and the insert are one step (the memory equivalent of a unique index).

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use stockade_application::ports::accounts::{
    Account, AccountError, AccountStore, NewAccount, FIRST_ACCOUNT_ID,
};
use stockade_domain::{Email, Timestamp, UserId};

#[derive(Debug, Default)]
struct State {
    by_email: HashMap<Email, UserId>,
    by_id: HashMap<UserId, Account>,
    /// The last id given; 0 before the first.
    last_id: i64,
    failures: HashMap<Email, Vec<Timestamp>>,
}

/// Accounts and failed sign-ins of this process. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryAccounts {
    state: Arc<Mutex<State>>,
}

impl MemoryAccounts {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl AccountStore for MemoryAccounts {
    async fn create(&self, new: NewAccount) -> Result<Account, AccountError> {
        let mut s = self.state.lock();
        if s.by_email.contains_key(&new.email) {
            return Err(AccountError::EmailTaken);
        }
        let next = if s.last_id == 0 {
            FIRST_ACCOUNT_ID
        } else {
            s.last_id + 1
        };
        let id = UserId::new(next).map_err(|e| {
            AccountError::Unavailable(stockade_application::BackendError::new("memory", e))
        })?;
        s.last_id = next;
        let account = Account {
            id,
            email: new.email,
            name: new.name,
            password_hash: new.password_hash,
        };
        s.by_email.insert(account.email.clone(), id);
        s.by_id.insert(id, account.clone());
        Ok(account)
    }

    async fn by_email(&self, email: &Email) -> Result<Option<Account>, AccountError> {
        let s = self.state.lock();
        Ok(s.by_email
            .get(email)
            .and_then(|id| s.by_id.get(id))
            .cloned())
    }

    async fn by_id(&self, id: UserId) -> Result<Option<Account>, AccountError> {
        Ok(self.state.lock().by_id.get(&id).cloned())
    }

    async fn record_failure(
        &self,
        email: &Email,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), AccountError> {
        let mut s = self.state.lock();
        let list = s.failures.entry(email.clone()).or_default();
        list.retain(|t| *t >= forget_before);
        let place = list.partition_point(|t| *t <= at);
        list.insert(place, at);
        Ok(())
    }

    async fn failures(
        &self,
        email: &Email,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, AccountError> {
        let s = self.state.lock();
        Ok(s.failures
            .get(email)
            .map(|l| l.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default())
    }

    async fn clear_failures(&self, email: &Email) -> Result<(), AccountError> {
        self.state.lock().failures.remove(email);
        Ok(())
    }
}
