#!/usr/bin/env bash
# Install a pinned Helm into $DSB_CACHE/bin/helm, built from source with `go install`
# (no binary download needed: only the Go module proxy must be reachable).
#
# Why Helm 4: it is the maintained major line. Helm 3 had its last feature release on
# 2026-09-09 and gets security fixes only until 2027-02-10 (helm.sh/blog/helm-v3-end-of-life).
# The chart sticks to apiVersion v2 and a draft-07 values schema, so Helm 3.x can install it
# too (only Helm 4 is exercised here).
#
# Idempotent: does nothing when the pinned version is already there. Prints the path.
# Env: DSB_CACHE (default /var/cache/dockersandbox), HELM_VERSION (override the pin).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${DSB_CACHE:-/var/cache/dockersandbox}"
BIN_DIR="$CACHE/bin"
HELM="$BIN_DIR/helm"

major="${HELM_VERSION#v}"; major="${major%%.*}"
module="helm.sh/helm/v${major}"

installed_version() {
    [ -x "$HELM" ] || return 0
    "$HELM" version --template '{{.Version}}' 2>/dev/null || true
}

if [ "$(installed_version)" = "$HELM_VERSION" ]; then
    echo "$HELM"
    exit 0
fi

command -v go >/dev/null || { echo "install-helm: 'go' not found on PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"

# Same version variables as helm's Makefile sets (-X .../internal/version.*), so that
# `helm version` reports the pin instead of a bare "v4.3" default.
ldflags="-w -s"
ldflags+=" -X ${module}/internal/version.version=${HELM_VERSION}"
ldflags+=" -X ${module}/internal/version.metadata="
ldflags+=" -X ${module}/internal/version.gitTreeState=clean"

echo "install-helm: building ${module}/cmd/helm@${HELM_VERSION} (takes a few minutes the first time)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# GOBIN into a temp dir, then an atomic rename: a failed build never leaves a broken helm behind.
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
    nice -n 10 go install -trimpath -ldflags "$ldflags" "${module}/cmd/helm@${HELM_VERSION}" >&2
mv -f "$tmp/helm" "$HELM"

got="$(installed_version)"
if [ "$got" != "$HELM_VERSION" ]; then
    echo "install-helm: built helm reports '${got}', expected '${HELM_VERSION}'" >&2
    exit 1
fi
echo "$HELM"
