# shellcheck shell=bash disable=SC2034  # the settings below are read by the e2e/cluster scripts sourcing this file
# Shared settings for e2e/cluster/*.sh (sourced, not executed).
DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
DSB_E2E_STATE=${DSB_E2E_STATE:-/var/lib/dockersandbox-e2e}
export DSB_CACHE DSB_E2E_STATE
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_DIR/../.." && pwd)
STATE=$DSB_E2E_STATE
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
NODE_NAME=dsb-node
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
DOMAIN=cluster.local
BRIDGE=dsb0
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}
KUBELET_ROOT=/var/lib/kubelet
CTRD_SOCK=/run/containerd/containerd.sock
# start order; stop order is the reverse
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf '%s [%s] %s\n' "$(date +%T)" "${0##*/}" "$*" >&2; }

# pid_alive NAME -> prints pid if NAME's recorded process is alive and is really that binary
pid_alive() {
  local f=$PIDS/$1.pid pid exe
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -d /proc/$pid ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ ${exe##*/} == "$1" || ${exe##*/} == "${1} (deleted)" ]] || return 1
  echo "$pid"
}

stop() {  # stop NAME [GRACE_SECONDS]: SIGTERM the recorded process, SIGKILL after the grace
  local name=$1 grace=${2:-10} pid i
  pid=$(pid_alive "$name") || { rm -f "$PIDS/$name.pid"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 5; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
  if [[ -d /proc/$pid ]]; then log "$name still running after ${grace}s; SIGKILL"; kill -KILL "$pid" 2>/dev/null; sleep 0.3; fi
  rm -f "$PIDS/$name.pid"
}

start() {  # start NAME BINARY ARGS... (detached; pid and command line recorded, for restart.sh)
  local name=$1; shift
  echo "=== $(date -Is) starting: $*" >>"$LOGS/$name.log"
  printf '%s\0' "$@" >"$PIDS/$name.cmd"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

kill_pod_processes() {  # SIGKILL our containerd's shims and every process in the kubepods cgroups
  local p cg pids
  # Shims of OUR containerd (matched by their -address argument, not by name alone).
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/exe" 2>/dev/null) == */containerd-shim-runc-v2 ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $CTRD_SOCK" || continue
    log "killing shim ${p#/proc/}"; kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
  # Any process inside the kubepods cgroups belongs to a pod of this cluster.
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d $cg ]] || continue
    mapfile -t pids < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    # (some are gone by now: kill's complaint about them is no failure, even under errexit)
    if ((${#pids[@]})); then log "killing ${#pids[@]} process(es) in $cg"; kill -KILL "${pids[@]}" 2>/dev/null || true; fi
  done
  return 0
}

