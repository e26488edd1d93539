#!/usr/bin/env bash
# Deleting the engine pod is not fatal: the operator recreates it, the sandbox returns to Ready,
# and images loaded before are still there because /var/lib/docker lives on the PVC.
source "$(dirname "$0")/../lib.sh"

ns_new ns recreate
ns_new cns recreate-client
name=box
sandbox_apply "$ns" "$name"
wait_ready "$ns" "$name"
make_client "$cns" client "$ns" "$name"
retry 10 docker_answers "$cns" client >/dev/null || fail "engine does not answer"
load_nested_image "$cns" client

old_uid=$(pod_uid "$ns" "$name-engine")
pvc_uid=$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.uid}')
log "deleting engine pod (uid $old_uid)"
kubectl delete pod -n "$ns" "$name-engine" --wait=true --timeout=120s >&2

wait_for "$E2E_TIMEOUT" "engine pod recreated with a new UID and Ready" \
  pod_ready_with_new_uid "$ns" "$name-engine" "$old_uid" || fail "engine pod was not recreated"
wait_ready "$ns" "$name"
assert_eq "PVC kept (same UID)" "$pvc_uid" "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.uid}')"

images=$(retry 10 cdocker "$cns" client image ls --format '{{.Repository}}:{{.Tag}}') || fail "docker image ls failed: $images"
log "images after recreation: $(tr '\n' ' ' <<<"$images")"
grep -qx "$E2E_NESTED_IMAGE" <<<"$images" || fail "$E2E_NESTED_IMAGE lost after the engine pod was recreated"
out=$(cdocker "$cns" client run --rm "$E2E_NESTED_IMAGE" echo still-here 2>&1) || fail "nested run failed: $out"
assert_eq "nested run after recreation" still-here "$out"
