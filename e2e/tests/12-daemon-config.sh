#!/usr/bin/env bash
# e2e: about 36s
# The engine's daemon settings reach dockerd and nested containers:
#  - by default nested containers get the pod interface's MTU (on the default bridge and on
#    user-created networks) and the default bridge avoids 172.17.0.0/16;
#  - spec.daemon (bip, mtu, defaultAddressPools, registryMirrors, insecureRegistries, logLevel)
#    is applied.
source "$(dirname "$0")/../lib.sh"

ns_new ns daemon
ns_new cns daemon-client

nested_mtu() {  # CLIENT [docker run args...]
  local c=$1; shift
  cdocker "$cns" "$c" run --rm "$@" "$E2E_NESTED_IMAGE" cat /sys/class/net/eth0/mtu
}
bridge_subnet() { cdocker "$cns" "$1" network inspect bridge -f '{{(index .IPAM.Config 0).Subnet}}'; }

# --- defaults
sandbox_apply "$ns" plain
sandbox_apply "$ns" tuned "$(cat <<'YAML'
  daemon:
    bip: 198.18.7.1/24
    mtu: 1300
    defaultAddressPools: [{base: 198.18.128.0/17, size: 24}]
    registryMirrors: ["https://mirror.example.com"]
    insecureRegistries: ["registry.internal:5000"]
    logLevel: debug
YAML
)"
wait_ready "$ns" plain
wait_ready "$ns" tuned
make_client "$cns" c-plain "$ns" plain
make_client "$cns" c-tuned "$ns" tuned
for c in c-plain c-tuned; do
  retry 10 docker_answers "$cns" "$c" >/dev/null || fail "engine behind $c does not answer"
  load_nested_image "$cns" "$c"
  cdocker "$cns" "$c" network create e2e-net >/dev/null
done

pod_mtu=$(engine_exec "$ns" plain cat /sys/class/net/eth0/mtu)
log "engine pod eth0 MTU: $pod_mtu"
assert_eq "default: nested MTU on the default bridge = pod MTU" "$pod_mtu" "$(nested_mtu c-plain)"
assert_eq "default: nested MTU on a user network = pod MTU" "$pod_mtu" "$(nested_mtu c-plain --network e2e-net)"
subnet=$(bridge_subnet c-plain)
log "default bridge subnet: $subnet"
[[ "$subnet" != 172.17.* ]] || fail "default bridge uses 172.17.0.0/16 (collides with common VPC/docker ranges)"

# --- spec.daemon
assert_eq "bip -> default bridge subnet" 198.18.7.0/24 "$(bridge_subnet c-tuned)"
assert_eq "mtu -> nested MTU on the default bridge" 1300 "$(nested_mtu c-tuned)"
assert_eq "mtu -> nested MTU on a user network" 1300 "$(nested_mtu c-tuned --network e2e-net)"
pool_subnet=$(cdocker "$cns" c-tuned network inspect e2e-net -f '{{(index .IPAM.Config 0).Subnet}}')
assert_match "defaultAddressPools -> user network subnet" '^198\.18\.(1(2[89]|[3-9][0-9])|2[0-5][0-9])\.0/24$' "$pool_subnet"
info=$(cdocker "$cns" c-tuned info 2>/dev/null)
assert_match "registryMirrors in docker info" 'https://mirror\.example\.com' "$info"
assert_match "insecureRegistries in docker info" 'registry\.internal:5000' "$info"
logs=$(kubectl logs -n "$ns" tuned-engine -c dockerd --tail=2000)
assert_match "logLevel debug -> dockerd logs at debug level" 'level=debug' "$logs"

# --- an MTU above the pod's own: accepted by the schema (576-9000), refused by the engine at start
# with the reason, which the operator quotes in the condition.
sandbox_apply "$ns" jumbo "$(printf '  storage: {type: Ephemeral, size: 1Gi}\n  daemon: {mtu: 9000}')"
expect_condition "$ns" jumbo CrashLoopBackOff "daemon\.mtu 9000 is above the pod network's MTU $pod_mtu"
kubectl delete "$DSB" -n "$ns" jumbo --wait=false >&2
