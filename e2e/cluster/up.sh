#!/usr/bin/env bash
# Bring up the single-node e2e Kubernetes cluster (idempotent).
#   - already up and healthy -> verify and exit 0
#   - partially up           -> down.sh, then a cold start
# Installs deps (install-deps.sh), builds/caches the k8s binaries (build-k8s.sh), builds images
# (e2e/images/build-all.sh, unless DSB_SKIP_IMAGE_BUILD=1), imports $DSB_CACHE/images/*.oci.tar,
# starts containerd, etcd, control plane, kubelet, kube-proxy, applies e2e/images/addons/*.yaml.
# stdout: only `export KUBECONFIG=...` (+ PATH); progress goes to stderr.
# Env: DSB_CACHE, DSB_E2E_STATE, DSB_SKIP_IMAGE_BUILD, DSB_UP_TIMEOUT (per step, s, default 120).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { echo "up.sh must run as root" >&2; exit 1; }
T0=$(date +%s.%N)
TIMEOUT=${DSB_UP_TIMEOUT:-120}
KC=$STATE/kubeconfig
since() { python3 -c "import sys,time; print('%.1fs' % (time.time()-float(sys.argv[1])))" "$T0"; }

fail() {
  log "FAILED: $*"
  for c in "${COMPONENTS[@]}"; do
    [[ -s $LOGS/$c.log ]] || continue
    echo "----- last 25 lines of $LOGS/$c.log -----" >&2; tail -n 25 "$LOGS/$c.log" >&2
  done
  log "logs kept in $LOGS; clean up with $CLUSTER_DIR/down.sh"
  exit 1
}

