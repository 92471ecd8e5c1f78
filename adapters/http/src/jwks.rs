//! An external identity provider's public keys (a JWKS), for RS256 and ES256 tokens, chosen by
//! the token's `kid`. The set is read from a file or a URL at start and read again when a token
//! names a `kid` the set does not have, at most once every [`REFETCH_AFTER`] (so a flood of
//! tokens with made-up ids cannot turn into a flood of fetches), and in the background every
//! [`REFRESH_EVERY`] while it is used, so a key the provider withdrew stops verifying.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// The shortest time between two fetches of the set for an unknown `kid`.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// How old the set may grow while its keys are used before it is fetched again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// How long one fetch of a URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the key set is read from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// Why the key set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("could not read the JWKS file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not fetch the JWKS from {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the JWKS is not valid JSON Web Key Set: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("the JWKS holds no RS256 or ES256 (P-256) key with a `kid`")]
    NoKeys,
}

/// A usable key: what verifies, and the one algorithm it verifies.
#[derive(Clone)]
struct Key {
    decoding: DecodingKey,
    algorithm: Algorithm,
}

/// The keys by `kid`, and when they were last fetched.
#[derive(Clone)]
pub struct KeySet(Arc<Inner>);

struct Inner {
    source: JwksSource,
    refetch_after: Duration,
    refresh_every: Duration,
    keys: RwLock<HashMap<String, Key>>,
    /// Held while fetching, so that concurrent misses fetch once; the time of the last fetch.
    fetched: Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.0.source)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Reads the set once from `source` (a URL that does not answer now is fetched again when
    /// a token needs it).
    ///
    /// # Errors
    /// [`JwksError`] when the file cannot be read or the set holds no usable key.
    pub async fn load(source: JwksSource) -> Result<KeySet, JwksError> {
        Self::load_with(source, REFETCH_AFTER, REFRESH_EVERY).await
    }

    async fn load_with(
        source: JwksSource,
        refetch_after: Duration,
        refresh_every: Duration,
    ) -> Result<KeySet, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        let set = KeySet(Arc::new(Inner {
            source,
            refetch_after,
            refresh_every,
            keys: RwLock::new(HashMap::new()),
            fetched: Mutex::new(None),
            client,
        }));
        match set.fetch().await {
            Ok(keys) => {
                *set.0.keys.write().await = keys;
                *set.0.fetched.lock().await = Some(Instant::now());
            }
            // A provider that is down for a moment must not keep the service from starting:
            // the first token with a `kid` fetches again. A bad file is a configuration error.
            Err(e) if matches!(set.0.source, JwksSource::Url(_)) => {
                tracing::warn!(error = %e, "the JWKS could not be fetched at start; tokens of the identity provider are refused until it can");
            }
            Err(e) => return Err(e),
        }
        Ok(set)
    }

    /// The key named `kid`, fetching the set again if it is unknown and the last fetch is
    /// older than [`REFETCH_AFTER`].
    pub(crate) async fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let hit = self.0.keys.read().await.get(kid).cloned();
        if let Some(k) = hit {
            self.refresh_if_stale();
            return Some((k.decoding, k.algorithm));
        }
        let mut fetched = self.0.fetched.lock().await;
        // Someone else may have fetched while this waited.
        if let Some(k) = self.0.keys.read().await.get(kid) {
            return Some((k.decoding.clone(), k.algorithm));
        }
        if fetched.is_some_and(|at| at.elapsed() < self.0.refetch_after) {
            return None;
        }
        *fetched = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => *self.0.keys.write().await = keys,
            Err(e) => tracing::warn!(error = %e, "could not refresh the JWKS"),
        }
        let keys = self.0.keys.read().await;
        keys.get(kid).map(|k| (k.decoding.clone(), k.algorithm))
    }

    /// Fetches the set again in the background when the last fetch is older than
    /// [`REFRESH_EVERY`] (and no fetch is under way): the answer in hand does not wait for it.
    fn refresh_if_stale(&self) {
        let Ok(mut fetched) = self.0.fetched.try_lock() else {
            return;
        };
        if fetched.is_some_and(|at| at.elapsed() < self.0.refresh_every) {
            return;
        }
        *fetched = Some(Instant::now());
        drop(fetched);
        let set = self.clone();
        tokio::spawn(async move {
            match set.fetch().await {
                Ok(keys) => *set.0.keys.write().await = keys,
                Err(e) => tracing::warn!(error = %e, "could not refresh the JWKS"),
            }
        });
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, JwksError> {
        let body = match &self.0.source {
            JwksSource::File(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| JwksError::File {
                        path: path.clone(),
                        source,
                    })?
            }
            JwksSource::Url(url) => {
                let fetch = async {
                    self.0
                        .client
                        .get(url)
                        .send()
                        .await?
                        .error_for_status()?
                        .bytes()
                        .await
                };
                fetch
                    .await
                    .map_err(|source| JwksError::Fetch {
                        url: url.clone(),
                        source,
                    })?
                    .to_vec()
            }
        };
        parse(&body)
    }
}

/// The RS256 and ES256 (P-256) signing keys of a set that have a `kid`; every other key is
/// skipped (a set often holds keys for other services, encryption keys, or kinds this library
/// does not read), one by one, so one such key never makes the whole set unusable. A key that
/// names an algorithm is used only when it names the one its kind verifies here.
fn parse(body: &[u8]) -> Result<HashMap<String, Key>, JwksError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(JwksError::Parse)?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let named_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
            Some(_) => false,
        };
        if !named_ok {
            continue;
        }
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.insert(
            kid,
            Key {
                decoding,
                algorithm,
            },
        );
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

#[cfg(test)]
#[path = "jwks_tests.rs"]
mod tests;
