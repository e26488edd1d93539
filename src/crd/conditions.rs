//! Condition types and reasons, and the pure helper that keeps `lastTransitionTime` honest.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// The sandbox can be used by a client: dockerd answered over mutual TLS.
pub const READY: &str = "Ready";
/// An isolation mode was chosen and nothing known refuses it.
pub const ISOLATION_RESOLVED: &str = "IsolationResolved";
/// CA, server and client certificates exist and are valid.
pub const TLS_READY: &str = "TLSReady";
/// The volume for /var/lib/docker is bound (or ephemeral).
pub const STORAGE_BOUND: &str = "StorageBound";
/// dockerd answers `/_ping` and `/version` on 2376 with the client certificate.
pub const ENGINE_READY: &str = "EngineReady";
/// True: the engine's volume stays above its class's `disk.gc.highPercent` after garbage
/// collection (only for classes with `disk.gc`).
pub const DISK_PRESSURE: &str = "DiskPressure";
/// For a claimant (`spec.poolRef`): True when its engine was a ready one of the pool (reason
/// `Claimed`), False when one was started for it (reason `PoolEmpty` or `PoolNotFound`).
pub const FROM_POOL: &str = "FromPool";
/// True: the sandbox's expiry is near (within a tenth of its lifetime, at most a day) or past
/// (only for sandboxes that expire).
pub const EXPIRING: &str = "Expiring";

/// PascalCase reasons of conditions and Events, in one place so `kubectl describe`, the docs and
/// the e2e tests agree on them. Reasons from the kubelet (`ImagePullBackOff`, ...) pass through as is.
pub mod reason {
    /// The sandbox is being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// The sandbox's DockerSandboxClass does not exist (or none is marked default).
    pub const CLASS_NOT_FOUND: &str = "ClassNotFound";
    /// The class does not serve the sandbox's namespace.
    pub const CLASS_NOT_ALLOWED: &str = "ClassNotAllowed";
    /// The class does not allow the isolation the sandbox asks for.
    pub const ISOLATION_NOT_ALLOWED: &str = "IsolationNotAllowed";
    /// The class does not allow the sandbox's image.
    pub const IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";
    /// The sandbox asks for more resources than the class allows.
    pub const RESOURCES_NOT_ALLOWED: &str = "ResourcesNotAllowed";
    /// The sandbox sets placement the class does not let tenants set.
    pub const PLACEMENT_NOT_ALLOWED: &str = "PlacementNotAllowed";
    /// The class does not allow the sandbox's Service type or annotations.
    pub const SERVICE_NOT_ALLOWED: &str = "ServiceNotAllowed";
    /// The class does not allow the sandbox's storage type, size or StorageClass.
    pub const STORAGE_NOT_ALLOWED: &str = "StorageNotAllowed";
    /// The class does not let sandboxes add registries.
    pub const REGISTRY_NOT_ALLOWED: &str = "RegistryNotAllowed";
    /// The class does not let sandboxes open port 2376 to more clients.
    pub const NETWORK_NOT_ALLOWED: &str = "NetworkNotAllowed";
    /// The sandbox's name cannot name its children (admission refuses such names; older objects may have them).
    pub const INVALID_NAME: &str = "InvalidName";
    /// The spec has a value admission should have refused.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `isolation: sysbox` but the sysbox RuntimeClass does not exist.
    pub const RUNTIME_CLASS_MISSING: &str = "RuntimeClassMissing";
    /// The operator's policy forbids privileged engines and sysbox is not available.
    pub const PRIVILEGED_FORBIDDEN: &str = "PrivilegedForbidden";
    /// A privileged engine in a namespace without an explicit `pod-security.kubernetes.io/enforce=privileged`.
    pub const PRIVILEGED_NOT_OPTED_IN: &str = "PrivilegedNotOptedIn";
    /// The namespace's PodSecurity level would reject the engine pod.
    pub const POD_SECURITY_REJECTED: &str = "PodSecurityRejected";
    /// The operator cannot tell which user-namespace form sysbox needs on the nodes.
    pub const SYSBOX_USER_NAMESPACE_UNKNOWN: &str = "SysboxUserNamespaceUnknown";
    /// A spec change would give an engine pod the API server refuses; the running engine is kept.
    pub const ROLL_REFUSED: &str = "RollRefused";
    /// The API server refused the engine pod.
    pub const POD_REJECTED: &str = "PodRejected";
    /// An isolation mode was chosen.
    pub const RESOLVED: &str = "Resolved";
    /// The certificates are valid.
    pub const CERTIFICATES_VALID: &str = "CertificatesValid";
    /// The certificates are being issued.
    pub const ISSUING: &str = "Issuing";
    /// The volume is an emptyDir.
    pub const EPHEMERAL: &str = "Ephemeral";
    /// The PersistentVolumeClaim is bound.
    pub const BOUND: &str = "Bound";
    /// Waiting for something outside the operator (a volume, the scheduler).
    pub const PENDING: &str = "Pending";
    /// dockerd answered over mutual TLS.
    pub const ENGINE_ANSWERING: &str = "EngineAnswering";
    /// dockerd does not answer (yet, or any more).
    pub const ENGINE_NOT_ANSWERING: &str = "EngineNotAnswering";
    /// DiskPressure: use stays above the high mark after garbage collection.
    pub const DISK_FULL: &str = "AboveHighWatermark";
    /// DiskPressure False: use is at or below the high mark.
    pub const DISK_OK: &str = "BelowHighWatermark";
    /// The sandbox's lifetime, expiry or idle time goes beyond what its class allows.
    pub const LIFECYCLE_NOT_ALLOWED: &str = "LifecycleNotAllowed";
    /// Ready False: the engine is stopped because `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// Ready False, and Event: the engine was stopped because it was idle.
    pub const IDLE_SUSPENDED: &str = "IdleSuspended";
    /// Ready False, and Events: the sandbox's lifetime ended.
    pub const EXPIRED: &str = "Expired";
    /// Expiring True, and Event: the sandbox expires soon.
    pub const EXPIRES_SOON: &str = "ExpiresSoon";
    /// Expiring False: the sandbox's expiry is not near.
    pub const SCHEDULED: &str = "Scheduled";
    /// Event: the engine was stopped (the volume stays).
    pub const ENGINE_SUSPENDED: &str = "EngineSuspended";
    /// Event: a suspended engine is started again.
    pub const ENGINE_RESUMING: &str = "EngineResuming";
    /// Event: disk garbage collection ran; the note says what it freed.
    pub const DISK_GARBAGE_COLLECTED: &str = "DiskGarbageCollected";

