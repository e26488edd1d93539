//! API types of dockersandbox.dev, with no I/O.

pub mod bounds;
mod class;
pub mod conditions;
mod pool;
pub mod prose;
mod v1alpha1;

pub use class::*;
pub use pool::*;
pub use v1alpha1::*;

/// A generated CRD as it is published (`crds/`, the chart, docs/api.md): every spec field bounded
/// (`bounds`), every description joined into paragraphs (`prose`).
pub fn published(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    prose::joined(bounds::bounded(crd))
}

/// The one server-side-apply field manager of the operator.
pub const FIELD_MANAGER: &str = "dockersandbox-operator";
/// Annotation a client sets (to a new value each time) to wake an engine suspended when idle.
pub const WAKE_ANNOTATION: &str = "dockersandbox.dev/wake";
/// Annotation holding the hash of the desired engine pod; a change means the pod is recreated.
pub const SPEC_HASH_ANNOTATION: &str = "dockersandbox.dev/spec-hash";
