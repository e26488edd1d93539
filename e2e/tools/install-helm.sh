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

source "$(dirname "$0")/go-tool.sh"

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
major="${HELM_VERSION#v}"; major="${major%%.*}"
module="helm.sh/helm/v${major}"

# Same version variables as helm's Makefile sets (-X .../internal/version.*), so that
# `helm version` reports the pin instead of a bare "v4.3" default.
ldflags="-w -s"
ldflags+=" -X ${module}/internal/version.version=${HELM_VERSION}"
ldflags+=" -X ${module}/internal/version.metadata="
ldflags+=" -X ${module}/internal/version.gitTreeState=clean"
go_tool helm "${module}/cmd/helm" "$HELM_VERSION" "$ldflags" version --template '{{.Version}}'
