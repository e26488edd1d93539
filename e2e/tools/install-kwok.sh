#!/usr/bin/env bash
# Install a pinned KWOK controller (fake nodes and pods for e2e/bench-scale.sh) into
# $DSB_CACHE/bin/kwok, built from its Go module (see go-tool.sh). Idempotent. Prints the path.
# Env: DSB_CACHE (default /var/cache/dockersandbox), KWOK_VERSION (override the pin).
set -euo pipefail
source "$(dirname "$0")/go-tool.sh"

KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# consts.Version is what `kwok --version` prints (upstream's release builds set it the same way).
go_tool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" --version
