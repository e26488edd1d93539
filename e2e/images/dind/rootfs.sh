#!/usr/bin/env bash
# rootfs.sh DIR SUITE MIRROR CACHE_DIR: debootstrap the dind engine's Debian rootfs into DIR and slim it.
# Called by dind/build.sh; its own hash is part of the rootfs cache key.
set -euo pipefail
R=$1 SUITE=$2 MIRROR=$3 DEBS=$4
# docker.io (dockerd, containerd, runc, tini as docker-init) + docker-cli; iptables for the bridge driver;
# busybox for the usual small tools; openssl for DOCKER_TLS_CERTDIR cert generation; xz-utils/pigz for
# `docker load` of compressed archives.
PKGS=docker.io,docker-cli,iptables,ca-certificates,openssl,iproute2,procps,tini,busybox,tar,util-linux,mount,kmod,xz-utils,pigz

umount_all() { local m; for m in dev/pts dev proc sys; do mountpoint -q "$1/$m" 2>/dev/null && umount -l "$1/$m"; done; return 0; }
rm -rf "$R.tmp"
mkdir -p "$DEBS"
if ! nice -n 10 debootstrap --variant=minbase --include="$PKGS" --cache-dir="$DEBS" \
      "$SUITE" "$R.tmp" "$MIRROR" >"$R.debootstrap.log" 2>&1; then
  umount_all "$R.tmp"
  tail -30 "$R.debootstrap.log" >&2
  echo "rootfs.sh: debootstrap failed (log: $R.debootstrap.log)" >&2
  exit 1
fi
umount_all "$R.tmp"
T=$R.tmp
# Slim down: docs, man pages, locales, apt state and caches, logs, host-specific files debootstrap copied.
rm -rf "$T"/usr/share/{doc,man,info,locale,lintian,bug} "$T"/var/lib/apt/lists/* \
       "$T"/var/cache/apt/* "$T"/var/cache/debconf/*-old "$T"/var/lib/dpkg/*-old \
       "$T"/etc/hostname "$T"/etc/resolv.conf "$T"/etc/machine-id "$T"/debootstrap
find "$T"/var/log -type f -delete
find "$T"/tmp "$T"/var/tmp "$T"/dev "$T"/proc "$T"/sys "$T"/run -mindepth 1 -maxdepth 1 -exec rm -rf {} +
mkdir -p "$T"/usr/share/doc "$T"/usr/share/man "$T"/etc/docker
rm -rf "$R"
mv "$T" "$R"
