#!/usr/bin/env bash
# render-envoy.sh TEMPLATE OUT: fills {{LISTEN_PORT}} {{ADMIN_PORT}} {{MOCK_PORT}} {{WASM_PATH}},
# and with ENVOY set, adapts the configuration to that Envoy's version (scripts/envoy_compat.py).
set -euo pipefail
adapt() { if [ -n "${ENVOY:-}" ]; then python3 "$(dirname "$0")/envoy_compat.py" "$ENVOY"; else cat; fi; }
sed -e "s|{{LISTEN_PORT}}|${LISTEN_PORT:-10000}|g" \
    -e "s|{{ADMIN_PORT}}|${ADMIN_PORT:-9901}|g" \
    -e "s|{{MOCK_PORT}}|${MOCK_PORT:-18080}|g" \
    -e "s|{{WASM_PATH}}|${WASM_PATH:-$PWD/dist/fusion.wasm}|g" "$1" | adapt > "$2"
