//! Accounts: sign up, sign in, who am I.

use crate::auth::{issue_token, AuthUser};
use crate::business;
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::schema::errors::error_set;
use crate::schema::views::{Account, Envelope, Login, Me};
use crate::Shared;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::fmt;
use stockade_application::usecases::authenticate_account::AuthenticateAccount;
use stockade_application::usecases::register_account::RegisterAccount;
use stockade_application::AppError;
use stockade_domain::{ErrorCode, Password};
use utoipa::ToSchema;

type Answer = Result<Reply, ApiError>;

/// How long a token minted at sign-in is valid, in seconds.
pub const TOKEN_TTL_SECS: u64 = 3_600;

error_set!(RegisterErrors: [InvalidInput, EmailTaken, LockTimeout]);
error_set!(LoginErrors: [InvalidInput, InvalidCredentials, TooManyRequests]);
error_set!(MeErrors: [Unauthorized]);

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// Trimmed and lower-cased first; one `@` with text on both sides, no spaces or control
    /// characters inside, at most 254 characters.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[!-?A-~]+@[!-?A-~]+$",
        example = "ann@example.com"
    )]
    pub email: String,
    /// 8 to 128 characters; kept only as an argon2id hash.
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery")]
    pub password: String,
    #[schema(min_length = 1, max_length = 100, example = "Ann")]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[!-?A-~]+@[!-?A-~]+$",
        example = "ann@example.com"
    )]
    pub email: String,
    #[schema(min_length = 1, max_length = 128, example = "correct horse battery")]
    pub password: String,
}

/// Neither request shows its password in a log line.
impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The answer of a sign-in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoginAnswer {
    pub(crate) access_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    pub(crate) user_id: i64,
}

/// Signs up. Concurrent sign-ups of one email (in any case or spacing) make one account; the
/// others are told `EMAIL_TAKEN`.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "accounts",
    request_body = RegisterRequest,
    responses((status = 201, description = "registered; `Location: /api/v1/users/me`",
        body = Envelope<Account>), RegisterErrors))]
pub async fn register(State(s): State<Shared>, ApiJson(body): ApiJson<RegisterRequest>) -> Answer {
    let cmd = RegisterAccount {
        email: body.email,
        password: Password::new(body.password)?,
        name: body.name,
    };
    let account = s.app.register(cmd).await?;
    business::signups().increment(1);
    Ok(Reply::created(&account).at("/api/v1/users/me".to_owned()))
}

/// Signs in: a bearer token for the rest of the API. An unknown email and a wrong password are
/// the same `INVALID_CREDENTIALS`; after 5 failures for one email within 15 minutes its
/// sign-ins answer 429 until the window passes.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "accounts",
    request_body = LoginRequest,
    responses((status = 200, description = "signed in", body = Envelope<Login>), LoginErrors))]
pub async fn login(State(s): State<Shared>, ApiJson(body): ApiJson<LoginRequest>) -> Answer {
    let cmd = AuthenticateAccount {
        email: body.email,
        password: Password::offered(body.password)?,
    };
    let account = match s.app.authenticate(cmd).await {
        Ok(account) => account,
        Err(e) => {
            match e.code() {
                ErrorCode::InvalidCredentials => {
                    business::logins_refused_credentials().increment(1)
                }
                ErrorCode::TooManyRequests => business::logins_refused_throttled().increment(1),
                _ => {}
            }
            return Err(e.into());
        }
    };
    let token = issue_token(&s.jwt, account.user_id, false, TOKEN_TTL_SECS)
        .map_err(|e| ApiError::from(AppError::Internal(e.to_string())))?;
    Ok(Reply::ok(&LoginAnswer {
        access_token: token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL_SECS,
        user_id: account.user_id,
    }))
}

/// Who I am: my id and role, and my email and name if I registered.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "me", body = Envelope<Me>), MeErrors))]
pub async fn me(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.me(who.user, who.admin).await?))
}
