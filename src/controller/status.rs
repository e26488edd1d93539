//! Pure status computation: from what the reconciler observed to the status a person reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::conditions::{self, Cond};
use crate::crd::{CertificateStatus, DockerSandbox, DockerSandboxStatus, Phase};
use crate::plan::Refusal;
use crate::resources::Names;

/// State of the volume for /var/lib/docker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// emptyDir: nothing to bind.
    Ephemeral,
    /// The PVC is bound.
    Bound,
    /// The PVC waits; the message says for what.
    Waiting(String),
}

/// State of the engine pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    /// dockerd answered over mutual TLS with this version.
    Answering(String),
    /// The pod exists but dockerd does not answer yet (or any more); the message says why.
    NotAnswering(String),
    /// The pod cannot start: rejected by the API server, image missing, crash looping.
    Broken {
        /// PascalCase reason.
        reason: String,
        /// Details and the fix.
        message: String,
    },
}

/// What the reconciler observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Why the sandbox cannot be placed, if it cannot.
    pub refusal: Option<Refusal>,
    /// The isolation mode in use.
    pub isolation: Option<String>,
    /// Certificate expiry, once the TLS material exists.
    pub certificates: Option<CertificateStatus>,
    /// The volume.
    pub storage: Storage,
    /// The engine.
    pub engine: Engine,
}

impl Observed {
    /// Observation for a sandbox that cannot be placed.
    pub fn refused(refusal: Refusal) -> Self {
        Self {
            refusal: Some(refusal),
            isolation: None,
            certificates: None,
            storage: Storage::Waiting("not created: the sandbox cannot be placed".into()),
            engine: Engine::NotAnswering("not created: the sandbox cannot be placed".into()),
        }
    }
}

/// The status for `dsb` given what was observed; conditions keep their transition times from the
/// current status unless they flipped, so an unchanged world yields an equal status.
pub fn compute(dsb: &DockerSandbox, seen: &Observed, now: &Time) -> DockerSandboxStatus {
    let names = Names::of(dsb);
    let old = dsb.status.clone().unwrap_or_default();
    let (phase, conds) = match &seen.refusal {
        Some(r) => {
            let phase = if r.spec_error { Phase::Failed } else { Phase::Pending };
            (
                phase,
                vec![
                    Cond::not_ok(conditions::READY, r.reason, &r.message),
                    Cond::not_ok(conditions::ISOLATION_RESOLVED, r.reason, &r.message),
                ],
            )
        }
        None => placed(seen),
    };
    let phase = if dsb.metadata.deletion_timestamp.is_some() { Phase::Terminating } else { phase };
    let answering = match &seen.engine {
        Engine::Answering(v) => Some(v.clone()),
        _ => None,
    };
    DockerSandboxStatus {
        phase: Some(phase),
        isolation: seen.isolation.clone(),
        endpoint: Some(names.endpoint()),
        client_secret_name: seen.certificates.as_ref().map(|_| names.client_secret.clone()),
        docker_version: answering.or(old.docker_version.clone()),
        certificates: seen.certificates.clone(),
        observed_generation: dsb.metadata.generation,
        conditions: conditions::merge(&old.conditions, &conds, dsb.metadata.generation, now),
    }
}

