//! `stockade serve | token | migrate`.

use clap::Parser;
use std::process::ExitCode;
use stockade::config::{Cli, Command, DEMO_JWT_SECRET};
use stockade::{serve, telemetry};
use stockade_http::{issue_token, JwtSecret};

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
            match issue_token(&secret, args.user, args.admin, args.ttl_secs) {
                Ok(token) => {
                    #[allow(clippy::print_stdout)]
                    {
                        println!("{token}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("stockade: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate(_) => {
            eprintln!(
                "stockade: migrate applies the postgres store's migrations, and this build has \
                 only the memory store (nothing to migrate)"
            );
            ExitCode::FAILURE
        }
    }
}
