#!/usr/bin/env bash
# Print the URI of the Debian package archive this machine installs from, for scripts that need
# Debian packages from outside the machine's own suite (debootstrap of the dind image, the pinned
# trixie/sid .debs of the local cluster). Taking it from the machine's apt configuration means a
# company mirror or proxy configured for apt is used as well; no archive host is written anywhere.
#
#   DSB_DEBIAN_MIRROR   use this URI instead (e.g. http://mirror.example.internal/debian)
#   DSB_APT_ETC         apt configuration directory to read (default /etc/apt; for tests)
#
# Looks, in this order, at /etc/apt/sources.list.d/*.sources (deb822: Types/URIs/Suites), then
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.list (one-line "deb [options] URI suite ...").
# The first enabled "deb" entry that is a Debian archive wins: its suite is a Debian codename or
# alias (or the machine's own codename), or it is signed by debian-archive-keyring. Security
# archives (*-security) and other vendors' repositories (e.g. nodistro suites) are skipped.
# Prints the URI without a trailing slash; exits 1 with an explanation when there is none.
set -euo pipefail

if [[ -n ${DSB_DEBIAN_MIRROR:-} ]]; then
  printf '%s\n' "${DSB_DEBIAN_MIRROR%/}"
  exit 0
fi

etc=${DSB_APT_ETC:-/etc/apt}
own_codename=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}") || true

files=()
shopt -s nullglob
for f in "$etc"/sources.list.d/*.sources; do files+=("deb822:$f"); done
[[ -f $etc/sources.list ]] && files+=("line:$etc/sources.list")
for f in "$etc"/sources.list.d/*.list; do files+=("line:$f"); done
shopt -u nullglob

# Reads "TYPE:FILE" arguments; prints the first matching URI. Everything is decided in one awk.
uri=$(awk -v own="$own_codename" '
  BEGIN {
    split("buster bullseye bookworm trixie forky duke sid stable testing unstable oldstable oldoldstable", k, " ")
    for (i in k) known[k[i]] = 1
    if (own != "") known[own] = 1
    for (i = 1; i < ARGC; i++) {
      spec = ARGV[i]; type = substr(spec, 1, index(spec, ":") - 1); file = substr(spec, index(spec, ":") + 1)
      if (type == "deb822") deb822(file); else oneline(file)
      if (found != "") { print found; exit 0 }
    }
    exit 0
  }
  function usable_uri(u) { return u ~ /^(https?|ftp):\/\// || u ~ /^file:\// }
  function is_debian(uri, suites, signed,    n, s, i, base) {
    if (uri ~ /-security\/?$/) return 0
    n = split(suites, s, /[ \t]+/)
    for (i = 1; i <= n; i++) {
      if (s[i] == "") continue
      if (s[i] ~ /-security$/) return 0
      base = s[i]; sub(/-(updates|backports|proposed-updates)$/, "", base)
      if (base in known) return 1
    }
    return signed ~ /debian-archive-keyring/
  }
  # deb822 stanzas: fields, continuation lines (leading blank), comments, blank line between stanzas
  function deb822(file,    line, key, val, f, n, u, i) {
    delete f
    while ((getline line < file) > 0) {
      if (line ~ /^#/) continue
      if (line ~ /^[ \t]*$/) { stanza(f); delete f; key = ""; continue }
      if (line ~ /^[ \t]/) { if (key != "") f[key] = f[key] " " line; continue }
      key = tolower(substr(line, 1, index(line, ":") - 1))
      val = substr(line, index(line, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", val)
      f[key] = val
    }
    stanza(f); close(file)
  }
  function stanza(f,    n, u, i, types) {
    if (found != "" || !("uris" in f)) return
    if (tolower(f["enabled"]) == "no") return
    types = " " f["types"] " "
    if (types !~ /[ \t]deb[ \t]/) return
    n = split(f["uris"], u, /[ \t]+/)
    for (i = 1; i <= n; i++)
      if (usable_uri(u[i]) && is_debian(u[i], f["suites"], f["signed-by"])) { found = u[i]; return }
  }
  function oneline(file,    line, w, n, i, uri, signed) {
    while ((getline line < file) > 0) {
      sub(/#.*/, "", line)
      n = split(line, w, /[ \t]+/); i = 1
      if (w[1] == "") i = 2
      if (w[i] != "deb") continue
      i++; signed = ""
      if (w[i] ~ /^\[/) { # [ option=value ... ]
        while (i <= n) { signed = signed " " w[i]; if (w[i] ~ /\]$/) break; i++ }
        i++
      }
      uri = w[i]
      if (usable_uri(uri) && is_debian(uri, w[i + 1], signed)) { found = uri; close(file); return }
    }
    close(file)
  }
' "${files[@]}")

if [[ -z $uri ]]; then
  {
    echo "debian-mirror: no Debian archive found in $etc/sources.list.d/*.sources, $etc/sources.list or $etc/sources.list.d/*.list"
    echo "debian-mirror: (looked for an enabled 'deb' entry with a Debian suite, not *-security, with an http(s), ftp or file URI)"
    echo "debian-mirror: set DSB_DEBIAN_MIRROR to the URI of a Debian archive mirror, e.g. DSB_DEBIAN_MIRROR=http://<your-mirror>/debian"
  } >&2
  exit 1
fi
printf '%s\n' "${uri%/}"
