//! Descriptions read as prose: the doc comments become the CRDs' descriptions (`kubectl explain`,
//! docs/api.md), and their hard line breaks, made for the source's line width, would break
//! sentences in the middle there. The lines of a paragraph are joined; blank-line paragraph breaks,
//! list items and fenced code keep their line breaks.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// `crd` with every description in its schemas joined into paragraphs.
pub fn joined(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            walk(root);
        }
    }
    crd
}

fn walk(s: &mut JSONSchemaProps) {
    if let Some(d) = s.description.as_mut() {
        *d = paragraphs(d);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = s.items.as_mut() {
        walk(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = s.additional_properties.as_mut() {
        walk(values);
    }
    for p in s.properties.iter_mut().flat_map(|m| m.values_mut()) {
        walk(p);
    }
    for list in [&mut s.all_of, &mut s.any_of, &mut s.one_of] {
        for p in list.iter_mut().flatten() {
            walk(p);
        }
    }
}

/// Whether a line starts a list item (`- `, `* `, `1. `).
fn list_item(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    line.starts_with("- ") || line.starts_with("* ") || (digits > 0 && line[digits..].starts_with(". "))
}

/// `text` with the lines of each paragraph joined by a space.
pub fn paragraphs(text: &str) -> String {
    let mut out = String::new();
    let (mut blank, mut fence, mut after_fence) = (false, false, false);
    for raw in text.lines() {
        let line = raw.trim();
        let is_fence = line.starts_with("```");
        if line.is_empty() && !fence {
            blank = !out.is_empty();
            continue;
        }
        let sep = if out.is_empty() {
            ""
        } else if blank {
            "\n\n"
        } else if fence || is_fence || after_fence || list_item(line) {
            "\n"
        } else {
            " "
        };
        out.push_str(sep);
        out.push_str(if fence { raw.trim_end() } else { line });
        blank = false;
        after_fence = is_fence;
        if is_fence {
            fence = !fence;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::Value;

    use super::*;
    use crate::crd::{DockerSandbox, DockerSandboxClass};

    #[test]
    fn lines_of_a_paragraph_are_joined_and_breaks_kept() {
        assert_eq!(
            paragraphs("`Retain` keeps the PVC, and a\nnew sandbox adopts it."),
            "`Retain` keeps the PVC, and a new sandbox adopts it."
        );
        assert_eq!(paragraphs("One\nline.\n\nTwo\nlines."), "One line.\n\nTwo lines.");
        assert_eq!(paragraphs("Modes:\n- a, then\n  more\n- b\n1. c"), "Modes:\n- a, then more\n- b\n1. c");
        assert_eq!(paragraphs("Run:\n```\n  a\n  b\n```\nthen"), "Run:\n```\n  a\n  b\n```\nthen");
    }

    /// Descriptions with a line break that continues the sentence before it.
    fn broken(v: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(d) = v["description"].as_str() {
            let lines: Vec<&str> = d.split('\n').collect();
            let mut fence = false;
            for pair in lines.windows(2) {
                fence ^= pair[0].trim_start().starts_with("```");
                let next = pair[1].trim_start();
                let ok = fence || pair[0].is_empty() || next.is_empty() || next.starts_with("```") || list_item(next);
                if !ok {
                    out.push(format!("{path}: {:?} / {:?}", pair[0], pair[1]));
                }
            }
        }
        for key in ["items", "additionalProperties"] {
            if v[key].is_object() {
                broken(&v[key], &format!("{path}.{key}"), out);
            }
        }
        for (k, p) in v["properties"].as_object().into_iter().flatten() {
            broken(p, &format!("{path}.{k}"), out);
        }
    }

    #[test]
    fn no_crd_description_breaks_a_sentence() {
        for crd in [
            crate::crd::published(DockerSandbox::crd()),
            crate::crd::published(DockerSandboxClass::crd()),
            crate::crd::published(crate::crd::DockerSandboxPool::crd()),
        ] {
            let v = serde_json::to_value(&crd).expect("json");
            let mut out = Vec::new();
            broken(&v["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", &mut out);
            assert_eq!(out, Vec::<String>::new(), "{}", crd.spec.names.kind);
        }
    }
}
