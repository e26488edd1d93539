#!/usr/bin/env bash
# Tear down the e2e cluster started by up.sh. Idempotent, best effort, always exits 0.
# Processes are stopped by their recorded PIDs (checked against the binary name); only
# leftover containerd shims of *our* containerd socket and processes left in the kubepods
# cgroups are found by other means. Logs in $DSB_E2E_STATE/logs are kept (DSB_DOWN_KEEP_LOGS=0 drops them).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { echo "down.sh must run as root" >&2; exit 0; }
trap 'exit 0' EXIT
BIN=$STATE/bin
KC=$STATE/kubeconfig
# addon namespaces stay until the end (local-path must clean up PVs of deleted namespaces)
SYSTEM_NS='^(default|kube-system|kube-public|kube-node-lease|local-path-storage)$'
kubectl_() { timeout 20 "$BIN/kubectl" --kubeconfig "$KC" --request-timeout=10s "$@"; }

# ---------------------------------------------------------------- 1. workloads, through the API
api_up=0
if [[ -x $BIN/kubectl && -f $KC ]] && pid_alive kube-apiserver >/dev/null && kubectl_ get --raw /readyz >/dev/null 2>&1; then api_up=1; fi
if ((api_up)) && pid_alive kubelet >/dev/null; then
  mapfile -t nss < <(kubectl_ get ns -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | grep -Ev "$SYSTEM_NS")
  if ((${#nss[@]})); then
    log "deleting namespaces: ${nss[*]}"
    kubectl_ delete ns "${nss[@]}" --wait=false >/dev/null 2>&1
    # short grace: test pods (e.g. dockerd with the default 30 s) need not shut down cleanly
    for ns in "${nss[@]}"; do kubectl_ -n "$ns" delete pods --all --grace-period=1 --wait=false >/dev/null 2>&1; done
    for ((i = 0; i < 120; i++)); do
      left=$(kubectl_ get ns -o name 2>/dev/null | sed 's|namespace/||' | grep -cEv "$SYSTEM_NS")
      ((left == 0)) && break; sleep 0.5
    done
    ((left == 0)) || log "WARN: $left namespace(s) still terminating after 60s; continuing"
  fi
  # Nothing may recreate pods now; delete the rest so the kubelet tears sandboxes down via CRI (CNI DEL).
  stop kube-controller-manager; stop kube-scheduler
  kubectl_ delete pods --all -A --grace-period=3 --wait=false >/dev/null 2>&1
  for ((i = 0; i < 60; i++)); do
    n=$(kubectl_ get pods -A -o name 2>/dev/null | wc -l); ((n == 0)) && break; sleep 0.5
  done
  ((n == 0)) || { log "WARN: $n pod(s) left; forcing"; kubectl_ delete pods --all -A --force --grace-period=0 >/dev/null 2>&1; }
  # give the kubelet a moment to stop the sandboxes of force-deleted pods
  for ((i = 0; i < 20; i++)); do
    [[ -z $(ctr -a "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null) ]] && break; sleep 0.5
  done
fi

# ---------------------------------------------------------------- 2. node components
stop kube-proxy
[[ -x $BIN/kube-proxy ]] && timeout 30 "$BIN/kube-proxy" --cleanup >/dev/null 2>&1
stop kubelet
if pid_alive containerd >/dev/null; then
  tasks=$(ctr -a "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null)
  if [[ -n $tasks ]]; then
    log "killing $(echo "$tasks" | wc -l) leftover container task(s)"
    for t in $tasks; do ctr -a "$CTRD_SOCK" -n k8s.io tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $tasks; do ctr -a "$CTRD_SOCK" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1; done
  fi
fi

# ---------------------------------------------------------------- 3. control plane, etcd, containerd
stop kube-controller-manager; stop kube-scheduler
stop kube-apiserver 5   # CI state is disposable; it can take 60 s with open watches
stop etcd
stop containerd
kill_pod_processes
sleep 0.5

# ---------------------------------------------------------------- 4. host cleanup
# mounts (deepest first, lazy)
awk '{print $2}' /proc/self/mounts | grep -E "^(/run/containerd|$KUBELET_ROOT|$STATE|/run/netns/cni-)" | sort -r |
  while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null; done
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null; done
ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
# nftables: the NetworkPolicy agent's table (its queue rules would hold back the next cluster's pods
# until a new agent replaces them)
{ command -v nft >/dev/null && nft delete table inet kube-network-policies 2>/dev/null; } || true
# iptables: rules jumping to KUBE-/CNI-/DSB- chains, then those chains (both backends, v4 and v6)
for ipt in iptables ip6tables iptables-legacy ip6tables-legacy; do
  command -v "$ipt" >/dev/null || continue
  # Listing a legacy table would load it into the kernel: only look when legacy tables exist already.
  case $ipt in iptables-legacy) [[ -s /proc/net/ip_tables_names ]] || continue ;;
               ip6tables-legacy) [[ -s /proc/net/ip6_tables_names ]] || continue ;; esac
  for t in filter nat mangle raw; do
    rules=$("$ipt" -w -t "$t" -S 2>/dev/null) || continue
    grep -Eq '^-N (KUBE-|CNI-|DSB-)' <<<"$rules" || grep -Eq -- '-j (KUBE-|CNI-|DSB-)' <<<"$rules" || continue
    grep -E '^-A [A-Z]+ .*-j (KUBE-|CNI-|DSB-)' <<<"$rules" | sed 's/^-A /-D /' |
      while read -r r; do eval "$ipt -w -t $t $r" 2>/dev/null; done
    chains=$(awk '/^-N (KUBE-|CNI-|DSB-)/{print $2}' <<<"$rules")
    for c in $chains; do "$ipt" -w -t "$t" -F "$c" 2>/dev/null; done
    for c in $chains; do "$ipt" -w -t "$t" -X "$c" 2>/dev/null; done
  done
done
# cgroups: kubepods trees depth-first
for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
  [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
done
# state
rm -rf --one-file-system "$KUBELET_ROOT" /run/containerd 2>/dev/null
if [[ -d $STATE ]]; then
  find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf --one-file-system {} + 2>/dev/null
  [[ ${DSB_DOWN_KEEP_LOGS:-1} == 1 ]] || rm -rf "$STATE/logs"
fi
log "cluster down"
