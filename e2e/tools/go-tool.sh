#!/usr/bin/env bash
# Sourced by the install-*.sh scripts: build a pinned Go tool from its module with `go install`
# (only the Go module proxy must be reachable) into $DSB_CACHE/bin, idempotently.
#
#   go_tool NAME PACKAGE VERSION LDFLAGS VERSION_CMD...
#
# Does nothing when `VERSION_CMD` (run on the installed binary, e.g. `-v`) prints VERSION (alone, or
# as a word of its first line: `kwok version v0.8.0 go1.26 ...`); otherwise
# builds PACKAGE@VERSION into a temp dir and renames it into place (a failed build never leaves a
# broken binary behind), then checks the version again. Prints the binary's path.
version_matches() {  # version_matches OUTPUT VERSION
    [ "$1" = "$2" ] || printf '%s\n' "$1" | head -n 1 | tr ' ' '\n' | grep -qxF -- "$2"
}

go_tool() {
    local name=$1 package=$2 version=$3 ldflags=$4; shift 4
    local bin_dir="${DSB_CACHE:-/var/cache/dockersandbox}/bin" tmp got
    local bin="$bin_dir/$name"
    got=""
    if [ -x "$bin" ]; then got=$("$bin" "$@" 2>/dev/null || true); fi
    if version_matches "$got" "$version"; then
        echo "$bin"
        return 0
    fi
    command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null || { echo "install-$name: 'go' not found on PATH" >&2; return 1; }
    mkdir -p "$bin_dir"
    echo "install-$name: building ${package}@${version} (a few minutes the first time)" >&2
    tmp="$(mktemp -d)"
    CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
        nice -n 10 go install -trimpath -ldflags "$ldflags" "${package}@${version}" >&2 || { rm -rf "$tmp"; return 1; }
    mv -f "$tmp/$(basename "$package")" "$bin"
    rm -rf "$tmp"
    got=$("$bin" "$@" 2>/dev/null || true)
    if ! version_matches "$got" "$version"; then
        echo "install-$name: built $name reports '${got}', expected '${version}'" >&2
        return 1
    fi
    echo "$bin"
}
