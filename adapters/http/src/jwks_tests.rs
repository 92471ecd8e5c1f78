//! RS256 and ES256 tokens from keys generated here (with the `openssl` command), served as a
//! file and by a local HTTP server; `kid` choice, refetching, and the checks around them.

use super::*;
use crate::auth::{check_for_tests as check, TokenRules};
use crate::JwtSecret;
use base64::Engine as _;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A key pair made for the test: the private key (PKCS#8 PEM) and its public JWK.
struct Made {
    pem: Vec<u8>,
    jwk: serde_json::Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn make_rsa(dir: &std::path::Path, kid: &str) -> Made {
    let file = format!("{kid}.pem");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &file,
        ],
    );
    let modulus = String::from_utf8(openssl(dir, &["rsa", "-in", &file, "-noout", "-modulus"]))
        .expect("text");
    let n = hex(modulus.trim().trim_start_matches("Modulus="));
    Made {
        pem: std::fs::read(dir.join(&file)).expect("pem"),
        jwk: serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&n), "e": b64(&[1, 0, 1])}),
    }
}

fn make_ec(dir: &std::path::Path, kid: &str) -> Made {
    let file = format!("{kid}.pem");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &file,
        ],
    );
    let der = openssl(dir, &["pkey", "-in", &file, "-pubout", "-outform", "DER"]);
    // The DER ends with the uncompressed point: 0x04, x (32 bytes), y (32 bytes).
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 4);
    Made {
        pem: std::fs::read(dir.join(&file)).expect("pem"),
        jwk: serde_json::json!({"kty": "EC", "kid": kid, "crv": "P-256",
            "x": b64(&point[1..33]), "y": b64(&point[33..])}),
    }
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stockade-jwks-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).expect("signed")
}

