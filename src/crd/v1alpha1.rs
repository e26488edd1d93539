//! `DockerSandbox` v1alpha1: the API a team applies to get its own Docker engine.
//!
//! Doc comments on these types become `kubectl explain` text, so they are written for users.
//! CEL rules sit next to the fields they guard; their messages are what `kubectl apply` prints.

#![allow(clippy::duplicated_attributes)] // false positive on the repeated `printcolumn(type_ = ..)` of the derive

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Docker engine for one team: dockerd in its own pod, persistent storage for images and volumes,
/// and mutual TLS on port 2376. Nested containers run inside the sandbox pod, never on the node's Docker.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dockersandbox.dev",
    version = "v1alpha1",
    kind = "DockerSandbox",
    plural = "dockersandboxes",
    shortname = "dsb",
    category = "all",
    namespaced,
    status = "DockerSandboxStatus",
    doc = "DockerSandbox gives a team an isolated, persistent Docker engine reachable over mutual TLS.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(
        name = "Isolation",
        type_ = "string",
        json_path = ".status.isolation",
        description = "Isolation mode in use"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "DOCKER_HOST for clients"
    ),
    printcolumn(
        name = "Disk",
        type_ = "integer",
        json_path = ".status.engine.disk.usedPercent",
        description = "Percent of the engine's volume that dockerd's images, containers, volumes and build cache use"
    ),
    printcolumn(
        name = "Containers",
        type_ = "integer",
        json_path = ".status.engine.containersRunning",
        description = "Containers running in the engine"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 56").message("metadata.name must be at most 56 characters of lowercase letters, digits and '-', start with a letter and end with a letter or digit: the sandbox's Service is named after it, and its pod after it plus '-engine'")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.className) == has(oldSelf.className) && (!has(self.className) || self.className == oldSelf.className)").message("className cannot be changed after creation: create a new sandbox with the other class"),
    validation = Rule::new("!has(self.lifetime) || !has(self.expiresAt)").message("set lifetime (a duration from creation) or expiresAt (a time), not both"),
    validation = Rule::new("has(self.poolRef) == has(oldSelf.poolRef) && (!has(self.poolRef) || self.poolRef == oldSelf.poolRef)").message("poolRef cannot be changed after creation: a claimed engine stays with its sandbox"),
    validation = Rule::new("!has(self.suspend) || !self.suspend || !has(self.storage) || self.storage.type != 'Ephemeral' || (has(self.storage.discardOnSuspend) && self.storage.discardOnSuspend)").message("suspending an Ephemeral sandbox throws away its images, containers and volumes (they live in the pod): set storage.discardOnSuspend: true to accept that, or keep the sandbox running")
)]
pub struct DockerSandboxSpec {
    /// The DockerSandboxClass this sandbox belongs to (`kubectl get dsbclass`); it decides which
    /// isolation, images, resources, placement, Service, storage and daemon settings are allowed.
    /// Empty: the class annotated `dockersandbox.dev/is-default-class: "true"`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,

    /// How the engine is isolated from the node. `auto` (default) uses sysbox when its RuntimeClass
    /// exists, else a privileged pod when the operator's policy and the namespace allow it; the
    /// choice is then kept (`status.isolation`). `sysbox` runs the pod under
    /// the sysbox RuntimeClass with a user namespace and no privileged flag. `privileged` runs a
    /// privileged pod (classic docker:dind).
    #[serde(default)]
    pub isolation: Isolation,

    /// The dind image that runs dockerd. Defaults to the operator's pinned `docker:<version>-dind`.
    /// Use a pinned tag or digest, never `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image: `Always`, `IfNotPresent` (default) or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets in the sandbox's namespace used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Where `/var/lib/docker` (images, containers, volumes) lives and what happens to it on deletion.
    #[serde(default)]
    pub storage: StorageSpec,

    /// CPU and memory for the engine container. Nested containers run inside this pod, so the
    /// limits here cap everything the team runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the engine pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for the engine pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity rules for the engine pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the engine is exposed: Service type, annotations and extra names in the server certificate.
    #[serde(default)]
    pub service: ServiceSpec,

    /// dockerd settings (daemon.json) that platform teams usually tune.
    #[serde(default)]
    pub daemon: DaemonSpec,

    /// The sandbox's TLS credentials.
    #[serde(default, skip_serializing_if = "CredentialsSpec::is_default")]
    pub credentials: CredentialsSpec,

