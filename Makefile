# dockersandbox-operator: every command a developer or CI needs.
#   make test       unit tests + the e2e suite on a fresh local cluster (what CI runs)
#   make unit       lint, fmt, clippy, unit and drift tests only (no cluster)
#   make lint       shellcheck of every script, helm lint and a strict schema check of the chart and
#                   manifests/ (part of make unit; seconds when the tools are built)
#   make e2e        the e2e suite (local cluster, or $KUBECONFIG with E2E_USE_KUBECONFIG=1)
#   make demo       the one-command demo: cluster, operator, a sandbox, docker version through it
#   make bench      benchmark: time to Ready with and without the operator, operator memory
#   make bench-scale  scale benchmark: 1000 sandboxes (E2E_SCALE_N) on KWOK fake nodes: creation
#                   rate vs a plain client, API requests at steady state, memory, failover
#   make generate   regenerate crds/, the chart's CRD copy and manifests/install.yaml
#   make install-plugin  install the kubectl dsb plugin (and its completion link) into $(PREFIX)/bin
SHELL := /bin/bash
DSB_CACHE ?= /var/cache/dockersandbox
export DSB_CACHE
export CARGO_TARGET_DIR ?= $(DSB_CACHE)/cargo-target
CARGO ?= cargo

.PHONY: test unit lint shellcheck check-manifests e2e demo bench bench-scale generate release install-plugin cluster-up cluster-down

# Where `make install-plugin` puts kubectl-dsb: $(PREFIX)/bin, on PATH on most systems.
PREFIX ?= /usr/local

test: unit e2e

unit: lint
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked
	bash e2e/tools/sync-chart.sh --check

# Checks of what is not Rust. Each script installs its tool once (idempotently) and is quick when warm.
lint: shellcheck check-manifests

shellcheck:
	bash e2e/tools/shellcheck-all.sh

check-manifests:
	bash e2e/tools/check-manifests.sh

release:
	$(CARGO) build --locked --release

generate:
	$(CARGO) run --locked -q -- crd > crds/dockersandboxes.dockersandbox.dev.yaml
	$(CARGO) run --locked -q -- crd class > crds/dockersandboxclasses.dockersandbox.dev.yaml
	$(CARGO) run --locked -q -- crd pool > crds/dockersandboxpools.dockersandbox.dev.yaml
	$(CARGO) run --locked -q -- docs > docs/api.md
	bash e2e/tools/sync-chart.sh

# The e2e suite runs the `e2e` profile (release without LTO, incremental: see Cargo.toml).
e2e:
	$(CARGO) build --locked --profile e2e
	E2E_PROFILE=e2e bash e2e/run.sh

# kubectl finds plugins on PATH; kubectl_complete-dsb (a link) serves `kubectl dsb <TAB>`.
install-plugin:
	$(CARGO) build --locked --release --bin kubectl-dsb
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 0755 "$(CARGO_TARGET_DIR)/release/kubectl-dsb" "$(DESTDIR)$(PREFIX)/bin/kubectl-dsb"
	ln -sf kubectl-dsb "$(DESTDIR)$(PREFIX)/bin/kubectl_complete-dsb"
	@echo "installed $(DESTDIR)$(PREFIX)/bin/kubectl-dsb (and kubectl_complete-dsb): kubectl dsb --help"

demo: release install-plugin
	bash e2e/demo.sh

bench: release
	bash e2e/run.sh --bench

bench-scale: release
	$(CARGO) build --locked --release --example plain_client
	bash e2e/run.sh --bench-scale

cluster-up:
	bash e2e/cluster/up.sh

cluster-down:
	bash e2e/cluster/down.sh
