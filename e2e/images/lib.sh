# shellcheck shell=bash disable=SC2034  # PACK, NICE, OUT, ... are used by the scripts sourcing this file
# Shared helpers for e2e/images/*/build.sh. Source it; do not run it.
set -euo pipefail

IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
OUT=$DSB_CACHE/images            # final archives (*.oci.tar are imported into containerd by the cluster)
WORK=$DSB_CACHE/images-work      # scratch: rootfs trees, stamps, private apt state
mkdir -p "$OUT" "$WORK"
# Go builds (coredns, local-path-provisioner) use the toolchain on PATH, else the usual /usr/local/go.
command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
PACK=(python3 "$IMAGES_DIR/oci-pack.py")
NICE=(nice -n 10)
export DEBIAN_FRONTEND=noninteractive

log() { printf '[images] %s\n' "$*" >&2; }

# need_pkgs PKG...: apt-get install the missing ones (apt-get update first, once).
need_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# cache_key FILE_OR_STRING...: sha256 over lib.sh, oci-pack.py and the given files (or literal strings).
cache_key() {
  {
    sha256sum "$IMAGES_DIR/lib.sh" "$IMAGES_DIR/oci-pack.py" | cut -d' ' -f1
    local x
    for x in "$@"; do
      if [ -f "$x" ]; then sha256sum "$x" | cut -d' ' -f1; else printf '%s\n' "$x"; fi
    done
  } | sha256sum | cut -d' ' -f1
}

# fresh NAME KEY ARCHIVE...: true when every archive exists and was built with KEY.
fresh() {
  local name=$1 key=$2; shift 2
  [ "$(cat "$WORK/$name.key" 2>/dev/null)" = "$key" ] || return 1
  local f; for f in "$@"; do [ -s "$f" ] || return 1; done
}
mark_fresh() { printf '%s\n' "$2" >"$WORK/$1.key"; }

# Report line used by build-all.sh.
built()  { printf 'BUILT  %-22s %s (%s)\n' "$1" "$2" "$(du -h "$2" | cut -f1)"; }
cached() { printf 'CACHED %-22s %s (%s)\n' "$1" "$2" "$(du -h "$2" | cut -f1)"; }