# wait_for NAME DESCRIPTION CMD... : poll CMD every 0.5s up to $TIMEOUT; NAME's process must stay alive.
wait_for() {
  local name=$1 what=$2; shift 2
  local n=$((TIMEOUT * 2))
  for ((i = 0; i < n; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [[ $name != - ]] && ! pid_alive "$name" >/dev/null; then fail "$name exited while waiting for $what"; fi
    sleep 0.5
  done
  fail "timed out after ${TIMEOUT}s waiting for $what"
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KC" "$@"; }
curl_api() { curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:6443$1"; }

print_exports() {
  echo "export KUBECONFIG=$KC"
  echo "export PATH=$STATE/bin:\$PATH"
}

addons() {
  local dir=$REPO_ROOT/e2e/images/addons
  compgen -G "$dir/*.yaml" >/dev/null || { log "no addon manifests in $dir (yet)"; return 0; }
  log "applying addons: $(cd "$dir" && echo *.yaml)"
  # The manifests assume the default state dir (local-path volumes live under it).
  local manifests; manifests=$(for f in "$dir"/*.yaml; do echo "---"; sed "s|/var/lib/dockersandbox-e2e|$STATE|g" "$f"; done)
  kubectl_ apply --server-side --force-conflicts -f - <<<"$manifests" >&2 || fail "applying addons"
  local ns
  for ns in $(kubectl_ create --dry-run=client -f - -o jsonpath='{.kind}/{.metadata.namespace}{"\n"}' <<<"$manifests" 2>/dev/null |
              awk -F/ '($1=="Deployment"||$1=="DaemonSet"||$1=="StatefulSet") && $2!=""{print $2}' | sort -u); do
    log "waiting for workloads in namespace $ns"
    { kubectl_ -n "$ns" rollout status deploy --timeout="${TIMEOUT}s" >&2 &&
      { [[ -z $(kubectl_ -n "$ns" get ds -o name) ]] || kubectl_ -n "$ns" rollout status ds --timeout="${TIMEOUT}s" >&2; }; } ||
      { kubectl_ -n "$ns" get pods -o wide >&2 || true; kubectl_ -n "$ns" describe pods >&2 || true; fail "addons in $ns not ready"; }
  done
}

verify() {
  wait_for - "apiserver /readyz" curl_api /readyz
  wait_for - "node $NODE_NAME Ready" kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  wait_for - "serviceaccount default/default" kubectl_ -n default get serviceaccount default
}

# ---------------------------------------------------------------- 0. already up?
mkdir -p "$STATE" "$LOGS" "$PIDS"
alive=0
for c in "${COMPONENTS[@]}"; do pid_alive "$c" >/dev/null && alive=$((alive + 1)); done
if ((alive == ${#COMPONENTS[@]})) && [[ -x $STATE/bin/kubectl ]]; then
  BIN=$STATE/bin
  log "cluster already running; verifying"
  TIMEOUT=30 verify
  addons
  log "cluster healthy ($(since))"
  print_exports
  exit 0
elif ((alive > 0)); then
  log "cluster partially running ($alive/${#COMPONENTS[@]} components); tearing down first"
  "$CLUSTER_DIR/down.sh" >&2 || true
  mkdir -p "$STATE" "$LOGS" "$PIDS"
fi

# cold start: keep the previous run's logs one generation back
mkdir -p "$LOGS/prev"; for f in "$LOGS"/*.log; do [[ -f $f ]] && mv -f "$f" "$LOGS/prev/"; done

# ---------------------------------------------------------------- 1. deps, binaries, images
"$CLUSTER_DIR/install-deps.sh"
KBIN=$("$CLUSTER_DIR/build-k8s.sh")
mkdir -p "$STATE/bin"
for b in "$KBIN"/*; do ln -sfn "$b" "$STATE/bin/${b##*/}"; done
BIN=$STATE/bin
# Debian/gcloud kubectl on this image is 1.32 ("dispatcher"); shadow it with ours (same minor as the cluster).
ln -sfn "$KBIN/kubectl" /usr/local/bin/kubectl
log "binaries: $KBIN ($("$BIN/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'))"

if [[ ${DSB_SKIP_IMAGE_BUILD:-0} != 1 && -x $REPO_ROOT/e2e/images/build-all.sh ]]; then
  log "building images (e2e/images/build-all.sh)"
  "$REPO_ROOT/e2e/images/build-all.sh" >&2 || fail "e2e/images/build-all.sh"
fi
[[ -f $DSB_CACHE/images/pause.oci.tar ]] || fail "$DSB_CACHE/images/pause.oci.tar missing (built by e2e/images/build-all.sh)"
T0=$(date +%s.%N)   # boot timing starts here

# ---------------------------------------------------------------- 2. host networking
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "WARN: net.bridge.bridge-nf-call-iptables not available"
sysctl -qw net.bridge.bridge-nf-call-ip6tables=1 2>/dev/null || true
UPLINK=$(ip -4 route show default | awk '{for(i=1;i<NF;i++) if($i=="dev"){print $(i+1); exit}}')
NODE_IP=${DSB_NODE_IP:-}
if [[ -z $NODE_IP && -n $UPLINK ]]; then
  NODE_IP=$(ip -4 -o addr show dev "$UPLINK" scope global | awk '{split($4,a,"/"); print a[1]; exit}')
fi
if [[ -z $NODE_IP ]]; then
  NODE_IP=$(ip -4 -o addr show scope global | awk '$2!="'"$BRIDGE"'"{split($4,a,"/"); print a[1]; exit}')
fi
[[ -n $NODE_IP ]] || fail "cannot detect a node IP (no global IPv4 address); set DSB_NODE_IP"
MTU=$( [[ -n $UPLINK ]] && cat "/sys/class/net/$UPLINK/mtu" || echo 1500)
log "node IP $NODE_IP (uplink ${UPLINK:-none}, mtu $MTU)"
# Accept pod traffic in FORWARD even if something (e.g. a Docker engine) set the policy to DROP.
iptables -w -N DSB-FORWARD 2>/dev/null || true
iptables -w -F DSB-FORWARD
iptables -w -A DSB-FORWARD -i "$BRIDGE" -j ACCEPT
iptables -w -A DSB-FORWARD -o "$BRIDGE" -j ACCEPT
iptables -w -C FORWARD -j DSB-FORWARD 2>/dev/null || iptables -w -I FORWARD 1 -j DSB-FORWARD

# ---------------------------------------------------------------- 3. PKI, kubeconfigs, configs
render() {  # render TEMPLATE DEST
  sed -e "s|@STATE@|$STATE|g" -e "s|@PKI@|$PKI|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
      -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@MTU@|$MTU|g" \
      -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" "$CLUSTER_DIR/config/$1" >"$2"
}
rm -rf "$PKI"; mkdir -p "$PKI" "$STATE/config" "$STATE/kubeconfigs" "$STATE/cni/net.d" "$STATE/cni/ipam"
(
  cd "$PKI"; umask 077
  ossl() { openssl "$@" 2>/dev/null; }
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=dockersandbox-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  cert() {  # cert NAME SUBJECT EKU [SANS]
    ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
      "$3" "${4:+subjectAltName=$4}" >"$1.ext"
    ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 -extfile "$1.ext" -out "$1.crt"
    rm -f "$1.csr" "$1.ext"
  }
  cert kube-apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=admin" clientAuth
  cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  cert kube-proxy "/CN=system:kube-proxy" clientAuth
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
  ossl pkey -in sa.key -pubout -out sa.pub
) || fail "PKI generation"
b64() { base64 -w0 "$1"; }
for u in admin kube-controller-manager kube-scheduler kubelet kube-proxy; do
  sed -e "s|@SERVER@|https://127.0.0.1:6443|" -e "s|@USER@|$u|g" -e "s|@CA_DATA@|$(b64 "$PKI/ca.crt")|" \
      -e "s|@CERT_DATA@|$(b64 "$PKI/$u.crt")|" -e "s|@KEY_DATA@|$(b64 "$PKI/$u.key")|" \
      "$CLUSTER_DIR/config/kubeconfig.tmpl" >"$STATE/kubeconfigs/$u.kubeconfig"
done
chmod 600 "$STATE"/kubeconfigs/*
install -m 600 "$STATE/kubeconfigs/admin.kubeconfig" "$KC"
render containerd.toml "$STATE/config/containerd.toml"
render 10-dsb-bridge.conflist "$STATE/cni/net.d/10-dsb-bridge.conflist"
render kubelet.yaml "$STATE/config/kubelet.yaml"
render kube-proxy.yaml "$STATE/config/kube-proxy.yaml"
render kube-scheduler.yaml "$STATE/config/kube-scheduler.yaml"
render audit-policy.yaml "$STATE/config/audit-policy.yaml"

# ---------------------------------------------------------------- 4. containerd + images
mkdir -p "$STATE/containerd"
start containerd /usr/bin/containerd --config "$STATE/config/containerd.toml"
wait_for containerd "containerd socket" ctr -a "$CTRD_SOCK" version
log "containerd up ($(since))"
n=0
for img in "$DSB_CACHE"/images/*.oci.tar; do
  [[ -f $img ]] || continue
  ctr -a "$CTRD_SOCK" -n k8s.io images import --platform linux/amd64 "$img" >>"$LOGS/containerd-import.log" 2>&1 ||
    fail "ctr images import $img (see $LOGS/containerd-import.log)"
  n=$((n + 1))
done
# (the list is read whole first: `ctr ... | grep -q` under pipefail fails when grep exits early)
have=$(ctr -a "$CTRD_SOCK" -n k8s.io images ls -q)
grep -qxF "$PAUSE_IMAGE" <<<"$have" || fail "sandbox image $PAUSE_IMAGE not present after import (have: $(tr '\n' ' ' <<<"$have"))"
log "imported $n image archive(s) ($(since))"

# ---------------------------------------------------------------- 5. etcd
start etcd /usr/bin/etcd --name dsb --data-dir "$STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster dsb=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --log-level warn
wait_for etcd "etcd /health" sh -c 'curl -fsS --max-time 2 http://127.0.0.1:2379/health | grep -q "\"health\":\"true\""'
log "etcd up ($(since))"

# ---------------------------------------------------------------- 6. control plane
start kube-apiserver "$BIN/kube-apiserver" \
  --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port=6443 \
  --etcd-servers=http://127.0.0.1:2379 \
  --allow-privileged=true \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction,PodSecurity \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/kube-apiserver.crt" --tls-private-key-file="$PKI/kube-apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-account-issuer="https://kubernetes.default.svc.$DOMAIN" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --endpoint-reconciler-type=lease \
  --event-ttl=2h --profiling=false \
  --audit-policy-file="$STATE/config/audit-policy.yaml" --audit-log-path="$LOGS/audit-operator.log" \
  --audit-log-format=json --audit-log-maxsize=200 --audit-log-maxbackup=1 \
  --shutdown-delay-duration=0s --shutdown-watch-termination-grace-period=0s
wait_for kube-apiserver "kube-apiserver /readyz" curl_api /readyz
log "kube-apiserver up ($(since))"

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false --profiling=false
start kube-scheduler "$BIN/kube-scheduler" --config="$STATE/config/kube-scheduler.yaml" \
  --authentication-kubeconfig="$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --profiling=false
wait_for kube-controller-manager "kube-controller-manager /healthz" curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz
wait_for kube-scheduler "kube-scheduler /healthz" curl -fsSk --max-time 2 https://127.0.0.1:10259/healthz
log "controller-manager and scheduler up ($(since))"

# ---------------------------------------------------------------- 7. node
mkdir -p "$KUBELET_ROOT"
start kubelet "$BIN/kubelet" --config="$STATE/config/kubelet.yaml" \
  --kubeconfig="$STATE/kubeconfigs/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$KUBELET_ROOT" --v=1
wait_for kubelet "kubelet /healthz" curl -fsS --max-time 2 http://127.0.0.1:10248/healthz
start kube-proxy "$BIN/kube-proxy" --config="$STATE/config/kube-proxy.yaml" --v=1
wait_for kube-proxy "kube-proxy /healthz" curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
wait_for kubelet "node $NODE_NAME Ready" kubectl_ wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
log "node $NODE_NAME Ready ($(since))"
wait_for kube-controller-manager "serviceaccount default/default" kubectl_ -n default get serviceaccount default

# ---------------------------------------------------------------- 8. addons
addons
log "cluster up in $(since) (from containerd start); kubeconfig $KC"
print_exports
