//! `DockerSandboxPool` v1alpha1: engines started ahead of time, handed out by claims.
//!
//! A pool keeps `replicas` engines ready and unclaimed in its namespace: each is an ordinary
//! DockerSandbox made from the pool's template and owned by the pool, with its own CA and a server
//! certificate for the names it keeps after a claim, and no client certificate at all. A
//! DockerSandbox with `spec.poolRef` takes the oldest ready one: only then is a client certificate
//! of that engine's CA minted, for the claimant alone.

#![allow(clippy::duplicated_attributes)] // false positive on the repeated `printcolumn(type_ = ..)` of the derive

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DockerSandboxSpec;

/// Label on a pooled sandbox: the pool it belongs to (removed when it is claimed).
pub const POOL_LABEL: &str = "dockersandbox.dev/pool";
/// Label on a pooled sandbox: the hash of the template it was made from.
pub const TEMPLATE_HASH_LABEL: &str = "dockersandbox.dev/template-hash";
/// Label on a claimed sandbox: the uid of the DockerSandbox that claimed it.
pub const CLAIMED_BY_LABEL: &str = "dockersandbox.dev/claimed-by";
/// Annotation on a pooled sandbox: the pool that made it (kept after a claim, which removes the
/// pool's label and owner reference).
pub const FROM_POOL_ANNOTATION: &str = "dockersandbox.dev/from-pool";

/// Whether `dsb` was made by a pool: its server certificate names every Service of its namespace
/// (a claimant's Service reaches it under the claimant's name), and it has no client Secret of its
/// own (a claimant's is minted at claim time).
pub fn pooled(dsb: &super::DockerSandbox) -> bool {
    dsb.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(FROM_POOL_ANNOTATION))
}

/// Engines started ahead of time for the DockerSandboxes of this namespace that name the pool in
/// `spec.poolRef`: a claim is Ready as soon as the operator has minted its client certificate,
/// instead of after a pod and dockerd start.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "dockersandbox.dev",
    version = "v1alpha1",
    kind = "DockerSandboxPool",
    plural = "dockersandboxpools",
    shortname = "dsbpool",
    namespaced,
    status = "DockerSandboxPoolStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.ready","labelSelectorPath":".status.selector"}"#,
    doc = "DockerSandboxPool keeps Docker engines started ahead of time, for DockerSandboxes that claim one.",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas", description = "Ready engines to keep"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready", description = "Ready, unclaimed engines"),
    printcolumn(name = "Creating", type_ = "integer", json_path = ".status.creating", description = "Engines starting"),
    printcolumn(name = "Claimed", type_ = "integer", json_path = ".status.claimed", description = "Engines handed out so far"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name must be at most 40 characters: pooled sandboxes are named after the pool plus a random suffix")
)]
#[serde(rename_all = "camelCase")]
pub struct DockerSandboxPoolSpec {
    /// The DockerSandboxClass of the pooled engines (the class's policy applies to them as to any
    /// sandbox). Unset: the default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub class_name: Option<String>,

    /// How many ready, unclaimed engines to keep. Each claim takes one and the pool starts another.
    /// The `/scale` subresource drives it (`kubectl scale dsbpool NAME --replicas=N`, an autoscaler).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: i32,

    /// During a rollout (the template or the class changed), how many engines above `replicas` may
    /// be starting at once: old ready engines are replaced one by one as new ones become ready, so
    /// the pool never has fewer than `replicas - 1` ready. Default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10))]
    pub max_surge: i32,

    /// The pooled sandboxes' spec: what a claim gets. `className` here must be unset (the pool's
    /// `className` is used). Ephemeral storage is the usual choice: a pooled engine is new and
    /// empty; a Persistent one keeps its volume until the claimant deletes it.
    pub template: PoolTemplate,
}

fn one() -> i32 {
    1
}

/// The template of a pool's sandboxes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.spec.className)").message("template.spec.className must be unset: set the pool's spec.className"),
    validation = Rule::new("!has(self.spec.poolRef)").message("template.spec.poolRef must be unset: a pooled engine is started, not claimed")
)]
pub struct PoolTemplate {
    /// A DockerSandbox spec, without `className` or `poolRef`.
    pub spec: DockerSandboxSpec,
}

/// What the pool has.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DockerSandboxPoolStatus {
    /// Ready, unclaimed engines (of any template generation).
    #[serde(default)]
    pub ready: i32,
    /// Engines being started.
    #[serde(default)]
    pub creating: i32,
    /// Ready, unclaimed engines made from the current template.
    #[serde(default)]
    pub updated_ready: i32,
    /// Engines claimed from this pool that still exist (each belongs to its claimant now).
    #[serde(default)]
    pub claimed: i64,
    /// Hash of the template (and class generation) the pool makes engines from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub template_hash: Option<String>,
    /// The label selector of the pool's unclaimed sandboxes (for the `/scale` subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub selector: Option<String>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (as many ready engines as `replicas`) and Refilling (False with the reason when new
    /// engines cannot be made or do not start: quota, policy, image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::conditions::schema")]
    pub conditions: Vec<Condition>,
}
