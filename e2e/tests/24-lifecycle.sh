#!/usr/bin/env bash
# e2e: about 300s
# Paying only for engines in use, on the real cluster, in a class copied from the default one plus
# lifecycle: {stopGracePeriodSeconds: 20, idle: {suspendAfter: 1h}, expiry: {maxLifetime: 1h}}:
#  - suspend (kubectl dsb suspend) stops the engine pod and keeps the volume, Service and Secrets;
#    phase Suspended, Ready=False Suspended, an Event; resume brings the same engine back with the
#    image loaded and the stopped container created before;
#  - admission refuses suspending an Ephemeral sandbox without storage.discardOnSuspend; the class
#    refuses a lifetime or idle time above its own (LifecycleNotAllowed);
#  - a running sandbox edited into a spec the class refuses keeps its engine, until its lifetime
#    (100s) ends: then the engine stops (Warning Expired);
#  - expiry: lifetime 90s with onExpiry Suspend (ExpiresSoon Warning ahead, then Suspended,
#    Expired) and 50s with onExpiry Delete (the sandbox goes; a Retain volume stays, a Delete one goes);
#  - idle: spec.idle.suspendAfter 30s is NOT reached while a nested container runs, and is once it
#    stopped (IdleSuspended); a `docker run` through `kubectl dsb connect` wakes it and succeeds,
#    the tunnel printing the wake time; a user who may not patch the sandbox is told so; an engine
#    suspended by spec.suspend is not woken and the tunnel says how to resume it;
#  - the operator's /metrics count suspensions by cause.
# Figures (printed, not asserted): suspend-to-pod-gone, resume-to-Ready, the first docker command
# against an idle-suspended engine through the plugin.
source "$(dirname "$0")/../lib.sh"

plugin_workspace

# --- a class like the default one, with lifecycle limits
class=""
class_like_default class life '{"stopGracePeriodSeconds": 20, "idle": {"suspendAfter": "1h"}, "expiry": {"maxLifetime": "1h"}}'

ns_new ns life
ns_new cns life-client
cls="  className: $class"
# expiring sandboxes start first: they run while the suspend case does
sandbox_apply "$ns" exp-suspend "$cls"$'\n'"  lifetime: 90s"
sandbox_apply "$ns" exp-retain "$cls"$'\n'"  lifetime: 50s"$'\n'"  onExpiry: Delete"
sandbox_apply "$ns" exp-delete "$cls"$'\n'"  lifetime: 50s"$'\n'"  onExpiry: Delete"$'\n'"  storage: {size: 1Gi, reclaimPolicy: Delete}"
sandbox_apply "$ns" box "$cls"
sandbox_apply "$ns" edited "$cls"$'\n'"  lifetime: 100s"

# --- refusals: admission, then the class
out=$(sandbox_manifest "$ns" eph "$cls"$'\n'"  suspend: true"$'\n'"  storage: {type: Ephemeral, size: 1Gi}" |
  kubectl apply --dry-run=server -f - 2>&1) && fail "an Ephemeral sandbox with suspend: true was admitted: $out"
assert_match "suspending an Ephemeral sandbox is refused" "storage.discardOnSuspend: true to accept that" "$out"
sandbox_manifest "$ns" eph "$cls"$'\n'"  suspend: true"$'\n'"  storage: {type: Ephemeral, size: 1Gi, discardOnSuspend: true}" |
  kubectl apply --dry-run=server -f - >/dev/null || fail "an Ephemeral sandbox accepting the loss was refused"
sandbox_apply "$ns" too-long "$cls"$'\n'"  lifetime: 2h"
sandbox_apply "$ns" too-lazy "$cls"$'\n'"  idle: {suspendAfter: 2h}"
expect_refused "$ns" too-long LifecycleNotAllowed "lifecycle.expiry.maxLifetime 1h"
expect_refused "$ns" too-lazy LifecycleNotAllowed "lifecycle.idle.suspendAfter 1h"

# --- suspend and resume keep what is inside
wait_ready "$ns" box
make_client "$cns" client "$ns" box
retry 10 docker_answers "$cns" client >/dev/null || fail "the engine does not answer the client"
load_nested_image "$cns" client
cdocker "$cns" client run --name kept "$E2E_NESTED_IMAGE" true || fail "could not run nested container kept"
claim=$(kubectl get pvc -n "$ns" box-docker -o 'jsonpath={.metadata.uid}')
t0=$(date +%s.%N)
kubectl dsb suspend box -n "$ns" >&2 || fail "kubectl dsb suspend failed"
wait_for 60 "the engine pod is gone" pod_absent "$ns" box-engine || fail "the engine pod was not stopped"
suspend_secs=$(echo "$(date +%s.%N) - $t0" | bc)
suspended() { [[ "$(dsb_get "$1" "$2" '{.status.phase}')" == Suspended ]]; }
wait_for 30 "phase Suspended" suspended "$ns" box || fail "phase is $(dsb_get "$ns" box '{.status.phase}')"
ready_reason() { dsb_get "$1" "$2" '{.status.conditions[?(@.type=="Ready")].reason}'; }
assert_eq "Ready reason" Suspended "$(ready_reason "$ns" box)"
assert_eq "status.suspension.cause" Spec "$(dsb_get "$ns" box '{.status.suspension.cause}')"
assert_eq "the volume stays (same claim)" "$claim" "$(kubectl get pvc -n "$ns" box-docker -o 'jsonpath={.metadata.uid}')"
kubectl get svc -n "$ns" box >/dev/null || fail "the Service went with the suspension"
kubectl get secret -n "$ns" box-client >/dev/null || fail "the client Secret went with the suspension"
kubectl get events -n "$ns" --field-selector involvedObject.name=box,reason=Suspended -o name | grep -q . ||
  fail "no Event Suspended on the sandbox"
