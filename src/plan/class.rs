//! Pure: what a `DockerSandboxClass` allows, applied to a sandbox's spec. Every refusal names the
//! field, the class and what would be accepted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{DEFAULT_EGRESS_DENY, NetworkPlan, Placement, Refusal, ServicePlan, image};
use crate::crd::conditions::reason;
use crate::crd::{ClassIsolation, DaemonSpec, DockerSandboxClassSpec, DockerSandboxSpec, ServiceType, StorageType};
use crate::quantity;

/// The class a sandbox uses, as read from the cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassFacts {
    /// Its name.
    pub name: String,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// What it allows.
    pub spec: DockerSandboxClassSpec,
}

fn refuse(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message, spec_error: true }
}

/// The memory an engine requests when the class's maximum is its limit and nothing asked for more
/// (an idle dockerd uses well under it).
pub const DEFAULT_MEMORY_REQUEST: &str = "256Mi";

impl ClassFacts {
    /// Isolation modes in preference order (default: sysbox only).
    pub fn isolation(&self) -> Vec<ClassIsolation> {
        if self.spec.isolation.is_empty() { vec![ClassIsolation::Sysbox] } else { self.spec.isolation.clone() }
    }

    /// Whether sandboxes in a namespace with `labels` may use the class.
    pub fn admits_namespace(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
        match &self.spec.namespace_selector {
            Some(sel) if !selector_matches(sel, labels) => Err(refuse(
                reason::CLASS_NOT_ALLOWED,
                format!(
                    "DockerSandboxClass {} does not serve namespace {namespace} (its namespaceSelector does not match \
                     the namespace's labels); name another class in spec.className or ask the platform team",
                    self.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The engine image: the sandbox's when the class allows it, else the class's default.
    pub fn image(&self, wanted: Option<&str>, operator_default: &str) -> Result<String, Refusal> {
        let default = self.spec.image.default.clone().unwrap_or_else(|| operator_default.to_string());
        let Some(wanted) = wanted else { return Ok(default) };
        if wanted == default || self.spec.image.allowed.iter().any(|p| image::matches(p, wanted)) {
            return Ok(wanted.to_string());
        }
        let allowed = if self.spec.image.allowed.is_empty() {
            format!("only its default image {default}")
        } else {
            format!("{default} or images matching {}", self.spec.image.allowed.join(", "))
        };
        Err(refuse(
            reason::IMAGE_NOT_ALLOWED,
            format!("spec.image {wanted} is not allowed by DockerSandboxClass {}: it allows {allowed}", self.name),
        ))
    }

    /// Engine resources: the sandbox's or the class's default, within the class's maximum; an
    /// engine without a memory limit gets the maximum memory as its limit. A sandbox may name `cpu`
    /// and `memory`, and any other resource only where the class's `max` lists it; a quantity the
    /// parser cannot read is refused, never compared as if it were small.
    pub fn resources(&self, wanted: Option<&ResourceRequirements>) -> Result<Option<ResourceRequirements>, Refusal> {
        if let Some(w) = wanted {
            self.check_tenant_resources(w)?;
        }
        let mut r = wanted.cloned().or_else(|| self.spec.resources.default.clone());
        if let Some(memory) = self.spec.resources.max.get("memory") {
            let res = r.get_or_insert_with(ResourceRequirements::default);
            let limits = res.limits.get_or_insert_with(BTreeMap::new);
            if !limits.contains_key("memory") {
                limits.insert("memory".into(), memory.clone());
                // Without a request Kubernetes would take the limit as the request: every engine
                // would reserve the class's maximum. A small documented request instead.
                let small = match (quantity::parse(&memory.0), quantity::parse(DEFAULT_MEMORY_REQUEST)) {
                    (Some(max), Some(default)) if max < default => memory.clone(),
                    _ => k8s_openapi::apimachinery::pkg::api::resource::Quantity(DEFAULT_MEMORY_REQUEST.into()),
                };
                res.requests.get_or_insert_with(BTreeMap::new).entry("memory".into()).or_insert(small);
            }
        }
        Ok(r)
    }

    fn check_tenant_resources(&self, wanted: &ResourceRequirements) -> Result<(), Refusal> {
        let max = &self.spec.resources.max;
        let not_allowed = |m: String| Err(refuse(reason::RESOURCES_NOT_ALLOWED, m));
        if wanted.claims.as_ref().is_some_and(|c| !c.is_empty()) {
            return not_allowed("spec.resources.claims is set, but engines cannot use dynamic resource claims".into());
        }
        for (which, values) in [("limits", &wanted.limits), ("requests", &wanted.requests)] {
            for (name, q) in values.iter().flatten() {
                let field = format!("spec.resources.{which}.{name}");
                let cap = max.get(name);
                if cap.is_none() && !matches!(name.as_str(), "cpu" | "memory") {
                    let listed = if max.is_empty() { "none".to_string() } else { keys(max) };
                    return not_allowed(format!(
                        "{field} is set, but DockerSandboxClass {} does not list {name} in resources.max (engines \
                         may use cpu, memory and what the class lists: {listed})",
                        self.name
                    ));
                }
                let Some(value) = quantity::parse(&q.0).filter(|v| !v.is_negative()) else {
                    return not_allowed(format!("{field} {:?} is not a quantity such as 2Gi or 500m", q.0));
                };
                let Some(cap) = cap else { continue };
                let Some(limit) = quantity::parse(&cap.0) else {
                    return not_allowed(format!(
                        "DockerSandboxClass {} caps {name} at {:?}, which is not a quantity; ask the platform team to fix \
                         the class",
                        self.name, cap.0
                    ));
                };
                if value > limit {
                    return not_allowed(format!(
                        "{field} {} is above the {} that DockerSandboxClass {} allows",
                        q.0, cap.0, self.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Placement: the class's, plus the sandbox's where the class lets tenants choose.
    pub fn placement(&self, spec: &DockerSandboxSpec) -> Result<Placement, Refusal> {
        let p = &self.spec.placement;
        let tenant = [
            ("nodeSelector", !spec.node_selector.is_empty()),
            ("tolerations", !spec.tolerations.is_empty()),
            ("affinity", spec.affinity.is_some()),
        ];
        if let Some((field, _)) = tenant.iter().find(|(_, set)| *set).filter(|_| !p.allow_tenant_placement) {
            return Err(refuse(
                reason::PLACEMENT_NOT_ALLOWED,
                format!(
                    "spec.{field} is set, but DockerSandboxClass {} places engines itself (placement.allowTenantPlacement \
                     is false); remove it or use a class that lets tenants choose",
                    self.name
                ),
            ));
        }
        let mut node_selector = spec.node_selector.clone();
        node_selector.extend(p.node_selector.clone());
        let mut tolerations = p.tolerations.clone();
        tolerations.extend(spec.tolerations.iter().cloned());
        Ok(Placement {
            node_selector,
            tolerations,
            affinity: p.affinity.clone().or_else(|| spec.affinity.clone()),
            priority_class_name: p.priority_class_name.clone(),
        })
    }

    /// The Service: a type and annotations the class allows.
    pub fn service(&self, spec: &DockerSandboxSpec) -> Result<ServicePlan, Refusal> {
        let s = &self.spec.service;
        let allowed = if s.allowed_types.is_empty() { vec![ServiceType::ClusterIP] } else { s.allowed_types.clone() };
        if !allowed.contains(&spec.service.kind) {
            return Err(refuse(
                reason::SERVICE_NOT_ALLOWED,
                format!(
                    "spec.service.type {:?} is not allowed by DockerSandboxClass {}: it allows {allowed:?}",
                    spec.service.kind, self.name
                ),
            ));
        }
        let key_allowed = |key: &str| {
            s.allow_annotations
                || s.allowed_annotations.iter().any(|a| match a.strip_suffix('*') {
                    Some(prefix) => key.starts_with(prefix),
                    None => key == a,
                })
        };
        if let Some(key) = spec.service.annotations.keys().find(|k| !key_allowed(k)) {
            let allowed = if s.allowed_annotations.is_empty() {
                "no Service annotations".to_string()
            } else {
                format!("only {}", s.allowed_annotations.join(", "))
            };
            return Err(refuse(
                reason::SERVICE_NOT_ALLOWED,
                format!(
                    "spec.service.annotations.{key} is not allowed by DockerSandboxClass {}: it allows {allowed}",
                    self.name
                ),
            ));
        }
        Ok(ServicePlan {
            kind: spec.service.kind,
            annotations: spec.service.annotations.clone(),
            extra_sans: spec.service.extra_sans.clone(),
        })
    }

    /// The StorageClass to use (the class's, when it sets one), after checking type and size.
    pub fn storage(&self, spec: &DockerSandboxSpec, size: &str) -> Result<Option<String>, Refusal> {
        let st = &self.spec.storage;
        if !st.allowed_types.is_empty() && !st.allowed_types.contains(&spec.storage.kind) {
            return Err(refuse(
                reason::STORAGE_NOT_ALLOWED,
                format!(
                    "spec.storage.type {:?} is not allowed by DockerSandboxClass {}: it allows {:?}",
                    spec.storage.kind, self.name, st.allowed_types
                ),
            ));
        }
        let ephemeral = spec.storage.kind == StorageType::Ephemeral;
        let cap =
            if ephemeral { st.max_ephemeral_size.as_ref().or(st.max_size.as_ref()) } else { st.max_size.as_ref() };
        if let Some(max) = cap
            && quantity::parse(&max.0).is_none_or(|m| quantity::parse(size).is_none_or(|v| v > m))
        {
            let which = if ephemeral { "an Ephemeral engine" } else { "a volume" };
            return Err(refuse(
                reason::STORAGE_NOT_ALLOWED,
                format!(
                    "spec.storage.size {size} is above the {} that DockerSandboxClass {} allows for {which}",
                    max.0, self.name
                ),
            ));
        }
        match (&st.storage_class_name, &spec.storage.storage_class_name) {
            (Some(ours), Some(theirs)) if ours != theirs => Err(refuse(
                reason::STORAGE_NOT_ALLOWED,
                format!(
                    "spec.storage.storageClassName {theirs} is not allowed by DockerSandboxClass {}: its volumes use {ours}",
                    self.name
                ),
            )),
            (Some(ours), _) if spec.storage.kind == StorageType::Persistent => Ok(Some(ours.clone())),
            _ => Ok(spec.storage.storage_class_name.clone()),
        }
    }

    /// dockerd settings: the class's registries first, then the sandbox's where allowed.
    pub fn daemon(&self, spec: &DaemonSpec) -> Result<DaemonSpec, Refusal> {
        let d = &self.spec.daemon;
        let tenant_adds = !spec.registry_mirrors.is_empty() || !spec.insecure_registries.is_empty();
        if tenant_adds && !d.allow_tenant_registries {
            return Err(refuse(
                reason::REGISTRY_NOT_ALLOWED,
                format!(
                    "spec.daemon.registryMirrors and insecureRegistries are set, but DockerSandboxClass {} does not let \
                     sandboxes add registries (daemon.allowTenantRegistries is false)",
                    self.name
                ),
            ));
        }
        let mut out = spec.clone();
        out.registry_mirrors = merged(&d.registry_mirrors, &spec.registry_mirrors);
        out.insecure_registries = merged(&d.insecure_registries, &spec.insecure_registries);
        Ok(out)
    }

    /// The engine's NetworkPolicy: the class's peers, then the sandbox's where allowed; egress as
    /// the class says (by default everything but link-local).
    pub fn network(&self, spec: &DockerSandboxSpec) -> Result<NetworkPlan, Refusal> {
        let n = &self.spec.network;
        if !spec.network.allow_from.is_empty() && !n.allow_tenant_peers {
            return Err(refuse(
                reason::NETWORK_NOT_ALLOWED,
                format!(
                    "spec.network.allowFrom is set, but DockerSandboxClass {} does not let sandboxes open port 2376 \
                     to more clients (network.allowTenantPeers is false); remove allowFrom or ask the platform team",
                    self.name
                ),
            ));
        }
        let mut allow_from = n.allow_from.clone();
        allow_from.extend(spec.network.allow_from.iter().filter(|p| !n.allow_from.contains(p)).cloned());
        let deny = n.egress.deny.clone().unwrap_or_else(|| DEFAULT_EGRESS_DENY.map(String::from).to_vec());
        Ok(NetworkPlan {
            allow_from,
            operator_namespace: None,
            egress_deny: deny,
            egress_allow: n.egress.allow.clone(),
            allow_dns: n.egress.allow_dns,
        })
    }
}

fn merged(first: &[String], then: &[String]) -> Vec<String> {
    let mut out = first.to_vec();
    out.extend(then.iter().filter(|t| !first.contains(t)).cloned());
    out
}

fn keys<V>(map: &BTreeMap<String, V>) -> String {
    map.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Whether `labels` satisfy a label selector (matchLabels and matchExpressions).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    // kube-core's selector; one it cannot read (an unknown operator) matches nothing: refused,
    // never waved through.
    use kube::core::SelectorExt;
    kube::core::Selector::try_from(sel.clone()).is_ok_and(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Toleration;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;
    use crate::crd::{DockerSandboxClassSpec, ServiceSpec};
    use crate::resources::testing::minimal;

    fn class(spec: DockerSandboxClassSpec) -> ClassFacts {
        ClassFacts { name: "strict".into(), generation: 2, spec }
    }

    fn strict() -> ClassFacts {
        class(DockerSandboxClassSpec::default())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn limits(pairs: &[(&str, &str)]) -> ResourceRequirements {
        ResourceRequirements {
            limits: Some(pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()),
            ..ResourceRequirements::default()
        }
    }

    #[test]
    fn unreadable_quantities_and_unlisted_resources_are_refused() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.resources.max = [("memory".to_string(), Quantity("2Gi".into()))].into();
        let c = class(spec);
        let r = c.resources(Some(&limits(&[("memory", "64000000000000000u")]))).expect_err("64 GB in micro-units");
        assert_eq!(
            r.message,
            "spec.resources.limits.memory 64000000000000000u is above the 2Gi that DockerSandboxClass strict allows"
        );
        let r = c.resources(Some(&limits(&[("memory", "2Gx")]))).expect_err("unreadable");
        assert_eq!(r.message, "spec.resources.limits.memory \"2Gx\" is not a quantity such as 2Gi or 500m");
        let r = c.resources(Some(&limits(&[("cpu", "-1")]))).expect_err("negative");
        assert!(r.message.contains("is not a quantity"), "{}", r.message);
        for name in ["nvidia.com/gpu", "hugepages-2Mi", "ephemeral-storage"] {
            let r = c.resources(Some(&limits(&[(name, "1")]))).expect_err(name);
            assert_eq!(r.reason, "ResourcesNotAllowed");
            assert_eq!(
                r.message,
                format!(
                    "spec.resources.limits.{name} is set, but DockerSandboxClass strict does not list {name} in \
                     resources.max (engines may use cpu, memory and what the class lists: memory)"
                )
            );
        }
        assert!(c.resources(Some(&limits(&[("memory", "2147483648"), ("cpu", "500m")]))).is_ok(), "exactly the cap");
        let mut spec = DockerSandboxClassSpec::default();
        spec.resources.max = [("nvidia.com/gpu".to_string(), Quantity("1".into()))].into();
        let gpu = class(spec);
        assert!(gpu.resources(Some(&limits(&[("nvidia.com/gpu", "1")]))).is_ok(), "a class that lists it allows it");
        assert!(gpu.resources(Some(&limits(&[("nvidia.com/gpu", "2")]))).is_err());
        let claims = ResourceRequirements {
            claims: Some(vec![k8s_openapi::api::core::v1::ResourceClaim { name: "gpu".into(), request: None }]),
            ..ResourceRequirements::default()
        };
        assert!(gpu.resources(Some(&claims)).is_err(), "no dynamic resource claims");
    }

    #[test]
    fn a_storage_size_the_class_cannot_compare_is_refused() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.storage.max_size = Some(Quantity("10Gi".into()));
        let c = class(spec);
        let dsb = minimal();
        assert!(c.storage(&dsb.spec, "10Gi").is_ok());
        assert!(c.storage(&dsb.spec, "10000000000000000u").is_ok(), "10 GB in micro-units is below 10Gi");
        assert!(c.storage(&dsb.spec, "11000000000000000u").is_err(), "11 GB is above it");
        assert!(c.storage(&dsb.spec, "10Gx").is_err(), "unreadable");
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("tier", "gold")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert!(selector_matches(&sel, &labels(&[("tier", "gold"), ("team", "a")])));
        assert!(!selector_matches(&sel, &labels(&[("tier", "gold"), ("team", "c")])));
        assert!(!selector_matches(&sel, &labels(&[("team", "a")])));
        let absent = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "quarantine".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&absent, &labels(&[])));
        assert!(!selector_matches(&absent, &labels(&[("quarantine", "yes")])));
        let unreadable = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "Maybe".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&unreadable, &labels(&[("team", "a")])), "an unknown operator refuses");
    }

    #[test]
    fn namespaces_outside_the_selector_are_refused() {
        let spec = DockerSandboxClassSpec {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("team", "other")])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = class(spec);
        assert!(c.admits_namespace("team-a", &labels(&[("team", "other")])).is_ok());
        let r = c.admits_namespace("team-a", &labels(&[])).expect_err("refused");
        assert_eq!(r.reason, "ClassNotAllowed");
        assert!(r.message.starts_with("DockerSandboxClass strict does not serve namespace team-a"), "{}", r.message);
        assert!(strict().admits_namespace("any", &labels(&[])).is_ok(), "no selector: every namespace");
    }

    #[test]
    fn a_strict_class_allows_only_sysbox_and_its_default_image() {
        assert_eq!(strict().isolation(), vec![ClassIsolation::Sysbox]);
        assert_eq!(strict().image(None, "docker:28.5.2-dind"), Ok("docker:28.5.2-dind".into()));
        assert_eq!(strict().image(Some("docker:28.5.2-dind"), "docker:28.5.2-dind"), Ok("docker:28.5.2-dind".into()));
        let r = strict().image(Some("busybox:1.36"), "docker:28.5.2-dind").expect_err("refused");
        assert_eq!(r.reason, "ImageNotAllowed");
        assert_eq!(
            r.message,
            "spec.image busybox:1.36 is not allowed by DockerSandboxClass strict: it allows only its default image docker:28.5.2-dind"
        );
    }

    #[test]
    fn allowed_image_patterns_are_named_in_the_refusal() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.image.default = Some("docker:28-dind".into());
        spec.image.allowed = vec!["docker:*-dind".into()];
        let c = class(spec);
        assert_eq!(c.image(None, "ignored"), Ok("docker:28-dind".into()), "the class default wins over the operator's");
        assert_eq!(c.image(Some("docker:27.1-dind"), "ignored"), Ok("docker:27.1-dind".into()));
        let r = c.image(Some("evil/dind:1"), "ignored").expect_err("refused");
        assert!(r.message.ends_with("it allows docker:28-dind or images matching docker:*-dind"), "{}", r.message);
    }

    #[test]
    fn resources_default_and_cap_and_every_engine_gets_a_memory_limit() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.resources.default = Some(limits(&[("cpu", "1")]));
        spec.resources.max =
            [("memory".to_string(), Quantity("8Gi".into())), ("cpu".to_string(), Quantity("4".into()))].into();
        let c = class(spec);
        let r = c.resources(None).expect("default").expect("some");
        let requests = r.requests.clone().expect("requests");
        assert_eq!(requests["memory"].0, "256Mi", "a small request, not the maximum");
        let l = r.limits.expect("limits");
        assert_eq!((l["cpu"].0.as_str(), l["memory"].0.as_str()), ("1", "8Gi"), "memory limit from max");
        let own = c.resources(Some(&limits(&[("memory", "2Gi")]))).expect("ok").expect("some");
        assert_eq!(own.limits.expect("limits")["memory"].0, "2Gi", "the tenant's own limit is kept");
        let r = c.resources(Some(&limits(&[("memory", "32Gi")]))).expect_err("too much");
        assert_eq!(r.reason, "ResourcesNotAllowed");
        assert_eq!(
            r.message,
            "spec.resources.limits.memory 32Gi is above the 8Gi that DockerSandboxClass strict allows"
        );
        assert_eq!(strict().resources(None), Ok(None), "no default, no max: nothing set");
    }

    #[test]
    fn tenant_placement_only_where_the_class_allows_it() {
        let mut dsb = minimal();
        dsb.spec.tolerations = vec![Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }];
        let r = strict().placement(&dsb.spec).expect_err("refused");
        assert_eq!(r.reason, "PlacementNotAllowed");
        assert!(r.message.starts_with("spec.tolerations is set, but DockerSandboxClass strict places engines itself"));
        let mut spec = DockerSandboxClassSpec::default();
        spec.placement.allow_tenant_placement = true;
        spec.placement.node_selector = labels(&[("pool", "dind")]);
        spec.placement.priority_class_name = Some("sandboxes".into());
        dsb.spec.node_selector = labels(&[("pool", "other"), ("zone", "a")]);
        let p = class(spec).placement(&dsb.spec).expect("allowed");
        assert_eq!(p.node_selector, labels(&[("pool", "dind"), ("zone", "a")]), "the class's labels win");
        assert_eq!(p.tolerations.len(), 1);
        assert_eq!(p.priority_class_name.as_deref(), Some("sandboxes"));
    }

    #[test]
    fn service_types_and_annotations_follow_the_class() {
        let mut dsb = minimal();
        assert!(strict().service(&dsb.spec).is_ok(), "ClusterIP is always allowed by default");
        dsb.spec.service = ServiceSpec { kind: ServiceType::LoadBalancer, ..ServiceSpec::default() };
        let r = strict().service(&dsb.spec).expect_err("refused");
        assert_eq!(r.reason, "ServiceNotAllowed");
        assert!(r.message.contains("LoadBalancer") && r.message.contains("[ClusterIP]"), "{}", r.message);
        dsb.spec.service = ServiceSpec { annotations: labels(&[("a", "b")]), ..ServiceSpec::default() };
        let r = strict().service(&dsb.spec).expect_err("refused");
        assert_eq!(
            r.message,
            "spec.service.annotations.a is not allowed by DockerSandboxClass strict: it allows no Service annotations"
        );
        let mut spec = DockerSandboxClassSpec::default();
        spec.service.allowed_annotations = vec!["external-dns.alpha.kubernetes.io/*".into(), "lb/internal".into()];
        let c = class(spec);
        dsb.spec.service.annotations =
            labels(&[("external-dns.alpha.kubernetes.io/hostname", "x"), ("lb/internal", "1")]);
        assert!(c.service(&dsb.spec).is_ok(), "keys and prefixes the class lists");
        dsb.spec.service.annotations = labels(&[("lb/internal", "1"), ("service.kubernetes.io/topology-mode", "auto")]);
        let r = c.service(&dsb.spec).expect_err("an unlisted key");
        assert_eq!(
            r.message,
            "spec.service.annotations.service.kubernetes.io/topology-mode is not allowed by DockerSandboxClass strict: \
             it allows only external-dns.alpha.kubernetes.io/*, lb/internal"
        );
    }

    #[test]
    fn storage_type_size_and_class_follow_the_class() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.storage.storage_class_name = Some("fast".into());
        spec.storage.max_size = Some(Quantity("100Gi".into()));
        spec.storage.allowed_types = vec![StorageType::Persistent];
        let c = class(spec);
        let mut dsb = minimal();
        assert_eq!(c.storage(&dsb.spec, "20Gi"), Ok(Some("fast".into())), "the class's StorageClass");
        let r = c.storage(&dsb.spec, "200Gi").expect_err("too big");
        assert_eq!(
            r.message,
            "spec.storage.size 200Gi is above the 100Gi that DockerSandboxClass strict allows for a volume"
        );
        dsb.spec.storage.storage_class_name = Some("slow".into());
        let r = c.storage(&dsb.spec, "20Gi").expect_err("other class");
        assert_eq!(r.reason, "StorageNotAllowed");
        dsb.spec.storage.storage_class_name = None;
        dsb.spec.storage.kind = StorageType::Ephemeral;
        assert!(c.storage(&dsb.spec, "20Gi").expect_err("type").message.contains("Ephemeral"));
    }

    #[test]
    fn class_registries_come_first_and_tenant_ones_only_where_allowed() {
        let mut spec = DockerSandboxClassSpec::default();
        spec.daemon.registry_mirrors = vec!["https://mirror.corp".into()];
        let tenant = DaemonSpec {
            registry_mirrors: vec!["https://mine.example".into(), "https://mirror.corp".into()],
            ..DaemonSpec::default()
        };
        let d = class(spec.clone()).daemon(&tenant).expect("allowed by default");
        assert_eq!(d.registry_mirrors, ["https://mirror.corp", "https://mine.example"]);
        spec.daemon.allow_tenant_registries = false;
        let r = class(spec.clone()).daemon(&tenant).expect_err("refused");
        assert_eq!(r.reason, "RegistryNotAllowed");
        assert_eq!(class(spec).daemon(&DaemonSpec::default()).expect("ok").registry_mirrors, ["https://mirror.corp"]);
    }
}
