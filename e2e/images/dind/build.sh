#!/usr/bin/env bash
# localhost/dockersandbox/dind:e2e -> $OUT/dind.oci.tar
# A docker:dind look-alike from Debian packages: debootstrap (minbase) of a suite whose docker.io is
# >= 23 (bookworm's 20.10 cannot start privileged containers on hosts lacking CAP_SYS_RESOURCE).
# Two cache levels: the debootstrapped rootfs (slow; keyed on suite/packages/this recipe) and the
# packed image (keyed on the rootfs key + entrypoint scripts).
source "$(dirname "$0")/../lib.sh"
HERE=$IMAGES_DIR/dind
NAME=${DIND_IMAGE:-localhost/dockersandbox/dind:e2e}
SUITE=${DIND_SUITE:-trixie}
# the machine's own Debian archive (or DSB_DEBIAN_MIRROR), see e2e/tools/debian-mirror.sh
MIRROR=$(bash "$IMAGES_DIR/../tools/debian-mirror.sh")
ARCHIVE=$OUT/dind.oci.tar
need_pkgs debootstrap debian-archive-keyring

# (not via cache_key: edits to lib.sh/oci-pack.py must not force a new debootstrap)
RKEY=$(cat "$HERE/rootfs.sh" <(echo "$SUITE $MIRROR") | sha256sum | cut -d" " -f1)
KEY=$(cache_key "$0" "$RKEY" "$HERE/dockerd-entrypoint.sh" "$HERE/dind" "$NAME")
if fresh dind "$KEY" "$ARCHIVE"; then cached dind "$ARCHIVE"; exit 0; fi
t0=$(date +%s)

R=$WORK/dind-rootfs
if ! fresh dind-rootfs "$RKEY" "$R/usr/bin/docker"; then
  log "debootstrap $SUITE -> $R (~2-3 min cold)"
  "$HERE/rootfs.sh" "$R" "$SUITE" "$MIRROR" "$WORK/debootstrap-debs/$SUITE"
  mark_fresh dind-rootfs "$RKEY"
fi

# Legacy shims (v1 API, unused by dockerd, ~21 MB) are left out of the image.
# Our scripts go into a small second layer on top of the Debian rootfs layer.
DOCKER_DEB=$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${Version}' docker.io)
log "docker.io $DOCKER_DEB ($SUITE)"
L2=$WORK/dind-layer2; rm -rf "$L2"; mkdir -p "$L2/usr/local/bin" "$L2/etc/docker" "$L2/certs/client"
install -m 0755 "$HERE/dockerd-entrypoint.sh" "$L2/usr/local/bin/dockerd-entrypoint.sh"
install -m 0755 "$HERE/dind" "$L2/usr/local/bin/dind"
chmod 1777 "$L2/certs" "$L2/certs/client"
"${PACK[@]}" --layer "$R" --layer "$L2" --name "$NAME" \
  --exclude '/dev/*' --exclude '/proc/*' --exclude '/sys/*' \
  --exclude /usr/bin/containerd-shim --exclude /usr/bin/containerd-shim-runc-v1 \
  --entrypoint '["dockerd-entrypoint.sh"]' --cmd '[]' \
  --env 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --env 'DOCKER_TLS_CERTDIR=/certs' \
  --volume /var/lib/docker --expose 2375/tcp --expose 2376/tcp \
  --label "dev.dockersandbox.debian-suite=$SUITE" --label "dev.dockersandbox.docker-io-version=$DOCKER_DEB" \
  -o "$ARCHIVE"
mark_fresh dind "$KEY"
built dind "$ARCHIVE"; log "dind built in $(( $(date +%s) - t0 ))s"
