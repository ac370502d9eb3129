#!/usr/bin/env bash
# The inference issue's CPU benchmark table: `toyllm bench` on the b135m and b1b shapes in
# F32, F16, Q8_0 and Q4_0 (random weights from `toyllm init`), with 2 threads, next to
# llama.cpp's figures for the same shapes (llama-bench -t 2 -p 128 -n 64, commit
# 3f545bec, from the issue). With several binaries the runs alternate, model by model,
# so that each comparison shares the VM's memory phase.
#
#   scripts/bench_cpu.sh [--models DIR] [--rounds N] [--only REGEX] [TOYLLM ...]
#
# DIR (default build/bench_models) keeps the models between runs; TOYLLM defaults to
# build/release/bin/toyllm. Prints a markdown table: pp128 and tg64 tokens/s, tg against
# the decode bound measured in the same run (triad GB/s in brackets), and the ratios to
# llama.cpp (a range where llama.cpp's figure is one).
set -euo pipefail
cd "$(dirname "$0")/.."

models=build/bench_models
rounds=1
only=.
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
        --models) models=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bins+=("$1"); shift ;;
    esac
done
[ ${#bins[@]} -gt 0 ] || bins=(build/release/bin/toyllm)
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "bench_cpu.sh: no toyllm binary at $b" >&2; exit 1; }
done
mkdir -p "$models"
vocab=../shared/testdata/vocab/ggml-vocab-llama-spm.gguf
[ -n "${TOYLLM_SHARED:-}" ] && vocab=$TOYLLM_SHARED/testdata/vocab/ggml-vocab-llama-spm.gguf

# shape type llama.cpp-pp llama.cpp-tg (low-high where the issue gives a range)
rows="b135m f32 700 52
b135m f16 500-570 50
b135m q8_0 470-530 112
b135m q4_0 785 192-214
b1b f32 87 7.0
b1b f16 83 13.9
b1b q8_0 77 14.3
b1b q4_0 107 21.9"

ratio() {  # ours, llama.cpp's "a" or "a-b": "x.xx" or "x.xx-y.yy"
    python3 -c '
import sys
v = float(sys.argv[1]); r = [float(x) for x in sys.argv[2].split("-")]
q = sorted(v / x for x in r)
print("%.2f" % q[0] if len(q) == 1 else "%.2f-%.2f" % (q[0], q[-1]))' "$1" "$2"
}

echo "| shape | type | binary | pp128 | tg64 | tg / bound (triad GB/s) | llama.cpp pp128 / tg64 | pp ratio | tg ratio |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
while read -r shape type lpp ltg; do
    echo "$shape-$type" | grep -Eq -- "$only" || continue
    f=$models/$shape-$type.gguf
    if [ ! -f "$f" ]; then
        "${bins[0]}" init --preset "$shape" --type "$type" --tokenizer-from "$vocab" -o "$f" > /dev/null
    fi
    for ((r = 0; r < rounds; ++r)); do
        for b in "${bins[@]}"; do
            json=$("$b" bench -m "$f" -p 128 -n 64 -r 2 --threads 2 --json 2> /dev/null)
            read -r pp tg bound triad < <(python3 -c '
import json, sys
j = json.load(sys.stdin)
print(j["pp"]["tokens_per_s"], j["tg"]["tokens_per_s"], j["tg_bound_tokens_per_s"], j["memory_bandwidth_gbps"])' <<< "$json")
            printf '| %s | %s | %s | %.1f | %.2f | %.0f%% (%.1f) | %s / %s | %s | %s |\n' "$shape" "$type" "$b" "$pp" "$tg" \
                "$(python3 -c "print(100 * $tg / $bound)")" "$triad" "$lpp" "$ltg" "$(ratio "$pp" "$lpp")" "$(ratio "$tg" "$ltg")"
        done
    done
done <<< "$rows"
