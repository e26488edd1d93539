#!/usr/bin/env bash
# Build the operator image localhost/dockersandbox/operator:dev without Docker or a registry.
# Same shape as the Dockerfile's runtime stage (distroless cc-debian12:nonroot): the release binary,
# its shared libraries (from this Debian bookworm machine's libc6/libgcc-s1), CA certificates,
# /etc/passwd with nonroot (65532), entrypoint ["/dockersandbox-operator"], cmd ["run"], user 65532.
#
# Usage: build.sh [BINARY]   (default ${CARGO_TARGET_DIR:-<repo>/target}/release/dockersandbox-operator)
# Output: $DSB_CACHE/images/operator.oci.tar (cached by content). When a local cluster is up
# ($DSB_E2E_STATE/kubeconfig exists and containerd answers) it is also imported into containerd's
# k8s.io namespace; restart the operator pod afterwards to pick up a new build of the same tag.
# Env: OPERATOR_IMAGE (name, default localhost/dockersandbox/operator:dev), OPERATOR_IMPORT=0 to skip import,
#      CONTAINERD_ADDRESS (ctr's own variable) for a non-default containerd socket.
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$IMAGES_DIR/../.." && pwd)
NAME=${OPERATOR_IMAGE:-localhost/dockersandbox/operator:dev}
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/dockersandbox-operator}
ARCHIVE=$OUT/operator.oci.tar
STATE=${DSB_E2E_STATE:-/var/lib/dockersandbox-e2e}

if [ ! -x "$BIN" ]; then
  echo "operator image: release binary not found at $BIN" >&2
  echo "  build it first: cargo build --release --locked   (or pass its path as \$1)" >&2
  exit 1
fi
file_type=$(head -c 4 "$BIN" | od -An -c | tr -d ' ')
[ "$file_type" = "177ELF" ] || { echo "operator image: $BIN is not an ELF binary" >&2; exit 1; }

need_pkgs ca-certificates libc-bin

# Shared libraries the binary needs (empty for a static build), resolved on this machine.
libs() { ldd "$BIN" 2>/dev/null | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}' | sort -u || true; }
mapfile -t LIBS < <(libs)
lib_versions=$(dpkg-query -W -f='${Package}=${Version}\n' libc6 libgcc-s1 ca-certificates 2>/dev/null | sort)

KEY=$(cache_key "$0" "$BIN" "$NAME" "$lib_versions" "${LIBS[*]}")
if fresh operator "$KEY" "$ARCHIVE"; then
  cached operator "$ARCHIVE"
else
  t0=$(date +%s)
  R=$WORK/operator-root; rm -rf "$R"; mkdir -p "$R"
  install -d -m 0755 "$R/etc/ssl/certs" "$R/lib64" "$R/lib/x86_64-linux-gnu"
  install -d -m 1777 "$R/tmp"
  install -d -m 0700 -o 0 -g 0 "$R/root"
  install -d -m 0700 -o 65532 -g 65532 "$R/home/nonroot"
  install -m 0755 "$BIN" "$R/dockersandbox-operator"

  # Each library at the path the dynamic loader looks for (symlinks resolved: one regular file).
  for lib in "${LIBS[@]}"; do
    install -D -m 0755 "$(readlink -f "$lib")" "$R$lib"
  done

  # Users and groups as in distroless :nonroot.
  cat >"$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
P
  cat >"$R/etc/group" <<'G'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
G
  printf 'hosts: files dns\n' >"$R/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$R"/etc/passwd "$R"/etc/group "$R"/etc/nsswitch.conf "$R"/etc/ssl/certs/ca-certificates.crt

  version=$("$BIN" --version 2>/dev/null | awk '{print $NF; exit}' || true)
  "${PACK[@]}" --layer "$R" --name "$NAME" \
    --entrypoint '["/dockersandbox-operator"]' --cmd '["run"]' --user 65532:65532 --workdir / \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --expose 8080/tcp \
    --label org.opencontainers.image.title=dockersandbox-operator \
    --label "org.opencontainers.image.version=${version:-dev}" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    -o "$ARCHIVE"
  mark_fresh operator "$KEY"
  built operator "$ARCHIVE"; log "operator built in $(( $(date +%s) - t0 ))s (libs: ${#LIBS[@]})"
fi

# Import into the local cluster's containerd when one is running.
if [ "${OPERATOR_IMPORT:-1}" != 0 ] && [ -f "$STATE/kubeconfig" ] && command -v ctr >/dev/null \
   && ctr version >/dev/null 2>&1; then
  ctr -n k8s.io images import --platform linux/amd64 "$ARCHIVE" >&2
  log "imported $NAME into containerd (k8s.io)"
fi
