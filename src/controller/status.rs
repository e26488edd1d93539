//! Pure status computation: from what the reconciler observed to the status a person reads.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::probe;
use crate::crd::conditions::{self, Cond, reason};
use crate::crd::{
    CertificateStatus, DockerSandbox, DockerSandboxStatus, EngineDisk, EngineStatus, NetworkStatus, Phase,
    SuspendCause, Suspension,
};
use crate::plan::{Mode, Refusal};
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
    /// The scheduler cannot place the pod; its message.
    Unschedulable(String),
    /// The engine is stopped on purpose.
    Suspended {
        /// Why.
        cause: SuspendCause,
        /// Whether its pod is still stopping.
        stopping: bool,
        /// What caused it and what starts it again.
        why: String,
    },
    /// The pod cannot start: rejected by the API server, image missing, crash looping.
    Broken {
        /// PascalCase reason.
        reason: String,
        /// Details and the fix.
        message: String,
    },
}

/// What is inside an engine, for status: `facts` as read, against a volume of `capacity` bytes.
pub fn engine_status(facts: &probe::Facts, capacity: Option<i64>, now: &Time) -> EngineStatus {
    let disk = facts.disk.as_ref().ok().map(|d| {
        let used = d.used();
        EngineDisk {
            images_bytes: d.images,
            containers_bytes: d.containers,
            volumes_bytes: d.volumes,
            build_cache_bytes: d.build_cache,
            used_bytes: used,
            capacity_bytes: capacity,
            used_percent: capacity.map(|c| super::gc::percent(used, c)),
        }
    });
    EngineStatus {
        gc: None,
        containers_running: facts.containers_running,
        containers: facts.containers,
        images: facts.images,
        disk,
        last_activity: facts.last_activity.and_then(|t| jiff::Timestamp::from_second(t).ok()).map(|t| t.to_string()),
        observed_at: jiff::Timestamp::from_second(now.0.as_second()).unwrap_or(now.0).to_string(),
    }
}

/// A byte figure moves noticeably when it moves by more than this share of the volume (or, with no
/// volume size, of the bytes used), and at least `MIN_BYTES_MOVED`.
const BYTES_MOVED_PER_MILLE: i64 = 10;
const MIN_BYTES_MOVED: i64 = 16 * 1024 * 1024;
/// Activity moves noticeably when it moves by more than this many seconds.
const ACTIVITY_MOVED_SECS: i64 = 60;

/// The engine status to publish: `fresh` when it differs noticeably from `old` (a count, the used
/// percent, the volume size, a byte figure by more than 1% of the volume, the last activity by more
/// than a minute), else `old` unchanged, so a check that finds nothing new writes nothing. Disk
/// figures dockerd could not give this time keep their last known values; so does an activity
/// older than the one on record (the window read may have been short).
pub fn settle(old: Option<&EngineStatus>, mut fresh: EngineStatus) -> EngineStatus {
    let Some(old) = old else { return fresh };
    if fresh.disk.is_none() {
        fresh.disk.clone_from(&old.disk);
    }
    let secs = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_second());
    if secs(&old.last_activity) > secs(&fresh.last_activity) {
        fresh.last_activity.clone_from(&old.last_activity);
    }
    let activity_moved = match (secs(&old.last_activity), secs(&fresh.last_activity)) {
        (Some(a), Some(b)) => (b - a).abs() > ACTIVITY_MOVED_SECS,
        (a, b) => a != b,
    };
    let disk_moved = match (&old.disk, &fresh.disk) {
        (Some(a), Some(b)) => {
            let scale = b.capacity_bytes.unwrap_or(b.used_bytes);
            let slack = (scale / 1000 * BYTES_MOVED_PER_MILLE).max(MIN_BYTES_MOVED);
            let moved = |x: i64, y: i64| x.abs_diff(y) > slack.unsigned_abs();
            a.capacity_bytes != b.capacity_bytes
                || a.used_percent != b.used_percent
                || moved(a.images_bytes, b.images_bytes)
                || moved(a.containers_bytes, b.containers_bytes)
                || moved(a.volumes_bytes, b.volumes_bytes)
                || moved(a.build_cache_bytes, b.build_cache_bytes)
        }
        (a, b) => a.is_some() != b.is_some(),
    };
    let counts_moved = (old.containers_running, old.containers, old.images)
        != (fresh.containers_running, fresh.containers, fresh.images);
    if counts_moved || disk_moved || activity_moved || old.gc != fresh.gc { fresh } else { old.clone() }
}

