#!/usr/bin/env bash
# e2e: about 27s
# A docker client in another namespace, with the client certificate copied from the sandbox's
# Secret and DOCKER_HOST set to status.endpoint verbatim, talks to the engine over mutual TLS:
# version, load an image, run a nested container.
source "$(dirname "$0")/../lib.sh"

ready_sandbox_with_client mtls

out=$(retry 10 cdocker "$cns" client version) || fail "docker version failed: $out"
log "docker version:"$'\n'"$out"
server=$(cdocker "$cns" client version --format '{{.Server.Version}}')
assert_eq "server version equals status.dockerVersion" "$(dsb_get "$ns" "$name" '{.status.dockerVersion}')" "$server"

load_nested_image "$cns" client
token="dsb-e2e-$(rand_suffix)-$(rand_suffix)"
out=$(cdocker "$cns" client run --rm "$E2E_NESTED_IMAGE" echo "$token" 2>&1) || fail "nested docker run failed: $out"
assert_match "nested container output" "^$token\$" "$out"

# the engine's own daemon is set up the way the operator promises (overlay2 on a real volume)
driver=$(cdocker "$cns" client info --format '{{.Driver}}')
assert_match "storage driver" '^(overlay2|overlayfs)$' "$driver"
