//! Password hashes: argon2id with OWASP's parameters (19 MiB of memory, 2 passes, 1 lane),
//! kept as PHC strings. Hashing and checking take tens of milliseconds of CPU on purpose, so
//! both run on the blocking pool, never on the async workers.

use crate::error::AppError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;
use stockade_domain::Password;

/// OWASP's first argon2id choice: m = 19 MiB, t = 2, p = 1.
fn hasher() -> Result<Argon2<'static>, AppError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| AppError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &Password) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2 hash: {e}")))
}

/// How many hashes run at once: one per core (at least two). Each takes 19 MiB and tens of
/// milliseconds of CPU; without a bound, a burst of sign-ins (unknown emails included, which
/// check the dummy hash) would start one per blocking thread, up to 512 of them: about 10 GiB.
/// The rest wait their turn here, under the request's time-out.
fn permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// Runs CPU-heavy work on the blocking pool, at most [`permits`] at once.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let _turn = permits()
        .acquire()
        .await
        .map_err(|e| AppError::Internal(format!("the hashing permits are closed: {e}")))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("the hashing task failed: {e}")))?
}

/// Hashes a new password (a fresh salt each time) into a PHC string.
///
/// # Errors
/// `INTERNAL_ERROR` only if the hashing library fails.
pub(crate) async fn hash(password: Password) -> Result<String, AppError> {
    blocking(move || hash_now(&password)).await
}

/// A hash of a password nobody has, made once per process with the same parameters, to check
/// against when an email has no account: that sign-in then costs what a wrong password costs.
fn dummy_hash() -> Result<&'static str, AppError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let made = hash_now(&Password::offered(
        "no account has this password".to_owned(),
    )?)?;
    Ok(DUMMY.get_or_init(|| made))
}

/// Whether `password` matches the PHC string `stored`; with `None` (no account), checks it
/// against a dummy hash and answers `false`, taking about as long.
///
/// # Errors
/// `INTERNAL_ERROR` when a stored hash cannot be read.
pub(crate) async fn verify(password: Password, stored: Option<String>) -> Result<bool, AppError> {
    blocking(move || {
        let known = stored.is_some();
        let phc = match &stored {
            Some(h) => h.as_str(),
            None => dummy_hash()?,
        };
        let parsed = PasswordHash::new(phc)
            .map_err(|e| AppError::Internal(format!("a stored password hash is not valid: {e}")))?;
        let matches = hasher()?
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn hashes_are_argon2id_phc_strings_that_verify_only_their_password() {
        let pw = Password::new("correct horse".to_owned()).expect("valid");
        let h = hash(pw.clone()).await.expect("hashed");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert_ne!(
            h,
            hash(pw.clone()).await.expect("hashed"),
            "a fresh salt each time"
        );
        assert!(verify(pw, Some(h.clone())).await.expect("checked"));
        let wrong = Password::offered("wrong horse".to_owned()).expect("valid");
        assert!(!verify(wrong.clone(), Some(h)).await.expect("checked"));
        assert!(!verify(wrong, None).await.expect("checked"));
    }
}
