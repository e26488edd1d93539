//! Pure: when a sandbox expires, when its engine counts as idle, and whether the engine runs or is
//! suspended, from its spec, its class, its status and the time. Every duration is the operator's
//! own form (`90m`, `8h`, `7d`); every time is compared on the operator's clock, and a time from
//! an engine that lies ahead of it counts as now.

use jiff::{SignedDuration, Timestamp};

use super::{ClassFacts, Refusal};
use crate::crd::conditions::{self, Cond, reason};
use crate::crd::{DockerSandboxSpec, EngineStatus, ExpiryAction, StorageType, SuspendCause, Suspension};

/// The warning ahead of expiry comes at most this long before it.
const MAX_WARNING: SignedDuration = SignedDuration::from_hours(24);

/// What the spec and the class say about stopping, idling and expiring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    /// `spec.suspend`.
    pub suspend: bool,
    /// When the sandbox expires.
    pub expires_at: Option<Timestamp>,
    /// When the warning ahead of expiry is due.
    pub warn_at: Option<Timestamp>,
    /// What happens then.
    pub on_expiry: ExpiryAction,
    /// How long an engine may be idle before it is suspended; `None`: never.
    pub idle_after: Option<SignedDuration>,
    /// Seconds the engine pod gets to stop.
    pub stop_grace_seconds: i64,
}

/// What the engine should be doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Running.
    Engine,
    /// Stopped, for this cause.
    Suspend(SuspendCause),
    /// The sandbox expired with `onExpiry: Delete`.
    Delete,
}

/// A duration in the operator's form: 1 to 6 digits and a unit (`s`, `m`, `h` or `d`).
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    Some(SignedDuration::from_secs(n * secs))
}

fn refuse(message: String) -> Refusal {
    Refusal { reason: reason::LIFECYCLE_NOT_ALLOWED, message, spec_error: true }
}

/// A class duration that does not read: the class must be fixed, not the spec.
fn class_duration(class: &ClassFacts, field: &str, value: &str) -> Result<SignedDuration, Refusal> {
    parse_duration(value).ok_or_else(|| Refusal {
        reason: reason::INVALID_SPEC,
        message: format!(
            "DockerSandboxClass {} has lifecycle.{field} {value:?}, which is not a duration such as 8h or 7d; the \
             platform team must fix the class",
            class.name
        ),
        spec_error: false,
    })
}

fn spec_duration(field: &str, value: &str) -> Result<SignedDuration, Refusal> {
    parse_duration(value).ok_or_else(|| Refusal {
        reason: reason::INVALID_SPEC,
        message: format!("{field} {value:?} is not a duration such as 90m, 8h or 7d"),
        spec_error: true,
    })
}

