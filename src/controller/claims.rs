//! Claims: a DockerSandbox with `spec.poolRef` runs no engine pod of its own. Its engine is that of
//! another DockerSandbox, which it owns: a ready one taken from the pool (a warm claim), or one
//! started for it from the pool's template when the pool has none ready (a cold start). The
//! claimant has its own Service (its name is the endpoint), whose EndpointSlice names the engine's
//! pod, and its own client certificate of the engine's CA, minted at claim time. The engine's
//! server certificate names every Service of the namespace (`tls::pooled_sans`), so it is valid
//! under the claimant's name; only clients of that engine's own CA trust it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use super::apply::{Child, stamped};
use super::context::{Context, Target};
use super::facts::Source;
use super::publish::publish;
use super::{certs, endpoints, pools, service};
use crate::crd::conditions::{self, reason};
use crate::crd::{
    CLAIMED_BY_LABEL, DockerSandbox, DockerSandboxPool, DockerSandboxSpec, DockerSandboxStatus, FIELD_MANAGER,
    POOL_LABEL, Phase, StartedFrom, TEMPLATE_HASH_LABEL,
};
use crate::error::{Error, Result};
use crate::plan::pool::{self, Member};
use crate::resources::{Names, secret};

/// Annotation on an engine sandbox: how its claimant got it (`Pool` or `Cold`).
pub const STARTED_FROM_ANNOTATION: &str = "dockersandbox.dev/started-from";
/// Annotation on an engine sandbox: the reason and message of its claimant's FromPool condition,
/// as decided when it was claimed or started (`REASON: message`).
pub const FROM_POOL_NOTE_ANNOTATION: &str = "dockersandbox.dev/from-pool-note";

/// How long a claim or start of this process stands for its claimant before the cache shows it
/// (the watch event is on its way; this only bounds one that never comes).
const CLAIM_EXPIRY: Duration = Duration::from_secs(120);

