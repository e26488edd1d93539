//! Pure: validate a `DockerSandbox`, resolve defaults and `isolation: auto`, and say why a sandbox
//! cannot be placed. The builders in `resources` read a sandbox's identity (name, namespace, uid)
//! from the `DockerSandbox` and everything else from the `Plan`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;

pub mod class;
pub mod image;
pub mod lifecycle;
pub mod pool;
pub mod sysbox;

pub use class::ClassFacts;
pub use sysbox::{NodeRuntime, UserNamespace};

use crate::config::{Config, SysboxUserNamespace};
use crate::crd::conditions::reason;
use crate::crd::{
    ClassIsolation, ClassUserNamespace, DaemonSpec, DockerSandbox, Isolation, PullPolicy, ReclaimPolicy, ServiceType,
    StorageType,
};

/// What the reconciler observed in the cluster that decides where the engine can run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The sandbox's namespace.
    pub namespace: String,
    /// The namespace's labels.
    pub namespace_labels: BTreeMap<String, String>,
    /// The sandbox's DockerSandboxClass.
    pub class: ClassFacts,
    /// Whether the sysbox RuntimeClass exists.
    pub sysbox_runtime_class: bool,
    /// The namespace's `pod-security.kubernetes.io/enforce` label, if any.
    pub pod_security_enforce: Option<String>,
    /// The nodes the sysbox RuntimeClass schedules onto and their container runtimes, when they
    /// were looked up (the RuntimeClass exists and the user-namespace form is decided from them).
    pub sysbox_nodes: Option<Vec<NodeRuntime>>,
}

/// The isolation mode the engine pod gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Under the sysbox RuntimeClass, with a user namespace, not privileged.
    Sysbox {
        /// RuntimeClass name.
        runtime_class: String,
        /// How the pod gets its user namespace.
        user_namespace: UserNamespace,
        /// Why that form.
        because: String,
    },
    /// A privileged pod.
    Privileged,
}

impl Mode {
    /// The mode as shown in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Sysbox { .. } => "sysbox",
            Mode::Privileged => "privileged",
        }
    }

    /// What a person should know about the mode, for the IsolationResolved condition.
    pub fn describe(&self) -> String {
        match self {
            Mode::Sysbox { runtime_class, user_namespace, because } => format!(
                "the engine runs with sysbox isolation (RuntimeClass {runtime_class}); its user namespace comes from {} because {because}",
                match user_namespace {
                    UserNamespace::HostUsers => "hostUsers: false",
                    UserNamespace::CrioAnnotation => "the CRI-O annotation io.kubernetes.cri-o.userns-mode",
                }
            ),
            Mode::Privileged => "the engine runs with privileged isolation".to_string(),
        }
    }
}

/// Storage as resolved from the spec and the operator's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoragePlan {
    /// emptyDir instead of a PVC.
    pub ephemeral: bool,
    /// Size (PVC request or emptyDir limit).
    pub size: String,
    /// StorageClass, when one is named (spec or operator default).
    pub class: Option<String>,
    /// Keep the PVC when the sandbox is deleted.
    pub retain: bool,
}

/// Where the engine pod may be scheduled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Node labels the pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Affinity rules.
    pub affinity: Option<Affinity>,
    /// PriorityClass.
    pub priority_class_name: Option<String>,
}

/// How the engine is exposed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// Service type.
    pub kind: ServiceType,
    /// Annotations on the Service.
    pub annotations: BTreeMap<String, String>,
    /// Names and addresses the server certificate covers besides the Service's own.
    pub extra_sans: Vec<String>,
}

