#!/usr/bin/env bash
# Scale benchmark (`make bench-scale`; prints figures, asserts nothing about time): N sandboxes
# (default 1000) whose engine pods land on fake nodes simulated by KWOK, against the cluster in
# $KUBECONFIG with the operator installed by the chart (as run.sh --bench-scale does). In one run:
#   1. creation: seconds until every sandbox has all its children (Service, 3 Secrets,
#      NetworkPolicy, Pod; and its CA key Secret in the operator's namespace), and the seconds a
#      plain client (examples/plain_client.rs) takes to create those very objects again, one create
#      request each, with the same concurrency; the ratio is the figure;
#   2. steady state, N pending (pods that no node fits): API requests/s and writes/s attributed to
#      the operator (API server audit log, e2e/cluster/config/audit-policy.yaml), by verb/resource;
#   3. steady state, N running on KWOK nodes (pods Running and Ready; no dockerd answers behind them);
#   4. operator peak RSS (VmHWM of its process on this node, and its own metric), reconcile p50/p99
#      from its histogram;
#   5. failover: 2 replicas, the leader killed without releasing the Lease: seconds until another
#      replica leads and has reconciled;
#   6. the activator (when the chart runs it): the class gains lifecycle.idle and places pods
#      nowhere, so every Service routes to the activator on a port of its own: seconds until N
#      slices do, the ports each activator listens on, its memory, and the steady state after.
# Options: E2E_SCALE_N (1000), E2E_SCALE_NODES (10 fake nodes), E2E_SCALE_WINDOW (60 s per
# steady-state window), E2E_SCALE_CONCURRENCY (the operator's --concurrency, 8), E2E_SKIP_INSTALL=1.
# Needs: jq, the local cluster's audit log ($DSB_E2E_STATE/logs/audit-operator.log) for 2-3
# (elsewhere those rows say "no audit log").
set -o errexit -o nounset -o pipefail
E2E_TEST_NAME=bench-scale
source "$(dirname "$0")/lib.sh"

N=${1:-${E2E_SCALE_N:-1000}}
NODES=${E2E_SCALE_NODES:-10}
WINDOW=${E2E_SCALE_WINDOW:-60}
C=${E2E_SCALE_CONCURRENCY:-8}
AUDIT=${E2E_AUDIT_LOG:-$DSB_E2E_STATE/logs/audit-operator.log}
KWOK=$(bash "$E2E_DIR/tools/install-kwok.sh" | tail -n 1)
ns=dsb-bench-scale plain_ns=dsb-bench-plain class=bench-kwok
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
row() { printf '%-58s %s\n' "$1" "$2"; }
RESULTS=()
result() { RESULTS+=("$(row "$1" "$2")"); log "$1: $2"; }

if [[ "${E2E_SKIP_INSTALL:-0}" != 1 ]]; then
  log "installing the operator (concurrency $C)"
  helm_operator --set "operator.concurrency=$C" >"$E2E_ARTIFACTS/bench-scale-helm.log" 2>&1 ||
    { cat "$E2E_ARTIFACTS/bench-scale-helm.log" >&2; fail "operator install failed"; }
fi

# --- KWOK: fake nodes that take pods -----------------------------------------------------------------
kwok_log=$E2E_ARTIFACTS/bench-scale-kwok.log
# KWOK's own "fast" stages (nodes become Ready and keep a heartbeat; pods become Running and Ready
# at once), from the module it was built from.
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
kwok_src=$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION:-v0.8.0}" | jq -r .Dir)
stages=$E2E_ARTIFACTS/bench-scale-kwok-stages.yaml
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
  pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cat "$kwok_src/kustomize/stage/$f"; echo "---"
