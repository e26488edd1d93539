//! Pure builders: one desired object per child kind, from a sandbox and its plan.

pub mod activator;
pub mod daemon_json;
pub mod endpoints;
pub mod network_policy;
pub mod pod;
pub mod pvc;
pub mod secret;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::DockerSandbox;

/// Port dockerd serves TLS on.
pub const DOCKER_TLS_PORT: i32 = 2376;
/// Name of that port on the pod and the Service.
pub const DOCKER_TLS_PORT_NAME: &str = "docker-tls";
/// Value of `app.kubernetes.io/managed-by` on every child; the operator watches children by it.
pub const MANAGED_BY: &str = "dockersandbox-operator";
/// Label selector matching every child of every sandbox.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=dockersandbox-operator";

/// Names of a sandbox's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The sandbox's namespace.
    pub namespace: String,
    /// Service (also the host name in the endpoint).
    pub service: String,
    /// Engine pod.
    pub pod: String,
    /// PVC for /var/lib/docker.
    pub pvc: String,
    /// Public CA secret: the CA certificate alone, in the sandbox's namespace.
    pub ca_secret: String,
    /// CA key secret, in the operator's namespace: `ca-NAMESPACE-UID`.
    pub ca_key_secret: String,
    /// Server certificate secret (mounted in the pod).
    pub server_secret: String,
    /// Client certificate secret (for the tenant).
    pub client_secret: String,
}

impl Names {
    /// Children names of `dsb`.
    pub fn of(dsb: &DockerSandbox) -> Self {
        let n = dsb.name_any();
        Self {
            namespace: dsb.namespace().unwrap_or_default(),
            service: n.clone(),
            pod: format!("{n}-engine"),
            pvc: format!("{n}-docker"),
            ca_secret: format!("{n}-ca"),
            ca_key_secret: format!("ca-{}-{}", dsb.namespace().unwrap_or_default(), dsb.uid().unwrap_or_default()),
            server_secret: format!("{n}-server"),
            client_secret: format!("{n}-client"),
        }
    }

    /// The pod that runs the engine: the sandbox's own, or for a claimant (`spec.poolRef`) that of
    /// the sandbox whose engine it claimed.
    pub fn engine_pod(dsb: &DockerSandbox) -> String {
        match dsb.status.as_ref().and_then(|s| s.claimed_sandbox.as_deref()) {
            Some(engine) if dsb.spec.pool_ref.is_some() => format!("{engine}-engine"),
            _ => Self::of(dsb).pod,
        }
    }

    /// The DOCKER_HOST clients in the cluster use.
    pub fn endpoint(&self) -> String {
        format!("tcp://{}.{}.svc:{DOCKER_TLS_PORT}", self.service, self.namespace)
    }

