#!/usr/bin/env bash
# Run the dockersandbox-operator end-to-end tests against the cluster in $KUBECONFIG.
#
#   e2e/run-tests.sh                 # install the operator with Helm, run every test
#   e2e/run-tests.sh 01 mtls 07-validation   # run some tests (number, name or file name)
#   E2E_SKIP_INSTALL=1 e2e/run-tests.sh       # use the operator already installed
#
# Prints one line per test and ends with "N passed, N failed" (", N skipped" when some were).
# Exit status is non-zero when a test failed. Logs and diagnostics: ${E2E_ARTIFACTS:-/tmp/dsb-e2e-artifacts}.
set -o errexit -o nounset -o pipefail
E2E_LIB_NO_TRAP=1
E2E_TEST_NAME=run-tests
source "$(dirname "$0")/lib.sh"

E2E_SKIP_INSTALL=${E2E_SKIP_INSTALL:-0}
E2E_TEST_TIMEOUT=${E2E_TEST_TIMEOUT:-900}
E2E_VERBOSE=${E2E_VERBOSE:-0}
mkdir -p "$E2E_ARTIFACTS"

# --- which tests
all_tests=()
for f in "$E2E_DIR"/tests/[0-9][0-9]-*.sh; do all_tests+=("$(basename "${f%.sh}")"); done
selected=()
if (($#)); then
  for want in "$@"; do
    want=$(basename "${want%.sh}")
    found=0
    for t in "${all_tests[@]}"; do
      if [[ "$t" == "$want" || "${t%%-*}" == "$want" || "${t#*-}" == "$want" || "$t" == "$want"-* || "$t" == *-"$want" ]]; then
        selected+=("$t"); found=1
      fi
    done
    ((found)) || { echo "unknown test: $want (known: ${all_tests[*]})" >&2; exit 2; }
  done
else
  selected=("${all_tests[@]}")
fi

# --- preflight
log "cluster: ${KUBECONFIG:-<kubectl default>}"
kubectl version >"$E2E_ARTIFACTS/versions.txt" 2>&1 || { cat "$E2E_ARTIFACTS/versions.txt" >&2; echo "cluster not reachable" >&2; exit 2; }
kubectl get nodes -o wide >&2 || true

# --- operator install
if [[ "$E2E_SKIP_INSTALL" != 1 ]]; then
  log "installing the operator: helm upgrade --install $E2E_RELEASE $E2E_CHART (image $E2E_OPERATOR_IMAGE)"
  if ! helm_operator >"$E2E_ARTIFACTS/helm-install.log" 2>&1; then
    cat "$E2E_ARTIFACTS/helm-install.log" >&2
    kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -o wide >&2 || true
    kubectl describe pods -n "$E2E_OPERATOR_NAMESPACE" >"$E2E_ARTIFACTS/operator-install-describe.txt" 2>&1 || true
    operator_logs >"$E2E_ARTIFACTS/operator-install.log" 2>&1 || true
    echo "operator install failed" >&2
    echo "0 passed, ${#selected[@]} failed"
    exit 1
  fi
fi
if ! kubectl wait "crd/$DSB" "crd/$DSB_CLASS" --for=condition=Established --timeout=60s >/dev/null 2>&1; then
  echo "CRD $DSB or $DSB_CLASS is not installed" >&2
  echo "0 passed, ${#selected[@]} failed"
  exit 1
fi

# --- run
# Tests run E2E_JOBS at a time (default 4; they mostly wait on the cluster), except those marked
# `# e2e: serial` (they reconfigure the operator or add cluster-wide objects such as the sysbox
# RuntimeClass that other tests' sandboxes would see): those run afterwards, one at a time.
E2E_JOBS=${E2E_JOBS:-4}
# A test deletes its namespaces and ends; they are waited for once, after the last test.
export E2E_NS_WAIT=0
[[ "$E2E_VERBOSE" == 1 ]] && E2E_JOBS=1
passed=0 failed=0 skipped=0
failed_names=()

# run_one TEST: runs it; leaves "RC SECONDS" in $E2E_ARTIFACTS/TEST.result
run_one() {
  local t=$1 start rc
  rm -rf "${E2E_ARTIFACTS:?}/$t" "$E2E_ARTIFACTS/$t.log" "$E2E_ARTIFACTS/$t.result"
  start=$(date +%s)
  set +o errexit
  if [[ "$E2E_VERBOSE" == 1 ]]; then
    E2E_TEST_NAME=$t timeout -k 60 "$E2E_TEST_TIMEOUT" bash "$E2E_DIR/tests/$t.sh" 2>&1 | tee "$E2E_ARTIFACTS/$t.log" >&2
    rc=${PIPESTATUS[0]}
  else
    E2E_TEST_NAME=$t timeout -k 60 "$E2E_TEST_TIMEOUT" bash "$E2E_DIR/tests/$t.sh" >"$E2E_ARTIFACTS/$t.log" 2>&1
    rc=$?
  fi
  set -o errexit
  echo "$rc $(($(date +%s) - start))" >"$E2E_ARTIFACTS/$t.result"
}

# report TEST: one line for it, and the tally
report() {
  local t=$1 rc secs reason
  read -r rc secs <"$E2E_ARTIFACTS/$t.result"
  case $rc in
    0) passed=$((passed + 1)); printf 'PASS  %-28s %4ds\n' "$t" "$secs" ;;
    "$E2E_SKIP_CODE")
      skipped=$((skipped + 1))
      printf 'SKIP  %-28s %4ds  %s\n' "$t" "$secs" "$(grep -m1 -o 'SKIP: .*' "$E2E_ARTIFACTS/$t.log" | cut -c7-)" ;;
    *)
      failed=$((failed + 1)); failed_names+=("$t")
      reason=$(grep -m1 -o 'FAIL: .*' "$E2E_ARTIFACTS/$t.log" | cut -c7- || true)
      ((rc == 124 || rc == 137)) && reason="timed out after ${E2E_TEST_TIMEOUT}s ${reason}"
      printf 'FAIL  %-28s %4ds  %s\n' "$t" "$secs" "${reason:-exit $rc}"
      if [[ "$E2E_VERBOSE" != 1 ]]; then
        echo "----- last 40 lines of $E2E_ARTIFACTS/$t.log" >&2
        tail -n 40 "$E2E_ARTIFACTS/$t.log" | sed 's/^/    /' >&2
      fi
      ;;
  esac
}

