//! The `serve` and `migrate` subcommands.

use crate::config::{MigrateArgs, ServeArgs};
use crate::{backends, Service, StartError};
use std::time::Duration;
use tokio::sync::watch;

/// `stockade migrate`: applies the Postgres migrations.
///
/// # Errors
/// [`StartError::Postgres`].
pub async fn migrate(args: &MigrateArgs) -> Result<(), StartError> {
    if args.create {
        let url = secrecy::ExposeSecret::expose_secret(&args.database_url);
        if stockade_postgres::create_database(url).await? {
            tracing::info!("database created");
        }
    }
    backends::postgres::migrate(&args.database_url, args.database_schema.clone()).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests and stops the workers.
///
/// # Errors
/// [`StartError`] when the service cannot be built or the address cannot be bound.
pub async fn serve(args: &ServeArgs) -> Result<(), StartError> {
    let files = crate::listen::raise_open_file_limit();
    let service = Service::build(args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: args.listen,
            source,
        })?;
    // Connected and migrated above; listening now, the start-up reconciliation runs in the
    // background (/health answers, /ready and business requests answer 503 until it is done)
    // and the workers start after it (docs/decisions/0020).
    let (stop, stopped) = watch::channel(false);
    let mut workers = service.spawn_workers(&stopped);
    tracing::info!(addr = %args.listen, profile = ?args.profile, "stockade is listening");
    let served =
        crate::listen::serve(listener, service.router(), args, files, shutdown_signal()).await;
    tracing::info!("shutting down: stopping workers");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop in 10 s; aborting them");
        workers.abort_all();
    }
    if let Err(e) = served {
        tracing::error!(error = %e, "server error");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
