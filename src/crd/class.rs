//! `DockerSandboxClass` v1alpha1: the platform team's contract for the sandboxes that use it, in
//! the style of StorageClass and IngressClass. Cluster-scoped: tenants read it, admins write it.

#![allow(clippy::duplicated_attributes)] // false positive on the repeated `printcolumn(type_ = ..)` of the derive

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ServiceType, StorageType};

/// Annotation that makes a class the one sandboxes without `spec.className` use.
pub const DEFAULT_CLASS_ANNOTATION: &str = "dockersandbox.dev/is-default-class";

/// What sandboxes of this class may be: isolation, images, resources, placement, Service, storage,
/// daemon settings and which namespaces may use it. Sandboxes name it in `spec.className`; the
/// class annotated `dockersandbox.dev/is-default-class: "true"` serves those that name none.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dockersandbox.dev",
    version = "v1alpha1",
    kind = "DockerSandboxClass",
    plural = "dockersandboxclasses",
    shortname = "dsbclass",
    doc = "DockerSandboxClass is the platform team's contract for the DockerSandboxes that use it.",
    printcolumn(
        name = "Isolation",
        type_ = "string",
        json_path = ".spec.isolation",
        description = "Allowed isolation modes, in preference order"
    ),
    printcolumn(
        name = "Default",
        type_ = "string",
        json_path = ".metadata.annotations.dockersandbox\\.dev/is-default-class",
        description = "Whether sandboxes without a className use this class"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DockerSandboxClassSpec {
    /// Isolation modes sandboxes of this class may use, in the order `isolation: auto` tries them.
    /// `privileged` still needs the operator's `--allow-privileged` and a namespace labelled
    /// `pod-security.kubernetes.io/enforce=privileged`. Default: `[sysbox]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub isolation: Vec<ClassIsolation>,

    /// How sysbox engine pods get their user namespace on this class's nodes: `hostUsers`
    /// (containerd), `crioAnnotation` (CRI-O) or `auto`. Unset: the operator's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysbox_user_namespace: Option<ClassUserNamespace>,

    /// Engine images.
    #[serde(default)]
    pub image: ClassImage,

    /// Engine resources.
    #[serde(default)]
    pub resources: ClassResources,

    /// Where engine pods run.
    #[serde(default)]
    pub placement: ClassPlacement,

    /// How engines are exposed.
    #[serde(default)]
    pub service: ClassService,

    /// Volumes for /var/lib/docker.
    #[serde(default)]
    pub storage: ClassStorage,

    /// dockerd settings every engine of the class gets.
    #[serde(default)]
    pub daemon: ClassDaemon,

    /// Keeping the engines' disks healthy.
    #[serde(default)]
    pub disk: ClassDisk,

    /// Namespaces whose sandboxes may use this class. Unset: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Who may reach the engines, and where their nested containers may go.
    #[serde(default)]
    pub network: ClassNetwork,

    /// Stopping engines: the time dockerd gets, idle suspension and expiry.
    #[serde(default)]
    pub lifecycle: ClassLifecycle,

    /// Warm pools (DockerSandboxPool) of this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<ClassPools>,
}

/// What pools of a class may keep.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClassPools {
    /// How many ready, unclaimed engines the pools of this class may keep in one namespace, all
    /// pools together (each runs a pod and takes its resources while nobody uses it). A pool asking
    /// for more keeps what is left and says so in a condition. Unset: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 500))]
    pub max_ready_per_namespace: Option<i32>,
}

/// How a class's engines stop, idle and expire.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassLifecycle {
    /// Seconds an engine gets to stop (suspension, rolls, deletion): dockerd stops its containers
    /// within the larger of this less 30 and half of it (`shutdown-timeout`), then the pod is
    /// killed. Default 60.
    #[serde(default = "default_grace")]
    #[schemars(range(min = 20, max = 3600))]
    pub stop_grace_period_seconds: i64,

    /// Suspend engines that are idle (no running container, no engine event) this long; sandboxes
    /// may ask for less. Unset: only sandboxes that set `spec.idle` are suspended when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<super::IdleSpec>,

    /// How long sandboxes live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<ClassExpiry>,
}

impl Default for ClassLifecycle {
    fn default() -> Self {
        Self { stop_grace_period_seconds: default_grace(), idle: None, expiry: None }
    }
}

fn default_grace() -> i64 {
    60
}

