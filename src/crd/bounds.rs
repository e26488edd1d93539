//! Every field a tenant writes has a bound: the generated schemas get a `maxLength` on each string,
//! `maxItems` on each list, `maxProperties` on each map and a range on each integer that the type
//! does not bound itself (most of them come from Kubernetes' own types: affinity, tolerations,
//! selectors). Without them one object can hold values that the API server stores but the operator
//! cannot read (an affinity `weight` of 2^40 before Kubernetes 1.36), or strings large enough to
//! make CEL rules and the operator's caches expensive.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// Longest string, where the type sets no limit of its own.
pub const MAX_STRING: i64 = 1024;
/// Most list items, where the type sets no limit of its own.
pub const MAX_ITEMS: i64 = 64;
/// Most map entries, where the type sets no limit of its own.
pub const MAX_PROPERTIES: i64 = 64;
/// Integers without a format: the range a JSON number holds exactly.
const SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `crd` with bounds on every field of its `spec` (status is written by the operator alone).
pub fn bounded(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|p| p.get_mut("spec"));
        if let Some(spec) = spec {
            bound("spec", spec);
        }
    }
    crd
}

fn bound(name: &str, s: &mut JSONSchemaProps) {
    match s.type_.as_deref() {
        Some("string") if s.max_length.is_none() && s.enum_.is_none() => s.max_length = Some(MAX_STRING),
        Some("integer") => {
            let (min, max) = match (name, s.format.as_deref()) {
                // Kubernetes' scheduler takes weights of 1 to 100.
                ("weight", _) => (1.0, 100.0),
                (_, Some("int32")) => (f64::from(i32::MIN), f64::from(i32::MAX)),
                _ => (-SAFE_INTEGER, SAFE_INTEGER),
            };
            s.minimum.get_or_insert(min);
            s.maximum.get_or_insert(max);
        }
        Some("array") => {
            s.max_items.get_or_insert(MAX_ITEMS);
        }
        _ => {}
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = s.items.as_mut() {
        bound(name, items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = s.additional_properties.as_mut() {
        s.max_properties.get_or_insert(MAX_PROPERTIES);
        bound(name, values);
    }
    for (field, p) in s.properties.iter_mut().flatten() {
        bound(field, p);
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::Value;

    use super::*;
    use crate::crd::{DockerSandbox, DockerSandboxClass, DockerSandboxPool};

    /// Paths under `spec` of fields without a bound.
    fn unbounded(v: &Value, path: &str, out: &mut Vec<String>) {
        let has = |k: &str| v.get(k).is_some();
        match v["type"].as_str() {
            Some("string") if !has("maxLength") && !has("enum") => out.push(path.into()),
            Some("integer") if !(has("minimum") && has("maximum")) => out.push(path.into()),
            Some("array") if !has("maxItems") => out.push(path.into()),
            Some("object") if v["additionalProperties"].is_object() && !has("maxProperties") => out.push(path.into()),
            _ => {}
        }
        if v["items"].is_object() {
            unbounded(&v["items"], &format!("{path}[]"), out);
        }
        if v["additionalProperties"].is_object() {
            unbounded(&v["additionalProperties"], &format!("{path}{{}}"), out);
        }
        for (k, p) in v["properties"].as_object().into_iter().flatten() {
            unbounded(p, &format!("{path}.{k}"), out);
        }
    }

    #[test]
    fn every_spec_field_of_every_crd_is_bounded() {
        for crd in
            [bounded(DockerSandbox::crd()), bounded(DockerSandboxClass::crd()), bounded(DockerSandboxPool::crd())]
        {
            let v = serde_json::to_value(&crd).expect("json");
            let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
            let mut out = Vec::new();
            unbounded(spec, "spec", &mut out);
            // Quantities are int-or-string (the parser bounds them: at most 64 characters).
            out.retain(|p| !p.contains("resources.") && !p.ends_with("maxSize"));
            assert_eq!(out, Vec::<String>::new(), "{}", crd.spec.names.kind);
        }
    }

    #[test]
    fn weights_and_generations_have_their_own_ranges() {
        let v = serde_json::to_value(bounded(DockerSandbox::crd())).expect("json");
        let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let weight = &spec["affinity"]["properties"]["podAffinity"]["properties"]["preferredDuringSchedulingIgnoredDuringExecution"]
            ["items"]["properties"]["weight"];
        assert_eq!((weight["minimum"].as_f64(), weight["maximum"].as_f64()), (Some(1.0), Some(100.0)));
        let generation = &spec["credentials"]["properties"]["generation"];
        assert_eq!((generation["minimum"].as_f64(), generation["maximum"].as_f64()), (Some(0.0), Some(1e6)));
    }
}
