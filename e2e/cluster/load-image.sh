#!/usr/bin/env bash
# Import image archives (OCI or docker-save tar) into the running cluster's containerd (namespace k8s.io),
# e.g. an image built after up.sh: e2e/cluster/load-image.sh $DSB_CACHE/images/operator.oci.tar
# Pods must use imagePullPolicy IfNotPresent/Never with a non-latest tag.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
(($#)) || { echo "usage: $0 ARCHIVE.tar..." >&2; exit 2; }
pid_alive containerd >/dev/null || { echo "load-image: cluster containerd not running (run up.sh)" >&2; exit 1; }
for f in "$@"; do
  ctr -a "$CTRD_SOCK" -n k8s.io images import --platform linux/amd64 "$f" >&2
done
ctr -a "$CTRD_SOCK" -n k8s.io images ls -q | grep -v '^sha256:' >&2