/// Everything the builders need, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Isolation mode.
    pub mode: Mode,
    /// Engine image.
    pub image: String,
    /// Pull policy, when the spec sets one.
    pub pull_policy: Option<PullPolicy>,
    /// Secrets for pulling the image.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// CPU and memory of the engine container.
    pub resources: Option<ResourceRequirements>,
    /// Scheduling constraints.
    pub placement: Placement,
    /// Volume for /var/lib/docker.
    pub storage: StoragePlan,
    /// The Service.
    pub service: ServicePlan,
    /// `spec.credentials.generation`: the CA is re-issued when it was issued for another one.
    pub credentials_generation: i64,
    /// The class and the generation of it this plan follows.
    pub class: (String, i64),
    /// dockerd settings (`resources::daemon_json` renders them; `mtu: None` means "the pod
    /// interface's MTU, read at start").
    pub daemon: DaemonSpec,
    /// The engine's NetworkPolicy.
    pub network: NetworkPlan,
    /// Disk garbage collection, when the class has it.
    pub gc: Option<crate::crd::DiskGc>,
    /// Suspension, idleness and expiry.
    pub lifecycle: lifecycle::Lifecycle,
}

impl Plan {
    /// Seconds dockerd gets to stop its containers: within the pod's grace period, leaving it 30 s
    /// (or half of it) to exit.
    pub fn shutdown_timeout(&self) -> i64 {
        let grace = self.lifecycle.stop_grace_seconds;
        (grace - 30).max(grace / 2)
    }

    /// The build cache dockerd's own builder GC keeps, in bytes: the class's `disk.gc`
    /// `buildCachePercent` of the volume (none without it, or at 0).
    pub fn build_cache_keep(&self) -> Option<i64> {
        let percent = self.gc.as_ref()?.build_cache_percent;
        let size = i64::try_from(crate::quantity::parse(&self.storage.size)?.ceil_units()).ok()?;
        (percent > 0 && size > 0).then(|| (i128::from(size) * i128::from(percent) / 100) as i64)
    }
}

/// Who may reach the engine's port 2376 and where it may connect.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NetworkPlan {
    /// Peers admitted besides the sandbox's namespace: the class's, then the sandbox's.
    pub allow_from: Vec<NetworkPolicyPeer>,
    /// The operator's namespace (admitted for its TLS check), when known.
    pub operator_namespace: Option<String>,
    /// CIDRs the engine may not connect to.
    pub egress_deny: Vec<String>,
    /// When set, the only CIDRs it may connect to (minus `egress_deny`).
    pub egress_allow: Option<Vec<String>>,
    /// With an allow-list, whether DNS (port 53) stays open.
    pub allow_dns: bool,
}

/// What egress denies when the class says nothing: link-local (IPv4 and IPv6), where cloud metadata
/// answers, and the IPv6 addresses of the AWS (`fd00:ec2::254`) and Google Cloud (`fd20:ce::254`)
/// metadata services, which lie outside link-local.
pub const DEFAULT_EGRESS_DENY: [&str; 4] = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "fd20:ce::254/128"];

/// Why a sandbox cannot be placed: a condition reason and a message that names the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// PascalCase reason for the condition and the Event.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Whether the problem lies in the spec (wait for a change) rather than the cluster (retry later).
    pub spec_error: bool,
}

