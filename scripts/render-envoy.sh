#!/usr/bin/env bash
# render-envoy.sh TEMPLATE OUT: fills {{LISTEN_PORT}} {{ADMIN_PORT}} {{MOCK_PORT}} {{WASM_PATH}}.
set -euo pipefail
sed -e "s|{{LISTEN_PORT}}|${LISTEN_PORT:-10000}|g" \
    -e "s|{{ADMIN_PORT}}|${ADMIN_PORT:-9901}|g" \
    -e "s|{{MOCK_PORT}}|${MOCK_PORT:-18080}|g" \
    -e "s|{{WASM_PATH}}|${WASM_PATH:-$PWD/dist/fusion.wasm}|g" "$1" > "$2"
