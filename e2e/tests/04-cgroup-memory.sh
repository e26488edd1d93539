#!/usr/bin/env bash
# e2e: about 76s
# Nested containers live inside the engine pod's cgroup, so the pod's memory limit holds for them:
# a nested memory hog is OOM-killed while the engine keeps running. Works on cgroup v1 and v2.
source "$(dirname "$0")/../lib.sh"

limit_bytes=$((512 * 1024 * 1024))
ns_new ns cgroup
ns_new cns cgroup-client
name=box
sandbox_apply "$ns" "$name" "$(cat <<'YAML'
  resources:
    requests: {memory: 512Mi}
    limits: {memory: 512Mi}
YAML
)"
wait_ready "$ns" "$name"
make_client "$cns" client "$ns" "$name"
retry 10 docker_answers "$cns" client >/dev/null || fail "engine does not answer"
load_nested_image "$cns" client
engine_uid=$(pod_uid "$ns" "$name-engine")

cdocker "$cns" client run -d --name sleeper "$E2E_NESTED_IMAGE" sleep 3600 >&2 || fail "could not start nested sleep"
pid=$(cdocker "$cns" client inspect -f '{{.State.Pid}}' sleeper)
assert_match "nested sleep pid (in the engine's pid namespace)" '^[1-9][0-9]*$' "$pid"
log "nested sleep runs as pid $pid in the engine container"

# cgroup version as seen by the engine
if engine_exec "$ns" "$name" test -f /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cgv=2; mnt=/sys/fs/cgroup; limit_file=memory.max
  nested=$(engine_exec "$ns" "$name" cat "/proc/$pid/cgroup" | awk -F: '$1 == "0" {print $3}')
else
  cgv=1; mnt=/sys/fs/cgroup/memory; limit_file=memory.limit_in_bytes
  nested=$(engine_exec "$ns" "$name" cat "/proc/$pid/cgroup" | awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}')
fi
# the cgroup directory the engine container sees as the root of its memory hierarchy
root=$(engine_exec "$ns" "$name" cat /proc/self/mountinfo | awk -v m="$mnt" '$5 == m {print $4; exit}')
log "cgroup v$cgv; engine's memory cgroup root: $root; nested sleep's cgroup: $nested"
[[ -n "$nested" && -n "$root" ]] || fail "could not read the cgroup paths (nested='$nested' root='$root')"
case "$nested" in
  */..*) fail "nested process's cgroup $nested escapes the engine container's cgroup namespace" ;;
esac
if [[ "$root" != / ]]; then
  [[ "$nested" == "$root"/* ]] || fail "nested cgroup $nested is not below the engine's cgroup $root"
  rel=${nested#"$root"}
else
  rel=$nested
fi
[[ "$rel" != / && -n "$rel" ]] || fail "nested process shares the engine's own cgroup ($nested); expected a child cgroup"
log "ok: nested cgroup is below the engine container's cgroup (relative path $rel)"
engine_exec "$ns" "$name" cat "$mnt$rel/cgroup.procs" | grep -qx "$pid" ||
  fail "pid $pid not listed in $mnt$rel/cgroup.procs inside the engine"
log "ok: $mnt$rel/cgroup.procs lists pid $pid"

# node's point of view: on cgroup v1 (host cgroup namespace) the path names the pod's cgroup
pod_uid_us=${engine_uid//-/_}
if [[ "$root" == *kubepods* ]]; then
  assert_match "engine cgroup path names the engine pod (node view)" "pod($engine_uid|$pod_uid_us)" "$root"
else
  log "cgroup path is namespaced ($root); pod cgroup name not visible from inside, skipping node-view check"
fi

limit=$(engine_exec "$ns" "$name" cat "$mnt/$limit_file")
assert_eq "engine container memory limit ($mnt/$limit_file)" "$limit_bytes" "$limit"

# node's point of view, only when this machine is the node (local clusters) and paths are not namespaced
host_dir="$mnt$nested"
if [[ "$root" != / && -r "$host_dir/cgroup.procs" ]]; then
  host_pids=$(cat "$host_dir/cgroup.procs")
  found=""
  for hp in $host_pids; do
    # NSpid: host pid, pid in the engine container, pid in the nested container
    if awk -v p="$pid" '/^NSpid:/ { for (i = 3; i <= NF; i++) if ($i == p) ok = 1 } END { exit !ok }' "/proc/$hp/status" 2>/dev/null; then
      found=$hp
    fi
  done
  [[ -n "$found" ]] || fail "node view: no process in $host_dir maps to engine pid $pid (pids: $host_pids)"
  log "ok: node view: host pid $found ($(grep '^NSpid:' "/proc/$found/status" | tr -s '\t ' ' ')) is in $host_dir"
  assert_eq "node view: engine container memory limit ($mnt$root/$limit_file)" "$limit_bytes" "$(cat "$mnt$root/$limit_file")"
else
  log "node view not accessible from here (remote node or namespaced cgroups); relying on the engine's view"
fi

# a nested memory hog: doubles a string up to 1 GiB (bounded), far above the 512Mi pod limit
log "running a nested memory hog (string doubling to 1GiB)"
set +o errexit
hog_out=$(cdocker "$cns" client run --name hog "$E2E_NESTED_IMAGE" \
  awk 'BEGIN { s = "xxxxxxxx"; for (i = 0; i < 27; i++) s = s s; print "survived", length(s) }' 2>&1)
hog_rc=$?
set -o errexit
log "hog exit code $hog_rc, output: $hog_out"
state=$(retry 3 cdocker "$cns" client inspect -f '{{.State.ExitCode}} {{.State.OOMKilled}}' hog) || state=""
# did the OOM killer pick the engine instead? (the kubelet reports a restart a little later)
engine_restarted() {
  local r
  r=$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.status.containerStatuses[?(@.name=="dockerd")].restartCount}')
  [[ "$(pod_uid "$ns" "$name-engine")" != "$engine_uid" || "${r:-0}" != 0 ]]
}
died=0
if [[ -z "$state" ]]; then
  died=1  # the engine no longer answers: wait for the kubelet to report why
  wait_for 60 "engine restart reported" engine_restarted || true
elif wait_for 15 "engine restart, if any (none expected)" engine_restarted; then
  died=1
fi
if ((died)); then
  last=$(kubectl get pod -n "$ns" "$name-engine" -o json |
    jq -c '.status.containerStatuses[]? | select(.name == "dockerd") | {restartCount, last: .lastState.terminated | {reason, exitCode}}' 2>/dev/null || true)
  fail "the engine died instead of the nested hog (dockerd $last; hog rc=$hog_rc): the OOM killer picked dockerd"
fi
log "hog state (ExitCode OOMKilled): $state"
if [[ "$hog_rc" != 137 && "$state" != *true ]]; then
  fail "nested memory hog was not OOM-killed (rc=$hog_rc, state=$state, output=$hog_out)"
fi
log "ok: the nested memory hog was OOM-killed"

# the engine survived
assert_eq "engine pod UID unchanged" "$engine_uid" "$(pod_uid "$ns" "$name-engine")"
assert_eq "engine container restarts" 0 \
  "$(kubectl get pod -n "$ns" "$name-engine" -o 'jsonpath={.status.containerStatuses[?(@.name=="dockerd")].restartCount}')"
retry 5 docker_answers "$cns" client >/dev/null || fail "engine does not answer after the OOM kill"
assert_eq "nested sleep still running" true "$(cdocker "$cns" client inspect -f '{{.State.Running}}' sleeper)"
