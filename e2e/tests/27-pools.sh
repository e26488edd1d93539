#!/usr/bin/env bash
# e2e: about 35s
# Warm pools. A DockerSandboxPool of 2 becomes ready; a DockerSandbox with spec.poolRef claims one
# and is Ready at once (the figure is printed), its own client certificate runs `docker run --rm`;
# the client certificate of another claim from the same pool is refused by the first engine; the
# pool refills; a template change rolls the pool without its ready engines ever dropping below
# replicas - 1; an emptied pool gives a cold start (status.startedFrom Cold, condition FromPool
# False with reason PoolEmpty, and that Event);
# deleting the pool leaves the claimed sandboxes running.
source "$(dirname "$0")/../lib.sh"

POOL=dockersandboxpools.dockersandbox.dev
ns_new ns pools
ns_new cns pools-client
pool=warm
log "applying pool $ns/$pool (replicas 2)"
kubectl apply -f - >&2 <<EOF
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandboxPool
metadata: {name: $pool, namespace: $ns}
spec:
  replicas: 2
  template:
    spec:
      image: $E2E_DIND_IMAGE
      imagePullPolicy: IfNotPresent
      storage: {type: Ephemeral, size: 1Gi}
EOF
pool_get() { kubectl get "$POOL" -n "$ns" "$pool" -o "jsonpath=$1"; }
ready_at_least() { (($(pool_get '{.status.ready}' || echo 0) >= $1)); }
wait_for 300 "the pool has 2 ready engines" ready_at_least 2 || fail "pool not ready: $(pool_get '{.status}')"
assert_eq "every engine of the pool is of the current template" 2 "$(pool_get '{.status.updatedReady}')"
members=$(kubectl get "$DSB" -n "$ns" -l "dockersandbox.dev/pool=$pool" -o name | wc -l)
assert_eq "the pool's engines are sandboxes labelled with it" 2 "$members"
for m in $(kubectl get "$DSB" -n "$ns" -l "dockersandbox.dev/pool=$pool" -o 'jsonpath={.items[*].metadata.name}'); do
  kubectl get secret -n "$ns" "$m-client" >/dev/null 2>&1 && fail "pooled engine $m has a client Secret before any claim"
done
log "no pooled engine has a client Secret"

claim() {
  log "applying claim $ns/$1"
  printf 'apiVersion: dockersandbox.dev/v1alpha1\nkind: DockerSandbox\nmetadata: {name: %s, namespace: %s}\nspec: {poolRef: %s}\n' \
    "$1" "$ns" "$pool" | kubectl apply -f - >&2
}
is_ready() { [[ $(dsb_get "$ns" "$1" '{.status.phase}' 2>/dev/null) == Ready ]]; }

t0=$(date +%s%N)
claim a
until is_ready a; do
  (($(date +%s%N) - t0 < 60000000000)) || fail "claim a not Ready within 60 s: $(dsb_conditions "$ns" a)"
  sleep 0.1
done
took=$((($(date +%s%N) - t0) / 1000000))
log "FIGURE claim from a warm pool: apply -> Ready in ${took} ms"
assert_eq "a was served from the pool" Pool "$(dsb_get "$ns" a '{.status.startedFrom}')"
assert_eq "a's FromPool condition" "True Claimed" \
  "$(dsb_get "$ns" a '{.status.conditions[?(@.type=="FromPool")].status} {.status.conditions[?(@.type=="FromPool")].reason}')"
assert_eq "a's endpoint is its own Service" "tcp://a.$ns.svc:2376" "$(dsb_get "$ns" a '{.status.endpoint}')"
engine_a=$(dsb_get "$ns" a '{.status.claimedSandbox}')
[[ -n $engine_a ]] || fail "status.claimedSandbox of a is empty"

