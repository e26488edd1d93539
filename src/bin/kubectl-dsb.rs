//! `kubectl-dsb`: the kubectl plugin (`kubectl dsb ...` once it is on PATH). See
//! `dockersandbox_operator::plugin`.

use clap::Parser;
use dockersandbox_operator::plugin::{self, cli::Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match plugin::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
