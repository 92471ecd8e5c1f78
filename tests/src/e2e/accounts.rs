//! Accounts end to end (register, login, me), on every backend.

use super::{expect, scrape, series};
use crate::http::{answer, spawn_app, Answer, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An email no other test (or earlier run on a kept database) uses.
fn fresh_email(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{tag}-{nanos}-{}@example.com",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn register(app: &TestServer, body: Value) -> Answer {
    app.call(
        Method::POST,
        "/api/v1/auth/register",
        None,
        None,
        Some(body),
    )
    .await
}

async fn login(app: &TestServer, email: &str, password: &str) -> Answer {
    app.call(
        Method::POST,
        "/api/v1/auth/login",
        None,
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

async fn with_token(app: &TestServer, path: &str, token: &str) -> Answer {
    answer(
        app.client
            .get(format!("{}{path}", app.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub async fn accounts_register_login_and_me(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let before = scrape(&app).await;
    let email = fresh_email("Ann");
    let r = register(
        &app,
        json!({"email": format!("  {}  ", email.to_uppercase()), "password": "correct horse", "name": "Ann"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert_eq!(r.location.as_deref(), Some("/api/v1/users/me"));
    let id = r.data()["userId"].as_i64().unwrap();
    assert!(id >= 1_000_001, "{}", r.raw);
    assert_eq!(
        r.data(),
        &json!({"userId": id, "email": email.to_lowercase(), "name": "Ann"})
    );
    assert!(!r.raw.contains("correct horse") && !r.raw.contains("argon2"));

    let other = register(
        &app,
        json!({"email": fresh_email("bob"), "password": "another one", "name": "Bob"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.raw);
    assert_ne!(other.data()["userId"].as_i64().unwrap(), id);

    // Sign in with the email in another case and spacing.
    let l = login(&app, &format!(" {email} "), "correct horse").await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.raw);
    assert_eq!(l.data()["tokenType"], "Bearer");
    assert_eq!(l.data()["expiresIn"], 3_600);
    assert_eq!(l.data()["userId"], id);
    let token = l.data()["accessToken"].as_str().unwrap().to_owned();

    // The token is the API's own: the wallet answers for the registered id.
    let balance = with_token(&app, "/api/v1/users/me/balance", &token).await;
    assert_eq!(balance.status, StatusCode::OK, "{}", balance.raw);
    assert_eq!(balance.data()["userId"], id);

    let me = with_token(&app, "/api/v1/users/me", &token).await;
    assert_eq!(
        me.data(),
        &json!({"userId": id, "role": "user", "email": email.to_lowercase(), "name": "Ann"}),
        "{}",
        me.raw
    );
    // Users known only by a token have no email; an admin token says so.
    let known_by_token = app.get("/api/v1/users/me", Some(7)).await;
    assert_eq!(known_by_token.data(), &json!({"userId": 7, "role": "user"}));
    let admin = app.get("/api/v1/users/me", Some(1_000)).await;
    assert_eq!(admin.data(), &json!({"userId": 1_000, "role": "admin"}));
    let anonymous = app.get("/api/v1/users/me", None).await;
    expect(&anonymous, 401, "UNAUTHORIZED");
    assert_eq!(anonymous.www_authenticate.as_deref(), Some("Bearer"));

    let after = scrape(&app).await;
    let signups =
        series(&after, "stockade_signups_total") - series(&before, "stockade_signups_total");
    assert!(signups >= 2.0, "sign-ups counted: {signups}");
}

pub async fn accounts_refuse_bad_input_and_taken_emails(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let email = fresh_email("carol");
    let good = json!({"email": email, "password": "long enough", "name": "Carol"});
    let long_email = format!("{}@example.com", "a".repeat(243));
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, field) in [
        (with("email", json!("carol.example.com")), "email"),
        (with("email", json!("a@b@example.com")), "email"),
        (with("email", json!("@example.com")), "email"),
        (with("email", json!("carol@")), "email"),
        (with("email", json!("   ")), "email"),
        (with("email", json!(long_email)), "email"),
        (with("email", json!(5)), "email"),
        (with("password", json!("seven77")), "password"),
        (with("password", json!("p".repeat(129))), "password"),
        (with("name", json!("")), "name"),
        (with("name", json!("n".repeat(101))), "name"),
        (with("role", json!("admin")), "role"),
        (json!({"email": email, "password": "long enough"}), "name"),
    ] {
        let a = register(&app, body.clone()).await;
        expect(&a, 400, "INVALID_INPUT");
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{field}: {}", a.raw);
        assert!(
            !a.raw.contains("seven77"),
            "a password was quoted: {}",
            a.raw
        );
    }
    // 254 characters after trimming is still an email.
    let longest = format!(
        "{}{}@x.io",
        fresh_email("d").replace("@example.com", ""),
        "a"
    );
    let longest = format!("{longest}{}", "o".repeat(254 - longest.len()));
    let a = register(&app, with("email", json!(format!(" {longest} ")))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);

    let first = register(&app, good.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    let again = register(
        &app,
        with("email", json!(format!("\t{}\n", email.to_uppercase()))),
    )
    .await;
    expect(&again, 409, "EMAIL_TAKEN");

    for body in [
        json!({"email": "no-at-sign", "password": "whatever"}),
        json!({"email": email, "password": ""}),
        json!({"email": email}),
        json!({"email": email, "password": "long enough", "name": "x"}),
    ] {
        let a = app
            .call(Method::POST, "/api/v1/auth/login", None, None, Some(body))
            .await;
        expect(&a, 400, "INVALID_INPUT");
    }
}

pub async fn accounts_one_email_signed_up_100_times_at_once(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let email = fresh_email("race");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        // Every spelling of one email: case and surrounding spaces vary.
        let spelled = match i % 4 {
            0 => email.clone(),
            1 => email.to_uppercase(),
            2 => format!("  {email}\t"),
            _ => format!(" {} ", email.replacen('r', "R", 1)),
        };
        tasks.push(tokio::spawn(async move {
            let body = json!({"email": spelled, "password": format!("password-{i}"), "name": format!("n{i}")});
            register(&app, body).await
        }));
    }
    let (mut created, mut taken) = (Vec::new(), 0);
    for t in tasks {
        let a = t.await.unwrap();
        match (a.status.as_u16(), a.code()) {
            (201, None) => created.push(a),
            (409, Some("EMAIL_TAKEN")) => taken += 1,
            other => panic!("unexpected {other:?}: {}", a.raw),
        }
    }
    assert_eq!((created.len(), taken), (1, 99));
    let winner = &created[0];
    let name = winner.data()["name"].as_str().unwrap();
    let password = format!("password-{}", name.trim_start_matches('n'));
    let l = login(&app, &email, &password).await;
    assert_eq!(l.status, StatusCode::OK, "{}", l.raw);
    assert_eq!(l.data()["userId"], winner.data()["userId"]);
}

pub async fn accounts_wrong_credentials_then_throttled(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let before = scrape(&app).await;
    let email = fresh_email("dave");
    let r = register(
        &app,
        json!({"email": email, "password": "right password", "name": "Dave"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);

    let unknown = login(&app, &fresh_email("nobody"), "right password").await;
    let wrong = login(&app, &email, "wrong password").await;
    for a in [&unknown, &wrong] {
        expect(a, 401, "INVALID_CREDENTIALS");
        assert_eq!(a.www_authenticate.as_deref(), Some("Bearer"), "{}", a.raw);
    }
    assert_eq!(
        unknown.body["error"]["message"], wrong.body["error"]["message"],
        "one answer for both"
    );
    // Four more failures make five within the window: the next sign-in is refused even with
    // the right password, with the time left.
    for _ in 0..4 {
        expect(
            &login(&app, &email.to_uppercase(), "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        );
    }
    let throttled = login(&app, &email, "right password").await;
    expect(&throttled, 429, "TOO_MANY_REQUESTS");
    let secs: u64 = throttled
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        (850..=900).contains(&secs),
        "Retry-After {secs}: {}",
        throttled.raw
    );
    // Another email is not held back.
    let other = fresh_email("erin");
    register(
        &app,
        json!({"email": other, "password": "right password", "name": "Erin"}),
    )
    .await;
    assert_eq!(
        login(&app, &other, "right password").await.status,
        StatusCode::OK
    );

    let after = scrape(&app).await;
    let moved = |labels: &str| series(&after, labels) - series(&before, labels);
    assert!(moved(r#"stockade_logins_refused_total{reason="invalid_credentials"}"#) >= 6.0);
    assert!(moved(r#"stockade_logins_refused_total{reason="throttled"}"#) >= 1.0);
}

/// Thirty wrong guesses for one email sent at once are counted one after another: at most five
/// are checked (401), every other one is refused by the throttle (429).
pub async fn accounts_parallel_guesses_cannot_race_the_throttle(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let email = fresh_email("frank");
    let r = register(
        &app,
        json!({"email": email, "password": "right password", "name": "Frank"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (app, email) = (app.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            login(&app, &email, &format!("guess number {i}")).await
        }));
    }
    let (mut checked, mut throttled) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            401 => checked += 1,
            429 => throttled += 1,
            _ => panic!("unexpected answer: {}", a.raw),
        }
    }
    assert_eq!((checked, throttled), (5, 25));
    expect(
        &login(&app, &email, "right password").await,
        429,
        "TOO_MANY_REQUESTS",
    );
}

/// The time one sign-in takes to be refused.
async fn timed_refusal(app: &TestServer, email: &str, password: &str) -> Duration {
    let started = Instant::now();
    let a = login(app, email, password).await;
    let took = started.elapsed();
    expect(&a, 401, "INVALID_CREDENTIALS");
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// An unknown email costs a hash check like a wrong password does. The two kinds of sign-in
/// take turns (so a burst of load on a shared machine falls on both), and the bound is loose:
/// what it tells apart is a hash checked (tens of milliseconds) from none at all.
pub async fn accounts_unknown_email_and_wrong_password_take_similar_time(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let mut known = Vec::new();
    for name in ["frank", "grace"] {
        let email = fresh_email(name);
        let r = register(
            &app,
            json!({"email": email, "password": "right password", "name": name}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        known.push(email);
    }
    // Warm up both paths once (the dummy hash is made on first use).
    login(&app, &fresh_email("warm"), "x").await;
    let (mut unknown_times, mut wrong_times) = (Vec::new(), Vec::new());
    // Four wrong passwords per email stay under the throttle's five.
    for i in 0..8 {
        let ghost = fresh_email("ghost");
        unknown_times.push(timed_refusal(&app, &ghost, "right password").await);
        wrong_times.push(timed_refusal(&app, &known[i % 2], "wrong password").await);
    }
    let unknown_median = median(unknown_times);
    let wrong_median = median(wrong_times);
    let (fast, slow) = if unknown_median < wrong_median {
        (unknown_median, wrong_median)
    } else {
        (wrong_median, unknown_median)
    };
    assert!(
        slow < fast * 3,
        "unknown email {unknown_median:?} vs wrong password {wrong_median:?}"
    );
    // A hash is checked either way: neither is instant.
    assert!(fast >= Duration::from_millis(5), "{fast:?}");
}