done >"$stages"
"$KWOK" --kubeconfig="$KUBECONFIG" --config="$stages" --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --cidr=10.250.0.0/16 >"$kwok_log" 2>&1 &
kwok_pid=$!
cleanup() {
  # KWOK stays until the pods on its nodes are gone (it is what finishes their deletion).
  kubectl delete namespace "$ns" "$plain_ns" --wait=true --timeout=180s >/dev/null 2>&1 || true
  kubectl delete "$DSB_CLASS" "$class" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete nodes -l type=kwok --wait=false >/dev/null 2>&1 || true
  kill "$kwok_pid" 2>/dev/null || true
  helm_set --set replicaCount=1 >/dev/null 2>&1 || true
}
trap cleanup EXIT
for ((i = 0; i < NODES; i++)); do
  cat <<YAML
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec:
  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "1000", ephemeral-storage: 1Pi}
  capacity: {cpu: "1000", memory: 4Ti, pods: "1000", ephemeral-storage: 1Pi}
---
YAML
done | kubectl apply -f - >/dev/null
nodes_ready() { (($(kubectl get nodes -l type=kwok --no-headers 2>/dev/null | grep -c ' Ready ') == NODES)); }
wait_for 120 "$NODES KWOK nodes Ready" nodes_ready || fail "KWOK nodes not Ready; see $kwok_log"

# A class for the bench: privileged engines (no sysbox here) on the fake nodes, or (placement
# nowhere) pending forever; ephemeral storage (fake nodes have no volumes).
class_apply() {  # class_apply NODE_SELECTOR_VALUE [LIFECYCLE]
  local lifecycle=${2:-"{}"}
  kubectl apply -f - >/dev/null <<YAML
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandboxClass
metadata: {name: $class}
spec:
  isolation: [privileged]
  image: {allowed: ["*"]}
  placement:
    nodeSelector: {type: $1}
    tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
  storage: {allowedTypes: [Ephemeral]}
  lifecycle: $lifecycle
YAML
}
class_apply nowhere
kubectl create namespace "$ns" >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=privileged >/dev/null

# --- 1. creation ---------------------------------------------------------------------------------------
children_of_all() {  # prints how many sandboxes have all 6 children
  kubectl get pods,services,secrets,networkpolicies -n "$ns" -l app.kubernetes.io/managed-by=dockersandbox-operator \
    -o json | jq '[.items[].metadata.labels["app.kubernetes.io/instance"]] | group_by(.) | map(select(length == 6)) | length'
}
all_children() { (($(children_of_all) >= N)); }
# The engine pod is the last child a reconcile creates: N engine pods mean N complete sandboxes.
# Counting them (a server-side table) is cheap; listing every child as JSON every 2 s would take a
# good part of the two cores from the operator being timed. Checked in full once, afterwards.
engines_of_all() { kubectl get pods -n "$ns" -l app.kubernetes.io/component=engine --no-headers 2>/dev/null | wc -l; }
all_engines() { (($(engines_of_all) >= N)); }
# CPU seconds a process has used so far (local cluster: the operator, kube-apiserver, etcd).
tick=$(getconf CLK_TCK)
cpu_of() { [[ -n ${1:-} && -r /proc/$1/stat ]] && awk -v t="$tick" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$1/stat" || echo 0; }
cpu_now() { echo "$(cpu_of "$(pgrep -f 'dockersandbox-operator run' | head -1)") $(cpu_of "$(pgrep -x kube-apiserver | head -1)") $(cpu_of "$(pgrep -x etcd | head -1)")"; }
cpu_used() {  # cpu_used BEFORE AFTER: "operator O s, kube-apiserver A s, etcd E s" used in between
  awk -v b="$1" -v a="$2" 'BEGIN { split(b, x, " "); split(a, y, " ");
    printf "operator %.1f s, kube-apiserver %.1f s, etcd %.1f s", y[1] - x[1], y[2] - x[2], y[3] - x[3] }'
}
audit_mark() { [[ -f $AUDIT ]] && wc -l <"$AUDIT" || echo 0; }
# The operator is stopped while the sandboxes are applied (kubectl itself takes tens of seconds
# for 1000 objects, which would bound the figure), then started: the time from its caches being
# synced to every sandbox having its engine pod (its last child) is the operator's own creation rate.
deploy=$(kubectl get deploy -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o 'jsonpath={.items[0].metadata.name}')
kubectl scale deploy -n "$E2E_OPERATOR_NAMESPACE" "$deploy" --replicas=0 >/dev/null
no_operator() { [[ -z "$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o name)" ]]; }
wait_for 120 "the operator stopped" no_operator || fail "the operator did not stop"
log "applying $N sandboxes"
t_apply=$(now)
for ((i = 0; i < N; i++)); do
  printf 'apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: s%04d, namespace: %s}\n' "$i" "$ns"
  printf 'spec: {className: %s, image: %s, imagePullPolicy: IfNotPresent, storage: {type: Ephemeral, size: 1Gi, discardOnSuspend: true}}\n---\n' "$class" "$E2E_DIND_IMAGE"