fn set(keys: &[&Made]) -> Vec<u8> {
    let keys: Vec<&serde_json::Value> = keys.iter().map(|m| &m.jwk).collect();
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("json")
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_by_kid_and_the_rules_hold() {
    let dir = temp_dir();
    let rsa = make_rsa(&dir, "rsa-1");
    let ec = make_ec(&dir, "ec-1");
    let path = dir.join("jwks.json");
    std::fs::write(&path, set(&[&rsa, &ec])).expect("written");
    let keys = KeySet::load(JwksSource::File(path)).await.expect("loaded");
    let secret = JwtSecret::with_rules(
        "s3cret",
        TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("stockade".into()),
            keys: Some(keys),
        },
    );
    let rsa_key = EncodingKey::from_rsa_pem(&rsa.pem).expect("rsa pem");
    let ec_key = EncodingKey::from_ec_pem(&ec.pem).expect("ec pem");
    let good = |sub: u64, role: &str| {
        serde_json::json!({"sub": sub.to_string(), "role": role, "exp": exp(),
            "iss": "https://id.example", "aud": "stockade"})
    };
    let (u, _) = check(
        &secret,
        &sign(Algorithm::RS256, Some("rsa-1"), &rsa_key, good(41, "user")),
    )
    .await
    .expect("an RS256 token of a known key");
    assert_eq!((u.user.get(), u.admin), (41, false));
    let (u, _) = check(
        &secret,
        &sign(Algorithm::ES256, Some("ec-1"), &ec_key, good(42, "admin")),
    )
    .await
    .expect("an ES256 token of a known key");
    assert_eq!((u.user.get(), u.admin), (42, true));
    // Minted tokens carry the issuer and audience, and still verify with the secret.
    let minted = crate::issue_token(&secret, 43, false, 60).expect("minted");
    assert_eq!(
        check(&secret, &minted).await.expect("minted").0.user.get(),
        43
    );

    let refused = |token: String| {
        let secret = secret.clone();
        async move {
            check(&secret, &token)
                .await
                .map(|_| ())
                .map_err(|e| (e.code, e.invalid_token))
        }
    };
    let unauthorized = Err((stockade_domain::ErrorCode::Unauthorized, true));
    // The wrong issuer, a missing audience, an unknown kid, no kid, and a key used for an
    // algorithm that is not its own.
    let mut wrong_iss = good(44, "user");
    wrong_iss["iss"] = "https://other.example".into();
    assert_eq!(
        refused(sign(Algorithm::RS256, Some("rsa-1"), &rsa_key, wrong_iss)).await,
        unauthorized
    );
    let mut no_aud = good(44, "user");
    no_aud.as_object_mut().expect("object").remove("aud");
    assert_eq!(
        refused(sign(Algorithm::RS256, Some("rsa-1"), &rsa_key, no_aud)).await,
        unauthorized
    );
    assert_eq!(
        refused(sign(
            Algorithm::RS256,
            Some("nope"),
            &rsa_key,
            good(44, "user")
        ))
        .await,
        unauthorized
    );
    assert_eq!(
        refused(sign(Algorithm::RS256, None, &rsa_key, good(44, "user"))).await,
        unauthorized
    );
    assert_eq!(
        refused(sign(
            Algorithm::ES256,
            Some("rsa-1"),
            &ec_key,
            good(44, "user")
        ))
        .await,
        unauthorized
    );
    // A token signed with another party's key under a known kid.
    let stranger = make_rsa(&dir, "rsa-stranger");
    let stranger_key = EncodingKey::from_rsa_pem(&stranger.pem).expect("pem");
    assert_eq!(
        refused(sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &stranger_key,
            good(44, "user")
        ))
        .await,
        unauthorized
    );
    // HS256 signed with the public key's bytes as the secret (algorithm confusion): refused,
    // HS256 only ever means the configured secret.
    let confused = EncodingKey::from_secret(rsa.jwk["n"].as_str().expect("n").as_bytes());
    assert_eq!(
        refused(sign(
            Algorithm::HS256,
            Some("rsa-1"),
            &confused,
            good(44, "user")
        ))
        .await,
        unauthorized
    );
    // Without a key set, RS256 is not accepted at all.
    let plain = JwtSecret::new("s3cret");
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa_key, good(45, "user"));
    assert!(check(&plain, &token).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves `body` at /jwks.json and counts the fetches.
async fn serve_jwks(body: Arc<std::sync::Mutex<Vec<u8>>>, fetches: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (body, fetches) = (body.clone(), fetches.clone());
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let bytes = body.lock().expect("body").clone();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bound");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/jwks.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_the_url_at_most_once_per_interval() {
    let dir = temp_dir();
    let first = make_rsa(&dir, "rsa-a");
    let rotated = make_ec(&dir, "ec-b");
    let body = Arc::new(std::sync::Mutex::new(set(&[&first])));
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = serve_jwks(body.clone(), fetches.clone()).await;
    let keys = KeySet::load_with(
        JwksSource::Url(url),
        Duration::from_millis(400),
        Duration::from_secs(600),
    )
    .await
    .expect("loaded");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let secret = JwtSecret::with_rules(
        "s3cret",
        TokenRules {
            keys: Some(keys),
            ..TokenRules::default()
        },
    );
    let claims = |sub: u64| serde_json::json!({"sub": sub, "role": "user", "exp": exp()});
    let a = sign(
        Algorithm::RS256,
        Some("rsa-a"),
        &EncodingKey::from_rsa_pem(&first.pem).expect("pem"),
        claims(1),
    );
    assert!(check(&secret, &a).await.is_ok());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "a known kid needs no fetch"
    );

    // The provider rotates in a new key; tokens naming it arrive at once, many together.
    *body.lock().expect("body") = set(&[&first, &rotated]);
    let b_key = EncodingKey::from_ec_pem(&rotated.pem).expect("pem");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let mut tasks = Vec::new();
    for u in 0..50 {
        let (secret, token) = (
            secret.clone(),
            sign(Algorithm::ES256, Some("ec-b"), &b_key, claims(100 + u)),
        );
        tasks.push(tokio::spawn(
            async move { check(&secret, &token).await.is_ok() },
        ));
    }
    for t in tasks {
        assert!(t.await.expect("joined"), "a token of the rotated-in key");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "fifty misses, one fetch");

    // Made-up kids right after: no fetch until the interval has passed.
    for u in 0..20 {
        let forged = sign(
            Algorithm::ES256,
            Some(&format!("made-up-{u}")),
            &b_key,
            claims(7),
        );
        assert!(check(&secret, &forged).await.is_err());
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "unknown kids within the interval fetch nothing"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let forged = sign(Algorithm::ES256, Some("made-up-again"), &b_key, claims(7));
    assert!(check(&secret, &forged).await.is_err());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "after the interval, one more fetch"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_set_without_usable_keys_or_a_missing_file_is_an_error() {
    let dir = temp_dir();
    let path = dir.join("empty.json");
    std::fs::write(
        &path,
        br#"{"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}"#,
    )
    .expect("written");
    assert!(matches!(
        KeySet::load(JwksSource::File(path)).await,
        Err(JwksError::NoKeys)
    ));
    let missing = KeySet::load(JwksSource::File(dir.join("missing.json"))).await;
    assert!(matches!(missing, Err(JwksError::File { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn keys_this_service_cannot_use_are_skipped_one_by_one() {
    let dir = temp_dir();
    let rsa = make_rsa(&dir, "rsa-sig");
    let mut enc = make_rsa(&dir, "rsa-enc").jwk;
    enc["use"] = "enc".into();
    enc["alg"] = "RSA-OAEP".into();
    let mut oaep_named = make_rsa(&dir, "rsa-oaep").jwk;
    oaep_named["alg"] = "RSA-OAEP-256".into();
    let body = serde_json::to_vec(&serde_json::json!({"keys": [
        {"kty": "EC", "kid": "k1", "crv": "P-521", "x": "AA", "y": "AA", "alg": "ES512"},
        {"kty": "OKP", "kid": "k2", "crv": "X25519", "x": "AA"},
        {"kty": "RSA", "kid": "k3", "alg": "RSA-OAEP-384", "n": "AQAB", "e": "AQAB"},
        {"kty": "weird"},
        enc,
        oaep_named,
        rsa.jwk,
    ]}))
    .expect("json");
    let keys = parse(&body).expect("one usable key among the others");
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["rsa-sig"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_withdrew_stops_verifying_after_a_refresh() {
    let dir = temp_dir();
    let old = make_rsa(&dir, "rsa-old");
    let new = make_rsa(&dir, "rsa-new");
    let body = Arc::new(std::sync::Mutex::new(set(&[&old, &new])));
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = serve_jwks(body.clone(), fetches.clone()).await;
    let keys = KeySet::load_with(
        JwksSource::Url(url),
        Duration::from_millis(100),
        Duration::from_millis(300),
    )
    .await
    .expect("loaded");
    let secret = JwtSecret::with_rules(
        "s3cret",
        TokenRules {
            keys: Some(keys),
            ..TokenRules::default()
        },
    );
    let old_key = EncodingKey::from_rsa_pem(&old.pem).expect("pem");
    let token = |sub: u64| {
        sign(
            Algorithm::RS256,
            Some("rsa-old"),
            &old_key,
            serde_json::json!({"sub": sub, "role": "user", "exp": exp()}),
        )
    };
    assert!(check(&secret, &token(1)).await.is_ok());
    *body.lock().expect("body") = set(&[&new]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The set is stale: this answer still uses the key in hand and starts a refresh.
    assert!(check(&secret, &token(2)).await.is_ok());
    let mut withdrawn = false;
    for sub in 3..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if check(&secret, &token(sub)).await.is_err() {
            withdrawn = true;
            break;
        }
    }
    assert!(withdrawn, "a withdrawn key kept verifying new tokens");
    assert!(fetches.load(Ordering::SeqCst) >= 2);
    let _ = std::fs::remove_dir_all(&dir);
}
