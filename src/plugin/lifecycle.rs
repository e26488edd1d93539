//! `kubectl dsb suspend` and `resume`, and the wake of an engine suspended when idle, which
//! `connect`'s tunnel asks for when the first client connects.

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};

use super::cli::{Global, LifecycleArgs};
use super::cluster::{Cluster, ready_condition};
use super::error::{Error, Result, api};
use crate::crd::conditions::READY;
use crate::crd::{DockerSandbox, Phase, SuspendCause, WAKE_ANNOTATION};

/// How long a wake or `resume --wait` waits for the engine to be Ready.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `suspend --wait` waits for the engine to stop (its grace period is at most an hour).
const STOP_TIMEOUT: Duration = Duration::from_secs(3660);

/// What a sandbox's status says about running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Ready: connect.
    Ready,
    /// Suspended when idle: a wake starts it.
    Idle,
    /// Suspended for another cause, which a wake does not lift: why, and what does.
    Suspended(String),
    /// Something else (starting, failing): the Ready condition.
    Other(String),
}

/// The state of `dsb`, as its status tells it.
pub fn state(dsb: &DockerSandbox) -> State {
    let status = dsb.status.as_ref();
    let name = dsb.metadata.name.as_deref().unwrap_or_default();
    let ready = status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == READY && c.status == "True"));
    match status.and_then(|s| s.phase) {
        Some(Phase::Ready) if ready => State::Ready,
        Some(Phase::Suspended) => match status.and_then(|s| s.suspension.as_ref()).map(|s| s.cause) {
            Some(SuspendCause::Idle) => State::Idle,
            Some(SuspendCause::Expiry) => State::Suspended(format!(
                "it expired ({}); a longer spec.lifetime or a later spec.expiresAt starts it again",
                status.and_then(|s| s.expires_at.as_deref()).unwrap_or("expiresAt unknown")
            )),
            _ => State::Suspended(format!("spec.suspend is true; `kubectl dsb resume {name}` starts it again")),
        },
        _ => State::Other(ready_condition(dsb)),
    }
}

/// A new value for the wake annotation: this process and the time, so each wake differs.
fn wake_token() -> String {
    format!("{}-{}", jiff::Timestamp::now().as_millisecond(), std::process::id())
}

