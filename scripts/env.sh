# Shared paths and the choice of wasm build route; sourced by the other scripts.
VENV=${VENV:-$PWD/.venv}
ENVOY=${ENVOY:-$VENV/bin/envoy}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
case ":$PATH:" in *":$CARGO_BIN:"*) ;; *) PATH=$CARGO_BIN:$PATH ;; esac
WASM_LD=/usr/lib/llvm-22/bin/wasm-ld
# Prefer a rustup-installed wasm32-wasip1 target; otherwise Debian's Rust with -Zbuild-std.
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  WASM_ROUTE=rustup
else
  WASM_ROUTE=debian
fi
export VENV ENVOY WASM_LD WASM_ROUTE PATH
