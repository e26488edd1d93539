//! The `dockersandbox-operator` binary: `run` the operator or print the `crd`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use dockersandbox_operator::config::{Cli, Command, Config, LogFormat};
use dockersandbox_operator::controller::{Context, controllers};
use dockersandbox_operator::http::{AppState, serve};
use dockersandbox_operator::metrics::Metrics;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", dockersandbox_operator::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Run(config) => match run(*config).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                eprintln!("dockersandbox-operator: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

fn telemetry(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    telemetry(&config);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    check_crd(&client).await;
    info!(namespaces = ?config.watched_namespaces(), allow_privileged = config.allow_privileged,
          sysbox_runtime_class = %config.sysbox_runtime_class, default_image = %config.default_image, "starting");

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let http_addr = config.http_addr;
    let ctx = Arc::new(Context::new(client, config, metrics.clone()));
    let (stores, controllers) = controllers(ctx, shutdown.clone());

    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState { metrics, stores: stores.clone(), ready: ready.clone() };
    tokio::spawn(async move {
        for store in stores {
            if store.wait_until_ready().await.is_err() {
                return;
            }
        }
        ready.store(true, Ordering::Relaxed);
        info!("watch caches synced");
    });
    tokio::spawn(signals(shutdown.clone()));
    let http = tokio::spawn(serve(http_addr, state, shutdown.clone()));
    controllers.await;
    shutdown.cancel();
    http.await??;
    info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn signals(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot listen for SIGTERM: {e}");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// Says plainly when the CRD is missing (the watchers would otherwise only retry).
async fn check_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt("dockersandboxes.dockersandbox.dev").await {
        Ok(Some(_)) => {}
        Ok(None) => error!("the DockerSandbox CRD is not installed: kubectl apply --server-side -f crds/"),
        Err(e) => info!("cannot read CRDs ({e}); assuming the DockerSandbox CRD is installed"),
    }
}
