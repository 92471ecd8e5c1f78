//! AuthenticateAccount: sign in with an email and a password.

use crate::engine::{password, Context};
use crate::error::AppError;
use crate::ports::lock::keys;
use crate::views::AccountView;
use std::sync::Arc;
use std::time::Duration;
use stockade_domain::{DomainError, Email, Password, Timestamp};

/// How far back failed sign-ins count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins of one email within [`FAILURE_WINDOW`] after which its sign-ins are refused.
pub const MAX_FAILURES: usize = 5;

/// A sign-in, as received.
#[derive(Debug, Clone)]
pub struct AuthenticateAccount {
    /// Trimmed and lower-cased before anything else.
    pub email: String,
    pub password: Password,
}

/// Checks an email and a password. An unknown email and a wrong password are the same
/// `INVALID_CREDENTIALS`, and cost the same: a hash is checked either way (a dummy one for an
/// unknown email). Each failure is recorded in the account store (shared by every instance on
/// a durable backend); once an email has [`MAX_FAILURES`] within [`FAILURE_WINDOW`], its
/// sign-ins are refused, before any hash is checked, until the oldest of them leaves the window.
/// A success forgets the email's failures. Sign-ins of one email take turns under the lock
/// `sign-in:{email}`, so parallel guesses are counted one after another.
///
/// # Errors
/// `INVALID_INPUT` for a malformed email; `TOO_MANY_REQUESTS` (with the time left);
/// `INVALID_CREDENTIALS`; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all)]
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    cmd: AuthenticateAccount,
) -> Result<AccountView, AppError> {
    let email = Email::parse(&cmd.email)?;
    let password = cmd.password;
    // One sign-in per email at a time (across instances): the failures read below then count
    // every earlier attempt, so parallel guesses cannot all pass the throttle at once. Detached,
    // so a client that goes away cannot cut it between the check and the recorded failure.
    ctx.detached_under_lock(keys::sign_in(&email), "sign-in", move |ctx| async move {
        check(&ctx, &email, password).await
    })
    .await
}

async fn check(ctx: &Context, email: &Email, password: Password) -> Result<AccountView, AppError> {
    let now = ctx.now();
    let window = i64::try_from(FAILURE_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = now.minus_millis(window);
    let failures = ctx.ports.accounts.failures(email, since).await?;
    if let Some(retry_after) = throttled(&failures, now, window) {
        return Err(AppError::TooManyRequests { retry_after });
    }
    let account = ctx.ports.accounts.by_email(email).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    if !password::verify(password, stored).await? {
        ctx.ports.accounts.record_failure(email, now, since).await?;
        return Err(DomainError::InvalidCredentials.into());
    }
    let account = account.ok_or(DomainError::InvalidCredentials)?;
    if !failures.is_empty() {
        ctx.ports.accounts.clear_failures(email).await?;
    }
    Ok(AccountView {
        user_id: account.id.get(),
        email: account.email.to_string(),
        name: account.name,
    })
}

/// With [`MAX_FAILURES`] or more in the window (oldest first), how long until fewer remain.
fn throttled(failures: &[Timestamp], now: Timestamp, window: i64) -> Option<Duration> {
    let n = failures.len();
    if n < MAX_FAILURES {
        return None;
    }
    // Once this one leaves the window, MAX_FAILURES - 1 remain.
    let leaves = failures[n - MAX_FAILURES].plus_millis(window);
    let ms = (leaves.millis() - now.millis()).max(1);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fifth_failure_in_the_window_throttles_until_the_oldest_counted_leaves() {
        let at = |s: i64| Timestamp::from_millis(s * 1_000);
        let window = 900_000;
        let four = [at(0), at(10), at(20), at(30)];
        assert_eq!(throttled(&four, at(40), window), None);
        let five = [at(0), at(10), at(20), at(30), at(40)];
        assert_eq!(
            throttled(&five, at(100), window),
            Some(Duration::from_secs(800))
        );
        let six = [at(0), at(10), at(20), at(30), at(40), at(50)];
        assert_eq!(
            throttled(&six, at(100), window),
            Some(Duration::from_secs(810))
        );
    }
}
