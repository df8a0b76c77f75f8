#!/usr/bin/env bash
# Runs the demo in the foreground: the mock LLM server and Envoy with the filter.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export LISTEN_PORT=${LISTEN_PORT:-10000} ADMIN_PORT=${ADMIN_PORT:-9901} MOCK_PORT=${MOCK_PORT:-18080}
export WASM_PATH=$PWD/dist/fusion.wasm
mkdir -p .run
scripts/render-envoy.sh envoy/demo.yaml .run/demo.yaml

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/release/mock-llm --port "$MOCK_PORT" &
pids+=($!)
"$ENVOY" -c .run/demo.yaml --disable-hot-restart --concurrency 2 -l "${ENVOY_LOG_LEVEL:-info}" \
  --log-path .run/demo-envoy.log &
pids+=($!)

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<MSG

fusion-wasm demo: Envoy on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT), mock LLM on :$MOCK_PORT.
Envoy log: .run/demo-envoy.log. Try:

  curl -s http://127.0.0.1:$LISTEN_PORT/v1/chat/completions \\
    -H 'content-type: application/json' \\
    -d '{"model": "fusion", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}'

Ctrl-C stops both.
MSG
wait -n "${pids[@]}"
