#!/usr/bin/env bash
# e2e: about 90s
# The operator touches only what it created for a sandbox. An object planted under a child's name
# before the sandbox exists (a Secret NAME-ca that would become its CA, a Service NAME, a PVC
# NAME-docker) gives condition Conflict naming it and a Warning Event; the planted object is
# neither changed nor deleted, and no engine pod is made. Removing it lets the sandbox proceed.
# Each condition speaks of its own step: a planted Secret blocks TLSReady (isolation is resolved), a
# planted claim StorageBound, and an engine the scheduler cannot place reads Unschedulable.
source "$(dirname "$0")/../lib.sh"

ns_new ns takeover
rv() { kubectl get -n "$ns" "$1" -o 'jsonpath={.metadata.resourceVersion}'; }

# plant KIND/NAME SANDBOX REGEX: the sandbox refuses to take the planted object
check_planted() {
  local obj=$1 sandbox=$2 regex=$3 before
  before=$(rv "$obj")
  sandbox_apply "$ns" "$sandbox"
  expect_refused "$ns" "$sandbox" Conflict "$regex"
  assert_eq "planted $obj unchanged" "$before" "$(rv "$obj")"
  assert_eq "planted $obj has no owner reference" "" \
    "$(kubectl get -n "$ns" "$obj" -o 'jsonpath={.metadata.ownerReferences}')"
  kubectl get pod -n "$ns" "$sandbox-engine" >/dev/null 2>&1 && fail "an engine pod was made for $sandbox"
  return 0
}

kubectl create secret generic -n "$ns" planted-ca --from-literal=ca.pem=not-yours --from-literal=ca-key.pem=not-yours >&2
check_planted secret/planted-ca planted 'Secret planted-ca already exists and it was not created for this sandbox'
reason_of() { dsb_get "$ns" "$1" "{.status.conditions[?(@.type==\"$2\")].reason}"; }
assert_eq "a planted Secret blocks TLSReady" Conflict "$(reason_of planted TLSReady)"
assert_eq "isolation is resolved all the same" Resolved "$(reason_of planted IsolationResolved)"

kubectl create service clusterip -n "$ns" svc-planted --tcp=2376:2376 >&2
check_planted service/svc-planted svc-planted 'Service svc-planted already exists'

kubectl apply -n "$ns" -f - >&2 <<'YAML'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: pvc-planted-docker}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
YAML
check_planted pvc/pvc-planted-docker pvc-planted 'PersistentVolumeClaim pvc-planted-docker already exists'
assert_eq "a planted claim blocks StorageBound" Conflict "$(reason_of pvc-planted StorageBound)"

log "removing the planted Secret: sandbox 'planted' may proceed"
kubectl delete secret -n "$ns" planted-ca --wait=true >&2
wait_ready "$ns" planted
kubectl get secret -n "$ns" planted-ca -o 'jsonpath={.metadata.ownerReferences[0].kind}' | grep -qx DockerSandbox ||
  fail "the CA Secret made after the planted one went is not owned by the sandbox"

# An engine no node can take: 8 CPUs (the class's maximum), where every node has fewer (else skipped).
most_cpus=$(kubectl get nodes -o 'jsonpath={range .items[*]}{.status.allocatable.cpu}{"\n"}{end}' |
  awk '{ v = ($1 ~ /m$/) ? substr($1, 1, length($1) - 1) / 1000 : $1; if (v > m) m = v } END { print m + 0 }')
if awk -v m="$most_cpus" 'BEGIN { exit !(m >= 8) }'; then
  log "a node has $most_cpus CPUs: the Unschedulable check needs nodes with fewer than 8; skipped"
  exit 0
fi
log "an engine no node can take: EngineReady says Unschedulable, in the scheduler's words"
# (ephemeral: a claim waiting for its first consumer would be what Ready names first)
sandbox_apply "$ns" nowhere "  storage: {type: Ephemeral, size: 1Gi}
  resources: {requests: {cpu: \"8\"}}"
unschedulable() { [[ $(reason_of nowhere EngineReady) == Unschedulable ]]; }
wait_for 120 "EngineReady reason Unschedulable" unschedulable ||
  fail "EngineReady of an unschedulable engine: $(dsb_conditions "$ns" nowhere)"
assert_match "the scheduler's words" "cannot be scheduled: .*Insufficient cpu" \
  "$(dsb_get "$ns" nowhere '{.status.conditions[?(@.type=="EngineReady")].message}')"
assert_eq "Ready carries the summary" Unschedulable "$(reason_of nowhere Ready)"
