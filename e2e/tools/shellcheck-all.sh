#!/usr/bin/env bash
# Runs shellcheck on every shell script of the repository: every *.sh, plus every file without an extension
# whose first line is a sh/bash shebang (e.g. e2e/images/dind/dind, .ci/run). Settings shared by all
# scripts are in .shellcheckrc at the repository root. shellcheck comes from Debian's package
# (installed by e2e/tools/apt-install.sh when missing).
#   e2e/tools/shellcheck-all.sh          check everything
#   e2e/tools/shellcheck-all.sh --list   print the files that would be checked
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

# Tracked and untracked-but-not-ignored files when this is a git checkout, else a plain walk.
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard
  else
    find . \( -name .git -o -name target \) -prune -o -type f -printf '%P\0'
  fi
}

scripts=()
while IFS= read -r -d '' f; do
  [[ -f $f ]] || continue # deleted but still in the index
  base=${f##*/}
  case $base in
    *.sh) scripts+=("$f") ;;
    *.*) ;;
    *) head -n1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba|da|k)?sh([[:space:]]|$)' && scripts+=("$f") ;;
  esac
done < <(list_files)

if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${scripts[@]}"
  exit 0
fi

command -v shellcheck >/dev/null 2>&1 || bash "$ROOT/e2e/tools/apt-install.sh" shellcheck
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean ($(shellcheck --version | awk '/^version:/ {print $2}'))"
