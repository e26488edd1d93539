# shellcheck shell=bash
# Shared helpers for the dockersandbox-operator end-to-end tests.
#
# Source this file from a test (e2e/tests/NN-name.sh). It works against any cluster
# reachable through $KUBECONFIG; nothing here knows how the cluster was made.
#
# Environment (all optional):
#   KUBECONFIG            cluster to test (default: $DSB_E2E_STATE/kubeconfig if present, else kubectl's default)
#   KUBECTL, HELM         binaries (default: kubectl on PATH, $DSB_CACHE/bin/helm or helm on PATH)
#   E2E_DIND_IMAGE        engine image (spec.image) and docker client pod image
#   E2E_OPERATOR_IMAGE    operator image installed by run-tests.sh
#   E2E_NESTED_IMAGE_TAR  docker-load-able tar holding dsb-e2e/busybox:nested
#   E2E_BUSYBOX_IMAGE     busybox image for helper pods (listeners, TCP probes)
#   E2E_TIMEOUT           seconds to wait for a sandbox to become Ready (default 240)
#   E2E_ARTIFACTS         where logs and diagnostics go (default /tmp/dsb-e2e-artifacts)
#   E2E_KEEP_NAMESPACES   1 = never delete test namespaces; "on-failure" = keep them when a test fails
#   E2E_OPERATOR_NAMESPACE, E2E_RELEASE, E2E_CHART   where/how the operator is installed
#   E2E_SYSBOX_RUNTIME_CLASS  the RuntimeClass that means sysbox (default sysbox-runc, as the chart's)
#   E2E_HELM_VALUES       values file for the install (default e2e/tools/operator-e2e-values.yaml if present; "" = none)

set -o errexit -o nounset -o pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/.." && pwd)

DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
DSB_E2E_STATE=${DSB_E2E_STATE:-/var/lib/dockersandbox-e2e}
if [[ -z "${KUBECONFIG:-}" && -f "$DSB_E2E_STATE/kubeconfig" ]]; then
  export KUBECONFIG="$DSB_E2E_STATE/kubeconfig"
fi

E2E_DIND_IMAGE=${E2E_DIND_IMAGE:-localhost/dockersandbox/dind:e2e}
E2E_OPERATOR_IMAGE=${E2E_OPERATOR_IMAGE:-localhost/dockersandbox/operator:dev}
E2E_NESTED_IMAGE_TAR=${E2E_NESTED_IMAGE_TAR:-$DSB_CACHE/images/nested-busybox.docker.tar}
E2E_NESTED_IMAGE=${E2E_NESTED_IMAGE:-dsb-e2e/busybox:nested}
# A small image with busybox (nc, sh) for helper pods; the local cluster builds it (e2e/images).
E2E_BUSYBOX_IMAGE=${E2E_BUSYBOX_IMAGE:-localhost/dockersandbox/busybox:e2e}
E2E_TIMEOUT=${E2E_TIMEOUT:-240}
E2E_ARTIFACTS=${E2E_ARTIFACTS:-/tmp/dsb-e2e-artifacts}
E2E_OPERATOR_NAMESPACE=${E2E_OPERATOR_NAMESPACE:-dockersandbox-system}
E2E_RELEASE=${E2E_RELEASE:-dockersandbox-operator}
E2E_CHART=${E2E_CHART:-$REPO_ROOT/charts/dockersandbox-operator}
E2E_SYSBOX_RUNTIME_CLASS=${E2E_SYSBOX_RUNTIME_CLASS:-sysbox-runc}
# Names every test and tool shares: the CRDs' resource names and the label selector of the operator's
# own objects (pods, Deployment, Services: the chart labels them with the release name).
DSB=dockersandboxes.dockersandbox.dev
DSB_CLASS=dockersandboxclasses.dockersandbox.dev
# The operator pods only (the activator's pods share the release label, not the name).
E2E_OPERATOR_SELECTOR=app.kubernetes.io/instance=$E2E_RELEASE,app.kubernetes.io/name=dockersandbox-operator
# shellcheck disable=SC2034  # for the tests (26-activator)
E2E_ACTIVATOR_SELECTOR=app.kubernetes.io/instance=$E2E_RELEASE,app.kubernetes.io/component=activator
E2E_KEEP_NAMESPACES=${E2E_KEEP_NAMESPACES:-0}
E2E_TEST_NAME=${E2E_TEST_NAME:-$(basename "${0%.sh}")}
E2E_SKIP_CODE=77
export E2E_DIND_IMAGE E2E_OPERATOR_IMAGE E2E_NESTED_IMAGE_TAR E2E_ARTIFACTS