    /// The name the operator verifies the server certificate against.
    pub fn server_name(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

/// The label keys on every child, one constant each.
pub mod label {
    /// `app.kubernetes.io/name`: always `dockersandbox`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the sandbox's name (a Retain claim is mapped back by it).
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`: engine, tls, storage, network.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/part-of`: always `dockersandbox`.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// `app.kubernetes.io/managed-by`: `MANAGED_BY`; the watches select children by it.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
}

/// Standard `app.kubernetes.io/*` labels for a child of `dsb`.
pub fn labels(dsb: &DockerSandbox, component: &str) -> BTreeMap<String, String> {
    [
        (label::NAME, "dockersandbox".to_string()),
        (label::INSTANCE, dsb.name_any()),
        (label::COMPONENT, component.to_string()),
        (label::PART_OF, "dockersandbox".to_string()),
        (label::MANAGED_BY, MANAGED_BY.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Labels that select the engine pod of `dsb` (used by the Service).
pub fn selector(dsb: &DockerSandbox) -> BTreeMap<String, String> {
    let mut l = labels(dsb, "engine");
    l.retain(|k, _| [label::INSTANCE, label::COMPONENT, label::NAME].contains(&k.as_str()));
    l
}

/// The controller owner reference pointing at `dsb`.
pub fn owner(dsb: &DockerSandbox) -> Vec<OwnerReference> {
    dsb.controller_owner_ref(&()).into_iter().collect()
}

/// Metadata of a child: name, namespace, labels, and the owner reference when `owned`.
pub fn meta(dsb: &DockerSandbox, name: &str, component: &str, owned: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: dsb.namespace(),
        labels: Some(labels(dsb, component)),
        owner_references: owned.then(|| owner(dsb)),
        ..ObjectMeta::default()
    }
}

/// Whether an object found under one of `dsb`'s child names is this sandbox's to manage: it names
/// `dsb` as its controller owner, or (`adoptable`, a Retain volume left by an earlier sandbox of the
/// same name) it has no owner and carries the labels of this sandbox's children. Otherwise, why not.
pub fn claim(dsb: &DockerSandbox, meta: &ObjectMeta, adoptable: bool) -> Result<(), String> {
    let uid = dsb.metadata.uid.as_deref().unwrap_or_default();
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    if owners.iter().any(|o| o.uid == uid && o.kind == DockerSandbox::kind(&())) {
        return Ok(());
    }
    if let Some(o) = owners.iter().find(|o| o.controller == Some(true)).or(owners.first()) {
        if o.kind == DockerSandbox::kind(&()) && o.name == dsb.name_any() {
            return Err("it belongs to an earlier DockerSandbox of the same name and goes away with it".into());
        }
        return Err(format!("it belongs to {} {}", o.kind, o.name));
    }
    let labels = meta.labels.clone().unwrap_or_default();
    let ours = labels.get(label::MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(label::INSTANCE) == Some(&dsb.name_any());
    if adoptable && ours {
        return Ok(());
    }
    Err("it was not created for this sandbox (it has no owner reference to it)".into())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Sandbox fixtures for builder tests.
    use crate::crd::DockerSandbox;

    /// Parses a sandbox from YAML and gives it the identity the API server would.
    pub fn sandbox(yaml: &str) -> DockerSandbox {
        let mut dsb: DockerSandbox = serde_saphyr::from_str(yaml).expect("fixture parses");
        dsb.metadata.namespace.get_or_insert_with(|| "team-a".into());
        dsb.metadata.uid = Some("0000-1111".into());
        dsb.metadata.generation = Some(1);
        dsb
    }

    /// A class that allows everything a sandbox can ask for (both isolation modes, any image,
    /// tenant placement, every Service type and annotations).
    pub fn open_class() -> crate::plan::ClassFacts {
        use crate::crd::{ClassIsolation, ServiceType};
        let mut spec = crate::crd::DockerSandboxClassSpec {
            isolation: vec![ClassIsolation::Sysbox, ClassIsolation::Privileged],
            ..Default::default()
        };
        spec.image.allowed = vec!["*".into()];
        spec.placement.allow_tenant_placement = true;
        spec.service.allowed_types = vec![ServiceType::ClusterIP, ServiceType::NodePort, ServiceType::LoadBalancer];
        spec.service.allow_annotations = true;
        crate::plan::ClassFacts { name: "open".into(), generation: 1, spec }
    }

    /// Facts of a cluster without sysbox whose namespace opted in to privileged engines, with `open_class`.
    pub fn privileged_ok() -> crate::plan::Facts {
        crate::plan::Facts {
            pod_security_enforce: Some("privileged".into()),
            class: open_class(),
            ..Default::default()
        }
    }

    /// The plan for `dsb` with the operator's defaults, on a cluster without sysbox.
    pub fn plan(dsb: &DockerSandbox) -> crate::plan::Plan {
        let facts = privileged_ok();
        crate::plan::resolve(dsb, &facts, &crate::config::Config::for_tests()).expect("plan")
    }

    /// A minimal sandbox named `web` in `team-a`.
    pub fn minimal() -> DockerSandbox {
        sandbox("apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: web}\nspec: {}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::minimal;

    fn child(owner_uid: Option<&str>, labelled: bool) -> ObjectMeta {
        let dsb = minimal();
        let mut meta = meta(&dsb, "web-ca", "tls", owner_uid.is_some());
        if let (Some(uid), Some(refs)) = (owner_uid, meta.owner_references.as_mut()) {
            refs[0].uid = uid.into();
        }
        if !labelled {
            meta.labels = None;
        }
        meta
    }

    #[test]
    fn the_watch_selector_is_the_managed_by_label() {
        assert_eq!(MANAGED_SELECTOR, format!("{}={MANAGED_BY}", label::MANAGED_BY));
    }

    #[test]
    fn children_of_this_sandbox_are_claimed_even_without_labels() {
        assert_eq!(claim(&minimal(), &child(Some("0000-1111"), true), false), Ok(()));
        assert_eq!(claim(&minimal(), &child(Some("0000-1111"), false), false), Ok(()), "labels removed by hand");
    }

    #[test]
    fn a_planted_object_is_not_claimed() {
        let why = claim(&minimal(), &child(None, false), false).expect_err("foreign");
        assert!(why.contains("no owner reference"), "{why}");
        let why = claim(&minimal(), &child(None, true), false).expect_err("labels alone are not enough");
        assert!(why.contains("no owner reference"), "{why}");
    }

    #[test]
    fn a_retained_volume_with_our_labels_is_adopted() {
        assert_eq!(claim(&minimal(), &child(None, true), true), Ok(()));
        assert!(claim(&minimal(), &child(None, false), true).is_err(), "unlabelled: someone else's volume");
    }

    #[test]
    fn objects_of_other_owners_say_whose_they_are() {
        let mut meta = child(None, true);
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "other".into(),
            uid: "x".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert_eq!(claim(&minimal(), &meta, true), Err("it belongs to ReplicaSet other".into()));
        let earlier = child(Some("an-older-uid"), true);
        let why = claim(&minimal(), &earlier, false).expect_err("earlier sandbox");
        assert!(why.contains("earlier DockerSandbox of the same name"), "{why}");
    }
}
