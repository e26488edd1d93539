#!/usr/bin/env bash
# e2e: about 30s
# The sandbox's Service selects no pods: the operator writes its EndpointSlice, naming the one engine
# pod it owns. A pod in the namespace that copies the engine pod's labels never becomes an endpoint
# (with a selector it would take every other connection; clients would talk to it). A Service as an
# earlier operator made it (with a selector) loses the selector and keeps its ClusterIP (which the
# server certificate names), and the stale slices Kubernetes made for it are deleted (its
# EndpointSlice controller's, and the one mirrored from its Endpoints object, with that object);
# a selector added by hand is removed too (Warning ServiceSelectorRemoved). Clients keep working.
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client eps
svc_ip=$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.clusterIP}')
engine_ip() { kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.status.podIP}'; }
# slices NS SERVICE: one line per EndpointSlice of the Service: NAME MANAGED-BY ADDRESSES
slices() {
  kubectl get endpointslices -n "$1" -l "kubernetes.io/service-name=$2" -o json |
    jq -r '.items[] | "\(.metadata.name) \(.metadata.labels["endpointslice.kubernetes.io/managed-by"]) \([.endpoints // [] | .[].addresses[]] | join(","))"'
}
only_ours() { [[ "$(slices "$ns" "$name")" == "$name dockersandbox.dev-operator $(engine_ip)" ]]; }

assert_eq "the Service has no selector" "" "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.selector}')"
wait_for 30 "one EndpointSlice, the operator's, naming the engine pod" only_ours || fail "slices: $(slices "$ns" "$name")"

# --- a pod that copies the engine pod's labels (and its port's name)
labels=$(kubectl get pod -n "$ns" "$name-engine" -o json | jq -c '.metadata.labels')
jq -n --arg ns "$ns" --arg img "$E2E_DIND_IMAGE" --argjson labels "$labels" '{apiVersion: "v1", kind: "Pod",
    metadata: {name: "impostor", namespace: $ns, labels: $labels},
    spec: {terminationGracePeriodSeconds: 1, automountServiceAccountToken: false,
           containers: [{name: "listen", image: $img, imagePullPolicy: "IfNotPresent",
                         command: ["sh", "-c", "trap \"exit 0\" TERM; while :; do sleep 5 & wait $!; done"],
                         ports: [{name: "docker-tls", containerPort: 2376}]}]}}' | kubectl apply -f - >&2
kubectl wait -n "$ns" pod/impostor --for=condition=Ready --timeout=120s >&2 || fail "the impostor pod did not start"
still_true 10 only_ours || fail "the impostor became an endpoint: $(slices "$ns" "$name")"
log "ok: the impostor (labels of the engine pod, listening on 2376) is no endpoint"
for i in $(seq 1 10); do
  docker_answers "$cns" client || fail "docker through the Service failed on try $i with the impostor around"
done
log "ok: 10 of 10 docker calls through the Service reached the engine"

# --- a Service as an earlier operator made it: a selector, owned by the operator's field manager
sel=$(jq -c 'with_entries(select(.key | IN("app.kubernetes.io/instance", "app.kubernetes.io/component", "app.kubernetes.io/name")))' <<<"$labels")
kubectl get svc -n "$ns" "$name" -o json |
  jq --argjson sel "$sel" 'del(.status, .metadata.managedFields, .metadata.resourceVersion, .metadata.uid,
      .metadata.creationTimestamp, .metadata.generation)
    | .metadata.annotations["dockersandbox.dev/applied-hash"] = "0000000000000000" | .spec.selector = $sel' |
  kubectl apply --server-side --field-manager=dockersandbox-operator --force-conflicts -f - >&2 ||
  fail "could not give the Service a selector"
log "the Service has the selector $sel, as an earlier operator made it"
no_selector() { [[ -z "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.selector}')" ]]; }
wait_for 60 "the operator removes the selector" no_selector || fail "the Service kept its selector"
wait_for 60 "only the operator's EndpointSlice is left" only_ours || fail "slices: $(slices "$ns" "$name")"
assert_eq "the Service keeps its ClusterIP" "$svc_ip" "$(kubectl get svc -n "$ns" "$name" -o 'jsonpath={.spec.clusterIP}')"
retry 10 docker_answers "$cns" client >/dev/null || fail "docker through the Service failed after the selector went"

# --- a selector added by hand (another field manager) goes too, with a Warning
kubectl patch svc -n "$ns" "$name" --type merge -p "{\"spec\":{\"selector\":{\"app.kubernetes.io/instance\":\"$name\"}}}" >&2
wait_for 60 "the hand-made selector is removed" no_selector || fail "the Service kept the hand-made selector"
wait_for 30 "Warning ServiceSelectorRemoved" warning_event_exists "$ns" "$name" ServiceSelectorRemoved ||
  fail "no Warning Event ServiceSelectorRemoved"
wait_for 60 "only the operator's EndpointSlice is left" only_ours || fail "slices: $(slices "$ns" "$name")"
retry 10 docker_answers "$cns" client >/dev/null || fail "docker through the Service failed at the end"