/// What the reconciler observed of a sandbox whose children it manages.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The isolation mode in use.
    pub mode: Mode,
    /// The class and the generation of it that was applied.
    pub class: (String, i64),
    /// Certificate expiry.
    pub certificates: CertificateStatus,
    /// The volume.
    pub storage: Storage,
    /// The engine.
    pub engine: Engine,
    /// What the engine's NetworkPolicy lets through.
    pub network: NetworkStatus,
    /// What the engine pod requests and is limited to.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// What is inside the engine, when it was read this time.
    pub facts: Option<EngineStatus>,
    /// Whether the volume stays above the class's high mark: `Some` for classes with `disk.gc`
    /// (read this time, or as last known).
    pub disk_pressure: Option<Cond>,
    /// Since when the engine is idle (RFC 3339), while it answers and runs no container.
    pub idle_since: Option<String>,
    /// When the sandbox expires (RFC 3339).
    pub expires_at: Option<String>,
    /// The Expiring condition, for sandboxes that expire.
    pub expiring: Option<Cond>,
}

/// How a reconcile ended, for status.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The sandbox is being deleted: nothing is created or changed any more.
    Terminating,
    /// The sandbox cannot be placed; nothing was created.
    Refused(Refusal),
    /// An object under a child's name is someone else's: it is left alone, and what needs it waits.
    /// `condition` is the step it blocks (`None`: only Ready says it); isolation is resolved.
    Blocked {
        /// Why (reason Conflict).
        refusal: Refusal,
        /// The condition of the blocked step.
        condition: Option<&'static str>,
        /// The isolation resolved for the sandbox.
        mode: Mode,
    },
    /// The children were applied; this is what they do.
    Placed(Box<Observed>),
}

