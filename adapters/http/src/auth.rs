//! Bearer JWTs: who is calling and whether they are an admin. HS256 with the configured
//! secret (the tokens the service mints), and, when a key set is configured, RS256 and ES256
//! tokens of an external identity provider, chosen by `kid` ([`crate::jwks`]).

use crate::error::ApiError;
use crate::jwks::KeySet;
use crate::Shared;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dashmap::DashMap;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
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
    /// For RS256 and ES256 tokens, when a key set is configured.
    external: Option<(KeySet, Validation, Validation)>,
    rules: TokenRules,
    verified: Verified,
}

/// What a token must say besides a good signature, and where an external identity provider's
/// keys come from. The default: no issuer or audience required, HS256 only.
#[derive(Debug, Clone, Default)]
pub struct TokenRules {
    /// `iss` must be this (and minted tokens carry it).
    pub issuer: Option<String>,
    /// `aud` must name this (and minted tokens carry it).
    pub audience: Option<String>,
    /// RS256 / ES256 tokens are verified against these keys by `kid`.
    pub keys: Option<KeySet>,
}

impl TokenRules {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut v = Validation::new(algorithm);
        // `sub` is required too, but checked here rather than by the library: its
        // required-claim check only counts a string `sub`, and the contract takes a number as
        // well (`7` or `"7"`). A token without `sub` fails to decode into `Claims`.
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            v.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &self.audience {
            v.set_audience(&[audience]);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// How many verified tokens are remembered before the memory is swept.
const VERIFIED_CAPACITY: usize = 65_536;

/// Tokens that already passed verification, with what they said: a client sends the same token
/// with every request of its session, and checking its signature and parsing its claims each
/// time is a large share of a cheap request's cost. The key is the whole token, so a hit is a
/// token whose exact bytes were verified under this secret; the only part of the answer that
/// time changes is expiry, and every hit checks `exp` by the same rule as the full check (not
/// before now minus the leeway). Only tokens that verified are kept, so a caller without the
/// secret cannot fill it; when it is full, expired entries are dropped, and if that is not
/// enough, all of them (the next request of each client verifies again).
struct Verified {
    tokens: DashMap<Box<str>, (AuthUser, u64)>,
    capacity: usize,
}

impl Verified {
    fn new(capacity: usize) -> Self {
        Verified {
            tokens: DashMap::new(),
            capacity,
        }
    }

    fn remember(&self, token: &str, user: AuthUser, exp: u64, now: u64, leeway: u64) {
        if self.tokens.len() >= self.capacity {
            self.tokens
                .retain(|_, (_, exp)| !expired(*exp, now, leeway));
            if self.tokens.len() >= self.capacity {
                self.tokens.clear();
            }
        }
        self.tokens.insert(token.into(), (user, exp));
    }
}

/// jsonwebtoken's rule: a token is expired once `exp` is before now minus the leeway.
fn expired(exp: u64, now: u64, leeway: u64) -> bool {
    exp < now.saturating_sub(leeway)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self::with_capacity(secret, VERIFIED_CAPACITY)
    }

    /// A secret with rules: a required issuer and audience, and an external key set.
    pub fn with_rules(secret: impl Into<Vec<u8>>, rules: TokenRules) -> Self {
        Self::build(secret.into(), rules, VERIFIED_CAPACITY)
    }

    fn with_capacity(secret: impl Into<Vec<u8>>, capacity: usize) -> Self {
        Self::build(secret.into(), TokenRules::default(), capacity)
    }

    fn build(secret: Vec<u8>, rules: TokenRules, capacity: usize) -> Self {
        let external = rules.keys.clone().map(|keys| {
            (
                keys,
                rules.validation(Algorithm::RS256),
                rules.validation(Algorithm::ES256),
            )
        });
        JwtSecret(Arc::new(Keys {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation: rules.validation(Algorithm::HS256),
            external,
            rules,
            verified: Verified::new(capacity),
        }))
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// The claims Stockade reads. `sub` may be a string or a number; `role` is required (a token
/// without one is refused rather than taken as a user's).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub exp: u64,
    /// Checked by the validation (when an issuer is configured); minted tokens carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Checked by the validation (when an audience is configured); minted tokens carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
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
        iss: secret.0.rules.issuer.clone(),
        aud: secret
            .0
            .rules
            .audience
            .clone()
            .map(serde_json::Value::String),
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

async fn verify(secret: &JwtSecret, token: &str) -> Result<AuthUser, ApiError> {
    verify_at(secret, token, now_secs()).await
}

/// [`verify`] with the clock read by the caller (the signature check itself reads the system
/// clock, so `now` only decides for tokens already verified).
async fn verify_at(secret: &JwtSecret, token: &str, now: u64) -> Result<AuthUser, ApiError> {
    let keys = &secret.0;
    let leeway = keys.validation.leeway;
    let hit = keys.verified.tokens.get(token).map(|entry| *entry.value());
    if let Some((user, exp)) = hit {
        if !expired(exp, now, leeway) {
            return Ok(user);
        }
        keys.verified.tokens.remove(token);
        return Err(ApiError::invalid_token("the token has expired"));
    }
    let (user, exp) = check(secret, token).await?;
    keys.verified.remember(token, user, exp, now, leeway);
    Ok(user)
}

/// The largest `sub`: 2^53-1, the largest integer every JSON reader holds exactly.
const MAX_SUB: u64 = (1 << 53) - 1;

/// The user a token's `sub` names: a positive integer written canonically, as a JSON number
/// (`7`) or a string of digits without sign, spaces or leading zeros (`"7"`), at most
/// [`MAX_SUB`]. Anything else names nobody, and the token is not valid.
fn user_id(sub: &serde_json::Value) -> Option<UserId> {
    let id = match sub {
        // `as_u64` is `None` for negative numbers and for any number written with a fraction
        // or an exponent (`7.0`, `7e0`), which are not canonical.
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => {
            let canonical =
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
            if !canonical || s.len() > 16 {
                return None;
            }
            s.parse::<u64>().ok()?
        }
        _ => return None,
    };
    if id > MAX_SUB {
        return None;
    }
    UserId::new(i64::try_from(id).ok()?).ok()
}

/// The full check: signature (HS256 with the secret; RS256 or ES256 with the external key its
/// `kid` names), required claims, expiry, role and user id.
async fn check(secret: &JwtSecret, token: &str) -> Result<(AuthUser, u64), ApiError> {
    let keys = &secret.0;
    let header =
        decode_header(token).map_err(|_| ApiError::invalid_token("the token is not valid"))?;
    let external;
    let (key, validation) = match header.alg {
        Algorithm::HS256 => (&keys.decoding, &keys.validation),
        Algorithm::RS256 | Algorithm::ES256 => {
            let Some((set, rs256, es256)) = &keys.external else {
                return Err(ApiError::invalid_token(
                    "the token's algorithm is not accepted",
                ));
            };
            let kid = header
                .kid
                .as_deref()
                .ok_or_else(|| ApiError::invalid_token("the token names no key (kid)"))?;
            let (key, algorithm) = set
                .key(kid)
                .await
                .ok_or_else(|| ApiError::invalid_token("the token's key (kid) is not known"))?;
            // A key verifies the one algorithm it is for.
            if algorithm != header.alg {
                return Err(ApiError::invalid_token("the token is not valid"));
            }
            external = key;
            let validation = if algorithm == Algorithm::RS256 {
                rs256
            } else {
                es256
            };
            (&external, validation)
        }
        _ => {
            return Err(ApiError::invalid_token(
                "the token's algorithm is not accepted",
            ))
        }
    };
    let data = decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            ApiError::invalid_token("the token has expired")
        }
        _ => ApiError::invalid_token("the token is not valid"),
    })?;
    let admin = match data.claims.role.as_deref() {
        Some("user") => false,
        Some("admin") => true,
        None => return Err(ApiError::invalid_token("the token has no role")),
        Some(_) => return Err(ApiError::invalid_token("the token's role is not known")),
    };
    let user = user_id(&data.claims.sub)
        .ok_or_else(|| ApiError::invalid_token("the token's sub is not a user id"))?;
    Ok((AuthUser { user, admin }, data.claims.exp))
}

