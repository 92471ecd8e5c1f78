//! The `token` subcommand: bearer tokens for the configured secret, for demos and load tests.

use crate::config::{TokenArgs, DEMO_JWT_SECRET};
use secrecy::ExposeSecret;
use stockade_http::auth::SignError;
use stockade_http::{issue_token, JwtSecret, TokenRules};

/// Why no tokens were printed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--user must be a positive id")]
    NotPositive,
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Signs tokens for `--user` and the `--count - 1` ids after it, one per line.
///
/// # Errors
/// [`TokenError`]; nothing is returned then.
pub fn issue(args: &TokenArgs) -> Result<String, TokenError> {
    let rules = TokenRules {
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        keys: None,
    };
    let secret = match &args.jwt_secret {
        Some(s) => JwtSecret::with_rules(s.expose_secret(), rules),
        None => {
            eprintln!("stockade: no STOCKADE_JWT_SECRET set; signing with the demo secret");
            JwtSecret::with_rules(DEMO_JWT_SECRET, rules)
        }
    };
    if args.user < 1 {
        return Err(TokenError::NotPositive);
    }
    let mut out = String::new();
    for user in args.user..args.user.saturating_add(i64::from(args.count.max(1))) {
        out.push_str(&issue_token(&secret, user, args.admin, args.ttl_secs)?);
        out.push('\n');
    }
    Ok(out)
}