if [[ -z "${HELM:-}" ]]; then
  if [[ -x "$DSB_CACHE/bin/helm" ]]; then HELM="$DSB_CACHE/bin/helm"; else HELM=helm; fi
fi

kubectl() { command "${KUBECTL:-kubectl}" "$@"; }
helm() { command "$HELM" "$@"; }

# ---------------------------------------------------------------------------------------------
# logging and failure

_E2E_START=$(date +%s)
_E2E_NAMESPACES=()
_E2E_CLEANUPS=()
_E2E_FAILED=0

log() { printf '[%s +%03ds] %s\n' "$E2E_TEST_NAME" "$(($(date +%s) - _E2E_START))" "$*" >&2; }

# fail MESSAGE: record the failure, dump diagnostics (via the EXIT trap) and stop the test.
fail() {
  _E2E_FAILED=1
  log "FAIL: $*"
  exit 1
}

# skip REASON: stop the test as skipped.
skip() {
  log "SKIP: $*"
  exit "$E2E_SKIP_CODE"
}

# assert_eq WHAT EXPECTED ACTUAL
assert_eq() {
  if [[ "$2" != "$3" ]]; then fail "$1: expected '$2', got '$3'"; fi
  log "ok: $1 = '$3'"
}

# expect_condition NS NAME REASON REGEX: the sandbox says what is wrong: a False Ready condition,
# a condition with REASON whose message matches REGEX, and a Warning Event with REASON.
expect_condition() {
  local ns=$1 name=$2 reason=$3 regex=$4 msg
  wait_for 120 "condition reason $reason" has_condition_reason "$ns" "$name" "$reason" ||
    fail "no $reason condition; conditions: $(dsb_conditions "$ns" "$name" 2>&1)"
  msg=$(condition_message_for_reason "$ns" "$name" "$reason")
  log "$reason message: $msg"
  assert_match "$reason message explains" "$regex" "$msg"
  assert_eq "Ready condition" False "$(dsb_get "$ns" "$name" '{.status.conditions[?(@.type=="Ready")].status}')"
  wait_for 60 "Warning Event $reason" warning_event_exists "$ns" "$name" "$reason" || fail "no Warning Event $reason"
}

# expect_refused NS NAME REASON REGEX: the operator refuses to place an accepted sandbox and says why
# (expect_condition), and no engine pod appears. (Refusals by the API server at apply time:
# 07-validation's expect_admission_refused.) The reconcile that refuses writes the condition after
# its child writes, so a pod it made would exist already; a few seconds more catch a later reconcile
# that decides otherwise.
expect_refused() {
  expect_condition "$@"
  still_true 4 pod_absent "$1" "$2-engine" || fail "an engine pod was created although the sandbox is refused ($3)"
  log "ok: no engine pod ($3)"
}

# assert_match WHAT REGEX TEXT   (extended regex, case-insensitive)
assert_match() {
  if ! grep -qiE -- "$2" <<<"$3"; then fail "$1: expected to match /$2/, got: $3"; fi
  log "ok: $1 matches /$2/"
}

# wait_for TIMEOUT_SECONDS DESCRIPTION CMD [ARGS...]: run CMD every 2s until it succeeds (bounded).
wait_for() {
  local timeout=$1 desc=$2; shift 2
  local deadline=$(($(date +%s) + timeout))
  log "waiting (<= ${timeout}s) for: $desc"
  while true; do
    if "$@" >/dev/null 2>&1; then log "ok: $desc"; return 0; fi
    if (($(date +%s) >= deadline)); then log "timed out after ${timeout}s waiting for: $desc"; return 1; fi
    sleep 2
  done
}

# retry ATTEMPTS CMD [ARGS...]: run CMD up to ATTEMPTS times, 3s apart; prints the last output.
retry() {
  local attempts=$1; shift
  local i out rc
  for ((i = 1; i <= attempts; i++)); do
    if out=$("$@" 2>&1); then printf '%s\n' "$out"; return 0; else rc=$?; fi
    ((i < attempts)) && sleep 3
  done
  printf '%s\n' "$out"
  return "$rc"
}

# still_true SECONDS CMD...: CMD must keep succeeding for SECONDS (checked every 2s). Used to show
# that something does NOT happen (e.g. no pod is created) without asserting on timing.
still_true() {
  local secs=$1; shift
  local deadline=$(($(date +%s) + secs))
  while (($(date +%s) < deadline)); do
    "$@" >/dev/null 2>&1 || return 1
    sleep 2
  done
}

