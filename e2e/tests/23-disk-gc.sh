#!/usr/bin/env bash
# e2e: about 120s
# Disk garbage collection with the class's watermarks (disk.gc), on a 1Gi volume with marks at
# 30% and 20%:
#  - a throwaway image of ~400 MB takes use past the high mark: the operator prunes it (an unused
#    image) and says how much in a DiskGarbageCollected Event; the image a running container uses
#    stays; status.engine.gc counts the run; DiskPressure is False;
#  - ~400 MB written by a running container cannot be pruned: DiskPressure=True and a Warning
#    Event name the containers' writable layers, and the container keeps running; removing it
#    clears the pressure;
#  - dockerd's own builder GC is set from the class (builder.gc in the engine's daemon.json);
#  - marks the wrong way round (lowPercent >= highPercent) are refused at admission;
#  - `kubectl dsb df` shows the engine's disk against the volume, `kubectl dsb prune --dry-run`
#    names an unused image below the high mark without removing it, `prune --to 1` removes it.
source "$(dirname "$0")/../lib.sh"

DEFAULT_ANNOTATION=dockersandbox.dev/is-default-class
DSB_CLASS=dockersandboxclasses.dockersandbox.dev
default=$(kubectl get "$DSB_CLASS" -o json | jq -r --arg a "$DEFAULT_ANNOTATION" \
  '[.items[] | select(.metadata.annotations[$a] == "true")][0] // empty')
[[ -n "$default" ]] || fail "no default DockerSandboxClass to start the test class from"
class="e2e-gc-$(rand_suffix)"
# marks the wrong way round are refused at admission, with the reason
out=$(kubectl apply --dry-run=server -f - 2>&1 <<EOF
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandboxClass
metadata: {name: $class-bad}
spec: {disk: {gc: {highPercent: 60, lowPercent: 80}}}
EOF
) && fail "a class with lowPercent above highPercent was accepted: $out"
assert_match "refusal of lowPercent >= highPercent" 'disk.gc.lowPercent must be below highPercent' "$out"
# the default class (its images, isolation and network as the suite has them) with low marks
jq --arg n "$class" '{apiVersion, kind, metadata: {name: $n, labels: {"dockersandbox.dev/e2e": "true"}},
  spec: (.spec + {disk: {gc: {highPercent: 30, lowPercent: 20, minAge: "1h", buildCachePercent: 5}}})}' \
  <<<"$default" | kubectl apply -f - >&2 || fail "could not create class $class"
on_exit kubectl delete "$DSB_CLASS" "$class" --ignore-not-found --wait=false

ns_new ns gc
ns_new cns gc-client
name=box
sandbox_apply "$ns" "$name" "  className: $class"
wait_ready "$ns" "$name"
make_client "$cns" client "$ns" "$name"
retry 10 docker_answers "$cns" client >/dev/null || fail "the engine does not answer the client"

daemon_json=$(engine_exec "$ns" "$name" cat /etc/docker/daemon.json) || fail "cannot read the engine's daemon.json"
log "daemon.json: $daemon_json"
assert_eq "builder.gc.defaultKeepStorage (5% of 1Gi)" "$(((1 << 30) * 5 / 100))B" \
  "$(jq -r '.builder.gc.defaultKeepStorage' <<<"$daemon_json" 2>/dev/null)"

load_nested_image "$cns" client
cdocker "$cns" client run -d --name keep "$E2E_NESTED_IMAGE" sleep 3600 >/dev/null || fail "could not start container keep"
cdocker "$cns" client run --name filler "$E2E_NESTED_IMAGE" sh -c 'head -c 400000000 /dev/urandom > /fill' ||
  fail "could not write the filler"
cdocker "$cns" client commit filler dsb-e2e/fill:1 >/dev/null || fail "could not commit the filler image"
cdocker "$cns" client rm filler >/dev/null
log "images now: $(cdocker "$cns" client image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | tr '\n' ' ')"

