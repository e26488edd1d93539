#!/usr/bin/env bash
# e2e: serial
# isolation: sysbox, as far as a cluster without sysbox allows:
#  - no RuntimeClass: condition RuntimeClassMissing, a Warning Event, no pod;
#  - a RuntimeClass whose scheduling.nodeSelector matches no node: SysboxUserNamespaceUnknown (the
#    operator cannot tell containerd from CRI-O), no pod, never a privileged fallback;
#  - a RuntimeClass scheduling onto this cluster's nodes, operator.sysboxUserNamespace=auto: the form
#    the nodes' runtime needs (containerd: hostUsers false and no CRI-O annotation; CRI-O: the
#    annotation and no hostUsers), no privileged container, status.sysboxUserNamespace and an
#    IsolationResolved message that names the runtime;
#  - isolation is sticky: an `auto` sandbox on sysbox stays sysbox (RuntimeClassMissing, no
#    privileged pod) when the RuntimeClass is deleted, although its namespace allows privileged;
#  - operator.sysboxUserNamespace=crioAnnotation (helm upgrade): the pod is recreated with the
#    annotation and without hostUsers.
# (The test's RuntimeClass points at a handler the nodes do not have, so these pods never run.)
source "$(dirname "$0")/../lib.sh"

RC=${E2E_SYSBOX_RUNTIME_CLASS:-sysbox-runc}
ns_new ns sysbox
name=box
pod=$name-engine
annotation=io.kubernetes.cri-o.userns-mode

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

# make_rc [NODE_SELECTOR_JSON]: (re)create the test's RuntimeClass
make_rc() {
  local scheduling=""
  [[ -z "${1:-}" ]] || scheduling="scheduling: {nodeSelector: $1}"
  kubectl delete runtimeclass "$RC" --ignore-not-found >&2
  kubectl apply -f - >&2 <<EOF2
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: $RC
  labels: {dockersandbox.dev/e2e: "true"}
handler: sysbox-runc
$scheduling
EOF2
}

pod_exists() { kubectl get pod -n "$ns" "$pod" >/dev/null 2>&1; }

if [[ $real_rc == false ]]; then
  sandbox_apply "$ns" "$name" "  isolation: sysbox"
  expect_refused "$ns" "$name" RuntimeClassMissing "$RC"

  on_exit "kubectl delete runtimeclass '$RC' --ignore-not-found >/dev/null"
  log "RuntimeClass $RC scheduling onto nodes labelled dockersandbox.dev/e2e-no-such-node=true (none)"
  make_rc '{dockersandbox.dev/e2e-no-such-node: "true"}'
  expect_refused "$ns" "$name" SysboxUserNamespaceUnknown 'no node that RuntimeClass .* schedules onto.*sysboxUserNamespace'
  pod_exists && fail "an engine pod was created although the user-namespace form is unknown"

  log "RuntimeClass $RC without a nodeSelector (every node; handler sysbox-runc is not installed on them)"
  make_rc
else
  sandbox_apply "$ns" "$name" "  isolation: sysbox"
fi

# What the nodes run decides the form under auto.
runtimes=$(kubectl get nodes -o 'jsonpath={range .items[*]}{.status.nodeInfo.containerRuntimeVersion}{"\n"}{end}' | sort -u)
log "node container runtimes: $(tr '\n' ' ' <<<"$runtimes")"
case "$(cut -d: -f1 <<<"$runtimes" | sort -u | tr '\n' ' ')" in
  "containerd ") expected=hostUsers ;;
  "cri-o ") expected=crioAnnotation ;;
  *) [[ $real_rc == true ]] || skip "nodes run mixed or unknown runtimes ($runtimes): auto cannot decide here"; expected="" ;;
esac

# check_form FORM: the engine pod has exactly FORM's user-namespace setting and nothing privileged
check_form() {
  local spec
  spec=$(kubectl get pod -n "$ns" "$pod" -o json)
  assert_eq "pod runtimeClassName" "$RC" "$(jq -r '.spec.runtimeClassName // ""' <<<"$spec")"
  assert_eq "privileged containers" "" \
    "$(jq -r '[.spec.containers[], (.spec.initContainers // [])[]] | map(select(.securityContext.privileged == true)) | map(.name) | join(",")' <<<"$spec")"
  assert_eq "added capabilities" "" \
    "$(jq -r '[.spec.containers[] | .securityContext.capabilities.add // [] | .[]] | join(",")' <<<"$spec")"
  case $1 in
    hostUsers)
      assert_eq "pod hostUsers" false "$(jq -r '.spec.hostUsers | tostring' <<<"$spec")"
      assert_eq "CRI-O userns annotation" "" "$(jq -r --arg a "$annotation" '.metadata.annotations[$a] // ""' <<<"$spec")" ;;
    crioAnnotation)
      assert_eq "pod hostUsers" null "$(jq -r '.spec.hostUsers | tostring' <<<"$spec")"
      assert_eq "CRI-O userns annotation" "auto:size=65536" "$(jq -r --arg a "$annotation" '.metadata.annotations[$a] // ""' <<<"$spec")" ;;
  esac
  status_form_is "$1" || fail "status.sysboxUserNamespace is '$(dsb_get "$ns" "$name" '{.status.sysboxUserNamespace}')', expected $1"
}
status_form_is() { [[ "$(dsb_get "$ns" "$name" '{.status.sysboxUserNamespace}')" == "$1" ]]; }

