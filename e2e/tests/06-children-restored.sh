#!/usr/bin/env bash
# e2e: about 28s
# Children deleted by hand come back: the Service and the client Secret are re-created, the CA is
# kept (same ca.pem), and a client using the re-created client Secret still works. A client Secret
# edited by hand (ca.pem replaced) is put back with the same CA and certificate (Event SecretRestored).
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client restore

ca_before=$(kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}')
[[ -n "$ca_before" ]] || fail "Secret $name-ca has no ca.pem"
svc_uid=$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.metadata.uid}')
sec_uid=$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.metadata.uid}')
cluster_ip=$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.clusterIP}')
pod_uid=$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.metadata.uid}')

log "deleting Service $name and Secret $name-client"
kubectl delete svc -n "$ns" "$name" --wait=true --timeout=60s >&2
kubectl delete secret -n "$ns" "$name-client" --wait=true --timeout=60s >&2

new_uid() { local u; u=$(kubectl get -n "$ns" "$1" "$2" -o 'jsonpath={.metadata.uid}') && [[ -n "$u" && "$u" != "$3" ]]; }
wait_for "$E2E_TIMEOUT" "Service $name re-created" new_uid svc "$name" "$svc_uid" || fail "Service not re-created"
wait_for "$E2E_TIMEOUT" "Secret $name-client re-created" new_uid secret "$name-client" "$sec_uid" ||
  fail "client Secret not re-created"
assert_eq "Service port docker-tls" 2376 \
  "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.ports[?(@.name=="docker-tls")].port}')"
assert_eq "CA unchanged (Secret $name-ca ca.pem)" "$ca_before" \
  "$(kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}')"
assert_eq "client Secret's ca.pem is the sandbox CA" "$ca_before" \
  "$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.ca\.pem}')"
wait_ready "$ns" "$name"
# The ClusterIP is in the server certificate: the Service comes back with the same address, so
# the certificate stays valid and the engine (with the team's running containers) is not restarted.
assert_eq "Service keeps its ClusterIP" "$cluster_ip" \
  "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.clusterIP}')"
assert_eq "engine pod not restarted" "$pod_uid" \
  "$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.metadata.uid}')"

make_client "$cns" client2 "$ns" "$name"
out=$(retry 20 cdocker "$cns" client2 version --format '{{.Server.Version}}') ||
  fail "client with the re-created Secret cannot talk to the engine: $out"
log "ok: client with the re-created client Secret works (server $out)"
out=$(retry 10 cdocker "$cns" client version --format '{{.Server.Version}}') ||
  fail "client with the original certificate (same CA) no longer works: $out"
log "ok: the original client certificate still works too"

# A client bundle edited by hand is put back (every key), with the same CA and no engine restart.
log "tampering with Secret $name-client: ca.pem replaced"
client_cert=$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.cert\.pem}')
kubectl patch secret -n "$ns" "$name-client" --type merge -p '{"data":{"ca.pem":"dGFtcGVyZWQ="}}' >&2
bundle_healed() { [[ "$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.ca\.pem}')" == "$ca_before" ]]; }
wait_for 60 "client Secret's ca.pem put back" bundle_healed || fail "tampered client Secret not put back"
assert_eq "same client certificate" "$client_cert" "$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.cert\.pem}')"
assert_eq "CA unchanged after tampering" "$ca_before" "$(kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}')"
event_seen() { kubectl get events -n "$ns" --field-selector "reason=SecretRestored" -o name | grep -q .; }
wait_for 30 "Event SecretRestored" event_seen || fail "no SecretRestored event"
assert_eq "engine pod not restarted by the repair" "$pod_uid" \
  "$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.metadata.uid}')"
