#!/usr/bin/env bash
# isolation: sysbox without a sysbox-runc RuntimeClass is explained (condition RuntimeClassMissing,
# Warning Event) and no pod is made; once the RuntimeClass exists the engine pod is created with
# runtimeClassName sysbox-runc, hostUsers false and no privileged flag. (The test's RuntimeClass
# points at a handler the node does not have, so that pod never runs; that is expected.)
source "$(dirname "$0")/../lib.sh"

RC=${E2E_SYSBOX_RUNTIME_CLASS:-sysbox-runc}
ns_new ns sysbox
name=box

real_rc=false
if kubectl get runtimeclass "$RC" >/dev/null 2>&1; then
  if [[ "$(kubectl get runtimeclass "$RC" -o 'jsonpath={.metadata.labels.dockersandbox\.dev/e2e}')" == true ]]; then
    log "removing a RuntimeClass $RC left over by an earlier e2e run"
    kubectl delete runtimeclass "$RC" >&2
  else
    real_rc=true
    log "a real RuntimeClass $RC exists in this cluster: only checking the pod spec"
  fi
fi

if [[ $real_rc == false ]]; then
  sandbox_apply "$ns" "$name" "  isolation: sysbox"
  expect_refused "$ns" "$name" RuntimeClassMissing "$RC"

  log "creating RuntimeClass $RC (handler sysbox-runc; not installed on the nodes)"
  on_exit "kubectl delete runtimeclass '$RC' --ignore-not-found >/dev/null"
  kubectl apply -f - >&2 <<EOF2
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: $RC
  labels: {dockersandbox.dev/e2e: "true"}
handler: sysbox-runc
EOF2
else
  sandbox_apply "$ns" "$name" "  isolation: sysbox"
fi

pod_exists() { kubectl get pod -n "$ns" "$name-engine" >/dev/null 2>&1; }
wait_for "$E2E_TIMEOUT" "engine pod created" pod_exists || fail "engine pod not created after RuntimeClass $RC appeared"
spec=$(kubectl get pod -n "$ns" "$name-engine" -o json)
assert_eq "pod runtimeClassName" "$RC" "$(jq -r '.spec.runtimeClassName // ""' <<<"$spec")"
assert_eq "pod hostUsers" false "$(jq -r '.spec.hostUsers | tostring' <<<"$spec")"
assert_eq "privileged containers" "" \
  "$(jq -r '[.spec.containers[], (.spec.initContainers // [])[]] | map(select(.securityContext.privileged == true)) | map(.name) | join(",")' <<<"$spec")"
isolation_is() { [[ "$(dsb_get "$ns" "$name" '{.status.isolation}')" == "$1" ]]; }
wait_for 60 "status.isolation sysbox" isolation_is sysbox ||
  fail "status.isolation is '$(dsb_get "$ns" "$name" '{.status.isolation}')', expected sysbox"
if [[ $real_rc == false ]]; then
  no_rc_missing() { ! has_condition_reason "$ns" "$name" RuntimeClassMissing; }
  wait_for 60 "condition RuntimeClassMissing cleared" no_rc_missing ||
    fail "condition RuntimeClassMissing still set after the RuntimeClass was created"
fi
