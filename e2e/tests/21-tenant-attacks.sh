#!/usr/bin/env bash
# e2e: about 190s
# A tenant with `edit` in one namespace attacks the operator, as issue "No tenant can hurt the
# operator or another tenant" tried them; each attack must fail without slowing anyone else:
#  - no Secret the tenant can read holds a CA key: it is in the operator's namespace (ca-NS-UID),
#    which a tenant with `edit` cannot read, and it goes when the sandbox goes (no finalizer);
#  - the engine pod's labels, removed by the tenant, are put back (EngineRelabelled);
#  - an impostor pod wearing the engine's labels (so it joins the engine's Service) serves the
#    engine's own server certificate and an endless body on 2376: the operator checks the pod it
#    owns (its IP), so it neither reads the impostor nor restarts; a sandbox created meanwhile is
#    Ready, and status.dockerVersion stays a short version string;
#  - quantities the class cannot read past its cap (64000000000000000u of memory under a 16Gi
#    maximum) and resources the class does not list (nvidia.com/gpu) are refused with a message;
#  - docker:5000/evil-dind (registry "docker:5000") is refused under the class's docker:*-dind;
#  - out-of-range integers (affinity weight 1000, credentials.generation 2000000) are refused at
#    admission by the CRD's bounds;
#  - 200 labelled ~1 MiB Secrets (E2E_FLOOD_SECRETS) move the operator's memory by at most
#    E2E_FLOOD_MAX_MIB (16) MiB: they are cached as metadata.
source "$(dirname "$0")/../lib.sh"

FLOOD=${E2E_FLOOD_SECRETS:-200}
FLOOD_MAX_MIB=${E2E_FLOOD_MAX_MIB:-16}

