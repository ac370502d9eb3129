#!/usr/bin/env bash
# Fuzzes the GGUF reader and writer for SECONDS (default 60) with libFuzzer.
#
#   scripts/fuzz_gguf.sh [SECONDS]
#
# Builds the "fuzz" preset (clang, ASan + UBSan), seeds build/fuzz/corpus with the
# reference GGUF files from shared/ ($TOYLLM_SHARED, else ../shared next to the repo)
# and runs one fuzzing job. Inputs that crash go to build/fuzz/crashes/; the exit
# status is libFuzzer's (non-zero on a crash). Safe to run again: the corpus grows.
set -euo pipefail

seconds="${1:-60}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${TOYLLM_SHARED:-$repo/../shared}"
build="$repo/build/fuzz"

cd "$repo"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzz_gguf

mkdir -p "$build/corpus" "$build/crashes"
seeds=("$shared"/testdata/vocab/*.gguf "$shared/models/stories260K/stories260K-q8_0.gguf")
for f in "${seeds[@]}"; do
  [ -f "$f" ] || { echo "fuzz_gguf: seed $f not found (set TOYLLM_SHARED)" >&2; exit 2; }
  # Read-only in shared/; the corpus copy must be writable for libFuzzer's merges.
  cp -f "$f" "$build/corpus/"
  chmod u+w "$build/corpus/$(basename "$f")"
done

# -max_len covers the largest seed (4 MB vocab) so that seeds are not cut; the RSS
# limit leaves room for ASan's shadow of such inputs and the writer's copy.
log="$build/fuzz_gguf.last.log"
status=0
"$build/bin/fuzz_gguf" "$build/corpus" \
  -max_total_time="$seconds" -max_len=4194304 -rss_limit_mb=4096 -timeout=30 \
  -artifact_prefix="$build/crashes/" -print_final_stats=1 2>&1 | tee "$log" || status=$?

execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' "$log" | tail -n 1 || true)"
echo "fuzz_gguf: ${execs:-?} executions, ${speed:-?} exec/s, ${cov:-no coverage line}, exit status $status"
if [ "$status" -ne 0 ]; then
  echo "fuzz_gguf: crash inputs in $build/crashes/:" >&2
  ls -l "$build/crashes/" >&2
fi
exit "$status"