# on_exit CMD...: register a cleanup step (run in reverse order, before namespace deletion).
on_exit() { _E2E_CLEANUPS+=("$*"); }

# ---------------------------------------------------------------------------------------------
# namespaces

rand_suffix() { LC_ALL=C tr -dc 'a-z0-9' </dev/urandom | head -c 5 || true; }

# ns_new VAR SHORTNAME [label=value ...]: create namespace dsb-e2e-SHORTNAME-xxxxx, store its name in VAR
# and register it for deletion when the test ends.
ns_new() {
  local __var=$1 __short=$2; shift 2
  local __ns
  __ns="dsb-e2e-${__short}-$(rand_suffix)"
  kubectl create namespace "$__ns" >/dev/null
  _E2E_NAMESPACES+=("$__ns")
  # Privileged engines run only where the namespace opts in explicitly; the suite's nodes have no
  # sysbox, so its namespaces opt in unless the caller sets its own PodSecurity level.
  local __podsec=(pod-security.kubernetes.io/enforce=privileged)
  [[ " $* " == *" pod-security.kubernetes.io/enforce"* ]] && __podsec=()
  kubectl label namespace "$__ns" dockersandbox.dev/e2e=true "${__podsec[@]}" "$@" --overwrite >/dev/null
  printf -v "$__var" '%s' "$__ns"
  log "namespace $__ns created"
}

_strip_finalizers() {
  local ns=$1 n
  for n in $(kubectl get "$DSB" -n "$ns" -o name 2>/dev/null); do
    log "removing finalizers from $ns/$n (the operator sets none: a foreground deletion is stuck on its children)"
    kubectl patch -n "$ns" "$n" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
}

_ns_gone() { ! kubectl get namespace "$1" >/dev/null 2>&1; }