/// The status for `dsb` after `outcome`; conditions keep their transition times from the current
/// status unless they flipped, so an unchanged world yields an equal status.
pub fn compute(dsb: &DockerSandbox, outcome: &Outcome, now: &Time) -> DockerSandboxStatus {
    let names = Names::of(dsb);
    let old = dsb.status.clone().unwrap_or_default();
    let generation = dsb.metadata.generation;
    match outcome {
        Outcome::Terminating => {
            // What was true stays on record; only Ready and the phase say that it is going away.
            let gone = Cond::not_ok(conditions::READY, reason::TERMINATING, "the sandbox is being deleted");
            let mut conds = conditions::merge(&old.conditions, &[gone], generation, now);
            conds.extend(old.conditions.iter().filter(|c| c.type_ != conditions::READY).cloned());
            DockerSandboxStatus { phase: Some(Phase::Terminating), conditions: conds, ..old }
        }
        Outcome::Refused(r) => {
            let phase = if r.spec_error { Phase::Failed } else { Phase::Pending };
            let conds = [
                Cond::not_ok(conditions::READY, r.reason, &r.message),
                Cond::not_ok(conditions::ISOLATION_RESOLVED, r.reason, &r.message),
            ];
            DockerSandboxStatus {
                phase: Some(phase),
                // the resolved isolation stays on record (it is sticky), and so does its form
                isolation: old.isolation,
                sysbox_user_namespace: old.sysbox_user_namespace,
                class_name: old.class_name,
                class_generation: old.class_generation,
                endpoint: Some(names.endpoint()),
                client_secret_name: None,
                started_from: old.started_from,
                claimed_sandbox: old.claimed_sandbox,
                docker_version: old.docker_version,
                certificates: None,
                network: old.network,
                resources: old.resources,
                engine: old.engine,
                expires_at: old.expires_at,
                idle_since: None,
                suspension: old.suspension,
                observed_generation: generation,
                conditions: conditions::merge(&old.conditions, &conds, generation, now),
            }
        }
        Outcome::Blocked { refusal: r, condition, mode } => {
            let mut conds = vec![
                Cond::not_ok(conditions::READY, r.reason, &r.message),
                Cond::ok(conditions::ISOLATION_RESOLVED, reason::RESOLVED, mode.describe()),
            ];
            conds.extend(condition.map(|c| Cond::not_ok(c, r.reason, &r.message)));
            DockerSandboxStatus {
                phase: Some(Phase::Pending),
                isolation: Some(mode.as_str().to_string()),
                sysbox_user_namespace: user_namespace(mode),
                endpoint: Some(names.endpoint()),
                client_secret_name: None,
                certificates: None,
                observed_generation: generation,
                conditions: conditions::merge(&old.conditions, &conds, generation, now),
                ..old
            }
        }
        Outcome::Placed(seen) => {
            let (phase, conds) = placed(seen);
            let answering = match &seen.engine {
                Engine::Answering(v) => Some(v.clone()),
                _ => None,
            };
            let suspension = match &seen.engine {
                Engine::Suspended { cause, .. } => Some(match old.suspension.clone() {
                    // the same suspension as before: its start and the wake it outlived stay
                    Some(s) if s.cause == *cause => s,
                    _ => Suspension {
                        cause: *cause,
                        since: jiff::Timestamp::from_second(now.0.as_second()).unwrap_or(now.0).to_string(),
                        wake: crate::plan::lifecycle::wake_request(dsb),
                    },
                }),
                _ => None,
            };
            let engine = match &seen.facts {
                Some(fresh) => Some(settle(old.engine.as_ref(), fresh.clone())),
                None => old.engine,
            };
            DockerSandboxStatus {
                phase: Some(phase),
                isolation: Some(seen.mode.as_str().to_string()),
                sysbox_user_namespace: user_namespace(&seen.mode),
                class_name: Some(seen.class.0.clone()),
                class_generation: Some(seen.class.1),
                endpoint: Some(names.endpoint()),
                client_secret_name: (!crate::crd::pooled(dsb)).then(|| names.client_secret.clone()),
                started_from: old.started_from,
                claimed_sandbox: old.claimed_sandbox.clone(),
                docker_version: answering.or(old.docker_version),
                certificates: Some(seen.certificates.clone()),
                network: Some(seen.network.clone()),
                resources: seen.resources.clone(),
                // a stopped engine runs nothing; the rest is as it was last read
                engine: match suspension {
                    Some(_) => engine.map(|e| EngineStatus { containers_running: 0, ..e }),
                    None => engine,
                },
                expires_at: seen.expires_at.clone(),
                idle_since: seen.idle_since.clone(),
                suspension,
                observed_generation: generation,
                conditions: conditions::merge(&old.conditions, &conds, generation, now),
            }
        }
    }
}

/// How a sysbox engine gets its user namespace, for status.
fn user_namespace(mode: &Mode) -> Option<String> {
    match mode {
        Mode::Sysbox { user_namespace, .. } => Some(user_namespace.as_str().to_string()),
        Mode::Privileged => None,
    }
}

