#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time, then prints
# a summary: executions, coverage, corpus size, crashes. Exit status 1 on a crash.
#
#   scripts/fuzz.sh [TARGET...]       FUZZ_SECONDS per target (default 60)
#   FUZZ_SANITIZER=address scripts/fuzz.sh engine_turn   (default: none, faster)
#
# The corpus grows in fuzz/corpus/<target> (git-ignored), seeded from the
# committed fuzz/seeds/<target>. Crash inputs land in fuzz/artifacts/<target>/;
# logs and the summary in .run/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh fuzz

secs=${FUZZ_SECONDS:-60}
san=${FUZZ_SANITIZER:-none}
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
out=.run/fuzz
mkdir -p "$out"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "[fuzz] building ${#targets[@]} targets (sanitizer: $san)"
cargo fuzz build -s "$san" >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }

summary="$out/summary.md"
{
  echo "| target | seconds | executions | exec/s | coverage (edges) | corpus | crashes |"
  echo "|---|---|---|---|---|---|---|"
} >"$summary"
crashed=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  log=$out/$t.log
  echo "[fuzz] $t: ${secs}s"
  rc=0
  # -timeout: one input slower than 10 s is a finding (a hang in the engine);
  # -rss_limit_mb: so is unbounded memory.
  cargo fuzz run -s "$san" "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  execs=$(awk -F: '/stat::number_of_executed_units/{gsub(/ /,"",$NF); v=$NF} END{print v}' "$log")
  rate=$(awk -F: '/stat::average_exec_per_sec/{gsub(/ /,"",$NF); v=$NF} END{print v}' "$log")
  cov=$(awk '{for(i=1;i<NF;i++) if($i=="cov:") v=$(i+1)} END{print v}' "$log")
  files=$(find "$corpus" -type f | wc -l)
  crashes=0
  if [ "$rc" -ne 0 ] && grep -q "failed to build fuzz script" "$log"; then
    echo "[fuzz] $t: the build failed (sources changed during the run?): see $log"
    crashes="build failed"
    crashed=1
  elif [ "$rc" -ne 0 ]; then
    crashes=1
    crashed=1
    echo "[fuzz] $t CRASHED (exit $rc). Input and reproduction:"
    grep -E "panicked at|Test unit written to|SUMMARY|ERROR: libFuzzer" "$log" | head -10 || true
    artifact=$(grep -o 'fuzz/artifacts/[^ ]*' "$log" | tail -1) || true
    [ -n "$artifact" ] && echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run -s $san $t $artifact"
  fi
  echo "| \`$t\` | $secs | ${execs:-?} | ${rate:-?} | ${cov:-?} | $files | $crashes |" >>"$summary"
done

echo
echo "[fuzz] summary ($(date -u +%Y-%m-%dT%H:%MZ), FUZZ_SECONDS=$secs, sanitizer $san, $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
cat "$summary"
exit "$crashed"
