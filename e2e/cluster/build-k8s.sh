#!/usr/bin/env bash
# Build the Kubernetes binaries pinned by e2e/cluster/k8s/go.mod (through the Go module
# proxy) and cache them under $DSB_CACHE/k8s/<key>/bin. Prints that bin dir on stdout.
# A cache hit (same go.mod, go.sum, Go version, flags) skips the build entirely.
#
# Env: DSB_CACHE (default /var/cache/dockersandbox), K8S_BUILD_PARALLEL (go -p, default 2),
#      K8S_BINARIES (space-separated subset, default: all tools in go.mod).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod=$here/k8s
DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
log() { echo "build-k8s: $*" >&2; }

command -v go >/dev/null || { log "go not found on PATH"; exit 1; }
kver=$(go -C "$mod" list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ $kver =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { log "cannot parse k8s version '$kver'"; exit 1; }
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
bins=${K8S_BINARIES:-kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl}

# buildDate = the release's publication time on the proxy: deterministic, so rebuilds are identical.
info=$(go -C "$mod" mod download -json k8s.io/kubernetes | python3 -c 'import json,sys; print(json.load(sys.stdin)["Info"])')
bdate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Time"])' "$info")
ld="-s -w"
for kv in "gitVersion=$kver" "gitMajor=$major" "gitMinor=$minor" "gitCommit=unknown" \
          "gitTreeState=archive" "buildDate=$bdate"; do
  ld+=" -X k8s.io/client-go/pkg/version.$kv -X k8s.io/component-base/version.$kv"
done
tags=selinux,notest,grpcnotrace
key=$( { cat "$mod/go.mod" "$mod/go.sum"; go version; echo "$tags|$ld|$bins|trimpath|cgo0"; } | sha256sum | cut -c1-16)
out=$DSB_CACHE/k8s/$key
if [[ -f $out/.complete ]]; then
  log "cache hit $out ($kver)"; echo "$out/bin"; exit 0
fi

mkdir -p "$DSB_CACHE/k8s"
exec 9>"$DSB_CACHE/k8s/.lock"
flock 9   # one build at a time (another caller may be building the same key)
if [[ -f $out/.complete ]]; then log "cache hit $out (built concurrently)"; echo "$out/bin"; exit 0; fi

tmp=$(mktemp -d "$DSB_CACHE/k8s/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pkgs=(); for b in $bins; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
log "building $kver ($bins) -> $out (cold: ~7-10 min on 2 cores)"
t0=$(date +%s)
go -C "$mod" mod download
mkdir -p "$tmp/bin"
nice -n 10 go -C "$mod" build -p "${K8S_BUILD_PARALLEL:-2}" -trimpath -tags "$tags" -ldflags "$ld" -o "$tmp/bin/" "${pkgs[@]}"
for b in $bins; do [[ -x $tmp/bin/$b ]] || { log "missing $b after build"; exit 1; }; done
printf '%s\n' "$kver" > "$tmp/VERSION"
chmod 755 "$tmp"; rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
touch "$out/.complete"
log "built in $(( $(date +%s) - t0 ))s"
echo "$out/bin"