    /// Who may connect to the engine. Its port 2376 is open to pods of the sandbox's own namespace
    /// (and the operator's); `allowFrom` opens it to more. Where nested containers may connect is
    /// the class's `network.egress`.
    #[serde(default, skip_serializing_if = "NetworkSpec::is_default")]
    pub network: NetworkSpec,

    /// `true` stops the engine and keeps everything else: its volume (images, volumes, stopped
    /// containers), Service, certificates and NetworkPolicy. dockerd gets the class's
    /// `lifecycle.stopGracePeriodSeconds` to stop its containers. `false` (default) brings the same
    /// engine back. Only a change here resumes a sandbox suspended this way; `kubectl dsb suspend`
    /// and `resume` set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// How long the sandbox lives from its creation, as a number and a unit (`s`, `m`, `h` or `d`):
    /// `90m`, `8h`, `7d`. At the end, `onExpiry` happens. At most the class's
    /// `lifecycle.expiry.maxLifetime`; unset: the class's `defaultLifetime` (else it never expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[0-9]{1,6}[smhd]$"))]
    pub lifetime: Option<String>,

    /// When the sandbox expires, as a time (`2026-12-24T18:00:00Z`), instead of `lifetime`. At most
    /// the class's `maxLifetime` after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// What happens at expiry: `Suspend` stops the engine (as `suspend: true`; a later expiry
    /// starts it again) and `Delete` deletes the sandbox (its volume stays when
    /// `storage.reclaimPolicy` is `Retain`). Unset: the class's `lifecycle.expiry.onExpiry`, else
    /// `Suspend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_expiry: Option<ExpiryAction>,

    /// Suspend the engine when it is idle: no running container and no container, image, build,
    /// volume or network event for `suspendAfter`. A client connecting through `kubectl dsb
    /// connect` wakes it. At most the class's `lifecycle.idle.suspendAfter`; unset: the class's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleSpec>,

    /// Take a ready engine from this DockerSandboxPool (in the sandbox's namespace) instead of
    /// starting one: Ready in about a second instead of a pod and dockerd start. The rest of the
    /// spec must be unset (the pool's template is the spec). The client Secret is minted for this
    /// sandbox at claim time; nobody held a certificate for that engine before. A pool with no
    /// ready engine, or none of that name, gives a cold start from the template
    /// (`status.startedFrom: Cold`, and a condition says why). Cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 40))]
    pub pool_ref: Option<String>,
}

/// When an idle engine is suspended.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdleSpec {
    /// How long an engine may be idle before it is suspended, as a number and a unit (`s`, `m`, `h`
    /// or `d`): `30m`, `2h`.
    #[schemars(length(min = 2, max = 8), regex(pattern = r"^[0-9]{1,6}[smhd]$"))]
    pub suspend_after: String,
}

/// What happens to a sandbox at expiry.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpiryAction {
    /// Stop the engine; the volume, Service and certificates stay.
    #[default]
    Suspend,
    /// Delete the sandbox (the volume stays when `storage.reclaimPolicy` is `Retain`).
    Delete,
}

/// Who may connect to the engine's port 2376 besides the sandbox's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// More clients, in NetworkPolicy peer form: `namespaceSelector` and/or `podSelector`, or an
    /// `ipBlock` (e.g. `{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ci}}}`).
    /// The class may forbid this (`network.allowTenantPeers: false`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allow_from: Vec<NetworkPolicyPeer>,
}

impl NetworkSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The sandbox's TLS credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.generation >= oldSelf.generation").message("credentials.generation can only grow: lowering it does not bring revoked certificates back"))]
pub struct CredentialsSpec {
    /// Raise this number to revoke every client certificate of the sandbox: a new CA, server and
    /// client certificate are issued, so certificates handed out before stop working. The engine
    /// restarts once (its volume keeps images and containers); clients fetch the new client Secret.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub generation: i64,
}

impl CredentialsSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Isolation mode requested for the engine pod.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// sysbox when its RuntimeClass exists, else privileged when allowed.
    #[default]
    Auto,
    /// The sysbox RuntimeClass, a user namespace, no privileged flag.
    Sysbox,
    /// A privileged pod.
    Privileged,
}

/// Image pull policy for the engine image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is missing on the node.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

