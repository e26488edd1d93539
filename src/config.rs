//! Operator configuration: flags, each also readable from the environment.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

/// The official engine image the operator uses when a sandbox names none. Pinned, never `latest`.
pub const DEFAULT_IMAGE: &str = "docker:28.5.2-dind";

/// dockersandbox-operator: one isolated, persistent Docker engine per team, over mutual TLS.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(Box<Config>),
    /// Print a CustomResourceDefinition as YAML: `sandbox` (DockerSandbox, the default) or `class`
    /// (DockerSandboxClass).
    Crd {
        /// Which CRD.
        #[arg(value_enum, default_value_t = CrdKind::Sandbox)]
        kind: CrdKind,
    },
    /// Print the API reference (Markdown) generated from the CRD.
    Docs,
    /// Run the activator: it accepts connections to idle-suspended engines, wakes them, and
    /// splices each connection to its engine once it is Ready (TLS stays end to end).
    Activator(Box<ActivatorConfig>),
}

/// Settings for `activator`.
#[derive(Parser, Debug, Clone)]
pub struct ActivatorConfig {
    /// Connections held at once for one sandbox while it wakes; more are closed at once.
    #[arg(long, env = "ACTIVATOR_MAX_HELD_PER_SANDBOX", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_held_per_sandbox: u32,

    /// Connections held at once in all; more are closed at once.
    #[arg(long, env = "ACTIVATOR_MAX_HELD", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_held: u32,

    /// Seconds a held connection waits for its engine to be Ready before it is closed.
    #[arg(long, env = "ACTIVATOR_WAKE_TIMEOUT", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub wake_timeout: u64,

    /// The namespace the activator runs in (the operator's): the port NetworkPolicies there say
    /// which sandbox each port is for, and nothing elsewhere does.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,

    /// Where it serves /healthz, /readyz and /metrics, and how it logs.
    #[command(flatten)]
    pub serving: Serving,
}

/// The HTTP address and logging, shared by `run` and `activator`.
#[derive(clap::Args, Debug, Clone)]
pub struct Serving {
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `dockersandbox_operator=debug,kube=info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
}

/// Which CRD `crd` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdKind {
    /// DockerSandbox.
    Sandbox,
    /// DockerSandboxClass.
    Class,
    /// DockerSandboxPool.
    Pool,
}

/// How the operator checks that an engine answers.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineProbe {
    /// The engine pod's IP when running in a cluster, else through a port-forward.
    Auto,
    /// Dial the engine pod's IP (never its Service: any pod wearing its labels could answer there).
    /// `service` is accepted as an old name of this.
    #[value(alias = "service")]
    Pod,
    /// Tunnel through the API server (pods/portforward).
    PortForward,
}

/// How a sysbox engine pod gets its user namespace. sysbox-deploy-k8s sets nodes up in one of two
/// ways, and each needs its own pod shape.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysboxUserNamespace {
    /// From the container runtime that the nodes the sysbox RuntimeClass schedules onto report
    /// (`containerd://…` → hostUsers, `cri-o://…` → crioAnnotation).
    Auto,
    /// `hostUsers: false`: the containerd path (containerd ≥ 2.0.5, Kubernetes ≥ 1.30).
    #[value(name = "hostUsers")]
    HostUsers,
    /// The annotation `io.kubernetes.cri-o.userns-mode: "auto:size=65536"` and no `hostUsers`: the
    /// CRI-O path of sysbox's own install guide.
    #[value(name = "crioAnnotation")]
    CrioAnnotation,
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Settings for `run`.
#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Namespaces to watch, comma separated. Empty: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',', default_value = "")]
    pub namespaces: Vec<String>,

    /// Whether sandboxes may run as privileged pods (explicitly, or as the `auto` fallback when
    /// sysbox is missing). Off unless the platform team turns it on: a privileged engine is root on
    /// its node.
    #[arg(long, env = "ALLOW_PRIVILEGED", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_privileged: bool,

    /// Name of the sysbox RuntimeClass.
    #[arg(long, env = "SYSBOX_RUNTIME_CLASS", default_value = "sysbox-runc")]
    pub sysbox_runtime_class: String,

    /// How sysbox engine pods get their user namespace: auto, hostUsers or crioAnnotation.
    #[arg(long, env = "SYSBOX_USER_NAMESPACE", value_enum, default_value_t = SysboxUserNamespace::Auto)]
    pub sysbox_user_namespace: SysboxUserNamespace,

    /// Engine image for sandboxes that name none.
    #[arg(long, env = "DEFAULT_IMAGE", default_value = DEFAULT_IMAGE)]
    pub default_image: String,

    /// StorageClass for sandboxes that name none. Empty: the cluster's default class.
    #[arg(long, env = "DEFAULT_STORAGE_CLASS", default_value = "")]
    pub default_storage_class: String,

