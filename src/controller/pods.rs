//! Keeps the engine pod in place: creates it, recreates it when it is lost or its desired spec
//! changed (most pod fields are immutable; the volume keeps the data), and reads its state.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use super::apply::{Child, Made};
use super::context::Target;
use crate::crd::FIELD_MANAGER;
use crate::crd::conditions::reason;
use crate::error::{Error, Result};
use crate::resources::pod::{credentials_of, hash_of};

/// What the engine pod is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Running and its readiness probe passes; the pod's IP (from its status, which only the
    /// kubelet writes), for the TLS check.
    Ready {
        /// `status.podIP`.
        ip: String,
    },
    /// Not ready yet; why.
    Waiting(String),
    /// The scheduler cannot place it; its message.
    Unschedulable(String),
    /// Cannot run until something changes.
    Broken {
        /// PascalCase reason.
        reason: String,
        /// Details.
        message: String,
    },
}

/// Container waiting reasons that do not fix themselves.
const STUCK: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
];

/// What to do about an existing engine pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The previous pod is still stopping; wait for it.
    WaitForStop(String),
    /// It ended: delete it (a new one follows); why.
    Recreate(String),
    /// The spec (or server certificate) changed: replace it, if the new pod would be admitted; why.
    Roll(String),
    /// Its credentials were revoked: stop it now, whether or not a new pod can follow; why.
    Revoke(String),
    /// It is the pod we want: read its state.
    Observe,
}

/// Decides, from the pod there is and the desired one, what to do.
pub fn decide(current: &Pod, desired: &Pod) -> Step {
    if current.metadata.deletion_timestamp.is_some() {
        let name = current.name_any();
        return Step::WaitForStop(format!("the previous engine pod {name} is stopping; a new one follows"));
    }
    let phase = current.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase == "Failed" || phase == "Succeeded" {
        let why = current.status.as_ref().and_then(|s| s.reason.clone()).unwrap_or(phase);
        return Step::Recreate(format!(
            "the engine pod ended ({why}); recreating it, the volume keeps images and containers"
        ));
    }
    if let (Some(have), Some(want)) = (credentials_of(current), credentials_of(desired))
        && have != want
    {
        return Step::Revoke(format!(
            "spec.credentials.generation is {want}: stopping the engine pod, which trusts the revoked CA of generation \
             {have}; a new one follows, the volume keeps images and containers"
        ));
    }
    if hash_of(current) != hash_of(desired) {
        return Step::Roll(
            "the sandbox spec or its server certificate changed; recreating the engine pod, the volume keeps images and containers".into(),
        );
    }
    Step::Observe
}

/// Ensures the engine pod matches `desired`.
pub async fn ensure(t: &Target<'_>, desired: &Pod) -> Result<PodState> {
    let api = t.api::<Pod>();
    let child = Child::of(t, &t.names.pod);
    let current = match child.observed()? {
        Some(current) => current,
        None => match create(&child, desired).await? {
            Ok(state) => return Ok(state),
            // The sandbox's own pod with its labels removed: decided on as it is (and relabelled).
            Err(found) => found,
        },
    };
    match decide(&current, desired) {
        Step::WaitForStop(why) => Ok(PodState::Waiting(why)),
        Step::Roll(why) => match admitted(&api, desired).await? {
            // The running engine is only replaced by one the API server would take.
            Err(refused) => Ok(PodState::Broken {
                reason: reason::ROLL_REFUSED.into(),
                message: format!(
                    "the spec change cannot be applied: the API server would refuse the new engine pod ({refused}); the running engine is kept until the spec is fixed"
                ),
            }),
            Ok(()) => replace(t, &child, &current, why).await,
        },
        // Fail closed: the old engine goes even when no new pod can be admitted (a full quota).
        Step::Recreate(why) | Step::Revoke(why) => replace(t, &child, &current, why).await,
        Step::Observe => {
            relabel(t, &current, desired).await?;
            Ok(state(&current))
        }
    }
}

/// Puts the engine pod's labels back if they were edited: its Service and its NetworkPolicy select
/// it by them, so a pod without them would leave both (and its egress rules with them). Labels are
/// mutable, so a merge patch of them is enough; nothing else of the pod is touched.
async fn relabel(t: &Target<'_>, current: &Pod, desired: &Pod) -> Result<()> {
    let have = current.labels();
    let missing: Vec<&String> =
        desired.labels().iter().filter(|(k, v)| have.get(*k) != Some(v)).map(|(k, _)| k).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let name = desired.name_any();
    let patch = serde_json::json!({ "metadata": { "labels": desired.labels() } });
    let writing = t.ctx.expect.writing::<Pod>(Some(&t.names.namespace), &name);
    let patched = t
        .api::<Pod>()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("relabel", "Pod", &name))?;
    writing.wrote(&super::apply::slim(&patched));
    let keys = missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
    let note = format!(
        "the engine pod's labels {keys} were edited; they were put back (its Service and NetworkPolicy select it by them)"
    );
    t.warning(reason::ENGINE_RELABELLED, note).await;
    Ok(())
}

