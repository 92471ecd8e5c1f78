//! The `LockManager` port: mutual exclusion over named keys, with fencing tokens.
//!
//! # Contract (every adapter MUST)
//! - **Sort and de-duplicate** the keys of one `acquire` call and take them in that order, so
//!   two callers asking for overlapping sets can never deadlock. Use [`normalize_keys`].
//! - **Bound waiting** by [`LockOptions::wait`]: after it, answer [`LockError::Timeout`] having
//!   taken nothing. A multi-key acquisition is all or nothing.
//! - Be **cancel-safe**: dropping the `acquire` future at any await point leaves nothing held and
//!   no waiter queued.
//! - Give each grant a [`FencingToken`] per key that is **strictly greater** than every token
//!   granted for that key before, across restarts of the process where the adapter can (a
//!   single global sequence is fine). Stores check tokens (`UnitOfWork::check_fences`) so a
//!   holder whose lease ran out cannot overwrite newer work.
//! - Let a grant live at most [`LockOptions::lease`] if its holder vanishes, unless the adapter
//!   extends a live holder's lease (a watchdog); once a lease is lost, [`HeldLock::lease_lost`]
//!   MUST report it.
//! - Release on [`LockGuard::release`] and, when a guard is merely dropped, in the background
//!   (promptly, without blocking the dropping thread).
//! - Only ever release what the guard's own grant holds (never a newer holder's grant).
//! - Map backend failures to [`LockError::Backend`].

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// A lock name such as `balance:user:7`. 1 to 200 characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockKey(String);

impl LockKey {
    /// # Errors
    /// Returns the reason when the name is empty, too long or holds whitespace.
    pub fn new(name: impl Into<String>) -> Result<LockKey, String> {
        let name = name.into();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_whitespace) {
            return Err(format!("invalid lock key {name:?}"));
        }
        Ok(LockKey(name))
    }

    /// For keys built from validated parts (ids); the format is checked in debug builds.
    pub(crate) fn of(name: String) -> LockKey {
        debug_assert!(LockKey::new(name.clone()).is_ok());
        LockKey(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number that grows with every grant of a key; see the module contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

/// Who holds a lock, for re-entrant acquisition. Adapters that support re-entrancy grant a key
/// again to the same owner without waiting; the key is released when every grant is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockOwner(pub String);

/// How to acquire.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// How long to queue for the keys before giving up.
    pub wait: Duration,
    /// How long a grant lives if its holder vanishes.
    pub lease: Duration,
    /// For re-entrant acquisition; `None` = never re-entrant.
    pub owner: Option<LockOwner>,
}

impl LockOptions {
    pub fn new(wait: Duration, lease: Duration) -> Self {
        LockOptions {
            wait,
            lease,
            owner: None,
        }
    }
}

/// A key and the token its grant carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: LockKey,
    pub token: FencingToken,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("timed out waiting for the lock")]
    Timeout,
    #[error("the lock's lease ran out before the work finished")]
    LeaseLost,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The adapter's side of a grant. Its `Drop` MUST release in the background if `release` was
/// not called.
#[async_trait]
pub trait HeldLock: Send + Sync + fmt::Debug {
    /// Whether the lease of any key ran out (another holder may have the key now).
    fn lease_lost(&self) -> bool;
    /// Releases every key of the grant.
    async fn release(self: Box<Self>) -> Result<(), LockError>;
}

/// A grant of one or more keys. Release with [`LockGuard::release`]; dropping also releases.
#[derive(Debug)]
pub struct LockGuard {
    fences: Vec<Fence>,
    held: Box<dyn HeldLock>,
}

impl LockGuard {
    /// For adapters: wraps a grant. `fences` are in key order.
    pub fn new(fences: Vec<Fence>, held: Box<dyn HeldLock>) -> Self {
        LockGuard { fences, held }
    }

    /// The keys and their tokens, sorted by key.
    pub fn fences(&self) -> &[Fence] {
        &self.fences
    }

