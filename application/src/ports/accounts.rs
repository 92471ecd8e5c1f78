//! The `AccountStore` port: accounts (an email, a name, a password hash) and the window of
//! failed sign-ins that throttles guessing.
//!
//! # Contract (every adapter MUST)
//! - **One account per email**, under any concurrency and across every instance sharing the
//!   backend: `create` with an email that has an account answers [`AccountError::EmailTaken`]
//!   and writes nothing (a unique index, or its equivalent in memory). Emails arrive
//!   normalised ([`Email`]); compare them as given.
//! - Give each new account a **fresh user id** from the backend, never one of the demo users
//!   (`1..=500` and `1000`): ids start at [`FIRST_ACCOUNT_ID`].
//! - Keep the password hash as given (a PHC string) and never log it.
//! - Keep each failed sign-in of an email (`record_failure`) **where every instance sees it**,
//!   answer `failures` with those at or after `since`, oldest first, and forget an email's
//!   failures on `clear_failures`. `record_failure` may drop the email's failures older than
//!   its `forget_before` (they can no longer count).
//! - Map backend failures to [`AccountError::Unavailable`].

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use stockade_domain::{Email, Timestamp, UserId};

/// The first id a registered account gets: well clear of the demo users (1..=500, 1000) and
/// of the ids tokens commonly name in tests and tools (docs/decisions/0022).
pub const FIRST_ACCOUNT_ID: i64 = 1_000_001;

/// What a new account is made of; the password is already hashed.
#[derive(Clone)]
pub struct NewAccount {
    pub email: Email,
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
}

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: UserId,
    pub email: Email,
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Unavailable(#[from] BackendError),
}

/// Accounts and failed sign-ins. See the module docs for the contract.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// Creates an account with a fresh id.
    ///
    /// # Errors
    /// [`AccountError::EmailTaken`] when the email has an account already.
    async fn create(&self, new: NewAccount) -> Result<Account, AccountError>;

    /// The account of an email.
    async fn by_email(&self, email: &Email) -> Result<Option<Account>, AccountError>;

    /// The account of a user id (`None` for users known only by token).
    async fn by_id(&self, id: UserId) -> Result<Option<Account>, AccountError>;

    /// Records one failed sign-in of `email` at `at`; failures before `forget_before` may go.
    async fn record_failure(
        &self,
        email: &Email,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), AccountError>;

    /// The failed sign-ins of `email` at or after `since`, oldest first.
    async fn failures(
        &self,
        email: &Email,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, AccountError>;

    /// Forgets every failed sign-in of `email` (after a successful one).
    async fn clear_failures(&self, email: &Email) -> Result<(), AccountError>;
}
