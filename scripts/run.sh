#!/usr/bin/env bash
# Runs the demo in the foreground: the mock LLM server (demo answers, the playground page)
# and Envoy with the filter in front of it. Ctrl-C stops both.
#
# Fails fast with a message that names what did not come up: a port already taken, a
# process that exited, or a readiness check that did not pass in READY_TIMEOUT seconds
# (every check has its own curl --max-time). The banner appears only once Envoy is ready
# and the mock serves through Envoy's listener.
#
# Environment: LISTEN_PORT (10000), ADMIN_PORT (9901), MOCK_PORT (18080), READY_TIMEOUT
# (60), ENVOY_LOG_LEVEL (info), DEMO_EXIT_AFTER (unset: run until stopped; N: the mock
# exits after N seconds, and the demo with it; the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export LISTEN_PORT=${LISTEN_PORT:-10000} ADMIN_PORT=${ADMIN_PORT:-9901} MOCK_PORT=${MOCK_PORT:-18080}
export WASM_PATH=$PWD/dist/fusion.wasm
READY_TIMEOUT=${READY_TIMEOUT:-60}
MOCK=target/release/mock-llm
MOCK_LOG=.run/demo-mock.log
ENVOY_LOG=.run/demo-envoy.log

fail() { printf 'make run: %s\n' "$*" >&2; exit 1; }

# "envoy (pid 123)" for the process listening on a port, when ss can tell.
port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -1 \
    | sed -E 's/users:\(\("([^"]*)",pid=([0-9]*)/\1 (pid \2)/'
}

# Can this process bind 127.0.0.1:port? (SO_REUSEADDR, as Envoy uses: a port held only by
# TIME_WAIT connections of an earlier run counts as free.)
port_free() {
  python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

for var in LISTEN_PORT ADMIN_PORT MOCK_PORT; do
  port=${!var}
  if ! port_free "$port"; then
    owner=$(port_owner "$port")
    fail "port $port ($var) is already in use${owner:+ by $owner}; stop it or choose another port, e.g. $var=$((port + 1)) make run"
  fi
done
[ -x "$MOCK" ] || fail "$MOCK is missing: run 'make run' (it builds it) or 'make build'"
[ -f "$WASM_PATH" ] || fail "$WASM_PATH is missing: run 'make run' (it builds it) or 'make build'"
[ -x "$ENVOY" ] || fail "Envoy is missing at $ENVOY: run 'scripts/setup.sh envoy'"

mkdir -p .run

mock_pid= envoy_pid=
cleanup() {
  trap - EXIT INT TERM
  for p in $mock_pid $envoy_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "make run: stopped"; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# Adapted to this Envoy's version (scripts/envoy_compat.py); Ctrl-C works from here on.
ENVOY="$ENVOY" scripts/render-envoy.sh envoy/demo.yaml .run/demo.yaml

"$MOCK" --port "$MOCK_PORT" --demo --playground playground \
  ${DEMO_EXIT_AFTER:+--exit-after "$DEMO_EXIT_AFTER"} >"$MOCK_LOG" 2>&1 &
mock_pid=$!
"$ENVOY" -c .run/demo.yaml --disable-hot-restart --concurrency 2 -l "${ENVOY_LOG_LEVEL:-info}" \
  >"$ENVOY_LOG" 2>&1 &
envoy_pid=$!

# The exit status of a process that is gone, with the end of its log.
exited() {
  local name=$1 pid=$2 log=$3 rc=0
  wait "$pid" || rc=$?
  printf 'make run: %s exited with status %s%s; last lines of %s:\n' "$name" "$rc" "$4" "$log" >&2
  tail -n 5 "$log" | sed 's/^/  /' >&2
  exit 1
}

probe() { curl -fsS --max-time 2 -o /dev/null "$@" 2>/dev/null; }
mock_ok=0 admin_ok=0 listener_ok=0
deadline=$((SECONDS + READY_TIMEOUT))
while :; do
  kill -0 "$mock_pid" 2>/dev/null || exited mock-llm "$mock_pid" "$MOCK_LOG" " before the demo was ready"
  kill -0 "$envoy_pid" 2>/dev/null || exited Envoy "$envoy_pid" "$ENVOY_LOG" " before the demo was ready"
  [ $mock_ok = 1 ] || { probe "http://127.0.0.1:$MOCK_PORT/playground/" && mock_ok=1; } || true
  [ $admin_ok = 1 ] || {
    [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null)" = LIVE ] && admin_ok=1
  } || true
  if [ $mock_ok = 1 ] && [ $admin_ok = 1 ]; then
    probe "http://127.0.0.1:$LISTEN_PORT/playground/" && listener_ok=1 && break
  fi
  if [ $SECONDS -ge $deadline ]; then
    [ $mock_ok = 1 ] || fail "the mock LLM server did not answer on 127.0.0.1:$MOCK_PORT within ${READY_TIMEOUT}s (log: $MOCK_LOG)"
    [ $admin_ok = 1 ] || fail "Envoy's admin on 127.0.0.1:$ADMIN_PORT did not report ready within ${READY_TIMEOUT}s (log: $ENVOY_LOG)"
    fail "Envoy's listener 127.0.0.1:$LISTEN_PORT did not serve the mock within ${READY_TIMEOUT}s (log: $ENVOY_LOG)"
  fi
  sleep 0.2
done

cat <<MSG

fusion-wasm demo is up: Envoy with the filter on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT),
the demo mock LLM on :$MOCK_PORT. Logs: $ENVOY_LOG, $MOCK_LOG.

Playground: http://127.0.0.1:$LISTEN_PORT/playground/

Try (three panel answers, the judge's analysis of their differences, the final answer):

  curl -s http://127.0.0.1:$LISTEN_PORT/v1/responses \\
    -H 'content-type: application/json' -H 'x-fusion-include: analysis,responses' \\
    -d '{"model": "fusion", "input": "Why is the sky blue?"}' | python3 scripts/show-fusion.py

(drop the pipe for the raw JSON; the same with Chat Completions: README.md). Ctrl-C stops both.
MSG
wait -n "$mock_pid" "$envoy_pid" || true
kill -0 "$mock_pid" 2>/dev/null || exited mock-llm "$mock_pid" "$MOCK_LOG" ""
exited Envoy "$envoy_pid" "$ENVOY_LOG" ""
