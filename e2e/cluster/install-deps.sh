#!/usr/bin/env bash
# Install the node runtime for the local e2e cluster. Idempotent; skips everything that is
# already installed at the pinned version.
#  - bookworm (the machine's own suite): iptables, conntrack, socat, ethtool, ipset, runc, ...
#  - pinned .debs from trixie/sid, fetched through a PRIVATE apt config (the system's
#    sources.list is never touched, so nothing from sid can leak into `apt-get upgrade`),
#    cached in $DSB_CACHE/debs and installed with dpkg -i (they depend only on libc6 >= 2.34).
#    They come from the same Debian archive (or mirror) as the machine's own packages:
#    e2e/tools/debian-mirror.sh reads it from the apt sources; DSB_DEBIAN_MIRROR overrides it.
set -euo pipefail
DSB_CACHE=${DSB_CACHE:-/var/cache/dockersandbox}
TOOLS=$(cd "$(dirname "$0")/../tools" && pwd)
export DEBIAN_FRONTEND=noninteractive
log() { echo "install-deps: $*" >&2; }
[[ $(id -u) == 0 ]] || { log "must run as root"; exit 1; }

# pkg  pinned-version  suite  fallback-version-prefix (used only if the pin vanished from the archive)
PINNED=(
  "containerd                  2.1.9+ds1-5   sid    2.1."
  "containernetworking-plugins 1.9.1+ds1-1   sid    1."
  "etcd-server                 3.5.16-4      trixie 3.5."
)
BOOKWORM_PKGS=(iptables conntrack socat ethtool ipset runc openssl curl iproute2 util-linux ca-certificates python3 procps jq)

installed_version() { dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1=="ii"{print $2}'; }

# 1. bookworm packages
missing=()
for p in "${BOOKWORM_PKGS[@]}"; do [[ -n $(installed_version "$p") ]] || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. pinned debs from newer suites
APTX=$DSB_CACHE/apt-extra DEBS=$DSB_CACHE/debs
mkdir -p "$DEBS" "$APTX/lists/partial" "$APTX/cache/archives/partial"
APTO=(-o Dir::Etc::SourceList="$APTX/sources.list" -o Dir::Etc::SourceParts=/nonexistent
      -o Dir::State::Lists="$APTX/lists" -o Dir::Cache="$APTX/cache" -o Acquire::Languages=none
      -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
      -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
      -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
      -o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false)
lists_fresh=0
# Only when a .deb must be downloaded: the archive is looked up then (a cache hit needs no network).
refresh_lists() {
  ((lists_fresh)) && return 0
  local mirror
  mirror=$(bash "$TOOLS/debian-mirror.sh")
  cat >"$APTX/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main
SRC
  log "refreshing trixie/sid package lists from $mirror (private apt config)"
  apt-get "${APTO[@]}" update -qq
  lists_fresh=1
}

# cached_deb PKG VERSION: path of the .deb of PKG=VERSION in $DEBS (nothing when not downloaded yet)
cached_deb() {
  local f
  for f in "$DEBS/${1}_${2//:/%3a}_"*.deb; do
    if [[ -f $f ]]; then echo "$f"; return 0; fi
  done
}

todo=()
for line in "${PINNED[@]}"; do
  read -r pkg ver suite prefix <<<"$line"
  [[ $(installed_version "$pkg") == "$ver" ]] && continue
  deb=$(cached_deb "$pkg" "$ver")
  if [[ -z $deb ]]; then
    refresh_lists
    if ! (cd "$DEBS" && apt-get "${APTO[@]}" download -qq "$pkg=$ver" 2>/dev/null); then
      alt=$(apt-cache "${APTO[@]}" madison "$pkg" | awk -F'|' -v p="$prefix" '{gsub(/ /,"",$2)} index($2,p)==1{print $2; exit}')
      [[ -n $alt ]] || { log "ERROR: $pkg=$ver is gone from $suite and no $prefix* fallback exists"; exit 1; }
      log "WARNING: $pkg=$ver no longer in the archive; using $alt (update the pin in $0)"
      ver=$alt; (cd "$DEBS" && apt-get "${APTO[@]}" download -qq "$pkg=$ver")
    fi
    deb=$(cached_deb "$pkg" "$ver")
    [[ -n $deb ]] || { log "ERROR: apt-get download $pkg=$ver left no .deb in $DEBS"; exit 1; }
  fi
  [[ $(installed_version "$pkg") == "$ver" ]] || todo+=("$deb")
done
if ((${#todo[@]})); then
  # No daemon may be started by maintainer scripts (there is no init system anyway).
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi
  log "dpkg -i ${todo[*]##*/}"
  dpkg -i --force-confold "${todo[@]}" >/dev/null || { ((made_policy)) && rm -f /usr/sbin/policy-rc.d; log "dpkg -i failed"; exit 1; }
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi
# Package postinsts may start nothing, but make sure no stray daemon from them runs.
log "ok: containerd $(installed_version containerd), cni $(installed_version containernetworking-plugins), etcd $(installed_version etcd-server), runc $(installed_version runc)"
