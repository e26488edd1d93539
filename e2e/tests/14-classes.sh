#!/usr/bin/env bash
# e2e: about 83s
# DockerSandboxClass, the platform team's contract, on the real cluster:
#  - the default class (the one annotated dockersandbox.dev/is-default-class: "true", looked up, not
#    assumed) serves a sandbox without spec.className: Ready, status.className names it,
#    status.classGeneration is its generation, and the engine container gets the class's default
#    memory limit; spec.className cannot be set afterwards (no moving to another class);
#  - it refuses what it does not allow: an image outside image.allowed (ImageNotAllowed, naming the
#    image) and tenant placement, here a control-plane toleration (PlacementNotAllowed);
#  - a class whose namespaceSelector does not match the sandbox's namespace: ClassNotAllowed; a
#    class allowing only sysbox, asked for isolation: privileged: IsolationNotAllowed;
#  - a class deleted under a running privileged sandbox (this cluster has no sysbox): condition
#    ClassNotFound and Warning Events ClassNotFound and EngineStopped, the engine pod is stopped and
#    its volume kept (same claim UID), the operator does not crash (same pods, no restart); the
#    class re-created without privileged: still no engine (IsolationNotAllowed); re-created as it
#    was: Ready again on a new engine pod with the same volume.
# Each refused sandbox gets no engine pod (expect_refused).
source "$(dirname "$0")/../lib.sh"

DEFAULT_ANNOTATION=dockersandbox.dev/is-default-class

# class_apply NAME SPEC_YAML: a test class (labelled dockersandbox.dev/e2e=true); SPEC_YAML is spec
# lines indented by 2 spaces.
class_apply() {
  log "applying DockerSandboxClass $1"
  kubectl apply -f - >&2 <<EOF
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandboxClass
metadata:
  name: $1
  labels: {dockersandbox.dev/e2e: "true"}
spec:
$2
EOF
}

# quantity_bytes Q: a memory quantity (4Gi, 512Mi, 1G, 1073741824) in bytes; fails on others.
quantity_bytes() {
  awk -v q="$1" 'BEGIN {
    n = q; sub(/[A-Za-z]+$/, "", n); s = substr(q, length(n) + 1)
    f["Ki"] = 1024; f["Mi"] = 1024 ^ 2; f["Gi"] = 1024 ^ 3; f["Ti"] = 1024 ^ 4
    f["k"] = 1e3; f["M"] = 1e6; f["G"] = 1e9; f["T"] = 1e12; f[""] = 1
    if (n !~ /^[0-9]+(\.[0-9]+)?$/ || !(s in f)) exit 1
    printf "%.0f\n", n * f[s] }'
}

# --- the default class, as the cluster has it
classes=$(kubectl get "$DSB_CLASS" -o json) || fail "cannot list DockerSandboxClasses (is the CRD $DSB_CLASS installed?)"
defaults=$(jq -r --arg a "$DEFAULT_ANNOTATION" \
  '[.items[] | select(.metadata.annotations[$a] == "true") | .metadata.name] | join(" ")' <<<"$classes")