done | kubectl apply --server-side -f - >/dev/null
applied=$(now)
mark=$(audit_mark)
kubectl scale deploy -n "$E2E_OPERATOR_NAMESPACE" "$deploy" --replicas=1 >/dev/null
operator_synced() {
  local pod
  pod=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o 'jsonpath={.items[0].metadata.name}') &&
    kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$pod" 2>/dev/null | grep "caches synced" >/dev/null
}
wait_for 300 "the operator started and synced its caches" operator_synced || fail "the operator did not start"
t0=$(now)
cpu0=$(cpu_now)
wait_for 1800 "all $N engine pods created" all_engines || log "WARNING: only $(engines_of_all)/$N engine pods"
done_at=$(now)
cpu1=$(cpu_now)
op_create=$(secs "$t0" "$done_at")
wait_for 120 "all $N sandboxes have their 6 children" all_children || log "WARNING: only $(children_of_all)/$N complete"
result "sandboxes applied (kubectl, operator stopped)" "$(secs "$t_apply" "$applied") s"
result "operator: children of $N sandboxes ($((N * 6)) objects), from its caches synced" "$op_create s"
result "CPU used meanwhile" "$(cpu_used "$cpu0" "$cpu1")"
creation_requests=$(($( [[ -f $AUDIT ]] && wc -l <"$AUDIT" || echo 0) - mark))

kubectl create namespace "$plain_ns" >/dev/null
# The plain client creates the very objects the operator made: its children and the CA key Secrets.
objects=$E2E_ARTIFACTS/bench-scale-objects.jsonl
{
  kubectl get services,secrets,networkpolicies,pods -n "$ns" -l app.kubernetes.io/managed-by=dockersandbox-operator -o json
  kubectl get secrets -n "$E2E_OPERATOR_NAMESPACE" -l "dockersandbox.dev/sandbox-namespace=$ns" -o json
} | jq -c '.items[]' >"$objects"
log "the operator made $(wc -l <"$objects") objects (children and CA keys) for $N sandboxes"
PLAIN=${E2E_PLAIN_CLIENT:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples/plain_client}
[[ -x $PLAIN ]] || fail "no plain client at $PLAIN (make bench-scale builds it: cargo build --release --example plain_client)"
cpu0=$(cpu_now)
# `times` in the same subshell: the second line is the CPU its children (the plain client) used.
plain=$("$PLAIN" "$plain_ns" "$objects" "$C" 2>>"$E2E_ARTIFACTS/bench-scale-plain.log" && times) ||
  fail "plain client failed; see $E2E_ARTIFACTS/bench-scale-plain.log"
cpu1=$(cpu_now)
plain_cpu=$(sed -n 3p <<<"$plain" | awk '{ split($1, u, "m"); split($2, s, "m"); printf "%.1f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
plain=$(sed -n 1p <<<"$plain")
result "plain client: the same $(wc -l <"$objects") objects, created at concurrency $C" "$plain s"
result "CPU used meanwhile" "plain client $plain_cpu s, $(cpu_used "$cpu0" "$cpu1" | sed 's/^operator [^,]*, //')"
result "creation rate, operator / plain client (target >= 0.7)" "$(awk -v o="$op_create" -v p="$plain" 'BEGIN { printf "%.2f", p / o }')"
if [[ -f $AUDIT ]]; then
  result "operator API requests during creation (all verbs but watch)" "$creation_requests"
  log "creation requests by verb and resource: $(sed -n "$((mark + 1)),$((mark + creation_requests))p" "$AUDIT" |
    jq -r 'select(.verb != "watch") | "\(.verb) \(.objectRef.resource // "")\(if .objectRef.subresource then "/" + .objectRef.subresource else "" end)"' |
    sort | uniq -c | sort -rn | head -12 | tr -s ' ' | tr '\n' ';')"
