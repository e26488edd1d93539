//! The pool controller: keeps each DockerSandboxPool's ready engines as `plan::pool` decides
//! (start, replace, scale), from the sandbox controller's cache of sandboxes, and publishes the
//! pool's status. A pooled engine is an ordinary DockerSandbox owned by its pool; the sandbox
//! controller runs it. A claim (`claim`) takes one out of the pool: the pool sees one fewer and
//! starts another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::context::Context;
use crate::crd::conditions;
use crate::crd::{
    CLAIMED_BY_LABEL, DockerSandbox, DockerSandboxClass, DockerSandboxPool, DockerSandboxPoolStatus, FIELD_MANAGER,
    FROM_POOL_ANNOTATION, POOL_LABEL, Phase, TEMPLATE_HASH_LABEL,
};
use crate::error::{Error, Result};
use crate::plan::pool::{self, Member};
use crate::resources::label;

/// How long a create or delete of this process counts before the cache shows it (the watch event
/// is on its way; this only bounds an event that never comes).
const EXPECTATION_EXPIRY: Duration = Duration::from_secs(300);

/// What the pool controller shares between reconciles.
pub struct Pools {
    ctx: Arc<Context>,
    sandboxes: Store<DockerSandbox>,
    pools: Store<DockerSandboxPool>,
    /// Per pool uid: sandboxes this process created or deleted that the cache does not show yet.
    expected: Mutex<HashMap<String, Expected>>,
}

#[derive(Default)]
struct Expected {
    created: Vec<(String, Instant)>,
    deleted: Vec<(String, Instant)>,
}

/// The pool controller for `scope`, with the sandbox controller's store: its store of pools (for
/// claims) and the future that runs it until `shutdown`. `woken` names the pools whose sandboxes
/// changed (a phase, a claim), sent once the sandbox store shows the change (`pool_of`): a pool
/// never counts its engines from a store that is behind the event that woke it.
pub fn controller(
    ctx: Arc<Context>,
    scope: Option<&str>,
    sandboxes: Store<DockerSandbox>,
    woken: futures::channel::mpsc::UnboundedReceiver<ObjectRef<DockerSandboxPool>>,
    shutdown: CancellationToken,
) -> (Store<DockerSandboxPool>, BoxFuture<'static, ()>) {
    let pools_api = super::api::<DockerSandboxPool>(&ctx.client, scope);
    let controller = Controller::new(pools_api, watcher::Config::default());
    let pools = controller.store();
    let state = Arc::new(Pools { ctx, sandboxes, pools: pools.clone(), expected: Mutex::new(HashMap::new()) });
    let run = controller
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|res| {
            if let Err(e) = res {
                debug!(error = %e, "pool controller");
            }
            futures::future::ready(())
        });
    (pools, run.boxed())
}

fn error_policy(_pool: Arc<DockerSandboxPool>, _error: &Error, _state: Arc<Pools>) -> Action {
    Action::requeue(Duration::from_secs(10))
}

/// The pool a sandbox came from (its annotation stays after a claim), to wake it.
pub fn pool_of(sandbox: &DockerSandbox) -> Option<ObjectRef<DockerSandboxPool>> {
    let pool = sandbox.annotations().get(FROM_POOL_ANNOTATION)?;
    Some(ObjectRef::new(pool).within(&sandbox.namespace()?))
}

/// The pool's unclaimed sandboxes, as `plan::pool` members, with what this process created and
/// the cache does not show yet (starting) and without what it deleted.
fn members(state: &Pools, pool: &DockerSandboxPool, hash: &str) -> Vec<Member> {
    let uid = pool.uid().unwrap_or_default();
    let ours = unclaimed(state.sandboxes.state(), pool);
    let now = Instant::now();
    let mut expected = state.expected.lock().unwrap_or_else(|e| e.into_inner());
    let e = expected.entry(uid).or_default();
    let seen: Vec<String> = ours.iter().map(|s| s.name_any()).collect();
    e.created.retain(|(n, at)| !seen.contains(n) && now.duration_since(*at) < EXPECTATION_EXPIRY);
    e.deleted.retain(|(n, at)| seen.contains(n) && now.duration_since(*at) < EXPECTATION_EXPIRY);
    let mut out: Vec<Member> = ours
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none() && !e.deleted.iter().any(|(n, _)| *n == s.name_any()))
        .map(|s| member(s))
        .collect();
    out.extend(e.created.iter().map(|(n, _)| Member {
        name: n.clone(),
        hash: hash.to_string(),
        ready: false,
        created: jiff::Timestamp::now().as_second(),
        waiting: None,
    }));
    out
}

