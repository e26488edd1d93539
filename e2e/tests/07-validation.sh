#!/usr/bin/env bash
# e2e: about 19s
# Invalid sandboxes are refused by the API server at `kubectl apply`, with a message that names the
# offending field. Add a case by adding a line to one of the tables below.
source "$(dirname "$0")/../lib.sh"

ns_new ns validate

# case name | regex the error must match (case-insensitive) | spec lines (YAML, flow style, 2-space indent)
INVALID=(
  "isolation-unknown|spec\.isolation|  isolation: bogus"
  "storage-size-malformed|spec\.storage\.size|  storage: {size: big}"
  "storage-size-too-small|spec\.storage\.size|  storage: {size: 1Mi}"
  "storage-type-unknown|spec\.storage\.type|  storage: {size: 1Gi, type: Floppy}"
  "reclaim-policy-unknown|spec\.storage\.reclaimPolicy|  storage: {size: 1Gi, reclaimPolicy: Shred}"
  "image-pull-policy-unknown|spec\.imagePullPolicy|  imagePullPolicy: Sometimes"
  "extra-san-not-a-host|spec\.service\.extraSANs|  service: {extraSANs: [\"not a host!\"]}"
  "service-type-unknown|spec\.service\.type|  service: {type: Foo}"
  "bip-invalid|spec\.daemon\.bip|  daemon: {bip: 999.1.1.1/24}"
  "mtu-out-of-range|spec\.daemon\.mtu|  daemon: {mtu: 100}"
  "registry-mirror-not-a-url|spec\.daemon\.registryMirrors|  daemon: {registryMirrors: [\"not a url\"]}"
  "log-level-unknown|spec\.daemon\.logLevel|  daemon: {logLevel: loud}"
  # inputs dockerd or the pod would choke on (they used to pass admission)
  "registry-mirror-query|registryMirrors.*query|  daemon: {registryMirrors: [\"https://m.example.com/?x=1\"]}"
  "registry-mirror-fragment|registryMirrors.*fragment|  daemon: {registryMirrors: [\"https://m.example.com/#x\"]}"
  "registry-mirror-userinfo|registryMirrors.*user info|  daemon: {registryMirrors: [\"https://u:p@m.example.com\"]}"
  "registry-mirror-scheme|registryMirrors|  daemon: {registryMirrors: [\"ftp://m.example.com\"]}"
  "insecure-registry-dash|insecureRegistries|  daemon: {insecureRegistries: [\"-reg.internal:5000\"]}"
  "bip-slash-32|daemon\.bip|  daemon: {bip: 198.18.0.1/32}"
  "bip-slash-31|daemon\.bip|  daemon: {bip: 198.18.0.1/31}"
  "bip-slash-0|daemon\.bip|  daemon: {bip: 0.0.0.1/0}"
  "bip-overlaps-pools|overlaps|  daemon: {bip: 10.1.0.1/24, defaultAddressPools: [{base: 10.0.0.0/8, size: 24}]}"
  "pool-size-below-prefix|defaultAddressPools|  daemon: {defaultAddressPools: [{base: 10.0.0.0/16, size: 8}]}"
  "pool-ipv6|defaultAddressPools|  daemon: {defaultAddressPools: [{base: \"fd00::/48\", size: 24}]}"
  "mtu-above-9000|spec\.daemon\.mtu|  daemon: {mtu: 9100}"
  "storage-size-exponent-and-suffix|spec\.storage\.size|  storage: {size: 1e3Gi}"
)

# case name | regex | spec lines at creation (valid) | spec lines of the change (must be refused)
IMMUTABLE=(
  "storage-class-changed|storageClassName|  storage: {size: 1Gi, storageClassName: dsb-e2e-class-a}|  storage: {size: 1Gi, storageClassName: dsb-e2e-class-b}"
  "storage-type-changed|storage\.type|type.*immutable|immutable.*type|  storage: {size: 1Gi, type: Persistent}|  storage: {size: 1Gi, type: Ephemeral}"
)

# names the API server accepts for an object but that cannot name the sandbox's Service (a DNS label)
# and its '-engine' pod | regex
BAD_NAMES=(
  "a.b|metadata\.name"
  "1web|metadata\.name"
  "$(printf 'n%.0s' {1..57})|metadata\.name.*56"
)

problems=()