wait_for "$E2E_TIMEOUT" "engine pod created" pod_exists || fail "engine pod not created after RuntimeClass $RC appeared"
isolation_is() { [[ "$(dsb_get "$ns" "$name" '{.status.isolation}')" == "$1" ]]; }
wait_for 60 "status.isolation sysbox" isolation_is sysbox ||
  fail "status.isolation is '$(dsb_get "$ns" "$name" '{.status.isolation}')', expected sysbox"
[[ $real_rc == true && -z "$expected" ]] && expected=$(dsb_get "$ns" "$name" '{.status.sysboxUserNamespace}')
wait_for 60 "status.sysboxUserNamespace $expected" status_form_is "$expected" || true
check_form "$expected"
msg=$(dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="IsolationResolved")].message}')
log "IsolationResolved: $msg"
if [[ $real_rc == false ]]; then
  case $expected in
    hostUsers) assert_match "IsolationResolved names the runtime" 'hostUsers: false because .* run containerd \(containerd://' "$msg" ;;
    crioAnnotation) assert_match "IsolationResolved names the runtime" 'annotation .* because .* run CRI-O \(cri-o://' "$msg" ;;
  esac
  no_rc_missing() { ! has_condition_reason "$ns" "$name" RuntimeClassMissing && ! has_condition_reason "$ns" "$name" SysboxUserNamespaceUnknown; }
  wait_for 60 "refusal conditions cleared" no_rc_missing || fail "a refusal condition is still set: $(dsb_conditions "$ns" "$name")"
fi

# Isolation is sticky: an `auto` sandbox that resolved to sysbox keeps sysbox when the RuntimeClass
# goes away (condition RuntimeClassMissing), although its namespace would allow a privileged engine.
if [[ $real_rc == false ]]; then
  sandbox_apply "$ns" auto1 "  isolation: auto"
  auto_pod_sysbox() { [[ "$(kubectl get pod -n "$ns" auto1-engine -o 'jsonpath={.spec.runtimeClassName}')" == "$RC" ]]; }
  wait_for "$E2E_TIMEOUT" "auto1 engine pod under $RC" auto_pod_sysbox || fail "auto sandbox did not resolve to sysbox"
  log "deleting RuntimeClass $RC"
  kubectl delete runtimeclass "$RC" >&2
  expect_condition "$ns" auto1 RuntimeClassMissing "$RC"
  assert_eq "auto1 status.isolation kept" sysbox "$(dsb_get "$ns" auto1 '{.status.isolation}')"
  sleep 5 # give a wrong fallback the time to show
  assert_eq "auto1 pods that are privileged" "" \
    "$(kubectl get pod -n "$ns" auto1-engine -o json 2>/dev/null | jq -r 'select(.spec.containers[0].securityContext.privileged == true) | .metadata.name')"
  make_rc
  wait_for "$E2E_TIMEOUT" "auto1 back under $RC" auto_pod_sysbox || fail "auto1 engine pod not under $RC again"
fi

# An explicit setting wins over the nodes, and changing it rolls the engine pod.
if ! helm status "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" >/dev/null 2>&1; then
  log "operator is not a Helm release: not checking operator.sysboxUserNamespace=crioAnnotation"
  exit 0
fi
[[ $expected == crioAnnotation ]] && { log "nodes already get the annotation under auto: nothing more to switch"; exit 0; }
old_uid=$(kubectl get pod -n "$ns" "$pod" -o 'jsonpath={.metadata.uid}')
on_exit "helm_set --set operator.sysboxUserNamespace=auto >/dev/null || log 'WARNING: could not restore operator.sysboxUserNamespace=auto'"
helm_set --set operator.sysboxUserNamespace=crioAnnotation || fail "helm upgrade with operator.sysboxUserNamespace=crioAnnotation failed"
new_pod_with_annotation() {
  [[ "$(kubectl get pod -n "$ns" "$pod" -o 'jsonpath={.metadata.uid}')" != "$old_uid" ]] &&
    [[ -n "$(kubectl get pod -n "$ns" "$pod" -o "jsonpath={.metadata.annotations.io\.kubernetes\.cri-o\.userns-mode}")" ]]
}
wait_for "$E2E_TIMEOUT" "engine pod recreated with the CRI-O annotation" new_pod_with_annotation ||
  fail "engine pod not recreated with $annotation after operator.sysboxUserNamespace=crioAnnotation"
wait_for 60 "status.sysboxUserNamespace crioAnnotation" status_form_is crioAnnotation || true
check_form crioAnnotation
assert_match "IsolationResolved names the setting" "sysboxUserNamespace setting is crioAnnotation" \
  "$(dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="IsolationResolved")].message}')"
