#!/bin/sh
# dockerd-entrypoint.sh for localhost/dockersandbox/dind:e2e (the e2e stand-in for docker:<ver>-dind).
# Same contract as the official docker:dind entrypoint (docker-library/docker):
#   * no args, or first arg starting with "-": run dockerd with default --host flags (plus those args);
#     if DOCKER_TLS_CERTDIR is non-empty, generate CA/server/client certs there (unless present) and
#     listen with TLS on 2376, otherwise plain TCP on 2375 (as upstream; insecure, for tests only).
#   * first arg "dockerd": delete stale docker*.pid / containerd.pid files (left behind by SIGKILL),
#     run it under docker-init (tini), wrap that with /usr/local/bin/dind when present, exec it.
#   * anything else: exec it unchanged.
# Differences from upstream: generated keys are ECDSA P-256 (fast) instead of RSA; no rootless mode.
set -eu

gen_key() { [ -s "$1" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$1"; }

tls_sans() {
	{
		ip -oneline address 2>/dev/null | awk '{ sub(/\/.*$/, "", $4); print "IP:" $4 }'
		for n in "$(cat /etc/hostname 2>/dev/null || :)" docker localhost "$(hostname -f 2>/dev/null || :)" "$(hostname -s 2>/dev/null || :)"; do
			[ -n "$n" ] && echo "DNS:$n"
		done
		[ -z "${DOCKER_TLS_SAN:-}" ] || echo "$DOCKER_TLS_SAN"
	} | sort -u | paste -sd, -
}

# Certificates are regenerated on every start (SANs/IPs change); keys and the CA are kept.
tls_certs() {
	d=$1 days=825
	if [ -s "$d/ca/key.pem" ] || [ ! -s "$d/ca/cert.pem" ]; then
		mkdir -p "$d/ca"
		gen_key "$d/ca/key.pem"
		openssl req -new -x509 -key "$d/ca/key.pem" -out "$d/ca/cert.pem" -subj '/CN=docker:dind CA' -days "$days"
	fi
	[ -s "$d/ca/key.pem" ] || return 0   # only a CA certificate given: use whatever server cert is there
	mkdir -p "$d/server" "$d/client"
	gen_key "$d/server/key.pem"
	openssl req -new -key "$d/server/key.pem" -out "$d/server/csr.pem" -subj '/CN=docker:dind server'
	printf '[ x509_exts ]\nsubjectAltName = %s\n' "$(tls_sans)" >"$d/server/openssl.cnf"
	openssl x509 -req -in "$d/server/csr.pem" -CA "$d/ca/cert.pem" -CAkey "$d/ca/key.pem" -CAcreateserial \
		-out "$d/server/cert.pem" -days "$days" -extfile "$d/server/openssl.cnf" -extensions x509_exts
	cp "$d/ca/cert.pem" "$d/server/ca.pem"
	openssl verify -CAfile "$d/server/ca.pem" "$d/server/cert.pem"
	gen_key "$d/client/key.pem"
	chmod 0644 "$d/client/key.pem"   # shared with arbitrary client containers, as upstream does
	openssl req -new -key "$d/client/key.pem" -out "$d/client/csr.pem" -subj '/CN=docker:dind client'
	printf '[ x509_exts ]\nextendedKeyUsage = clientAuth\n' >"$d/client/openssl.cnf"
	openssl x509 -req -in "$d/client/csr.pem" -CA "$d/ca/cert.pem" -CAkey "$d/ca/key.pem" -CAcreateserial \
		-out "$d/client/cert.pem" -days "$days" -extfile "$d/client/openssl.cnf" -extensions x509_exts
	cp "$d/ca/cert.pem" "$d/client/ca.pem"
	openssl verify -CAfile "$d/client/ca.pem" "$d/client/cert.pem"
}

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	sock=unix:///var/run/docker.sock
	case "${DOCKER_HOST:-}" in unix://*) sock=$DOCKER_HOST ;; esac
	c=${DOCKER_TLS_CERTDIR:-}
	if [ -n "$c" ] && tls_certs "$c" \
		&& [ -s "$c/server/ca.pem" ] && [ -s "$c/server/cert.pem" ] && [ -s "$c/server/key.pem" ]; then
		set -- dockerd --host="$sock" --host=tcp://0.0.0.0:2376 --tlsverify \
			--tlscacert "$c/server/ca.pem" --tlscert "$c/server/cert.pem" --tlskey "$c/server/key.pem" "$@"
	else
		set -- dockerd --host="$sock" --host=tcp://0.0.0.0:2375 "$@"
	fi
fi

if [ "$1" = dockerd ]; then
	# A SIGKILLed engine leaves pid files behind and refuses to start again ("pid file found").
	find /run /var/run -iname 'docker*.pid' -delete 2>/dev/null || :
	find /run /var/run -name containerd.pid -delete 2>/dev/null || :
	if [ "$(id -u)" != 0 ]; then
		echo >&2 "error: this dind image has no rootless mode; run it as root (privileged or sysbox)"
		exit 1
	fi
	# Fall back to iptables-legacy when nf_tables is unusable (or when asked to), like upstream.
	if [ -n "${DOCKER_IPTABLES_LEGACY:-}" ] || { ! iptables -nL >/dev/null 2>&1 && iptables-legacy -nL >/dev/null 2>&1; }; then
		mkdir -p /usr/local/sbin/.iptables-legacy
		for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
			ln -sf "/usr/sbin/$t-legacy" "/usr/local/sbin/.iptables-legacy/$t"
		done
		export PATH="/usr/local/sbin/.iptables-legacy:$PATH"
	fi
	# tini (Debian ships it as docker-init) as PID 1 reaps orphaned containerd-shim processes, which
	# dockerd as PID 1 would leave as zombies; it forwards SIGTERM to dockerd.
	if command -v docker-init >/dev/null 2>&1; then
		set -- docker-init -- "$@"
	fi
	if [ -x /usr/local/bin/dind ]; then
		set -- /usr/local/bin/dind "$@"
	fi
fi

exec "$@"