/// Validates the sandbox against the operator's policy and the cluster, and resolves every default.
pub fn resolve(dsb: &DockerSandbox, facts: &Facts, config: &Config) -> Result<Plan, Refusal> {
    let spec = &dsb.spec;
    let name = dsb.metadata.name.as_deref().unwrap_or_default();
    if !is_sandbox_name(name) {
        return Err(spec_error(
            reason::INVALID_NAME,
            format!(
                "the name {name:?} cannot name the sandbox's Service and pod: use at most {MAX_NAME} lowercase letters, \
                 digits and '-', starting with a letter and ending with a letter or digit; create a sandbox with such a name"
            ),
        ));
    }
    if let Some(bip) = spec.daemon.bip.as_deref().filter(|b| is_network_address(b)) {
        return Err(spec_error(
            reason::INVALID_SPEC,
            format!(
                "daemon.bip {bip} is a network address, which dockerd cannot give its bridge; use an address inside it, \
                 such as the first one ({})",
                first_host(bip).unwrap_or_default()
            ),
        ));
    }
    let class = &facts.class;
    class.admits_namespace(&facts.namespace, &facts.namespace_labels)?;
    let size = spec.storage.size.clone().unwrap_or_else(|| config.default_storage_size.clone());
    if crate::quantity::parse(&size).is_none_or(|v| v.is_negative()) {
        return Err(spec_error(reason::INVALID_SPEC, format!("storage.size {size:?} is not a quantity such as 20Gi")));
    }
    let storage_class = class
        .storage(spec, &size)?
        .or_else(|| (!config.default_storage_class.is_empty()).then(|| config.default_storage_class.clone()));
    let storage = StoragePlan {
        ephemeral: spec.storage.kind == StorageType::Ephemeral,
        size,
        class: storage_class,
        retain: spec.storage.reclaim_policy == ReclaimPolicy::Retain,
    };
    let image = class.image(spec.image.as_deref(), &config.default_image)?;
    let resources = class.resources(spec.resources.as_ref())?;
    let placement = class.placement(spec)?;
    let service = class.service(spec)?;
    let daemon = class.daemon(&spec.daemon)?;
    let network = NetworkPlan { operator_namespace: config.operator_namespace.clone(), ..class.network(spec)? };
    let created = dsb.metadata.creation_timestamp.as_ref().map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0);
    let lifecycle = lifecycle::resolve(spec, created, class)?;
    let mode = resolve_isolation(sticky(spec.isolation, dsb), facts, config)?;
    Ok(Plan {
        mode,
        image,
        pull_policy: spec.image_pull_policy,
        image_pull_secrets: spec.image_pull_secrets.clone(),
        resources,
        placement,
        storage,
        service,
        daemon,
        network,
        credentials_generation: spec.credentials.generation,
        class: (class.name.clone(), class.generation),
        gc: class.spec.disk.gc.clone(),
        lifecycle,
    })
}

/// Isolation is sticky: once `auto` was resolved (recorded in `status.isolation`), the sandbox keeps
/// that mode, so a RuntimeClass that goes away gives a condition, not a privileged engine, and one
/// that appears does not move a privileged engine. Only a spec change to an explicit mode moves it.
pub fn sticky(wanted: Isolation, dsb: &DockerSandbox) -> Isolation {
    let recorded = dsb.status.as_ref().and_then(|s| s.isolation.as_deref());
    match (wanted, recorded) {
        (Isolation::Auto, Some("sysbox")) => Isolation::Sysbox,
        (Isolation::Auto, Some("privileged")) => Isolation::Privileged,
        (wanted, _) => wanted,
    }
}

/// Refusals by policy (the operator's, the namespace's, or a lifetime beyond the class's maximum,
/// which would otherwise outlive it): an engine already running against them is stopped; its volume
/// stays.
pub fn is_policy_refusal(r: &Refusal) -> bool {
    [
        reason::PRIVILEGED_FORBIDDEN,
        reason::PRIVILEGED_NOT_OPTED_IN,
        reason::POD_SECURITY_REJECTED,
        reason::LIFECYCLE_NOT_ALLOWED,
    ]
    .contains(&r.reason)
}

/// Refusals that say the sandbox's class no longer lets it run as it does (its isolation was
/// dropped, its namespace left the selector, the class is gone): a privileged engine running
/// against them is stopped (its volume stays); a sysbox engine keeps running, as the class may
/// come back.
pub fn is_class_refusal(r: &Refusal) -> bool {
    [reason::ISOLATION_NOT_ALLOWED, reason::CLASS_NOT_ALLOWED, reason::CLASS_NOT_FOUND].contains(&r.reason)
}