# operator_rss_mib: the leader's resident memory from its own metric, in MiB (empty if unavailable).
operator_rss_mib() {
  local svc metrics
  svc=$(kubectl get svc -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR,app.kubernetes.io/component=metrics" \
    -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)
  metrics=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/services/http:${svc:-$E2E_RELEASE-metrics}:8080/proxy/metrics" 2>/dev/null || true)
  awk '$1 == "dockersandbox_process_resident_memory_bytes" { printf "%d", $2 / 1048576; exit }' <<<"$metrics"
}

ns_new ns attacks
sandbox_apply "$ns" victim
wait_ready "$ns" victim
operator_before=$(operator_restarts)

# --- no CA key where a tenant can read it
for secret in victim-ca victim-server victim-client; do
  assert_eq "Secret $secret holds no CA key" "" "$(kubectl get secret -n "$ns" "$secret" -o 'jsonpath={.data.ca-key\.pem}')"
done
key="ca-$ns-$(dsb_get "$ns" victim '{.metadata.uid}')"
[[ -n "$(kubectl get secret -n "$E2E_OPERATOR_NAMESPACE" "$key" -o 'jsonpath={.data.ca-key\.pem}')" ]] ||
  fail "no CA key Secret $key in the operator's namespace $E2E_OPERATOR_NAMESPACE"
assert_eq "the CA key's certificate is the sandbox's CA" \
  "$(kubectl get secret -n "$ns" victim-ca -o 'jsonpath={.data.ca\.pem}')" \
  "$(kubectl get secret -n "$E2E_OPERATOR_NAMESPACE" "$key" -o 'jsonpath={.data.ca\.pem}')"
kubectl create serviceaccount tenant -n "$ns" >/dev/null
kubectl create rolebinding tenant-edit -n "$ns" --clusterrole=edit --serviceaccount="$ns:tenant" >/dev/null
as_tenant=(--as="system:serviceaccount:$ns:tenant")
assert_eq "a tenant with edit may read Secrets in its namespace" yes "$(kubectl auth can-i get secrets -n "$ns" "${as_tenant[@]}" || true)"
assert_eq "a tenant with edit cannot read the CA key" no \
  "$(kubectl auth can-i get "secret/$key" -n "$E2E_OPERATOR_NAMESPACE" "${as_tenant[@]}" || true)"

# --- the engine pod's labels are healed: without them it would leave its Service and NetworkPolicy
log "removing the engine pod's instance label"
kubectl label pod -n "$ns" victim-engine app.kubernetes.io/instance- >&2
relabelled() { [[ "$(kubectl get pod -n "$ns" victim-engine -o 'jsonpath={.metadata.labels.app\.kubernetes\.io/instance}')" == victim ]]; }
wait_for 60 "the engine pod's label put back" relabelled || fail "the engine pod's label was not put back"
wait_for 60 "Warning Event EngineRelabelled" warning_event_exists "$ns" victim EngineRelabelled || fail "no EngineRelabelled event"

# --- an impostor in the engine's Service
selector=$(kubectl get svc -n "$ns" victim -o json | jq -c '.spec.selector')
log "impostor labels (the Service's selector): $selector"
kubectl apply -f - >&2 <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: impostor
  namespace: $ns
  labels: $selector
spec:
  restartPolicy: Always
  containers:
  - name: serve
    image: $E2E_DIND_IMAGE
    imagePullPolicy: IfNotPresent
    command: [sh, -c]
    # The engine's own server certificate (tenants can read it), then an endless body.
    args:
    - |
      while true; do
        { printf 'HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n'; yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; } |
          openssl s_server -quiet -naccept 1 -accept 2376 -cert /tls/cert.pem -key /tls/key.pem || sleep 1
      done
    volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
  volumes: [{name: tls, secret: {secretName: victim-server}}]
EOF
wait_for 120 "impostor running" bash -c "[[ \$(kubectl get pod -n '$ns' impostor -o 'jsonpath={.status.phase}') == Running ]]" ||
  fail "the impostor pod did not start"
endpoints=$(kubectl get endpointslices -n "$ns" -l kubernetes.io/service-name=victim -o json | jq '[.items[].endpoints[]?] | length')
log "the victim's Service now has $endpoints endpoints (the impostor among them)"
# Wake the victim's reconcile (and its engine check) a few times while the impostor serves.
for i in 1 2 3 4 5; do
  kubectl annotate -n "$ns" "$DSB/victim" "e2e/poke=$i" --overwrite >/dev/null
  sleep 3
done
sandbox_apply "$ns" bystander
wait_ready "$ns" bystander
assert_eq "victim still Ready" Ready "$(dsb_get "$ns" victim '{.status.phase}')"
version=$(dsb_get "$ns" victim '{.status.dockerVersion}')
assert_match "status.dockerVersion is a short version string" '^[0-9A-Za-z.+_~-]{1,64}$' "$version"
assert_eq "operator pods and restarts with the impostor serving" "$operator_before" "$(operator_restarts)"
kubectl delete pod -n "$ns" impostor --wait=false >/dev/null

# --- values the class cannot read, resources and images it does not allow
sandbox_apply "$ns" micro "  resources: {limits: {memory: 64000000000000000u}}"
sandbox_apply "$ns" gpu "  resources: {limits: {nvidia.com/gpu: \"1\"}}"
sandbox_apply "$ns" evil "  image: docker:5000/evil-dind"
expect_refused "$ns" micro ResourcesNotAllowed 'spec\.resources\.limits\.memory 64000000000000000u is above the'
expect_refused "$ns" gpu ResourcesNotAllowed 'spec\.resources\.limits\.nvidia\.com/gpu is set, but DockerSandboxClass .* does not list nvidia\.com/gpu'
expect_refused "$ns" evil ImageNotAllowed 'spec\.image docker:5000/evil-dind is not allowed by DockerSandboxClass'

# --- out-of-range integers never reach the operator
refused_at_admission() {
  local name=$1 extra=$2 want=$3 out
  if out=$(sandbox_manifest "$ns" "$name" "$extra" | kubectl apply -f - 2>&1); then
    fail "the API server stored $name ($extra)"
  fi
  assert_match "admission refuses $name" "$want" "$out"
}
refused_at_admission weight "  affinity:
    podAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1000
        podAffinityTerm: {topologyKey: kubernetes.io/hostname}" 'weight: Invalid value: 1000: .*less than or equal to 100'
refused_at_admission generation "  credentials: {generation: 2000000}" 'generation: Invalid value: 2000000: .*less than or equal to 1e\+06|generation: Invalid value: 2000000: .*less than or equal to 1000000'

# --- a flood of large labelled Secrets
before=$(operator_rss_mib)
[[ -n "$before" ]] || skip "the operator's memory metric is not reachable through the API server's service proxy"
log "operator RSS before the flood: ${before} MiB; creating $FLOOD labelled ~1 MiB Secrets"
blob=$E2E_ARTIFACTS/flood-blob
head -c 786432 /dev/urandom | base64 -w0 >"$blob" # ~1 MiB once base64 encoded
flood_one() {
  kubectl create secret generic "flood-$1" -n "$ns" --from-file=junk="$blob" --dry-run=client -o json |
    jq '.metadata.labels = {"app.kubernetes.io/managed-by": "dockersandbox-operator"}' | kubectl create -f - >/dev/null
}
export -f flood_one kubectl
export ns blob
seq 1 "$FLOOD" | xargs -P 4 -I{} bash -c 'flood_one {}' || fail "creating the Secrets failed"
sleep 10 # the watch events reach the operator
after=$(operator_rss_mib)
log "operator RSS after $FLOOD labelled ~1 MiB Secrets: ${after} MiB (before: ${before} MiB)"
((after - before <= FLOOD_MAX_MIB)) || fail "the operator's memory grew by $((after - before)) MiB (at most $FLOOD_MAX_MIB)"
assert_eq "operator pods and restarts after the flood" "$operator_before" "$(operator_restarts)"
sandbox_apply "$ns" after-flood
wait_ready "$ns" after-flood

# --- revocation fails closed: a full ResourceQuota (the dry run of a new pod is refused) does not
# keep the engine that trusts the revoked CA; the status says revoked once the new engine answers.
ns_new qns attacks-quota
# shellcheck disable=SC2154  # qns is assigned by ns_new (printf -v), which shellcheck cannot follow
kubectl create quota pods -n "$qns" --hard=pods=1 >&2
sandbox_apply "$qns" revoked
wait_ready "$qns" revoked
old_pod=$(pod_uid "$qns" revoked-engine)
log "revoking with the quota full (pods=1, the engine is the one)"
kubectl patch "$DSB" -n "$qns" revoked --type merge -p '{"spec":{"credentials":{"generation":1}}}' >&2
old_engine_gone() { [[ "$(pod_uid "$qns" revoked-engine 2>/dev/null)" != "$old_pod" ]]; }
wait_for 60 "the engine trusting the revoked CA is stopped" old_engine_gone || fail "the old engine kept running"
revoked_on_new_engine() {
  [[ "$(dsb_get "$qns" revoked '{.status.certificates.generation}/{.status.phase}')" == 1/Ready ]]
}
wait_for 180 "status.certificates.generation 1 and Ready on the new engine" revoked_on_new_engine ||
  fail "not revoked: $(dsb_get "$qns" revoked '{.status.certificates.generation}/{.status.phase}')"
wait_for 60 "Warning Event CredentialsRevoked" warning_event_exists "$qns" revoked CredentialsRevoked ||
  fail "no CredentialsRevoked event"

# --- the CA key goes with its sandbox (no finalizer: the operator sweeps keys of sandboxes gone)
kubectl delete "$DSB" -n "$ns" victim --wait=true --timeout=120s >&2
key_gone() { ! kubectl get secret -n "$E2E_OPERATOR_NAMESPACE" "$key" >/dev/null 2>&1; }
wait_for 120 "the CA key $key deleted with its sandbox" key_gone || fail "the CA key outlived its sandbox"
