#!/usr/bin/env bash
# e2e: serial
# Each engine's NetworkPolicy: port 2376 open only to the sandbox's own namespace (and what
# allowFrom adds), egress everywhere but what the class denies (by default link-local, where cloud
# metadata answers), with an allow-list DNS only to the cluster DNS. The objects are checked on any cluster; what the traffic does is checked where
# the cluster enforces NetworkPolicy (this repository's local cluster does, with
# kube-network-policies); elsewhere that part is skipped with the reason.
# Serial: it creates cluster-scoped classes; every address it connects to is a pod it created.
source "$(dirname "$0")/../lib.sh"

suffix=$(rand_suffix)
ns="" other="" target=""
class=dsb-e2e-netpol-$suffix
ns_new ns netpol
# An outsider: not labelled as a test namespace, so the e2e default class's allowFrom does not cover it.
ns_new other netpol-other
kubectl label namespace "$other" dockersandbox.dev/e2e- >/dev/null
ns_new target netpol-target

# busybox_pod NS NAME [SCRIPT]: a busybox pod (the suite's local image) running SCRIPT (default: idle)
busybox_pod() {
  kubectl run -n "$1" "$2" --image="$E2E_BUSYBOX_IMAGE" --image-pull-policy=IfNotPresent --restart=Never \
    --command -- sh -c "${3:-trap 'exit 0' TERM; while true; do sleep 5 & wait \$!; done}" >&2
  kubectl wait -n "$1" "pod/$2" --for=condition=Ready --timeout=120s >&2 || fail "pod $1/$2 not Ready"
}

# A class of its own: no extra peers; egress denies link-local and, later, the test's own listener.
class_apply() {  # class_apply DENY_JSON_LIST [ALLOW_JSON_LIST]
  kubectl apply -f - >&2 <<YAML
apiVersion: dockersandbox.dev/v1alpha1
kind: DockerSandboxClass
metadata: {name: $class}
spec:
  isolation: [sysbox, privileged]
  image: {allowed: ["*"]}
  network:
    egress:
      deny: $1
${2:+      allow: $2}
YAML
}
on_exit kubectl delete "$DSB_CLASS" "$class" --ignore-not-found
class_apply '["169.254.0.0/16"]'
sandbox_apply "$ns" web "$(printf '  className: %s\n  storage: {type: Ephemeral, size: 1Gi}' "$class")"
wait_ready "$ns" web

# --- the object, on any cluster
np=$(kubectl get networkpolicy -n "$ns" web-engine -o json) || fail "no NetworkPolicy web-engine"
assert_eq "owned by the sandbox" DockerSandbox "$(jq -r '.metadata.ownerReferences[0].kind' <<<"$np")"
assert_eq "selects the engine pod" engine "$(jq -r '.spec.podSelector.matchLabels["app.kubernetes.io/component"]' <<<"$np")"
assert_eq "ingress only on 2376" 2376 "$(jq -r '[.spec.ingress[].ports[].port] | unique | join(",")' <<<"$np")"
assert_eq "egress except link-local" 169.254.0.0/16 "$(jq -r '.spec.egress[0].to[0].ipBlock.except | join(",")' <<<"$np")"
assert_match "status says who may connect" "port 2376 from pods in namespace $ns" "$(dsb_get "$ns" web '{.status.network.ingress}')"
assert_match "kubectl describe shows it" 'Egress:.*everywhere except 169\.254\.0\.0/16' "$(kubectl describe "$DSB" -n "$ns" web | tr -s ' ')"
# every engine in the cluster has the link-local deny (the chart's default class sets it)
missing=$(kubectl get networkpolicies -A -l app.kubernetes.io/managed-by=dockersandbox-operator,app.kubernetes.io/component=engine -o json |
  jq -r '.items[] | select([.spec.egress[]?.to[]?.ipBlock.except[]?] | index("169.254.0.0/16") | not) | "\(.metadata.namespace)/\(.metadata.name)"')
assert_eq "engines without the link-local deny" "" "$missing"
# edited by hand: put back
kubectl patch networkpolicy -n "$ns" web-engine --type json -p '[{"op":"replace","path":"/spec/ingress/0/from","value":[{"namespaceSelector":{}}]}]' >&2
restored() { kubectl get networkpolicy -n "$ns" web-engine -o json | jq -e '.spec.ingress[0].from[0] == {"podSelector": {}}' >/dev/null; }
wait_for 60 "the edited NetworkPolicy put back" restored || fail "the NetworkPolicy was not restored"

# --- what the traffic does, where the cluster enforces NetworkPolicy
netpol_enforced || skip "the cluster does not enforce NetworkPolicy ($NETPOL_WHY); the objects above are right"
ip=$(kubectl get svc -n "$ns" web -o 'jsonpath={.spec.clusterIP}')
busybox_pod "$other" probe
tcp_closed() { ! tcp_connects "$other" probe "$ip" 2376; }
still_true 10 tcp_closed || fail "a pod in another namespace could open a TCP connection to $ip:2376"
log "ok: TCP connect from namespace $other refused"
kubectl patch "$DSB" -n "$ns" web --type merge -p \
  "{\"spec\":{\"network\":{\"allowFrom\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"$other\"}}}]}}}" >&2
