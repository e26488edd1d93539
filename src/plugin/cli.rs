//! The command line of `kubectl dsb`: what a user types, parsed by clap. Nothing here talks to a
//! cluster, so every way of calling the plugin can be tested without one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Connect docker clients to DockerSandboxes: certificates, a docker context and, where the engine
/// cannot be reached directly, a tunnel through the API server that opens one port-forward stream
/// per client connection.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(name = "kubectl-dsb", bin_name = "kubectl dsb", version, propagate_version = true)]
#[command(after_help = "Examples:\n  kubectl dsb ls -A\n  kubectl dsb connect web -n team-a\n  \
    docker --context dsb-team-a.web run --rm hello-world\n  eval \"$(kubectl dsb env web -n team-a)\"")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster is: the same flags kubectl has (kubectl does not pass its own to plugins).
#[derive(Args, Debug, Default, PartialEq, Eq)]
pub struct Global {
    /// Namespace of the sandbox (default: the namespace of the kubeconfig context, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

/// The subcommands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// Fetch the client certificate, write the docker context `dsb-NS.NAME` and, when the engine is
    /// not reachable directly, serve a local tunnel to it until interrupted.
    Connect(ConnectArgs),
    /// Stop a `connect --background` of this sandbox (the docker context stays).
    Disconnect(Target),
    /// Print DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH for a reachable engine (a running
    /// `connect`, or the engine's ClusterIP when this machine reaches it); writes the certificates.
    Env(EnvArgs),
    /// Write ca.pem, cert.pem and key.pem (mode 0600) into DIR: the layout DOCKER_CERT_PATH expects.
    Bundle(BundleArgs),
    /// List sandboxes: phase, isolation, endpoint, engine version, age.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Print the logs of the sandbox's dockerd (container `dockerd` of pod NAME-engine).
    Logs(LogsArgs),
    /// Show what holds the engine's disk: images, containers, volumes and build cache (as dockerd
    /// accounts for them) against the volume's size.
    Df(Target),
    /// Free disk in the engine as the operator's garbage collection does (build cache, dangling
    /// images, unused images longest unused first, stopped containers older than the class's
    /// minAge; volumes only when the class allows it), down to the class's low mark.
    Prune(PruneArgs),
    /// Stop the engine (spec.suspend: true); its volume, Service and certificates stay.
    Suspend(LifecycleArgs),
    /// Start a suspended engine again (spec.suspend: false), or wake one suspended when idle.
    Resume(LifecycleArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(CompletionArgs),
}

/// `prune NAME`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct PruneArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print what would be pruned, in order, and where it would stop; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune down to this percent of the volume instead of the class's disk.gc.lowPercent.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(i64).range(0..=99))]
    pub to: Option<i64>,
}

/// `suspend NAME` and `resume NAME`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct LifecycleArgs {
    #[command(flatten)]
    pub target: Target,
    /// Wait until the engine is stopped (suspend) or Ready (resume), and print how long it took.
    #[arg(long)]
    pub wait: bool,
}

/// A sandbox by name.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct Target {
    /// Name of the DockerSandbox.
    pub name: String,
}

/// How `connect` reaches the engine.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelMode {
    /// Directly when a TCP connection to the Service's ClusterIP succeeds, else through a tunnel.
    #[default]
    Auto,
    /// Always through a local tunnel (port-forward streams through the API server).
    Always,
    /// Never: the docker context points at the ClusterIP.
    Never,
}

/// `connect NAME`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: Target,
    /// Local port of the tunnel on 127.0.0.1 (0: any free port). Default: the port the sandbox's
    /// docker context already uses, so the context keeps working across reconnects; else any free
    /// port. (Only loopback: the engine's certificate names 127.0.0.1, and nothing else on the
    /// network should reach the tunnel.)
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Whether to tunnel.
    #[arg(long, value_enum, default_value_t)]
    pub tunnel: TunnelMode,
    /// Run the tunnel in the background (pid file and log in the certificate directory); stop it
    /// with `kubectl dsb disconnect NAME`.
    #[arg(long)]
    pub background: bool,
    /// Internal: this process is the background child of `connect --background`.
    #[arg(long, hide = true)]
    pub background_child: bool,
}

