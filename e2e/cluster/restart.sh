#!/usr/bin/env bash
# Restart components of the local e2e cluster, for fault tests: each is stopped (SIGTERM, SIGKILL
# after its grace) and started again with the command line up.sh recorded for it.
#   restart.sh [--down SECONDS] COMPONENT...   e.g. restart.sh kube-apiserver; restart.sh etcd
#   restart.sh --reboot [--down SECONDS]       the node's "reboot": kubelet and containerd stop, every
#                                              pod container is killed, both start again
# Components: the names up.sh starts (containerd etcd kube-apiserver kube-controller-manager
# kube-scheduler kubelet kube-proxy). Waits until each answers again (bounded) before returning.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { echo "restart.sh must run as root" >&2; exit 2; }
down=2 reboot=0
while (($#)); do
  case $1 in
    --down) down=$2; shift 2 ;;
    --reboot) reboot=1; shift ;;
    *) break ;;
  esac
done
((reboot)) && set -- kubelet containerd
(($#)) || { echo "usage: $0 [--down SECONDS] COMPONENT... | --reboot" >&2; exit 2; }

ready() {  # ready NAME: whether the component answers
  case $1 in
    containerd) ctr -a "$CTRD_SOCK" version >/dev/null 2>&1 ;;
    etcd) curl -fsS --max-time 2 http://127.0.0.1:2379/health 2>/dev/null | grep -q '"health":"true"' ;;
    kube-apiserver) curl -fsSk --max-time 2 https://127.0.0.1:6443/readyz >/dev/null 2>&1 ||
      curl -sk --max-time 2 -o /dev/null -w '%{http_code}' https://127.0.0.1:6443/readyz 2>/dev/null | grep -q 401 ;;
    kube-controller-manager) curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz >/dev/null 2>&1 ;;
    kube-scheduler) curl -fsSk --max-time 2 https://127.0.0.1:10259/healthz >/dev/null 2>&1 ;;
    kubelet) curl -fsS --max-time 2 http://127.0.0.1:10248/healthz >/dev/null 2>&1 ;;
    kube-proxy) curl -fsS --max-time 2 http://127.0.0.1:10256/healthz >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

for name in "$@"; do
  [[ -s $PIDS/$name.cmd ]] || { echo "no recorded command line for $name in $PIDS (started by up.sh?)" >&2; exit 2; }
done
# The API server holds SIGTERM until its watches drain (30 s here with the operator's); 5 s, as in down.sh.
for name in "$@"; do
  if [[ $name == kube-apiserver ]]; then stop "$name" 5; else stop "$name" 30; fi
done
# What survives a containerd restart (the shims and their containers) does not survive a reboot.
((reboot)) && kill_pod_processes
sleep "$down"
# start in up.sh's order
for name in "${COMPONENTS[@]}"; do
  [[ " $* " == *" $name "* ]] || continue
  mapfile -d '' -t cmd <"$PIDS/$name.cmd"
  start "$name" "${cmd[@]}"
  for ((i = 0; i < 120; i++)); do ready "$name" && break; sleep 0.5; done
  ready "$name" || { echo "$name did not come back within 60s; see $LOGS/$name.log" >&2; exit 1; }
  log "$name is back"
done
