#!/usr/bin/env bash
# install-docker-cli.sh: print the path of a docker CLI for the e2e tests and the demo, installing it
# into $DSB_CACHE/bin once (idempotent: nothing to do when it is there).
# It is the `docker` binary of Debian's docker-cli package of the suite the dind engine image is
# built from (e2e/images/dind, DIND_SUITE, default trixie), so the client matches the engine:
#   1. the .deb debootstrap left in its cache when it built the dind image, else one in $DSB_CACHE/debs;
#   2. else `apt-get download` from the machine's own Debian archive (tools/debian-mirror.sh) through a
#      private apt config, as cluster/install-deps.sh fetches its pinned packages (the system's apt
#      sources are never touched).
# It links only against glibc >= 2.34, so it runs on bookworm.
set -euo pipefail
DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
TOOLS=$(cd "$(dirname "$0")" && pwd)
SUITE=${DIND_SUITE:-trixie}
BIN=$DSB_CACHE/bin/docker
log() { echo "install-docker-cli: $*" >&2; }

if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
mkdir -p "$DSB_CACHE/bin" "$DSB_CACHE/debs"

newest_deb() {
  local f
  for f in "$DSB_CACHE/images-work/debootstrap-debs/$SUITE"/docker-cli_*.deb "$DSB_CACHE"/debs/docker-cli_*.deb; do
    if [[ -f $f ]]; then printf "%s\n" "$f"; fi
  done | sort -V | tail -n 1
}

deb=$(newest_deb)
if [[ -z $deb ]]; then
  bash "$TOOLS/apt-install.sh" debian-archive-keyring
  APTX=$DSB_CACHE/apt-docker-cli
  mkdir -p "$APTX/lists/partial" "$APTX/cache/archives/partial"
  mirror=$(bash "$TOOLS/debian-mirror.sh")
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" >"$APTX/sources.list"
  APTO=(-o Dir::Etc::SourceList="$APTX/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o Dir::State::Lists="$APTX/lists" -o Dir::Cache="$APTX/cache" -o Acquire::Languages=none)
  log "apt-get download docker-cli ($SUITE, $mirror; private apt config)"
  apt-get "${APTO[@]}" update -qq
  (cd "$DSB_CACHE/debs" && apt-get "${APTO[@]}" download -qq docker-cli)
  deb=$(newest_deb)
  [[ -n $deb ]] || { log "ERROR: apt-get download docker-cli left no .deb in $DSB_CACHE/debs"; exit 1; }
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
install -m 0755 "$tmp/usr/bin/docker" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
log "installed $("$BIN" --version) from ${deb##*/} into $BIN"
echo "$BIN"