    /// The token of one key of the grant.
    pub fn token(&self, key: &LockKey) -> Option<FencingToken> {
        self.fences.iter().find(|f| &f.key == key).map(|f| f.token)
    }

    /// # Errors
    /// [`LockError::LeaseLost`] once the lease ran out: the holder must not write.
    /// The grant behind this guard.
    pub fn held(&self) -> &dyn HeldLock {
        self.held.as_ref()
    }

    pub fn check(&self) -> Result<(), LockError> {
        if self.held.lease_lost() {
            Err(LockError::LeaseLost)
        } else {
            Ok(())
        }
    }

    /// Releases every key now.
    ///
    /// # Errors
    /// [`LockError::Backend`] when the backend could not be told; the lease still bounds the
    /// grant's life.
    pub async fn release(self) -> Result<(), LockError> {
        self.held.release().await
    }
}

/// Mutual exclusion over named keys. See the module docs for the contract.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LockManager: Send + Sync + fmt::Debug {
    /// Acquires every key in `keys` (sorted and de-duplicated inside), or none.
    ///
    /// # Errors
    /// [`LockError::Timeout`] after `options.wait`; [`LockError::Backend`] when the backend
    /// fails. An empty key set is granted at once.
    async fn acquire(&self, keys: &[LockKey], options: LockOptions)
        -> Result<LockGuard, LockError>;

    /// Whether a grant could be had now: the backend answers (for Redlock, a majority of its
    /// nodes). For readiness probes; takes nothing.
    ///
    /// # Errors
    /// [`LockError::Backend`] when it could not.
    async fn check(&self) -> Result<(), LockError> {
        Ok(())
    }
}

/// Sorts and de-duplicates keys: the one acquisition order every adapter uses.
pub fn normalize_keys(keys: &[LockKey]) -> Vec<LockKey> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    keys
}

/// The lock names the use cases take. One place, so every adapter and every instance agrees.
pub mod keys {
    use super::LockKey;
    use stockade_domain::{CouponId, OrderId, ProductId, UserId};

    pub fn balance(user: UserId) -> LockKey {
        LockKey::of(format!("balance:user:{user}"))
    }
    pub fn cart(user: UserId) -> LockKey {
        LockKey::of(format!("cart:user:{user}"))
    }
    pub fn stock(product: ProductId) -> LockKey {
        LockKey::of(format!("stock:product:{product}"))
    }
    pub fn payment(order: OrderId) -> LockKey {
        LockKey::of(format!("payment:order:{order}"))
    }
    pub fn coupon(coupon: CouponId) -> LockKey {
        LockKey::of(format!("coupon:{coupon}"))
    }
    /// `coupon-replay:{id}`: one replay of a coupon's recorded failures at a time.
    pub fn coupon_replay(coupon: CouponId) -> LockKey {
        LockKey::of(format!("coupon-replay:{coupon}"))
    }
    /// The sign-up lock of an email: `register:{email}`, or `register:#{sha-256 hex}` for an
    /// email too long for a key (over 191 characters).
    pub fn register(email: &stockade_domain::Email) -> LockKey {
        of_email("register", email)
    }

    /// `sign-in:{email}`: one sign-in of an email at a time, so the failures counted before a
    /// password is checked include every earlier attempt (the throttle cannot be raced).
    pub fn sign_in(email: &stockade_domain::Email) -> LockKey {
        of_email("sign-in", email)
    }

    /// `{prefix}:{email}`, or `{prefix}:#{sha256}` for an email too long for a key.
    fn of_email(prefix: &str, email: &stockade_domain::Email) -> LockKey {
        use sha2::{Digest, Sha256};
        let name = format!("{prefix}:{email}");
        if name.len() <= 200 {
            return LockKey::of(name);
        }
        let digest = Sha256::digest(email.as_str().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        LockKey::of(format!("{prefix}:#{hex}"))
    }
}