fi
kubectl delete namespace "$plain_ns" --wait=false >/dev/null

# --- 2./3. steady state, from the audit log --------------------------------------------------------
# window LABEL: requests by the operator in the next $WINDOW seconds (watches excluded: they are
# long-lived streams, not polling), per second, split into reads and writes, top verb/resource.
window() {
  local label=$1 from lines
  if [[ ! -f $AUDIT ]]; then result "$label" "no audit log ($AUDIT)"; return; fi
  from=$(wc -l <"$AUDIT")
  sleep "$WINDOW"
  lines=$(tail -n +"$((from + 1))" "$AUDIT" | jq -c 'select(.verb != "watch") | {verb, r: ((.objectRef.resource // "") + (if .objectRef.subresource then "/" + .objectRef.subresource else "" end))}' || true)
  local total writes
  total=$(grep -c . <<<"$lines" || true)
  writes=$(grep -cE '"verb":"(create|update|patch|delete|deletecollection)"' <<<"$lines" || true)
  result "$label: requests/s (writes/s)" "$(awk -v t="$total" -v w="$writes" -v s="$WINDOW" 'BEGIN { printf "%.2f (%.2f)", t / s, w / s }')"
  if ((total > 0)); then
    log "$label, by verb and resource: $(jq -r '"\(.verb) \(.r)"' <<<"$lines" | sort | uniq -c | sort -rn | head -5 | tr -s ' ' | tr '\n' ';')"
  fi
}
log "steady state with $N pending sandboxes (no node fits their pods): ${WINDOW}s after a 30s settle"
sleep 30
window "steady, $N pending"

log "moving the engines onto the KWOK nodes (class placement type=kwok): pods recreated, Running, Ready"
class_apply kwok
running_all() {
  (($(kubectl get pods -n "$ns" -l app.kubernetes.io/component=engine --field-selector=status.phase=Running \
    --no-headers 2>/dev/null | wc -l) >= N))
}
t1=$(now)
wait_for 1800 "$N engine pods Running on KWOK nodes" running_all || log "WARNING: not all engine pods Running"
result "engines rolled onto KWOK nodes (class change -> $N pods Running)" "$(secs "$t1" "$(now)") s"
sleep 30
window "steady, $N running on KWOK (dockerd never answers)"

# --- 4. memory and reconcile latency --------------------------------------------------------------------
op_pod=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o jsonpath='{.items[0].metadata.name}')
metrics=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/$op_pod:8080/proxy/metrics")
peak=$(awk '/^dockersandbox_process_peak_resident_memory_bytes /{ printf "%.1f", $2 / 1048576 }' <<<"$metrics")
result "operator peak RSS at $N (its metric; target <= 48 MiB)" "${peak:-?} MiB"
pid=$(pgrep -f 'dockersandbox-operator run' | head -1 || true)
if [[ -n $pid ]]; then
  result "operator VmHWM (from /proc on this node)" "$(awk '/VmHWM/{ printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status")"
  # What stays once the churn is over, and how much of it is the heap (anon) rather than the binary.
  result "operator RSS now: total (heap and stacks; binary and libraries)" \
    "$(awk '/^(VmRSS|RssAnon|RssFile):/{ v[$1] = $2 / 1024 } END { printf "%.1f MiB (%.1f; %.1f)", v["VmRSS:"], v["RssAnon:"], v["RssFile:"] }' "/proc/$pid/status")"
fi
quantile() {  # quantile Q: from the histogram buckets (upper bound of the bucket holding it)
  awk -v q="$1" '/^dockersandbox_reconcile_duration_seconds_bucket/ {
      match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5); n = $NF; les[++k] = le; cs[k] = n; total = n }
    END { for (i = 1; i <= k; i++) if (cs[i] >= q * total) { print les[i]; exit } }' <<<"$metrics"
}
count=$(awk '/^dockersandbox_reconcile_duration_seconds_count/{ print $2 }' <<<"$metrics")
result "reconciles so far; p50 / p99 (histogram bucket bounds, s)" "${count:-?}; $(quantile 0.5) / $(quantile 0.99)"