gc_event() {
  kubectl get events -n "$ns" -o json | jq -r --arg n "$name" '[.items[] | select(.type == "Normal"
    and .reason == "DiskGarbageCollected" and .involvedObject.name == $n)] | map(.message) | join("; ")'
}
has_gc_event() { [[ -n "$(gc_event)" ]]; }
wait_for 90 "a DiskGarbageCollected Event" has_gc_event || fail "no garbage collection; status.engine: $(dsb_get "$ns" "$name" '{.status.engine}')"
note=$(gc_event)
log "Event: $note"
assert_match "the Event says what it freed, from where" 'freed [0-9.]+(Mi|Gi): .*unused images \(1\)' "$note"
image_gone() { ! cdocker "$cns" client image inspect dsb-e2e/fill:1 >/dev/null 2>&1; }
wait_for 10 "the throwaway image pruned" image_gone || fail "dsb-e2e/fill:1 is still there"
cdocker "$cns" client image inspect "$E2E_NESTED_IMAGE" >/dev/null 2>&1 || fail "the image of the running container was pruned"
assert_eq "container keep still runs" true "$(cdocker "$cns" client inspect -f '{{.State.Running}}' keep)"
gc_counted() { (($(dsb_get "$ns" "$name" '{.status.engine.gc.runs}') >= 1)); }
wait_for 30 "status.engine.gc counts the run" gc_counted || fail "status.engine.gc: $(dsb_get "$ns" "$name" '{.status.engine.gc}')"
freed=$(dsb_get "$ns" "$name" '{.status.engine.gc.freedBytes}')
((freed > 300000000)) || fail "status.engine.gc.freedBytes $freed: expected the ~400 MB image"
pressure() { dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="DiskPressure")].status}'; }
no_pressure() { [[ "$(pressure)" == False ]]; }
wait_for 30 "DiskPressure=False" no_pressure || fail "DiskPressure is '$(pressure)'"

# kubectl dsb df and prune: the tenant's own view and pruning, below the high mark too
plugin=$(plugin_binary)
if [[ -n "$plugin" ]]; then
  cdocker "$cns" client run --name filler2 "$E2E_NESTED_IMAGE" sh -c 'head -c 100000000 /dev/urandom > /fill' ||
    fail "could not write the second filler"
  cdocker "$cns" client commit filler2 dsb-e2e/fill:2 >/dev/null || fail "could not commit the second filler image"
  cdocker "$cns" client rm filler2 >/dev/null
  out=$("$plugin" df -n "$ns" "$name") || fail "kubectl dsb df failed: $out"
  log "kubectl dsb df:"$'\n'"$out"
  assert_match "df: images" '^Images +9[0-9.]+Mi +2 images$' "$(grep '^Images' <<<"$out")"
  assert_match "df: total against the volume" '^Total +[0-9.]+Mi +[0-9]+% of 1.0Gi$' "$(grep '^Total' <<<"$out")"
  out=$("$plugin" prune -n "$ns" "$name" --to 1 --dry-run) || fail "kubectl dsb prune --dry-run failed: $out"
  log "kubectl dsb prune --dry-run:"$'\n'"$out"
  fill2=$(cdocker "$cns" client image inspect -f '{{.Id}}' dsb-e2e/fill:2)
  assert_match "prune --dry-run names the unused image" "unused image $fill2" "$out"
  cdocker "$cns" client image inspect dsb-e2e/fill:2 >/dev/null 2>&1 || fail "--dry-run removed the image"
  out=$("$plugin" prune -n "$ns" "$name" --to 1) || fail "kubectl dsb prune failed: $out"
  log "kubectl dsb prune: $out"
  assert_match "prune says what it freed" 'freed 9[0-9.]+Mi: .*unused images \(1\)' "$out"
  cdocker "$cns" client image inspect dsb-e2e/fill:2 >/dev/null 2>&1 && fail "kubectl dsb prune left dsb-e2e/fill:2"
  cdocker "$cns" client image inspect "$E2E_NESTED_IMAGE" >/dev/null 2>&1 || fail "prune removed the image of a running container"
else
  log "no kubectl-dsb binary built: df and prune not checked here"
fi

# data a running container holds cannot be pruned: DiskPressure says what holds the space
cdocker "$cns" client run -d --name hog "$E2E_NESTED_IMAGE" sh -c 'head -c 400000000 /dev/urandom > /hog; sleep 3600' >/dev/null ||
  fail "could not start container hog"
pressed() { [[ "$(pressure)" == True ]]; }
wait_for 90 "DiskPressure=True" pressed || fail "DiskPressure is '$(pressure)'; status.engine: $(dsb_get "$ns" "$name" '{.status.engine}')"
message=$(dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="DiskPressure")].message}')
log "DiskPressure: $message"
assert_match "DiskPressure names what holds the space" "containers' writable layers [0-9.]+(Mi|Gi)" "$message"
wait_for 30 "a Warning Event AboveHighWatermark" warning_event_exists "$ns" "$name" AboveHighWatermark ||
  fail "no Warning Event for the full disk"
assert_eq "container hog still runs" true "$(cdocker "$cns" client inspect -f '{{.State.Running}}' hog)"

cdocker "$cns" client rm -f hog >/dev/null || fail "could not remove container hog"
wait_for 60 "DiskPressure=False once the data is gone" no_pressure || fail "DiskPressure is '$(pressure)'"
