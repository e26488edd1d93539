#!/usr/bin/env bash
# Install a pinned kubeconform (Kubernetes manifest validator) into $DSB_CACHE/bin/kubeconform,
# built from its Go module with `go install` (no binary download needed: only the Go module proxy
# must be reachable). Same pattern as install-helm.sh.
#
# Idempotent: does nothing when the pinned version is already there. Prints the path.
# Env: DSB_CACHE (default /var/cache/dockersandbox), KUBECONFORM_VERSION (override the pin).
set -euo pipefail

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
CACHE="${DSB_CACHE:-/var/cache/dockersandbox}"
BIN_DIR="$CACHE/bin"
KUBECONFORM="$BIN_DIR/kubeconform"
module="github.com/yannh/kubeconform"

installed_version() {
    [ -x "$KUBECONFORM" ] || return 0
    "$KUBECONFORM" -v 2>/dev/null || true
}

if [ "$(installed_version)" = "$KUBECONFORM_VERSION" ]; then
    echo "$KUBECONFORM"
    exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "install-kubeconform: 'go' not found on PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"

echo "install-kubeconform: building ${module}/cmd/kubeconform@${KUBECONFORM_VERSION}" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# main.version is what `kubeconform -v` prints (upstream's release builds set it the same way).
# GOBIN into a temp dir, then an atomic rename: a failed build never leaves a broken binary behind.
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
    nice -n 10 go install -trimpath -ldflags "-s -w -X main.version=${KUBECONFORM_VERSION}" \
    "${module}/cmd/kubeconform@${KUBECONFORM_VERSION}" >&2
mv -f "$tmp/kubeconform" "$KUBECONFORM"

got="$(installed_version)"
if [ "$got" != "$KUBECONFORM_VERSION" ]; then
    echo "install-kubeconform: built kubeconform reports '${got}', expected '${KUBECONFORM_VERSION}'" >&2
    exit 1
fi
echo "$KUBECONFORM"