/// Output formats of `env`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EnvFormat {
    /// `export K=V` lines for sh, bash and zsh (`eval "$(kubectl dsb env NAME)"`).
    #[default]
    Sh,
    /// One JSON object.
    Json,
}

/// `env NAME`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct EnvArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub format: EnvFormat,
}

/// `bundle NAME DIR`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct BundleArgs {
    #[command(flatten)]
    pub target: Target,
    /// Directory to write the certificates into (created, mode 0700, when missing).
    pub dir: PathBuf,
}

/// `ls`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct LsArgs {
    /// List sandboxes in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// `logs NAME`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Keep streaming new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The logs of the previous (crashed) dockerd container.
    #[arg(short, long)]
    pub previous: bool,
}

/// `completion SHELL`.
#[derive(Args, Debug, PartialEq, Eq)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-dsb").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connect_defaults() {
        let cli = parse(&["connect", "web"]).expect("parses");
        assert_eq!(cli.global, Global::default());
        let Command::Connect(c) = cli.command else { panic!("not connect: {:?}", cli.command) };
        assert_eq!(c.target.name, "web");
        assert_eq!(c.port, None);
        assert_eq!(c.tunnel, TunnelMode::Auto);
        assert!(!c.background && !c.background_child);
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for args in [
            &["-n", "team-a", "--context", "kind", "connect", "web"][..],
            &["connect", "web", "-n", "team-a", "--context", "kind"][..],
            &["connect", "--namespace=team-a", "web", "--context=kind"][..],
        ] {
            let cli = parse(args).expect("parses");
            assert_eq!(cli.global.namespace.as_deref(), Some("team-a"), "{args:?}");
            assert_eq!(cli.global.context.as_deref(), Some("kind"), "{args:?}");
        }
    }

    #[test]
    fn connect_options() {
        let cli = parse(&["connect", "web", "--port", "0", "--tunnel", "always", "--background"]).expect("parses");
        let Command::Connect(c) = cli.command else { panic!("not connect") };
        assert_eq!((c.port, c.tunnel, c.background), (Some(0), TunnelMode::Always, true));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["connect"][..],
            &["connect", "web", "--port", "70000"][..],
            &["connect", "web", "--tunnel", "sometimes"][..],
            &["bundle", "web"][..],
            &["env", "web", "--format", "yaml"][..],
            &["completion", "tcsh"][..],
            &["frobnicate"][..],
            &[][..],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn other_commands() {
        let Command::Bundle(b) = parse(&["bundle", "web", "/tmp/x"]).expect("parses").command else { panic!() };
        assert_eq!((b.target.name.as_str(), b.dir.to_str()), ("web", Some("/tmp/x")));
        let Command::Env(e) = parse(&["env", "web", "-o", "json"]).expect("parses").command else { panic!() };
        assert_eq!(e.format, EnvFormat::Json);
        let Command::Ls(l) = parse(&["ls", "-A"]).expect("parses").command else { panic!() };
        assert!(l.all_namespaces);
        assert!(matches!(parse(&["list"]).expect("alias").command, Command::Ls(_)));
        let Command::Logs(l) = parse(&["logs", "web", "-f", "--tail", "20"]).expect("parses").command else { panic!() };
        assert_eq!((l.follow, l.tail, l.previous), (true, Some(20), false));
        let Command::Disconnect(t) = parse(&["disconnect", "web"]).expect("parses").command else { panic!() };
        assert_eq!(t.name, "web");
        let Command::Completion(c) = parse(&["completion", "zsh"]).expect("parses").command else { panic!() };
        assert_eq!(c.shell, clap_complete::Shell::Zsh);
    }

    #[test]
    fn every_command_has_help() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            let err = parse(&[sub.get_name(), "--help"]).expect_err("--help exits");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{}", sub.get_name());
        }
    }
}
