//! The `dockersandbox-operator` binary: `run` the operator or print the `crd`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use dockersandbox_operator::config::{ActivatorConfig, Cli, Command, Config, CrdKind, LogFormat, Serving};
use dockersandbox_operator::controller::{self, Caches, Context, controllers};
use dockersandbox_operator::crd::DockerSandbox;
use dockersandbox_operator::http::{AppState, serve};
use dockersandbox_operator::leader;
use dockersandbox_operator::metrics::Metrics;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Crd { kind } => {
            print!(
                "{}",
                match kind {
                    CrdKind::Sandbox => dockersandbox_operator::crd_yaml(),
                    CrdKind::Class => dockersandbox_operator::class_crd_yaml(),
                    CrdKind::Pool => dockersandbox_operator::pool_crd_yaml(),
                }
            );
            std::process::ExitCode::SUCCESS
        }
        Command::Docs => {
            print!("{}", dockersandbox_operator::docs::api_reference());
            std::process::ExitCode::SUCCESS
        }
        Command::Activator(config) => exit("dockersandbox-operator activator", activator(*config).await),
        Command::Run(config) => exit("dockersandbox-operator", run(*config).await),
    }
}

/// The exit code of a mode that ran: its error, if any, logged and on stderr.
fn exit(what: &str, result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("{what}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn telemetry(serving: &Serving) {
    let filter = tracing_subscriber::EnvFilter::try_new(&serving.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match serving.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// How long a connection to the API server may take to open. kube's default is 30 s; the API
/// server is one hop away, so an attempt that hangs (a SYN lost while the `kubernetes` Service's
/// endpoints change under an API server restart) is better given up after 5 s: the watch or the
/// reconcile that made it tries again within seconds.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The API server client's configuration (in-cluster or `KUBECONFIG`), with `CONNECT_TIMEOUT`.
async fn client_config() -> Result<kube::Config, Box<dyn std::error::Error>> {
    let mut config = kube::Config::infer().await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Ok(config)
}

/// The activator mode (`dockersandbox_operator::activator`).
async fn activator(config: ActivatorConfig) -> Result<(), Box<dyn std::error::Error>> {
    telemetry(&config.serving);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_from(client_config().await?)?;
    info!(
        max_held = config.max_held,
        max_held_per_sandbox = config.max_held_per_sandbox,
        wake_timeout = config.wake_timeout,
        "starting the activator"
    );
    dockersandbox_operator::activator::run(config, client).await
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    telemetry(&config.serving);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_from(client_config().await?)?;
    info!(namespaces = ?config.watched_namespaces(), allow_privileged = config.allow_privileged,
          sysbox_runtime_class = %config.sysbox_runtime_class, default_image = %config.default_image, "starting");

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let http_addr = config.serving.http_addr;
    let scopes = config.watched_namespaces();
    let role = if config.leader_election { leader::Role::default() } else { leader::Role::single() };
    let mut election = elect(&client, &config, &metrics, &role).await?;
    metrics.set_leader(election.is_none());
    let (caches, feeds) = Caches::new(controller::scopes(&scopes).len());
    let ctx = Arc::new(Context::new(client.clone(), config, metrics.clone(), caches));
    let (stores, controllers) = controllers(ctx, feeds, shutdown.clone());

    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState { metrics, stores, ready: ready.clone(), role };
    let http = tokio::spawn(serve(http_addr, state, shutdown.clone()));
    tokio::spawn(signals(shutdown.clone()));
    tokio::spawn(readiness(client, scopes, ready));
    let mut lost = false;
    match election.as_mut() {
        None => controllers.await,
        // A standby reconciles nothing; it serves /readyz and waits for the Lease.
        Some(e) => tokio::select! {
            won = e.acquired() => if won {
                tokio::select! {
                    _ = controllers => {}
                    _ = e.lost() => lost = true,
                }
            },
            _ = shutdown.cancelled() => {}
        },
    }
    shutdown.cancel();
    if let Some(e) = election {
        e.resign().await;
    }
    if lost {
        // Another replica may be reconciling already: stop now, the kubelet restarts this one as standby.
        return Err("lost the Lease while leading; exiting so that two replicas never reconcile at once".into());
    }
    http.await??;
    info!("stopped");
    Ok(())
}

/// Joins the leader election when it is on.
async fn elect(
    client: &Client,
    config: &Config,
    metrics: &Arc<Metrics>,
    role: &leader::Role,
) -> Result<Option<leader::Election>, Box<dyn std::error::Error>> {
    if !config.leader_election {
        return Ok(None);
    }
    let namespace = config.operator_namespace.clone().ok_or(
        "leader election needs the operator's namespace for its Lease: set POD_NAMESPACE or --operator-namespace",
    )?;
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .ok_or("leader election needs POD_NAME (the replica's identity)")?;
    info!(lease = %config.lease_name, %namespace, %identity, seconds = config.lease_seconds, "joining the leader election");
    let e = leader::Election::join(
        client.clone(),
        &namespace,
        &config.lease_name,
        &identity,
        config.lease_seconds,
        role.clone(),
        metrics.clone(),
    )
    .await?;
    Ok(Some(e))
}

/// Marks the operator ready once it can list DockerSandboxes in every watched scope (API server
/// reachable, CRD served, RBAC in place). The watch caches are not awaited here: kube's
/// `Store::wait_until_ready` supports only one waiter, and the controller is already that waiter.
async fn readiness(client: Client, namespaces: Vec<String>, ready: Arc<AtomicBool>) {
    let scopes: Vec<Api<DockerSandbox>> =
        controller::scopes(&namespaces).into_iter().map(|s| controller::api(&client, s)).collect();
    loop {
        let mut failed = None;
        for api in &scopes {
            if let Err(e) = api.list_metadata(&ListParams::default().limit(1)).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                ready.store(true, Ordering::Relaxed);
                info!("ready: DockerSandboxes can be listed");
                return;
            }
            Some(kube::Error::Api(s)) if s.code == 404 => {
                error!("the DockerSandbox CRD is not installed: kubectl apply --server-side -f crds/")
            }
            Some(e) => error!("cannot list DockerSandboxes yet: {}", dockersandbox_operator::error::plain(&e)),
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
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