/// Picks sysbox or privileged among what the class allows, or explains why neither can run here.
pub fn resolve_isolation(wanted: Isolation, facts: &Facts, config: &Config) -> Result<Mode, Refusal> {
    let rc = &config.sysbox_runtime_class;
    let allowed = facts.class.isolation();
    let class = &facts.class.name;
    let setting = match facts.class.spec.sysbox_user_namespace {
        None => config.sysbox_user_namespace,
        Some(ClassUserNamespace::Auto) => SysboxUserNamespace::Auto,
        Some(ClassUserNamespace::HostUsers) => SysboxUserNamespace::HostUsers,
        Some(ClassUserNamespace::CrioAnnotation) => SysboxUserNamespace::CrioAnnotation,
    };
    let sysbox = || {
        if !facts.sysbox_runtime_class {
            return Err(Refusal {
                reason: reason::RUNTIME_CLASS_MISSING,
                message: format!(
                    "isolation is sysbox but RuntimeClass {rc:?} does not exist; install sysbox on the nodes \
                     (sysbox-deploy-k8s creates the RuntimeClass){}",
                    if allowed.contains(&ClassIsolation::Privileged) { " or choose isolation: privileged" } else { "" }
                ),
                spec_error: false,
            });
        }
        let nodes = facts.sysbox_nodes.as_deref();
        let (user_namespace, because) = sysbox::user_namespace(setting, nodes, rc)?;
        check_pod_security(Mode::Sysbox { runtime_class: rc.clone(), user_namespace, because }, facts)
    };
    let privileged = || {
        if !config.allow_privileged {
            return Err(Refusal {
                reason: reason::PRIVILEGED_FORBIDDEN,
                message: format!(
                    "the operator's policy forbids privileged engine pods (--allow-privileged=false) and RuntimeClass \
                     {rc:?} does not exist; install sysbox so isolation can use it, or ask the platform team to allow \
                     privileged sandboxes"
                ),
                spec_error: false,
            });
        }
        check_pod_security(Mode::Privileged, facts)
    };
    let not_allowed = |mode: &str| Refusal {
        reason: reason::ISOLATION_NOT_ALLOWED,
        message: format!(
            "isolation {mode} is not allowed by DockerSandboxClass {class}, which allows {}; use isolation: auto or \
             another class",
            allowed.iter().map(|m| format!("{m:?}").to_lowercase()).collect::<Vec<_>>().join(", ")
        ),
        spec_error: true,
    };
    match wanted {
        Isolation::Sysbox if allowed.contains(&ClassIsolation::Sysbox) => sysbox(),
        Isolation::Privileged if allowed.contains(&ClassIsolation::Privileged) => privileged(),
        Isolation::Sysbox => Err(not_allowed("sysbox")),
        Isolation::Privileged => Err(not_allowed("privileged")),
        Isolation::Auto => {
            // The first allowed mode the cluster offers. sysbox is skipped only when its RuntimeClass
            // is missing: a sysbox that is there but refuses never falls back to privileged.
            let mut last = None;
            for mode in &allowed {
                match mode {
                    ClassIsolation::Sysbox if !facts.sysbox_runtime_class => last = sysbox().err(),
                    ClassIsolation::Sysbox => return sysbox(),
                    ClassIsolation::Privileged => return privileged(),
                }
            }
            Err(last.unwrap_or_else(|| not_allowed("auto")))
        }
    }
}

fn check_pod_security(mode: Mode, facts: &Facts) -> Result<Mode, Refusal> {
    let Some(level) = facts.pod_security_enforce.as_deref() else {
        if mode != Mode::Privileged {
            return Ok(mode);
        }
        // A privileged engine is root on its node: an unlabelled namespace is no consent.
        return Err(Refusal {
            reason: reason::PRIVILEGED_NOT_OPTED_IN,
            message: "a privileged engine runs only in a namespace that allows privileged pods explicitly, and this \
                      namespace has no pod-security.kubernetes.io/enforce label; a cluster admin opts it in with \
                      `kubectl label namespace NAMESPACE pod-security.kubernetes.io/enforce=privileged`, or use sysbox \
                      isolation"
                .replace("NAMESPACE", &facts.namespace),
            spec_error: false,
        });
    };
    let refused = match mode {
        Mode::Privileged => level != "privileged",
        Mode::Sysbox { .. } => level == "restricted",
    };
    if refused {
        return Err(Refusal {
            reason: reason::POD_SECURITY_REJECTED,
            message: format!(
                "the namespace enforces PodSecurity level {level:?} (label pod-security.kubernetes.io/enforce), which \
                 rejects a {} engine pod; label the namespace pod-security.kubernetes.io/enforce=privileged{}",
                mode.as_str(),
                if matches!(mode, Mode::Privileged) { " or use sysbox isolation" } else { "" }
            ),
            spec_error: false,
        });
    }
    Ok(mode)
}

fn spec_error(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message, spec_error: true }
}

