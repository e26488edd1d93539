//! The API reference (docs/api.md), generated from the CRD's own schema so that it says exactly
//! what `kubectl explain` says.

use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::DockerSandbox;

/// Fields whose schema is a core Kubernetes type: listed, not expanded.
const CORE_TYPES: [(&str, &str); 4] = [
    ("spec.resources", "core/v1 ResourceRequirements"),
    ("spec.tolerations", "list of core/v1 Toleration"),
    ("spec.affinity", "core/v1 Affinity"),
    ("spec.imagePullSecrets", "list of core/v1 LocalObjectReference"),
];

/// Markdown reference of `spec` and `status`.
pub fn api_reference() -> String {
    let crd = serde_json::to_value(DockerSandbox::crd()).unwrap_or_default();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let mut out = String::from(
        "# DockerSandbox API reference (dockersandbox.dev/v1alpha1)\n\n\
         Generated from the CRD by `dockersandbox-operator docs`; do not edit. \
         `kubectl explain dockersandbox --recursive` shows the same text.\n",
    );
    for part in ["spec", "status"] {
        out.push_str(&format!("\n## {part}\n\n| field | type | default | description |\n| --- | --- | --- | --- |\n"));
        walk(&mut out, part, &schema[part]);
    }
    out
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