assert_match "kubectl get dsb shows Suspended" "^box +Suspended" "$(kubectl get "$DSB" -n "$ns" box --no-headers)"
t0=$(date +%s.%N)
kubectl dsb resume box -n "$ns" --wait >&2 || fail "kubectl dsb resume failed"
resume_secs=$(echo "$(date +%s.%N) - $t0" | bc)
retry 10 docker_answers "$cns" client >/dev/null || fail "the resumed engine does not answer the client"
cdocker "$cns" client image inspect "$E2E_NESTED_IMAGE" >/dev/null || fail "the loaded image did not survive the suspension"
assert_eq "the stopped container survived" kept "$(cdocker "$cns" client ps -a --filter name=kept --format '{{.Names}}')"
log "FIGURE suspend-to-pod-gone ${suspend_secs}s, resume-to-Ready ${resume_secs}s (grace 20s)"

# a running sandbox edited into a spec the class refuses keeps its engine (as before this issue)...
wait_ready "$ns" edited
kubectl patch "$DSB" -n "$ns" edited --type merge -p '{"spec":{"image":"example.invalid/not-allowed:1"}}' >&2
wait_for 60 "edited is refused (ImageNotAllowed)" has_condition_reason "$ns" edited ImageNotAllowed ||
  fail "edited was not refused: $(dsb_conditions "$ns" edited)"
kubectl get pod -n "$ns" edited-engine >/dev/null || fail "the refused sandbox's engine stopped before its expiry"

# --- expiry: Suspend, and Delete with either reclaim policy
wait_for 120 "exp-suspend expired and Suspended" suspended "$ns" exp-suspend || fail "exp-suspend did not expire"
assert_eq "exp-suspend Ready reason" Expired "$(ready_reason "$ns" exp-suspend)"
assert_eq "exp-suspend status.suspension.cause" Expiry "$(dsb_get "$ns" exp-suspend '{.status.suspension.cause}')"
warning_event_exists "$ns" exp-suspend ExpiresSoon || fail "no Warning ExpiresSoon ahead of exp-suspend's expiry"
gone() { ! kubectl get "$DSB" -n "$1" "$2" >/dev/null 2>&1; }
wait_for 120 "exp-retain deleted at expiry" gone "$ns" exp-retain || fail "exp-retain was not deleted"
wait_for 120 "exp-delete deleted at expiry" gone "$ns" exp-delete || fail "exp-delete was not deleted"
kubectl get pvc -n "$ns" exp-retain-docker >/dev/null || fail "the Retain volume of exp-retain went with it"
# ... but not past its lifetime
wait_for 120 "the refused sandbox's engine stops at its expiry" pod_absent "$ns" edited-engine ||
  fail "edited's engine outlived its lifetime: $(dsb_conditions "$ns" edited)"
warning_event_exists "$ns" edited Expired || fail "no Warning Expired on the refused sandbox edited"
pvc_gone() { ! kubectl get pvc -n "$1" "$2" >/dev/null 2>&1; }
wait_for 120 "the Delete volume of exp-delete goes" pvc_gone "$ns" exp-delete-docker || fail "exp-delete's volume stayed"

# --- idle: a running container keeps the engine up; once it stops, the engine is suspended
sandbox_apply "$ns" nap "$cls"$'\n'"  idle: {suspendAfter: 30s}"
wait_ready "$ns" nap
make_client "$cns" napper "$ns" nap
retry 10 docker_answers "$cns" napper >/dev/null || fail "nap does not answer"
load_nested_image "$cns" napper
cdocker "$cns" napper run -d --name busy "$E2E_NESTED_IMAGE" sleep 3600 >/dev/null || fail "could not start busy"
ready() { [[ "$(dsb_get "$1" "$2" '{.status.phase}')" == Ready ]]; }
still_true 75 ready "$ns" nap || fail "nap was suspended while a container ran: $(dsb_conditions "$ns" nap)"
log "ok: 75s with a running container (suspendAfter 30s), still Ready"
cdocker "$cns" napper stop -t 1 busy >/dev/null || fail "could not stop busy"
wait_for 120 "nap suspended for idleness" suspended "$ns" nap || fail "nap was not suspended: $(dsb_conditions "$ns" nap)"
assert_eq "nap Ready reason" IdleSuspended "$(ready_reason "$ns" nap)"
kubectl delete pod -n "$cns" napper --wait=false >/dev/null