make_client "$other" client "$ns" web
out=$(retry 20 cdocker "$other" client version --format '{{.Server.Version}}') || fail "docker version after allowFrom: $out"
log "ok: after allowFrom, docker version from $other: $out"

# egress: a listener the test starts (a pod it owns) on an address the class then denies
busybox_pod "$target" listener 'trap "exit 0" TERM; while true; do (echo hello | nc -l -p 8080 >/dev/null 2>&1 || sleep 1) & wait $!; done'
lip=$(kubectl get pod -n "$target" listener -o 'jsonpath={.status.podIP}')
load_nested_image "$other" client
nested_reaches() { cdocker "$other" client run --rm "$E2E_NESTED_IMAGE" nc -w 3 "$lip" 8080 </dev/null; }
wait_for 60 "a nested container reaches the listener (not denied yet)" nested_reaches ||
  fail "the nested container cannot reach $lip:8080 before any deny"
class_apply "[\"169.254.0.0/16\", \"$lip/32\"]"
denied() { ! nested_reaches; }
wait_for 90 "the class's deny of $lip/32 blocks the nested container" denied || fail "the deny did not take effect"
class_apply '["169.254.0.0/16"]'
wait_for 90 "allowed again once the class lifts the deny" nested_reaches || fail "the listener stayed unreachable"
# an allow-list's DNS exception reaches the cluster DNS only: a DNS port anywhere else stays closed
busybox_pod "$target" dns53 'trap "exit 0" TERM; while true; do (echo hello | nc -l -p 53 >/dev/null 2>&1 || sleep 1) & wait $!; done'
dip=$(kubectl get pod -n "$target" dns53 -o 'jsonpath={.status.podIP}')
nested_dns53() { cdocker "$other" client run --rm "$E2E_NESTED_IMAGE" nc -w 3 "$dip" 53 </dev/null; }
wait_for 60 "a nested container reaches $dip:53 (no allow-list yet)" nested_dns53 || fail "cannot reach $dip:53 before the allow-list"
class_apply '["169.254.0.0/16"]' '["192.0.2.0/24"]'
dns53_closed() { ! nested_dns53; }
wait_for 90 "with an allow-list, port 53 outside the cluster DNS is closed" dns53_closed ||
  fail "an allow-list's DNS exception let a nested container reach $dip:53"
nested_resolves() { cdocker "$other" client run --rm "$E2E_NESTED_IMAGE" nslookup kubernetes.default.svc.cluster.local; }
if cdocker "$other" client run --rm "$E2E_NESTED_IMAGE" sh -c 'command -v nslookup' >/dev/null 2>&1; then
  retry 10 nested_resolves >/dev/null || fail "with an allow-list, a nested container cannot ask the cluster DNS"
  log "ok: the cluster DNS still answers nested containers"
fi
class_apply '["169.254.0.0/16"]'
log "network isolation enforced: ingress from other namespaces refused, allowFrom opens it, class egress deny applies to nested containers, an allow-list's DNS goes to the cluster DNS only"

# --- the chart's NetworkPolicy for the operator itself (networkPolicy.enabled, off by default):
# metrics only from networkPolicy.metricsFrom; egress only to the API server, engines and DNS,
# which is enough for the operator to do its work.
restore_chart_policy() { helm_set --set networkPolicy.enabled=false || log "WARNING: could not turn networkPolicy.enabled off"; }
on_exit restore_chart_policy
helm_set --set networkPolicy.enabled=true \
  --set-json "networkPolicy.metricsFrom=[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"$target\"}}}]" ||
  fail "helm upgrade with networkPolicy.enabled=true failed"
kubectl get networkpolicy -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" -o name | grep -q . ||
  fail "no NetworkPolicy for the operator after networkPolicy.enabled=true"
kubectl rollout status -n "$E2E_OPERATOR_NAMESPACE" "$(operator_deployment)" --timeout=180s >&2 || fail "operator rollout did not finish"
sandbox_apply "$ns" behind "$(printf '  className: %s\n  storage: {type: Ephemeral, size: 1Gi}' "$class")"
wait_ready "$ns" behind   # the API server and the engine's TLS check are reachable from behind the policy
opip=$(kubectl get pods -n "$E2E_OPERATOR_NAMESPACE" -l "$E2E_OPERATOR_SELECTOR" --field-selector=status.phase=Running \
  -o 'jsonpath={.items[0].status.podIP}')
[[ -n "$opip" ]] || fail "no running operator pod"
wait_for 30 "metrics reachable from $target (metricsFrom)" tcp_connects "$target" listener "$opip" 8080 ||
  fail "networkPolicy.metricsFrom does not let $target reach the operator's metrics"
metrics_closed() { ! tcp_connects "$other" probe "$opip" 8080; }
still_true 10 metrics_closed || fail "a pod in $other reached the operator's metrics port"
log "ok: the operator's own NetworkPolicy: it still works, metrics only from metricsFrom"