# --- 5. failover ------------------------------------------------------------------------------------
if helm get values "$E2E_RELEASE" -n "$E2E_OPERATOR_NAMESPACE" -a 2>/dev/null | grep -q '^leaderElection:'; then
  helm_set --set replicaCount=2 >/dev/null
  lease_holder() { kubectl get lease -n "$E2E_OPERATOR_NAMESPACE" dockersandbox-operator -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null; }
  two() { (($(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" --no-headers | grep -c ' 1/1 ') == 2)); }
  wait_for 180 "2 operator replicas ready" two || true
  leader=$(lease_holder)
  killed=$(now)
  kubectl delete pod -n "$E2E_OPERATOR_NAMESPACE" "$leader" --grace-period=0 --force >/dev/null 2>&1 || true
  moved() { local h; h=$(lease_holder); [[ -n $h && $h != "$leader" ]]; }
  wait_for 120 "another replica leads" moved || true
  new=$(lease_holder)
  synced() { kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$new" 2>/dev/null | grep "caches synced" >/dev/null; }  # not -q: with pipefail, kubectl's SIGPIPE would make a match count as a miss
  wait_for 120 "the new leader reconciles" synced || true
  stamp=$(kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$new" | grep -m1 "caches synced" | grep -oE '^[0-9T:.-]+Z' || true)
  if [[ -n $stamp ]]; then
    result "failover at $N: leader killed -> new leader reconciling (target <= 15 s)" "$(secs "$killed" "$(date -d "$stamp" +%s.%N)") s"
  else
    result "failover" "no 'caches synced' line from $new"
  fi
else
  result "failover" "skipped (the chart has no leader election)"
fi

# --- 6. the activator with N sandboxes routed to it ----------------------------------------------------
# An engine that may idle (the class's lifecycle.idle) is held for at the activator while it is not
# ready: with placement nowhere no engine pod has an address, so every sandbox's Service routes to
# the activator, each on a port of its own with its NetworkPolicy: what N idle-suspended engines
# are to the activator (KWOK has no dockerd, so no engine can idle for real).
if [[ -n "$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" -o name)" ]]; then
  class_apply nowhere '{idle: {suspendAfter: 1h}}'
  t1=$(now)
  routed() { kubectl get endpointslices -n "$ns" -l dockersandbox.dev/route=activator --no-headers 2>/dev/null | wc -l; }
  routed_all() { (($(routed) >= N)); }
  wait_for 1800 "$N Services routed to the activator" routed_all || log "WARNING: only $(routed)/$N routed"
  result "class change -> $N Services routed to the activator (a slice and a port policy each)" "$(secs "$t1" "$(now)") s"
  sleep 20
  for apod in $(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" -o name); do
    am=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/${apod#pod/}:8080/proxy/metrics" 2>/dev/null || true)
    result "activator ${apod#pod/}: ports listened on" "$(awk '/^dockersandbox_activator_ports /{ print $2 }' <<<"$am")"
  done
  for apid in $(pgrep -f 'dockersandbox-operator activator' || true); do
    result "activator process $apid: VmHWM; RSS (heap and stacks; binary and libraries)" \
      "$(awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/{ v[$1] = $2 / 1024 } END { printf "%.1f MiB; %.1f MiB (%.1f; %.1f)", v["VmHWM:"], v["VmRSS:"], v["RssAnon:"], v["RssFile:"] }' "/proc/$apid/status")"
  done
  window "steady, $N routed to the activator"
else
  result "activator" "skipped (activator.enabled=false)"
fi

echo
echo "== bench-scale: N=$N sandboxes, $NODES KWOK nodes, operator concurrency $C, $(nproc) cores, $(date -u +%F)"
printf '%s\n' "${RESULTS[@]}"
