#!/usr/bin/env bash
# e2e: about 200s
# Wake on connect for every client (the activator), from pods that use only DOCKER_HOST and the
# client Secret (no plugin), with a sandbox whose engine idles after 20s:
#  - once idle-suspended, its Service routes to the activator: the EndpointSlice is labelled
#    dockersandbox.dev/route=activator and names the activator's pods on a port of the sandbox's
#    own, and a NetworkPolicy in the operator's namespace admits the engine's peers to that port;
#  - a pod in a namespace the engine's policy does not admit cannot wake it (it stays Suspended);
#  - `docker run --rm` from an admitted pod wakes it and succeeds; Event WokenByConnection; the
#    sandbox is Ready afterwards and its Service routes to the engine pod again; the activator's
#    port policy is gone;
#  - an engine suspended by spec.suspend is not woken: the connection is refused at once;
#  - a sandbox deleted while a connection to it is held: the connection is closed at once;
#  - both activator pods killed while they hold a connection: the client sees an error, the sandbox
#    still ends Ready (the wake was asked for), and the next connection works.
#  - a slice forged with the operator's labels in another namespace (edit cannot write slices; a
#    cluster admin plays the tenant allowed to) opens no activator port.
# Figures (printed, not asserted): docker run against an idle-suspended engine, and the activator's
# own wake latency (connection to first byte from dockerd).
source "$(dirname "$0")/../lib.sh"

activators=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" -o name)
[[ -n "$activators" ]] || skip "no activator pods (activator.enabled=false)"

class=""
class_like_default class act '{"stopGracePeriodSeconds": 20, "idle": {"suspendAfter": "1h"}}'

ns=""; cns=""; ons=""
ns_new ns act
ns_new cns act-client
ns_new ons act-outsider
# Not labelled dockersandbox.dev/e2e: the engine's policy (the e2e class's allowFrom) does not admit it.
kubectl label namespace "$ons" dockersandbox.dev/e2e- >/dev/null
sandbox_apply "$ns" nap "  className: $class"$'\n'"  idle: {suspendAfter: 20s}"
# doomed idles meanwhile; it is deleted while a connection to it is held
sandbox_apply "$ns" doomed "  className: $class"$'\n'"  idle: {suspendAfter: 20s}"
wait_ready "$ns" nap
make_client "$cns" client "$ns" nap
make_client "$ons" outsider "$ns" nap
retry 10 docker_answers "$cns" client >/dev/null || fail "nap does not answer its client"
load_nested_image "$cns" client

suspended() { [[ "$(dsb_get "$1" "$2" '{.status.phase}')" == Suspended ]]; }
route() { kubectl get endpointslice -n "$1" "$2" -o 'jsonpath={.metadata.labels.dockersandbox\.dev/route}' 2>/dev/null; }
to_activator() { [[ "$(route "$1" "$2")" == activator ]]; }
to_engine() {
  local ip
  ip=$(kubectl get pod -n "$1" "$2-engine" -o 'jsonpath={.status.podIP}' 2>/dev/null) && [[ -n "$ip" ]] &&
    [[ -z "$(route "$1" "$2")" ]] &&
    [[ "$(kubectl get endpointslice -n "$1" "$2" -o 'jsonpath={.endpoints[0].addresses[0]}')" == "$ip" ]]
}
idle_suspend() {  # idle_suspend NS NAME: waits until the engine is idle-suspended and routed to the activator
  wait_for 150 "$2 suspended for idleness" suspended "$1" "$2" ||
    fail "$2 was not suspended: $(dsb_conditions "$1" "$2")"
  assert_eq "$2 suspension cause" Idle "$(dsb_get "$1" "$2" '{.status.suspension.cause}')"
  wait_for 30 "$2's Service routed to the activator" to_activator "$1" "$2" ||
    fail "the Service of $2 does not route to the activator: $(kubectl get endpointslice -n "$1" "$2" -o yaml)"
}

# --- idle-suspended: the Service routes to the activator, on the sandbox's own port
idle_suspend "$ns" nap
slice=$(kubectl get endpointslice -n "$ns" nap -o json)
port=$(jq -r '.ports[0].port' <<<"$slice")
((port >= 20000 && port <= 29999)) || fail "the activator port $port is outside the chart's range"
want=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" -o json |
  jq -r '[.items[] | select(.status.conditions[]? | .type == "Ready" and .status == "True") | .status.podIP] | sort | join(",")')