parallel=() serial=()
for t in "${selected[@]}"; do
  if grep -q '^# e2e: serial' "$E2E_DIR/tests/$t.sh"; then serial+=("$t"); else parallel+=("$t"); fi
done
# The longest first (a test's `# e2e: about Ns` line, 30 s when it has none), so that E2E_JOBS
# lanes end together instead of one long test starting last and running alone.
about() { local s; s=$(sed -n 's/^# e2e: about \([0-9]*\)s$/\1/p' "$E2E_DIR/tests/$1.sh" | head -n 1); echo "${s:-30}"; }
if ((${#parallel[@]})); then
  mapfile -t parallel < <(for t in "${parallel[@]}"; do echo "$(about "$t") $t"; done | sort -k1,1nr -k2,2 | cut -d' ' -f2)
fi

launched=() reported=()
report_finished() {
  local t
  for t in "${launched[@]}"; do
    [[ " ${reported[*]} " == *" $t "* || ! -f "$E2E_ARTIFACTS/$t.result" ]] && continue
    report "$t"
    reported+=("$t")
  done
}
for t in "${parallel[@]}"; do
  while (($(jobs -rp | wc -l) >= E2E_JOBS)); do
    wait -n || true
    report_finished
  done
  run_one "$t" &
  launched+=("$t")
done
wait || true
report_finished
for t in "${serial[@]}"; do
  run_one "$t"
  report "$t"
done

# --- artifacts common to the run
operator_logs >"$E2E_ARTIFACTS/operator.log" 2>&1 || true
kubectl get "$DSB" -A -o wide >"$E2E_ARTIFACTS/sandboxes.txt" 2>&1 || true
kubectl get events -n "$E2E_OPERATOR_NAMESPACE" --sort-by=.lastTimestamp >"$E2E_ARTIFACTS/operator-events.txt" 2>&1 || true
# The tests' namespaces, deleted as each test ended, are waited for once; what is left is named
# (still terminating, or kept with E2E_KEEP_NAMESPACES, or never deleted).
ns_wait_all 180 || true
leftover=$(kubectl get ns -l dockersandbox.dev/e2e=true -o name 2>/dev/null || true)
[[ -z "$leftover" ]] || log "namespaces left behind: $(tr '\n' ' ' <<<"$leftover")"
log "artifacts in $E2E_ARTIFACTS"
((failed == 0)) || log "failed: ${failed_names[*]}"

summary="$passed passed, $failed failed"
((skipped == 0)) || summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
