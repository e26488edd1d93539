#!/usr/bin/env bash
# localhost/dockersandbox/local-path-provisioner:e2e -> $OUT/local-path-provisioner.oci.tar, built from
# the github.com/rancher/local-path-provisioner Go module (no replace directives) with CGO_ENABLED=0.
# Pinned to v0.0.30: on this machine's Go module proxy it is the newest release whose zip is served AND
# whose checksum is in the Go checksum database (v0.0.33/v0.0.37 zips lack entries there, v0.0.35's zip
# is refused).
source "$(dirname "$0")/../lib.sh"
VERSION=${LOCAL_PATH_PROVISIONER_VERSION:-v0.0.30}
NAME=${LOCAL_PATH_PROVISIONER_IMAGE:-localhost/dockersandbox/local-path-provisioner:e2e}
ARCHIVE=$OUT/local-path-provisioner.oci.tar
KEY=$(cache_key "$0" "$VERSION" "$NAME" "$(go env GOVERSION)")
if fresh local-path-provisioner "$KEY" "$ARCHIVE"; then cached local-path-provisioner "$ARCHIVE"; exit 0; fi
t0=$(date +%s)
BIN=$WORK/gobin/local-path-provisioner-$VERSION
mkdir -p "$BIN"
( cd / && CGO_ENABLED=0 GOBIN=$BIN GOFLAGS='' "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X main.VERSION=$VERSION" "github.com/rancher/local-path-provisioner@$VERSION" )
R=$WORK/local-path-provisioner-root; rm -rf "$R"; mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp"; chmod 1777 "$R/tmp"
install -m 0755 "$BIN/local-path-provisioner" "$R/usr/bin/local-path-provisioner"
printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$R/etc/passwd"; printf 'root:x:0:\n' >"$R/etc/group"
"${PACK[@]}" --layer "$R" --name "$NAME" --env 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --entrypoint '["local-path-provisioner"]' -o "$ARCHIVE"
mark_fresh local-path-provisioner "$KEY"
built local-path-provisioner "$ARCHIVE"; log "local-path-provisioner $VERSION built in $(( $(date +%s) - t0 ))s"
