#!/usr/bin/env bash
# e2e: serial
# Policy refusals are explained, not silent:
#  - operator installed with operator.allowPrivileged=false (via `helm upgrade`, which also proves a
#    value change rolls the Deployment): an `auto` sandbox with no sysbox RuntimeClass gets
#    condition PrivilegedForbidden, a Warning Event and no pod; a privileged engine that was running
#    is stopped (Event EngineStopped) with its volume kept, and runs again when the policy is lifted;
#  - a namespace enforcing the baseline Pod Security level: an `isolation: privileged` sandbox gets
#    condition PodSecurityRejected and no pod;
#  - a namespace with no PodSecurity label is no consent to privileged engines: condition
#    PrivilegedNotOptedIn naming the `kubectl label` command, no pod; once labelled
#    pod-security.kubernetes.io/enforce=privileged the same sandbox becomes Ready.
source "$(dirname "$0")/../lib.sh"

# --- part 1: allowPrivileged=false
if ! helm status "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" >/dev/null 2>&1; then
  skip "operator is not a Helm release $E2E_OPERATOR_NAMESPACE/$E2E_RELEASE (installed some other way)"
fi
# Running operator pods not being deleted: `rollout status` returns once the new pods are ready and
# the old ReplicaSet is scaled to zero, while an old pod may still be in its grace period (phase
# Running, deletionTimestamp set), which is a rolled Deployment all the same.
operator_pod_names() {
  kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" \
    --field-selector=status.phase=Running -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name] | join(" ")'
}

if kubectl get runtimeclass "$E2E_SYSBOX_RUNTIME_CLASS" >/dev/null 2>&1; then
  log "RuntimeClass $E2E_SYSBOX_RUNTIME_CLASS exists: isolation auto would pick sysbox; skipping the PrivilegedForbidden part"
else
  # a privileged engine running before the policy changes
  ns_new rns running
  # shellcheck disable=SC2154  # rns is assigned by ns_new (printf -v), which shellcheck cannot follow
  sandbox_apply "$rns" running "  isolation: auto"
  wait_ready "$rns" running
  pvc_uid=$(kubectl get pvc -n "$rns" running-docker -o 'jsonpath={.metadata.uid}')
  before=$(operator_pod_names)
  policy_changed=1
  restore_policy() {
    [[ $policy_changed == 1 ]] || return 0
    helm_set --set operator.allowPrivileged=true || log "WARNING: could not restore operator.allowPrivileged=true"
  }
  on_exit restore_policy
  helm_set --set operator.allowPrivileged=false || fail "helm upgrade with operator.allowPrivileged=false failed"
  d=$(operator_deployment)
  [[ -n "$d" ]] || fail "no operator Deployment labelled $E2E_OPERATOR_SELECTOR"
  kubectl rollout status -n "$E2E_OPERATOR_NAMESPACE" "$d" --timeout=180s >&2 || fail "operator rollout did not finish"
  old_pods_replaced() {
    local after p
    after=$(operator_pod_names)
    for p in $before; do [[ " $after " != *" $p "* ]] || return 1; done
  }
  wait_for 30 "operator pods [$before] replaced" old_pods_replaced ||
    fail "operator pods [$before] still running, not terminating: the Deployment did not roll on helm upgrade"
  after=$(operator_pod_names)
  log "operator pods before: [$before] after: [$after]"
  [[ -n "$after" ]] || fail "no operator pod running after helm upgrade"

  ns_new ns nopriv
  sandbox_apply "$ns" box "  isolation: auto"
  expect_refused "$ns" box PrivilegedForbidden 'privileged'

  # the engine that was running is stopped, its volume kept
  expect_condition "$rns" running PrivilegedForbidden 'privileged'
  engine_gone() { ! kubectl get pod -n "$rns" running-engine >/dev/null 2>&1; }
  wait_for 120 "engine pod of 'running' stopped" engine_gone || fail "a privileged engine still runs after the policy forbade it"
  wait_for 60 "Warning Event EngineStopped" warning_event_exists "$rns" running EngineStopped || fail "no EngineStopped event"
  assert_eq "volume of 'running' kept" "$pvc_uid" "$(kubectl get pvc -n "$rns" running-docker -o 'jsonpath={.metadata.uid}')"

  helm_set --set operator.allowPrivileged=true || fail "helm upgrade back to operator.allowPrivileged=true failed"
  policy_changed=0
  kubectl rollout status -n "$E2E_OPERATOR_NAMESPACE" "$(operator_deployment)" --timeout=180s >&2 ||
    fail "operator rollout did not finish"
  # with the policy lifted, the same sandboxes proceed again
  wait_ready "$ns" box
  wait_ready "$rns" running
fi

# --- part 2: PodSecurity baseline namespace
ns_new pns podsec pod-security.kubernetes.io/enforce=baseline
# shellcheck disable=SC2154  # pns is assigned by ns_new (printf -v), which shellcheck cannot follow
sandbox_apply "$pns" box "  isolation: privileged"
expect_refused "$pns" box PodSecurityRejected 'baseline|pod-security|PodSecurity'

# --- part 3: privileged only by explicit opt-in
if kubectl get runtimeclass "$E2E_SYSBOX_RUNTIME_CLASS" >/dev/null 2>&1; then
  log "RuntimeClass $E2E_SYSBOX_RUNTIME_CLASS exists: isolation auto would pick sysbox; skipping the opt-in part"
  exit 0
fi
ns_new ons optin
# shellcheck disable=SC2154  # ons is assigned by ns_new (printf -v), which shellcheck cannot follow
kubectl label namespace "$ons" pod-security.kubernetes.io/enforce- >/dev/null
sandbox_apply "$ons" box "  isolation: auto"
expect_refused "$ons" box PrivilegedNotOptedIn "kubectl label namespace $ons pod-security.kubernetes.io/enforce=privileged"
kubectl get pod -n "$ons" box-engine >/dev/null 2>&1 && fail "an engine pod was created in a namespace that did not opt in"
log "opting the namespace in"
kubectl label namespace "$ons" pod-security.kubernetes.io/enforce=privileged >/dev/null
wait_ready "$ons" box
