#!/usr/bin/env bash
# The one-command demo (`make demo`): a cluster (the local one, or $KUBECONFIG with
# E2E_USE_KUBECONFIG=1), the operator installed with its Helm chart, an example sandbox, and a
# docker client talking to it over mutual TLS through `kubectl dsb connect` (the plugin). Leaves
# everything running and prints how to use it.
set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
export DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
export DSB_E2E_STATE=${DSB_E2E_STATE:-/var/lib/dockersandbox-e2e}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# With your own cluster, KUBECONFIG (or kubectl's default file) is the one to use; say so before
# lib.sh would fall back to the local cluster's kubeconfig.
[ "${E2E_USE_KUBECONFIG:-0}" != 1 ] || export KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}
# The release, namespace, chart and images are the e2e suite's (E2E_RELEASE, E2E_OPERATOR_NAMESPACE,
# E2E_CHART, E2E_DIND_IMAGE); lib.sh also brings operator_deployment.
E2E_LIB_NO_TRAP=1
E2E_TEST_NAME=demo
source "$E2E_DIR/lib.sh"
NS=${DEMO_NAMESPACE:-demo}
NAME=${DEMO_SANDBOX:-demo}
# the tunnel's local port (default: the one the sandbox's docker context has, else a free one)
PORT=${DEMO_PORT:-}
say() { printf '\n==> %s\n' "$*"; }

if [ "${E2E_USE_KUBECONFIG:-0}" != 1 ]; then
  say "local cluster (e2e/cluster/up.sh)"
  bash "$E2E_DIR/cluster/up.sh"
  export KUBECONFIG=$DSB_E2E_STATE/kubeconfig
  bash "$E2E_DIR/images/operator/build.sh" "$CARGO_TARGET_DIR/release/dockersandbox-operator"
  # The e2e values' default class also allows the locally built localhost/dockersandbox/* images.
  values=(-f "$E2E_DIR/tools/operator-e2e-values.yaml")
  image_override=${DEMO_IMAGE:-$E2E_DIND_IMAGE}
else
  # The chart's default class allows docker:*-dind images only: a DEMO_IMAGE outside it is
  # refused (ImageNotAllowed) unless the class allows it (defaultClass.spec.image.allowed).
  # The chart allows sysbox only; kind and most clusters have none, so the demo turns privileged
  # engines on explicitly (values-privileged.yaml says what that opens). With sysbox, DEMO_VALUES="".
  values=()
  demo_values=${DEMO_VALUES-$E2E_CHART/values-privileged.yaml}
  if [[ -n "$demo_values" ]]; then
    say "privileged engines on, explicitly: -f ${demo_values#"$ROOT"/}"
    values=(-f "$demo_values")
  fi
  image_override=${DEMO_IMAGE:-}
fi
HELM=$(bash "$E2E_DIR/tools/install-helm.sh" | tail -n 1)

say "operator: helm upgrade --install $E2E_RELEASE ${E2E_CHART#"$ROOT"/} (namespace $E2E_OPERATOR_NAMESPACE)"
"$HELM" upgrade --install "$E2E_RELEASE" "$E2E_CHART" \
  --namespace "$E2E_OPERATOR_NAMESPACE" --create-namespace "${values[@]}" --wait --timeout 5m
deployment=$(operator_deployment)
kubectl -n "$E2E_OPERATOR_NAMESPACE" rollout restart "$deployment" >/dev/null
kubectl -n "$E2E_OPERATOR_NAMESPACE" rollout status "$deployment" --timeout=180s

say "sandbox $NS/$NAME (manifests/examples/minimal.yaml)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# This cluster has no sysbox, so the engine is privileged: the namespace must opt in explicitly.
say "kubectl label namespace $NS pod-security.kubernetes.io/enforce=privileged"
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=privileged --overwrite >/dev/null
sed "s/name: .*/name: $NAME/" "$ROOT/manifests/examples/minimal.yaml" | kubectl apply -n "$NS" -f -
if [ -n "$image_override" ]; then
  kubectl -n "$NS" patch dsb "$NAME" --type merge -p "{\"spec\":{\"image\":\"$image_override\",\"storage\":{\"size\":\"2Gi\"}}}"
fi
if ! kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Ready "dsb/$NAME" --timeout=300s; then
  # The reason (a class refusal such as ImageNotAllowed, a policy, a pull error) is on the object.
  kubectl -n "$NS" get dsb "$NAME" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  exit 1
fi
kubectl -n "$NS" get dsb "$NAME"

# The plugin: `make demo` installs it first (`make install-plugin`, into $PREFIX/bin, on PATH).
command -v kubectl-dsb >/dev/null 2>&1 || { echo "kubectl-dsb is not on PATH: run make install-plugin" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || PATH="$(dirname "$(bash "$E2E_DIR/tools/install-docker-cli.sh" | tail -n 1)"):$PATH"
# a tunnel left by an earlier demo would hold the context's port
kubectl dsb disconnect "$NAME" -n "$NS" >/dev/null 2>&1 || true
say "kubectl dsb connect $NAME -n $NS --background (certificates, docker context dsb-$NS.$NAME, a tunnel if needed)"
kubectl dsb connect "$NAME" -n "$NS" --background ${PORT:+--port "$PORT"}

cat <<EOT

In the cluster, clients use the endpoint from status: DOCKER_HOST=$(kubectl -n "$NS" get dsb "$NAME" -o jsonpath='{.status.endpoint}')
From this machine (the plugin is installed: make install-plugin), use the context,
or eval "\$(kubectl dsb env $NAME -n $NS)". A tunnel, if one runs, stops with: kubectl dsb disconnect $NAME -n $NS
EOT
say "docker --context dsb-$NS.$NAME version"
docker --context "dsb-$NS.$NAME" version
