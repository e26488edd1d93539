//! API types of dockersandbox.dev, with no I/O.

pub mod bounds;
mod class;
pub mod conditions;
mod v1alpha1;

pub use class::*;
pub use v1alpha1::*;

/// The one server-side-apply field manager of the operator.
pub const FIELD_MANAGER: &str = "dockersandbox-operator";
/// Annotation holding the hash of the desired engine pod; a change means the pod is recreated.
pub const SPEC_HASH_ANNOTATION: &str = "dockersandbox.dev/spec-hash";