/// Lifetimes of a class's sandboxes, as a number and a unit (`s`, `m`, `h` or `d`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassExpiry {
    /// Lifetime of sandboxes that set none (`24h`). Unset: `maxLifetime`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[0-9]{1,6}[smhd]$"))]
    pub default_lifetime: Option<String>,

    /// Longest lifetime a sandbox may have (`7d`), whatever its spec says; a sandbox asking for
    /// more is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[0-9]{1,6}[smhd]$"))]
    pub max_lifetime: Option<String>,

    /// What happens at expiry for sandboxes that do not say: `Suspend` (default) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_expiry: Option<super::ExpiryAction>,
}

/// Network settings of a class: the engine's NetworkPolicy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassNetwork {
    /// Clients every engine of the class admits on port 2376 besides its own namespace (for
    /// example a CI namespace), in NetworkPolicy peer form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allow_from: Vec<NetworkPolicyPeer>,

    /// Whether sandboxes may open port 2376 to more clients (`spec.network.allowFrom`). Default true.
    #[serde(default = "yes")]
    pub allow_tenant_peers: bool,

    /// Where engines, and so every nested container, may connect.
    #[serde(default)]
    pub egress: ClassEgress,
}

impl Default for ClassNetwork {
    fn default() -> Self {
        Self { allow_from: Vec::new(), allow_tenant_peers: true, egress: ClassEgress::default() }
    }
}

/// Egress of a class's engines.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassEgress {
    /// CIDRs engines may not connect to. Unset: `[169.254.0.0/16, fe80::/10, fd00:ec2::254/128,
    /// fd20:ce::254/128]`, the link-local ranges where cloud metadata endpoints answer and the IPv6
    /// metadata addresses of AWS and Google Cloud; `[]` denies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("network.egress.deny entries must be CIDRs such as 169.254.0.0/16"))]
    pub deny: Option<Vec<String>>,

    /// An allow-list: when set, engines may connect only to these CIDRs (minus `deny`), plus DNS
    /// (port 53) when `allowDNS` is true: e.g. the registry mirror's address. Unset: everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("network.egress.allow entries must be CIDRs such as 10.20.0.0/16"))]
    pub allow: Option<Vec<String>>,

    /// With an allow-list, whether engines may ask the cluster's DNS (port 53, UDP and TCP, to the
    /// pods labelled `k8s-app=kube-dns` in `kube-system`, as CoreDNS is in kubeadm, kind and most
    /// distributions); no other DNS server. Default true.
    #[serde(default = "yes", rename = "allowDNS")]
    pub allow_dns: bool,
}

/// An isolation mode a class allows.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClassIsolation {
    /// The sysbox RuntimeClass, a user namespace, no privileged flag.
    Sysbox,
    /// A privileged pod.
    Privileged,
}

/// How sysbox pods of a class get their user namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassUserNamespace {
    /// From the container runtime the nodes report.
    #[serde(rename = "auto")]
    Auto,
    /// `hostUsers: false` (containerd).
    #[serde(rename = "hostUsers")]
    HostUsers,
    /// The CRI-O annotation.
    #[serde(rename = "crioAnnotation")]
    CrioAnnotation,
}

/// Engine images of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassImage {
    /// Image for sandboxes that name none. Unset: the operator's `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub default: Option<String>,

    /// Images tenants may name in `spec.image`, as image references whose parts (registry,
    /// repository, tag, digest) may hold `*`: a `*` matches a run of characters inside one part and
    /// never crosses a `/`, `:` or `@` (`docker:*-dind` is Docker Hub's docker image with a tag ending
    /// in `-dind`; `registry.corp/dind@sha256:*` is any digest of one repository). A pattern without a
    /// tag or digest names repositories (`registry.corp/team/*`: any version of them); `*` alone
    /// admits every image. Empty: only the default image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub allowed: Vec<String>,
}

/// Engine resources of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassResources {
    /// Resources of engines whose sandbox sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ResourceRequirements>,

    /// Largest limit (and request) a sandbox may set, per resource (`memory`, `cpu`). An engine
    /// without a memory limit gets `max.memory` as its limit, and then a memory request of 256Mi
    /// (or `max.memory` when that is less) unless `default` or the sandbox sets one: never the
    /// maximum, which every engine would otherwise reserve. `status.resources` shows what an engine
    /// reserves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max: BTreeMap<String, Quantity>,
}

/// Placement of a class's engine pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassPlacement {
    /// Node labels every engine pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations every engine pod gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity of every engine pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// PriorityClass of the engine pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,

    /// Whether tenants may add `spec.nodeSelector`, `spec.tolerations` and `spec.affinity` (the
    /// class's own still apply). Default false: a sandbox setting them is refused.
    #[serde(default)]
    pub allow_tenant_placement: bool,
}