# expect_admission_refused CASE REGEX NAME SPEC: `kubectl apply` of the sandbox must fail with a
# message matching REGEX; a problem is recorded otherwise (the test goes on with the other cases).
# (Not lib.sh's expect_refused, which is about sandboxes the API server accepted.)
expect_admission_refused() {
  local case=$1 regex=$2 name=$3 spec=$4 out
  if out=$(sandbox_manifest "$ns" "$name" "$spec" | kubectl apply -f - 2>&1); then
    problems+=("$case: accepted (expected refusal); output: $out")
    kubectl delete "$DSB" -n "$ns" "$name" --wait=false >/dev/null 2>&1 || true
    log "BAD  $case: accepted"
    return
  fi
  if grep -qiE -- "$regex" <<<"$out"; then
    log "ok   $case: refused: $out"
  else
    problems+=("$case: refused, but the message does not match /$regex/: $out")
    log "BAD  $case: message does not name the field: $out"
  fi
}

for row in "${INVALID[@]}"; do
  IFS='|' read -r case regex spec <<<"$row"
  expect_admission_refused "$case" "$regex" "invalid-$case" "$spec"
done

for row in "${BAD_NAMES[@]}"; do
  IFS='|' read -r name regex <<<"$row"
  expect_admission_refused "name-${name:0:12}" "$regex" "$name" ""
done

for row in "${IMMUTABLE[@]}"; do
  case=${row%%|*}
  change=${row##*|}; rest=${row%|*}
  initial=${rest##*|}; rest=${rest%|*}
  regex=${rest#*|}
  if ! out=$(sandbox_manifest "$ns" "$case" "$initial" | kubectl apply -f - 2>&1); then
    problems+=("$case: the valid initial sandbox was refused: $out")
    continue
  fi
  expect_admission_refused "$case" "$regex" "$case" "$change"
  # the stored spec is still the initial one
  kubectl get "$DSB" -n "$ns" "$case" -o json | jq -c .spec.storage >&2 || true
  kubectl delete "$DSB" -n "$ns" "$case" --wait=false >/dev/null 2>&1 || true
done

# a sandbox that only sets the documented defaults is accepted (the tables above are not refusing everything)
if ! out=$(sandbox_manifest "$ns" valid-defaults "$(cat <<'YAML'
  isolation: auto
  storage: {type: Ephemeral, size: 1Gi, reclaimPolicy: Delete}
  service: {type: ClusterIP, extraSANs: [docker.example.com, 203.0.113.7]}
  daemon: {bip: 198.18.0.1/24, mtu: 1450, logLevel: info, registryMirrors: ["https://mirror.example.com"]}
YAML
)" | kubectl apply --dry-run=server -f - 2>&1); then
  problems+=("valid sandbox refused: $out")
fi

# Accepted, but the operator cannot do it: shrinking a size that was never set (the operator's
# default applied). The engine keeps its volume and the condition names the size to set.
sandbox_apply "$ns" shrink "  storage: {type: Persistent}"
wait_for 120 "claim shrink-docker" kubectl get pvc -n "$ns" shrink-docker >/dev/null ||
  problems+=("shrink: no claim shrink-docker")
default_size=$(kubectl get pvc -n "$ns" shrink-docker -o 'jsonpath={.spec.resources.requests.storage}')
kubectl patch "$DSB" -n "$ns" shrink --type=merge -p '{"spec":{"storage":{"size":"1Gi"}}}' >&2 ||
  problems+=("shrink: a size below the default was refused at admission (the API server cannot know the default)")
storage_says_shrink() {
  dsb_get "$ns" shrink '{.status.conditions[?(@.type=="StorageBound")].message}' | grep -q "cannot shrink"
}
if wait_for 120 "StorageBound says the volume cannot shrink" storage_says_shrink; then
  log "ok   shrink: $(dsb_get "$ns" shrink '{.status.conditions[?(@.type=="StorageBound")].message}')"
  assert_eq "shrink: the claim keeps its size" "$default_size" \
    "$(kubectl get pvc -n "$ns" shrink-docker -o 'jsonpath={.spec.resources.requests.storage}')"
else
  problems+=("shrink: no StorageBound condition explaining it: $(dsb_conditions "$ns" shrink 2>&1)")
fi

if ((${#problems[@]})); then
  printf '  - %s\n' "${problems[@]}" >&2
  fail "${#problems[@]} validation case(s) wrong"
fi
log "all $((${#INVALID[@]} + ${#IMMUTABLE[@]})) invalid sandboxes refused with the field named"
