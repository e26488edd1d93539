#!/usr/bin/env bash
# e2e: serial
# High availability: with replicaCount=2 one replica holds the Lease and reconciles, the other is a
# ready standby whose /readyz names the leader. The leader is killed without a chance to release
# the Lease (forced deletion); a sandbox created right after still becomes Ready, served by another
# replica once the Lease expired (the standby, or the replacement pod if it wins the race). Prints the failover time (kill -> the new leader's "leading"
# log line); asserts only that it happens within a generous bound.
source "$(dirname "$0")/../lib.sh"

helm status "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" >/dev/null 2>&1 ||
  skip "operator is not a Helm release $E2E_OPERATOR_NAMESPACE/$E2E_RELEASE (installed some other way)"
lease=dockersandbox-operator
holder() { kubectl get lease -n "$E2E_OPERATOR_NAMESPACE" "$lease" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null; }
running_pods() {
  kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o json |
    jq -r '.items[] | select(.metadata.deletionTimestamp == null and .status.phase == "Running"
      and ([.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length > 0)) | .metadata.name'
}
readyz() { kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/$1:8080/proxy/readyz"; }

restore() { helm_set --set replicaCount=1 || log "WARNING: could not scale the operator back to 1 replica"; }
on_exit restore
helm_set --set replicaCount=2 || fail "helm upgrade to 2 replicas failed"
two_ready() { (($(running_pods | wc -l) == 2)); }
wait_for 180 "2 operator replicas Ready" two_ready || fail "not 2 ready replicas: $(running_pods | tr '\n' ' ')"
has_holder() { [[ -n $(holder) ]] && running_pods | grep -qx "$(holder)"; }
wait_for 60 "a replica holds the Lease" has_holder || fail "no running replica holds Lease $lease (holder '$(holder)')"
leader=$(holder)
standby=$(running_pods | grep -vx "$leader" | head -1)
log "leader $leader, standby $standby"
assert_eq "the leader's /readyz" "ready: leader" "$(readyz "$leader")"
assert_eq "the standby's /readyz names the leader" "ready: standby (leader: $leader)" "$(readyz "$standby")"
metric=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/$standby:8080/proxy/metrics" | grep '^dockersandbox_leader ')
assert_eq "the standby's leader metric" "dockersandbox_leader 0" "$metric"

# Kill the leader without letting it release the Lease, and ask for a sandbox at once.
ns_new ns failover
killed_at=$(date +%s.%N)
kubectl delete pod -n "$E2E_OPERATOR_NAMESPACE" "$leader" --grace-period=0 --force >&2 2>/dev/null
sandbox_apply "$ns" after "  storage: {type: Ephemeral, size: 1Gi}"
moved() { local h; h=$(holder); [[ -n $h && $h != "$leader" ]] && running_pods | grep -qx "$h"; }
wait_for 90 "another replica holds the Lease" moved || fail "the Lease did not move from $leader (holder '$(holder)')"
new_leader=$(holder)
log "new leader: $new_leader ($([[ $new_leader == "$standby" ]] && echo "the standby" || echo "the replacement pod"))"
wait_ready "$ns" after
assert_eq "the new leader's /readyz" "ready: leader" "$(readyz "$new_leader")"

# failover time, from the new leader's own log line
line=$(kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$new_leader" | grep -m1 "leading:" || true)
stamp=$(grep -oE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z' <<<"$line" || true)
if [[ -n $stamp ]]; then
  took=$(awk -v a="$(date -d "$stamp" +%s.%N)" -v b="$killed_at" 'BEGIN { printf "%.1f", a - b }')
  log "failover: ${took}s from killing the leader to the standby leading (lease ${E2E_LEASE_SECONDS:-10}s)"
else
  log "failover: no 'leading:' line with a timestamp in $new_leader's log: $line"
fi
log "taken over: sandbox Ready, Lease held by $new_leader"