/// Storage for `/var/lib/docker`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == oldSelf.type").message("storage.type cannot be changed after creation: it would throw away the engine's data; create a new sandbox instead"),
    validation = Rule::new("(has(self.storageClassName) == has(oldSelf.storageClassName)) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName cannot be changed after creation: the volume cannot move to another class; create a new sandbox instead"),
    validation = Rule::new("!has(oldSelf.size) || !has(self.size) || !isQuantity(self.size) || !isQuantity(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").message("storage.size can grow but not shrink"),
    validation = Rule::new("self.type == 'Persistent' || !has(self.storageClassName)").message("storage.storageClassName only applies to Persistent storage")
)]
pub struct StorageSpec {
    /// `Persistent` (default): a PersistentVolumeClaim that survives pod restarts.
    /// `Ephemeral`: an emptyDir limited to `size`, lost when the pod goes away. Immutable.
    #[serde(default, rename = "type")]
    pub kind: StorageType,

    /// Size of the volume (PVC request, or the emptyDir limit), at least 1Gi. Defaults to the
    /// operator's default size (20Gi). A persistent volume can grow but not shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("storage.size must be a quantity such as 20Gi"),
        validation = Rule::new("!isQuantity(self) || quantity(self).compareTo(quantity('1Gi')) >= 0").message("storage.size must be at least 1Gi: dockerd needs room for images"),
        validation = Rule::new("!isQuantity(self) || quantity(self).compareTo(quantity('64Ti')) <= 0").message("storage.size must be at most 64Ti")
    )]
    pub size: Option<String>,

    /// StorageClass of the PVC. Defaults to the operator's default class, else the cluster default.
    /// Immutable once the sandbox exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// What happens to the volume when the sandbox is deleted. `Retain` (default) keeps the PVC, and a
    /// new sandbox with the same name adopts it with the data inside. `Delete` removes it with the sandbox.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,

    /// `Ephemeral` only: accept that suspending the sandbox (`suspend`, idleness or expiry) throws
    /// away its images, containers and volumes, which live in the pod. Without it `suspend: true`
    /// is refused and an idle engine is not suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard_on_suspend: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            kind: StorageType::Persistent,
            size: None,
            storage_class_name: None,
            reclaim_policy: ReclaimPolicy::Retain,
            discard_on_suspend: false,
        }
    }
}

/// Kind of volume for `/var/lib/docker`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageType {
    /// A PersistentVolumeClaim.
    #[default]
    Persistent,
    /// An emptyDir with a size limit.
    Ephemeral,
}

/// What happens to the volume when the sandbox is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// Keep the PVC; a new sandbox with the same name adopts it.
    #[default]
    Retain,
    /// Delete the PVC with the sandbox.
    Delete,
}

/// How the engine is exposed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type: `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type")]
    pub kind: ServiceType,

    /// Annotations for the Service (for example for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Extra DNS names or IP addresses for the server certificate, for clients that reach the engine
    /// by another name (a load balancer's name or address). The Service names, its ClusterIP,
    /// `localhost` and `127.0.0.1` are always included.
    #[serde(default, rename = "extraSANs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(s, size(s) <= 253 && (isIP(s) || s.matches('^(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')))").message("service.extraSANs entries must be DNS names (like docker.example.com) or IP addresses (like 203.0.113.7)"))]
    pub extra_sans: Vec<String>,
}

/// Kubernetes Service type for the engine endpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Through a cloud load balancer.
    LoadBalancer,
}

/// dockerd settings written to daemon.json.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.bip) || !has(self.defaultAddressPools) || !isCIDR(self.bip) || self.defaultAddressPools.all(p, !isCIDR(p.base) || (!cidr(p.base).containsCIDR(cidr(self.bip).masked()) && !cidr(self.bip).masked().containsCIDR(cidr(p.base))))").message("daemon.bip overlaps daemon.defaultAddressPools: the default bridge and the networks users create would share addresses"))]
pub struct DaemonSpec {
    /// Registry mirrors for Docker Hub, as URLs (`https://mirror.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(u, size(u) <= 2048 && isURL(u) && u.matches('^https?://[^/@?#\\\\s]+(/[^?#\\\\s]*)?$'))").message("daemon.registryMirrors entries must be http(s) URLs without user info, query or fragment, such as https://mirror.example.com (dockerd refuses the others)"))]
    pub registry_mirrors: Vec<String>,

