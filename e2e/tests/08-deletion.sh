#!/usr/bin/env bash
# e2e: about 68s
# Deleting a sandbox: the operator puts no finalizer on it; while a foreground deletion waits for
# the children the phase is Terminating. With reclaimPolicy Delete every child goes, PVC included; with Retain (the
# default) the PVC and its volume stay, and a new sandbox of the same name re-adopts them with the
# images loaded before.
source "$(dirname "$0")/../lib.sh"

ns_new ns delete
ns_new cns delete-client

gone() { ! kubectl get -n "$ns" "$1" >/dev/null 2>&1; }
all_children_gone() {
  local n=$1 o
  for o in "$DSB/$n" "pod/$n-engine" "service/$n" "secret/$n-ca" "secret/$n-server" "secret/$n-client" "pvc/$n-docker"; do
    gone "$o" || return 1
  done
}

# (a) reclaimPolicy: Delete
sandbox_apply "$ns" gone "$(printf '  storage: {size: 1Gi, reclaimPolicy: Delete}')"
wait_ready "$ns" gone
pv=$(kubectl get pvc -n "$ns" gone-docker -o 'jsonpath={.spec.volumeName}')
log "sandbox 'gone' uses PVC gone-docker (PV $pv); deleting the sandbox in the foreground"
# Foreground deletion keeps the sandbox until its children are gone: meanwhile status says so.
kubectl delete "$DSB" -n "$ns" gone --cascade=foreground --wait=false >&2 || fail "kubectl delete failed"
terminating_or_gone() {
  local phase
  phase=$(dsb_get "$ns" gone '{.status.phase}' 2>/dev/null) || return 0
  [[ "$phase" == Terminating ]]
}
wait_for 60 "phase Terminating (or the sandbox gone)" terminating_or_gone ||
  fail "sandbox being deleted shows phase '$(dsb_get "$ns" gone '{.status.phase}')', not Terminating"
kubectl wait "$DSB" -n "$ns" gone --for=delete --timeout=180s >&2 || fail "sandbox deletion did not finish"
if ! wait_for 120 "pod, service, secrets and PVC of 'gone' deleted" all_children_gone gone; then
  kubectl get all,secrets,pvc -n "$ns" >&2 || true
  fail "children of a reclaimPolicy=Delete sandbox remain"
fi

# (b) reclaimPolicy: Retain (the default)
name=keep
sandbox_apply "$ns" "$name"
wait_ready "$ns" "$name"
assert_eq "default reclaimPolicy leaves no owner reference on the PVC" "" \
  "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.ownerReferences}')"
make_client "$cns" client "$ns" "$name"
retry 10 docker_answers "$cns" client >/dev/null || fail "engine does not answer"
load_nested_image "$cns" client
pvc_uid=$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.uid}')
pv=$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.spec.volumeName}')

log "deleting sandbox $name (Retain)"
kubectl delete "$DSB" -n "$ns" "$name" --wait=true --timeout=180s >&2 || fail "sandbox deletion did not finish"
wait_for 120 "engine pod of $name deleted" gone "pod/$name-engine" || fail "engine pod remains after deletion"
assert_eq "PVC kept after deletion (same UID)" "$pvc_uid" \
  "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.uid}')"
assert_eq "PVC still Bound" Bound "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.status.phase}')"
kubectl get pv "$pv" >/dev/null 2>&1 || fail "PV $pv of the retained PVC is gone"
log "ok: PVC $name-docker and PV $pv retained"

log "re-creating sandbox $name"
sandbox_apply "$ns" "$name"
wait_ready "$ns" "$name"
assert_eq "new sandbox re-adopted the same PVC" "$pvc_uid" \
  "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.metadata.uid}')"
assert_eq "same PV" "$pv" "$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.spec.volumeName}')"
# the CA may have been replaced with the sandbox: use the current client Secret
make_client "$cns" client2 "$ns" "$name"
images=$(retry 20 cdocker "$cns" client2 image ls --format '{{.Repository}}:{{.Tag}}') || fail "docker image ls failed: $images"
log "images in the re-created sandbox: $(tr '\n' ' ' <<<"$images")"
grep -qx "$E2E_NESTED_IMAGE" <<<"$images" || fail "$E2E_NESTED_IMAGE not found after re-adopting the PVC"