    /// Event: a reconcile failed; the message quotes the error.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Event: the stored sandbox cannot be read by this operator (a field out of range); it is not
    /// reconciled until it is fixed, and every other sandbox is.
    pub const UNREADABLE: &str = "Unreadable";
    /// A claimant's engine (claimed from its pool, or started for it) is not serving it yet.
    pub const CLAIMING: &str = "Claiming";
    /// Event and FromPool False: a claimant's pool had no ready engine; one is started for it.
    pub const POOL_EMPTY: &str = "PoolEmpty";
    /// Event and FromPool False: a claimant's pool does not exist; an engine is started for it.
    pub const POOL_NOT_FOUND: &str = "PoolNotFound";
    /// FromPool True: a claimant took a ready engine of its pool.
    pub const CLAIMED: &str = "Claimed";
    /// The scheduler cannot place the engine pod (its message is quoted).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Event: the engine answered for the first time (or again).
    pub const ENGINE_READY: &str = "EngineReady";
    /// Event: the engine pod is recreated (spec or certificate change, or it ended).
    pub const ENGINE_RECREATING: &str = "EngineRecreating";
    /// Event: `spec.credentials.generation` was raised: a new CA and certificates were issued and
    /// the engine that trusts the old CA is being stopped.
    pub const CREDENTIALS_ROTATING: &str = "CredentialsRotating";
    /// Event: the engine answers with a certificate of the new CA: certificates issued before the
    /// raised `spec.credentials.generation` no longer work.
    pub const CREDENTIALS_REVOKED: &str = "CredentialsRevoked";
    /// Event: a CA key kept in the sandbox's namespace (as before) was moved to the operator's.
    pub const CA_KEY_MOVED: &str = "CAKeyMoved";
    /// Event: the engine pod's labels were edited (its Service and NetworkPolicy select it by them);
    /// they were put back.
    pub const ENGINE_RELABELLED: &str = "EngineRelabelled";
    /// Event: a selector someone added to the sandbox's Service was removed.
    pub const SERVICE_SELECTOR_REMOVED: &str = "ServiceSelectorRemoved";
    /// Event: a running engine was stopped because policy no longer allows it.
    pub const ENGINE_STOPPED: &str = "EngineStopped";
    /// Event: a new CA replaced a missing, invalid or expiring one.
    pub const CA_REGENERATED: &str = "CARegenerated";
    /// Event: a Secret's content was edited by hand and put back.
    pub const SECRET_RESTORED: &str = "SecretRestored";
    /// An object with a child's name exists and is not this sandbox's; it is left untouched.
    pub const CONFLICT: &str = "Conflict";
    /// Event: a server certificate was issued in place of another (renewal, new address, new CA).
    pub const SERVER_CERTIFICATE_ISSUED: &str = "ServerCertificateIssued";
    /// Event: a client certificate was issued in place of another (renewal, new CA).
    pub const CLIENT_CERTIFICATE_ISSUED: &str = "ClientCertificateIssued";
}

/// Schema for `status.conditions`: a list map keyed by `type`, so server-side apply merges entries.
pub fn schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// A condition as the operator computes it, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type, one of the constants above.
    pub type_: &'static str,
    /// True or false.
    pub ok: bool,
    /// PascalCase reason.
    pub reason: String,
    /// What a person should know, including the fix when something is wrong.
    pub message: String,
}

impl Cond {
    /// A condition with status True.
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: true, reason: reason.into(), message: message.into() }
    }

    /// A condition with status False.
    pub fn not_ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: false, reason: reason.into(), message: message.into() }
    }
}

/// Turns computed conditions into API conditions, keeping each `lastTransitionTime` from `old`
/// unless the status flipped, so an unchanged condition compares equal and nothing is written.
pub fn merge(old: &[Condition], new: &[Cond], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    new.iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" };
            let previous = old.iter().find(|o| o.type_ == c.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_.to_string(),
                status: status.to_string(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).expect("valid time"))
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let first = merge(&[], &[Cond::ok(READY, "EngineAnswering", "ok")], Some(1), &t(100));
        let second = merge(&first, &[Cond::ok(READY, "EngineAnswering", "still ok")], Some(2), &t(200));
        assert_eq!(second[0].last_transition_time, t(100));
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let first = merge(&[], &[Cond::ok(READY, "EngineAnswering", "ok")], Some(1), &t(100));
        let second = merge(&first, &[Cond::not_ok(READY, "EngineNotAnswering", "down")], Some(1), &t(200));
        assert_eq!(second[0].last_transition_time, t(200));
        assert_eq!(second[0].status, "False");
    }
}