fn placed(seen: &Observed) -> (Phase, Vec<Cond>) {
    use conditions::*;
    let iso = Cond::ok(ISOLATION_RESOLVED, reason::RESOLVED, seen.mode.describe());
    let tls = Cond::ok(
        TLS_READY,
        reason::CERTIFICATES_VALID,
        format!("server certificate valid until {}", seen.certificates.server_not_after),
    );
    let storage = match &seen.storage {
        Storage::Ephemeral => {
            Cond::ok(STORAGE_BOUND, reason::EPHEMERAL, "ephemeral emptyDir volume: data is lost with the pod")
        }
        Storage::Bound => Cond::ok(STORAGE_BOUND, reason::BOUND, "the volume for /var/lib/docker is bound"),
        Storage::Waiting(m) => Cond::not_ok(STORAGE_BOUND, reason::PENDING, m),
    };
    let (phase, engine) = match &seen.engine {
        Engine::Answering(v) => (
            Phase::Ready,
            Cond::ok(ENGINE_READY, reason::ENGINE_ANSWERING, format!("dockerd {v} answers over mutual TLS")),
        ),
        Engine::NotAnswering(m) => (Phase::Provisioning, Cond::not_ok(ENGINE_READY, reason::ENGINE_NOT_ANSWERING, m)),
        // The engine was never started: the scheduler's words, under its own reason.
        Engine::Unschedulable(m) => (Phase::Provisioning, Cond::not_ok(ENGINE_READY, reason::UNSCHEDULABLE, m)),
        Engine::Broken { reason, message } => (Phase::Failed, Cond::not_ok(ENGINE_READY, reason, message)),
        Engine::Suspended { cause, stopping, why } => {
            let reason = match cause {
                SuspendCause::Spec => reason::SUSPENDED,
                SuspendCause::Idle => reason::IDLE_SUSPENDED,
                SuspendCause::Expiry => reason::EXPIRED,
            };
            let state = if *stopping { "the engine is stopping" } else { "the engine is stopped" };
            (Phase::Suspended, Cond::not_ok(ENGINE_READY, reason, format!("{state}: {why}")))
        }
    };
    let ready = if phase == Phase::Ready {
        Cond::ok(
            READY,
            reason::ENGINE_ANSWERING,
            "a client with the certificate from the client Secret can use the endpoint",
        )
    } else {
        // a suspended engine is not waiting for anything: its suspension is the news
        let steps = if phase == Phase::Suspended { vec![&engine] } else { vec![&tls, &storage, &engine] };
        let first = steps.into_iter().find(|c| !c.ok).unwrap_or(&engine);
        Cond::not_ok(READY, &first.reason, &first.message)
    };
    let mut conds = vec![ready, iso, tls, storage, engine];
    conds.extend(seen.disk_pressure.clone());
    conds.extend(seen.expiring.clone());
    (phase, conds)
}

/// DiskPressure after a read of the engine's disk under a class with `disk.gc`: True while use
/// stays above the high mark (the message says what holds the space), else False.
pub fn disk_pressure(policy: &crate::crd::DiskGc, disk: &probe::Disk, capacity: i64) -> Cond {
    use super::gc;
    if gc::due(policy, disk, Some(capacity)) {
        Cond::ok(conditions::DISK_PRESSURE, reason::DISK_FULL, gc::pressure(policy, disk, capacity))
    } else {
        let used = gc::percent(disk.used(), capacity);
        Cond::not_ok(
            conditions::DISK_PRESSURE,
            reason::DISK_OK,
            format!("dockerd uses {used}% of the volume; garbage collection starts above {}%", policy.high_percent),
        )
    }
}

