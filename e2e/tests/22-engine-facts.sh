#!/usr/bin/env bash
# e2e: about 70s
# What is inside an engine, without connecting to it: status.engine shows the containers, images
# and disk figures a docker client sees (`docker ps -a`, `docker image inspect`), against the
# volume's size; its last activity; `kubectl get dsb` shows DISK and CONTAINERS, `kubectl dsb ls`
# too; the operator's /metrics has the engine's series, labelled namespace, name and class only.
# A change inside the engine reaches status within the facts interval (20 s in the e2e install).
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client facts
started=$(date +%s)
load_nested_image "$cns" client
image_bytes=$(cdocker "$cns" client image inspect -f '{{.Size}}' "$E2E_NESTED_IMAGE")
cdocker "$cns" client run -d --name one "$E2E_NESTED_IMAGE" sleep 3600 >/dev/null || fail "could not start nested container one"
cdocker "$cns" client run -d --name two "$E2E_NESTED_IMAGE" sleep 3600 >/dev/null || fail "could not start nested container two"
cdocker "$cns" client run --name finished "$E2E_NESTED_IMAGE" true || fail "could not run nested container finished"
running=$(cdocker "$cns" client ps -q | wc -l)
total=$(cdocker "$cns" client ps -aq | wc -l)
images=$(cdocker "$cns" client info -f '{{.Images}}')
log "the client sees: $running running of $total containers, $images image(s) of $image_bytes bytes"
assert_eq "containers the client started" "2 3" "$running $total"

engine() { dsb_get "$ns" "$name" "{.status.engine.$1}"; }
counts_shown() { [[ "$(engine containersRunning) $(engine containers) $(engine images)" == "$running $total $images" ]]; }
wait_for 60 "status.engine shows $running running of $total containers and $images image(s)" counts_shown ||
  fail "status.engine is $(kubectl get "$DSB" -n "$ns" "$name" -o 'jsonpath={.status.engine}')"
log "status.engine: $(kubectl get "$DSB" -n "$ns" "$name" -o 'jsonpath={.status.engine}')"

# disk: image layers as dockerd counts them (one image: its size), used = the four figures, against
# the claim's capacity
assert_eq "status.engine.disk.imagesBytes (docker image inspect .Size)" "$image_bytes" "$(engine disk.imagesBytes)"
sum=$(($(engine disk.imagesBytes) + $(engine disk.containersBytes) + $(engine disk.volumesBytes) + $(engine disk.buildCacheBytes)))
assert_eq "usedBytes is the sum of images, containers, volumes and build cache" "$sum" "$(engine disk.usedBytes)"
capacity=$(kubectl get pvc -n "$ns" "$name-docker" -o 'jsonpath={.status.capacity.storage}')
assert_eq "capacityBytes is the claim's capacity ($capacity)" "$((1 << 30))" "$(engine disk.capacityBytes)"
assert_eq "usedPercent" "$((sum * 100 / (1 << 30)))" "$(engine disk.usedPercent)"

# the last activity is one of this test's starts (the engine clock and ours agree within a minute)
activity=$(date -d "$(engine lastActivity)" +%s) || fail "lastActivity $(engine lastActivity) is not a time"
((activity >= started - 60 && activity <= $(date +%s) + 60)) ||
  fail "lastActivity $(engine lastActivity) is not the nested containers' start (test started $(date -u -d "@$started"))"

# kubectl get dsb: DISK and CONTAINERS columns
out=$(kubectl get "$DSB" -n "$ns" "$name")
log "kubectl get dsb:"$'\n'"$out"
assert_match "kubectl get dsb header" 'DISK +CONTAINERS +AGE' "$(head -n1 <<<"$out" | tr '[:lower:]' '[:upper:]')"
assert_match "kubectl get dsb row" "^$name +Ready .* $(engine disk.usedPercent) +$running +[0-9]" "$(tail -n1 <<<"$out")"

# kubectl dsb ls: the same, running/total
plugin=$(plugin_binary)
if [[ -n "$plugin" ]]; then
  out=$("$plugin" ls -n "$ns")
  log "kubectl dsb ls:"$'\n'"$out"
  assert_match "kubectl dsb ls" "^$name +Ready .* $(engine disk.usedPercent)% [0-9.]+[KMG]i +$running/$total +" "$(tail -n1 <<<"$out")"
else
  log "no kubectl-dsb binary built: its ls columns are checked by 16-kubectl-dsb's build only"
fi

# the engine's series on the leader's /metrics
class=$(dsb_get "$ns" "$name" '{.status.className}')
metrics=$(leader_metrics) || fail "no operator pod says it leads (dockersandbox_leader 1)"
labels="{namespace=\"$ns\",name=\"$name\",class=\"$class\"}"
for series in "engine_up$labels 1" "engine_containers_running$labels $running" "engine_containers$labels $total" \
  "engine_images$labels $images" "engine_disk_used_bytes$labels $sum" "engine_disk_capacity_bytes$labels $((1 << 30))" \
  "engine_last_activity_timestamp_seconds$labels $activity"; do
  grep -qxF "dockersandbox_$series" <<<"$metrics" || fail "no series dockersandbox_$series on /metrics; it has:
$(grep "name=\"$name\"" <<<"$metrics" | grep "namespace=\"$ns\"")"
done
log "the engine's series are on /metrics"

# a change inside the engine reaches status within the interval
cdocker "$cns" client stop -t 1 two >/dev/null || fail "could not stop nested container two"
one_running() { [[ "$(engine containersRunning)" == 1 ]]; }
wait_for 75 "status.engine.containersRunning back to 1" one_running || fail "status.engine did not follow the stop"
