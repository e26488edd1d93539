#!/usr/bin/env bash
# pause image, named exactly as containerd 2.1's default sandbox image so CRI never pulls it.
source "$(dirname "$0")/../lib.sh"
HERE=$IMAGES_DIR/pause
NAME=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}
TAG=${NAME##*:}
ARCHIVE=$OUT/pause.oci.tar
need_pkgs gcc libc6-dev
KEY=$(cache_key "$0" "$HERE/pause.c" "$NAME" "$(gcc -dumpfullversion)" "$(dpkg-query -W -f='${Version}' libc6-dev)")
if fresh pause "$KEY" "$ARCHIVE"; then cached pause "$ARCHIVE"; exit 0; fi
t0=$(date +%s)
R=$WORK/pause-root; rm -rf "$R"; mkdir -p "$R"
"${NICE[@]}" gcc -Os -static -DVERSION="$TAG" -o "$R/pause" "$HERE/pause.c"
strip "$R/pause"; chmod 0755 "$R/pause"
"${PACK[@]}" --layer "$R" --name "$NAME" --entrypoint '["/pause"]' --user 65535:65535 -o "$ARCHIVE"
mark_fresh pause "$KEY"
built pause "$ARCHIVE"; log "pause built in $(( $(date +%s) - t0 ))s"
