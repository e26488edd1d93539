#!/usr/bin/env bash
# Benchmark (not a test; asserts nothing about time): against the cluster in $KUBECONFIG (it installs
# the operator with the chart first, as run-tests.sh does, unless E2E_SKIP_INSTALL=1), measure
#   1. N DockerSandboxes applied together: seconds from `kubectl apply` to phase Ready (min/median/max);
#   2. N bare engine pods, same image, no operator: a copy of the operator's engine pod (privileged,
#      same command, server certificate, volume type and exec probes `docker version`), applied
#      together; seconds from apply to pod Ready;
#   3. claims: a DockerSandboxPool of E2E_BENCH_CLAIMS (20) engines, claimed one after another:
#      seconds from apply to phase Ready, and to `docker version` answering through the claim's own
#      Service with its own client certificate (p50, p99); then E2E_BENCH_COLD (3) claims of the
#      emptied pool (cold starts), the same two figures;
#   4. the operator's peak memory: VmHWM of its process when the node is this machine, else its
#      process_resident_memory_bytes metric (current RSS) through the API server's service proxy.
#
#   e2e/bench.sh [N]          (or E2E_BENCH_N=5 e2e/bench.sh)
# Options: E2E_BENCH_N (5), E2E_BENCH_STORAGE (pvc|emptydir, the bare pods' /var/lib/docker; pvc
# matches what the operator does), E2E_BENCH_RESTART_OPERATOR (1: restart the operator first so its
# peak memory covers only this run), E2E_BENCH_TIMEOUT (600 s per phase).
set -o errexit -o nounset -o pipefail
E2E_TEST_NAME=bench
source "$(dirname "$0")/lib.sh"

N=${1:-${E2E_BENCH_N:-5}}
STORAGE=${E2E_BENCH_STORAGE:-pvc}
RESTART=${E2E_BENCH_RESTART_OPERATOR:-1}
T=${E2E_BENCH_TIMEOUT:-600}
now() { date +%s.%N; }

if [[ "${E2E_SKIP_INSTALL:-0}" != 1 ]]; then
  log "installing the operator: helm upgrade --install $E2E_RELEASE $E2E_CHART (image $E2E_OPERATOR_IMAGE)"
  helm_operator >"$E2E_ARTIFACTS/bench-helm-install.log" 2>&1 ||
    { cat "$E2E_ARTIFACTS/bench-helm-install.log" >&2; echo "operator install failed" >&2; exit 2; }
fi
kubectl get crd "$DSB" >/dev/null 2>&1 || { echo "operator/CRD not installed" >&2; exit 2; }

# stats: read numbers on stdin (one a line; blank lines ignored), print "min median max" (1 decimal)
stats() {
  sort -g | awk 'NF { v[++n] = $1 } END {
    if (n == 0) { print "- - -"; exit }
    m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    printf "%.1f %.1f %.1f\n", v[1], m, v[n] }'
}

