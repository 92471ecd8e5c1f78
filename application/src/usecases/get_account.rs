//! GetAccount: who the caller is.

use crate::engine::Context;
use crate::error::AppError;
use crate::views::MeView;
use std::sync::Arc;
use stockade_domain::UserId;

/// The caller's id and role, with the email and name of its account when it registered one
/// (users known only by a token have none).
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Arc<Context>,
    user: UserId,
    admin: bool,
) -> Result<MeView, AppError> {
    let account = ctx.ports.accounts.by_id(user).await?;
    Ok(MeView {
        user_id: user.get(),
        role: if admin { "admin" } else { "user" }.to_owned(),
        email: account.as_ref().map(|a| a.email.to_string()),
        name: account.map(|a| a.name),
    })
}
