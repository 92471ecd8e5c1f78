//! An external identity provider's public keys (a JWKS), for RS256 and ES256 tokens, chosen by
//! the token's `kid`. The set is read from a file or a URL at start and read again when a token
//! names a `kid` the set does not have, at most once every [`REFETCH_AFTER`] (so a flood of
//! tokens with made-up ids cannot turn into a flood of fetches).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// The shortest time between two fetches of the set.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

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
        Self::load_refetching_after(source, REFETCH_AFTER).await
    }

    async fn load_refetching_after(
        source: JwksSource,
        refetch_after: Duration,
    ) -> Result<KeySet, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        let set = KeySet(Arc::new(Inner {
            source,
            refetch_after,
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
        if let Some(k) = self.0.keys.read().await.get(kid) {
            return Some((k.decoding.clone(), k.algorithm));
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

/// The RS256 and ES256 (P-256) keys of a set that have a `kid`; other keys are skipped (a set
/// often holds keys for other services too). A key that names its algorithm is used for that
/// algorithm only.
fn parse(body: &[u8]) -> Result<HashMap<String, Key>, JwksError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(JwksError::Parse)?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        if named.is_some_and(|a| a != algorithm) {
            continue;
        }
        let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
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
