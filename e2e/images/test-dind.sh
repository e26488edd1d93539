#!/usr/bin/env bash
# test-dind.sh: smoke-test dind.oci.tar (+ nested-busybox.docker.tar) without a cluster.
# Starts a PRIVATE containerd (own root/state/socket under $DSB_CACHE/images-work/test-ctrd and
# /run/dsb-images-ctrd; it never touches /run/containerd), imports the dind image, runs it privileged the
# way the operator's pod does (ctr adds no /sys/fs/cgroup mount by itself, CRI does: added here) (TLS flags, --mtu, --default-network-opt), then checks: the engine answers
# on the unix socket and over mutual TLS, `docker load` of the nested image, nested `docker run`, and a
# nested `docker run --privileged`. Needs containerd + ctr (CONTAINERD_BIN_DIR, default: from PATH) and runc.
source "$(dirname "$0")/lib.sh"
BIN_DIR=${CONTAINERD_BIN_DIR:-$(dirname "$(command -v containerd || echo /usr/bin/containerd)")}
[ -x "$BIN_DIR/containerd" ] || { echo "test-dind: no containerd (set CONTAINERD_BIN_DIR)" >&2; exit 2; }
T=$WORK/test-ctrd; S=/run/dsb-images-ctrd; SOCK=$S/containerd.sock; NS=dsb-images-test
CTR=("$BIN_DIR/ctr" -a "$SOCK" -n "$NS")
NAME=${DIND_IMAGE:-localhost/dockersandbox/dind:e2e}
C=dsb-dind-test-$$
mkdir -p "$T" "$S"
cat >"$T/config.toml" <<TOML
version = 3
root = "$T/root"
state = "$S/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
  "io.containerd.nri.v1.nri", "io.containerd.podsandbox.controller.v1.podsandbox"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
TOML
started=""
if ! "${CTR[@]}" version >/dev/null 2>&1; then
  setsid "$BIN_DIR/containerd" --config "$T/config.toml" >"$T/containerd.log" 2>&1 </dev/null &
  echo $! >"$T/containerd.pid"; started=$(cat "$T/containerd.pid")
  for _ in $(seq 50); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
D=$WORK/test-dind-$$; mkdir -p "$D/vol" "$D/certs/server" "$D/certs/client" "$D/nested"
cleanup() {
  "${CTR[@]}" task kill -s KILL "$C" >/dev/null 2>&1 || :
  for _ in 1 2 3 4 5 6 7 8 9 10; do "${CTR[@]}" task delete "$C" >/dev/null 2>&1 && break; sleep 0.3; done
  "${CTR[@]}" container delete "$C" >/dev/null 2>&1 || :
  [ -z "$started" ] || { kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || :; }
  rm -rf "$D"
}
trap cleanup EXIT

# ECDSA P-256 certs, as the operator makes them.
( cd "$D/certs"
  openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
  openssl req -x509 -new -key ca-key.pem -sha256 -days 1 -subj /CN=test-ca -out ca.pem
  for w in server client; do
    openssl ecparam -name prime256v1 -genkey -noout -out $w/key.pem
    openssl req -new -key $w/key.pem -subj /CN=$w -out $w/csr.pem
    if [ $w = server ]; then printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >$w/ext.cnf
    else printf 'extendedKeyUsage=clientAuth\n' >$w/ext.cnf; fi
    openssl x509 -req -in $w/csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days 1 -extfile $w/ext.cnf -out $w/cert.pem
    cp ca.pem $w/ca.pem
  done ) >/dev/null 2>&1
cp "$OUT/nested-busybox.docker.tar" "$D/nested/"

t0=$(date +%s.%N)
"${CTR[@]}" images import "$OUT/dind.oci.tar" >/dev/null
t1=$(date +%s.%N); log "import: $(awk "BEGIN{print $t1 - $t0}") s"
# The operator's engine command (MTU read from the pod interface; here a fixed 1450).
# shellcheck disable=SC2016  # $MTU is the container shell's variable, set at the start of SCRIPT
SCRIPT='MTU=1450; mkdir -p /etc/docker; printf "{\"bip\":\"198.18.0.1/24\",\"default-address-pools\":[{\"base\":\"198.18.128.0/17\",\"size\":24}]}" >/etc/docker/daemon.json
exec dockerd-entrypoint.sh dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 --tlsverify --tlscacert=/certs/server/ca.pem --tlscert=/certs/server/cert.pem --tlskey=/certs/server/key.pem --mtu=$MTU --default-network-opt=bridge=com.docker.network.driver.mtu=$MTU'
"${CTR[@]}" run -d --log-uri "file://$D/engine.log" --privileged --env DOCKER_TLS_CERTDIR= \
  --mount "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=rw:nosuid:nodev:noexec:relatime" \
  --mount "type=bind,src=$D/vol,dst=/var/lib/docker,options=rbind:rw" \
  --mount "type=bind,src=$D/certs/server,dst=/certs/server,options=rbind:ro" \
  --mount "type=bind,src=$D/certs/client,dst=/certs/client,options=rbind:ro" \
  --mount "type=bind,src=$D/nested,dst=/nested,options=rbind:ro" \
  "$NAME" "$C" /bin/sh -c "$SCRIPT" >"$D/run.log" 2>&1
ex() { "${CTR[@]}" task exec --exec-id "e$RANDOM$RANDOM" "$C" "$@"; }
ok=""
for _ in $(seq 150); do
  if ex docker -H unix:///var/run/docker.sock version >/dev/null 2>&1; then ok=1; break; fi; sleep 0.2
done
t2=$(date +%s.%N)
[ -n "$ok" ] || { echo "test-dind: engine did not answer"; cat "$D/run.log"; tail -40 "$D/engine.log"; exit 1; }
log "engine answering after $(awk "BEGIN{print $t2 - $t1}") s"
ex docker -H unix:///var/run/docker.sock version --format 'server {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}'
ex docker --tlsverify --tlscacert /certs/client/ca.pem --tlscert /certs/client/cert.pem --tlskey /certs/client/key.pem \
  -H tcp://127.0.0.1:2376 info --format 'TLS info: driver={{.Driver}} cgroup={{.CgroupVersion}}/{{.CgroupDriver}}'
ex sh -c 'docker load -i /nested/nested-busybox.docker.tar'
ex docker run --rm dsb-e2e/busybox:nested echo nested-run-ok
ex docker run --rm --privileged dsb-e2e/busybox:nested sh -c 'echo nested-privileged-ok; grep CapEff /proc/self/status'
ex docker network create testnet >/dev/null
ex docker network inspect testnet --format 'user network MTU option: {{index .Options "com.docker.network.driver.mtu"}}'
ex sh -c 'ip link show docker0 | head -1'
log "test-dind: all checks passed"
