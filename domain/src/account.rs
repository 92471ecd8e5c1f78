//! Accounts: who may sign in with an email and a password (API "Accounts").
//!
//! The rules of the input live here; hashing, storage and throttling are the application's.

use crate::error::DomainError;
use std::fmt;

/// The longest email accepted, in characters (RFC 5321's path limit).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Password length bounds, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Display-name length bounds, in characters.
pub const NAME_MAX_CHARS: usize = 100;

/// An email as accounts know it: trimmed and lower-cased before anything else, so that
/// `" Ann@Example.COM "` and `"ann@example.com"` are one account. At most
/// [`EMAIL_MAX_CHARS`] characters, exactly one `@` with a non-empty part on each side, and no
/// whitespace or control character inside.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// `INVALID_INPUT` naming `email` when the normalised text is not an email by the rules above.
    pub fn parse(raw: &str) -> Result<Email, DomainError> {
        let email = raw.trim().to_lowercase();
        let invalid = |reason: &str| Err(DomainError::invalid("email", reason));
        if email.is_empty() {
            return invalid("must not be empty");
        }
        if email.chars().count() > EMAIL_MAX_CHARS {
            return invalid("must be at most 254 characters");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(Email(email))
            }
            _ => invalid("must have one @ with text on both sides"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as sent by a client. Its `Debug` never shows it and it has no `Display`, so it
/// cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password for a new account: [`PASSWORD_MIN_CHARS`]..=[`PASSWORD_MAX_CHARS`]
    /// characters.
    ///
    /// # Errors
    /// `INVALID_INPUT` naming `password` (never quoting it).
    pub fn new(raw: String) -> Result<Password, DomainError> {
        let n = raw.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
            return Err(DomainError::invalid(
                "password",
                "must be 8 to 128 characters",
            ));
        }
        Ok(Password(raw))
    }

    /// A password offered at sign-in: 1..=[`PASSWORD_MAX_CHARS`] characters (a shorter one
    /// than sign-up allows simply matches no account).
    ///
    /// # Errors
    /// `INVALID_INPUT` naming `password` when it is empty or over-long.
    pub fn offered(raw: String) -> Result<Password, DomainError> {
        let n = raw.chars().count();
        if !(1..=PASSWORD_MAX_CHARS).contains(&n) {
            return Err(DomainError::invalid(
                "password",
                "must be 1 to 128 characters",
            ));
        }
        Ok(Password(raw))
    }

    /// The secret itself, for the hashing function only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Checks a display name: 1..=[`NAME_MAX_CHARS`] characters.
///
/// # Errors
/// `INVALID_INPUT` naming `name`.
pub fn display_name(raw: &str) -> Result<String, DomainError> {
    let n = raw.chars().count();
    if n == 0 || n > NAME_MAX_CHARS {
        return Err(DomainError::invalid("name", "must be 1 to 100 characters"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased_first() {
        let e = Email::parse("  Ann.Lee@Example.COM \t").expect("valid");
        assert_eq!(e.as_str(), "ann.lee@example.com");
        assert_eq!(e, Email::parse("ann.lee@example.com").expect("valid"));
    }

    #[test]
    fn emails_need_one_at_with_both_parts_and_at_most_254_chars() {
        for bad in [
            "",
            "   ",
            "ann",
            "@example.com",
            "ann@",
            "a@b@c",
            "an n@x.io",
            "a\u{7}@x.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        let longest = format!("{}@x.io", "a".repeat(EMAIL_MAX_CHARS - 5));
        assert!(Email::parse(&longest).is_ok());
        let over = format!("{}@x.io", "a".repeat(EMAIL_MAX_CHARS - 4));
        assert!(Email::parse(&over).is_err());
        // The limit is checked after trimming.
        assert!(Email::parse(&format!("  {longest}  ")).is_ok());
    }

    #[test]
    fn password_and_name_bounds() {
        assert!(Password::new("1234567".into()).is_err());
        assert!(Password::new("12345678".into()).is_ok());
        assert!(Password::new("p".repeat(128)).is_ok());
        assert!(Password::new("p".repeat(129)).is_err());
        assert!(Password::offered(String::new()).is_err());
        assert!(Password::offered("x".into()).is_ok());
        assert!(display_name("").is_err());
        assert!(display_name("Ann").is_ok());
        assert!(display_name(&"n".repeat(100)).is_ok());
        assert!(display_name(&"n".repeat(101)).is_err());
    }

    #[test]
    fn a_password_never_shows_in_debug() {
        let p = Password::new("hunter2hunter2".into()).expect("valid");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        let err = Password::new("short".into()).expect_err("too short");
        assert!(!err.to_string().contains("short"));
    }
}
