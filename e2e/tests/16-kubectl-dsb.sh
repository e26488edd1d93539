#!/usr/bin/env bash
# e2e: about 110s
# `kubectl dsb`, the plugin, from this machine (not from a pod): `connect` writes the certificates and
# the docker context dsb-NS.NAME and tunnels every client connection through its own port-forward
# stream. Through that tunnel: 100 consecutive and 10 concurrent `docker run --rm`, `docker build`,
# `docker load`, `docker exec`, an attached stdin run; a client killed mid-stream leaves the tunnel
# serving the next; after `connect` stops and starts again the same context works. Plus `ls`,
# `env`, `bundle`, `logs`, `completion`, and the errors: a missing sandbox, one that is not Ready
# (its Ready condition quoted), a user who may not read the Secret, a port in use.
source "$(dirname "$0")/../lib.sh"

# --- the plugin (KUBECTL_DSB, else the build, else kubectl-dsb on PATH) and a docker CLI
plugin_workspace
log "plugin $plugin, $("$DOCKER" --version)"

ns_new ns dsb
name=box
ctx="dsb-$ns.$name"
sandbox_apply "$ns" "$name"
# an image the class does not allow: never Ready, with a reason to quote
sandbox_apply "$ns" bad "  image: example.invalid/not-allowed:1"
wait_ready "$ns" "$name"
version=$(dsb_get "$ns" "$name" '{.status.dockerVersion}')
d() { "$DOCKER" --context "$ctx" "$@"; }
# re_escape TEXT: TEXT as an extended regex matching itself (versions look like 26.1.5+dfsg1)
# shellcheck disable=SC2001  # one sed for a class of characters
re_escape() { sed 's/[][\.*^$+?(){}|]/\\&/g' <<<"$1"; }
# expect_error WHAT REGEX CMD...: CMD fails and says REGEX
expect_error() {
  local what=$1 regex=$2 out; shift 2
  if out=$("$@" 2>&1); then fail "$what: expected a failure, got: $out"; fi
  assert_match "$what" "$regex" "$out"
}

# --- help, ls, completion
kubectl dsb --help >"$work/help.txt" || fail "kubectl dsb --help failed"
for c in connect disconnect env bundle ls logs df prune suspend resume completion; do
  grep -qE "^  $c " "$work/help.txt" || fail "kubectl dsb --help does not list $c"
  kubectl dsb "$c" --help >/dev/null || fail "kubectl dsb $c --help failed"
done
out=$(kubectl dsb ls -n "$ns")
log "kubectl dsb ls:"$'\n'"$out"
assert_match "ls header" '^NAME +PHASE +ISOLATION +ENDPOINT +VERSION +DISK +CONTAINERS +IDLE +EXPIRES +AGE$' "$(head -n1 <<<"$out")"
assert_match "ls row" "^$name +Ready +(privileged|sysbox) +tcp://$name\.$ns\.svc:2376 +$(re_escape "$version") +(-|[0-9]+% [0-9.]+(B|[KMGTP]i)) +(-|[0-9]+/[0-9]+) +(-|[0-9]+[smhd]) +- +[0-9]+[smhd]\$" \
  "$(grep "^$name " <<<"$out")"
assert_match "ls -A" "^$ns +$name +Ready" "$(kubectl dsb ls -A | grep -E "^$ns ")"
assert_match "bash completion" 'complete -F .* kubectl-dsb$' "$(kubectl dsb completion bash | tail -n 5)"
assert_match "kubectl completes sandbox names" "^$name\$" "$(kubectl __complete dsb connect -n "$ns" "" 2>/dev/null)"

# --- clear errors
expect_error "missing sandbox" "DockerSandbox nosuch not found in namespace $ns" kubectl dsb connect nosuch -n "$ns"
wait_for 120 "sandbox bad refused (ImageNotAllowed)" has_condition_reason "$ns" bad ImageNotAllowed ||
  fail "sandbox bad has no ImageNotAllowed condition"