/// Service settings of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassService {
    /// Service types sandboxes may use. Empty: `ClusterIP` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub allowed_types: Vec<ServiceType>,

    /// Whether sandboxes may set any `spec.service.annotations`. Default false. Prefer
    /// `allowedAnnotations`, which names the keys.
    #[serde(default)]
    pub allow_annotations: bool,

    /// Annotation keys sandboxes may set in `spec.service.annotations`, each a key or a prefix
    /// ending in `*` (`service.beta.kubernetes.io/aws-load-balancer-internal`,
    /// `external-dns.alpha.kubernetes.io/*`). Any other key is refused (unless `allowAnnotations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub allowed_annotations: Vec<String>,
}

/// Storage settings of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassStorage {
    /// StorageClass of the volumes. When set, a sandbox may only name this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// Largest `spec.storage.size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Quantity>,

    /// Largest `spec.storage.size` of an `Ephemeral` engine: the node disk it may fill (its pod
    /// requests and is limited to that much `ephemeral-storage`). Unset: `maxSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ephemeral_size: Option<Quantity>,

    /// Storage types sandboxes may use. Empty: both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub allowed_types: Vec<StorageType>,
}

/// Disk housekeeping of a class's engines.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassDisk {
    /// Garbage collection through the engine API when an engine's volume fills up (dockerd has
    /// none of its own for images). Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<DiskGc>,
}

/// When and what the operator prunes in an engine. It reads the engine's disk use every
/// `--engine-facts-interval`; above `highPercent` of the volume it prunes, in this order, until use
/// is below `lowPercent`: build cache, dangling images, unused images (no container uses them;
/// the longest unused first), stopped containers older than `minAge`, and volumes no container
/// uses only with `pruneVolumes`. Images of containers are never pruned. Each run is an Event
/// with the bytes freed; when use stays above `highPercent`, condition DiskPressure says what
/// holds the space.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.lowPercent < self.highPercent").message("disk.gc.lowPercent must be below highPercent: garbage collection prunes from the high mark down to the low one"))]
pub struct DiskGc {
    /// Prune when dockerd's images, containers, volumes and build cache use more than this percent
    /// of the volume. Default 85.
    #[serde(default = "default_high")]
    #[schemars(range(min = 2, max = 99))]
    pub high_percent: i64,
    /// Prune down to this percent. Default 70.
    #[serde(default = "default_low")]
    #[schemars(range(min = 1, max = 98))]
    pub low_percent: i64,
    /// Stopped containers are pruned only once created longer ago than this (a Go duration in
    /// seconds, minutes or hours: `30m`, `24h`). Default `1h`.
    #[serde(default = "default_min_age")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[0-9]{1,6}[smh]$"))]
    pub min_age: String,
    /// Also prune volumes no container uses. They are tenants' data: off unless the class says so.
    #[serde(default)]
    pub prune_volumes: bool,
    /// The build cache dockerd's own builder GC keeps (`builder.gc` in daemon.json), in percent of
    /// the volume. 0 leaves dockerd's builder GC as dockerd has it. Default 10.
    #[serde(default = "default_build_cache")]
    #[schemars(range(min = 0, max = 90))]
    pub build_cache_percent: i64,
}

impl Default for DiskGc {
    /// The defaults a class gets for the fields it leaves out.
    fn default() -> Self {
        Self {
            high_percent: default_high(),
            low_percent: default_low(),
            min_age: default_min_age(),
            prune_volumes: false,
            build_cache_percent: default_build_cache(),
        }
    }
}

fn default_high() -> i64 {
    85
}
fn default_low() -> i64 {
    70
}
fn default_min_age() -> String {
    "1h".into()
}
fn default_build_cache() -> i64 {
    10
}

/// dockerd settings of a class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClassDaemon {
    /// Registry mirrors every engine uses (first), such as a cluster-local mirror.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 2048)))]
    pub registry_mirrors: Vec<String>,

    /// Registries every engine may reach without TLS verification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub insecure_registries: Vec<String>,

    /// Whether sandboxes may add registry mirrors and insecure registries of their own. Default true.
    #[serde(default = "yes")]
    pub allow_tenant_registries: bool,
}

impl Default for ClassEgress {
    fn default() -> Self {
        Self { deny: None, allow: None, allow_dns: true }
    }
}

fn yes() -> bool {
    true
}

impl Default for ClassDaemon {
    fn default() -> Self {
        Self { registry_mirrors: Vec::new(), insecure_registries: Vec::new(), allow_tenant_registries: true }
    }
}