    /// Registries dockerd may reach without TLS verification (`host:port` or a CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(r, size(r) <= 253 && (isCIDR(r) || r.matches('^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$')))").message("daemon.insecureRegistries entries must be host, host:port (starting and ending with a letter or digit) or a CIDR"))]
    pub insecure_registries: Vec<String>,

    /// dockerd log level: `debug`, `info`, `warn`, `error` or `fatal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,

    /// Address and prefix of the default bridge (`--bip`), for example `198.18.0.1/24`. The operator's
    /// default avoids 172.17.0.0/16, which collides with many VPCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 30").message("daemon.bip must be the bridge's IPv4 address with a prefix from /8 to /30, like 198.18.0.1/24"))]
    pub bip: Option<String>,

    /// Address pools for networks users create (compose networks), e.g. `{base: 198.18.128.0/17, size: 24}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub default_address_pools: Vec<AddressPool>,

    /// MTU of the default bridge and of networks users create later. Defaults to the pod network's
    /// own MTU, read from the pod's interface when the engine starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub mtu: Option<i32>,
}

/// An address pool for user-created networks.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!isCIDR(self.base) || (cidr(self.base).ip().family() == 4 && self.size >= cidr(self.base).prefixLength())").message("daemon.defaultAddressPools[] must be IPv4 and size (the prefix of each network) at least the base's prefix length, like {base: 198.18.128.0/17, size: 24}"))]
pub struct AddressPool {
    /// The pool, as a CIDR (`198.18.128.0/17`).
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("daemon.defaultAddressPools[].base must be a CIDR such as 198.18.128.0/17"))]
    pub base: String,
    /// Prefix length of each network carved from the pool.
    #[schemars(range(min = 8, max = 30))]
    pub size: i32,
}

/// dockerd log level.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Normal operation.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
    /// Fatal errors only.
    Fatal,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DockerSandboxStatus {
    /// Pending, Provisioning, Ready, Suspended, Failed or Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The isolation mode the sandbox resolved to: `sysbox` or `privileged`. It is kept: `auto` does
    /// not move a sandbox to another mode later (a vanished RuntimeClass gives a condition, never a
    /// privileged engine); set `spec.isolation` explicitly to move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// Under sysbox isolation, how the engine pod gets its user namespace: `hostUsers` (containerd
    /// nodes) or `crioAnnotation` (CRI-O nodes). The IsolationResolved condition says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysbox_user_namespace: Option<String>,
    /// The DockerSandboxClass in use; kept once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// The generation of that class the engine was last planned with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_generation: Option<i64>,
    /// The DOCKER_HOST for clients in the cluster: `tcp://<name>.<namespace>.svc:2376`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Secret with the client certificate (ca.pem, cert.pem, key.pem: use it as DOCKER_CERT_PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_name: Option<String>,
    /// Version of the Docker engine, as it answered the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    /// Expiry of the sandbox's certificates; they are renewed before they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateStatus>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the engine's NetworkPolicy lets through: who may connect to port 2376, and where nested
    /// containers may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
    /// What the engine pod requests (what it reserves on a node) and what it is limited to: the
    /// sandbox's resources, else the class's default, with the class's memory maximum as the limit
    /// when none is set (and then a request of 256Mi, or less when the maximum is less, never the
    /// maximum itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// What is inside the engine, as dockerd last told the operator (read every few minutes over
    /// mutual TLS, written when it changes noticeably).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineStatus>,
    /// When the sandbox expires (RFC 3339): `spec.lifetime` after creation, `spec.expiresAt`, or
    /// the class's lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Since when the engine has run no container and reported no event (RFC 3339), for sandboxes
    /// suspended when idle; absent while it is busy or not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<String>,
    /// Why and since when the engine is stopped (phase Suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
    /// For a sandbox with `spec.poolRef`: `Pool` (it claimed a ready engine of the pool) or `Cold`
    /// (the pool had none; its engine was started for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<StartedFrom>,
    /// The pooled sandbox whose engine this sandbox claimed (it belongs to this sandbox now and is
    /// deleted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_sandbox: Option<String>,
    /// Ready, IsolationResolved, TLSReady, StorageBound and EngineReady, with reasons (and FromPool for
    /// a sandbox with `spec.poolRef`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions::schema")]
    pub conditions: Vec<Condition>,
}