/// The DiskPressure condition on record in `status`, to carry while the disk is not read again.
pub fn last_disk_pressure(status: Option<&DockerSandboxStatus>) -> Option<Cond> {
    let c = status?.conditions.iter().find(|c| c.type_ == conditions::DISK_PRESSURE)?;
    Some(Cond {
        type_: conditions::DISK_PRESSURE,
        ok: c.status == "True",
        reason: c.reason.clone(),
        message: c.message.clone(),
    })
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

    fn certs() -> CertificateStatus {
        CertificateStatus {
            ca_not_after: "a".into(),
            server_not_after: "b".into(),
            client_not_after: "c".into(),
            generation: 0,
        }
    }

    fn seen(engine: Engine, storage: Storage) -> Outcome {
        Outcome::Placed(Box::new(Observed {
            mode: Mode::Privileged,
            class: ("default".into(), 1),
            certificates: certs(),
            storage,
            engine,
            network: NetworkStatus::default(),
            resources: None,
            facts: None,
            disk_pressure: None,
            idle_since: None,
            expires_at: None,
            expiring: None,
        }))
    }

    const GIB: i64 = 1 << 30;

    fn facts(running: i64, images_bytes: i64, activity: Option<i64>) -> probe::Facts {
        probe::Facts {
            containers_running: running,
            containers: running + 1,
            images: 3,
            disk: Ok(probe::Disk { images: images_bytes, containers: GIB / 4, volumes: GIB / 2, build_cache: GIB / 4 }),
            last_activity: activity,
            until: 2_000_000_000,
        }
    }

    fn at(t: &str) -> Time {
        Time(t.parse().expect("time"))
    }

    #[test]
    fn engine_status_sums_disk_and_reads_it_against_the_volume() {
        let e = engine_status(&facts(2, 2 * GIB, Some(1_764_930_000)), Some(10 * GIB), &at("2026-12-05T10:00:00Z"));
        assert_eq!((e.containers_running, e.containers, e.images), (2, 3, 3));
        let disk = e.disk.expect("disk");
        assert_eq!(disk.used_bytes, 3 * GIB);
        assert_eq!(disk.used_percent, Some(30));
        assert_eq!(e.last_activity.as_deref(), Some("2025-12-05T10:20:00Z"));
        assert_eq!(e.observed_at, "2026-12-05T10:00:00Z");
        let no_volume_size = engine_status(&facts(0, 0, None), None, &at("2026-12-05T10:00:00Z"));
        assert_eq!(no_volume_size.disk.expect("disk").used_percent, None);
        let mut unread = facts(0, 0, None);
        unread.disk = Err("df took too long".into());
        assert!(engine_status(&unread, Some(GIB), &at("2026-12-05T10:00:00Z")).disk.is_none());
    }

    #[test]
    fn engine_status_is_written_only_when_it_changes_noticeably() {
        let cap = Some(100 * GIB);
        let first = engine_status(&facts(2, 10 * GIB, Some(1_000_000)), cap, &at("2026-12-05T10:00:00Z"));
        // Nothing new three minutes later: the old status stands (no write), observedAt included.
        let later = engine_status(&facts(2, 10 * GIB + GIB / 2, Some(1_000_030)), cap, &at("2026-12-05T10:03:00Z"));
        assert_eq!(settle(Some(&first), later), first, "half a GiB of 100 GiB and 30 s of activity are not news");
        // Each of these is.
        let changed = [
            engine_status(&facts(3, 10 * GIB, Some(1_000_000)), cap, &at("2026-12-05T10:03:00Z")),
            engine_status(&facts(2, 12 * GIB, Some(1_000_000)), cap, &at("2026-12-05T10:03:00Z")),
            engine_status(&facts(2, 10 * GIB, Some(1_000_300)), cap, &at("2026-12-05T10:03:00Z")),
            engine_status(&facts(2, 10 * GIB, Some(1_000_000)), Some(200 * GIB), &at("2026-12-05T10:03:00Z")),
        ];
        for fresh in changed {
            assert_eq!(settle(Some(&first), fresh.clone()), fresh);
        }
        // Disk figures not read this time, or an older activity, keep what is on record.
        let mut unread = facts(2, 0, Some(999_000));
        unread.disk = Err("cut".into());
        let kept = settle(Some(&first), engine_status(&unread, cap, &at("2026-12-05T10:03:00Z")));
        assert_eq!(kept, first);
        // With no volume size, 1% of the bytes used (at least 16 MiB) is the threshold.
        let small = engine_status(&facts(0, 0, None), None, &at("2026-12-05T10:00:00Z"));
        let mut grown = facts(0, 10 * 1024 * 1024, None);
        grown.disk = grown.disk.map(|d| probe::Disk { images: 10 * 1024 * 1024, ..d });
        assert_eq!(settle(Some(&small), engine_status(&grown, None, &at("2026-12-05T10:03:00Z"))), small);
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
    fn each_condition_speaks_of_its_own_step() {
        // An engine the scheduler cannot place: Unschedulable, with the scheduler's words.
        let why = "the engine pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory.";
        let s = compute(&minimal(), &seen(Engine::Unschedulable(why.into()), Storage::Ephemeral), &now());
        let engine = cond(&s, conditions::ENGINE_READY);
        assert_eq!((engine.reason.as_str(), engine.message.as_str()), ("Unschedulable", why));
        assert_eq!(cond(&s, conditions::READY).reason, "Unschedulable", "Ready carries the summary");
        // Someone else's Secret under the CA's name: the certificates are blocked, isolation is fine.
        let refusal =
            Refusal { reason: reason::CONFLICT, message: "Secret web-ca already exists".into(), spec_error: false };
        let blocked = Outcome::Blocked { refusal, condition: Some(conditions::TLS_READY), mode: Mode::Privileged };
        let s = compute(&minimal(), &blocked, &now());
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, conditions::TLS_READY).reason, "Conflict");
        assert_eq!(cond(&s, conditions::READY).reason, "Conflict");
        let iso = cond(&s, conditions::ISOLATION_RESOLVED);
        assert_eq!((iso.status.as_str(), iso.reason.as_str()), ("True", "Resolved"));
        assert_eq!(s.isolation.as_deref(), Some("privileged"));
    }

    #[test]
    fn refusal_is_pending_with_reason_and_spec_error_is_failed() {
        let r = Refusal { reason: reason::RUNTIME_CLASS_MISSING, message: "install sysbox".into(), spec_error: false };
        let s = compute(&minimal(), &Outcome::Refused(r.clone()), &now());
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, conditions::ISOLATION_RESOLVED).reason, "RuntimeClassMissing");
        assert_eq!(cond(&s, conditions::READY).message, "install sysbox");
        assert_eq!(s.client_secret_name, None);
        let s = compute(&minimal(), &Outcome::Refused(Refusal { spec_error: true, ..r }), &now());
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

    #[test]
    fn ready_names_the_first_thing_missing_in_pipeline_order() {
        let s = compute(&minimal(), &seen(Engine::NotAnswering("dockerd starting".into()), Storage::Bound), &now());
        let ready = cond(&s, conditions::READY);
        assert_eq!((ready.reason.as_str(), ready.message.as_str()), ("EngineNotAnswering", "dockerd starting"));
        assert_eq!(cond(&s, conditions::STORAGE_BOUND).status, "True");
        assert_eq!(cond(&s, conditions::TLS_READY).message, "server certificate valid until b");
    }

    #[test]
    fn ephemeral_storage_is_said_to_lose_data() {
        let s = compute(&minimal(), &seen(Engine::Answering("27".into()), Storage::Ephemeral), &now());
        let c = cond(&s, conditions::STORAGE_BOUND);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Ephemeral"));
        assert!(c.message.contains("lost with the pod"));
    }

    #[test]
    fn docker_version_is_kept_while_the_engine_is_down() {
        let mut dsb = minimal();
        dsb.status = Some(compute(&dsb, &seen(Engine::Answering("27.5.1".into()), Storage::Bound), &now()));
        let s = compute(&dsb, &seen(Engine::NotAnswering("restarting".into()), Storage::Bound), &now());
        assert_eq!(s.phase, Some(Phase::Provisioning));
        assert_eq!(s.docker_version.as_deref(), Some("27.5.1"), "the last version that answered");
    }

    #[test]
    fn terminating_keeps_the_record_and_flips_only_ready() {
        let mut dsb = minimal();
        dsb.status = Some(compute(&dsb, &seen(Engine::Answering("27.5.1".into()), Storage::Bound), &now()));
        let later = Time(jiff::Timestamp::from_second(1_800_000_500).expect("time"));
        let s = compute(&dsb, &Outcome::Terminating, &later);
        assert_eq!(s.phase, Some(Phase::Terminating));
        let ready = cond(&s, conditions::READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Terminating"));
        assert_eq!(ready.last_transition_time, later);
        assert_eq!(s.conditions.len(), 5, "the other conditions stay as they were");
        assert_eq!(cond(&s, conditions::STORAGE_BOUND).last_transition_time, now());
        assert_eq!(s.client_secret_name.as_deref(), Some("web-client"));
        assert_eq!(s.isolation.as_deref(), Some("privileged"));
    }

    #[test]
    fn a_new_generation_is_observed_even_when_nothing_else_changed() {
        let mut dsb = minimal();
        let o = seen(Engine::Answering("27.5.1".into()), Storage::Bound);
        dsb.status = Some(compute(&dsb, &o, &now()));
        dsb.metadata.generation = Some(2);
        let again = compute(&dsb, &o, &now());
        assert!(changed(dsb.status.as_ref(), &again));
        assert_eq!(again.observed_generation, Some(2));
        assert!(again.conditions.iter().all(|c| c.observed_generation == Some(2)));
    }
}
