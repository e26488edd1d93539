#!/usr/bin/env bash
# e2e: about 37s
# The engine refuses clients that do not present a certificate signed by the sandbox's CA, and
# refuses plain HTTP. A correctly configured client in the same pod works (control). After
# spec.credentials.generation is raised, the client certificate handed out before is refused too.
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client refuse
endpoint=$(dsb_get "$ns" "$name" '{.status.endpoint}')

out=$(retry 10 cdocker "$cns" client version --format '{{.Server.Version}}') || fail "control client failed: $out"
log "control: the right client certificate works (server $out)"

# a client certificate from a foreign CA, made locally with openssl
tmp=$(mktemp -d)
on_exit "rm -rf '$tmp'"
(
  cd "$tmp"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=foreign-ca" -keyout ca-key.pem -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=client" \
    -keyout key.pem -out client.csr 2>/dev/null
  printf 'extendedKeyUsage = clientAuth\n' >ext.cnf
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile ext.cnf -out cert.pem 2>/dev/null
) || fail "openssl could not make the foreign client certificate"

kubectl exec -n "$cns" client -- sh -c 'mkdir -p /tmp/nocert /tmp/foreign && cp /certs/client/ca.pem /tmp/nocert/ && cp /certs/client/ca.pem /tmp/foreign/'
kubectl exec -i -n "$cns" client -- sh -c 'cat > /tmp/foreign/cert.pem' <"$tmp/cert.pem"
kubectl exec -i -n "$cns" client -- sh -c 'cat > /tmp/foreign/key.pem' <"$tmp/key.pem"

# refused CASE ENV... : docker version with that environment must fail; print its output
refused() {
  local what=$1; shift
  local out
  if out=$(kubectl exec -n "$cns" client -- env "$@" docker version --format '{{.Server.Version}}' 2>&1); then
    fail "$what: the engine answered ($out)"
  fi
  printf '%s' "$out"
}

out=$(refused "no client certificate" DOCKER_HOST="$endpoint" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=/tmp/nocert)
log "no client cert -> $out"
assert_match "no client certificate refused in the TLS handshake" \
  'bad certificate|certificate required|handshake|tls:' "$out"

out=$(refused "foreign CA client certificate" DOCKER_HOST="$endpoint" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=/tmp/foreign)
log "foreign CA -> $out"
assert_match "foreign client certificate refused in the TLS handshake" \
  'bad certificate|unknown certificate authority|certificate required|handshake|tls:' "$out"

out=$(refused "plain HTTP" -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH DOCKER_HOST="$endpoint")
log "plain HTTP -> $out"
assert_match "plain HTTP refused" 'HTTP request to an HTTPS server|malformed HTTP response|tls|EOF|connection reset' "$out"

# the CA key never leaves the operator's Secret: it is not in the client Secret nor in the pod
assert_eq "client Secret has no CA key" "" \
  "$(kubectl get secret -n "$ns" "$name-client" -o 'jsonpath={.data.ca-key\.pem}')"
assert_eq "server Secret has no CA key" "" \
  "$(kubectl get secret -n "$ns" "$name-server" -o 'jsonpath={.data.ca-key\.pem}')"

# Revocation: raising spec.credentials.generation issues a new CA, server and client certificate.
# The client certificate handed out before is refused in the TLS handshake (even with the new CA to
# trust the server), and a client with the new client Secret works. The engine rolls once.
ca_before=$(kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}')
log "revoking: spec.credentials.generation=1"
kubectl patch "$DSB" -n "$ns" "$name" --type merge -p '{"spec":{"credentials":{"generation":1}}}' >&2
generation_is_1() { [[ "$(dsb_get "$ns" "$name" '{.status.certificates.generation}')" == 1 ]]; }
wait_for 120 "status.certificates.generation 1" generation_is_1 || fail "credentials generation 1 not reached"
wait_ready "$ns" "$name"
[[ "$(kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}')" != "$ca_before" ]] || fail "the CA was not replaced"
wait_for 60 "Warning Event CredentialsRevoked" warning_event_exists "$ns" "$name" CredentialsRevoked ||
  fail "no CredentialsRevoked event"
kubectl exec -n "$cns" client -- sh -c 'mkdir -p /tmp/revoked && cp /certs/client/cert.pem /certs/client/key.pem /tmp/revoked/'
kubectl get secret -n "$ns" "$name-ca" -o 'jsonpath={.data.ca\.pem}' | base64 -d |
  kubectl exec -i -n "$cns" client -- sh -c 'cat > /tmp/revoked/ca.pem'
out=$(refused "revoked client certificate" DOCKER_HOST="$endpoint" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=/tmp/revoked)
log "revoked client certificate -> $out"
# Under TLS 1.3 the client's side of the handshake ends before the server has checked its
# certificate: the server's refusal may reach the client as an alert, or, when the server has
# already closed, as a reset on the client's first write (the request never reaches dockerd).
assert_match "revoked client certificate refused in the TLS handshake" \
  'bad certificate|unknown certificate authority|certificate required|handshake|tls:|write: connection reset by peer' "$out"
make_client "$cns" client2 "$ns" "$name"
out=$(retry 20 cdocker "$cns" client2 version --format '{{.Server.Version}}') || fail "client with the new Secret failed: $out"
log "ok: the new client Secret works (server $out)"