/// Reconciles claimant `t` of pool `pool_ref`.
pub async fn reconcile(t: &Target<'_>, pool_ref: &str) -> Result<Action> {
    let ctx = t.ctx;
    let Some(engine) = engine_sandbox(t, pool_ref).await? else {
        // Claimed or started just now: the cache shows it in a moment (its event wakes this one).
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    let started = match engine.annotations().get(STARTED_FROM_ANNOTATION).map(String::as_str) {
        Some("Pool") => StartedFrom::Pool,
        _ => StartedFrom::Cold,
    };
    // The claimant's own children (Service, client certificate) follow the engine's spec.
    let effective = with_spec(t.dsb, &engine.spec);
    let te = Target::new(&effective, ctx).ok_or_else(|| Error::NoNamespace(t.dsb.name_any()))?;
    let plan = match super::facts::gather(&te, Source::Cache).await? {
        super::facts::Gathered::Facts(facts) => match crate::plan::resolve(&effective, &facts, &ctx.config) {
            Ok(plan) => plan,
            Err(refusal) => return refused(&te, &engine, started, &refusal.message).await,
        },
        super::facts::Gathered::NamespaceGone => return Ok(Action::await_change()),
        super::facts::Gathered::NoClass(refusal) => return refused(&te, &engine, started, &refusal.message).await,
    };
    service::ensure(&te, &plan).await?;
    let engine_names = Names::of(&engine);
    let ca_key = ctx.caches.get::<Secret>(Some(ctx.config.ca_namespace()), &engine_names.ca_key_secret);
    let Some(ca) = ca_key.as_deref().and_then(secret::ca_pem) else {
        let why = format!("the engine (sandbox {}) has no CA yet: it is being made", engine.name_any());
        publish(&te, claimed_status(t.dsb, &engine, started, None, Some(&why))).await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let client_not_after = certs::claimant(&te, &ca, plan.credentials_generation).await?;
    // The claimant's Service reaches the engine's pod (none while it has no address).
    let pod = ctx
        .caches
        .get::<Pod>(Some(&te.names.namespace), &engine_names.pod)
        .filter(|p| p.owner_references().iter().any(|o| Some(&o.uid) == engine.metadata.uid.as_ref()));
    let engine_pod = pod.as_deref().and_then(endpoints::engine_pod);
    let slice = Child::<EndpointSlice>::of(&te, &te.names.service);
    let current = slice.observed()?;
    if current.is_some() || engine_pod.is_some() {
        let mut desired = crate::resources::endpoints::build(&effective, engine_pod.as_ref());
        for e in desired.endpoints.iter_mut().flatten() {
            if let Some(r) = e.target_ref.as_mut() {
                r.name = Some(engine_names.pod.clone());
            }
        }
        slice.ensure(&stamped(&desired), current).await?;
    }
    let waiting = engine_pod.is_none().then(|| format!("the engine pod {} has no address yet", engine_names.pod));
    let status = claimed_status(t.dsb, &engine, started, Some(client_not_after), waiting.as_deref());
    let phase = publish(&te, status).await?;
    if phase == Phase::Ready {
        let key = format!("{}/{}", t.names.namespace, t.dsb.name_any());
        ctx.metrics.claim_ready(started, &key, t.dsb.metadata.creation_timestamp.as_ref().map(|c| c.0));
        ctx.done_waiting(t.dsb);
        // The engine's events wake the claimant; this only bounds a lost one.
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    Ok(Action::requeue(super::reconcile::recheck_after(ctx.still_waiting(t.dsb)).min(Duration::from_secs(5))))
}

async fn refused(te: &Target<'_>, engine: &DockerSandbox, started: StartedFrom, message: &str) -> Result<Action> {
    publish(te, claimed_status(te.dsb, engine, started, None, Some(message))).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// `dsb` with `spec` (the engine's), keeping its `poolRef`.
fn with_spec(dsb: &DockerSandbox, spec: &DockerSandboxSpec) -> DockerSandbox {
    let mut out = dsb.clone();
    out.spec = DockerSandboxSpec { pool_ref: dsb.spec.pool_ref.clone(), ..spec.clone() };
    out
}

/// Every cached sandbox of namespace `ns`.
fn sandboxes_in(ctx: &Context, ns: &str) -> Vec<Arc<DockerSandbox>> {
    let Some((stores, _)) = ctx.stores.get() else { return Vec::new() };
    stores.iter().flat_map(|s| s.state()).filter(|s| s.namespace().as_deref() == Some(ns)).collect()
}

fn pool_of(ctx: &Context, ns: &str, name: &str) -> Option<Arc<DockerSandboxPool>> {
    let (_, pools) = ctx.stores.get()?;
    pools.iter().find_map(|p| p.get(&ObjectRef::new(name).within(ns)))
}

/// The claimant's engine sandbox: the one it owns and that carries its uid; else one claimed from
/// the pool now, else one started for it now. None while one this process claimed or started is
/// not in the cache yet.
async fn engine_sandbox(t: &Target<'_>, pool_ref: &str) -> Result<Option<Arc<DockerSandbox>>> {
    let ctx = t.ctx;
    let uid = t.dsb.uid().unwrap_or_default();
    let ns = t.names.namespace.clone();
    let all = sandboxes_in(ctx, &ns);
    let ours = |s: &DockerSandbox| {
        s.labels().get(CLAIMED_BY_LABEL) == Some(&uid) && s.owner_references().iter().any(|o| o.uid == uid)
    };
    if let Some(found) = all.iter().find(|s| ours(s)) {
        ctx.claims.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
        return Ok(Some(found.clone()));
    }
    {
        // Entries of claimants that went before their engine showed up expire here too.
        let mut claims = ctx.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims.retain(|_, (_, at)| at.elapsed() < CLAIM_EXPIRY);
        if claims.contains_key(&uid) {
            return Ok(None);
        }
    }
    let api: Api<DockerSandbox> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = t.dsb.controller_owner_ref(&()).into_iter().collect::<Vec<_>>();
    let pool = pool_of(ctx, &ns, pool_ref).filter(|p| p.metadata.deletion_timestamp.is_none());
    if let Some(pool) = &pool {
        let hash = pool.status.as_ref().and_then(|s| s.template_hash.clone()).unwrap_or_default();
        let mut members: Vec<(Member, Arc<DockerSandbox>)> = pools::unclaimed(all, pool)
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .map(|s| (pools::member(&s), s))
            .collect();
        // Oldest ready of the current template first; a conflict (someone claimed it at the same
        // moment, or it changed) moves on to the next.
        for _ in 0..3 {
            let listed: Vec<Member> = members.iter().map(|(m, _)| m.clone()).collect();
            let Some(pick) = pool::pick(&hash, &listed).map(|m| m.name.clone()) else { break };
            let Some(at) = members.iter().position(|(m, _)| m.name == pick) else { break };
            let (_, candidate) = members.remove(at);
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": candidate.resource_version(),
                    "labels": { POOL_LABEL: null, CLAIMED_BY_LABEL: uid },
                    "annotations": {
                        STARTED_FROM_ANNOTATION: "Pool",
                        FROM_POOL_NOTE_ANNOTATION: format!("{}: claimed the ready engine {pick} of pool {pool_ref}", reason::CLAIMED),
                    },
                    "ownerReferences": owner,
                }
            });
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
            match api.patch(&pick, &params, &Patch::Merge(&patch)).await {
                Ok(claimed) => {
                    info!(engine = pick, pool = pool_ref, "claimed a ready engine from the pool");
                    ctx.claims.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, (pick, Instant::now()));
                    ctx.metrics.claimed(StartedFrom::Pool);
                    return Ok(Some(Arc::new(claimed)));
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
                Err(e) => return Err(Error::kube("claim", "DockerSandbox", pick)(e)),
            }
        }
    }
    // Cold: an engine started for this claimant, from the pool's template (or, with no pool, from
    // the claimant's own spec).
    let spec = match &pool {
        Some(p) => pools::member_spec(p),
        None => DockerSandboxSpec { pool_ref: None, ..t.dsb.spec.clone() },
    };
    let mut labels = vec![(CLAIMED_BY_LABEL.to_string(), uid.clone())];
    if let Some(h) = pool.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.template_hash.clone()) {
        labels.push((TEMPLATE_HASH_LABEL.to_string(), h));
    }
    let started = [(STARTED_FROM_ANNOTATION.to_string(), "Cold".to_string())];
    let sandbox = pools::new_engine(pool_ref, &ns, labels, started, owner, spec);
    let params = PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.to_string()) };
    let (cold, why) = match &pool {
        Some(_) => (reason::POOL_EMPTY, format!("pool {pool_ref} had no ready engine")),
        None => (reason::POOL_NOT_FOUND, format!("DockerSandboxPool {pool_ref} does not exist")),
    };
    let note = format!("{cold}: {why}: an engine was started for this sandbox");
    let mut sandbox = sandbox;
    sandbox.annotations_mut().insert(FROM_POOL_NOTE_ANNOTATION.to_string(), note);
    let made =
        api.create(&params, &sandbox).await.map_err(Error::kube("create", "DockerSandbox", format!("{pool_ref}-…")))?;
    info!(engine = made.name_any(), pool = pool_ref, "{why}: started an engine for the claimant");
    t.warning(cold, format!("{why}: an engine is started for this sandbox (sandbox {})", made.name_any())).await;
    ctx.claims.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, (made.name_any(), Instant::now()));
    ctx.metrics.claimed(StartedFrom::Cold);
    Ok(Some(Arc::new(made)))
}

