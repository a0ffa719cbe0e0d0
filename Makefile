# Entry points. `make test` is the one command that runs every check (CI runs exactly it).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test lint rust-test helm-test e2e-test cluster-build cluster-up cluster-down bench-cluster bench-cluster-pod crds-check venv demo fuzz docs release-check

test: lint release-check rust-test helm-test e2e-test

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

rust-test:
	cargo test --all-targets --locked

# The GitHub workflows (.github/workflows/) checked here: actionlint (pinned, built from the Go
# module proxy, cached) and `helm package` of the chart with the control plane's Helm.
release-check: cluster-build
	bash tools/release-check.sh

# Python tools (real Helm v4 SDK, Kubernetes schemas) live in a project-local venv.
$(VENV)/.installed: tests/helm/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r tests/helm/requirements.txt
	touch $@

venv: $(VENV)/.installed

helm-test: $(VENV)/.installed
	$(PY) -m pytest -q tests/helm

# A real control plane (etcd, kube-apiserver, kube-controller-manager, kubectl, helm) built from
# Go modules by tests/cluster/build.sh, cached by version; the first build takes a while.
cluster-build:
	bash tests/cluster/build.sh

# End-to-end tests through that control plane: by default with a node, the chart installed with
# `helm install --wait` and the operator in its pods from `make image`'s image (debug build); a
# local process with the chart's arguments and ServiceAccount where a test needs process-level
# control (README). Every assertion on what the API server says.
e2e-test: $(VENV)/.installed cluster-build
	cargo build --locked --bin spin-operator
	IMAGE_TEST_PROFILE=$(TEST_IMAGE_PROFILE) $(PY) -m pytest -q tests/cluster/e2e

# Try the operator for real on this machine: control plane up, chart installed, operator running.
# By default with a node (containerd, runc, kubelet, kube-proxy; tests/cluster/node.py) and the
# operator in the chart's pods; NODE=0: the control plane alone, the operator a local process.
NODE ?= 1
cluster-up: $(VENV)/.installed
	cargo build --locked --bin spin-operator
	$(PY) tests/cluster/controlplane.py up $(if $(filter 1,$(NODE)),--node)

# Fleet convergence and admission throughput through the real API server (BENCHMARKS.md).
bench-cluster: $(VENV)/.installed cluster-build
	cargo build --release --locked --bin spin-operator
	SPIN_OPERATOR_BIN=target/release/spin-operator $(PY) tests/cluster/bench.py

# The fleet's cold phase with the operator in the chart's pods on a node next to it as a local
# process, rounds interleaved (BENCHMARKS.md, "The operator in a pod"; tests/cluster/bench_pod.py).
BENCH_POD_FLEET ?= 1000
BENCH_POD_ROUNDS ?= 1
BENCH_POD_PHASES ?=
bench-cluster-pod: $(VENV)/.installed cluster-build
	cargo build --release --locked --bin spin-operator
	BENCH_PARTS=cold BENCH_WHERE="process pod" BENCH_GO=0 BENCH_FLEET="$(BENCH_POD_FLEET)" \
	  BENCH_ROUNDS=$(BENCH_POD_ROUNDS) BENCH_PHASES="$(BENCH_POD_PHASES)" BENCH_FLOOR_CLIENTS=8 \
	  SPIN_OPERATOR_BIN=target/release/spin-operator $(PY) tests/cluster/bench.py

# Coverage-guided fuzzing (fuzz/, BENCHMARKS.md "Fuzzing"): each target for FUZZ_SECONDS (default
# 120) on one core, then executions, coverage and findings. Not part of `make test`;
# `cargo test` replays the seeds and saved findings (tests/fuzz_regressions.rs).
FUZZ_SECONDS ?= 120
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# Regenerates the reference documents generated from the code: docs/configuration.md (from the
# command-line definition of `spin-operator run`), the chart README's values table (from
# values.yaml's `# --` comments) and docs/rbac.md's permission tables (from files/permissions.json).
# Tests fail when any of them is stale (tests/configuration_doc.rs, tests/helm/test_docs.py).
docs: $(VENV)/.installed
	cargo build --quiet --locked --bin spin-operator
	target/debug/spin-operator docs configuration > docs/configuration.md
	$(PY) tools/chart_docs.py

cluster-down:
	python3 tests/cluster/controlplane.py down

.PHONY: image spin-standin image-test registry-up registry-down

# The operator image without Docker (image/operator.sh, crane): an OCI image layout in
# target/image/spin-operator; prints its path and digest. IMAGE_PROFILE=release is the
# Dockerfile's static binary (a second compile, ~10 min cold on 2 cores); IMAGE_PROFILE=debug
# packs the tests' debug build and its glibc instead (no extra compile). IMAGE_PUSH=REF also
# pushes it, e.g. IMAGE_PUSH=127.0.0.1:5000/spin-operator:$(IMAGE_TAG).
IMAGE_PROFILE ?= release
IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image: cluster-build
	IMAGE_PROFILE=$(IMAGE_PROFILE) IMAGE_PUSH=$(IMAGE_PUSH) bash image/operator.sh

# The Spin stand-in app image (busybox httpd on Spin's port and health paths): target/image/spin-hello.
spin-standin: cluster-build
	IMAGE_PUSH=$(IMAGE_PUSH) bash image/spin-standin/build.sh

# Both images served for the test node from a registry on loopback: $(REGISTRY)/spin-operator:$(IMAGE_TAG)
# and $(REGISTRY)/spin-hello:v1. `make registry-down` stops it.
REGISTRY ?= 127.0.0.1:5000
registry-up: image spin-standin
	REGISTRY=$(REGISTRY) bash image/registry.sh up
	REGISTRY=$(REGISTRY) bash image/registry.sh push target/image/spin-operator spin-operator:$(IMAGE_TAG)
	REGISTRY=$(REGISTRY) bash image/registry.sh push target/image/spin-hello spin-hello:v1

registry-down:
	REGISTRY=$(REGISTRY) bash image/registry.sh down

# Image checks (tests/image): `make image` against the Dockerfile, the Spin stand-in against what
# the operator renders. CI packs the debug build (TEST_IMAGE_PROFILE=debug): the release image's
# config and files come from the same script, and its static compile would add ~10 min.
TEST_IMAGE_PROFILE ?= debug
test: image-test
image-test: $(VENV)/.installed cluster-build
	cargo build --locked --bin spin-operator
	IMAGE_TEST_PROFILE=$(TEST_IMAGE_PROFILE) $(PY) -m pytest -q tests/image

# The no-cluster tour: admission decisions and rendered workloads for the bundled examples.
demo:
	@echo "== 1. validate examples/: defaulting and validation, as the webhooks would answer kubectl apply"
	cargo run --quiet -- validate -f examples/
	@echo
	@echo "== 2. a manifest that breaks rules: denied, with every field error listed (exit code 1 is expected)"
	-cargo run --quiet -- validate -f examples/executors.yaml -f examples/invalid/
	@echo
	@echo "== 3. render examples/: the Deployments, Services and Secrets the operator would create"
	cargo run --quiet -- render -f examples/
	@echo
	@echo "== 4. scaffold a SpinApp and its HPA for an image (judged by the same rules), piped into validate"
	cargo run --quiet -- scaffold -f ghcr.io/example/hello:v1 --autoscaler hpa --cpu-limit 100m --memory-limit 128Mi | cargo run --quiet -- validate -f examples/executors.yaml -f -