ns_cleanup() {
  local ns
  ((${#_E2E_NAMESPACES[@]})) || return 0
  if [[ "$E2E_KEEP_NAMESPACES" == 1 || ("$E2E_KEEP_NAMESPACES" == on-failure && $_E2E_FAILED == 1) ]]; then
    log "keeping namespaces: ${_E2E_NAMESPACES[*]}"
    return 0
  fi
  for ns in "${_E2E_NAMESPACES[@]}"; do
    kubectl delete namespace "$ns" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  done
  # Under run-tests.sh the next test need not wait for these to go: the runner waits for every
  # deleted test namespace once, at the end (ns_wait_all).
  [[ "${E2E_NS_WAIT:-1}" == 1 ]] || return 0
  for ns in "${_E2E_NAMESPACES[@]}"; do
    if ! wait_for 90 "namespace $ns deleted" _ns_gone "$ns"; then
      _strip_finalizers "$ns"
      wait_for 60 "namespace $ns deleted" _ns_gone "$ns" || log "WARNING: namespace $ns still terminating"
    fi
  done
}

# ns_wait_all SECONDS: waits for every test namespace being deleted to be gone; a sandbox stuck in a
# foreground deletion has its finalizers removed halfway.
_ns_terminating() {
  kubectl get ns -l dockersandbox.dev/e2e=true -o json |
    jq -r '.items[] | select(.metadata.deletionTimestamp != null) | .metadata.name'
}
_ns_none_terminating() { [[ -z $(_ns_terminating) ]]; }
ns_wait_all() {
  local half=$(($1 / 2)) ns
  if ! wait_for "$half" "deleted test namespaces gone" _ns_none_terminating; then
    for ns in $(_ns_terminating); do _strip_finalizers "$ns"; done
    wait_for "$half" "deleted test namespaces gone" _ns_none_terminating || true
  fi
}

_e2e_exit() {
  local rc=$?
  set +o errexit
  if ((rc != 0 && rc != E2E_SKIP_CODE)); then
    _E2E_FAILED=1
    dump_diagnostics "${_E2E_NAMESPACES[@]}"
  fi
  local i
  for ((i = ${#_E2E_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_E2E_CLEANUPS[$i]}" || log "cleanup step failed: ${_E2E_CLEANUPS[$i]}"
  done
  ns_cleanup
  if ((rc == 0)); then log "PASS"; fi
  exit "$rc"
}
if [[ -z "${E2E_LIB_NO_TRAP:-}" ]]; then
  trap _e2e_exit EXIT
  trap 'log "interrupted"; exit 143' TERM INT
fi

# ---------------------------------------------------------------------------------------------
# sandboxes

# sandbox_apply NS NAME [SPEC_YAML]: apply a DockerSandbox; SPEC_YAML is extra spec lines
# (indented by 2 spaces, i.e. directly under spec:). Defaults: image=$E2E_DIND_IMAGE,
# imagePullPolicy IfNotPresent, storage.size 1Gi, unless SPEC_YAML sets them.
sandbox_manifest() {
  local ns=$1 name=$2 extra=${3:-}
  cat <<EOF
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandbox
metadata:
  name: $name
  namespace: $ns
spec:
EOF
  grep -qE '^  image:' <<<"$extra" || echo "  image: $E2E_DIND_IMAGE"
  grep -qE '^  imagePullPolicy:' <<<"$extra" || echo "  imagePullPolicy: IfNotPresent"
  if ! grep -qE '^  storage:' <<<"$extra"; then printf '  storage:\n    size: 1Gi\n'; fi
  [[ -n "$extra" ]] && printf '%s\n' "$extra"
  return 0
}
sandbox_apply() {
  log "applying sandbox $1/$2"
  sandbox_manifest "$@" | kubectl apply -f - >&2
}

# dsb_get NS NAME JSONPATH
dsb_get() { kubectl get "$DSB" -n "$1" "$2" -o "jsonpath=$3"; }

# wait_ready NS NAME [TIMEOUT]
wait_ready() {
  local ns=$1 name=$2 t=${3:-$E2E_TIMEOUT}
  log "waiting (<= ${t}s) for $ns/$name phase Ready"
  kubectl wait -n "$ns" "$DSB/$name" --for=jsonpath='{.status.phase}'=Ready --timeout="${t}s" >&2 ||
    fail "sandbox $ns/$name did not become Ready (phase=$(dsb_get "$ns" "$name" '{.status.phase}' 2>/dev/null))"
}

# dsb_conditions NS NAME: one line per condition: TYPE STATUS REASON MESSAGE
dsb_conditions() {
  kubectl get "$DSB" -n "$1" "$2" -o json |
    jq -r '.status.conditions // [] | .[] | "\(.type) \(.status) \(.reason // "-") \(.message // "")"'
}

# has_condition_reason NS NAME REASON: some condition carries REASON (with status False)
has_condition_reason() {
  kubectl get "$DSB" -n "$1" "$2" -o json |
    jq -e --arg r "$3" '[.status.conditions // [] | .[] | select(.reason == $r and .status != "True")] | length > 0' >/dev/null
}
condition_message_for_reason() {
  kubectl get "$DSB" -n "$1" "$2" -o json |
    jq -r --arg r "$3" '[.status.conditions // [] | .[] | select(.reason == $r)][0].message // ""'
}

# warning_event_exists NS OBJNAME REASON: a Warning event about the DockerSandbox with that reason
warning_event_exists() {
  kubectl get events -n "$1" -o json |
    jq -e --arg n "$2" --arg r "$3" \
      '[.items[] | select(.type == "Warning" and .reason == $r and .involvedObject.name == $n
                          and .involvedObject.kind == "DockerSandbox")] | length > 0' >/dev/null
}

pod_absent() { ! kubectl get pod -n "$1" "$2" >/dev/null 2>&1; }
pod_uid() { kubectl get pod -n "$1" "$2" -o 'jsonpath={.metadata.uid}'; }

# pod_ready_with_new_uid NS POD OLD_UID
pod_ready_with_new_uid() {
  local uid ready
  uid=$(kubectl get pod -n "$1" "$2" -o 'jsonpath={.metadata.uid}') || return 1
  [[ -n "$uid" && "$uid" != "$3" ]] || return 1
  ready=$(kubectl get pod -n "$1" "$2" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')
  [[ "$ready" == True ]]
}

# ---------------------------------------------------------------------------------------------
# docker clients

# copy_client_secret SANDBOX_NS SANDBOX CLIENT_NS NEW_NAME: copy the sandbox's client Secret
# (status.clientSecretName) into the client's namespace.
copy_client_secret() {
  local sns=$1 name=$2 cns=$3 new=$4 secret
  secret=$(dsb_get "$sns" "$name" '{.status.clientSecretName}')
  [[ -n "$secret" ]] || fail "status.clientSecretName of $sns/$name is empty"
  kubectl get secret -n "$sns" "$secret" -o json |
    jq --arg n "$new" --arg ns "$cns" '{apiVersion: "v1", kind: "Secret", type: .type, data: .data,
        metadata: {name: $n, namespace: $ns, labels: {"dockersandbox.dev/e2e": "true"}}}' |
    kubectl apply -f - >/dev/null
}

# client_pod_create CLIENT_NS POD DOCKER_HOST [SECRET]: a pod with the docker CLI, doing nothing;
# with SECRET, it is mounted at /certs/client and DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH=/certs/client.
client_pod_create() {
  local cns=$1 pod=$2 host=$3 secret=${4:-}
  {
    cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  namespace: $cns
  labels: {dockersandbox.dev/e2e-role: client}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - name: client
    image: $E2E_DIND_IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM INT; while true; do sleep 5 & wait \$!; done"]
    env:
    - {name: DOCKER_HOST, value: "$host"}
EOF
    if [[ -n "$secret" ]]; then
      cat <<EOF
    - {name: DOCKER_TLS_VERIFY, value: "1"}
    - {name: DOCKER_CERT_PATH, value: /certs/client}
    volumeMounts:
    - {name: certs, mountPath: /certs/client, readOnly: true}
  volumes:
  - name: certs
    secret: {secretName: $secret}
EOF
    fi
  } | kubectl apply -f - >&2
  kubectl wait -n "$cns" "pod/$pod" --for=condition=Ready --timeout=120s >&2 ||
    fail "client pod $cns/$pod not Ready"
}

# make_client CLIENT_NS POD SANDBOX_NS SANDBOX: copy the client Secret and start a client pod whose
# DOCKER_HOST is the sandbox's status.endpoint, verbatim.
make_client() {
  local cns=$1 pod=$2 sns=$3 name=$4 endpoint
  endpoint=$(dsb_get "$sns" "$name" '{.status.endpoint}')
  [[ -n "$endpoint" ]] || fail "status.endpoint of $sns/$name is empty"
  copy_client_secret "$sns" "$name" "$cns" "$pod-certs"
  client_pod_create "$cns" "$pod" "$endpoint" "$pod-certs"
  log "client pod $cns/$pod -> $endpoint"
}

# cdocker CLIENT_NS POD ARGS...: run the docker CLI in a client pod.
cdocker() { local cns=$1 pod=$2; shift 2; kubectl exec -n "$cns" "$pod" -- docker "$@"; }

# docker_answers CLIENT_NS POD: the engine answers `docker version` (server part included)
docker_answers() { cdocker "$1" "$2" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# class_like_default VAR SLUG LIFECYCLE_JSON: creates a DockerSandboxClass (deleted on exit) with the
# default class's spec and this `lifecycle`, and sets $VAR to its name (e2e-SLUG-*).
class_like_default() {
  local __var=$1 __slug=$2 __lifecycle=$3 __default __class
  __default=$(kubectl get "$DSB_CLASS" -o json |
    jq -c '[.items[] | select(.metadata.annotations["dockersandbox.dev/is-default-class"] == "true")][0].spec')
  [[ -n "$__default" && "$__default" != null ]] || fail "no default DockerSandboxClass to copy"
  __class="e2e-$__slug-$(rand_suffix)"
  jq -n --arg n "$__class" --argjson spec "$__default" --argjson lc "$__lifecycle" '{apiVersion: "dockersandbox.dev/v1alpha1",
      kind: "DockerSandboxClass", metadata: {name: $n, labels: {"dockersandbox.dev/e2e": "true"}},
      spec: ($spec + {lifecycle: $lc})}' |
    kubectl apply -f - >&2 || fail "could not create class $__class"
  on_exit "kubectl delete $DSB_CLASS $__class --ignore-not-found >/dev/null"
  printf -v "$__var" '%s' "$__class"
}

# ready_sandbox_with_client SLUG: what most tests start from. Sets $ns (namespace dsb-e2e-SLUG-*)
# with sandbox $name (box) Ready, and $cns (dsb-e2e-SLUG-client-*) with a docker client pod
# "client" holding box's client Secret; returns once the engine answers the client.
ready_sandbox_with_client() {
  ns_new ns "$1"
  ns_new cns "$1-client"
  name=box
  sandbox_apply "$ns" "$name"
  wait_ready "$ns" "$name"
  make_client "$cns" client "$ns" "$name"
  retry 10 docker_answers "$cns" client >/dev/null || fail "the engine does not answer the client"
}

# load_nested_image CLIENT_NS POD: stream the nested busybox tar into the engine.
load_nested_image() {
  [[ -r "$E2E_NESTED_IMAGE_TAR" ]] || fail "nested image tar $E2E_NESTED_IMAGE_TAR not readable (set E2E_NESTED_IMAGE_TAR)"
  log "docker load $E2E_NESTED_IMAGE_TAR"
  kubectl exec -i -n "$1" "$2" -- docker load <"$E2E_NESTED_IMAGE_TAR" >&2 || fail "docker load failed"
}

# engine_exec NS SANDBOX CMD...: run a command in the engine pod's dockerd container.
engine_exec() { local ns=$1 name=$2; shift 2; kubectl exec -n "$ns" "$name-engine" -c dockerd -- "$@"; }

# ---------------------------------------------------------------------------------------------
# the plugin and the operator's metrics

# plugin_binary: the kubectl-dsb to test (KUBECTL_DSB, else the build of E2E_PROFILE); empty when
# there is none.
plugin_binary() {
  local p found=${KUBECTL_DSB:-}
  for p in "${CARGO_TARGET_DIR:-}/${E2E_PROFILE:-release}/kubectl-dsb" "$REPO_ROOT/target/${E2E_PROFILE:-release}/kubectl-dsb"; do
    [[ -n "$found" || ! -x "$p" ]] || found=$p
  done
  printf '%s\n' "$found"
}

# plugin_workspace: sets $plugin (plugin_binary, else kubectl-dsb on PATH), $DOCKER (a docker CLI)
# and $work (a directory removed at exit) and puts `kubectl dsb` on PATH with its own DOCKER_CONFIG
# and no docker environment of the caller's.
plugin_workspace() {
  plugin=$(plugin_binary)
  [[ -n "$plugin" ]] || plugin=$(command -v kubectl-dsb) || fail "no kubectl-dsb: run make release (or set KUBECTL_DSB)"
  # shellcheck disable=SC2034  # for the test that calls this
  DOCKER=$(bash "$E2E_DIR/tools/install-docker-cli.sh" | tail -n 1) || fail "could not install the docker CLI"
  work=$(mktemp -d)
  on_exit "rm -rf '$work'"
  mkdir -p "$work/bin"
  ln -s "$plugin" "$work/bin/kubectl-dsb"
  ln -s "$plugin" "$work/bin/kubectl_complete-dsb"
  export PATH="$work/bin:$PATH" DOCKER_CONFIG="$work/docker-config" DOCKER_BUILDKIT=0
  unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
}

# leader_metrics: the /metrics text of the operator pod that leads (dockersandbox_leader 1); fails
# when none says it leads.
leader_metrics() {
  local p m
  for p in $(operator_pods); do
    m=$(kubectl get --raw "/api/v1/namespaces/$E2E_OPERATOR_NAMESPACE/pods/${p#pod/}:8080/proxy/metrics") || continue
    if grep -q '^dockersandbox_leader 1' <<<"$m"; then printf '%s\n' "$m"; return 0; fi
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# NetworkPolicy

# netpol_enforced: whether the cluster's network plugin enforces NetworkPolicy, tried for real (once
# per test): in a throwaway namespace, a listener pod behind a deny-all-ingress policy must refuse a
# client pod's TCP connection that succeeds without the policy. Sets NETPOL_WHY when it does not.
NETPOL_WHY=""

# tcp_connects NS POD IP PORT: whether a TCP connection from busybox pod NS/POD to IP:PORT opens
# (busybox nc has no -z: a connection that opens and then idles until `timeout` counts too).
tcp_connects() {
  local rc=0
  kubectl exec -n "$1" "$2" -- timeout 6 nc -w 3 "$3" "$4" >/dev/null 2>&1 || rc=$?
  ((rc == 0 || rc == 124 || rc == 143))
}
_netpol_reach() { tcp_connects "$_NETPOL_NS" client "$_NETPOL_IP" 8080; }
_netpol_blocked() { ! _netpol_reach; }
netpol_enforced() {
  [[ -n "${_NETPOL_ENFORCED:-}" ]] && return "$_NETPOL_ENFORCED"
  local pns p script='trap "exit 0" TERM; while true; do (echo ok | nc -l -p 8080 >/dev/null 2>&1 || sleep 1) & wait $!; done'
  ns_new pns netpol-probe
  _NETPOL_NS=$pns
  for p in listener client; do
    kubectl run -n "$pns" "$p" --image="$E2E_BUSYBOX_IMAGE" --image-pull-policy=IfNotPresent --restart=Never \
      --labels="probe=$p" --command -- sh -c "$script" >/dev/null
  done
  kubectl wait -n "$pns" pod/listener pod/client --for=condition=Ready --timeout=120s >/dev/null 2>&1 ||
    { NETPOL_WHY="the probe pods did not start"; _NETPOL_ENFORCED=1; return 1; }
  _NETPOL_IP=$(kubectl get pod -n "$pns" listener -o 'jsonpath={.status.podIP}')
  if ! retry 5 _netpol_reach >/dev/null; then
    NETPOL_WHY="the probe could not connect even without a policy"; _NETPOL_ENFORCED=1; return 1
  fi
  kubectl apply -n "$pns" -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress}
spec: {podSelector: {matchLabels: {probe: listener}}, policyTypes: [Ingress]}
YAML
  if wait_for 30 "a deny-all NetworkPolicy blocks the probe" _netpol_blocked; then
    _NETPOL_ENFORCED=0
  else
    NETPOL_WHY="a deny-all-ingress NetworkPolicy did not block a TCP connection within 30s"
    _NETPOL_ENFORCED=1
  fi
  return "$_NETPOL_ENFORCED"
}

# skip_unless_netpol: skip the test (with the reason) on a cluster that does not enforce NetworkPolicy.
skip_unless_netpol() {
  netpol_enforced || skip "the cluster does not enforce NetworkPolicy: $NETPOL_WHY"
}

# ---------------------------------------------------------------------------------------------
# operator

# operator_pods: pod/NAME of every operator pod (none when the operator is not installed)
operator_pods() { kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o name 2>/dev/null || true; }

# operator_logs [TAIL_LINES]
# shellcheck disable=SC2120
operator_logs() {
  local p
  for p in $(operator_pods); do
    echo "----- logs $E2E_OPERATOR_NAMESPACE/$p"
    kubectl logs -n "$E2E_OPERATOR_NAMESPACE" "$p" --all-containers --tail="${1:-2000}" 2>&1 || true
  done
}

# e2e_values_args: set the array E2E_VALUES_ARGS to the chart values of the e2e install: the values
# file (E2E_HELM_VALUES, default e2e/tools/operator-e2e-values.yaml when present), then the operator
# image E2E_OPERATOR_IMAGE and text logs (--set wins over the file). Used by helm_operator, and by
# e2e/tools/check-manifests.sh to validate exactly what the e2e suite installs.
e2e_values_args() {
  local repo=${E2E_OPERATOR_IMAGE%:*} tag=${E2E_OPERATOR_IMAGE##*:}
  [[ "$E2E_OPERATOR_IMAGE" == *:* && "$tag" != */* ]] || { repo=$E2E_OPERATOR_IMAGE; tag=latest; }
  local values=${E2E_HELM_VALUES-$E2E_DIR/tools/operator-e2e-values.yaml}
  E2E_VALUES_ARGS=()
  if [[ -n "$values" && -f "$values" ]]; then E2E_VALUES_ARGS+=(-f "$values"); fi
  E2E_VALUES_ARGS+=(--set "image.repository=$repo" --set "image.tag=$tag" --set image.pullPolicy=IfNotPresent
    --set logging.format=text)
  # The local image keeps its tag when rebuilt: its digest in a pod annotation rolls the operator
  # onto a new build (E2E_REUSE_CLUSTER=1 kept the old pods running the old binary).
  local archive=$DSB_CACHE/images/operator.oci.tar digest
  if [[ -r "$archive" ]] && digest=$(sha256sum <"$archive" | cut -c1-16); then
    E2E_VALUES_ARGS+=(--set-string "podAnnotations.dockersandbox\\.dev/e2e-image=$digest")
  fi
}

# helm_operator [ARGS...]: helm upgrade --install the operator chart with the e2e values
# (e2e_values_args), plus ARGS (e.g. --set operator.allowPrivileged=false).
# shellcheck disable=SC2120  # ARGS are optional: callers without arguments are right
helm_operator() {
  local obj owner crd_args=()
  # A CRD (or the chart's default class, "standard") applied by hand, e.g. from crds/, blocks
  # `helm install` ("invalid ownership metadata"): adopt it into this release, as a user would;
  # leave it alone if another release owns it (a CRD: install with crds.install=false).
  for obj in "crd/$DSB" "crd/$DSB_CLASS" "$DSB_CLASS/standard"; do
    kubectl get "$obj" >/dev/null 2>&1 || continue
    owner=$(kubectl get "$obj" -o 'jsonpath={.metadata.annotations.meta\.helm\.sh/release-name}/{.metadata.annotations.meta\.helm\.sh/release-namespace}')
    if [[ "$owner" == / ]]; then
      log "adopting the existing $obj into Helm release $E2E_OPERATOR_NAMESPACE/$E2E_RELEASE"
      kubectl label "$obj" app.kubernetes.io/managed-by=Helm --overwrite >/dev/null
      kubectl annotate "$obj" "meta.helm.sh/release-name=$E2E_RELEASE" \
        "meta.helm.sh/release-namespace=$E2E_OPERATOR_NAMESPACE" --overwrite >/dev/null
    elif [[ "$owner" != "$E2E_RELEASE/$E2E_OPERATOR_NAMESPACE" && "$obj" == crd/* ]]; then
      log "$obj belongs to Helm release $owner: installing with crds.install=false"
      crd_args=(--set crds.install=false)
    fi
  done
  e2e_values_args
  helm upgrade --install "$E2E_RELEASE" "$E2E_CHART" "${crd_args[@]}" "${E2E_VALUES_ARGS[@]}" \
    --namespace "$E2E_OPERATOR_NAMESPACE" --create-namespace \
    --wait --timeout 5m "$@"
}

# helm_set ARGS...: helm upgrade the installed operator release, keeping its values, plus ARGS
# (e.g. --set operator.allowPrivileged=false); waits for the rollout.
helm_set() {
  log "helm upgrade $E2E_RELEASE --reuse-values $*"
  helm upgrade "$E2E_RELEASE" "$E2E_CHART" -n "$E2E_OPERATOR_NAMESPACE" --reuse-values "$@" --wait --timeout 5m >&2
}

# operator_restarts: "pod=restarts ..." of the operator's pods (a crash or an OOM kill changes it).
operator_restarts() {
  kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o json |
    jq -r '[.items[] | "\(.metadata.name)=\([.status.containerStatuses[]?.restartCount] | add // 0)"] | sort | join(" ")'
}

operator_deployment() {
  kubectl get deploy -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o name 2>/dev/null | head -n1
}

operator_available() {
  local d
  d=$(operator_deployment)
  [[ -n "$d" ]] && kubectl rollout status -n "$E2E_OPERATOR_NAMESPACE" "$d" --timeout=5s >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# diagnostics

dump_diagnostics() {
  local dir="$E2E_ARTIFACTS/$E2E_TEST_NAME" ns
  mkdir -p "$dir"
  log "dumping diagnostics to $dir"
  for ns in "$@"; do
    {
      echo "===== namespace $ns"
      kubectl get "$DSB",pods,svc,pvc,secrets,endpoints -n "$ns" -o wide 2>&1
      echo "===== describe dockersandboxes"
      kubectl describe "$DSB" -n "$ns" 2>&1
      echo "===== describe pods"
      kubectl describe pods -n "$ns" 2>&1
      echo "===== describe pvc"
      kubectl describe pvc -n "$ns" 2>&1
      echo "===== events"
      kubectl get events -n "$ns" --sort-by=.lastTimestamp 2>&1
    } >"$dir/$ns.txt" 2>&1
    kubectl get "$DSB",pods,svc,pvc,secrets -n "$ns" -o yaml >"$dir/$ns.yaml" 2>&1
    local p
    for p in $(kubectl get pods -n "$ns" -o name 2>/dev/null); do
      kubectl logs -n "$ns" "$p" --all-containers --tail=500 >"$dir/$ns.${p#pod/}.log" 2>&1
      kubectl logs -n "$ns" "$p" --all-containers --previous --tail=500 >"$dir/$ns.${p#pod/}.previous.log" 2>/dev/null ||
        rm -f "$dir/$ns.${p#pod/}.previous.log"
    done
    # short summary on the console
    echo "----- $ns: sandboxes, pods, conditions, recent events" >&2
    kubectl get "$DSB",pods,svc,pvc -n "$ns" -o wide >&2 2>&1 || true
    local n
    for n in $(kubectl get "$DSB" -n "$ns" -o name 2>/dev/null); do
      echo "  $n conditions:" >&2
      dsb_conditions "$ns" "${n##*/}" 2>/dev/null | sed 's/^/    /' >&2 || true
    done
    kubectl get events -n "$ns" --sort-by=.lastTimestamp 2>/dev/null | tail -n 15 >&2 || true
  done
  operator_logs >"$dir/operator.log" 2>&1
  kubectl get "$DSB_CLASS" -o yaml >"$dir/classes.yaml" 2>&1 || true
  kubectl get pods,deploy -n "$E2E_OPERATOR_NAMESPACE" -o wide >"$dir/operator-objects.txt" 2>&1 || true
  kubectl describe pods -n "$E2E_OPERATOR_NAMESPACE" >>"$dir/operator-objects.txt" 2>&1 || true
  kubectl get nodes -o wide >"$dir/nodes.txt" 2>&1 || true
  kubectl describe nodes >>"$dir/nodes.txt" 2>&1 || true
  echo "----- operator log (last 30 lines; full log in $dir/operator.log)" >&2
  tail -n 30 "$dir/operator.log" >&2 || true
}