/// The claimant's status: its engine's (phase, isolation, class, what is inside), with its own
/// endpoint, client Secret and client certificate expiry, where the engine came from, and Ready
/// only when its own side is in place too (`waiting` says what is not).
pub fn claimed_status(
    claimant: &DockerSandbox,
    engine: &DockerSandbox,
    started: StartedFrom,
    client_not_after: Option<String>,
    waiting: Option<&str>,
) -> DockerSandboxStatus {
    let names = Names::of(claimant);
    let mut s = engine.status.clone().unwrap_or_default();
    s.endpoint = Some(names.endpoint());
    s.client_secret_name = client_not_after.is_some().then(|| names.client_secret.clone());
    s.started_from = Some(started);
    s.claimed_sandbox = Some(engine.name_any());
    s.observed_generation = claimant.metadata.generation;
    if let (Some(c), Some(at)) = (s.certificates.as_mut(), client_not_after) {
        c.client_not_after = at;
    }
    for c in &mut s.conditions {
        c.observed_generation = claimant.metadata.generation;
    }
    // FromPool: how the engine came, as decided at claim time (the engine sandbox keeps it).
    let note = engine.annotations().get(FROM_POOL_NOTE_ANNOTATION).cloned().unwrap_or_default();
    let (why, message) = note.split_once(": ").map_or((reason::CLAIMED, note.as_str()), |(r, m)| (r, m));
    let previous =
        claimant.status.as_ref().and_then(|o| o.conditions.iter().find(|c| c.type_ == conditions::FROM_POOL));
    let status = if started == StartedFrom::Pool { "True" } else { "False" };
    s.conditions.retain(|c| c.type_ != conditions::FROM_POOL);
    s.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: conditions::FROM_POOL.into(),
        status: status.into(),
        reason: why.into(),
        message: message.into(),
        observed_generation: claimant.metadata.generation,
        last_transition_time: previous.filter(|c| c.status == status).map_or_else(
            || k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            |c| c.last_transition_time.clone(),
        ),
    });
    let phase = s.phase.unwrap_or(Phase::Provisioning);
    let from = match started {
        StartedFrom::Pool => "claimed ready from its pool",
        StartedFrom::Cold => "started for this sandbox (its pool had none ready)",
    };
    let ready = s.conditions.iter_mut().find(|c| c.type_ == conditions::READY);
    match (waiting, ready) {
        (Some(why), Some(c)) => {
            if phase == Phase::Ready {
                s.phase = Some(Phase::Provisioning);
                c.status = "False".into();
                c.reason = reason::CLAIMING.into();
            }
            c.message = format!("{why} (engine: sandbox {}, {from})", engine.name_any());
        }
        (None, Some(c)) if phase == Phase::Ready => {
            c.message =
                format!("dockerd answers at {} (engine: sandbox {}, {from})", names.endpoint(), engine.name_any());
        }
        (None, Some(c)) => c.message = format!("{} (engine: sandbox {}, {from})", c.message, engine.name_any()),
        (_, None) => {
            s.phase = Some(Phase::Provisioning);
            let why = waiting.unwrap_or("the engine is starting");
            s.conditions.push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: conditions::READY.into(),
                status: "False".into(),
                reason: reason::CLAIMING.into(),
                message: format!("{why} (engine: sandbox {}, {from})", engine.name_any()),
                observed_generation: claimant.metadata.generation,
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CertificateStatus;
    use crate::resources::testing::minimal;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn engine(phase: Phase) -> DockerSandbox {
        let mut m = minimal();
        m.metadata.name = Some("warm-x1".into());
        let ready = Condition {
            type_: conditions::READY.into(),
            status: if phase == Phase::Ready { "True" } else { "False" }.into(),
            reason: "EngineAnswering".into(),
            message: "dockerd answers at tcp://warm-x1.team-a.svc:2376".into(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        m.status = Some(DockerSandboxStatus {
            phase: Some(phase),
            endpoint: Some("tcp://warm-x1.team-a.svc:2376".into()),
            docker_version: Some("29.0.0".into()),
            certificates: Some(CertificateStatus {
                ca_not_after: "ca".into(),
                server_not_after: "server".into(),
                client_not_after: "operator's".into(),
                generation: 0,
            }),
            conditions: vec![ready],
            ..DockerSandboxStatus::default()
        });
        m
    }

    fn claimant() -> DockerSandbox {
        let mut b = minimal();
        b.metadata.name = Some("job-7".into());
        b.metadata.generation = Some(3);
        b
    }

    #[test]
    fn a_claimant_shows_its_own_endpoint_secret_and_certificate_with_its_engines_state() {
        let s = claimed_status(&claimant(), &engine(Phase::Ready), StartedFrom::Pool, Some("client".into()), None);
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.endpoint.as_deref(), Some("tcp://job-7.team-a.svc:2376"), "its own Service, not the engine's");
        assert_eq!(s.client_secret_name.as_deref(), Some("job-7-client"));
        assert_eq!(s.started_from, Some(StartedFrom::Pool));
        assert_eq!(s.claimed_sandbox.as_deref(), Some("warm-x1"));
        assert_eq!(s.docker_version.as_deref(), Some("29.0.0"));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.certificates.as_ref().map(|c| c.client_not_after.as_str()), Some("client"));
        let ready = s.conditions.iter().find(|c| c.type_ == conditions::READY).expect("Ready");
        assert!(
            ready.message.contains("tcp://job-7.team-a.svc:2376") && ready.message.contains("warm-x1"),
            "{ready:?}"
        );
        assert_eq!(ready.observed_generation, Some(3));
        let from = s.conditions.iter().find(|c| c.type_ == conditions::FROM_POOL).expect("FromPool");
        assert_eq!((from.status.as_str(), from.reason.as_str()), ("True", reason::CLAIMED));
    }

    #[test]
    fn a_cold_claimant_says_why_in_its_from_pool_condition() {
        let mut e = engine(Phase::Provisioning);
        e.annotations_mut().insert(
            FROM_POOL_NOTE_ANNOTATION.into(),
            "PoolEmpty: pool warm had no ready engine: an engine was started for this sandbox".into(),
        );
        let s = claimed_status(&claimant(), &e, StartedFrom::Cold, None, None);
        let from = s.conditions.iter().find(|c| c.type_ == conditions::FROM_POOL).expect("FromPool");
        assert_eq!((from.status.as_str(), from.reason.as_str()), ("False", reason::POOL_EMPTY));
        assert_eq!(from.message, "pool warm had no ready engine: an engine was started for this sandbox");
    }

    #[test]
    fn a_claimant_is_not_ready_before_its_own_side_is() {
        let why = "the engine pod warm-x1-engine has no address yet";
        let s = claimed_status(&claimant(), &engine(Phase::Ready), StartedFrom::Cold, None, Some(why));
        assert_eq!(s.phase, Some(Phase::Provisioning));
        assert_eq!(s.client_secret_name, None, "no client Secret is named before it exists");
        let ready = s.conditions.iter().find(|c| c.type_ == conditions::READY).expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason::CLAIMING));
        assert!(ready.message.starts_with(why) && ready.message.contains("its pool had none ready"), "{ready:?}");
        // An engine without any status yet: Provisioning, with a Ready condition that says why.
        let mut bare = engine(Phase::Provisioning);
        bare.status = None;
        let s = claimed_status(&claimant(), &bare, StartedFrom::Pool, None, None);
        assert_eq!(s.phase, Some(Phase::Provisioning));
        assert_eq!(s.conditions.len(), 2, "FromPool and Ready");
    }

    #[test]
    fn a_claimant_takes_its_engines_spec_and_keeps_its_pool_ref() {
        let mut b = claimant();
        b.spec.pool_ref = Some("warm".into());
        let mut spec = DockerSandboxSpec { image: Some("docker:29-dind".into()), ..DockerSandboxSpec::default() };
        spec.class_name = Some("standard".into());
        let e = with_spec(&b, &spec);
        assert_eq!(e.spec.image.as_deref(), Some("docker:29-dind"));
        assert_eq!(e.spec.pool_ref.as_deref(), Some("warm"));
        assert_eq!(e.metadata.name.as_deref(), Some("job-7"), "the claimant's identity");
    }
}
