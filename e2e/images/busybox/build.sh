#!/usr/bin/env bash
# busybox images from Debian's busybox-static:
#   localhost/dockersandbox/busybox:e2e -> $OUT/busybox.oci.tar         (imported into containerd; local-path helper image)
#   dsb-e2e/busybox:nested              -> $OUT/nested-busybox.docker.tar (for `docker load` inside a sandbox; NOT *.oci.tar)
source "$(dirname "$0")/../lib.sh"
NAME=${BUSYBOX_IMAGE:-localhost/dockersandbox/busybox:e2e}
NESTED=${NESTED_BUSYBOX_IMAGE:-dsb-e2e/busybox:nested}
A1=$OUT/busybox.oci.tar
A2=$OUT/nested-busybox.docker.tar
need_pkgs busybox-static
BB=/bin/busybox
KEY=$(cache_key "$0" "$NAME" "$NESTED" "$(dpkg-query -W -f='${Version}' busybox-static)")
if fresh busybox "$KEY" "$A1" "$A2"; then cached busybox "$A1"; cached nested-busybox "$A2"; exit 0; fi
t0=$(date +%s)
R=$WORK/busybox-root; rm -rf "$R"
mkdir -p "$R"/{bin,etc,root,tmp,var/tmp,home,dev,proc,sys,usr/bin,usr/sbin,sbin}
install -m 0755 "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do
  [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
chmod 1777 "$R/tmp" "$R/var/tmp"; chmod 0700 "$R/root"
cat >"$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat >"$R/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
ENVP='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
"${PACK[@]}" --layer "$R" --name "$NAME" --env "$ENVP" --cmd '["sh"]' -o "$A1"
"${PACK[@]}" --layer "$R" --name "$NESTED" --env "$ENVP" --cmd '["sh"]' --format docker -o "$A2"
mark_fresh busybox "$KEY"
built busybox "$A1"; built nested-busybox "$A2"; log "busybox built in $(( $(date +%s) - t0 ))s"
