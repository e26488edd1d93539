#!/usr/bin/env bash
# apt-install.sh PKG...: install the Debian packages among PKG that are not installed yet, from the
# machine's own apt sources. Idempotent: when everything is there it runs no apt command at all;
# otherwise `apt-get update` once, then `apt-get install`. Needs root only when something is missing.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) != 0 ]]; then
  echo "apt-install: missing Debian packages ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "apt-install: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
