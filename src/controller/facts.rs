//! Step: what the cluster says about where the engine may run: the namespace's PodSecurity level,
//! whether the sysbox RuntimeClass exists, and which container runtime its nodes run.

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::{Api, ResourceExt};

use super::apply::get;
use super::context::Target;
use crate::config::SysboxUserNamespace;
use crate::crd::conditions::reason;
use crate::crd::{DEFAULT_CLASS_ANNOTATION, DockerSandboxClass};
use crate::error::{Error, Result};
use crate::plan::{ClassFacts, Facts, NodeRuntime, Refusal};

/// The PodSecurity label that decides which engine pods a namespace admits.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// What the cluster says.
pub enum Gathered {
    /// The namespace is being deleted: children would only be refused.
    NamespaceGone,
    /// The sandbox's class is missing (or ambiguous): why.
    NoClass(Refusal),
    /// The facts.
    Facts(Box<Facts>),
}

/// Where the facts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The watch caches: no request (a namespace missing from the cache is read live).
    Cache,
    /// The API server: for a decision that stops an engine, which must not rest on a cache that
    /// is behind.
    Live,
}

/// Reads the facts.
pub async fn gather(t: &Target<'_>, source: Source) -> Result<Gathered> {
    let client = &t.ctx.client;
    let caches = &t.ctx.caches;
    let config = &t.ctx.config;
    let ns = &t.names.namespace;
    let cached_ns = caches.get::<PartialObjectMeta<Namespace>>(None, ns).filter(|_| source == Source::Cache);
    let (namespace_labels, deleting) = match cached_ns {
        Some(n) => (n.labels().clone(), n.metadata.deletion_timestamp.is_some()),
        None => match get(&Api::<Namespace>::all(client.clone()), ns).await? {
            Some(n) => (n.labels().clone(), n.metadata.deletion_timestamp.is_some()),
            None => (Default::default(), false),
        },
    };
    if deleting {
        return Ok(Gathered::NamespaceGone);
    }
    let named = t.dsb.spec.class_name.clone().or_else(|| t.dsb.status.as_ref().and_then(|s| s.class_name.clone()));
    let class = match source {
        Source::Cache => {
            let found = named.as_deref().map(|n| caches.get::<DockerSandboxClass>(None, n).map(|c| (*c).clone()));
            let all = if named.is_none() { caches.all::<DockerSandboxClass>() } else { vec![] };
            pick_class(named.as_deref(), found.flatten(), all.iter().map(AsRef::as_ref))
        }
        Source::Live => {
            let api = Api::<DockerSandboxClass>::all(client.clone());
            let found = match named.as_deref() {
                Some(n) => get(&api, n).await?,
                None => None,
            };
            let all = if named.is_none() {
                api.list(&ListParams::default()).await.map_err(Error::kube("list", "DockerSandboxClass", ""))?.items
            } else {
                vec![]
            };
            pick_class(named.as_deref(), found, all.iter())
        }
    };
    let class = match class {
        Ok(class) => class,
        Err(refusal) => return Ok(Gathered::NoClass(refusal)),
    };
    let rc = match source {
        Source::Cache => caches.get::<RuntimeClass>(None, &config.sysbox_runtime_class).map(|r| (*r).clone()),
        Source::Live => get(&Api::<RuntimeClass>::all(client.clone()), &config.sysbox_runtime_class).await?,
    };
    let sysbox_nodes = match &rc {
        Some(rc) if config.sysbox_user_namespace == SysboxUserNamespace::Auto => {
            let nodes = match source {
                Source::Cache => caches.all::<Node>().iter().map(|n| (**n).clone()).collect(),
                Source::Live => {
                    Api::<Node>::all(client.clone())
                        .list(&ListParams::default())
                        .await
                        .map_err(Error::kube("list", "Node", ""))?
                        .items
                }
            };
            Some(nodes_of(rc, &nodes))
        }
        _ => None,
    };
    let pod_security_enforce = namespace_labels.get(POD_SECURITY_ENFORCE).cloned();
    Ok(Gathered::Facts(Box::new(Facts {
        namespace: ns.clone(),
        namespace_labels,
        class,
        sysbox_runtime_class: rc.is_some(),
        pod_security_enforce,
        sysbox_nodes,
    })))
}

/// The sandbox's class: the one it names (`named`, found as `found`), else the one class of `all`
/// marked default.
fn pick_class<'a>(
    named: Option<&str>,
    found: Option<DockerSandboxClass>,
    all: impl Iterator<Item = &'a DockerSandboxClass>,
) -> Result<ClassFacts, Refusal> {
    let missing = |message: String| Refusal { reason: reason::CLASS_NOT_FOUND, message, spec_error: false };
    let class = match (named, found) {
        (Some(_), Some(class)) => class,
        (Some(name), None) => {
            return Err(missing(format!(
                "DockerSandboxClass {name} does not exist (kubectl get dsbclass lists the classes); the engine \
                 keeps its data and continues once the class is back"
            )));
        }
        (None, _) => {
            let mut defaults: Vec<&DockerSandboxClass> = all
                .filter(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true"))
                .collect();
            defaults.sort_by_key(|c| c.name_any());
            match defaults.len() {
                1 => defaults[0].clone(),
                0 => {
                    return Err(missing(format!(
                        "spec.className is empty and no DockerSandboxClass is marked default (annotation \
                         {DEFAULT_CLASS_ANNOTATION}: \"true\"); name a class (kubectl get dsbclass) or ask the platform \
                         team to mark one"
                    )));
                }
                _ => {
                    let names: Vec<String> = defaults.iter().map(|c| c.name_any()).collect();
                    return Err(missing(format!(
                        "spec.className is empty and several DockerSandboxClasses are marked default ({}); name one \
                         in spec.className, or ask the platform team to keep one default",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    Ok(ClassFacts { name: class.name_any(), generation: class.metadata.generation.unwrap_or(0), spec: class.spec })
}

/// The nodes `rc` schedules onto (its `scheduling.nodeSelector`, or every node) and their runtimes.
fn nodes_of(rc: &RuntimeClass, nodes: &[Node]) -> Vec<NodeRuntime> {
    let selector = rc.scheduling.as_ref().and_then(|s| s.node_selector.as_ref());
    let mut picked: Vec<NodeRuntime> = nodes
        .iter()
        .filter(|n| selector.into_iter().flatten().all(|(k, v)| n.labels().get(k) == Some(v)))
        .map(|n| NodeRuntime {
            node: n.name_any(),
            runtime: n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
        })
        .collect();
    picked.sort_by(|a, b| a.node.cmp(&b.node));
    picked
}
