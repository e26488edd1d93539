//! `kubectl dsb connect` and `disconnect`: certificates, the docker context, and the tunnel when the
//! engine is not reachable directly; `--background` runs the tunnel as a child process with a pid
//! file, which `disconnect` stops.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::cli::{ConnectArgs, Global, Target, TunnelMode};
use super::cluster::Cluster;
use super::error::{Error, Result, io};
use super::files::{self, Certs};
use super::lifecycle;
use super::tunnel::{self, Engine};
use crate::crd::DockerSandbox;
use crate::resources::{DOCKER_TLS_PORT, Names};

/// How long `connect --background` waits for its child to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `disconnect` waits for the tunnel to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a sandbox's files live on this machine.
pub struct Local {
    /// The docker configuration directory.
    pub docker_config: PathBuf,
    /// Its certificate directory (`DOCKER_CERT_PATH`).
    pub dir: PathBuf,
    /// The docker context's name.
    pub context: String,
}

impl Local {
    /// The files of sandbox `namespace/name`.
    pub fn of(namespace: &str, name: &str) -> Result<Self> {
        let docker_config = files::docker_config_dir()?;
        let dir = files::cert_dir(&docker_config, namespace, name);
        Ok(Self { docker_config, dir, context: files::context_name(namespace, name) })
    }

    /// The pid file of a running `connect`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("connect.pid")
    }

    /// The log of a background `connect`.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("connect.log")
    }

    /// The host of a tunnel that is running now (its pid file names a live process and the context
    /// points at a loopback port).
    pub fn running_tunnel(&self) -> Option<(u32, String)> {
        let pid = running(&self.pid_file())?;
        let host = files::context_host(&self.docker_config, &self.context)?;
        files::loopback_port(&host).map(|_| (pid, host))
    }
}

/// The pid in `pid_file` when that process is alive and is a `kubectl-dsb`.
pub fn running(pid_file: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let proc = Path::new("/proc");
    if proc.is_dir() {
        let cmdline = fs::read(proc.join(pid.to_string()).join("cmdline")).ok()?;
        return String::from_utf8_lossy(&cmdline).contains("kubectl-dsb").then_some(pid);
    }
    let alive = Command::new("kill").args(["-0", &pid.to_string()]).stderr(Stdio::null()).status();
    alive.is_ok_and(|s| s.success()).then_some(pid)
}

/// The engine's address when this machine reaches the Service's ClusterIP directly.
pub async fn direct_address(cluster: &Cluster, dsb: &DockerSandbox) -> Result<Option<SocketAddr>> {
    let port = u16::try_from(DOCKER_TLS_PORT).unwrap_or(2376);
    let Some(ip) = cluster.cluster_ip(dsb).await? else { return Ok(None) };
    let addr = SocketAddr::new(ip, port);
    Ok(tunnel::reachable(addr).await.then_some(addr))
}