fn placed(seen: &Observed) -> (Phase, Vec<Cond>) {
    use conditions::*;
    let isolation = seen.isolation.clone().unwrap_or_default();
    let iso = Cond::ok(ISOLATION_RESOLVED, "Resolved", format!("the engine runs with {isolation} isolation"));
    let tls = match &seen.certificates {
        Some(c) => {
            Cond::ok(TLS_READY, "CertificatesValid", format!("server certificate valid until {}", c.server_not_after))
        }
        None => Cond::not_ok(TLS_READY, "Issuing", "certificates are being issued"),
    };
    let storage = match &seen.storage {
        Storage::Ephemeral => {
            Cond::ok(STORAGE_BOUND, "Ephemeral", "ephemeral emptyDir volume: data is lost with the pod")
        }
        Storage::Bound => Cond::ok(STORAGE_BOUND, "Bound", "the volume for /var/lib/docker is bound"),
        Storage::Waiting(m) => Cond::not_ok(STORAGE_BOUND, "Pending", m),
    };
    let (phase, engine) = match &seen.engine {
        Engine::Answering(v) => {
            (Phase::Ready, Cond::ok(ENGINE_READY, "EngineAnswering", format!("dockerd {v} answers over mutual TLS")))
        }
        Engine::NotAnswering(m) => (Phase::Provisioning, Cond::not_ok(ENGINE_READY, "EngineNotAnswering", m)),
        Engine::Broken { reason, message } => (Phase::Failed, Cond::not_ok(ENGINE_READY, reason, message)),
    };
    let ready = if phase == Phase::Ready {
        Cond::ok(READY, "EngineAnswering", "a client with the certificate from the client Secret can use the endpoint")
    } else {
        let first = [&tls, &storage, &engine].into_iter().find(|c| !c.ok).unwrap_or(&engine);
        Cond::not_ok(READY, &first.reason, &first.message)
    };
    (phase, vec![ready, iso, tls, storage, engine])
}

/// Whether two statuses differ in anything a person would see (ignoring timestamps, which
/// `conditions::merge` already keeps stable).
pub fn changed(old: Option<&DockerSandboxStatus>, new: &DockerSandboxStatus) -> bool {
    old != Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::minimal;

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000).expect("time"))
    }

    fn certs() -> Option<CertificateStatus> {
        Some(CertificateStatus { ca_not_after: "a".into(), server_not_after: "b".into(), client_not_after: "c".into() })
    }

    fn seen(engine: Engine, storage: Storage) -> Observed {
        Observed { refusal: None, isolation: Some("privileged".into()), certificates: certs(), storage, engine }
    }

    fn cond<'a>(s: &'a DockerSandboxStatus, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect("condition")
    }

    #[test]
    fn ready_when_engine_answers() {
        let s = compute(&minimal(), &seen(Engine::Answering("27.5.1".into()), Storage::Bound), &now());
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.endpoint.as_deref(), Some("tcp://web.team-a.svc:2376"));
        assert_eq!(s.client_secret_name.as_deref(), Some("web-client"));
        assert_eq!(s.docker_version.as_deref(), Some("27.5.1"));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(cond(&s, conditions::READY).status, "True");
        assert_eq!(s.conditions.len(), 5);
    }

    #[test]
    fn provisioning_names_what_is_missing() {
        let s =
            compute(&minimal(), &seen(Engine::NotAnswering("starting".into()), Storage::Waiting("pvc".into())), &now());
        assert_eq!(s.phase, Some(Phase::Provisioning));
        let ready = cond(&s, conditions::READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str(), ready.message.as_str()), ("False", "Pending", "pvc"));
    }

    #[test]
    fn refusal_is_pending_with_reason_and_spec_error_is_failed() {
        let r = Refusal { reason: "RuntimeClassMissing", message: "install sysbox".into(), spec_error: false };
        let s = compute(&minimal(), &Observed::refused(r.clone()), &now());
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, conditions::ISOLATION_RESOLVED).reason, "RuntimeClassMissing");
        assert_eq!(s.client_secret_name, None);
        let s = compute(&minimal(), &Observed::refused(Refusal { spec_error: true, ..r }), &now());
        assert_eq!(s.phase, Some(Phase::Failed));
    }

    #[test]
    fn broken_engine_fails() {
        let e = Engine::Broken { reason: "ImagePullBackOff".into(), message: "no such image".into() };
        let s = compute(&minimal(), &seen(e, Storage::Bound), &now());
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, conditions::READY).reason, "ImagePullBackOff");
    }

    #[test]
    fn steady_state_is_unchanged() {
        let mut dsb = minimal();
        let o = seen(Engine::Answering("27.5.1".into()), Storage::Bound);
        dsb.status = Some(compute(&dsb, &o, &now()));
        let later = Time(jiff::Timestamp::from_second(1_800_000_900).expect("time"));
        let again = compute(&dsb, &o, &later);
        assert!(!changed(dsb.status.as_ref(), &again), "nothing changed, nothing to write");
    }
}
