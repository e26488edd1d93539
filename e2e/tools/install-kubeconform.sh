#!/usr/bin/env bash
# Install a pinned kubeconform (Kubernetes manifest validator) into $DSB_CACHE/bin/kubeconform,
# built from its Go module (see go-tool.sh). Idempotent. Prints the path.
# Env: DSB_CACHE (default /var/cache/dockersandbox), KUBECONFORM_VERSION (override the pin).
set -euo pipefail
source "$(dirname "$0")/go-tool.sh"

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
# main.version is what `kubeconform -v` prints (upstream's release builds set it the same way).
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
    "-s -w -X main.version=${KUBECONFORM_VERSION}" -v