assert_eq "the slice names the ready activator pods" "$want" "$(jq -r '[.endpoints[].addresses[0]] | sort | join(",")' <<<"$slice")"
uid=$(dsb_get "$ns" nap '{.metadata.uid}')
policy=$(kubectl get networkpolicy -n "$E2E_OPERATOR_NAMESPACE" "activator-$uid" -o json) ||
  fail "no NetworkPolicy activator-$uid for the activator port"
assert_eq "the policy admits that port" "$port" "$(jq -r '.spec.ingress[0].ports[0].port' <<<"$policy")"
log "ok: nap routed to the activator on port $port, admitted by NetworkPolicy activator-$uid"

# --- a pod the engine's policy does not admit cannot wake it
kubectl exec -n "$ons" outsider -- timeout 15 docker version >/dev/null 2>&1 && fail "the outsider reached the idle engine"
still_true 15 suspended "$ns" nap || fail "the outsider's connection woke nap: $(dsb_conditions "$ns" nap)"
log "ok: a client from $ons (not admitted by the engine's policy) did not wake nap"

# --- an admitted client's docker run wakes it
t0=$(date +%s.%N)
out=$(cdocker "$cns" client run --rm "$E2E_NESTED_IMAGE" echo awake 2>&1) || fail "docker run against the idle engine failed: $out"
run_secs=$(echo "$(date +%s.%N) - $t0" | bc)
assert_eq "docker run through the activator" awake "$out"
assert_eq "phase after the wake" Ready "$(dsb_get "$ns" nap '{.status.phase}')"
normal_event() {
  kubectl get events -n "$1" -o json | jq -e --arg n "$2" --arg r "$3" \
    '[.items[] | select(.reason == $r and .involvedObject.name == $n)] | length > 0' >/dev/null
}
wait_for 30 "Event WokenByConnection" normal_event "$ns" nap WokenByConnection || fail "no WokenByConnection Event"
wait_for 30 "nap's Service routed to the engine again" to_engine "$ns" nap || fail "the Service still routes elsewhere"
policy_gone() { ! kubectl get networkpolicy -n "$E2E_OPERATOR_NAMESPACE" "activator-$uid" >/dev/null 2>&1; }
wait_for 30 "the activator port's policy gone" policy_gone || fail "NetworkPolicy activator-$uid stayed"
metrics=""
for pod in $activators; do
  metrics+=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/${pod#pod/}:8080/proxy/metrics" 2>/dev/null || true)
  metrics+=$'\n'
done
wake=$(awk '/^dockersandbox_activator_wake_duration_seconds_(sum|count)/ { s[$1] += $2 }
  END { for (k in s) if (k ~ /count/) c = s[k]; else t = s[k]; if (c > 0) printf "%.2f s over %d connection(s)", t / c, c }' <<<"$metrics")
[[ -n "$wake" ]] || fail "no wake latency on the activators' /metrics: $(grep activator <<<"$metrics" | head)"
grep -qE '^dockersandbox_activator_wakes_total [1-9]' <<<"$metrics" || fail "no wakes_total on the activators' /metrics"
# The held connections went to the engine through the activator (its address checked against the
# engine pod's status), not around it.
grep -qE '^dockersandbox_activator_connections_total\{outcome="spliced"\} [1-9]' <<<"$metrics" ||
  fail "no connection spliced to the engine: $(grep connections_total <<<"$metrics")"
log "FIGURE docker run --rm against an idle-suspended engine through its Service: ${run_secs}s; activator wake latency (connection to first byte from dockerd): $wake"

# --- deleted while a connection is held: closed at once (not after the wake timeout)
idle_suspend "$ns" doomed
t0=$(date +%s.%N)
kubectl exec -n "$cns" client -- env DOCKER_HOST="tcp://doomed.$ns.svc:2376" timeout 60 docker version >/dev/null 2>&1 &
held_pid=$!
wake_asked() { [[ -n "$(kubectl get "$DSB" -n "$1" "$2" -o 'jsonpath={.metadata.annotations.dockersandbox\.dev/wake}')" ]]; }
wait_for 30 "the held connection to doomed asked for a wake" wake_asked "$ns" doomed || fail "no wake was asked for doomed"
kubectl delete "$DSB" -n "$ns" doomed --wait=false >/dev/null
wait "$held_pid" && fail "a connection to a deleted sandbox succeeded"
held_secs=$(echo "$(date +%s.%N) - $t0" | bc)
((${held_secs%.*} < 55)) || fail "the held connection to the deleted sandbox lasted until the client gave up (${held_secs}s)"
log "ok: the connection held for doomed ended ${held_secs}s after it began, once doomed was deleted"

# --- suspended by spec.suspend: refused at once, not woken
kubectl patch "$DSB" -n "$ns" nap --type=merge -p '{"spec":{"suspend":true}}' >/dev/null
wait_for 60 "nap suspended by its spec" suspended "$ns" nap || fail "nap was not suspended"
t0=$(date +%s.%N)
cdocker "$cns" client version >/dev/null 2>&1 && fail "docker reached an engine suspended by spec.suspend"
refused_secs=$(echo "$(date +%s.%N) - $t0" | bc)
[[ "$(route "$ns" nap)" != activator ]] || fail "a spec-suspended engine's Service routes to the activator"
still_true 10 suspended "$ns" nap || fail "a connection woke a spec-suspended engine"
log "ok: a spec-suspended engine refused the client in ${refused_secs}s and stayed Suspended"

# --- the activators killed while they hold a connection
kubectl patch "$DSB" -n "$ns" nap --type=merge -p '{"spec":{"suspend":false}}' >/dev/null
wait_ready "$ns" nap
idle_suspend "$ns" nap
wake_token() { kubectl get "$DSB" -n "$1" "$2" -o 'jsonpath={.metadata.annotations.dockersandbox\.dev/wake}'; }
before=$(wake_token "$ns" nap)
cdocker "$cns" client version >"$E2E_ARTIFACTS/26-held.log" 2>&1 &
held_pid=$!
woken() { [[ "$(wake_token "$1" "$2")" != "$before" ]]; }
# The wake asked for (the annotation), the connection still held: kill every activator pod.
wait_for 30 "the held connection asked for a wake" woken "$ns" nap || fail "no wake was asked for"
kubectl delete pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" --grace-period=0 --force >/dev/null 2>&1
if wait "$held_pid"; then
  log "note: the held connection finished before the activators went (the engine was fast)"
else
  log "ok: the held connection failed when the activators went: $(tail -n 1 "$E2E_ARTIFACTS/26-held.log")"
fi
wait_ready "$ns" nap
wait_for 60 "nap's Service routed to the engine" to_engine "$ns" nap || fail "the Service does not route to the engine"
# kube-proxy on the client's node follows the slice's flip a moment later (nothing held this
# connection: the activators that would have were killed).
retry 10 docker_answers "$cns" client >/dev/null || fail "nap does not answer after the activators restarted"
out=$(cdocker "$cns" client run --rm "$E2E_NESTED_IMAGE" echo again 2>&1) || fail "docker run after the activators restarted failed: $out"
assert_eq "docker run after the activators restarted" again "$out"
activators_ready() {
  (($(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" --no-headers 2>/dev/null | grep -c ' 1/1 ') >= 2))
}
wait_for 120 "the activators back" activators_ready || fail "the activator pods did not come back"
log "ok: the activators killed mid-wake left nap Ready and reachable"

# --- a look-alike slice outside the operator's namespace maps no port
# A tenant with `edit` cannot write EndpointSlices at all; one granted more forges a slice with the
# operator's labels, routed to the activator. The activator opens no port for it: only the port
# policies in the operator's namespace say which sandbox a port is for.
kubectl create serviceaccount -n "$ons" tenant >/dev/null
kubectl create rolebinding tenant-edit -n "$ons" --clusterrole=edit --serviceaccount="$ons:tenant" >/dev/null
assert_eq "a tenant with edit may create EndpointSlices" no \
  "$(kubectl auth can-i create endpointslices.discovery.k8s.io -n "$ons" --as="system:serviceaccount:$ons:tenant" || true)"
open_ports() {
  local pod sum=0 n
  for pod in $(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_ACTIVATOR_SELECTOR" -o name); do
    n=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/${pod#pod/}:8080/proxy/metrics" |
      awk '/^dockersandbox_activator_ports / { print $2 }') || return 1
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}
no_ports() { [[ "$(open_ports)" == 0 ]]; }
wait_for 30 "no activator port open (nothing routed)" no_ports || fail "activator ports open: $(open_ports)"
kubectl apply -f - >/dev/null <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: forged
  namespace: $ons
  labels:
    kubernetes.io/service-name: forged
    endpointslice.kubernetes.io/managed-by: dockersandbox.dev-operator
    dockersandbox.dev/route: activator
addressType: IPv4
endpoints:
- addresses: ["$(kubectl get pod -n "$ns" nap-engine -o 'jsonpath={.status.podIP}')"]
  conditions: {ready: true}
ports:
- {name: docker-tls, port: $port, protocol: TCP}
YAML
still_true 10 no_ports || fail "the activator opened a port for a forged slice: $(open_ports)"
log "ok: a forged slice in $ons opened no activator port"
