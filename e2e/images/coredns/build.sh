#!/usr/bin/env bash
# localhost/dockersandbox/coredns:e2e -> $OUT/coredns.oci.tar
# CoreDNS from its Go module at the release pinned in go.mod (go.sum committed, so every module is
# checksum-verified), built CGO_ENABLED=0 through the tiny wrapper main.go that links only the
# plugins our Corefile uses. To bump: edit the version in go.mod, then `go mod tidy` in this dir.
source "$(dirname "$0")/../lib.sh"
HERE=$IMAGES_DIR/coredns
NAME=${COREDNS_IMAGE:-localhost/dockersandbox/coredns:e2e}
ARCHIVE=$OUT/coredns.oci.tar
VERSION=$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3}' "$HERE/go.mod")
KEY=$(cache_key "$0" "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" "$NAME" "$(go env GOVERSION)")
if fresh coredns "$KEY" "$ARCHIVE"; then cached coredns "$ARCHIVE"; exit 0; fi
t0=$(date +%s)
R=$WORK/coredns-root; rm -rf "$R"; mkdir -p "$R/etc" "$R/tmp"; chmod 1777 "$R/tmp"
( cd "$HERE" && CGO_ENABLED=0 GOFLAGS='-mod=readonly -buildvcs=false' "${NICE[@]}" go build -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$VERSION" -o "$R/coredns" . )
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$R/etc/group"
"${PACK[@]}" --layer "$R" --name "$NAME" --entrypoint '["/coredns"]' --expose 53/tcp --expose 53/udp -o "$ARCHIVE"
mark_fresh coredns "$KEY"
built coredns "$ARCHIVE"; log "coredns $VERSION built in $(( $(date +%s) - t0 ))s"
