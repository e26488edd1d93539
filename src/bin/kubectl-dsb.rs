//! `kubectl-dsb`: the kubectl plugin (`kubectl dsb ...` once it is on PATH). See
//! `dockersandbox_operator::plugin`.

use clap::Parser;
use dockersandbox_operator::plugin::{self, cli::Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // called as kubectl_complete-dsb (a link to this program): kubectl asks for completions
    let program = std::env::args().next().unwrap_or_default();
    if program.rsplit('/').next().is_some_and(|p| p.starts_with("kubectl_complete-dsb")) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        plugin::complete::run(std::env::args().skip(1).collect()).await;
        return std::process::ExitCode::SUCCESS;
    }
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
