//! Step: what the cluster says about where the engine may run: the namespace's PodSecurity level,
//! whether the sysbox RuntimeClass exists, and which container runtime its nodes run.

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::ListParams;
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

/// Reads the facts.
pub async fn gather(t: &Target<'_>) -> Result<Gathered> {
    let client = &t.ctx.client;
    let config = &t.ctx.config;
    let namespace = get(&Api::<Namespace>::all(client.clone()), &t.names.namespace).await?;
    if namespace.as_ref().is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
        return Ok(Gathered::NamespaceGone);
    }
    let class = match class_of(t).await? {
        Ok(class) => class,
        Err(refusal) => return Ok(Gathered::NoClass(refusal)),
    };
    let rc = get(&Api::<RuntimeClass>::all(client.clone()), &config.sysbox_runtime_class).await?;
    let sysbox_nodes = match &rc {
        Some(rc) if config.sysbox_user_namespace == SysboxUserNamespace::Auto => Some(nodes_of(t, rc).await?),
        _ => None,
    };
    let namespace_labels = namespace.map(|n| n.labels().clone()).unwrap_or_default();
    let pod_security_enforce = namespace_labels.get(POD_SECURITY_ENFORCE).cloned();
    Ok(Gathered::Facts(Box::new(Facts {
        namespace: t.names.namespace.clone(),
        namespace_labels,
        class,
        sysbox_runtime_class: rc.is_some(),
        pod_security_enforce,
        sysbox_nodes,
    })))
}

/// The sandbox's class: the one it names, else the one it resolved to before, else the default.
async fn class_of(t: &Target<'_>) -> Result<Result<ClassFacts, Refusal>> {
    let api = Api::<DockerSandboxClass>::all(t.ctx.client.clone());
    let named = t.dsb.spec.class_name.clone().or_else(|| t.dsb.status.as_ref().and_then(|s| s.class_name.clone()));
    let missing = |message: String| Refusal { reason: reason::CLASS_NOT_FOUND, message, spec_error: false };
    let class = match named {
        Some(name) => match get(&api, &name).await? {
            Some(class) => class,
            None => {
                return Ok(Err(missing(format!(
                    "DockerSandboxClass {name} does not exist (kubectl get dsbclass lists the classes); the engine \
                     keeps its data and continues once the class is back"
                ))));
            }
        },
        None => {
            let all = api.list(&ListParams::default()).await.map_err(Error::kube("list", "DockerSandboxClass", ""))?;
            let mut defaults: Vec<DockerSandboxClass> = all
                .items
                .into_iter()
                .filter(|c| c.annotations().get(DEFAULT_CLASS_ANNOTATION).map(String::as_str) == Some("true"))
                .collect();
            match defaults.len() {
                1 => defaults.remove(0),
                0 => {
                    return Ok(Err(missing(format!(
                        "spec.className is empty and no DockerSandboxClass is marked default (annotation \
                         {DEFAULT_CLASS_ANNOTATION}: \"true\"); name a class (kubectl get dsbclass) or ask the platform \
                         team to mark one"
                    ))));
                }
                _ => {
                    let names: Vec<String> = defaults.iter().map(ResourceExt::name_any).collect();
                    return Ok(Err(missing(format!(
                        "spec.className is empty and several DockerSandboxClasses are marked default ({}); name one \
                         in spec.className, or ask the platform team to keep one default",
                        names.join(", ")
                    ))));
                }
            }
        }
    };
    Ok(Ok(ClassFacts { name: class.name_any(), generation: class.metadata.generation.unwrap_or(0), spec: class.spec }))
}

/// The nodes `rc` schedules onto (its `scheduling.nodeSelector`, or every node) and their runtimes.
async fn nodes_of(t: &Target<'_>, rc: &RuntimeClass) -> Result<Vec<NodeRuntime>> {
    let selector = rc.scheduling.as_ref().and_then(|s| s.node_selector.as_ref());
    let labels: Vec<String> = selector.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    let nodes = Api::<Node>::all(t.ctx.client.clone())
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .map_err(Error::kube("list", "Node", labels.join(",")))?;
    Ok(nodes
        .items
        .iter()
        .map(|n| NodeRuntime {
            node: n.name_any(),
            runtime: n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
        })
        .collect())
}
