//! Keeps the engine pod in place: creates it, recreates it when it is lost or its desired spec
//! changed (most pod fields are immutable; the volume keeps the data), and reads its state.

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use super::apply::{apply, delete, get};
use super::context::Target;
use crate::crd::conditions::reason;
use crate::error::Result;
use crate::resources::pod::hash_of;

/// What the engine pod is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Running and its readiness probe passes.
    Ready,
    /// Not ready yet; why.
    Waiting(String),
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

/// Ensures the engine pod matches `desired`.
pub async fn ensure(t: &Target<'_>, desired: &Pod) -> Result<PodState> {
    let name = desired.name_any();
    let api = t.api::<Pod>();
    let Some(current) = get(&api, &name).await? else {
        return create(t, &api, desired).await;
    };
    if current.metadata.deletion_timestamp.is_some() {
        return Ok(PodState::Waiting(format!("the previous engine pod {name} is stopping; a new one follows")));
    }
    let phase = current.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if hash_of(&current) != hash_of(desired) || phase == "Failed" || phase == "Succeeded" {
        let why = if phase == "Failed" || phase == "Succeeded" {
            let reason = current.status.as_ref().and_then(|s| s.reason.clone()).unwrap_or(phase);
            format!("the engine pod ended ({reason}); recreating it, the volume keeps images and containers")
        } else {
            "the sandbox spec or its server certificate changed; recreating the engine pod, the volume keeps images and containers".to_string()
        };
        delete(&api, &name).await?;
        t.normal(reason::ENGINE_RECREATING, why.clone()).await;
        return Ok(PodState::Waiting(why));
    }
    Ok(state(&current))
}

async fn create(t: &Target<'_>, api: &Api<Pod>, desired: &Pod) -> Result<PodState> {
    match apply(api, desired).await {
        Ok(_) => {
            t.normal(reason::ENGINE_CREATED, format!("created engine pod {}", desired.name_any())).await;
            Ok(PodState::Waiting("the engine pod was created; dockerd is starting".into()))
        }
        Err(e) if e.is_permanent() => {
            let message = format!(
                "the API server refused the engine pod: {}",
                e.api_message().map_or_else(|| e.to_string(), str::to_string)
            );
            Ok(PodState::Broken { reason: reason::POD_REJECTED.into(), message })
        }
        Err(e) => Err(e),
    }
}

/// Reads the pod's state from its status.
pub fn state(pod: &Pod) -> PodState {
    let Some(status) = pod.status.as_ref() else { return PodState::Waiting("the engine pod has no status yet".into()) };
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        return PodState::Ready;
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if STUCK.contains(&reason.as_str()) {
                let message = format!("container {}: {reason}: {}", cs.name, w.message.clone().unwrap_or_default());
                return PodState::Broken { reason, message };
            }
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unschedulable {
        return PodState::Waiting(format!(
            "the engine pod cannot be scheduled: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    PodState::Waiting(format!(
        "the engine pod is {}; waiting for dockerd to answer its readiness probe",
        status.phase.clone().unwrap_or_else(|| "Pending".into())
    ))
}
