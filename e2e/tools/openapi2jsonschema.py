#!/usr/bin/env python3
"""Kubernetes OpenAPI v2 spec (and CRDs) -> kubeconform's JSON-schema layout, strict and standalone.

    openapi2jsonschema.py --swagger swagger.json [--crd crd.yaml ...] --out DIR

Writes one file per kind to DIR, named the way kubeconform's
-schema-location 'DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json' looks them up: the kind in lower
case, then the first label of the API group (none for the core group), then the version, e.g.
deployment-apps-v1.json, service-v1.json, clusterrole-rbac-v1.json,
dockersandbox-dockersandbox-v1alpha1.json.

The same conversion as kubeconform's scripts/openapi2jsonschema.py and the "-standalone-strict"
schemas it is usually fed, done offline:
  * strict: every object schema that lists properties gets additionalProperties: false (unless it
    already says what extra properties may be, or keeps unknown fields: x-kubernetes-preserve-
    unknown-fields), the document root included, so a misspelt or misplaced field is an error;
  * standalone: each file carries, under "definitions", every definition it refers to (the $refs
    stay local: #/definitions/NAME), so nothing is fetched and recursive types stay finite;
  * int-or-string fields accept an integer or a string, quantities a string or a number, as the
    API server does; apiVersion and kind must be present and name the file's kind.
CRDs: each served version's openAPIV3Schema, with metadata checked as the core ObjectMeta and
`nullable: true` honoured.

Needs Python 3 and PyYAML (only for --crd). Deterministic: the same inputs give the same files.
"""
import argparse
import copy
import json
import os
import sys

DRAFT4 = "http://json-schema.org/draft-04/schema#"
REF_PREFIX = "#/definitions/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


# Keywords whose value is a schema, a list of schemas, or a map of name -> schema. Only these are
# walked: a properties map, an enum or a default value is never mistaken for a schema.
SCHEMA_KEYS = ("additionalProperties", "items", "not")
SCHEMA_LIST_KEYS = ("allOf", "anyOf", "oneOf", "items")
SCHEMA_MAP_KEYS = ("properties", "patternProperties", "definitions")


def walk(schema, fn):
    """Apply fn to schema and every schema nested in it (children before parents)."""
    if not isinstance(schema, dict):
        return
    for k in SCHEMA_KEYS:
        walk(schema.get(k), fn)
    for k in SCHEMA_LIST_KEYS:
        if isinstance(schema.get(k), list):
            for s in schema[k]:
                walk(s, fn)
    for k in SCHEMA_MAP_KEYS:
        if isinstance(schema.get(k), dict):
            for s in schema[k].values():
                walk(s, fn)
    fn(schema)




def strict(node):
    """additionalProperties: false wherever properties are listed and nothing else is allowed."""
    def fix(d):
        if not isinstance(d.get("properties"), dict):
            return
        if "additionalProperties" in d or d.get("x-kubernetes-preserve-unknown-fields") is True:
            return
        d["additionalProperties"] = False
    walk(node, fix)


def int_or_string(node):
    """format: int-or-string (OpenAPI v2) / x-kubernetes-int-or-string (CRDs) -> string or integer."""
    def fix(d):
        typed = "type" in d or "oneOf" in d or "anyOf" in d
        if d.get("format") == "int-or-string":
            d.pop("format")
            d.pop("type", None)
            d.update(copy.deepcopy(INT_OR_STRING))
        elif d.get("x-kubernetes-int-or-string") is True and not typed:
            d.update(copy.deepcopy(INT_OR_STRING))
    walk(node, fix)


def nullable(node):
    """CRD `nullable: true`: null is a valid value too."""
    def fix(d):
        if d.get("nullable") is True and isinstance(d.get("type"), str):
            d["type"] = [d["type"], "null"]
    walk(node, fix)


def refs(node):
    """Names of the definitions node refers to directly."""
    found = set()

    def fix(d):
        r = d.get("$ref")
        if isinstance(r, str) and r.startswith(REF_PREFIX):
            found.add(r[len(REF_PREFIX):])
    walk(node, fix)
    return found