async fn replace(t: &Target<'_>, child: &Child<'_, '_, Pod>, current: &Pod, why: String) -> Result<PodState> {
    child.delete(current).await?;
    t.normal(reason::ENGINE_RECREATING, why.clone()).await;
    Ok(PodState::Waiting(why))
}

/// Whether the API server would admit `desired` (server-side dry run: admission and validation run,
/// nothing is stored). The running pod holds the name, so "already exists" means it passed.
async fn admitted(api: &Api<Pod>, desired: &Pod) -> Result<Result<(), String>> {
    let params = PostParams { dry_run: true, field_manager: Some(FIELD_MANAGER.to_string()) };
    match api.create(&params, desired).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Ok(())),
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => Ok(Err(s.message.clone())),
        Err(e) => Err(Error::kube("dry-run create", "Pod", desired.name_any())(e)),
    }
}

/// Whether the engine pod, as the API server has it now, runs a privileged container (the cache
/// keeps no pod spec).
pub async fn runs_privileged(t: &Target<'_>) -> Result<bool> {
    let pod = super::apply::get(&t.api::<Pod>(), &t.names.pod).await?;
    Ok(pod.and_then(|p| p.spec).is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.security_context.as_ref().and_then(|sc| sc.privileged) == Some(true))
    }))
}

/// Stops the engine pod, if there is one, because policy no longer allows it (`why`).
pub async fn stop(t: &Target<'_>, why: &str) -> Result<()> {
    let child = Child::<Pod>::of(t, &t.names.pod);
    let Some(pod) = child.observed()? else { return Ok(()) };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    child.delete(&pod).await?;
    let note = format!(
        "stopped the engine pod {}, which policy no longer allows; the volume keeps its data: {why}",
        t.names.pod
    );
    t.warning(reason::ENGINE_STOPPED, note).await;
    Ok(())
}

/// Stops the engine pod for a suspension: dockerd gets the pod's grace period to stop its
/// containers; the volume and everything else stay. Whether the pod is still there (stopping).
pub async fn suspend(t: &Target<'_>) -> Result<bool> {
    let child = Child::<Pod>::of(t, &t.names.pod);
    let Some(pod) = child.observed()? else { return Ok(false) };
    if pod.metadata.deletion_timestamp.is_none() {
        child.delete(&pod).await?;
    }
    Ok(true)
}

/// Creates the engine pod: its state (`Ok`), or the sandbox's own pod that was there (`Err`). One
/// the API server refuses is `Broken`, with its message.
async fn create(child: &Child<'_, '_, Pod>, desired: &Pod) -> Result<Result<PodState, Pod>> {
    match child.create(desired).await {
        // Routine: no Event (the phase change to Ready says it all). Its state reads as the
        // cache will show it, so the next reconcile has no status to write for it.
        Ok(Made::Created(pod)) => Ok(Ok(state(&pod))),
        Ok(Made::Found(pod)) => Ok(Err(pod)),
        Err(e) if e.is_permanent() => {
            let message = format!(
                "the API server refused the engine pod: {}",
                e.api_message().map_or_else(|| e.to_string(), str::to_string)
            );
            Ok(Ok(PodState::Broken { reason: reason::POD_REJECTED.into(), message }))
        }
        Err(e) => Err(e),
    }
}