/// Whether an IPv4 `address/prefix` has all host bits zero (the network's own address).
pub fn is_network_address(cidr: &str) -> bool {
    parse_v4(cidr).is_some_and(|(ip, prefix)| prefix < 32 && ip & host_mask(prefix) == 0)
}

fn first_host(cidr: &str) -> Option<String> {
    let (ip, prefix) = parse_v4(cidr)?;
    Some(format!("{}/{prefix}", std::net::Ipv4Addr::from(ip | 1)))
}

fn parse_v4(cidr: &str) -> Option<(u32, u32)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(ip), prefix))
}

fn host_mask(prefix: u32) -> u32 {
    u32::MAX.checked_shr(prefix).unwrap_or(0)
}

/// Longest sandbox name: a DNS label (63) less the longest child suffix (`-engine`, `-server`, ...).
pub const MAX_NAME: usize = 56;

/// Whether `name` can name the Service (a DNS-1035 label) and every child with its suffix; the
/// CRD's CEL rule refuses other names at admission, this catches objects older than the rule.
pub fn is_sandbox_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{minimal, sandbox};

    fn config(allow_privileged: bool) -> Config {
        Config { allow_privileged, ..Config::for_tests() }
    }

    fn facts(sysbox: bool, enforce: Option<&str>) -> Facts {
        let containerd = vec![NodeRuntime { node: "n1".into(), runtime: "containerd://2.1.9".into() }];
        Facts {
            namespace: "team-a".into(),
            class: crate::resources::testing::open_class(),
            sysbox_runtime_class: sysbox,
            pod_security_enforce: enforce.map(str::to_string),
            sysbox_nodes: sysbox.then_some(containerd),
            ..Default::default()
        }
    }

    #[test]
    fn auto_prefers_sysbox_then_privileged() {
        let sysbox = resolve_isolation(Isolation::Auto, &facts(true, None), &config(true)).expect("sysbox");
        assert!(
            matches!(&sysbox, Mode::Sysbox { runtime_class, user_namespace: UserNamespace::HostUsers, because }
                if runtime_class == "sysbox-runc" && because.contains("containerd://2.1.9")),
            "{sysbox:?}"
        );
        let opted_in = facts(false, Some("privileged"));
        assert_eq!(resolve_isolation(Isolation::Auto, &opted_in, &config(true)), Ok(Mode::Privileged));
    }

    fn with_isolation(recorded: &str, wanted: Isolation) -> DockerSandbox {
        let mut dsb = minimal();
        dsb.spec.isolation = wanted;
        dsb.status = Some(crate::crd::DockerSandboxStatus { isolation: Some(recorded.into()), ..Default::default() });
        dsb
    }

    #[test]
    fn auto_keeps_the_isolation_it_resolved_to() {
        let was_sysbox = with_isolation("sysbox", Isolation::Auto);
        assert_eq!(sticky(Isolation::Auto, &was_sysbox), Isolation::Sysbox);
        // the RuntimeClass went away: a condition, never a privileged engine
        let r = resolve(&was_sysbox, &facts(false, Some("privileged")), &config(true)).expect_err("refused");
        assert_eq!(r.reason, "RuntimeClassMissing");
        // sysbox appeared: a privileged engine stays privileged until the spec says otherwise
        let was_privileged = with_isolation("privileged", Isolation::Auto);
        let p = resolve(&was_privileged, &facts(true, Some("privileged")), &config(true)).expect("plan");
        assert_eq!(p.mode, Mode::Privileged);
    }

    #[test]
    fn an_explicit_spec_change_moves_the_isolation() {
        let dsb = with_isolation("sysbox", Isolation::Privileged);
        assert_eq!(sticky(dsb.spec.isolation, &dsb), Isolation::Privileged);
        assert_eq!(sticky(Isolation::Auto, &minimal()), Isolation::Auto, "nothing recorded yet");
    }

    #[test]
    fn policy_refusals_are_told_apart() {
        let policy = resolve_isolation(Isolation::Privileged, &facts(false, None), &config(false)).expect_err("r");
        assert!(is_policy_refusal(&policy));
        let missing = resolve_isolation(Isolation::Sysbox, &facts(false, None), &config(true)).expect_err("r");
        assert!(!is_policy_refusal(&missing), "a missing RuntimeClass does not stop a running engine");
    }

    #[test]
    fn the_class_decides_which_isolation_modes_exist() {
        let mut sysbox_only = facts(false, Some("privileged"));
        sysbox_only.class.spec.isolation = vec![ClassIsolation::Sysbox];
        let r = resolve_isolation(Isolation::Privileged, &sysbox_only, &config(true)).expect_err("refused");
        assert_eq!(r.reason, "IsolationNotAllowed");
        assert!(r.spec_error);
        assert!(r.message.contains("DockerSandboxClass open, which allows sysbox"), "{}", r.message);
        // auto never falls back to a mode the class does not list, even where the namespace would allow it
        let r = resolve_isolation(Isolation::Auto, &sysbox_only, &config(true)).expect_err("refused");
        assert_eq!(r.reason, "RuntimeClassMissing");
        assert!(!r.message.contains("choose isolation: privileged"), "{}", r.message);
        // the class's order decides auto: privileged first wins even with sysbox installed
        let mut privileged_first = facts(true, Some("privileged"));
        privileged_first.class.spec.isolation = vec![ClassIsolation::Privileged, ClassIsolation::Sysbox];
        assert_eq!(resolve_isolation(Isolation::Auto, &privileged_first, &config(true)), Ok(Mode::Privileged));
    }

    #[test]
    fn the_class_can_set_the_sysbox_user_namespace_form() {
        let mut f = facts(true, None);
        f.class.spec.sysbox_user_namespace = Some(ClassUserNamespace::CrioAnnotation);
        let m = resolve_isolation(Isolation::Sysbox, &f, &config(true)).expect("sysbox");
        assert!(matches!(m, Mode::Sysbox { user_namespace: UserNamespace::CrioAnnotation, .. }), "{m:?}");
    }

    #[test]
    fn the_plan_records_the_class_and_its_generation() {
        let p = resolve(&minimal(), &crate::resources::testing::privileged_ok(), &Config::for_tests()).expect("plan");
        assert_eq!(p.class, ("open".to_string(), 1));
    }

    #[test]
    fn privileged_needs_the_namespace_to_opt_in_explicitly() {
        let unlabelled = Facts { namespace: "team-a".into(), ..facts(false, None) };
        for wanted in [Isolation::Auto, Isolation::Privileged] {
            let r = resolve_isolation(wanted, &unlabelled, &config(true)).expect_err("no consent");
            assert_eq!(r.reason, "PrivilegedNotOptedIn");
            assert!(!r.spec_error, "labelling the namespace fixes it, not the spec");
            assert!(
                r.message.contains("kubectl label namespace team-a pod-security.kubernetes.io/enforce=privileged"),
                "{}",
                r.message
            );
        }
        let sysbox = resolve_isolation(Isolation::Sysbox, &facts(true, None), &config(true));
        assert!(sysbox.is_ok(), "sysbox needs no opt-in: {sysbox:?}");
    }

    #[test]
    fn auto_never_falls_back_to_privileged_when_sysbox_is_there_but_undecidable() {
        let undecided = Facts { sysbox_nodes: Some(vec![]), ..facts(true, None) };
        let r = resolve_isolation(Isolation::Auto, &undecided, &config(true)).expect_err("refused");
        assert_eq!(r.reason, "SysboxUserNamespaceUnknown");
    }

    #[test]
    fn mode_descriptions_say_which_user_namespace_form_and_why() {
        let m = resolve_isolation(Isolation::Sysbox, &facts(true, None), &config(true)).expect("sysbox");
        assert_eq!(
            m.describe(),
            "the engine runs with sysbox isolation (RuntimeClass sysbox-runc); its user namespace comes from \
             hostUsers: false because the 1 node(s) RuntimeClass \"sysbox-runc\" schedules onto run containerd (containerd://2.1.9)"
        );
        assert_eq!(Mode::Privileged.describe(), "the engine runs with privileged isolation");
    }

    #[test]
    fn auto_without_sysbox_and_privileged_forbidden_is_refused() {
        let r = resolve_isolation(Isolation::Auto, &facts(false, None), &config(false)).expect_err("refused");
        assert_eq!(r.reason, "PrivilegedForbidden");
        assert!(r.message.contains("sysbox-runc"));
        assert!(!r.spec_error);
        let r = resolve_isolation(Isolation::Privileged, &facts(true, None), &config(false)).expect_err("refused");
        assert_eq!(r.reason, "PrivilegedForbidden");
    }

    #[test]
    fn sysbox_without_runtime_class_names_it() {
        let r = resolve_isolation(Isolation::Sysbox, &facts(false, None), &config(true)).expect_err("refused");
        assert_eq!(r.reason, "RuntimeClassMissing");
        assert!(r.message.contains("\"sysbox-runc\""));
    }

    #[test]
    fn pod_security_baseline_refuses_privileged_but_not_sysbox() {
        let r = resolve_isolation(Isolation::Privileged, &facts(false, Some("baseline")), &config(true))
            .expect_err("refused");
        assert_eq!(r.reason, "PodSecurityRejected");
        assert!(r.message.contains("baseline"));
        let ok = resolve_isolation(Isolation::Sysbox, &facts(true, Some("baseline")), &config(true));
        assert!(ok.is_ok());
        let r =
            resolve_isolation(Isolation::Sysbox, &facts(true, Some("restricted")), &config(true)).expect_err("refused");
        assert_eq!(r.reason, "PodSecurityRejected");
    }

    #[test]
    fn defaults_come_from_the_operator() {
        let c =
            Config { default_storage_class: "fast".into(), default_storage_size: "50Gi".into(), ..Config::for_tests() };
        let p = resolve(&minimal(), &crate::resources::testing::privileged_ok(), &c).expect("plan");
        assert_eq!(
            p.storage,
            StoragePlan { ephemeral: false, size: "50Gi".into(), class: Some("fast".into()), retain: true }
        );
        assert_eq!(p.image, crate::config::DEFAULT_IMAGE);
        assert_eq!(p.daemon.mtu, None);
    }

    #[test]
    fn malformed_size_that_slipped_past_admission_is_a_spec_error() {
        let dsb = sandbox(
            "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: x}\nspec: {storage: {size: big}}\n",
        );
        let r = resolve(&dsb, &Facts::default(), &Config::for_tests()).expect_err("refused");
        assert!(r.spec_error);
        assert_eq!(r.reason, "InvalidSpec");
    }

    #[test]
    fn sandbox_names_must_name_the_service_and_every_child() {
        for ok in ["web", "a", "team-1-dind", &"a".repeat(MAX_NAME)] {
            assert!(is_sandbox_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "1web", "-web", "web-", "Web", "we_b", &"a".repeat(MAX_NAME + 1)] {
            assert!(!is_sandbox_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_name_older_than_the_admission_rule_is_a_spec_error_not_a_failing_reconcile() {
        let dsb =
            sandbox("apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: a.b}\nspec: {}\n");
        let r = resolve(&dsb, &Facts::default(), &Config::for_tests()).expect_err("refused");
        assert_eq!(r.reason, "InvalidName");
        assert!(r.spec_error);
        assert!(r.message.starts_with("the name \"a.b\" cannot name the sandbox's Service"), "{}", r.message);
    }

    #[test]
    fn a_bip_that_is_a_network_address_is_refused_with_the_fix() {
        assert!(is_network_address("198.18.0.0/24"));
        assert!(!is_network_address("198.18.0.1/24"));
        assert!(is_network_address("10.0.0.0/8"));
        assert!(!is_network_address("10.1.0.0/8"), "host bits set");
        assert!(!is_network_address("198.18.0.1/32"), "a /32 is a host, not a network");
        let mut dsb = minimal();
        dsb.spec.daemon.bip = Some("198.18.0.0/24".into());
        let r = resolve(&dsb, &crate::resources::testing::privileged_ok(), &Config::for_tests()).expect_err("refused");
        assert_eq!(r.reason, "InvalidSpec");
        assert!(r.message.contains("such as the first one (198.18.0.1/24)"), "{}", r.message);
    }
}
