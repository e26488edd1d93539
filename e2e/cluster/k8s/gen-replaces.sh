#!/usr/bin/env bash
# Regenerate the k8s.io/* `replace` directives of this wrapper module from the
# pinned k8s.io/kubernetes release's own go.mod.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...)
# at v0.0.0 and replaces them with ./staging/src/k8s.io/<name>; those local paths
# do not exist in the module zip, so every consumer must redirect each one to the
# published tag v0.<minor>.<patch>. This script does that mechanically and fails
# loudly if upstream ever adds a replace that does not point into ./staging/.
#
# Usage: gen-replaces.sh [v1.36.N]   (default: the version already required in go.mod)
#        then: go mod tidy
set -euo pipefail
cd "$(dirname "$0")"

ver=${1:-$(go mod edit -json | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Require") or []:
    if r["Path"]=="k8s.io/kubernetes": print(r["Version"])')}
[[ $ver =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "gen-replaces: bad or missing k8s.io/kubernetes version '$ver'" >&2; exit 1; }
staging="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

# UPSTREAM_GOMOD=<file> overrides the downloaded go.mod (for testing the guard below).
modfile=${UPSTREAM_GOMOD:-}
[[ -n $modfile ]] || modfile=$(go mod download -json "k8s.io/kubernetes@$ver" | python3 -c 'import json,sys
d=json.load(sys.stdin)
if d.get("Error"): sys.exit("gen-replaces: "+d["Error"])
print(d["GoMod"])')

# Parse upstream's replace directives with the go tool itself (robust to formatting).
pairs=$(go mod edit -json "$modfile" | python3 -c '
import json, sys
d = json.load(sys.stdin)
bad = []
for r in d.get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]["Path"]
    if r["Old"].get("Version") or r["New"].get("Version") or new != "./staging/src/" + old:
        bad.append("%s => %s %s" % (old, new, r["New"].get("Version", "")))
    else:
        print(old)
if bad:
    sys.stderr.write("gen-replaces: upstream go.mod has non-staging replace directive(s); copy/handle them by hand:\n  " + "\n  ".join(bad) + "\n")
    sys.exit(1)
')
[[ -n $pairs ]] || { echo "gen-replaces: no staging replaces found in $modfile" >&2; exit 1; }

# Mirror upstream's go and godebug lines, pin the require, rewrite all replaces.
gov=$(go mod edit -json "$modfile" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')
args=(-go="$gov" -require="k8s.io/kubernetes@$ver")
for old in $(go mod edit -json | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []: print(r["Old"]["Path"])'); do
  args+=(-dropreplace="$old")
done
for old in $pairs; do args+=(-replace="$old=$old@$staging"); done
while read -r gd; do [[ -n $gd ]] && args+=(-godebug="$gd"); done < <(go mod edit -json "$modfile" | python3 -c '
import json,sys
for g in json.load(sys.stdin).get("GoDebug") or []: print("%s=%s" % (g["Key"], g["Value"]))')
go mod edit "${args[@]}"
echo "gen-replaces: k8s.io/kubernetes $ver -> $(wc -w <<<"$pairs") staging replaces at $staging; now run: go mod tidy" >&2