/// The unclaimed sandboxes of `pool` among `sandboxes`: in its namespace, labelled with it and
/// owned by it (a label alone, which anyone may set, makes no sandbox a pool's).
pub(super) fn unclaimed(sandboxes: Vec<Arc<DockerSandbox>>, pool: &DockerSandboxPool) -> Vec<Arc<DockerSandbox>> {
    let (ns, name, uid) = (pool.namespace(), pool.name_any(), pool.uid().unwrap_or_default());
    sandboxes
        .into_iter()
        .filter(|s| s.namespace() == ns)
        .filter(|s| s.labels().get(POOL_LABEL) == Some(&name) && !s.labels().contains_key(CLAIMED_BY_LABEL))
        .filter(|s| s.owner_references().iter().any(|o| o.uid == uid))
        .collect()
}

/// A new engine sandbox of pool `pool` in `ns` (named `POOL-xxxxx`, annotated with the pool, labelled
/// as the operator's and with `labels`, annotated with `annotations`), owned by `owner`, running `spec`.
pub(super) fn new_engine(
    pool: &str,
    ns: &str,
    labels: impl IntoIterator<Item = (String, String)>,
    annotations: impl IntoIterator<Item = (String, String)>,
    owner: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    spec: crate::crd::DockerSandboxSpec,
) -> DockerSandbox {
    let mut all_labels: std::collections::BTreeMap<String, String> = labels.into_iter().collect();
    all_labels.insert(label::MANAGED_BY.to_string(), crate::resources::MANAGED_BY.to_string());
    let mut all_annotations: std::collections::BTreeMap<String, String> = annotations.into_iter().collect();
    all_annotations.insert(FROM_POOL_ANNOTATION.to_string(), pool.to_string());
    DockerSandbox {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pool}-")),
            namespace: Some(ns.to_string()),
            labels: Some(all_labels),
            annotations: Some(all_annotations),
            owner_references: Some(owner),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// A pooled sandbox as a `plan::pool` member.
pub(super) fn member(s: &DockerSandbox) -> Member {
    let status = s.status.as_ref();
    let phase = status.and_then(|st| st.phase);
    let ready = phase == Some(Phase::Ready);
    let waiting = (!ready).then(|| {
        let c = status.and_then(|st| st.conditions.iter().find(|c| c.type_ == conditions::READY));
        (
            phase.unwrap_or(Phase::Provisioning),
            c.map(|c| c.reason.clone()).unwrap_or_default(),
            c.map(|c| c.message.clone()).unwrap_or_default(),
        )
    });
    Member {
        name: s.name_any(),
        hash: s.labels().get(TEMPLATE_HASH_LABEL).cloned().unwrap_or_default(),
        ready,
        created: s.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
        waiting,
    }
}

/// How many sandboxes of the namespace were claimed from `pool` and still exist.
fn claimed(state: &Pools, pool: &DockerSandboxPool) -> i64 {
    let (ns, name) = (pool.namespace(), pool.name_any());
    let from = |s: &DockerSandbox| s.annotations().get(FROM_POOL_ANNOTATION) == Some(&name);
    state
        .sandboxes
        .state()
        .iter()
        .filter(|s| s.namespace() == ns && from(s) && s.labels().contains_key(CLAIMED_BY_LABEL))
        .count() as i64
}

/// The spec of the pool's sandboxes: the template with the pool's class.
pub fn member_spec(pool: &DockerSandboxPool) -> crate::crd::DockerSandboxSpec {
    let mut spec = pool.spec.template.spec.clone();
    spec.class_name = pool.spec.class_name.clone();
    spec.pool_ref = None;
    spec
}

/// The replicas each pool of `class` in `namespace` may keep under the class's cap: oldest pool
/// first; returns this pool's, and why it is less than asked, if it is. A pool without a className
/// is of the default class (`default`, if there is one).
fn allowance(
    state: &Pools,
    pool: &DockerSandboxPool,
    class: &str,
    default: Option<&str>,
    cap: Option<i32>,
) -> (i32, Option<String>) {
    let ns = pool.namespace();
    let pools: Vec<Arc<DockerSandboxPool>> = state
        .pools
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns && p.metadata.deletion_timestamp.is_none())
        .collect();
    share(&pools, pool, class, default, cap)
}

