//! The whole service on the in-memory backends, for the crate's own tests.

use crate::{issue_token, router, AppState, JwtSecret, Readiness};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::Clock;
use stockade_application::{Settings, Stockade};
use stockade_memory::{MemoryBackend, SystemClock};

const SECRET: &str = "stockade-http-unit-tests";

pub fn state() -> AppState {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let backend = MemoryBackend::new(clock);
    AppState {
        app: Stockade::new(backend.ports(), Settings::default()),
        jwt: JwtSecret::new(SECRET),
        metrics: None,
        reset: None,
        request_timeout: Duration::from_secs(10),
        cors: crate::CorsOrigins::Off,
        readiness: Readiness::serving(),
    }
}

pub fn admin_token() -> String {
    issue_token(&JwtSecret::new(SECRET), 1000, true, 3600).expect("token")
}

/// Serves the router on an ephemeral port of the loopback address until the test ends.
pub async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = router(state());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