def closure(definitions, node):
    """Every definition reachable from node through $refs."""
    todo, seen = list(refs(node)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in definitions:
            sys.exit(f"openapi2jsonschema: $ref to unknown definition {name}")
        seen.add(name)
        todo.extend(refs(definitions[name]) - seen)
    return seen


def prepare_definitions(swagger):
    definitions = copy.deepcopy(swagger["definitions"])
    for name, d in definitions.items():
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            desc = d.get("description")
            d.clear()
            d.update(copy.deepcopy(QUANTITY))
            if desc:
                d["description"] = desc
    for d in definitions.values():
        int_or_string(d)
        strict(d)
    return definitions


def file_name(group, version, kind):
    suffix = f"-{group.split('.')[0]}" if group else ""
    return f"{kind}{suffix}-{version}.json".lower()


def pin_gvk(schema, group, version, kind):
    """apiVersion and kind are required and must name this kind."""
    api_version = f"{group}/{version}" if group else version
    props = schema.setdefault("properties", {})
    props["apiVersion"] = dict(props.get("apiVersion", {"type": "string"}), enum=[api_version])
    props["kind"] = dict(props.get("kind", {"type": "string"}), enum=[kind])
    required = schema.setdefault("required", [])
    for field in ("apiVersion", "kind"):
        if field not in required:
            required.append(field)


def document(definitions, top, group, version, kind):
    doc = copy.deepcopy(top)
    pin_gvk(doc, group, version, kind)
    doc["additionalProperties"] = doc.get("additionalProperties", False)
    needed = closure(definitions, doc)
    if needed:
        doc["definitions"] = {n: definitions[n] for n in sorted(needed)}
    doc["$schema"] = DRAFT4
    return doc


def builtin_kinds(definitions):
    """(group, version, kind, definition name) of every definition that is exactly one kind."""
    for name, d in sorted(definitions.items()):
        gvks = d.get("x-kubernetes-group-version-kind") or []
        if len(gvks) != 1:  # none: not a kind; many: DeleteOptions, WatchEvent (not applied as manifests)
            continue
        g = gvks[0]
        yield g.get("group", ""), g["version"], g["kind"], name


def crd_kinds(paths):
    import yaml  # only needed for CRDs

    for path in paths:
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec.get("versions", []):
                    schema = (v.get("schema") or {}).get("openAPIV3Schema")
                    if schema is None or not v.get("served", True):
                        continue
                    yield spec["group"], v["name"], spec["names"]["kind"], schema


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--swagger", required=True, help="Kubernetes api/openapi-spec/swagger.json")
    ap.add_argument("--crd", action="append", default=[], help="CRD YAML file (repeatable)")
    ap.add_argument("--out", required=True, help="output directory (created)")
    args = ap.parse_args()

    with open(args.swagger, encoding="utf-8") as f:
        definitions = prepare_definitions(json.load(f))
    os.makedirs(args.out, exist_ok=True)
    written = {}

    def write(fname, doc, source):
        if fname in written:
            sys.exit(f"openapi2jsonschema: {fname} from both {written[fname]} and {source}")
        written[fname] = source
        with open(os.path.join(args.out, fname), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")

    for group, version, kind, name in builtin_kinds(definitions):
        write(file_name(group, version, kind), document(definitions, definitions[name], group, version, kind), name)

    for group, version, kind, schema in crd_kinds(args.crd):
        schema = copy.deepcopy(schema)
        int_or_string(schema)
        nullable(schema)
        strict(schema)
        # metadata: the real ObjectMeta (a CRD only says `type: object`), so typos there are caught too
        meta = schema.setdefault("properties", {}).get("metadata", {})
        schema["properties"]["metadata"] = {"$ref": REF_PREFIX + OBJECT_META, "description": meta.get("description", "")}
        write(file_name(group, version, kind), document(definitions, schema, group, version, kind), f"CRD {kind}.{group}/{version}")

    print(f"openapi2jsonschema: {len(written)} schemas in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
