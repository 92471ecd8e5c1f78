//! `stockade serve | token | migrate`.

use clap::Parser;
use std::process::ExitCode;
use stockade::config::{Cli, Command, DEMO_JWT_SECRET};
use stockade::{serve, telemetry};
use stockade_http::{issue_token, JwtSecret};

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// across the runtime's threads, which glibc's malloc serves with more contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            telemetry::init(args.log_format);
            match serve(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("stockade: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(args) => {
            let secret = match &args.jwt_secret {
                Some(s) => JwtSecret::new(s.0.clone()),
                None => {
                    eprintln!("stockade: no STOCKADE_JWT_SECRET set; signing with the demo secret");
                    JwtSecret::new(DEMO_JWT_SECRET)
                }
            };
            if args.user < 1 {
                eprintln!("stockade: --user must be a positive id");
                return ExitCode::FAILURE;
            }
            let mut out = String::new();
            for user in args.user..args.user.saturating_add(i64::from(args.count.max(1))) {
                match issue_token(&secret, user, args.admin, args.ttl_secs) {
                    Ok(token) => {
                        out.push_str(&token);
                        out.push('\n');
                    }
                    Err(e) => {
                        eprintln!("stockade: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            #[allow(clippy::print_stdout)]
            {
                print!("{out}");
            }
            ExitCode::SUCCESS
        }
        Command::Migrate(args) => {
            telemetry::init(stockade::config::LogFormat::Text);
            match stockade::migrate(&args).await {
                Ok(()) => {
                    tracing::info!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stockade: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
