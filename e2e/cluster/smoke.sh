#!/usr/bin/env bash
# Smoke test of a running e2e cluster (after up.sh): pod, Service ClusterIP (host, pod, hairpin),
# the `kubernetes` Service from a pod, DNS (when CoreDNS is deployed), exec/logs, privileged pod,
# PVC on the default StorageClass (when local-path is deployed). Cleans up its namespace.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export KUBECONFIG=${KUBECONFIG:-$STATE/kubeconfig}
k() { "$STATE/bin/kubectl" "$@"; }
NS=dsb-smoke
IMG=${SMOKE_IMAGE:-localhost/dockersandbox/busybox:e2e}
pass=0 failn=0
ok() { echo "ok   - $*"; pass=$((pass + 1)); }
ko() { echo "FAIL - $*"; failn=$((failn + 1)); }
# check WHAT CMD...: retried for ~10 s (kube-proxy/CoreDNS programming lags pod readiness a little)
check() {
  local what=$1; shift
  for _ in 1 2 3 4 5 6 7 8 9 10; do if "$@" >/dev/null 2>&1; then ok "$what"; return; fi; sleep 1; done
  ko "$what"
}
trap 'k delete ns "$NS" --wait=false >/dev/null 2>&1 || true' EXIT


k delete ns "$NS" --ignore-not-found --wait=true >/dev/null
k create ns "$NS" >/dev/null
T0=$(date +%s.%N)
have_sc=$(k get storageclass standard -o name 2>/dev/null || true)
k apply -n "$NS" -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: $IMG
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo dsb-smoke-ok > /www/index.html && echo web-started && exec httpd -f -v -p 8080 -h /www']
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: $IMG, imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $IMG
    imagePullPolicy: Never
    command: [sleep, "3600"]
    securityContext: {privileged: true}
YAML
if [[ -n $have_sc ]]; then
k apply -n "$NS" -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pvc-user}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $IMG
    imagePullPolicy: Never
    command: [sh, -c, 'echo persisted > /data/f && sleep 3600']
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
YAML
fi
check "deployment web available" k -n "$NS" rollout status deploy/web --timeout=120s
check "pods client, priv Ready" k -n "$NS" wait --for=condition=Ready pod/client pod/priv --timeout=120s
echo "     (pods ready after $(python3 -c "import time,sys; print('%.1fs' % (time.time()-float(sys.argv[1])))" "$T0"))"
CIP=$(k -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')
# shellcheck disable=SC2016  # $0 and $1 are the pod shell's positional parameters (sh -c SCRIPT IP PORT)
http_get='printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 "$0" "$1" | grep -q dsb-smoke-ok'
check "host -> ClusterIP $CIP:80" sh -c "curl -fsS --max-time 5 http://$CIP/ | grep -q dsb-smoke-ok"
check "pod -> ClusterIP $CIP:80" k -n "$NS" exec client -- sh -c "$http_get" "$CIP" 80
WEBPOD=$(k -n "$NS" get pod -l app=web -o jsonpath='{.items[0].metadata.name}')
check "hairpin: web pod -> its own Service" k -n "$NS" exec "$WEBPOD" -- sh -c "$http_get" "$CIP" 80
check "pod -> kubernetes Service $API_SERVICE_IP:443 (TCP connect)" k -n "$NS" exec client -- sh -c "nc -w 5 $API_SERVICE_IP 443 </dev/null"
# shellcheck disable=SC2016  # KUBERNETES_SERVICE_* are expanded by the pod's shell, not here
check "pod env KUBERNETES_SERVICE_HOST=$API_SERVICE_IP" k -n "$NS" exec client -- sh -c '[ "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" = "'"$API_SERVICE_IP"':443" ]'
check "serviceaccount token mounted" k -n "$NS" exec client -- test -s /var/run/secrets/kubernetes.io/serviceaccount/token
check "kubectl logs (apiserver -> kubelet)" sh -c "\"$STATE/bin/kubectl\" -n $NS logs $WEBPOD | grep -q web-started"
if k -n kube-system get deploy coredns >/dev/null 2>&1; then
  check "DNS: web.$NS.svc.$DOMAIN" k -n "$NS" exec client -- nslookup "web.$NS.svc.$DOMAIN" "$DNS_IP"
  check "DNS: short name via search path + HTTP" k -n "$NS" exec client -- sh -c "$http_get" web 80
  check "DNS: kubernetes.default" k -n "$NS" exec client -- nslookup "kubernetes.default.svc.$DOMAIN"
else
  echo "skip - DNS (no CoreDNS deployment)"
fi
check "privileged pod can mount tmpfs" k -n "$NS" exec priv -- sh -c 'mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && umount /mnt/t'
check "privileged pod sees host devices" k -n "$NS" exec priv -- test -e /dev/kmsg
check "unprivileged pod cannot mount" sh -c "! \"$STATE/bin/kubectl\" -n $NS exec client -- mount -t tmpfs none /tmp"
if [[ -n $have_sc ]]; then
  check "PVC on default StorageClass bound + written" sh -c "\"$STATE/bin/kubectl\" -n $NS wait --for=condition=Ready pod/pvc-user --timeout=120s && \"$STATE/bin/kubectl\" -n $NS exec pvc-user -- cat /data/f | grep -q persisted"
else
  echo "skip - PVC (no StorageClass 'standard')"
fi
echo "$pass passed, $failn failed"
((failn == 0))
