# fusion-wasm. `make run` serves the demo; `make test` runs every test.
# Both install what is missing first (scripts/setup.sh).

SHELL := /bin/bash
PY    := .venv/bin/python
MOCK  := target/release/mock-llm
WASM_SOURCES := $(shell find src crates/fusion-core/src -name '*.rs') Cargo.toml Cargo.lock

.PHONY: all setup build run test check-tree test-unit test-wasm test-integration bench oci fuzz soak fmt lint clean

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

## test: native unit tests, the engine tests in wasm, then Envoy integration tests
test: setup build check-tree test-unit test-wasm test-integration

## check-tree: no tracked file is a build output or larger than 1 MB
check-tree:
	scripts/check-tree.sh

test-unit:
	cargo test --workspace

test-wasm:
	scripts/test-wasm.sh

test-integration: build
	$(PY) -m pytest -c tests/pytest.ini tests

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
