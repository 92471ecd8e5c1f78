//! Bearer JWTs (HS256): who is calling and whether they are an admin.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use stockade_domain::{ErrorCode, UserId};

/// The HS256 secret, with its keys and validation rules prepared once (every request checks a
/// token with them; clones share them). `Debug` never shows it.
#[derive(Clone)]
pub struct JwtSecret(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        let secret = secret.into();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtSecret(Arc::new(Keys {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
        }))
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// The claims Stockade reads. `sub` may be a string or a number.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("token could not be signed")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

/// Signs a token for `user`, valid for `ttl_secs` from now.
///
/// # Errors
/// When the signing library fails (it does not for HS256 with any secret).
pub fn issue_token(
    secret: &JwtSecret,
    user: i64,
    admin: bool,
    ttl_secs: u64,
) -> Result<String, SignError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: serde_json::Value::String(user.to_string()),
        role: Some(if admin { "admin" } else { "user" }.to_owned()),
        exp: now + ttl_secs,
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &secret.0.encoding,
    )?)
}

/// The caller named by a valid token.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user: UserId,
    pub admin: bool,
}

/// A caller whose token says `role: admin`.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub AuthUser);

fn verify(secret: &JwtSecret, token: &str) -> Result<AuthUser, ApiError> {
    let data = decode::<Claims>(token, &secret.0.decoding, &secret.0.validation).map_err(|e| {
        match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ApiError::unauthorized("the token has expired")
            }
            _ => ApiError::unauthorized("the token is not valid"),
        }
    })?;
    let admin = match data.claims.role.as_deref() {
        None | Some("user") => false,
        Some("admin") => true,
        Some(_) => return Err(ApiError::unauthorized("the token's role is not known")),
    };
    let raw = match &data.claims.sub {
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    // A genuine token naming something that cannot be a user id: there is no such user.
    let user = raw
        .and_then(|id| UserId::new(id).ok())
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "the token names no valid user"))?;
    Ok(AuthUser { user, admin })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer"))?;
        verify(&state.jwt, token)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.admin {
            return Err(ApiError::new(ErrorCode::Forbidden, "admins only"));
        }
        Ok(AdminUser(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_foreign_ones_do_not() {
        let secret = JwtSecret::new("s3cret");
        let t = issue_token(&secret, 7, true, 60).expect("signed");
        let u = verify(&secret, &t).expect("valid");
        assert_eq!((u.user.get(), u.admin), (7, true));
        let other = JwtSecret::new("other");
        assert_eq!(
            verify(&other, &t).map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
        assert!(verify(&secret, "garbage").is_err());
        assert_eq!(format!("{secret:?}"), "JwtSecret(<redacted>)");
    }
}
