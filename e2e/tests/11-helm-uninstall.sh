#!/usr/bin/env bash
# e2e: serial
# `helm uninstall` of the operator keeps the CRDs and the users' sandboxes: the sandbox object stays
# and its engine keeps running. The default class may go with the release (a sandbox that looks for
# it then only gets condition ClassNotFound, which changes nothing). Reinstalling the chart brings
# the class back and picks the sandbox up again (Ready, same class, same engine pod).
source "$(dirname "$0")/../lib.sh"

if ! helm status "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" >/dev/null 2>&1; then
  skip "operator is not a Helm release $E2E_OPERATOR_NAMESPACE/$E2E_RELEASE (installed some other way)"
fi
values=$(mktemp)
on_exit "rm -f '$values'"
helm get values "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" -o yaml >"$values"

ns_new ns uninstall
ns_new cns uninstall-client
name=box
sandbox_apply "$ns" "$name"
wait_ready "$ns" "$name"
make_client "$cns" client "$ns" "$name"
retry 10 docker_answers "$cns" client >/dev/null || fail "engine does not answer"
uid=$(pod_uid "$ns" "$name-engine")
class=$(dsb_get "$ns" "$name" '{.status.className}')
[[ -n "$class" ]] || fail "status.className of $ns/$name is empty"

reinstall() {
  log "reinstalling the operator with its previous values"
  helm upgrade --install "$E2E_RELEASE" "$E2E_CHART" -n "$E2E_OPERATOR_NAMESPACE" --create-namespace \
    -f "$values" --wait --timeout 5m >&2
}
on_exit "operator_available || reinstall || log 'WARNING: operator reinstall failed'"

log "helm uninstall $E2E_RELEASE"
helm uninstall "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" --wait --timeout 5m >&2 || fail "helm uninstall failed"
no_operator() { [[ -z "$(operator_pods)" ]]; }
wait_for 120 "operator pods gone" no_operator || fail "operator pods still present after helm uninstall"

for crd in "$DSB" "$DSB_CLASS"; do
  kubectl get crd "$crd" >/dev/null 2>&1 || fail "helm uninstall removed the CRD $crd"
done
log "ok: CRDs kept"
kubectl get "$DSB" -n "$ns" "$name" >/dev/null 2>&1 || fail "helm uninstall removed the sandbox"
log "ok: sandbox kept"
same_engine() { [[ "$(pod_uid "$ns" "$name-engine")" == "$uid" ]]; }
still_true 10 same_engine || fail "engine pod changed or vanished after helm uninstall"
log "ok: engine pod unchanged"
assert_eq "engine pod Running" Running "$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.status.phase}')"
retry 5 docker_answers "$cns" client >/dev/null || fail "engine stopped answering without the operator"
log "ok: engine keeps serving with no operator installed"

reinstall || fail "reinstalling the operator failed"
gen=$(dsb_get "$ns" "$name" '{.metadata.generation}')
wait_ready "$ns" "$name"
observed() { [[ "$(dsb_get "$ns" "$name" '{.status.observedGeneration}')" == "$gen" ]]; }
wait_for 60 "observedGeneration $gen after reinstall" observed || fail "observedGeneration not $gen"
assert_eq "engine pod untouched by the reinstall" "$uid" "$(pod_uid "$ns" "$name-engine")"
assert_eq "class after the reinstall" "$class" "$(dsb_get "$ns" "$name" '{.status.className}')"

# the reinstalled operator really manages the old sandbox again: a deleted child comes back
svc_uid=$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.metadata.uid}')
kubectl delete svc -n "$ns" "$name" --wait=true --timeout=60s >&2
svc_back() { local u; u=$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.metadata.uid}') && [[ -n "$u" && "$u" != "$svc_uid" ]]; }
wait_for "$E2E_TIMEOUT" "Service $name re-created by the reinstalled operator" svc_back ||
  fail "the reinstalled operator does not reconcile the existing sandbox"
