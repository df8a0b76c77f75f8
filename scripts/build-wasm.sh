#!/usr/bin/env bash
# Builds the filter to dist/fusion.wasm (wasm32-wasip1, release, LTO), then shrinks
# it with `wasm-opt -Oz` (binaryen) when that is installed.
#
# The same toolchain builds the benchmark's floors (bench/run.py):
#   WASM_MANIFEST=bench/floors/Cargo.toml WASM_PACKAGE=floor-noop WASM_OUT=dist/floor-noop.wasm scripts/build-wasm.sh
# WASM_OPT=0 skips wasm-opt (the benchmark measures both); WASM_TARGET_DIR picks
# another cargo target dir (the benchmark's unstripped build). WASM_RUSTFLAGS adds
# rustc flags. The module is built with wasm SIMD (simd128: memchr's memmem scans the
# body with it, ~30 us less per 64 KB request; V8 in every supported Envoy runs it);
# WASM_SIMD=0 builds without it, for a runtime that lacks SIMD.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
manifest=${WASM_MANIFEST:-Cargo.toml}
package=${WASM_PACKAGE:-fusion-wasm}
out=${WASM_OUT:-dist/fusion.wasm}
artifact=$(echo "$package" | tr - _).wasm
if [ "${WASM_SIMD:-1}" != 0 ]; then WASM_RUSTFLAGS="-C target-feature=+simd128 ${WASM_RUSTFLAGS:-}"; fi
mkdir -p "$(dirname "$out")"
if [ "$WASM_ROUTE" = rustup ]; then
  tdir=${WASM_TARGET_DIR:-target/wasm}
  if [ -n "${WASM_RUSTFLAGS:-}" ]; then export RUSTFLAGS="${RUSTFLAGS:-} $WASM_RUSTFLAGS"; fi
  cargo build --release --target wasm32-wasip1 --manifest-path "$manifest" -p "$package" --target-dir "$tdir"
  built=$tdir/wasm32-wasip1/release/$artifact
else
  # Debian's Rust with its std sources; its own target dir so the two cargos
  # do not rebuild each other's artifacts.
  # panic=immediate-abort (std rebuilt with it here): a panic traps at once,
  # without formatting a message, which drops the panic and formatting code
  # only panics reached (-48 KB after wasm-opt, docs/benchmarks.md "Module
  # size"). The code has no panics by policy (clippy denies them); one in a
  # dependency shows in Envoy's log as the Wasm trap, without its message.
  # The rustup route (stable, prebuilt std) keeps panic=abort.
  PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C linker=$WASM_LD -C link-self-contained=no -L native=/usr/lib/wasm32-wasi -Zunstable-options -C panic=immediate-abort ${WASM_RUSTFLAGS:-}" \
    /usr/bin/cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
    --manifest-path "$manifest" -p "$package" --target-dir "${WASM_TARGET_DIR:-target/wasm-debian}"
  built=${WASM_TARGET_DIR:-target/wasm-debian}/wasm32-wasip1/release/$artifact
fi
if [ "${WASM_OPT:-1}" != 0 ] && command -v wasm-opt >/dev/null; then
  # -Oz: smallest code; measured at unchanged pass-through speed (docs/benchmarks.md).
  # -ocimfs 20: -Oz alone inlines every function with a single caller whatever its
  # size; the giant functions that makes cost V8's optimizing compiler ~9 MiB more
  # memory at start-up per Envoy, and 20 (against 200) takes about 1 MiB more off the
  # idle RSS for +2.4 KB at unchanged pass-through speed (docs/benchmarks.md, "Where
  # the idle memory goes").
  # The features are the ones Rust's wasm32-wasip1 target emits by default.
  simd=
  case "${WASM_RUSTFLAGS:-}" in *simd128*) simd=--enable-simd ;; esac
  input=$built
  if [ "$package" = fusion-wasm ]; then
    # The SDK's callbacks for network filters, gRPC callouts, shared queues and
    # foreign functions: the filter uses none, Envoy skips a callback a module
    # does not export, and unexported, wasm-opt drops their code (-12 KB).
    input=$out.in
    cp "$built" "$input"
    python3 scripts/drop_exports.py "$input" proxy_on_new_connection proxy_on_downstream_data \
      proxy_on_upstream_data proxy_on_downstream_connection_close proxy_on_upstream_connection_close \
      proxy_on_grpc_receive_initial_metadata proxy_on_grpc_receive proxy_on_grpc_receive_trailing_metadata \
      proxy_on_grpc_close proxy_on_queue_ready proxy_on_foreign_function
  fi
  if wasm-opt -Oz -ocimfs 20 $simd --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
    "$input" -o "$out.tmp"; then
    [ "$input" = "$built" ] || rm -f "$input"
    mv "$out.tmp" "$out"
    echo "built $out ($(stat -c %s "$out") bytes; $(stat -c %s "$built") before wasm-opt -Oz)"
    # Issue 19's budget for the shipped module (bench/run.py MODULE_TARGET_BYTES reports it too).
    if [ "$out" = dist/fusion.wasm ]; then
      size=$(stat -c %s "$out")
      if [ "$size" -le 500000 ]; then verdict=within; else verdict="OVER by $((size - 500000)) bytes"; fi
      echo "module size $size bytes; target <= 500000: $verdict"
    fi
  else
    rm -f "$out.tmp" "$out.in"
    cp "$built" "$out"
    echo "WARNING: wasm-opt failed; built $out unoptimized ($(stat -c %s "$out") bytes)" >&2
  fi
else
  cp "$built" "$out"
  echo "built $out ($(stat -c %s "$out") bytes; wasm-opt: ${WASM_OPT:+skipped}${WASM_OPT:-not installed})"
fi
