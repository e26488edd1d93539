#!/usr/bin/env bash
# package.sh [URI_BASE]: the krew archive of kubectl-dsb (linux/amd64, the platform this repository
# builds on) and its manifest: dist/kubectl-dsb_linux_amd64.tar.gz and dist/dsb.yaml, rendered from
# plugins/krew/dsb.yaml with the crate's version, URI_BASE (where the archive will be published;
# default: the dist directory, as a file URI) and the archive's sha256.
# Uses the release binary ($CARGO_TARGET_DIR/release/kubectl-dsb; built when missing).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIST=${DIST:-$ROOT/dist}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release/kubectl-dsb
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --locked --release --bin kubectl-dsb)
VERSION=v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
URI_BASE=${1:-file://$DIST}

mkdir -p "$DIST"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$BIN" "$stage/kubectl-dsb"
archive=$DIST/kubectl-dsb_linux_amd64.tar.gz
tar -C "$stage" --owner=0 --group=0 --mtime=@0 -czf "$archive" kubectl-dsb
SHA256=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s|\${VERSION}|$VERSION|" -e "s|\${URI_BASE}|$URI_BASE|" -e "s|\${SHA256}|$SHA256|" \
  "$HERE/dsb.yaml" >"$DIST/dsb.yaml"
echo "$archive ($SHA256)"
echo "$DIST/dsb.yaml"
