//! Step: the engine. Keeps the engine pod in place, then asks dockerd itself over mutual TLS
//! whether it answers: pod readiness alone is not what a client sees.

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, warn};

use super::certs::Material;
use super::context::Target;
use super::pods::{self, PodState};
use super::probe::{self, Route};
use super::status::{self, Engine};
use crate::crd::conditions::{Cond, reason};
use crate::crd::{EngineGc, EngineStatus, Phase, SuspendCause};
use crate::error::Result;
use crate::plan::Plan;
use crate::plan::lifecycle::{self, Run};
use crate::resources::pod;

/// What a sandbox that is not Ready waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Something a watch reports: the pod, the volume, the scheduler, a spec change.
    ForEvents,
    /// dockerd to answer TLS in a pod that is ready: nothing reports that but asking.
    ForDockerd,
}

/// What the engine step found.
pub struct Checked {
    /// Whether dockerd answers.
    pub engine: Engine,
    /// What the sandbox waits for, when it is not Ready.
    pub wait: Wait,
    /// What is inside the engine, when it was read this time.
    pub facts: Option<EngineStatus>,
    /// DiskPressure, for classes with `disk.gc`.
    pub disk_pressure: Option<Cond>,
}

/// Ensures the engine pod and reports whether dockerd answers (and, every
/// `--engine-facts-interval`, what is inside it); or, when the engine is to be suspended, stops it.
pub async fn ensure(t: &Target<'_>, plan: &Plan, tls: &Material, run: Run) -> Result<Checked> {
    if let Run::Suspend(cause) = run {
        return suspend(t, plan, cause).await;
    }
    let desired = pod::build(t.dsb, plan, &tls.server.cert);
    let (engine, wait) = match pods::ensure(t, &desired).await? {
        PodState::Ready { ip } => return Ok(check(t, plan, ip, tls).await),
        PodState::Waiting(why) => (Engine::NotAnswering(why), Wait::ForEvents),
        PodState::Unschedulable(why) => (Engine::Unschedulable(why), Wait::ForEvents),
        PodState::Broken { reason, message } => (Engine::Broken { reason, message }, Wait::ForEvents),
    };
    Ok(Checked { engine, wait, facts: None, disk_pressure: last_pressure(t, plan) })
}

/// Stops the engine for `cause`: the pod goes (gracefully), everything else stays.
pub async fn suspend(t: &Target<'_>, plan: &Plan, cause: SuspendCause) -> Result<Checked> {
    let stopping = pods::suspend(t).await?;
    let why = lifecycle::because(&plan.lifecycle, cause, &t.names.service);
    let engine = Engine::Suspended { cause, stopping, why };
    Ok(Checked { engine, wait: Wait::ForEvents, facts: None, disk_pressure: last_pressure(t, plan) })
}

/// After a run that left the disk above the high mark (DiskPressure True), the use then, plus 1%
/// of the volume: no new run until use grows past it, or an hour has passed since the last one.
fn held(t: &Target<'_>, capacity: Option<i64>) -> Option<i64> {
    let status = t.dsb.status.as_ref()?;
    let pressed = status::last_disk_pressure(Some(status)).is_some_and(|c| c.ok);
    let engine = status.engine.as_ref()?;
    let last_run = engine.gc.as_ref()?.last_run.parse::<jiff::Timestamp>().ok()?;
    let recent = jiff::Timestamp::now().duration_since(last_run).as_secs() < 3600;
    let used = engine.disk.as_ref()?.used_bytes;
    (pressed && recent).then(|| used.saturating_add(capacity.unwrap_or_default() / 100))
}

/// The DiskPressure on record, while the disk is not read (none without `disk.gc`).
fn last_pressure(t: &Target<'_>, plan: &Plan) -> Option<Cond> {
    plan.gc.as_ref().and(status::last_disk_pressure(t.dsb.status.as_ref()))
}