/// The sandbox's lifecycle under its class, for a sandbox created at `created`; a lifetime, expiry
/// or idle time beyond what the class allows is refused, naming the class's limit.
pub fn resolve(spec: &DockerSandboxSpec, created: Timestamp, class: &ClassFacts) -> Result<Lifecycle, Refusal> {
    let lc = &class.spec.lifecycle;
    let expiry = lc.expiry.clone().unwrap_or_default();
    let max = expiry.max_lifetime.as_deref().map(|v| class_duration(class, "expiry.maxLifetime", v)).transpose()?;
    let default =
        expiry.default_lifetime.as_deref().map(|v| class_duration(class, "expiry.defaultLifetime", v)).transpose()?;
    let too_long = |what: String| {
        refuse(format!(
            "{what} is longer than DockerSandboxClass {} allows (lifecycle.expiry.maxLifetime {}); ask for at most \
             that",
            class.name,
            expiry.max_lifetime.as_deref().unwrap_or_default()
        ))
    };
    let lifetime = match (&spec.lifetime, &spec.expires_at) {
        (Some(l), _) => {
            let d = spec_duration("spec.lifetime", l)?;
            if max.is_some_and(|m| d > m) {
                return Err(too_long(format!("spec.lifetime {l}")));
            }
            Some(d)
        }
        (None, Some(at)) => {
            let d = at.0.duration_since(created);
            if max.is_some_and(|m| d > m) {
                return Err(too_long(format!("spec.expiresAt {} (after the sandbox's creation at {created})", at.0)));
            }
            Some(d)
        }
        (None, None) => match (default, max) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (d, m) => d.or(m),
        },
    };
    let expires_at = lifetime.and_then(|d| created.checked_add(d).ok());
    let warn_at = lifetime.zip(expires_at).and_then(|(d, at)| at.checked_sub((d / 10).min(MAX_WARNING)).ok());
    let class_idle =
        lc.idle.as_ref().map(|i| class_duration(class, "idle.suspendAfter", &i.suspend_after)).transpose()?;
    let idle_after = match &spec.idle {
        Some(i) => {
            let d = spec_duration("spec.idle.suspendAfter", &i.suspend_after)?;
            if let Some(c) = class_idle.filter(|c| d > *c) {
                return Err(refuse(format!(
                    "spec.idle.suspendAfter {} is longer than DockerSandboxClass {} allows (lifecycle.idle.suspendAfter \
                     {}); ask for at most {c:#}",
                    i.suspend_after,
                    class.name,
                    lc.idle.as_ref().map(|i| i.suspend_after.as_str()).unwrap_or_default()
                )));
            }
            Some(d)
        }
        None => class_idle,
    };
    // An engine whose data lives in the pod is not stopped for idleness unless the spec accepts it.
    let discards = spec.storage.kind == StorageType::Ephemeral && !spec.storage.discard_on_suspend;
    Ok(Lifecycle {
        suspend: spec.suspend,
        expires_at,
        warn_at,
        on_expiry: spec.on_expiry.or(expiry.on_expiry).unwrap_or_default(),
        idle_after: idle_after.filter(|_| !discards),
        stop_grace_seconds: lc.stop_grace_period_seconds,
    })
}

/// The wake request `dsb` carries (its `dockersandbox.dev/wake` annotation), as status records it:
/// the value itself when short, else a digest of it. Anyone who may edit the sandbox sets it, so
/// its length is theirs; what the operator keeps of it is bounded.
pub fn wake_request(dsb: &crate::crd::DockerSandbox) -> Option<String> {
    use sha2::Digest;
    let value = dsb.metadata.annotations.as_ref()?.get(crate::crd::WAKE_ANNOTATION)?;
    Some(if value.len() <= MAX_WAKE {
        value.clone()
    } else {
        format!("sha256:{:x}", sha2::Sha256::digest(value.as_bytes()))
    })
}

/// The longest wake annotation status keeps as it is.
const MAX_WAKE: usize = 64;

/// Whether the engine runs now: an expiry with `onExpiry: Delete` first (a suspended sandbox
/// expires too), then `spec.suspend`, then an expiry that suspends, then an idle suspension on
/// record (`suspension`), which lasts until the wake annotation differs from the one recorded.
pub fn decide(lc: &Lifecycle, now: Timestamp, suspension: Option<&Suspension>, wake: Option<&str>) -> Run {
    let expired = lc.expires_at.is_some_and(|at| now >= at);
    if expired && lc.on_expiry == ExpiryAction::Delete {
        return Run::Delete;
    }
    if lc.suspend {
        return Run::Suspend(SuspendCause::Spec);
    }
    if expired {
        return Run::Suspend(SuspendCause::Expiry);
    }
    match suspension {
        Some(s) if s.cause == SuspendCause::Idle && s.wake.as_deref() == wake => Run::Suspend(SuspendCause::Idle),
        _ => Run::Engine,
    }
}