/// Reads the pod's state from its status.
pub fn state(pod: &Pod) -> PodState {
    let Some(status) = pod.status.as_ref() else { return PodState::Waiting("the engine pod has no status yet".into()) };
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        return PodState::Ready { ip: status.pod_ip.clone().unwrap_or_default() };
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if STUCK.contains(&reason.as_str()) {
                // A container that says why it stopped (its termination message) is quoted.
                let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.message.clone());
                let detail = last.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
                let message = match detail {
                    Some(why) => format!("container {}: {reason}: {why}", cs.name),
                    None => format!("container {}: {reason}: {}", cs.name, w.message.clone().unwrap_or_default()),
                };
                return PodState::Broken { reason, message };
            }
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unschedulable {
        return PodState::Unschedulable(format!(
            "the engine pod cannot be scheduled: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    PodState::Waiting(format!(
        "the engine pod is {}; waiting for dockerd to answer its readiness probe",
        status.phase.clone().unwrap_or_else(|| "Pending".into())
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::SPEC_HASH_ANNOTATION;

    fn pod(hash: &str, phase: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-engine".into());
        p.metadata.annotations = Some(BTreeMap::from([(SPEC_HASH_ANNOTATION.to_string(), hash.to_string())]));
        p.status = Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() });
        p
    }

    fn condition(type_: &str, status: &str, message: Option<&str>) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            message: message.map(str::to_string),
            ..PodCondition::default()
        }
    }

    fn waiting_container(reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: "dockerd".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some("details".into()) }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn the_same_running_pod_is_observed() {
        assert_eq!(decide(&pod("a", "Running"), &pod("a", "")), Step::Observe);
    }

    #[test]
    fn a_changed_spec_recreates_the_pod() {
        let Step::Roll(why) = decide(&pod("a", "Running"), &pod("b", "")) else { panic!("roll") };
        assert!(why.contains("spec or its server certificate changed") && why.contains("volume keeps"), "{why}");
    }

    #[test]
    fn an_ended_pod_is_recreated_with_its_reason() {
        let mut ended = pod("a", "Failed");
        ended.status.as_mut().expect("status").reason = Some("Evicted".into());
        let Step::Recreate(why) = decide(&ended, &pod("a", "")) else { panic!("recreate") };
        assert!(why.contains("(Evicted)"), "{why}");
        let Step::Recreate(why) = decide(&pod("a", "Succeeded"), &pod("a", "")) else { panic!("recreate") };
        assert!(why.contains("(Succeeded)"), "{why}");
    }

    #[test]
    fn a_stopping_pod_is_waited_for_not_deleted_again() {
        let mut stopping = pod("old", "Running");
        stopping.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let step = decide(&stopping, &pod("new", ""));
        assert!(matches!(step, Step::WaitForStop(ref m) if m.contains("web-engine is stopping")), "{step:?}");
    }

    #[test]
    fn ready_condition_means_ready() {
        let mut p = pod("a", "Running");
        p.status.as_mut().expect("status").conditions = Some(vec![condition("Ready", "True", None)]);
        assert_eq!(state(&p), PodState::Ready { ip: String::new() });
    }

    #[test]
    fn stuck_container_reasons_are_broken_with_the_kubelet_reason() {
        for reason in STUCK {
            let mut p = pod("a", "Pending");
            p.status.as_mut().expect("status").container_statuses = Some(vec![waiting_container(reason)]);
            match state(&p) {
                PodState::Broken { reason: r, message } => {
                    assert_eq!(r, reason);
                    assert_eq!(message, format!("container dockerd: {reason}: details"));
                }
                other => panic!("{reason}: expected Broken, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_crash_loop_quotes_the_containers_own_reason() {
        let mut p = pod("a", "Running");
        let mut cs = waiting_container("CrashLoopBackOff");
        cs.last_state = Some(ContainerState {
            terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                exit_code: 1,
                message: Some("daemon.mtu 9000 is above the pod network's MTU 1400\n".into()),
                ..Default::default()
            }),
            ..ContainerState::default()
        });
        p.status.as_mut().expect("status").container_statuses = Some(vec![cs]);
        let PodState::Broken { reason, message } = state(&p) else { panic!("broken") };
        assert_eq!(reason, "CrashLoopBackOff");
        assert_eq!(message, "container dockerd: CrashLoopBackOff: daemon.mtu 9000 is above the pod network's MTU 1400");
    }

    #[test]
    fn a_container_still_creating_is_waiting_not_broken() {
        let mut p = pod("a", "Pending");
        p.status.as_mut().expect("status").container_statuses = Some(vec![waiting_container("ContainerCreating")]);
        assert!(matches!(state(&p), PodState::Waiting(ref m) if m.contains("is Pending")));
    }

    #[test]
    fn unschedulable_quotes_the_scheduler() {
        let mut p = pod("a", "Pending");
        p.status.as_mut().expect("status").conditions =
            Some(vec![condition("PodScheduled", "False", Some("0/1 nodes are available: 1 Insufficient memory."))]);
        let PodState::Unschedulable(m) = state(&p) else { panic!("unschedulable") };
        assert_eq!(m, "the engine pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory.");
    }

    #[test]
    fn no_status_yet_is_waiting() {
        let mut p = pod("a", "");
        p.status = None;
        assert_eq!(state(&p), PodState::Waiting("the engine pod has no status yet".into()));
    }
}
