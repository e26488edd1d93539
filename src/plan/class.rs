//! Pure: what a `DockerSandboxClass` allows, applied to a sandbox's spec. Every refusal names the
//! field, the class and what would be accepted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Placement, Refusal, ServicePlan};
use crate::crd::conditions::reason;
use crate::crd::{ClassIsolation, DaemonSpec, DockerSandboxClassSpec, DockerSandboxSpec, ServiceType, StorageType};

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
        if wanted == default || self.spec.image.allowed.iter().any(|p| pattern_matches(p, wanted)) {
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
    /// engine without a memory limit gets the maximum memory as its limit.
    pub fn resources(&self, wanted: Option<&ResourceRequirements>) -> Result<Option<ResourceRequirements>, Refusal> {
        let mut r = wanted.cloned().or_else(|| self.spec.resources.default.clone());
        let max = &self.spec.resources.max;
        if max.is_empty() {
            return Ok(r);
        }
        let res = r.get_or_insert_with(ResourceRequirements::default);
        for (which, values) in [("limits", &res.limits), ("requests", &res.requests)] {
            for (name, q) in values.iter().flatten() {
                let Some(cap) = max.get(name) else { continue };
                if quantity(&q.0).zip(quantity(&cap.0)).is_some_and(|(v, c)| v > c) {
                    return Err(refuse(
                        reason::RESOURCES_NOT_ALLOWED,
                        format!(
                            "spec.resources.{which}.{name} {} is above the {} that DockerSandboxClass {} allows",
                            q.0, cap.0, self.name
                        ),
                    ));
                }
            }
        }
        if let Some(memory) = max.get("memory") {
            res.limits.get_or_insert_with(BTreeMap::new).entry("memory".into()).or_insert_with(|| memory.clone());
        }
        Ok(r)
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
        if !spec.service.annotations.is_empty() && !s.allow_annotations {
            return Err(refuse(
                reason::SERVICE_NOT_ALLOWED,
                format!(
                    "spec.service.annotations are set, but DockerSandboxClass {} does not allow Service annotations",
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
        if let Some(max) = &st.max_size
            && quantity(size).zip(quantity(&max.0)).is_some_and(|(v, m)| v > m)
        {
            return Err(refuse(
                reason::STORAGE_NOT_ALLOWED,
                format!("spec.storage.size {size} is above the {} that DockerSandboxClass {} allows", max.0, self.name),
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
}

fn merged(first: &[String], then: &[String]) -> Vec<String> {
    let mut out = first.to_vec();
    out.extend(then.iter().filter(|t| !first.contains(t)).cloned());
    out
}

/// Whether `s` matches `pattern`, where `*` matches any run of characters (including none).
pub fn pattern_matches(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A quantity's value (`4Gi`, `500m`, `1.5`, `2e3`), for comparisons; `None` when malformed.
pub fn quantity(q: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let q = q.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v * factor);
        }
    }
    q.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Whether `labels` satisfy a label selector (matchLabels and matchExpressions).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}
