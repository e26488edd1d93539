#!/usr/bin/env bash
# The e2e entry point (`make e2e`): a local cluster built from upstream parts (or the cluster in
# $KUBECONFIG when E2E_USE_KUBECONFIG=1), the operator image, Helm, then the tests (or the
# benchmark with --bench). The local cluster is created fresh (E2E_REUSE_CLUSTER=1 keeps a running
# one) and torn down at the end unless E2E_KEEP_CLUSTER=1; every component's log is kept under
# $E2E_ARTIFACTS.
set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
export DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
export DSB_E2E_STATE=${DSB_E2E_STATE:-/var/lib/dockersandbox-e2e}
export E2E_ARTIFACTS=${E2E_ARTIFACTS:-/tmp/dsb-e2e-artifacts}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# Which cargo profile's binaries to use (make e2e: e2e; the benchmarks: release).
export E2E_PROFILE=${E2E_PROFILE:-release}
mode=tests
[ "${1:-}" = "--bench" ] && { mode=bench; shift; }
[ "${1:-}" = "--bench-scale" ] && { mode=bench-scale; shift; }
mkdir -p "$E2E_ARTIFACTS"
t0=$SECONDS
stamp() { printf '[e2e %4ss] %s\n' "$((SECONDS - t0))" "$*"; }

local_cluster=0
if [ "${E2E_USE_KUBECONFIG:-0}" = 1 ]; then
  stamp "using the cluster in KUBECONFIG=${KUBECONFIG:-~/.kube/config}"
else
  local_cluster=1
  finish() {
    rc=$?
    if [ -d "$DSB_E2E_STATE/logs" ]; then
      { mkdir -p "$E2E_ARTIFACTS/cluster-logs" && cp -r "$DSB_E2E_STATE/logs/." "$E2E_ARTIFACTS/cluster-logs/"; } 2>/dev/null ||
        stamp "could not copy the cluster logs to $E2E_ARTIFACTS/cluster-logs"
    fi
    if [ "${E2E_KEEP_CLUSTER:-0}" = 1 ]; then
      stamp "keeping the cluster: export KUBECONFIG=$DSB_E2E_STATE/kubeconfig"
    else
      stamp "tearing the cluster down"
      bash "$E2E_DIR/cluster/down.sh" >"$E2E_ARTIFACTS/cluster-down.log" 2>&1 || true
    fi
    stamp "done (exit $rc); artifacts in $E2E_ARTIFACTS"
    exit "$rc"
  }
  trap finish EXIT
  if [ "${E2E_REUSE_CLUSTER:-0}" != 1 ]; then
    stamp "tearing down any previous local cluster, so the suite runs on a fresh one"
    bash "$E2E_DIR/cluster/down.sh" >"$E2E_ARTIFACTS/cluster-down-before.log" 2>&1 || true
  fi
  stamp "bringing up the local cluster (e2e/cluster/up.sh)"
  bash "$E2E_DIR/cluster/up.sh"
  export KUBECONFIG=$DSB_E2E_STATE/kubeconfig
fi

binary=$CARGO_TARGET_DIR/$E2E_PROFILE/dockersandbox-operator
stamp "operator image from $binary"
if [ "$local_cluster" = 1 ]; then
  bash "$E2E_DIR/images/operator/build.sh" "$binary"
else
  OPERATOR_IMPORT=0 bash "$E2E_DIR/images/operator/build.sh" "$binary"
  stamp "load $DSB_CACHE/images/operator.oci.tar and the dind image into your cluster (kind load image-archive ...)"
fi
HELM=$(bash "$E2E_DIR/tools/install-helm.sh" | tail -n 1)
export HELM
stamp "helm: $("$HELM" version --short 2>/dev/null || echo "$HELM")"

if [ "$mode" = bench ]; then
  stamp "benchmark"
  bash "$E2E_DIR/bench.sh" "$@"
elif [ "$mode" = bench-scale ]; then
  stamp "scale benchmark"
  bash "$E2E_DIR/bench-scale.sh" "$@"
else
  stamp "e2e tests"
  bash "$E2E_DIR/run-tests.sh" "$@"
fi
stamp "e2e $mode finished"