    /// Volume size for sandboxes that name none.
    #[arg(long, env = "DEFAULT_STORAGE_SIZE", default_value = "20Gi")]
    pub default_storage_size: String,

    /// The cluster's DNS domain, for the server certificate's fully qualified name.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Validity of server and client certificates, in days; they are renewed when a third is left.
    #[arg(long, env = "CERT_VALIDITY_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(2..=3650))]
    pub cert_validity_days: u32,

    /// How to check that an engine answers.
    #[arg(long, env = "ENGINE_PROBE", value_enum, default_value_t = EngineProbe::Auto)]
    pub engine_probe: EngineProbe,

    /// Engine checks (a TLS call to dockerd) that may run at once. An engine runs its tenant's code
    /// and may be slow on purpose: a reconcile that finds no free slot within a second keeps the
    /// engine's last known state and checks again soon, so slow engines never hold every reconcile.
    #[arg(long, env = "ENGINE_CHECKS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub engine_checks: u16,

    /// Seconds between two reads of what is inside a Ready engine (containers, images, disk use,
    /// recent activity: `status.engine`). Each read is three bounded requests to dockerd, in an
    /// engine-check slot; the status is written only when the figures change.
    #[arg(long, env = "ENGINE_FACTS_INTERVAL", default_value_t = 180, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub engine_facts_interval: u64,

    /// Where it serves /healthz, /readyz and /metrics, and how it logs.
    #[command(flatten)]
    pub serving: Serving,

    /// Reconciles that may run at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Leader election: only the replica holding the Lease reconciles; the others wait as standby
    /// and take over when it goes. Needs the namespace (`POD_NAMESPACE`) for the Lease. The chart
    /// turns it on; a developer's `cargo run -- run` leaves it off.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease the replicas compete for.
    #[arg(long, env = "LEADER_ELECTION_LEASE", default_value = "dockersandbox-operator")]
    pub lease_name: String,

    /// Seconds a leader's Lease stays valid without renewal: the longest a standby waits after the
    /// leader died without releasing it. The leader renews it a third of this time before expiry.
    #[arg(long, env = "LEADER_ELECTION_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_seconds: u64,

    /// Namespace of the operator's own pod (the chart sets it from the downward API). Every
    /// engine's NetworkPolicy admits this namespace on port 2376, for the operator's TLS check.
    #[arg(long, env = "POD_NAMESPACE")]
    pub operator_namespace: Option<String>,

    /// The activator's Service in the operator's namespace (the chart sets it when the activator
    /// is on). While a sandbox is idle-suspended, or waking, its Service routes to the activator's
    /// pods. Empty: no activator, and an idle-suspended engine's Service has no endpoint.
    #[arg(long, env = "ACTIVATOR_SERVICE", default_value = "")]
    pub activator_service: String,

    /// Ports the activator is given, one per sandbox routed to it: `FIRST-LAST`.
    #[arg(long, env = "ACTIVATOR_PORTS", default_value = "20000-29999", value_parser = parse_ports)]
    pub activator_ports: Ports,
}

/// A range of TCP ports, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The first.
    pub first: u16,
    /// The last.
    pub last: u16,
}

fn parse_ports(s: &str) -> Result<Ports, String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not FIRST-LAST"))?;
    let port = |p: &str| p.trim().parse::<u16>().map_err(|e| format!("{p:?}: {e}"));
    let (first, last) = (port(a)?, port(b)?);
    if first < 1024 || first > last {
        return Err(format!("{s:?}: the range must start at 1024 or above and not end before it starts"));
    }
    Ok(Ports { first, last })
}

/// Where CA keys live when the operator does not know its own namespace (`POD_NAMESPACE` unset:
/// a developer's `cargo run`); the chart always sets it.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "dockersandbox-system";

impl Config {
    /// The operator's namespace, where the sandboxes' CA keys are kept (tenants cannot read them
    /// there).
    pub fn ca_namespace(&self) -> &str {
        self.operator_namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_OPERATOR_NAMESPACE)
    }

    /// The watched namespaces, without empty entries; empty means all namespaces.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect()
    }

    /// Settings for tests: the defaults, except that privileged engines are allowed (most tests
    /// plan for a cluster without sysbox, as the e2e cluster is).
    pub fn for_tests() -> Self {
        Self::try_parse_from(["run", "--allow-privileged=true"]).expect("defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_engines_are_off_unless_turned_on() {
        let defaults = Config::try_parse_from(["run"]).expect("defaults parse");
        assert!(!defaults.allow_privileged, "the default install is one lock short of a privileged engine");
        assert_eq!(defaults.engine_checks, 4);
        let probe = Config::try_parse_from(["run", "--engine-probe=service"]).expect("the old name parses");
        assert_eq!(probe.engine_probe, EngineProbe::Pod, "service is the old name of pod");
    }
}
