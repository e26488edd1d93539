//! The API reference (docs/api.md), generated from the CRD's own schema so that it says exactly
//! what `kubectl explain` says.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::{DockerSandbox, DockerSandboxClass, DockerSandboxPool};

/// Fields whose schema is a core Kubernetes type: listed, not expanded.
const CORE_TYPES: [(&str, &str); 10] = [
    ("spec.resources", "core/v1 ResourceRequirements"),
    ("spec.tolerations", "list of core/v1 Toleration"),
    ("spec.affinity", "core/v1 Affinity"),
    ("spec.imagePullSecrets", "list of core/v1 LocalObjectReference"),
    ("spec.resources.default", "core/v1 ResourceRequirements"),
    ("spec.resources.max", "map of resource name to quantity"),
    ("spec.placement.tolerations", "list of core/v1 Toleration"),
    ("spec.placement.affinity", "core/v1 Affinity"),
    ("spec.namespaceSelector", "meta/v1 LabelSelector"),
    ("spec.template.spec", "DockerSandbox spec (above), without className and poolRef"),
];

/// Markdown reference of the DockerSandbox's `spec` and `status`, then the DockerSandboxClass's `spec`.
pub fn api_reference() -> String {
    let mut out = String::from(
        "# API reference (dockersandbox.dev/v1alpha1)\n\n\
         Generated from the CRDs by `dockersandbox-operator docs`; do not edit. \
         `kubectl explain dockersandbox --recursive`, `kubectl explain dockersandboxclass --recursive` and \
         `kubectl explain dockersandboxpool --recursive` show the same text.\n",
    );
    let sandbox = serde_json::to_value(crate::crd::published(DockerSandbox::crd())).unwrap_or_default();
    section(&mut out, "DockerSandbox", &sandbox, &["spec", "status"]);
    let class = serde_json::to_value(crate::crd::published(DockerSandboxClass::crd())).unwrap_or_default();
    out.push_str(
        "\nCluster-scoped, short name `dsbclass`. The class annotated `dockersandbox.dev/is-default-class: \"true\"` \
         serves sandboxes without `spec.className`.\n",
    );
    section(&mut out, "DockerSandboxClass", &class, &["spec"]);
    let pool = serde_json::to_value(crate::crd::published(DockerSandboxPool::crd())).unwrap_or_default();
    out.push_str(
        "\nNamespaced, short name `dsbpool`, with the `/scale` subresource (`kubectl scale dsbpool NAME \
         --replicas=N`). A DockerSandbox with `spec.poolRef: NAME` claims one of its ready engines.\n",
    );
    section(&mut out, "DockerSandboxPool", &pool, &["spec", "status"]);
    out
}

fn section(out: &mut String, kind: &str, crd: &Value, parts: &[&str]) {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    out.push_str(&format!("\n# {kind}\n"));
    for part in parts {
        out.push_str(&format!("\n## {part}\n\n| field | type | default | description |\n| --- | --- | --- | --- |\n"));
        walk(out, part, &schema[part]);
    }
}

fn walk(out: &mut String, path: &str, schema: &Value) {
    let Some(props) = schema["properties"].as_object() else { return };
    for (name, prop) in props {
        let here = format!("{path}.{name}");
        let core = CORE_TYPES.iter().find(|(p, _)| *p == here).map(|(_, t)| *t);
        let items = &prop["items"];
        let kind = match core {
            Some(t) => t.to_string(),
            None => type_of(prop),
        };
        let description = prop["description"].as_str().unwrap_or("").replace('\n', " ").replace('|', "\\|");
        let default = match &prop["default"] {
            Value::Null => String::new(),
            v => format!("`{v}`"),
        };
        out.push_str(&format!("| `{here}` | {kind} | {default} | {description}{} |\n", rules(prop)));
        if core.is_none() {
            walk(out, &here, prop);
            if items.is_object() && name != "conditions" {
                walk(out, &format!("{here}[]"), items);
            }
        }
    }
}

fn type_of(prop: &Value) -> String {
    let base = prop["type"].as_str().unwrap_or("object");
    let values: Vec<String> =
        prop["enum"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(|s| format!("`{s}`"))).collect();
    match (base, values.is_empty()) {
        ("array", _) => format!("list of {}", prop["items"]["type"].as_str().unwrap_or("object")),
        (_, false) => values.join(", "),
        _ => base.to_string(),
    }
}

fn rules(prop: &Value) -> String {
    let mut extra: Vec<String> = prop["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str().map(|m| m.replace('|', "\\|")))
        .collect();
    for (key, label) in
        [("minimum", "min"), ("maximum", "max"), ("maxItems", "at most items"), ("maxLength", "max length")]
    {
        if let Some(v) = prop[key].as_f64() {
            extra.push(format!("{label} {v}"));
        }
    }
    if extra.is_empty() { String::new() } else { format!(" Rules: {}.", extra.join("; ")) }
}