/// Since when a Ready engine (Ready since `ready_since`) is idle: no running container, and the
/// later of its last event and `ready_since`; `None` when it runs a container or was not read. A
/// time ahead of `now` (another clock) counts as now.
pub fn idle_since(engine: Option<&EngineStatus>, ready_since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let e = engine?;
    if e.containers_running > 0 {
        return None;
    }
    let activity = e.last_activity.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    Some(activity.map_or(ready_since, |a| a.max(ready_since)).min(now))
}

/// Whether an engine idle since `since` is due for suspension at `now`.
pub fn idle_due(lc: &Lifecycle, since: Option<Timestamp>, now: Timestamp) -> bool {
    match (lc.idle_after, since) {
        (Some(after), Some(since)) => since.checked_add(after).is_ok_and(|at| at <= now),
        _ => false,
    }
}

/// The Expiring condition of a sandbox that expires: True from the warning on.
pub fn expiring(lc: &Lifecycle, now: Timestamp) -> Option<Cond> {
    let at = lc.expires_at?;
    let then = match lc.on_expiry {
        ExpiryAction::Suspend => "its engine is stopped (the volume stays)",
        ExpiryAction::Delete => "it is deleted",
    };
    Some(if now >= at {
        Cond::ok(conditions::EXPIRING, reason::EXPIRED, format!("the sandbox expired at {at}; {then}"))
    } else if lc.warn_at.is_some_and(|w| now >= w) {
        Cond::ok(
            conditions::EXPIRING,
            reason::EXPIRES_SOON,
            format!(
                "the sandbox expires at {at}; then {then}. A longer spec.lifetime or a later spec.expiresAt delays it"
            ),
        )
    } else {
        Cond::not_ok(conditions::EXPIRING, reason::SCHEDULED, format!("the sandbox expires at {at}; then {then}"))
    })
}

/// Why an engine is stopped, for its conditions: what caused it and what starts it again.
pub fn because(lc: &Lifecycle, cause: SuspendCause, name: &str) -> String {
    match cause {
        SuspendCause::Spec => format!(
            "spec.suspend is true; the volume keeps images, volumes and stopped containers. `kubectl dsb resume {name}` \
             (spec.suspend: false) starts the engine again"
        ),
        SuspendCause::Idle => format!(
            "the engine ran no container and reported no event for {}; the volume keeps its data. A client connecting \
             through `kubectl dsb connect {name}`, or `kubectl dsb resume {name}`, wakes it",
            lc.idle_after.map(|d| format!("{d:#}")).unwrap_or_else(|| "its idle time".into())
        ),
        SuspendCause::Expiry => format!(
            "the sandbox expired at {}; the volume keeps its data. A longer spec.lifetime or a later spec.expiresAt \
             starts the engine again",
            lc.expires_at.map(|t| t.to_string()).unwrap_or_default()
        ),
    }
}