make_client "$cns" client "$ns" a
retry 20 docker_answers "$cns" client >/dev/null || fail "the claimed engine does not answer a's client"
load_nested_image "$cns" client
token="dsb-e2e-$(rand_suffix)"
out=$(cdocker "$cns" client run --rm "$E2E_NESTED_IMAGE" echo "$token" 2>&1) || fail "docker run on the claimed engine failed: $out"
assert_match "nested container output through the claim" "^$token\$" "$out"

# another claim from the same pool: its client certificate is refused by a's engine
claim b
wait_ready "$ns" b 120
engine_b=$(dsb_get "$ns" b '{.status.claimedSandbox}')
[[ $engine_b != "$engine_a" ]] || fail "a and b claimed the same engine $engine_a"
kubectl exec -n "$cns" client -- sh -c 'mkdir -p /tmp/b && cp /certs/client/ca.pem /tmp/b/'
for f in cert.pem key.pem; do
  kubectl get secret -n "$ns" b-client -o "jsonpath={.data.${f//./\\.}}" | base64 -d |
    kubectl exec -i -n "$cns" client -- sh -c "cat > /tmp/b/$f"
done
if out=$(kubectl exec -n "$cns" client -- env DOCKER_CERT_PATH=/tmp/b docker version --format '{{.Server.Version}}' 2>&1); then
  fail "a's engine answered b's client certificate ($out)"
fi
assert_match "b's client certificate is refused by a's engine" \
  'bad certificate|unknown certificate authority|certificate required|handshake|tls:' "$out"

wait_for 300 "the pool refilled to 2 ready engines" ready_at_least 2 || fail "pool did not refill: $(pool_get '{.status}')"
assert_eq "claimed engines are counted" 2 "$(pool_get '{.status.claimed}')"

# a template change rolls the pool: ready engines never drop below replicas - 1
old_hash=$(pool_get '{.status.templateHash}')
kubectl patch "$POOL" -n "$ns" "$pool" --type merge -p '{"spec":{"template":{"spec":{"daemon":{"logLevel":"warn"}}}}}' >&2
fewest=2 deadline=$(($(date +%s) + 360))
while :; do
  r=$(pool_get '{.status.ready}') u=$(pool_get '{.status.updatedReady}') h=$(pool_get '{.status.templateHash}')
  ((r < fewest)) && fewest=$r
  [[ $h != "$old_hash" && $u == 2 && $r == 2 ]] && break
  (($(date +%s) < deadline)) || fail "the rollout did not end: $(pool_get '{.status}')"
  sleep 0.5
done
log "rollout done: fewest ready engines seen $fewest"
((fewest >= 1)) || fail "the rollout left $fewest ready engines (replicas 2)"
assert_eq "a's engine was not touched by the rollout" Ready "$(dsb_get "$ns" a '{.status.phase}')"

# an empty pool: a cold start, said so
kubectl scale "$POOL" -n "$ns" "$pool" --replicas=0 >&2
no_members() { [[ -z $(kubectl get "$DSB" -n "$ns" -l "dockersandbox.dev/pool=$pool" -o name) ]]; }
wait_for 120 "the pool emptied" no_members || fail "the pool kept engines at replicas 0"
claim c
wait_ready "$ns" c 180
assert_eq "c was started cold" Cold "$(dsb_get "$ns" c '{.status.startedFrom}')"
warning_event_exists "$ns" c PoolEmpty || fail "no PoolEmpty Event on c"
has_condition_reason "$ns" c PoolEmpty || fail "c has no FromPool condition False/PoolEmpty: $(dsb_conditions "$ns" c)"

# deleting the pool leaves the claims running
kubectl delete "$POOL" -n "$ns" "$pool" --wait=true >&2
still_ready() { is_ready a && is_ready b && is_ready c; }
still_true 10 still_ready || fail "the claims did not stay Ready after the pool was deleted"
retry 5 docker_answers "$cns" client >/dev/null || fail "a's engine stopped answering after the pool was deleted"
kubectl get "$DSB" -n "$ns" "$engine_a" >/dev/null || fail "a's engine sandbox went with the pool"
