#!/usr/bin/env bash
# Build every e2e image archive into $DSB_CACHE/images (default /var/cache/dockersandbox/images).
# Idempotent: each image is rebuilt only when its build script or inputs change (key stamps in
# $DSB_CACHE/images-work/*.key). Usage: build-all.sh [pause|busybox|dind|coredns|local-path-provisioner|kube-network-policies]...
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ALL=(pause busybox dind coredns local-path-provisioner kube-network-policies)
[ $# -gt 0 ] && ALL=("$@")
# One build at a time (up.sh and a developer may both call this).
mkdir -p "${DSB_CACHE:-/var/cache/dockersandbox}/images-work"
exec 9>"${DSB_CACHE:-/var/cache/dockersandbox}/images-work/.build.lock"
flock 9
t0=$(date +%s)
for img in "${ALL[@]}"; do
  [ -x "$HERE/$img/build.sh" ] || { echo "build-all: unknown image '$img'" >&2; exit 2; }
  "$HERE/$img/build.sh"
done
echo "build-all: done in $(( $(date +%s) - t0 ))s; archives in ${DSB_CACHE:-/var/cache/dockersandbox}/images"