expect_error "not Ready" "DockerSandbox $ns/bad is not Ready .*Ready=False, ImageNotAllowed: " kubectl dsb connect bad -n "$ns"
# a user who may read sandboxes but not Secrets
kubectl create serviceaccount reader -n "$ns" >/dev/null
kubectl create role dsb-reader -n "$ns" --verb=get,list --resource="$DSB" >/dev/null
kubectl create rolebinding dsb-reader -n "$ns" --role=dsb-reader --serviceaccount="$ns:reader" >/dev/null
token=$(kubectl create token reader -n "$ns" --duration=10m)
kubectl config view --raw --minify -o json |
  jq --arg t "$token" --arg ns "$ns" '{apiVersion: "v1", kind: "Config", "current-context": "reader",
      clusters: [{name: "c", cluster: .clusters[0].cluster}], users: [{name: "reader", user: {token: $t}}],
      contexts: [{name: "reader", context: {cluster: "c", user: "reader", namespace: $ns}}]}' >"$work/reader.kubeconfig"
expect_error "no permission on the Secret" "cannot get secrets $name-client in namespace $ns: .*forbidden" \
  kubectl dsb --kubeconfig "$work/reader.kubeconfig" connect "$name" --tunnel always
# a port another process listens on
python3 -c 'import socket,time,sys
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)' >"$work/busy" &
busy_pid=$!
on_exit "kill $busy_pid 2>/dev/null || true"
wait_for 20 "a listener holds a port" test -s "$work/busy" || fail "the port holder did not start"
busy=$(cat "$work/busy")
expect_error "port in use" "127\.0\.0\.1:$busy.*in use.*--port" kubectl dsb connect "$name" -n "$ns" --tunnel always --port "$busy"
kill "$busy_pid" 2>/dev/null || true

# --- bundle: the layout DOCKER_CERT_PATH expects, the key private
kubectl dsb bundle "$name" -n "$ns" "$work/bundle" >&2 || fail "kubectl dsb bundle failed"
assert_eq "bundle key.pem mode" 600 "$(stat -c %a "$work/bundle/key.pem")"
assert_eq "bundle ca.pem is the Secret's" "$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.ca\.pem}' | base64 -d | sha256sum)" \
  "$(sha256sum <"$work/bundle/ca.pem")"

# --- env without a tunnel: the ClusterIP when this machine reaches it, else it says to connect
if out=$(kubectl dsb env "$name" -n "$ns" 2>&1); then
  host=$(sed -n "s/^export DOCKER_HOST='\(.*\)'\$/\1/p" <<<"$out")
  log "env without a tunnel: $host (direct)"
  server=$(eval "$out" && "$DOCKER" version --format '{{.Server.Version}}') || fail "docker through env ($host) failed"
  assert_eq "docker through the ClusterIP (env)" "$version" "$server"
else
  assert_match "env without a reachable engine" "kubectl dsb connect $name -n $ns" "$out"
fi

# --- connect in the background, through the tunnel
out=$(kubectl dsb connect "$name" -n "$ns" --tunnel always --background 2>&1) || fail "connect failed: $out"
on_exit "kubectl dsb disconnect $name -n $ns >/dev/null 2>&1"
on_exit "log 'tunnel log (errors per connection):'; tail -n 30 '$DOCKER_CONFIG/dsb/$ns/$name/connect.log' >&2 || true"
log "kubectl dsb connect:"$'\n'"$out"
assert_match "connect prints the context usage" "docker --context $ctx " "$out"
assert_match "connect prints the exports" "export DOCKER_HOST=tcp://127\.0\.0\.1:[0-9]+ DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=/" "$out"
port=$(grep -oE 'DOCKER_HOST=tcp://127\.0\.0\.1:[0-9]+' <<<"$out" | head -n1 | cut -d: -f3)
tunnel_pid=$(cat "$DOCKER_CONFIG/dsb/$ns/$name/connect.pid")
assert_eq "docker version through the context" "$version" "$(d version --format '{{.Server.Version}}')"
exports=$(kubectl dsb env "$name" -n "$ns")
assert_match "env names the tunnel" "DOCKER_HOST='tcp://127\.0\.0\.1:$port'" "$exports"
assert_eq "docker version through env" "$version" "$(eval "$exports" && "$DOCKER" version --format '{{.Server.Version}}')"
assert_eq "env -o json" "tcp://127.0.0.1:$port" "$(kubectl dsb env "$name" -n "$ns" -o json | jq -r .DOCKER_HOST)"

# docker load (a 4 MB upload through one stream)
d load <"$E2E_NESTED_IMAGE_TAR" >&2 || fail "docker load through the tunnel failed"
img=$E2E_NESTED_IMAGE

# 100 consecutive short-lived containers
start=$(date +%s) failures=0
for i in $(seq 1 100); do
  if ! out=$(d run --rm "$img" true 2>&1); then failures=$((failures + 1)); log "run $i failed: $out"; fi