/// Where a sandbox with `spec.poolRef` got its engine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartedFrom {
    /// A ready engine of the pool.
    Pool,
    /// An engine started for it: the pool had no ready engine, or is missing.
    Cold,
}

/// Why an engine is stopped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Suspension {
    /// `Spec` (`spec.suspend: true`; only a spec change resumes it), `Idle` (the engine was idle;
    /// a client connecting through `kubectl dsb connect` wakes it) or `Expiry` (its lifetime ended;
    /// a later expiry starts it again).
    pub cause: SuspendCause,
    /// When it was suspended (RFC 3339).
    pub since: String,
    /// The `dockersandbox.dev/wake` annotation when it was suspended (its value, or a digest of
    /// one longer than 64 characters): another value wakes an idle engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<String>,
}

/// Why an engine is stopped.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SuspendCause {
    /// `spec.suspend: true`.
    #[default]
    Spec,
    /// No running container and no engine event for the idle time.
    Idle,
    /// The sandbox's lifetime ended and `onExpiry` is `Suspend`.
    Expiry,
}

impl SuspendCause {
    /// As in the API and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SuspendCause::Spec => "Spec",
            SuspendCause::Idle => "Idle",
            SuspendCause::Expiry => "Expiry",
        }
    }
}

/// What dockerd reports about itself. Counts and bytes are dockerd's own accounting (`docker info`,
/// `docker system df`); the figures are refreshed every few minutes and written only when they
/// change (a count, the used percent, or a byte figure by more than 1% of the volume).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// Containers running.
    pub containers_running: i64,
    /// Containers in any state (running, stopped, created).
    pub containers: i64,
    /// Images, tagged or not.
    pub images: i64,
    /// Disk use of /var/lib/docker, when dockerd could account for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<EngineDisk>,
    /// Disk garbage collection runs so far (classes with `disk.gc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<EngineGc>,
    /// The last container, image, build, volume or network event dockerd reported (RFC 3339);
    /// absent while the operator has seen none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    /// When these figures were read (RFC 3339).
    pub observed_at: String,
}

/// Disk garbage collection in an engine.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EngineGc {
    /// Runs so far.
    pub runs: i64,
    /// Bytes they freed.
    pub freed_bytes: i64,
    /// When the last one ran (RFC 3339).
    pub last_run: String,
    /// What the last one freed, from where.
    pub last_result: String,
}

/// Bytes on the engine's volume, by what holds them (`docker system df`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EngineDisk {
    /// Image layers.
    pub images_bytes: i64,
    /// Containers' writable layers.
    pub containers_bytes: i64,
    /// Local volumes.
    pub volumes_bytes: i64,
    /// The build cache.
    pub build_cache_bytes: i64,
    /// The sum of the four.
    pub used_bytes: i64,
    /// The volume's size (the claim's capacity, or the ephemeral volume's size limit); absent when
    /// the volume has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<i64>,
    /// `usedBytes` as a percent of `capacityBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<i64>,
}

/// The engine's NetworkPolicy in words.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The NetworkPolicy (same name as the engine pod).
    pub policy: String,
    /// Who may connect to port 2376.
    pub ingress: String,
    /// Where the engine and its nested containers may connect.
    pub egress: String,
}

/// Expiry times (RFC 3339) of the sandbox's certificates.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// When the sandbox's CA expires.
    pub ca_not_after: String,
    /// When the engine's server certificate expires.
    pub server_not_after: String,
    /// When the tenant's client certificate expires.
    pub client_not_after: String,
    /// The `spec.credentials.generation` the CA was issued for.
    #[serde(default)]
    pub generation: i64,
}

/// Lifecycle phase of a sandbox.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for something outside the operator (a RuntimeClass, policy, a volume).
    Pending,
    /// Children are being created and the engine is starting.
    Provisioning,
    /// A client can use the engine.
    Ready,
    /// The sandbox cannot be placed or the engine does not start; see conditions.
    Failed,
    /// Being deleted.
    Terminating,
    /// The engine is stopped (`spec.suspend`, idleness or expiry); its volume, Service and
    /// certificates stay. `status.suspension` says why.
    Suspended,
}

impl Phase {
    /// The phase as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
            Phase::Suspended => "Suspended",
        }
    }

    /// Every phase, for metrics.
    pub const ALL: [Phase; 6] =
        [Phase::Pending, Phase::Provisioning, Phase::Ready, Phase::Failed, Phase::Terminating, Phase::Suspended];
}
