//! `stockade serve | token | migrate`.

use clap::Parser;
use std::process::ExitCode;
use stockade::config::{Cli, Command, LogFormat};
use stockade::{migrate, serve, telemetry, token};

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// across the runtime's threads, which glibc's malloc serves with more contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Serve(args) => {
            telemetry::init(args.log_format);
            let served = serve(&args).await;
            served
                .inspect_err(|e| tracing::error!("{e}"))
                .map_err(|e| e.to_string())
        }
        Command::Token(args) => token::issue(&args)
            .map_err(|e| e.to_string())
            .map(|tokens| {
                #[allow(clippy::print_stdout)]
                {
                    print!("{tokens}");
                }
            }),
        Command::Migrate(args) => {
            telemetry::init(LogFormat::Text);
            migrate(&args).await.map_err(|e| e.to_string())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockade: {e}");
            ExitCode::FAILURE
        }
    }
}