/// How long until the next instant something is due (the warning, the expiry, the idle
/// suspension), when one lies ahead.
pub fn next_due(lc: &Lifecycle, idle_since: Option<Timestamp>, now: Timestamp) -> Option<std::time::Duration> {
    let idle_at = idle_since.zip(lc.idle_after).and_then(|(s, d)| s.checked_add(d).ok());
    [lc.warn_at, lc.expires_at, idle_at]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
        .and_then(|t| std::time::Duration::try_from(t.duration_since(now)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClassExpiry, IdleSpec};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    const CREATED: &str = "2026-12-01T00:00:00Z";

    fn class(max: Option<&str>, default: Option<&str>, idle: Option<&str>) -> ClassFacts {
        let mut c = crate::resources::testing::open_class();
        c.spec.lifecycle.expiry = Some(ClassExpiry {
            default_lifetime: default.map(str::to_string),
            max_lifetime: max.map(str::to_string),
            on_expiry: None,
        });
        c.spec.lifecycle.idle = idle.map(|s| IdleSpec { suspend_after: s.into() });
        c
    }

    fn spec(lifetime: Option<&str>) -> DockerSandboxSpec {
        DockerSandboxSpec { lifetime: lifetime.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn durations_read_in_the_operators_form_only() {
        assert_eq!(parse_duration("90m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("7d"), Some(SignedDuration::from_hours(168)));
        assert_eq!(parse_duration("45s"), Some(SignedDuration::from_secs(45)));
        for bad in ["", "h", "1.5h", "-1h", "1w", "1234567s", "1h30m", "１h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn expiry_comes_from_the_spec_else_the_class_and_never_beyond_its_maximum() {
        let c = class(Some("7d"), Some("1d"), None);
        let lc = resolve(&spec(Some("8h")), t(CREATED), &c).expect("within the maximum");
        assert_eq!(lc.expires_at, Some(t("2026-12-01T08:00:00Z")));
        assert_eq!(lc.warn_at, Some(t("2026-12-01T07:12:00Z")), "at 90% of the lifetime");
        assert_eq!(lc.on_expiry, ExpiryAction::Suspend);
        let lc = resolve(&spec(None), t(CREATED), &c).expect("class default");
        assert_eq!(lc.expires_at, Some(t("2026-12-02T00:00:00Z")));
        let lc = resolve(&spec(None), t(CREATED), &class(Some("30d"), None, None)).expect("the maximum");
        assert_eq!(lc.expires_at, Some(t("2026-12-31T00:00:00Z")));
        assert_eq!(lc.warn_at, Some(t("2026-12-30T00:00:00Z")), "at most a day ahead");
        let lc = resolve(&spec(None), t(CREATED), &class(Some("1d"), Some("3d"), None)).expect("bounded default");
        assert_eq!(lc.expires_at, Some(t("2026-12-02T00:00:00Z")), "a default above the maximum is the maximum");
        let lc = resolve(&spec(None), t(CREATED), &crate::resources::testing::open_class()).expect("no expiry");
        assert_eq!((lc.expires_at, lc.warn_at), (None, None));
    }

    #[test]
    fn a_tenant_value_above_the_class_maximum_is_refused() {
        let c = class(Some("7d"), None, Some("2h"));
        let r = resolve(&spec(Some("8d")), t(CREATED), &c).expect_err("above the maximum");
        assert_eq!(r.reason, "LifecycleNotAllowed");
        assert!(r.spec_error);
        assert!(r.message.contains("spec.lifetime 8d is longer than DockerSandboxClass open allows"), "{}", r.message);
        assert!(r.message.contains("maxLifetime 7d"), "{}", r.message);
        let mut late = spec(None);
        late.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t("2026-12-09T00:00:00Z")));
        let r = resolve(&late, t(CREATED), &c).expect_err("expiresAt above the maximum");
        assert!(r.message.starts_with("spec.expiresAt 2026-12-09T00:00:00Z"), "{}", r.message);
        late.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t("2026-12-08T00:00:00Z")));
        assert_eq!(resolve(&late, t(CREATED), &c).expect("exactly 7d").expires_at, Some(t("2026-12-08T00:00:00Z")));
        let mut lazy = spec(None);
        lazy.idle = Some(IdleSpec { suspend_after: "3h".into() });
        let r = resolve(&lazy, t(CREATED), &c).expect_err("idle above the class's");
        assert!(r.message.contains("spec.idle.suspendAfter 3h is longer"), "{}", r.message);
        lazy.idle = Some(IdleSpec { suspend_after: "30m".into() });
        assert_eq!(resolve(&lazy, t(CREATED), &c).expect("less").idle_after, Some(SignedDuration::from_mins(30)));
    }

    #[test]
    fn a_value_the_policy_cannot_read_is_refused() {
        let c = class(Some("a week"), None, None);
        let r = resolve(&spec(None), t(CREATED), &c).expect_err("unreadable class");
        assert!(!r.spec_error, "the class is fixed, not the spec");
        assert!(r.message.contains("lifecycle.expiry.maxLifetime \"a week\""), "{}", r.message);
        let r = resolve(&spec(Some("8 hours")), t(CREATED), &class(None, None, None)).expect_err("unreadable spec");
        assert!(r.spec_error);
    }

    #[test]
    fn an_ephemeral_engine_is_not_stopped_for_idleness_unless_the_spec_accepts_it() {
        let c = class(None, None, Some("1h"));
        let mut s = spec(None);
        s.storage.kind = StorageType::Ephemeral;
        assert_eq!(resolve(&s, t(CREATED), &c).expect("lc").idle_after, None);
        s.storage.discard_on_suspend = true;
        assert_eq!(resolve(&s, t(CREATED), &c).expect("lc").idle_after, Some(SignedDuration::from_hours(1)));
    }

    fn lc() -> Lifecycle {
        Lifecycle {
            suspend: false,
            expires_at: Some(t("2026-12-02T00:00:00Z")),
            warn_at: Some(t("2026-12-01T21:36:00Z")),
            on_expiry: ExpiryAction::Suspend,
            idle_after: Some(SignedDuration::from_mins(30)),
            stop_grace_seconds: 60,
        }
    }

    fn idle(wake: Option<&str>) -> Suspension {
        Suspension { cause: SuspendCause::Idle, since: CREATED.into(), wake: wake.map(str::to_string) }
    }

    #[test]
    fn expiry_with_delete_then_the_spec_then_expiry_then_an_idle_suspension_decide() {
        let before = t("2026-12-01T12:00:00Z");
        let after = t("2026-12-02T00:00:00Z");
        assert_eq!(decide(&lc(), before, None, None), Run::Engine);
        assert_eq!(decide(&Lifecycle { suspend: true, ..lc() }, before, None, None), Run::Suspend(SuspendCause::Spec));
        assert_eq!(decide(&lc(), after, None, None), Run::Suspend(SuspendCause::Expiry));
        let deleting = Lifecycle { on_expiry: ExpiryAction::Delete, ..lc() };
        assert_eq!(decide(&deleting, after, None, None), Run::Delete);
        // a suspended sandbox is deleted at expiry all the same; one that would only be suspended
        // stays suspended by the tenant's own wish (only a spec change resumes that)
        assert_eq!(decide(&Lifecycle { suspend: true, ..deleting }, after, None, None), Run::Delete);
        assert_eq!(decide(&Lifecycle { suspend: true, ..lc() }, after, None, None), Run::Suspend(SuspendCause::Spec));
        // an expiry moved later starts the engine again
        let extended = Lifecycle { expires_at: Some(t("2026-12-03T00:00:00Z")), ..lc() };
        assert_eq!(decide(&extended, after, None, None), Run::Engine);
    }

    #[test]
    fn an_idle_suspension_lasts_until_a_new_wake_request() {
        let now = t("2026-12-01T12:00:00Z");
        assert_eq!(decide(&lc(), now, Some(&idle(None)), None), Run::Suspend(SuspendCause::Idle));
        assert_eq!(decide(&lc(), now, Some(&idle(Some("a"))), Some("a")), Run::Suspend(SuspendCause::Idle));
        assert_eq!(decide(&lc(), now, Some(&idle(Some("a"))), Some("b")), Run::Engine, "woken");
        assert_eq!(decide(&lc(), now, Some(&idle(None)), Some("a")), Run::Engine, "woken");
        // a wake never lifts spec.suspend
        let spec = Lifecycle { suspend: true, ..lc() };
        assert_eq!(decide(&spec, now, Some(&idle(None)), Some("a")), Run::Suspend(SuspendCause::Spec));
        // a spec suspension on record ends with the spec's
        let was = Suspension { cause: SuspendCause::Spec, ..idle(None) };
        assert_eq!(decide(&lc(), now, Some(&was), None), Run::Engine);
    }

    fn engine(running: i64, activity: Option<&str>) -> EngineStatus {
        EngineStatus {
            containers_running: running,
            last_activity: activity.map(str::to_string),
            observed_at: CREATED.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_wake_request_is_kept_short() {
        let mut dsb = crate::resources::testing::minimal();
        assert_eq!(wake_request(&dsb), None);
        let annotate = |dsb: &mut crate::crd::DockerSandbox, v: String| {
            dsb.metadata.annotations = Some([(crate::crd::WAKE_ANNOTATION.to_string(), v)].into());
        };
        annotate(&mut dsb, "1764930000000-4242".into());
        assert_eq!(wake_request(&dsb).as_deref(), Some("1764930000000-4242"));
        annotate(&mut dsb, "x".repeat(200_000));
        let long = wake_request(&dsb).expect("a digest");
        assert!(long.starts_with("sha256:") && long.len() == 71, "{long}");
        annotate(&mut dsb, "y".repeat(200_000));
        assert_ne!(wake_request(&dsb), Some(long), "another request, another value");
    }

    #[test]
    fn idle_means_no_running_container_and_no_event_since_ready() {
        let ready = t("2026-12-01T10:00:00Z");
        let now = t("2026-12-01T12:00:00Z");
        assert_eq!(idle_since(None, ready, now), None, "not read: not idle");
        assert_eq!(idle_since(Some(&engine(1, None)), ready, now), None, "a running container keeps it up");
        assert_eq!(idle_since(Some(&engine(0, None)), ready, now), Some(ready));
        let e = engine(0, Some("2026-12-01T11:00:00Z"));
        assert_eq!(idle_since(Some(&e), ready, now), Some(t("2026-12-01T11:00:00Z")));
        let old = engine(0, Some("2026-12-01T09:00:00Z"));
        assert_eq!(idle_since(Some(&old), ready, now), Some(ready), "the clock starts again at Ready (a wake)");
        // clock skew: an engine clock ahead of ours counts as now, never as idle for longer
        let ahead = engine(0, Some("2026-12-01T13:00:00Z"));
        assert_eq!(idle_since(Some(&ahead), ready, now), Some(now));
        assert!(!idle_due(&lc(), Some(now), now));
        assert!(!idle_due(&lc(), Some(t("2026-12-01T11:31:00Z")), now));
        assert!(idle_due(&lc(), Some(t("2026-12-01T11:30:00Z")), now));
        assert!(!idle_due(&Lifecycle { idle_after: None, ..lc() }, Some(ready), now));
        assert!(!idle_due(&lc(), None, now));
    }

    #[test]
    fn expiring_warns_ahead_and_says_what_happens() {
        let c = expiring(&lc(), t("2026-12-01T12:00:00Z")).expect("expires");
        assert_eq!((c.ok, c.reason.as_str()), (false, "Scheduled"));
        let c = expiring(&lc(), t("2026-12-01T22:00:00Z")).expect("expires");
        assert_eq!((c.ok, c.reason.as_str()), (true, "ExpiresSoon"));
        assert!(c.message.contains("2026-12-02T00:00:00Z; then its engine is stopped"), "{}", c.message);
        let c = expiring(&lc(), t("2026-12-02T00:00:01Z")).expect("expired");
        assert_eq!(c.reason, "Expired");
        assert_eq!(expiring(&Lifecycle { expires_at: None, ..lc() }, t(CREATED)), None);
    }

    #[test]
    fn the_next_due_instant_is_the_nearest_ahead() {
        let now = t("2026-12-01T12:00:00Z");
        let next = next_due(&lc(), Some(t("2026-12-01T11:50:00Z")), now);
        assert_eq!(next, Some(std::time::Duration::from_secs(20 * 60)), "the idle suspension");
        assert_eq!(next_due(&lc(), None, now), Some(std::time::Duration::from_secs(9 * 3600 + 36 * 60)));
        assert_eq!(next_due(&lc(), None, t("2026-12-03T00:00:00Z")), None);
    }
}