# a user who may read the sandbox and its Secret but not patch it: told why the wake fails
kubectl create serviceaccount reader -n "$ns" >/dev/null
kubectl create role reader -n "$ns" --verb=get,list --resource="$DSB",secrets,services,pods >/dev/null
kubectl create role forwarder -n "$ns" --verb=create --resource=pods/portforward >/dev/null
for r in reader forwarder; do kubectl create rolebinding "$r" -n "$ns" --role="$r" --serviceaccount="$ns:reader" >/dev/null; done
token=$(kubectl create token reader -n "$ns" --duration=10m)
kubectl config view --raw --minify -o json |
  jq --arg t "$token" --arg ns "$ns" '{apiVersion: "v1", kind: "Config", "current-context": "reader",
      clusters: [{name: "c", cluster: .clusters[0].cluster}], users: [{name: "reader", user: {token: $t}}],
      contexts: [{name: "reader", context: {cluster: "c", user: "reader", namespace: $ns}}]}' >"$work/reader.kubeconfig"
reader_log="$work/reader-docker/dsb/$ns/nap/connect.log"
DOCKER_CONFIG="$work/reader-docker" kubectl dsb --kubeconfig "$work/reader.kubeconfig" connect nap --background >&2 ||
  fail "the reader's connect failed"
on_exit "DOCKER_CONFIG='$work/reader-docker' kubectl dsb disconnect nap -n $ns >/dev/null 2>&1"
DOCKER_CONFIG="$work/reader-docker" "$DOCKER" --context "dsb-$ns.nap" version >/dev/null 2>&1 &&
  fail "the reader's docker reached an idle engine it may not wake"
assert_match "the reader is told it may not wake the engine" "you may not wake it: waking needs patch on dockersandboxes" "$(cat "$reader_log")"
assert_eq "still suspended" Suspended "$(dsb_get "$ns" nap '{.status.phase}')"

# the tenant's docker run through the plugin wakes it
out=$(kubectl dsb connect nap -n "$ns" --background 2>&1) || fail "connect to the idle engine failed: $out"
on_exit "kubectl dsb disconnect nap -n $ns >/dev/null 2>&1"
assert_match "connect says the first connection wakes the engine" "first client connection wakes it" "$out"
t0=$(date +%s.%N)
out=$("$DOCKER" --context "dsb-$ns.nap" run --rm "$E2E_NESTED_IMAGE" echo awake 2>&1) || fail "docker run against the idle engine failed: $out"
first_secs=$(echo "$(date +%s.%N) - $t0" | bc)
assert_eq "docker run through the woken engine" awake "$out"
tunnel_log="$DOCKER_CONFIG/dsb/$ns/nap/connect.log"
assert_match "the tunnel says it woke the engine" "the engine woke in [0-9.]+s" "$(cat "$tunnel_log")"
log "FIGURE first docker command against an idle-suspended engine through kubectl dsb connect: ${first_secs}s ($(grep -o 'woke in [0-9.]*s' "$tunnel_log"))"
assert_eq "phase after the wake" Ready "$(dsb_get "$ns" nap '{.status.phase}')"

# an engine suspended by spec.suspend is not woken; the tunnel says how to resume it
kubectl dsb suspend nap -n "$ns" --wait >&2 || fail "suspend nap failed"
"$DOCKER" --context "dsb-$ns.nap" version >/dev/null 2>&1 && fail "docker reached an engine suspended by spec.suspend"
assert_match "the tunnel names the resume" "is suspended: spec.suspend is true; .kubectl dsb resume nap. starts it again" "$(cat "$tunnel_log")"
assert_eq "spec.suspend is not lifted by a connection" Suspended "$(dsb_get "$ns" nap '{.status.phase}')"

# --- metrics: suspensions by cause on the leader
metrics=$(leader_metrics) || fail "no operator pod says it leads (dockersandbox_leader 1)"
for cause in Spec Idle Expiry; do
  grep -qE "^dockersandbox_suspensions_total\{cause=\"$cause\"\} [1-9]" <<<"$metrics" ||
    fail "no suspensions_total for $cause: $(grep suspensions <<<"$metrics")"
done
grep -qE '^dockersandbox_expiry_deletions_total [1-9]' <<<"$metrics" || fail "no expiry_deletions_total"
grep -qE '^dockersandbox_sandboxes\{phase="Suspended"\} [1-9]' <<<"$metrics" || fail "no Suspended sandboxes on /metrics"
log "/metrics: $(grep -E '^dockersandbox_(suspensions|expiry_deletions)' <<<"$metrics" | tr '\n' ' ')"