/// `kubectl dsb connect NAME`.
pub async fn connect(global: &Global, args: &ConnectArgs) -> Result<()> {
    if args.background && !args.background_child {
        return background(global, &args.target).await;
    }
    let cluster = Cluster::new(global).await?;
    let dsb = cluster.sandbox(&args.target.name).await?;
    // An engine suspended when idle is woken by the first client through the tunnel.
    let idle = lifecycle::state(&dsb) == lifecycle::State::Idle;
    if let lifecycle::State::Suspended(why) = lifecycle::state(&dsb) {
        return Err(Error::Other(format!(
            "DockerSandbox {}/{} is suspended: {why}",
            cluster.namespace, args.target.name
        )));
    }
    if !idle {
        super::cluster::require_ready(&dsb)?;
    }
    let names = Names::of(&dsb);
    let local = Local::of(&names.namespace, &names.service)?;
    if let Some(pid) = running(&local.pid_file()).filter(|p| *p != std::process::id()) {
        return Err(Error::Other(format!(
            "sandbox {}/{} is already connected by process {pid}; stop it with `kubectl dsb disconnect {} -n {}`",
            names.namespace, names.service, names.service, names.namespace
        )));
    }
    let certs = cluster.client_certs(&dsb).await?;
    files::write_bundle(&local.dir, &certs)?;
    let direct =
        if idle && args.tunnel != TunnelMode::Never { None } else { route(&cluster, &dsb, args.tunnel).await? };
    if let Some(addr) = direct {
        publish(&local, &dsb, &certs, &files::tcp_host(addr))?;
        print!("{}", usage(&local, &dsb, &files::tcp_host(addr), None));
        println!("\nThe engine is reachable directly from here: no tunnel is needed, and nothing keeps running.");
        return Ok(());
    }
    let port = args
        .port
        .or_else(|| files::context_host(&local.docker_config, &local.context).and_then(|h| files::loopback_port(&h)))
        .unwrap_or(0);
    let listener = tunnel::bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))).await?;
    let addr = listener.local_addr().map_err(|e| Error::Other(format!("cannot read the listener's address: {e}")))?;
    publish(&local, &dsb, &certs, &files::tcp_host(addr))?;
    let waker = Some(std::sync::Arc::new(lifecycle::Waker::new(cluster.clone(), &names.service)));
    let pod = Names::engine_pod(&dsb);
    let engine = Engine { pods: cluster.api(), pod, namespace: names.namespace.clone(), waker };
    print!("{}", usage(&local, &dsb, &files::tcp_host(addr), Some(&engine)));
    let stop = match args.background_child {
        true => format!("`kubectl dsb disconnect {} -n {}`", names.service, names.namespace),
        false => "Ctrl-C".to_string(),
    };
    if idle {
        println!("\nThe engine is suspended because it was idle: the first client connection wakes it.");
    }
    println!("\nTunnel running; {stop} stops it. The context stays and works again after the next `connect`.");
    // last: `connect --background` waits for this file, then shows what was printed above
    fs::write(local.pid_file(), format!("{}\n", std::process::id())).map_err(io("cannot write", &local.pid_file()))?;
    let stats = tunnel::serve(listener, engine, interrupted()).await;
    if running(&local.pid_file()) == Some(std::process::id()) {
        let _ = fs::remove_file(local.pid_file());
    }
    println!(
        "Tunnel stopped after {} connections ({} failed).",
        stats.accepted.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The engine's address when the client should connect directly, None when it needs the tunnel.
async fn route(cluster: &Cluster, dsb: &DockerSandbox, mode: TunnelMode) -> Result<Option<SocketAddr>> {
    match mode {
        TunnelMode::Always => Ok(None),
        TunnelMode::Auto => direct_address(cluster, dsb).await,
        TunnelMode::Never => {
            let names = Names::of(dsb);
            let ip = cluster.cluster_ip(dsb).await?.ok_or_else(|| {
                Error::Other(format!("Service {}/{} has no ClusterIP: use --tunnel", names.namespace, names.service))
            })?;
            Ok(Some(SocketAddr::new(ip, u16::try_from(DOCKER_TLS_PORT).unwrap_or(2376))))
        }
    }
}

/// Writes the docker context of the sandbox pointing at `host`.
fn publish(local: &Local, dsb: &DockerSandbox, certs: &Certs, host: &str) -> Result<()> {
    let names = Names::of(dsb);
    let description = format!("DockerSandbox {}/{} (kubectl dsb connect)", names.namespace, names.service);
    files::write_context(&local.docker_config, &local.context, host, &description, certs)
}

/// What `connect` did and the two ways to use it.
pub fn usage(local: &Local, dsb: &DockerSandbox, host: &str, tunnel: Option<&Engine>) -> String {
    let names = Names::of(dsb);
    let status = dsb.status.clone().unwrap_or_default();
    let mut out = format!(
        "DockerSandbox {}/{}: engine {}, isolation {}\n  certificates    {}/{{ca,cert,key}}.pem\n  docker context  {} -> {host}\n",
        names.namespace,
        names.service,
        status.docker_version.as_deref().unwrap_or("?"),
        status.isolation.as_deref().unwrap_or("?"),
        local.dir.display(),
        local.context,
    );
    if let Some(e) = tunnel {
        out += &format!(
            "  tunnel          {} -> pod {}/{}:{DOCKER_TLS_PORT} (one port-forward stream per connection)\n",
            host.trim_start_matches("tcp://"),
            e.namespace,
            e.pod
        );
    }
    out += &format!(
        "\nUse the docker context:\n  docker --context {ctx} version\n  (or make it the default: docker context use {ctx})\n\
         or the environment:\n  export DOCKER_HOST={host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}\n",
        local.dir.display(),
        ctx = local.context,
    );
    out
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `connect --background`: starts this program again as a detached child (its own process group,
/// output to the log file) and returns once it listens (its pid file names it) or has finished.
async fn background(global: &Global, target: &Target) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let cluster = Cluster::new(global).await?;
    let local = Local::of(&cluster.namespace, &target.name)?;
    super::files::private_dir(&local.dir)?;
    let log_path = local.log_file();
    let log = fs::File::create(&log_path).map_err(io("cannot write", &log_path))?;
    let err_log = log.try_clone().map_err(io("cannot write", &log_path))?;
    let exe = std::env::current_exe().map_err(|e| Error::Other(format!("cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--background-child")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Other(format!("cannot start the background tunnel: {e}")))?;
    let start = Instant::now();
    loop {
        let output = || fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = child.try_wait().map_err(|e| Error::Other(format!("background tunnel: {e}")))? {
            let out = output();
            if status.success() {
                print!("{out}");
                return Ok(());
            }
            let why = out.trim().strip_prefix("error: ").unwrap_or(out.trim()).to_string();
            return Err(Error::Other(why));
        }
        if running(&local.pid_file()) == Some(child.id()) {
            print!("{}", output());
            println!("Running in the background: pid {}, log {}.", child.id(), log_path.display());
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            return Err(Error::Other(format!(
                "the background tunnel did not start within {START_TIMEOUT:?}; its log: {}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kubectl dsb disconnect NAME`: stops the tunnel a `connect --background` left running.
pub async fn disconnect(global: &Global, target: &Target) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let local = Local::of(&cluster.namespace, &target.name)?;
    let Some(pid) = running(&local.pid_file()) else {
        eprintln!("No connect of {}/{} is running.", cluster.namespace, target.name);
        return Ok(());
    };
    let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    if !sent.is_ok_and(|s| s.success()) {
        return Err(Error::Other(format!("cannot stop process {pid}")));
    }
    let start = Instant::now();
    while running(&local.pid_file()) == Some(pid) {
        if start.elapsed() > STOP_TIMEOUT {
            return Err(Error::Other(format!("process {pid} did not stop within {STOP_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "Stopped the tunnel of {}/{} (pid {pid}). The docker context {} stays; `kubectl dsb connect {} -n {}` brings it back.",
        cluster.namespace, target.name, local.context, target.name, cluster.namespace
    );
    Ok(())
}
