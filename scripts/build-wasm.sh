#!/usr/bin/env bash
# Builds the filter to dist/fusion.wasm (wasm32-wasip1, release, LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
mkdir -p dist
if [ "$WASM_ROUTE" = rustup ]; then
  cargo build --release --target wasm32-wasip1 -p fusion-wasm --target-dir target/wasm
  out=target/wasm/wasm32-wasip1/release/fusion_wasm.wasm
else
  # Debian's Rust with its std sources; its own target dir so the two cargos
  # do not rebuild each other's artifacts.
  PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C linker=$WASM_LD -C link-self-contained=no -L native=/usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
    -p fusion-wasm --target-dir target/wasm-debian
  out=target/wasm-debian/wasm32-wasip1/release/fusion_wasm.wasm
fi
cp "$out" dist/fusion.wasm
echo "built dist/fusion.wasm ($(stat -c %s dist/fusion.wasm) bytes)"
