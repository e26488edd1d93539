#!/usr/bin/env bash
# Static checks of the Kubernetes objects we ship, without a cluster (part of `make unit`):
#  1. `helm lint --strict` of charts/dockersandbox-operator with the default values, the e2e values,
#     the chart's values-privileged.yaml and e2e/tools/chart-all-options-values.yaml (every optional
#     template on);
#  2. `kubeconform -strict` (unknown or misplaced fields, wrong types, duplicate keys are errors) of
#     `helm template` with each of those values, of manifests/*.yaml and manifests/examples/*.yaml,
#     against the schemas of the Kubernetes version the e2e cluster runs and of our CRD
#     (e2e/tools/k8s-schemas.sh; nothing is downloaded at check time).
# Tools: helm (install-helm.sh) and kubeconform (install-kubeconform.sh), pinned, built once into
# $DSB_CACHE/bin; HELM / KUBECONFORM override them.
set -euo pipefail
TOOLS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$TOOLS/../.." && pwd)
CHART=$ROOT/charts/dockersandbox-operator
RELEASE=dockersandbox-operator NAMESPACE=dockersandbox-system

HELM=${HELM:-$(bash "$TOOLS/install-helm.sh" | tail -n 1)}
KUBECONFORM=${KUBECONFORM:-$(bash "$TOOLS/install-kubeconform.sh" | tail -n 1)}
SCHEMAS=$(bash "$TOOLS/k8s-schemas.sh")
# The values the e2e suite installs the chart with (helm_operator in e2e/lib.sh).
E2E_LIB_NO_TRAP=1 E2E_TEST_NAME=check-manifests
source "$ROOT/e2e/lib.sh"
e2e_values_args

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# values_for VARIANT: set the array args to that variant's helm values arguments
values_for() {
  case $1 in
    defaults) args=() ;;
    e2e) args=("${E2E_VALUES_ARGS[@]}") ;;
    privileged) args=(-f "$CHART/values-privileged.yaml") ;;
    all-options) args=(-f "$TOOLS/chart-all-options-values.yaml") ;;
  esac
}
for variant in defaults e2e privileged all-options; do
  values_for "$variant"
  "$HELM" lint --strict --quiet "$CHART" "${args[@]}" >"$tmp/lint-$variant.log" 2>&1 ||
    { cat "$tmp/lint-$variant.log" >&2; echo "check-manifests: helm lint failed ($variant values)" >&2; exit 1; }
  "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$tmp/chart-$variant.yaml"
done
echo "check-manifests: helm lint --strict ok (default, e2e, privileged and all-options values)"

# ServiceMonitor (all-options) belongs to the Prometheus Operator's CRDs, whose schema we do not have.
"$KUBECONFORM" -strict -summary -skip ServiceMonitor \
  -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
  "$tmp"/chart-*.yaml "$ROOT"/manifests/*.yaml "$ROOT"/manifests/examples/*.yaml
