#!/usr/bin/env bash
# e2e: about 28s
# A sandbox applied with kubectl reaches phase Ready; `kubectl get dsb` shows its columns and the
# status carries the endpoint, the client Secret, the engine version and a Ready condition.
source "$(dirname "$0")/../lib.sh"

ns_new ns ready
name=box
sandbox_apply "$ns" "$name"
wait_ready "$ns" "$name"

kubectl wait -n "$ns" "$DSB/$name" --for=condition=Ready --timeout=30s >&2 || fail "Ready condition is not True"

out=$(kubectl get dsb -n "$ns" "$name")
log "kubectl get dsb:"$'\n'"$out"
header=$(head -n1 <<<"$out")
for col in NAME PHASE ISOLATION ENDPOINT AGE; do
  assert_match "kubectl get dsb column $col" "(^|[[:space:]])$col([[:space:]]|\$)" "$header"
done
row=$(tail -n1 <<<"$out")
assert_match "kubectl get dsb row" "^${name}[[:space:]]+Ready[[:space:]]+(privileged|sysbox)[[:space:]]+tcp://$name\.$ns\.svc:2376[[:space:]]" "$row"

assert_eq "status.endpoint" "tcp://$name.$ns.svc:2376" "$(dsb_get "$ns" "$name" '{.status.endpoint}')"
assert_eq "status.clientSecretName" "$name-client" "$(dsb_get "$ns" "$name" '{.status.clientSecretName}')"
assert_eq "status.observedGeneration" "$(dsb_get "$ns" "$name" '{.metadata.generation}')" \
  "$(dsb_get "$ns" "$name" '{.status.observedGeneration}')"
version=$(dsb_get "$ns" "$name" '{.status.dockerVersion}')
assert_match "status.dockerVersion" '^[0-9]+\.[0-9]+' "$version"
assert_match "status.isolation" '^(privileged|sysbox)$' "$(dsb_get "$ns" "$name" '{.status.isolation}')"
assert_eq "Ready condition" True "$(dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="Ready")].status}')"
for k in caNotAfter serverNotAfter clientNotAfter; do
  assert_match "status.certificates.$k (RFC3339)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' \
    "$(dsb_get "$ns" "$name" "{.status.certificates.$k}")"
done

# the children promised by the contract exist and carry the standard labels
for obj in "pod/$name-engine" "service/$name" "secret/$name-ca" "secret/$name-server" "secret/$name-client" "pvc/$name-docker"; do
  labels=$(kubectl get -n "$ns" "$obj" -o json | jq -r '.metadata.labels | to_entries | map("\(.key)=\(.value)") | join(",")')
  assert_match "$obj labels" "app.kubernetes.io/instance=$name" "$labels"
  assert_match "$obj labels" "app.kubernetes.io/managed-by=dockersandbox-operator" "$labels"
done
assert_eq "service port docker-tls" 2376 \
  "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.ports[?(@.name=="docker-tls")].port}')"
