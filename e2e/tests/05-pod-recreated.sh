#!/usr/bin/env bash
# e2e: about 34s
# Deleting the engine pod is not fatal: the operator recreates it, the sandbox returns to Ready,
# and images loaded before are still there because /var/lib/docker lives on the PVC. A spec change
# whose new pod would be refused keeps the running engine (condition RollRefused), and so does an
# image edit the class does not allow (ImageNotAllowed).
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client recreate
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

# Safe rolls: a spec change whose new pod the API server would refuse (here a LimitRange caps
# container memory at 2Gi) does not delete the running engine: condition RollRefused names the
# refusal, the pod keeps its UID and the engine still answers. Undoing the change clears it.
kubectl apply -n "$ns" -f - >&2 <<'YAML'
apiVersion: v1
kind: LimitRange
metadata: {name: cap}
spec: {limits: [{type: Container, max: {memory: 2Gi}}]}
YAML
running_uid=$(pod_uid "$ns" "$name-engine")
log "asking for 4Gi of memory (above the LimitRange's 2Gi)"
kubectl patch "$DSB" -n "$ns" "$name" --type merge -p '{"spec":{"resources":{"limits":{"memory":"4Gi"}}}}' >&2
expect_condition "$ns" "$name" RollRefused 'would refuse the new engine pod.*2Gi.*running engine is kept'
assert_eq "running engine pod kept (same UID)" "$running_uid" "$(pod_uid "$ns" "$name-engine")"
out=$(retry 5 cdocker "$cns" client version --format '{{.Server.Version}}') || fail "the kept engine does not answer: $out"
log "the kept engine still answers (server $out)"
kubectl patch "$DSB" -n "$ns" "$name" --type json -p '[{"op":"remove","path":"/spec/resources"}]' >&2
wait_ready "$ns" "$name"
assert_eq "engine pod still the same after undoing the change" "$running_uid" "$(pod_uid "$ns" "$name-engine")"

# An image edit the class does not allow is refused before anything is touched: the running engine
# stays (same pod), and the sandbox says ImageNotAllowed until the edit is undone.
kubectl patch "$DSB" -n "$ns" "$name" --type merge -p '{"spec":{"image":"busybox:1.36"}}' >&2
expect_condition "$ns" "$name" ImageNotAllowed 'spec.image busybox:1.36 is not allowed by DockerSandboxClass'
assert_eq "engine pod kept after a refused image edit" "$running_uid" "$(pod_uid "$ns" "$name-engine")"
out=$(retry 5 cdocker "$cns" client version --format '{{.Server.Version}}') || fail "the kept engine does not answer: $out"
kubectl patch "$DSB" -n "$ns" "$name" --type merge -p "{\"spec\":{\"image\":\"$E2E_DIND_IMAGE\"}}" >&2
wait_ready "$ns" "$name"
assert_eq "engine pod still the same after undoing the image edit" "$running_uid" "$(pod_uid "$ns" "$name-engine")"
