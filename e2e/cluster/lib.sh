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
