//! RegisterAccount: sign up with an email, a password and a name.

use crate::engine::{password, Context};
use crate::error::AppError;
use crate::ports::accounts::NewAccount;
use crate::ports::lock::keys;
use crate::views::AccountView;
use std::sync::Arc;
use stockade_domain::{DomainError, Email, Password};

/// A sign-up, as received (checked by [`execute`]).
#[derive(Debug, Clone)]
pub struct RegisterAccount {
    /// Trimmed and lower-cased before anything else.
    pub email: String,
    pub password: Password,
    pub name: String,
}

/// Creates an account with a fresh user id. The email is normalised first; then the sign-up
/// lock `register:{email}` (through the `LockManager`, so across every instance) makes
/// concurrent sign-ups of one email take turns: the first creates the account, the others find
/// it. The store's unique email is the last line should the lock be lost. The password is
/// hashed (argon2id) on the blocking pool, only when the email is free. Runs detached from the
/// caller, so a client that goes away cannot cut it between the create and the release.
///
/// # Errors
/// `INVALID_INPUT` for a bad email or name (the password was checked when it was made);
/// `EMAIL_TAKEN`; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all)]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    cmd: RegisterAccount,
) -> Result<AccountView, AppError> {
    let email = Email::parse(&cmd.email)?;
    let name = stockade_domain::account::display_name(&cmd.name)?;
    let password = cmd.password;
    ctx.detached_under_lock(keys::register(&email), "sign-up", move |ctx| async move {
        create(&ctx, email, name, password).await
    })
    .await
}

async fn create(
    ctx: &Context,
    email: Email,
    name: String,
    password: Password,
) -> Result<AccountView, AppError> {
    if ctx.ports.accounts.by_email(&email).await?.is_some() {
        return Err(DomainError::EmailTaken.into());
    }
    let password_hash = password::hash(password).await?;
    let account = ctx
        .ports
        .accounts
        .create(NewAccount {
            email,
            name,
            password_hash,
        })
        .await?;
    tracing::info!(user = %account.id, "account registered");
    Ok(AccountView {
        user_id: account.id.get(),
        email: account.email.to_string(),
        name: account.name,
    })
}