/// `kubectl dsb suspend NAME`: `spec.suspend: true`.
pub async fn suspend(global: &Global, args: &LifecycleArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let name = &args.target.name;
    patch(&cluster, name, serde_json::json!({ "spec": { "suspend": true } })).await?;
    println!(
        "DockerSandbox {}/{name}: suspending. dockerd stops its containers; the volume (images, volumes, stopped \
         containers), Service and certificates stay. `kubectl dsb resume {name}` starts it again.",
        cluster.namespace
    );
    if args.wait {
        let start = Instant::now();
        wait_for(&cluster, name, STOP_TIMEOUT, |dsb| {
            let engine = dsb.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "EngineReady"));
            dsb.status.as_ref().and_then(|s| s.phase) == Some(Phase::Suspended)
                && engine.is_some_and(|c| c.message.starts_with("the engine is stopped"))
        })
        .await?;
        println!("Suspended in {:.1}s.", start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `kubectl dsb resume NAME`: `spec.suspend: false`, and a wake for an engine suspended when idle.
pub async fn resume(global: &Global, args: &LifecycleArgs) -> Result<()> {
    let cluster = Cluster::new(global).await?;
    let name = &args.target.name;
    let body = serde_json::json!({
        "metadata": { "annotations": { WAKE_ANNOTATION: wake_token() } },
        "spec": { "suspend": false },
    });
    patch(&cluster, name, body).await?;
    println!("DockerSandbox {}/{name}: resuming.", cluster.namespace);
    if args.wait {
        let start = Instant::now();
        wait_ready(&cluster, name).await?;
        println!("Ready in {:.1}s.", start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Wakes `name`, suspended when idle, and waits until it is Ready; how long that took.
pub async fn wake(cluster: &Cluster, name: &str) -> Result<Duration> {
    let start = Instant::now();
    let body = serde_json::json!({ "metadata": { "annotations": { WAKE_ANNOTATION: wake_token() } } });
    patch(cluster, name, body).await.map_err(|e| match e {
        Error::Forbidden { message, .. } => Error::Other(format!(
            "DockerSandbox {}/{name} is suspended because it was idle, and you may not wake it: waking needs patch on \
             dockersandboxes in namespace {} ({message})",
            cluster.namespace, cluster.namespace
        )),
        e => e,
    })?;
    wait_ready(cluster, name).await?;
    Ok(start.elapsed())
}

/// What a tunnel asks before each client connection: is the engine there to take it? An engine
/// suspended when idle is woken first (the connection waits, and stderr says so), one that is
/// starting is waited for; one suspended for another cause refuses the connection with why.
pub struct Waker {
    cluster: Cluster,
    name: String,
    /// One wake at a time: connections that arrive meanwhile wait for it, then find it Ready.
    lock: tokio::sync::Mutex<()>,
}

impl Waker {
    /// For sandbox `name`.
    pub fn new(cluster: Cluster, name: &str) -> Self {
        Self { cluster, name: name.to_string(), lock: tokio::sync::Mutex::new(()) }
    }

    /// Returns once the engine can take a connection, or why it cannot.
    pub async fn ready(&self) -> Result<()> {
        let _one = self.lock.lock().await;
        let dsb = self.cluster.sandbox(&self.name).await?;
        let label = format!("DockerSandbox {}/{}", self.cluster.namespace, self.name);
        match state(&dsb) {
            State::Ready => Ok(()),
            State::Idle => {
                eprintln!("{} {label} was suspended because it was idle: waking the engine...", clock());
                let took = wake(&self.cluster, &self.name).await?;
                eprintln!("{} {label}: the engine woke in {:.1}s", clock(), took.as_secs_f64());
                Ok(())
            }
            State::Suspended(why) => Err(Error::Other(format!("{label} is suspended: {why}"))),
            State::Other(_) if matches!(dsb.status.and_then(|s| s.phase), Some(Phase::Provisioning)) => {
                eprintln!("{} {label} is starting: waiting for the engine...", clock());
                wait_ready(&self.cluster, &self.name).await
            }
            // the stream tries, and says why it fails
            State::Other(_) => Ok(()),
        }
    }
}

/// Time of day for the tunnel's lines (UTC).
fn clock() -> String {
    jiff::Timestamp::now().strftime("%H:%M:%S").to_string()
}

async fn patch(cluster: &Cluster, name: &str, body: serde_json::Value) -> Result<()> {
    let api = cluster.api::<DockerSandbox>();
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await.map_err(api_error(
        "patch",
        name,
        &cluster.namespace,
    ))?;
    Ok(())
}

fn api_error(verb: &'static str, name: &str, namespace: &str) -> impl FnOnce(kube::Error) -> Error + use<> {
    let (name, namespace) = (name.to_string(), namespace.to_string());
    move |e| match e {
        kube::Error::Api(s) if s.code == 404 => Error::SandboxNotFound { namespace, name },
        // admission refuses (e.g. suspending an Ephemeral sandbox): its message says why
        kube::Error::Api(s) if s.code == 422 => {
            Error::Other(format!("DockerSandbox {namespace}/{name}: {}", s.message))
        }
        e => api(verb, "dockersandboxes", &name, &namespace)(e),
    }
}

/// Waits until `name` is Ready; a suspension that a wake does not lift, or a failure, ends the wait.
async fn wait_ready(cluster: &Cluster, name: &str) -> Result<()> {
    let mut last = State::Other(String::new());
    let done = wait_for(cluster, name, WAKE_TIMEOUT, |dsb| {
        last = state(dsb);
        matches!(last, State::Ready)
            || dsb.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed)
            || (matches!(last, State::Suspended(_))
                && dsb.status.as_ref().and_then(|s| s.observed_generation) == dsb.metadata.generation)
    })
    .await;
    match (done, last) {
        (Ok(()), State::Ready) => Ok(()),
        (Ok(()), State::Suspended(why)) => {
            Err(Error::Other(format!("DockerSandbox {}/{name} stays suspended: {why}", cluster.namespace)))
        }
        (Ok(()), State::Other(why)) | (Err(Error::Other(why)), _) => {
            Err(Error::Other(format!("DockerSandbox {}/{name} did not become Ready: {why}", cluster.namespace)))
        }
        (Ok(()), State::Idle) => Err(Error::Other("the engine stayed idle".into())),
        (Err(e), _) => Err(e),
    }
}

/// Polls `name` every half second until `done` says so, at most `timeout`.
async fn wait_for(
    cluster: &Cluster,
    name: &str,
    timeout: Duration,
    mut done: impl FnMut(&DockerSandbox) -> bool,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let dsb = cluster.sandbox(name).await?;
        if done(&dsb) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Other(format!("waited {timeout:?}: {}", ready_condition(&dsb))));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DockerSandboxStatus, Suspension};

    fn sandbox(phase: Phase, cause: Option<SuspendCause>) -> DockerSandbox {
        let mut dsb: DockerSandbox = serde_saphyr::from_str(
            "apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: web, namespace: team-a}\nspec: {}\n",
        )
        .expect("fixture");
        let suspension = cause.map(|cause| Suspension { cause, since: "2026-12-05T10:00:00Z".into(), wake: None });
        dsb.status = Some(DockerSandboxStatus { phase: Some(phase), suspension, ..Default::default() });
        dsb
    }

    #[test]
    fn only_an_idle_suspension_is_woken() {
        assert_eq!(state(&sandbox(Phase::Suspended, Some(SuspendCause::Idle))), State::Idle);
        let State::Suspended(why) = state(&sandbox(Phase::Suspended, Some(SuspendCause::Spec))) else {
            panic!("spec suspension")
        };
        assert!(why.contains("`kubectl dsb resume web`"), "{why}");
        let State::Suspended(why) = state(&sandbox(Phase::Suspended, Some(SuspendCause::Expiry))) else {
            panic!("expired")
        };
        assert!(why.contains("a longer spec.lifetime"), "{why}");
        assert!(matches!(state(&sandbox(Phase::Provisioning, None)), State::Other(_)));
        assert_ne!(wake_token(), "", "a token");
    }
}
