//! Step: what the cluster says about where the engine may run: the namespace's PodSecurity level,
//! whether the sysbox RuntimeClass exists, and which container runtime its nodes run.

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cache::Caches;

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

/// Where facts are read from: the watch caches or the API server. One `gather` reads either.
trait View {
    /// The namespace's labels and whether it is being deleted; `None` when it does not exist.
    async fn namespace(&self, name: &str) -> Result<Option<(BTreeMap<String, String>, bool)>>;
    /// The class `name`.
    async fn class(&self, name: &str) -> Result<Option<DockerSandboxClass>>;
    /// Every class (to find the default).
    async fn classes(&self) -> Result<Vec<DockerSandboxClass>>;
    /// The RuntimeClass `name`.
    async fn runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>>;
    /// Every node (for the runtime of the RuntimeClass's nodes).
    async fn nodes(&self) -> Result<Vec<Node>>;
}

/// The watch caches (no request; a namespace the cache does not hold is read live).
struct FromCache<'a>(&'a Caches, &'a Client);

/// The API server.
struct FromApi<'a>(&'a Client);

fn namespace_facts(meta: &ObjectMeta) -> (BTreeMap<String, String>, bool) {
    (meta.labels.clone().unwrap_or_default(), meta.deletion_timestamp.is_some())
}

impl View for FromCache<'_> {
    async fn namespace(&self, name: &str) -> Result<Option<(BTreeMap<String, String>, bool)>> {
        match self.0.get::<PartialObjectMeta<Namespace>>(None, name) {
            Some(n) => Ok(Some(namespace_facts(&n.metadata))),
            None => FromApi(self.1).namespace(name).await,
        }
    }

    async fn class(&self, name: &str) -> Result<Option<DockerSandboxClass>> {
        Ok(self.0.get::<DockerSandboxClass>(None, name).map(|c| (*c).clone()))
    }

    async fn classes(&self) -> Result<Vec<DockerSandboxClass>> {
        Ok(self.0.all::<DockerSandboxClass>().iter().map(|c| (**c).clone()).collect())
    }

    async fn runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>> {
        Ok(self.0.get::<RuntimeClass>(None, name).map(|r| (*r).clone()))
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        Ok(self.0.all::<Node>().iter().map(|n| (**n).clone()).collect())
    }
}

impl View for FromApi<'_> {
    async fn namespace(&self, name: &str) -> Result<Option<(BTreeMap<String, String>, bool)>> {
        Ok(get(&Api::<Namespace>::all(self.0.clone()), name).await?.map(|n| namespace_facts(&n.metadata)))
    }

    async fn class(&self, name: &str) -> Result<Option<DockerSandboxClass>> {
        get(&Api::all(self.0.clone()), name).await
    }

    async fn classes(&self) -> Result<Vec<DockerSandboxClass>> {
        let api = Api::<DockerSandboxClass>::all(self.0.clone());
        Ok(api.list(&ListParams::default()).await.map_err(Error::kube("list", "DockerSandboxClass", ""))?.items)
    }

    async fn runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>> {
        get(&Api::all(self.0.clone()), name).await
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        let api = Api::<Node>::all(self.0.clone());
        Ok(api.list(&ListParams::default()).await.map_err(Error::kube("list", "Node", ""))?.items)
    }
}

/// Reads the facts from `source`.
pub async fn gather(t: &Target<'_>, source: Source) -> Result<Gathered> {
    match source {
        Source::Cache => gather_from(t, &FromCache(&t.ctx.caches, &t.ctx.client)).await,
        Source::Live => gather_from(t, &FromApi(&t.ctx.client)).await,
    }
}

async fn gather_from(t: &Target<'_>, view: &impl View) -> Result<Gathered> {
    let config = &t.ctx.config;
    let ns = &t.names.namespace;
    let (namespace_labels, deleting) = view.namespace(ns).await?.unwrap_or_default();
    if deleting {
        return Ok(Gathered::NamespaceGone);
    }
    let named = t.dsb.spec.class_name.clone().or_else(|| t.dsb.status.as_ref().and_then(|s| s.class_name.clone()));
    let (found, all) = match named.as_deref() {
        Some(n) => (view.class(n).await?, vec![]),
        None => (None, view.classes().await?),
    };
    let class = match pick_class(named.as_deref(), found, all.iter()) {
        Ok(class) => class,
        Err(refusal) => return Ok(Gathered::NoClass(refusal)),
    };
    let rc = view.runtime_class(&config.sysbox_runtime_class).await?;
    let sysbox_nodes = match &rc {
        Some(rc) if config.sysbox_user_namespace == SysboxUserNamespace::Auto => {
            Some(nodes_of(rc, &view.nodes().await?))
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
pub(crate) fn pick_class<'a>(
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