done
log "100 consecutive docker run --rm: $((100 - failures)) passed in $(($(date +%s) - start))s"
assert_eq "failed consecutive runs" 0 "$failures"

# 10 concurrent
start=$(date +%s) pids=()
for i in $(seq 1 10); do
  d run --rm "$img" sh -c "echo concurrent-$i" >"$work/c$i.out" 2>&1 &
  pids+=($!)
done
failures=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { failures=$((failures + 1)); log "concurrent run $((i + 1)): $(cat "$work/c$((i + 1)).out")"; }; done
log "10 concurrent docker run --rm: $((10 - failures)) passed in $(($(date +%s) - start))s"
assert_eq "failed concurrent runs" 0 "$failures"
for i in $(seq 1 10); do assert_eq "concurrent run $i output" "concurrent-$i" "$(cat "$work/c$i.out")"; done

# docker build (the build context is uploaded through the tunnel)
mkdir -p "$work/build"
printf 'FROM %s\nCOPY token /token\nRUN cat /token > /built\n' "$img" >"$work/build/Dockerfile"
token="built-$(rand_suffix)"
echo "$token" >"$work/build/token"
d build -q -t dsb-e2e/built:1 "$work/build" >&2 || fail "docker build through the tunnel failed"
assert_eq "built image" "$token" "$(d run --rm dsb-e2e/built:1 cat /built)"

# docker exec, and attached stdin (the client closes its input; the output still arrives)
d run -d --name sleeper "$img" sleep 600 >/dev/null || fail "docker run -d failed"
assert_eq "docker exec" exec-ok "$(d exec sleeper echo exec-ok)"
assert_eq "docker exec -i" via-exec "$(d exec -i sleeper cat <<<via-exec)"
d rm -f sleeper >/dev/null
assert_eq "docker run -i (attached stdin)" hello "$(d run -i --rm "$img" cat <<<hello)"

# a client killed mid-stream: only its connection ends, the tunnel serves the next one
d run --name ticker "$img" sh -c 'while :; do echo tick; sleep 0.2; done' >"$work/ticker.out" 2>&1 &
ticker=$!
wait_for 60 "the streaming client receives output" grep -q tick "$work/ticker.out" || fail "no output from ticker"
kill -9 "$ticker"
wait "$ticker" 2>/dev/null || true
kill -0 "$tunnel_pid" || fail "the tunnel died with the killed client"
assert_eq "run after a killed client" after-kill "$(d run --rm "$img" echo after-kill)"
d rm -f ticker >/dev/null

# --- stop connect; the context stays and works once connect runs again (same port)
kubectl dsb disconnect "$name" -n "$ns" >&2 || fail "disconnect failed"
# gone, or a zombie until init reaps it
_exited() { ! ps -o stat= -p "$1" | grep -qv Z; }
_exited "$tunnel_pid" || fail "the tunnel still runs after disconnect: $(ps -o pid,stat,args -p "$tunnel_pid")"
if d version >/dev/null 2>&1; then fail "the context still answers without a tunnel"; fi
# `command`: $! is then kubectl itself, which execs the plugin (the lib's kubectl is a function: a subshell)
command kubectl dsb connect "$name" -n "$ns" --tunnel always >"$work/connect2.out" 2>&1 &
fg_pid=$!
on_exit "kill $fg_pid 2>/dev/null || true"
wait_for 60 "the context answers after connect runs again" d version || fail "no answer after reconnect: $(cat "$work/connect2.out")"
assert_match "same port as before" "DOCKER_HOST=tcp://127\.0\.0\.1:$port " "$(cat "$work/connect2.out")"
assert_eq "run after reconnect" again "$(d run --rm "$img" echo again)"
kill -INT "$fg_pid"
wait_for 20 "connect stops on Ctrl-C" _exited "$fg_pid" || fail "connect ignored SIGINT"
assert_match "connect says it stopped" 'Tunnel stopped after [0-9]+ connections' "$(cat "$work/connect2.out")"

# --- dockerd's log
kubectl dsb logs "$name" -n "$ns" >"$work/dockerd.log" || fail "kubectl dsb logs failed"
grep -q 'API listen on' "$work/dockerd.log" || fail "kubectl dsb logs: no 'API listen on' in $(wc -l <"$work/dockerd.log") lines"
assert_eq "kubectl dsb logs --tail 3" 3 "$(kubectl dsb logs "$name" -n "$ns" --tail 3 | wc -l)"
