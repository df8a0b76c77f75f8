#!/usr/bin/env bash
# Runs fusion-core's tests (engine, translators, config) compiled to wasm, under
# wasm-bindgen-test-runner on Node.js: the same code paths the filter runs in Envoy.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" \
    cargo test -p fusion-core --target wasm32-unknown-unknown --target-dir target/wasm-test "$@"
else
  PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=$WASM_LD -C target-feature=+simd128" \
    /usr/bin/cargo test -p fusion-core --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort --target-dir target/wasm-test-debian "$@"
fi
