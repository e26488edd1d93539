#!/usr/bin/env bash
# Print a directory of strict JSON schemas for kubeconform, one file per kind, made offline:
#  - every built-in kind of the Kubernetes version the local cluster pins (k8s.io/kubernetes in
#    e2e/cluster/k8s/go.mod), from api/openapi-spec/swagger.json inside that Go module (fetched
#    with `go mod download`, i.e. from the Go module proxy or the module cache);
#  - our CRDs (crds/*.yaml).
# converted by openapi2jsonschema.py. Use it as
#   kubeconform -strict -schema-location "$DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json" ...
# Cached in $DSB_CACHE/kubeconform-schemas/<k8s version>-<hash of the converter and the CRDs>: a
# warm call only hashes three files. Generations unused for 30 days are removed.
# Env: DSB_CACHE (default /var/cache/dockersandbox), K8S_SCHEMA_VERSION (override the version).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=$ROOT/e2e/tools
CACHE=${DSB_CACHE:-/var/cache/dockersandbox}/kubeconform-schemas
log() { echo "k8s-schemas: $*" >&2; }

kver=${K8S_SCHEMA_VERSION:-$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ { print $2; exit }' "$ROOT/e2e/cluster/k8s/go.mod")}
[[ $kver =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { log "no k8s.io/kubernetes version in e2e/cluster/k8s/go.mod (got '$kver')"; exit 1; }
crds=("$ROOT"/crds/*.yaml)
key=$(sha256sum "$TOOLS/openapi2jsonschema.py" "${crds[@]}" | cut -d' ' -f1 | sha256sum | cut -c1-16)
out=$CACHE/$kver-$key
if [[ -f $out/.complete ]]; then
  touch "$out/.complete" 2>/dev/null || true # in use: keeps it from being pruned
  echo "$out"
  exit 0
fi

# PyYAML reads the CRDs: the default python3 if it has it, else Debian's python3 with python3-yaml.
py=""
for c in python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import yaml' 2>/dev/null; then py=$c; break; fi
done
if [[ -z $py ]]; then
  bash "$TOOLS/apt-install.sh" python3 python3-yaml
  py=/usr/bin/python3
fi

command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null 2>&1 || { log "'go' not found on PATH (needed once, to fetch k8s.io/kubernetes@$kver)"; exit 1; }
log "k8s.io/kubernetes@$kver: go mod download (about 20 MB the first time)"
# Outside any module (cd /), so only this module is resolved.
dir=$(cd / && go mod download -json "k8s.io/kubernetes@$kver" |
  "$py" -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))')
swagger=$dir/api/openapi-spec/swagger.json
[[ -f $swagger ]] || { log "$swagger missing from the module"; exit 1; }

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
crd_args=()
for c in "${crds[@]}"; do crd_args+=(--crd "$c"); done
"$py" "$TOOLS/openapi2jsonschema.py" --swagger "$swagger" "${crd_args[@]}" --out "$tmp"
touch "$tmp/.complete"
chmod 755 "$tmp"
# $out only ever appears complete (renamed from a finished temp dir); one without the marker is debris.
[[ ! -d $out || -f $out/.complete ]] || rm -rf "$out"
# A concurrent run may have won the rename: its schemas are the same, keep them.
mv -T "$tmp" "$out" 2>/dev/null || [[ -f $out/.complete ]] || { log "could not create $out"; exit 1; }
# Old generations (another CRD, converter or Kubernetes version) unused for 30 days; stale temp dirs.
for d in "$CACHE"/v*; do
  [[ -d $d && $d != "$out" ]] || continue
  [[ -n $(find "$d/.complete" -mtime -30 2>/dev/null) ]] || rm -rf "$d"
done
find "$CACHE" -mindepth 1 -maxdepth 1 -name '.tmp.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
echo "$out"
