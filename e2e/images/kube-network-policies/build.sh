#!/usr/bin/env bash
# localhost/dockersandbox/kube-network-policies:e2e -> $OUT/kube-network-policies.oci.tar: the local
# cluster's NetworkPolicy agent, sigs.k8s.io/kube-network-policies built from its Go module at
# exactly v0.7.0 (the only version served here; the checksum database has no entry for it, hence
# GONOSUMDB scoped to that one module) with CGO_ENABLED=0.
#
# One local patch (nfqueue-compat.patch): upstream hands packets to userspace with nftables' native
# `queue` expression, which needs nft_queue; some kernels (this machine's: CONFIG_NFT_QUEUE unset)
# lack it but have nft_compat and xt_NFQUEUE, so the patched agent uses the xtables NFQUEUE target
# through nft_compat instead (same queue number, same bypass flag, `nft list ruleset` shows
# `queue num N`). Nothing else changes.
source "$(dirname "$0")/../lib.sh"
HERE=$IMAGES_DIR/kube-network-policies
MODULE=sigs.k8s.io/kube-network-policies
VERSION=${KUBE_NETWORK_POLICIES_VERSION:-v0.7.0}
NAME=${KUBE_NETWORK_POLICIES_IMAGE:-localhost/dockersandbox/kube-network-policies:e2e}
ARCHIVE=$OUT/kube-network-policies.oci.tar
KEY=$(cache_key "$0" "$HERE/nfqueue-compat.patch" "$VERSION" "$NAME" "$(go env GOVERSION)")
if fresh kube-network-policies "$KEY" "$ARCHIVE"; then cached kube-network-policies "$ARCHIVE"; exit 0; fi
need_pkgs patch
t0=$(date +%s)
export GONOSUMDB=$MODULE GOFLAGS='-mod=mod -buildvcs=false'
SRC=$( (cd / && go mod download -json "$MODULE@$VERSION") | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
W=$WORK/kube-network-policies-src; rm -rf "$W"; cp -r "$SRC" "$W"; chmod -R u+w "$W"
patch -d "$W" -p1 --forward --quiet <"$HERE/nfqueue-compat.patch"
R=$WORK/kube-network-policies-root; rm -rf "$R"; mkdir -p "$R/bin" "$R/etc" "$R/tmp"; chmod 1777 "$R/tmp"
( cd "$W" && CGO_ENABLED=0 "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$R/bin/netpol" ./cmd )
printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$R/etc/passwd"; printf 'root:x:0:\n' >"$R/etc/group"
"${PACK[@]}" --layer "$R" --name "$NAME" --entrypoint '["/bin/netpol"]' -o "$ARCHIVE"
rm -rf "$W"
mark_fresh kube-network-policies "$KEY"
built kube-network-policies "$ARCHIVE"; log "kube-network-policies $VERSION (patched: nfqueue-compat) built in $(( $(date +%s) - t0 ))s"