/// How long a reconcile waits for a free engine-check slot before it keeps what it last knew.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Asks dockerd in the owned pod (at `ip`) over TLS, in one of the fixed engine-check slots. When
/// none is free (slow engines hold them all), the engine's last known state stands and it is
/// checked again soon: a slow engine never holds the reconciles of the others.
async fn check(t: &Target<'_>, plan: &Plan, ip: String, tls: &Material) -> Checked {
    let Ok(Ok(_slot)) = tokio::time::timeout(SLOT_WAIT, t.ctx.engine_checks.acquire()).await else {
        let last =
            t.dsb.status.as_ref().filter(|s| s.phase == Some(Phase::Ready)).and_then(|s| s.docker_version.clone());
        let engine = last.map_or_else(
            || Engine::NotAnswering("the engine pod is ready; waiting for a free engine-check slot".into()),
            Engine::Answering,
        );
        return Checked { engine, wait: Wait::ForDockerd, facts: None, disk_pressure: last_pressure(t, plan) };
    };
    let route =
        if t.ctx.dial_pod { Route::Direct(ip) } else { Route::PortForward(Box::new(t.api()), t.names.pod.clone()) };
    let since = t.ctx.facts_due(t.dsb);
    let capacity = capacity(t, plan);
    let gc = plan.gc.as_ref().map(|policy| probe::GcAsk { policy, capacity, unless_at_most: held(t, capacity) });
    match probe::probe(route, &t.names.server_name(), &tls.ca.cert, &tls.client, since, gc).await {
        Ok(answer) => {
            let (facts, disk_pressure) = inside(t, plan, capacity, answer.facts, answer.gc).await;
            let engine = Engine::Answering(answer.version);
            Checked { engine, wait: Wait::ForEvents, facts, disk_pressure }
        }
        Err(why) => Checked {
            engine: Engine::NotAnswering(format!(
                "the engine pod is ready but dockerd does not answer over TLS: {why}"
            )),
            wait: Wait::ForDockerd,
            facts: None,
            disk_pressure: last_pressure(t, plan),
        },
    }
}

/// What the check read inside the engine, for status (with a garbage collection run it did, told
/// in an Event and counted in `status.engine.gc`), and DiskPressure after it.
async fn inside(
    t: &Target<'_>,
    plan: &Plan,
    capacity: Option<i64>,
    read: Option<std::result::Result<probe::Facts, String>>,
    gc: Option<crate::controller::gc::Run>,
) -> (Option<EngineStatus>, Option<Cond>) {
    let facts = read.and_then(|read| {
        t.ctx.facts_read(t.dsb, read.as_ref().ok().map(|f| f.until));
        match read {
            Ok(facts) => Some(facts),
            Err(why) => {
                warn!(error = %why, "could not read what is inside the engine");
                None
            }
        }
    });
    let now = Time(jiff::Timestamp::now());
    let mut disk_pressure = last_pressure(t, plan);
    if let (Some(policy), Some(Ok(disk)), Some(cap)) = (plan.gc.as_ref(), facts.as_ref().map(|f| &f.disk), capacity) {
        let pressure = status::disk_pressure(policy, disk, cap);
        if pressure.ok && !disk_pressure.as_ref().is_some_and(|c| c.ok) {
            // Just went over and garbage collection could not help: a Warning, once.
            t.warning(reason::DISK_FULL, pressure.message.clone()).await;
        }
        disk_pressure = Some(pressure);
    }
    let mut engine_status = facts.map(|f| status::engine_status(&f, capacity, &now));
    let old_gc = t.dsb.status.as_ref().and_then(|s| s.engine.as_ref()).and_then(|e| e.gc.clone());
    if let Some(e) = engine_status.as_mut() {
        e.gc = old_gc;
        if let Some(run) = &gc {
            let note = run.describe(capacity.unwrap_or_default());
            info!(freed = run.freed(), error = run.error.as_deref(), "{note}");
            t.normal(reason::DISK_GARBAGE_COLLECTED, note.clone()).await;
            let before = e.gc.take().unwrap_or_default();
            e.gc = Some(EngineGc {
                runs: before.runs.saturating_add(1),
                freed_bytes: before.freed_bytes.saturating_add(run.freed()),
                last_run: e.observed_at.clone(),
                last_result: note,
            });
        }
    }
    (engine_status, disk_pressure)
}

/// The size of the engine's volume in bytes: the claim's capacity once bound (else its request),
/// the ephemeral volume's size limit.
fn capacity(t: &Target<'_>, plan: &Plan) -> Option<i64> {
    let bound = (!plan.storage.ephemeral)
        .then(|| t.cached::<PersistentVolumeClaim>(&t.names.pvc))
        .flatten()
        .and_then(|c| c.status.as_ref()?.capacity.as_ref()?.get("storage").map(|q| q.0.clone()));
    let size = bound.unwrap_or_else(|| plan.storage.size.clone());
    let bytes = i64::try_from(crate::quantity::parse(&size)?.ceil_units()).ok()?;
    (bytes > 0).then_some(bytes)
}