read -r -a default_classes <<<"$defaults"
((${#default_classes[@]} == 1)) ||
  fail "expected exactly one DockerSandboxClass annotated $DEFAULT_ANNOTATION=true, found ${#default_classes[@]} [$defaults] (the chart makes one: defaultClass.create)"
default=${default_classes[0]}
class_json=$(jq --arg n "$default" '.items[] | select(.metadata.name == $n)' <<<"$classes")
default_generation=$(jq -r '.metadata.generation' <<<"$class_json")
default_memory=$(jq -r '.spec.resources.default.limits.memory // .spec.resources.max.memory // ""' <<<"$class_json")
log "default class: $default (generation $default_generation, engine memory limit '${default_memory:-none}')"

# test classes; deleted when the test ends (before its namespaces)
sfx=$(rand_suffix)
other=dsb-e2e-$sfx-other # serves namespaces labelled team=other only
sysbox_only=dsb-e2e-$sfx-sysbox
b=dsb-e2e-$sfx-b # deleted and re-created under a running sandbox
on_exit "kubectl delete '$DSB_CLASS' '$other' '$sysbox_only' '$b' --ignore-not-found --wait=false >/dev/null 2>&1"
# The suite's engine image, exactly: these classes allow nothing else.
image_allowed="  image: {allowed: [\"$E2E_DIND_IMAGE\"]}"
class_apply "$other" "  isolation: [sysbox, privileged]
$image_allowed
  namespaceSelector: {matchLabels: {team: other}}"
class_apply "$sysbox_only" "  isolation: [sysbox]
$image_allowed"
b_spec="  isolation: [sysbox, privileged]
$image_allowed"
class_apply "$b" "$b_spec"

# --- every sandbox at once (the refusals are independent of each other)
ns_new ns classes
sandbox_apply "$ns" plain
sandbox_apply "$ns" on-b "  className: $b"
sandbox_apply "$ns" elsewhere "  className: $other"
sandbox_apply "$ns" priv "  className: $sysbox_only
  isolation: privileged"

bad_image=busybox:1.36
image_allowed_by_default=0
while read -r pattern; do
  # shellcheck disable=SC2053  # the class's pattern is a glob on purpose (`*` matches any run)
  if [[ -n "$pattern" && $bad_image == $pattern ]]; then image_allowed_by_default=1; fi
done < <(jq -r '.spec.image.allowed // [] | .[]' <<<"$class_json")
if ((image_allowed_by_default)); then
  log "the default class $default allows $bad_image: skipping the ImageNotAllowed part"
else
  sandbox_apply "$ns" bad-image "  image: $bad_image"
fi

tenant_placement=$(jq -r '.spec.placement.allowTenantPlacement // false' <<<"$class_json")
if [[ "$tenant_placement" == true ]]; then
  log "the default class $default lets tenants place engines: skipping the PlacementNotAllowed part"
else
  sandbox_apply "$ns" tolerates "$(cat <<'YAML'
  tolerations:
  - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
YAML
)"
fi

# --- the default class serves a sandbox that names none
wait_ready "$ns" plain
assert_eq "status.className of a sandbox without spec.className" "$default" "$(dsb_get "$ns" plain '{.status.className}')"
assert_eq "status.classGeneration" "$default_generation" "$(dsb_get "$ns" plain '{.status.classGeneration}')"
if [[ -z "$default_memory" ]]; then
  log "the default class $default sets no memory limit (resources.default.limits or max): limit not checked"
else
  limit=$(kubectl get pod -n "$ns" plain-engine -o 'jsonpath={.spec.containers[?(@.name=="dockerd")].resources.limits.memory}')
  [[ -n "$limit" ]] || fail "the engine container of $ns/plain has no memory limit; the class's is $default_memory"
  want=$(quantity_bytes "$default_memory") || fail "cannot read the class's memory quantity '$default_memory'"
  got=$(quantity_bytes "$limit") || fail "cannot read the pod's memory quantity '$limit'"
  assert_eq "engine memory limit (bytes) = the class's $default_memory" "$want" "$got"
fi
# what an engine reserves is in its status (kubectl describe dsb shows it), and it is the pod's
reserved=$(dsb_get "$ns" plain '{.status.resources.requests.memory}')
assert_eq "status.resources.requests.memory is the engine pod's request" \
  "$(kubectl get pod -n "$ns" plain-engine -o 'jsonpath={.spec.containers[?(@.name=="dockerd")].resources.requests.memory}')" "$reserved"
[[ -n "$reserved" ]] || fail "status.resources.requests.memory of $ns/plain is empty"
# no moving to another class: spec.className is immutable (also from empty to a name)
if out=$(kubectl patch "$DSB" -n "$ns" plain --type merge -p "{\"spec\":{\"className\":\"$b\"}}" 2>&1); then
  fail "spec.className of a running sandbox could be set: $out"
fi
assert_match "setting spec.className later is refused" "className cannot be changed" "$out"

# --- what the default class refuses
if ((!image_allowed_by_default)); then
  expect_refused "$ns" bad-image ImageNotAllowed "spec\.image $bad_image is not allowed by DockerSandboxClass $default"
fi
if [[ "$tenant_placement" != true ]]; then
  expect_refused "$ns" tolerates PlacementNotAllowed "spec\.tolerations.*DockerSandboxClass $default.*allowTenantPlacement"
fi

# --- classes that do not fit
expect_refused "$ns" elsewhere ClassNotAllowed "DockerSandboxClass $other does not serve namespace $ns"
expect_refused "$ns" priv IsolationNotAllowed "isolation privileged is not allowed by DockerSandboxClass $sysbox_only"

# --- a class deleted under a running sandbox, then re-created
wait_ready "$ns" on-b
assert_eq "status.className of a sandbox naming $b" "$b" "$(dsb_get "$ns" on-b '{.status.className}')"
uid=$(pod_uid "$ns" on-b-engine)
claim=$(kubectl get pvc -n "$ns" on-b-docker -o 'jsonpath={.metadata.uid}')
operator_before=$(operator_restarts)
[[ -n "$operator_before" ]] || fail "no operator pod labelled $E2E_OPERATOR_SELECTOR in $E2E_OPERATOR_NAMESPACE"
log "operator pods (name=restarts): $operator_before"

log "deleting DockerSandboxClass $b while $ns/on-b runs on it"
kubectl delete "$DSB_CLASS" "$b" --wait=true --timeout=60s >&2
# A running sandbox is looked at again at least every two minutes, or sooner on a class event.
wait_for 180 "condition ClassNotFound on $ns/on-b" has_condition_reason "$ns" on-b ClassNotFound ||
  fail "no ClassNotFound condition after its class was deleted; conditions: $(dsb_conditions "$ns" on-b 2>&1)"
assert_match "ClassNotFound message names the class" "$b" "$(condition_message_for_reason "$ns" on-b ClassNotFound)"
wait_for 60 "Warning Event ClassNotFound" warning_event_exists "$ns" on-b ClassNotFound || fail "no Warning Event ClassNotFound"
wait_for 60 "the privileged engine stopped" pod_absent "$ns" on-b-engine ||
  fail "the privileged engine kept running after its class was deleted"
wait_for 60 "Warning Event EngineStopped" warning_event_exists "$ns" on-b EngineStopped || fail "no Warning Event EngineStopped"
assert_eq "the engine's volume is kept" "$claim" "$(kubectl get pvc -n "$ns" on-b-docker -o 'jsonpath={.metadata.uid}')"
assert_eq "operator pods and restarts after the class was deleted" "$operator_before" "$(operator_restarts)"
operator_available || fail "the operator is not available after its class was deleted"

log "re-creating DockerSandboxClass $b without privileged"
class_apply "$b" "  isolation: [sysbox]
$image_allowed"
wait_for 120 "condition IsolationNotAllowed on $ns/on-b" has_condition_reason "$ns" on-b IsolationNotAllowed ||
  fail "no IsolationNotAllowed once the class dropped privileged; conditions: $(dsb_conditions "$ns" on-b 2>&1)"
still_true 5 pod_absent "$ns" on-b-engine || fail "an engine pod came back under a class without privileged"

class_apply "$b" "$b_spec"
wait_ready "$ns" on-b
assert_eq "status.className once the class is back" "$b" "$(dsb_get "$ns" on-b '{.status.className}')"
[[ "$(pod_uid "$ns" on-b-engine)" != "$uid" ]] || fail "the stopped engine pod is back with its old UID"
assert_eq "the same volume once the class is back" "$claim" "$(kubectl get pvc -n "$ns" on-b-docker -o 'jsonpath={.metadata.uid}')"
assert_eq "operator pods and restarts at the end" "$operator_before" "$(operator_restarts)"