# time_until_ready T0 WHAT LISTER: every 0.5 s run LISTER, which prints "NAME true|false" (ready or
# not) for each object, until $N objects were seen ready or $T seconds passed. Prints, one a line,
# the seconds from T0 (a `now` timestamp) to the poll that first saw each object ready.
time_until_ready() {
  local t0=$1 what=$2 lister=$3 states t n ready deadline
  local -A at=()
  deadline=$(($(date +%s) + T))
  while ((${#at[@]} < N)) && (($(date +%s) < deadline)); do
    states=$("$lister") || states=""
    t=$(now)
    while read -r n ready; do
      if [[ "$ready" == true && -z "${at[$n]:-}" ]]; then at[$n]=$t; fi
    done <<<"$states"
    sleep 0.5
  done
  ((${#at[@]} == N)) || log "WARNING: only ${#at[@]}/$N $what became Ready within ${T}s"
  for n in "${!at[@]}"; do awk -v a="${at[$n]}" -v b="$t0" 'BEGIN { printf "%.2f\n", a - b }'; done
}

# result_row LABEL TIMES: one line of the result table (count, min, median, max of TIMES)
result_row() {
  local count s
  count=$(grep -c . <<<"$2" || true)
  read -r -a s <<<"$(stats <<<"$2")"
  printf '%-44s %3s %8s %8s %8s\n' "$1" "$count" "${s[@]}"
}

if [[ "$RESTART" == 1 ]]; then
  d=$(operator_deployment)
  if [[ -n "$d" ]]; then
    log "restarting the operator so that its peak memory covers this run only"
    kubectl rollout restart -n "$E2E_OPERATOR_NAMESPACE" "$d" >&2
    kubectl rollout status -n "$E2E_OPERATOR_NAMESPACE" "$d" --timeout=300s >&2
    # A ready pod may still be a standby, or listing: the sandboxes are timed against an operator
    # that leads and has its caches (as users meet it), not against its start-up.
    newest_synced() {
      local pod
      pod=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" \
        --sort-by=.metadata.creationTimestamp -o 'jsonpath={.items[-1:].metadata.name}') &&
        kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$pod" | grep "caches synced" >/dev/null
    }
    wait_for 120 "the restarted operator leads and has its caches" newest_synced ||
      log "WARNING: the restarted operator did not say its caches are synced"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 1. sandboxes
ns_new sns bench-dsb
manifest=""
for i in $(seq 1 "$N"); do
  manifest+="$(sandbox_manifest "$sns" "b$i" "  storage: {size: 1Gi, reclaimPolicy: Delete}")"$'\n---\n'
done
log "applying $N sandboxes"
sandbox_states() {
  kubectl get "$DSB" -n "$sns" -o json | jq -r '.items[] | "\(.metadata.name) \(.status.phase == "Ready")"'
}
t0=$(now)
kubectl apply -f - >/dev/null <<<"$manifest"
dsb_times=$(time_until_ready "$t0" sandboxes sandbox_states)
log "sandbox apply->Ready: $(tr '\n' ' ' <<<"$dsb_times")"

# operator memory now (before the sandboxes are deleted)
operator_memory() {
  local pod uid pid hwm svc metrics v name found=0
  pod=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" \
    --field-selector=status.phase=Running -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)
  uid=$(kubectl get pod -n "$E2E_OPERATOR_NAMESPACE" "$pod" -o 'jsonpath={.metadata.uid}' 2>/dev/null || true)
  if [[ -n "$uid" ]]; then
    # local node: the operator process whose cgroup names the operator pod
    for pid in $(pgrep -f 'dockersandbox-operator' 2>/dev/null || true); do
      if grep -qE "pod(${uid}|${uid//-/_})" "/proc/$pid/cgroup" 2>/dev/null; then
        hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        if [[ -n "$hwm" ]]; then
          printf 'peak RSS (VmHWM, pid %s on this node)|%s\n' "$pid" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
          found=1
        fi
      fi
    done
  fi
  svc=$(kubectl get svc -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR,app.kubernetes.io/component=metrics" \
    -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)
  svc=${svc:-$E2E_RELEASE-metrics}
  metrics=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/services/http:$svc:8080/proxy/metrics" 2>/dev/null || true)
  for name in dockersandbox_process_peak_resident_memory_bytes process_resident_memory_bytes dockersandbox_process_resident_memory_bytes; do
    v=$(awk -v m="$name" '$1 == m {print $2; exit}' <<<"$metrics")
    if [[ -n "$v" ]]; then
      printf '%s (/metrics)|%s\n' "$name" "$(awk -v b="$v" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
      found=1
    fi
  done
  ((found)) || echo "operator memory|unavailable"
}
op_mem=$(operator_memory)

# steady state with the N engines Ready: what reading what is inside them costs (the install's
# --engine-facts-interval): requests to engines per minute (the operator's own counter), status
# writes per minute (sandboxes whose resourceVersion moved; target 0 when nothing changes inside
# them), and the operator's CPU (its process on this node, when local).
# The leader's count: the requests are the leader's, and behind the metrics Service a standby
# replica could answer instead.
op_metrics() { leader_metrics 2>/dev/null | awk '$1 == "dockersandbox_engine_requests_total" {print $2; exit}'; }
op_cpu() {
  local pid tick
  tick=$(getconf CLK_TCK)
  pid=$(pgrep -f 'dockersandbox-operator run' | head -1 || true)
  [[ -n "$pid" && -r /proc/$pid/stat ]] && awk -v t="$tick" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat" || echo ""
}
versions() { kubectl get "$DSB" -n "$sns" -o json | jq -r '.items[] | "\(.metadata.name) \(.metadata.resourceVersion)"' | sort; }
interval=$(kubectl get deploy -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o json |
  jq -r '[.items[0].spec.template.spec.containers[0].args[] | select(startswith("--engine-facts-interval="))][0] // "=180"' |
  cut -d= -f2)
window=$((interval * 3 < 60 ? 60 : interval * 3))
# Settle one interval first: the sandboxes just became Ready, and their first reads are news.
log "steady state: settling ${interval}s, then measuring ${window}s (facts every ${interval}s)"
sleep "$interval"
r0=$(op_metrics) c0=$(op_cpu) v0=$(versions)
sleep "$window"
r1=$(op_metrics) c1=$(op_cpu) v1=$(versions)
changed=$(comm -13 <(echo "$v0") <(echo "$v1") | grep -c . || true)
steady="requests to engines per minute, $N Ready engines, facts every ${interval}s|"
steady+=$(awk -v a="${r0:-}" -v b="${r1:-}" -v w="$window" 'BEGIN { if (a == "" || b == "") print "unavailable"; else printf "%.0f", (b - a) * 60 / w }')
steady+=$'\n'"sandboxes with a status write per minute, nothing changing inside them (target 0)|$(awk -v c="$changed" -v w="$window" 'BEGIN { printf "%.1f", c * 60 / w }')"
steady+=$'\n'"operator CPU seconds per minute meanwhile|$(awk -v a="${c0:-}" -v b="${c1:-}" -v w="$window" 'BEGIN { if (a == "" || b == "") print "unavailable (not on this node)"; else printf "%.2f", (b - a) * 60 / w }')"
log "steady state: $(tr '\n' ';' <<<"$steady")"

# template for the bare pods: the operator's own engine pod
tmpl=$(kubectl get pod -n "$sns" b1-engine -o json)
image=$(jq -r '.spec.containers[] | select(.name == "dockerd") | .image' <<<"$tmpl")
server_secret=$(jq -r '.spec.volumes[] | select(.secret.secretName != null) | .secret.secretName' <<<"$tmpl" | grep -m1 server || true)
[[ -n "$server_secret" ]] || server_secret=b1-server
storage_class=$(kubectl get pvc -n "$sns" b1-docker -o 'jsonpath={.spec.storageClassName}' 2>/dev/null || true)

# ---------------------------------------------------------------------------------------------
# 2. bare engine pods
ns_new bns bench-bare
# shellcheck disable=SC2154  # bns is assigned by ns_new (printf -v), which shellcheck cannot follow
kubectl get secret -n "$sns" "$server_secret" -o json |
  jq --arg ns "$bns" '{apiVersion: "v1", kind: "Secret", type: .type, data: .data, metadata: {name: .metadata.name, namespace: $ns}}' |
  kubectl apply -f - >/dev/null
log "deleting the $N sandboxes before the bare run"
kubectl delete "$DSB" -n "$sns" --all --wait=true --timeout=300s >/dev/null || log "WARNING: sandbox deletion slow"
no_pods() { [[ -z "$(kubectl get pods -n "$sns" -o name 2>/dev/null)" ]]; }
wait_for 300 "engine pods of the sandboxes gone" no_pods || log "WARNING: engine pods still terminating"
# Their volumes too: the provisioner's clean-up of them would otherwise compete with the bare run.
no_volumes() { ! kubectl get pv -o 'jsonpath={.items[*].spec.claimRef.namespace}' | grep -qw "$sns"; }
wait_for 300 "volumes of the sandboxes gone" no_volumes || log "WARNING: volumes of the sandboxes still there"

# the operator's engine pod already has exec probes running `docker version`; they are kept as they are
# so that both runs wait for the same signal. Only if it had none, add one.
probe='docker --host unix:///var/run/docker.sock version'
bare=""
for i in $(seq 1 "$N"); do
  pod=$(jq --arg ns "$bns" --arg name "bare$i" --arg probe "$probe" --arg storage "$STORAGE" --arg pvc "bare$i-docker" '
    {apiVersion: "v1", kind: "Pod",
     metadata: {name: $name, namespace: $ns, labels: {"dockersandbox.dev/bench": "bare"}},
     spec: (.spec
       | del(.nodeName, .serviceAccountName, .serviceAccount, .hostname, .subdomain, .priority, .enableServiceLinks)
       | .volumes = [(.volumes[]
           | if .persistentVolumeClaim != null then
               (if $storage == "pvc" then {name: .name, persistentVolumeClaim: {claimName: $pvc}}
                else {name: .name, emptyDir: {}} end)
             elif (.projected != null and (.name | startswith("kube-api-access"))) then empty
             else . end)]
       | .automountServiceAccountToken = false
       | .containers = [.containers[]
           | .volumeMounts = [(.volumeMounts // [])[] | select(.name | startswith("kube-api-access") | not)]
           | if .name == "dockerd" and .readinessProbe == null then
               .readinessProbe = {exec: {command: ["sh", "-c", $probe]}, periodSeconds: 2, timeoutSeconds: 5}
             else . end])
    }' <<<"$tmpl")
  bare+="$pod"$'\n'
  if [[ "$STORAGE" == pvc ]]; then
    bare+="$(jq -n --arg ns "$bns" --arg name "bare$i-docker" --arg sc "$storage_class" \
      '{apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: {name: $name, namespace: $ns},
        spec: ({accessModes: ["ReadWriteOnce"], resources: {requests: {storage: "1Gi"}}}
               + (if $sc == "" then {} else {storageClassName: $sc} end))}')"$'\n'
  fi
done
log "applying $N bare engine pods ($image, /var/lib/docker on $STORAGE)"
bare_states() {
  kubectl get pods -n "$bns" -l dockersandbox.dev/bench=bare -o json |
    jq -r '.items[] | "\(.metadata.name) \([.status.conditions // [] | .[] | select(.type == "Ready")][0].status == "True")"'
}
t0=$(now)
jq -s '{apiVersion: "v1", kind: "List", items: .}' <<<"$bare" | kubectl apply -f - >/dev/null
bare_times=$(time_until_ready "$t0" "bare pods" bare_states)
log "bare apply->Ready: $(tr '\n' ' ' <<<"$bare_times")"

# ---------------------------------------------------------------------------------------------
# 3. claims from a warm pool, one after another, and cold starts (the pool emptied) in the same run
CLAIMS=${E2E_BENCH_CLAIMS:-20} COLD=${E2E_BENCH_COLD:-3}
ns_new pns bench-pool
POOL=dockersandboxpools.dockersandbox.dev
log "pool of $CLAIMS engines in $pns"
# shellcheck disable=SC2154  # pns is assigned by ns_new (printf -v)
jq -n --arg ns "$pns" --arg image "$E2E_DIND_IMAGE" --argjson n "$CLAIMS" '{apiVersion: "dockersandbox.dev/v1alpha1",
    kind: "DockerSandboxPool", metadata: {name: "warm", namespace: $ns},
    spec: {replicas: $n, template: {spec: {image: $image, imagePullPolicy: "IfNotPresent",
      storage: {type: "Ephemeral", size: "1Gi"}}}}}' | kubectl apply -f - >/dev/null
pool_full() { (($(kubectl get "$POOL" -n "$pns" warm -o 'jsonpath={.status.ready}' || echo 0) >= CLAIMS)); }
wait_for "$T" "the pool has $CLAIMS ready engines" pool_full || log "WARNING: the pool did not fill"
# A client pod whose docker CLI uses each claim's certificates as soon as the claim is Ready.
client_pod_create "$pns" client "tcp://unused:2376"
# claim_once NAME: apply a claim, print "READY_SECONDS DOCKER_SECONDS" (`docker version` answering
# through the claim's own Service with its own client certificate), both from the apply.
claim_once() {
  local name=$1 t0 ready t
  t0=$(now)
  printf 'apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: %s, namespace: %s}\nspec: {poolRef: warm}\n' \
    "$name" "$pns" | kubectl apply -f - >/dev/null
  until [[ $(kubectl get "$DSB" -n "$pns" "$name" -o 'jsonpath={.status.phase}' 2>/dev/null) == Ready ]]; do
    (($(date +%s) - ${t0%.*} < T)) || { echo "- -"; return; }
    sleep 0.05
  done
  ready=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  kubectl get secret -n "$pns" "$name-client" -o json | jq -r '.data | to_entries[] | "\(.key) \(.value)"' |
    kubectl exec -i -n "$pns" client -- sh -c \
      "mkdir -p /tmp/$name && while read -r k v; do echo \"\$v\" | base64 -d > /tmp/$name/\$k; done"
  until kubectl exec -n "$pns" client -- env DOCKER_HOST="tcp://$name.$pns.svc:2376" DOCKER_TLS_VERIFY=1 \
    DOCKER_CERT_PATH="/tmp/$name" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; do
    (($(date +%s) - ${t0%.*} < T)) || { echo "$ready -"; return; }
    sleep 0.05
  done
  t=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  echo "$ready $t"
}
# claims PREFIX COUNT: COUNT claims one after another; sets claim_ready and claim_docker (a figure a line)
claims() {
  local i r d
  claim_ready="" claim_docker=""
  for i in $(seq 1 "$2"); do
    read -r r d <<<"$(claim_once "$1$i")"
    claim_ready+="$r"$'\n' claim_docker+="$d"$'\n'
  done
}
claims w "$CLAIMS"
warm_ready=$claim_ready warm_docker=$claim_docker
log "warm claims apply->Ready: $(tr '\n' ' ' <<<"$warm_ready")"
log "warm claims apply->docker answers: $(tr '\n' ' ' <<<"$warm_docker")"
kubectl scale "$POOL" -n "$pns" warm --replicas=0 >/dev/null
pool_empty() { [[ -z $(kubectl get "$DSB" -n "$pns" -l dockersandbox.dev/pool=warm -o name) ]]; }
wait_for "$T" "the pool emptied" pool_empty || log "WARNING: the pool kept engines"
claims c "$COLD"
cold_ready=$claim_ready cold_docker=$claim_docker
log "cold claims apply->Ready: $(tr '\n' ' ' <<<"$cold_ready")"
# pct P: the P-th percentile (nearest rank) of the numbers on stdin
pct() {
  grep -E '^[0-9.]+$' | sort -g | awk -v p="$1" '{ v[++n] = $1 } END { if (!n) { print "-"; exit }
    r = int((p / 100) * n + 0.999999); if (r < 1) r = 1; print v[r] }'
}

# ---------------------------------------------------------------------------------------------
echo
printf '%-44s %3s %8s %8s %8s\n' "measure (seconds)" N min median max
result_row "DockerSandbox apply -> phase Ready" "$dsb_times"
result_row "bare engine pod apply -> pod Ready ($STORAGE)" "$bare_times"
while IFS='|' read -r what value; do printf '%-68s %s\n' "operator $what" "$value"; done <<<"$op_mem"
while IFS='|' read -r what value; do printf '%-68s %s\n' "$what" "$value"; done <<<"$steady"
result_row "claim from a warm pool apply -> Ready" "$warm_ready"
result_row "claim from a warm pool apply -> docker answers" "$warm_docker"
result_row "claim, pool empty (cold) apply -> Ready" "$cold_ready"
result_row "claim, pool empty (cold) -> docker answers" "$cold_docker"
printf '%-68s %s\n' "warm claims apply -> Ready p50 / p99 (target 1 / 2 s)" \
  "$(pct 50 <<<"$warm_ready") / $(pct 99 <<<"$warm_ready")"
printf '%-68s %s\n' "warm claims apply -> docker answers p50 / p99 (target 1.5 s)" \
  "$(pct 50 <<<"$warm_docker") / $(pct 99 <<<"$warm_docker")"
echo "(image $image; $N applied together; kubernetes $(kubectl version -o json 2>/dev/null | jq -r .serverVersion.gitVersion))"