/// `allowance` over `pools` (the namespace's).
fn share(
    pools: &[Arc<DockerSandboxPool>],
    pool: &DockerSandboxPool,
    class: &str,
    default: Option<&str>,
    cap: Option<i32>,
) -> (i32, Option<String>) {
    let class_of = |p: &DockerSandboxPool| p.spec.class_name.clone().or_else(|| default.map(str::to_string));
    let mut same: Vec<&Arc<DockerSandboxPool>> =
        pools.iter().filter(|p| class_of(p).as_deref() == Some(class)).collect();
    same.sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any()));
    let mut others = 0;
    for p in same {
        if p.name_any() == pool.name_any() {
            break;
        }
        others += pool::capped(p.spec.replicas, cap, others).0;
    }
    pool::capped(pool.spec.replicas, cap, others)
}

async fn reconcile(pool: Arc<DockerSandboxPool>, state: Arc<Pools>) -> Result<Action> {
    let ctx = &state.ctx;
    ctx.caches.synced().await;
    if pool.metadata.deletion_timestamp.is_some() {
        // Its unclaimed sandboxes go with it (owner references); claimed ones are the claimants'.
        state.expected.lock().unwrap_or_else(|e| e.into_inner()).remove(&pool.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let (ns, name) = (pool.namespace().unwrap_or_default(), pool.name_any());
    let classes: Vec<DockerSandboxClass> =
        ctx.caches.all::<DockerSandboxClass>().iter().map(|c| (**c).clone()).collect();
    let named = pool.spec.class_name.as_deref();
    let found = named.and_then(|n| classes.iter().find(|c| c.name_any() == n).cloned());
    let class = match super::facts::pick_class(named, found, classes.iter()) {
        Ok(class) => class,
        Err(refusal) => {
            let members = members(&state, &pool, "");
            let claimed = claimed(&state, &pool);
            let problem = Some((refusal.reason.to_string(), refusal.message));
            let status = status_of(&pool, "", &members, claimed, None, problem);
            publish(&state, &pool, status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let spec = member_spec(&pool);
    let hash = pool::template_hash(&spec, class.generation);
    let cap = class.spec.pools.as_ref().and_then(|p| p.max_ready_per_namespace);
    let default = super::facts::pick_class(None, None, classes.iter()).ok().map(|c| c.name);
    let (replicas, capped) = allowance(&state, &pool, &class.name, default.as_deref(), cap);
    let members = members(&state, &pool, &hash);
    let steps = pool::steps(replicas, pool.spec.max_surge, &hash, &members);
    let api: Api<DockerSandbox> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = pool.uid().unwrap_or_default();
    let mut problem = None;
    for _ in 0..steps.create {
        let labels = [(POOL_LABEL.to_string(), name.clone()), (TEMPLATE_HASH_LABEL.to_string(), hash.clone())];
        let owner = pool.controller_owner_ref(&()).into_iter().collect();
        let sandbox = new_engine(&name, &ns, labels, [], owner, spec.clone());
        let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_string()) };
        match api.create(&params, &sandbox).await {
            Ok(made) => {
                info!(pool = name, sandbox = made.name_any(), "started a pooled engine");
                let mut expected = state.expected.lock().unwrap_or_else(|e| e.into_inner());
                expected.entry(uid.clone()).or_default().created.push((made.name_any(), Instant::now()));
            }
            Err(e) => {
                // Quota, admission, policy: the pool says so and tries again later.
                let message = Error::kube("create", "DockerSandbox", format!("{name}-…"))(e).to_string();
                warn!(pool = name, error = message, "could not start a pooled engine");
                problem = Some(("CreateFailed".to_string(), message));
                break;
            }
        }
    }
    for victim in &steps.delete {
        // Only the sandbox the decision was about: not one made under the same name since.
        let uid_of = state.sandboxes.get(&ObjectRef::new(victim).within(&ns)).and_then(|s| s.uid());
        let preconditions = uid_of.map(|uid| Preconditions { uid: Some(uid), resource_version: None });
        let params = DeleteParams { preconditions, ..DeleteParams::default() };
        match api.delete(victim, &params).await {
            Ok(_) => {
                info!(pool = name, sandbox = victim, "deleted a pooled engine (rollout or scale-down)");
                let mut expected = state.expected.lock().unwrap_or_else(|e| e.into_inner());
                expected.entry(uid.clone()).or_default().deleted.push((victim.clone(), Instant::now()));
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(Error::kube("delete", "DockerSandbox", victim)(e)),
        }
    }
    let members = self::members(&state, &pool, &hash);
    let claimed = claimed(&state, &pool);
    let problem = problem.or_else(|| pool::refill_problem(&hash, &members));
    if let Some((why, message)) = &problem {
        event(&state, &pool, EventType::Warning, why, message.clone()).await;
    }
    let status = status_of(&pool, &hash, &members, claimed, capped.as_deref().map(|c| (replicas, c)), problem);
    publish(&state, &pool, status).await?;
    // Its sandboxes' changes wake it; the fallback only bounds a lost event.
    Ok(Action::requeue(Duration::from_secs(if steps.create > 0 || !steps.delete.is_empty() { 30 } else { 300 })))
}

/// The pool's status from its members now.
fn status_of(
    pool: &DockerSandboxPool,
    hash: &str,
    members: &[Member],
    claimed: i64,
    capped: Option<(i32, &str)>,
    problem: Option<(String, String)>,
) -> DockerSandboxPoolStatus {
    let (ready, creating, updated) = pool::counts(hash, members);
    let replicas = capped.map_or(pool.spec.replicas, |(n, _)| n);
    let old = pool.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let generation = pool.metadata.generation;
    let condition = |type_: &str, ok: bool, why: &str, message: String| {
        let status = if ok { "True" } else { "False" }.to_string();
        let before = old.conditions.iter().find(|c| c.type_ == type_);
        Condition {
            type_: type_.to_string(),
            last_transition_time: before
                .filter(|c| c.status == status)
                .map_or(now.clone(), |c| c.last_transition_time.clone()),
            status,
            reason: why.to_string(),
            message,
            observed_generation: generation,
        }
    };
    let full = ready >= replicas;
    let mut ready_message = format!("{ready} of {replicas} engines ready, {creating} starting");
    if let Some((_, why)) = capped {
        ready_message = format!("{ready_message}; {why}");
    }
    let ready_condition = condition(conditions::READY, full, if full { "Full" } else { "Refilling" }, ready_message);
    let refilling = match &problem {
        Some((why, message)) => condition("Refilling", false, why, message.clone()),
        None => condition("Refilling", true, "Refilling", "new engines start when claims take ready ones".into()),
    };
    DockerSandboxPoolStatus {
        ready,
        creating,
        updated_ready: updated,
        claimed,
        template_hash: (!hash.is_empty()).then(|| hash.to_string()).or(old.template_hash),
        selector: Some(format!("{POOL_LABEL}={}", pool.name_any())),
        observed_generation: generation,
        conditions: vec![ready_condition, refilling],
    }
}

async fn publish(state: &Pools, pool: &DockerSandboxPool, status: DockerSandboxPoolStatus) -> Result<()> {
    if pool.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<DockerSandboxPool> = Api::namespaced(state.ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": DockerSandboxPool::api_version(&()),
        "kind": DockerSandboxPool::kind(&()),
        "status": status,
    });
    api.patch_status(&pool.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube("patch status of", "DockerSandboxPool", pool.name_any()))?;
    Ok(())
}

async fn event(state: &Pools, pool: &DockerSandboxPool, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: reason.to_string(), secondary: None };
    if let Err(e) = state.ctx.recorder.publish(&event, &pool.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, class: Option<&str>, replicas: i32, created: i64) -> Arc<DockerSandboxPool> {
        let mut p = DockerSandboxPool::new(name, crate::crd::DockerSandboxPoolSpec::default());
        p.metadata.namespace = Some("team-a".into());
        p.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(created).expect("time")));
        p.spec.class_name = class.map(str::to_string);
        p.spec.replicas = replicas;
        Arc::new(p)
    }

    #[test]
    fn the_class_cap_is_shared_by_the_pools_of_that_class_oldest_first() {
        let pools = [
            pool("old", Some("standard"), 3, 1),
            pool("defaulted", None, 4, 2),
            pool("other-class", Some("trusted"), 9, 3),
            pool("new", Some("standard"), 5, 4),
        ];
        // "defaulted" names no class: it is of the default class, here "standard".
        let (n, why) = share(&pools, &pools[3], "standard", Some("standard"), Some(10));
        assert_eq!(n, 3, "10 - 3 (old) - 4 (defaulted); the other class's pool does not count");
        assert!(why.is_some());
        assert_eq!(share(&pools, &pools[0], "standard", Some("standard"), Some(10)), (3, None), "the oldest first");
        // With another default class, "defaulted" is not of "standard".
        assert_eq!(share(&pools, &pools[3], "standard", Some("trusted"), Some(10)), (5, None));
        assert_eq!(share(&pools, &pools[3], "standard", None, None), (5, None), "no cap");
    }
}