/// [`check`] for the key-set tests.
#[cfg(test)]
pub(crate) async fn check_for_tests(
    secret: &JwtSecret,
    token: &str,
) -> Result<(AuthUser, u64), ApiError> {
    check(secret, token).await
}

impl FromRequestParts<Shared> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::invalid_token("the Authorization header is not valid"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer"))?;
        verify(&state.jwt, token).await
    }
}

impl FromRequestParts<Shared> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
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

    #[tokio::test]
    async fn issued_tokens_verify_and_foreign_ones_do_not() {
        let secret = JwtSecret::new("s3cret");
        let t = issue_token(&secret, 7, true, 60).expect("signed");
        let u = verify(&secret, &t).await.expect("valid");
        assert_eq!((u.user.get(), u.admin), (7, true));
        let other = JwtSecret::new("other");
        assert_eq!(
            verify(&other, &t).await.map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
        assert!(verify(&secret, "garbage").await.is_err());
        assert_eq!(format!("{secret:?}"), "JwtSecret(<redacted>)");
    }

    #[tokio::test]
    async fn sub_may_be_a_number_or_a_string_but_must_be_there() {
        let secret = JwtSecret::new("s3cret");
        let sign = |claims: serde_json::Value| {
            encode(&Header::new(Algorithm::HS256), &claims, &secret.0.encoding).expect("signed")
        };
        let exp = now_secs() + 60;
        let number = sign(serde_json::json!({"sub": 7, "role": "user", "exp": exp}));
        let u = verify(&secret, &number)
            .await
            .expect("a numeric sub is a user id");
        assert_eq!((u.user.get(), u.admin), (7, false));
        let string = sign(serde_json::json!({"sub": "8", "role": "admin", "exp": exp}));
        let u = verify(&secret, &string)
            .await
            .expect("a string sub is a user id");
        assert_eq!((u.user.get(), u.admin), (8, true));
        let missing = sign(serde_json::json!({"role": "user", "exp": exp}));
        assert_eq!(
            verify(&secret, &missing)
                .await
                .map(|_| ())
                .map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
    }

    #[tokio::test]
    async fn sub_must_be_a_canonical_positive_integer_and_role_must_be_there() {
        let secret = JwtSecret::new("s3cret");
        let exp = now_secs() + 60;
        let sign = |sub: serde_json::Value| {
            let claims = serde_json::json!({"sub": sub, "role": "user", "exp": exp});
            encode(&Header::new(Algorithm::HS256), &claims, &secret.0.encoding).expect("signed")
        };
        let largest = (1_i64 << 53) - 1;
        for (sub, id) in [
            (serde_json::json!(1), 1),
            (serde_json::json!("1"), 1),
            (serde_json::json!(largest), largest),
            (serde_json::json!(largest.to_string()), largest),
        ] {
            let u = verify(&secret, &sign(sub.clone()))
                .await
                .expect("a canonical sub");
            assert_eq!(u.user.get(), id, "{sub}");
        }
        for sub in [
            serde_json::json!(0),
            serde_json::json!(-1),
            serde_json::json!(7.5),
            // A whole number written with a fraction is not canonical either.
            serde_json::json!(7.0),
            serde_json::json!(largest + 1),
            serde_json::json!(u64::MAX),
            serde_json::json!("0"),
            serde_json::json!("-1"),
            serde_json::json!("07"),
            serde_json::json!(" 7"),
            serde_json::json!("7 "),
            serde_json::json!("+7"),
            serde_json::json!("7.0"),
            serde_json::json!("abc"),
            serde_json::json!(""),
            serde_json::json!("9007199254740992"),
            serde_json::json!("99999999999999999999"),
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!([7]),
        ] {
            let refused = verify(&secret, &sign(sub.clone())).await;
            let refused = refused.map(|_| ()).map_err(|e| (e.code, e.invalid_token));
            assert_eq!(refused, Err((ErrorCode::Unauthorized, true)), "{sub}");
        }
        let header = Header::new(Algorithm::HS256);
        let no_role = encode(
            &header,
            &serde_json::json!({"sub": "7", "exp": exp}),
            &secret.0.encoding,
        )
        .expect("signed");
        assert_eq!(
            verify(&secret, &no_role)
                .await
                .map(|_| ())
                .map_err(|e| e.message),
            Err("the token has no role".to_owned())
        );
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires_by_the_same_rule() {
        let secret = JwtSecret::new("s3cret");
        let t = issue_token(&secret, 7, false, 10).expect("signed");
        let now = now_secs();
        assert_eq!(
            verify_at(&secret, &t, now).await.expect("valid").user.get(),
            7
        );
        assert!(secret.0.verified.tokens.contains_key(t.as_str()));
        let exp = now + 10;
        let leeway = secret.0.validation.leeway;
        // Inside the leeway it is still good, as the full check would say.
        assert!(verify_at(&secret, &t, exp + leeway).await.is_ok());
        let late = verify_at(&secret, &t, exp + leeway + 1)
            .await
            .map(|u| u.user.get());
        assert_eq!(
            late.map_err(|e| (e.code, e.message)),
            Err((ErrorCode::Unauthorized, "the token has expired".to_owned()))
        );
        assert!(!secret.0.verified.tokens.contains_key(t.as_str()));
    }

    #[tokio::test]
    async fn only_the_exact_verified_bytes_are_remembered() {
        let secret = JwtSecret::new("s3cret");
        let t = issue_token(&secret, 7, true, 60).expect("signed");
        verify(&secret, &t).await.expect("valid");
        let (head, sig) = t.rsplit_once('.').expect("three parts");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let forged = format!("{head}.{flipped}{}", &sig[1..]);
        assert_eq!(
            verify(&secret, &forged)
                .await
                .map(|_| ())
                .map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
        assert!(verify(&JwtSecret::new("other"), &t).await.is_err());
        assert_eq!(secret.0.verified.tokens.len(), 1);
    }

    #[tokio::test]
    async fn a_full_memory_drops_expired_tokens_first() {
        let secret = JwtSecret::with_capacity("s3cret", 2);
        let now = now_secs();
        let short = issue_token(&secret, 1, false, 1).expect("signed");
        let long = issue_token(&secret, 2, false, 3_600).expect("signed");
        let third = issue_token(&secret, 3, false, 3_600).expect("signed");
        verify_at(&secret, &short, now).await.expect("valid");
        verify_at(&secret, &long, now).await.expect("valid");
        let later = now + 1 + secret.0.validation.leeway + 1;
        assert_eq!(
            verify_at(&secret, &third, later)
                .await
                .expect("valid")
                .user
                .get(),
            3
        );
        let kept = &secret.0.verified.tokens;
        assert_eq!(kept.len(), 2);
        assert!(kept.contains_key(long.as_str()) && kept.contains_key(third.as_str()));
        // Nothing expired to drop: the memory starts again rather than grow.
        let fourth = issue_token(&secret, 4, false, 3_600).expect("signed");
        verify_at(&secret, &fourth, later).await.expect("valid");
        assert_eq!(secret.0.verified.tokens.len(), 1);
    }
}
