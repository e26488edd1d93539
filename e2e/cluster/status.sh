#!/usr/bin/env bash
# Show the e2e cluster's processes, health and (with -l) log tails. Usage: status.sh [-l [LINES]]
set -uo pipefail
source "$(dirname "$0")/lib.sh"
for c in "${COMPONENTS[@]}"; do
  if pid=$(pid_alive "$c"); then printf '%-24s running  pid %s\n' "$c" "$pid"; else printf '%-24s stopped\n' "$c"; fi
done
if [[ -x $STATE/bin/kubectl && -f $STATE/kubeconfig ]]; then
  k() { timeout 15 "$STATE/bin/kubectl" --kubeconfig "$STATE/kubeconfig" --request-timeout=5s "$@"; }
  k get --raw '/readyz' >/dev/null 2>&1 && echo "apiserver: ready" || echo "apiserver: not ready"
  k get nodes -o wide 2>/dev/null; k get pods -A -o wide 2>/dev/null
fi
if [[ ${1:-} == -l ]]; then
  for f in "$LOGS"/*.log; do [[ -f $f ]] && { echo "----- $f"; tail -n "${2:-20}" "$f"; }; done
fi
exit 0
