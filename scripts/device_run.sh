#!/usr/bin/env bash
# On the GPU machine, in the checkout with the carried .devrun/ (scripts/device_bundle.sh):
# finds the CUDA libraries, runs scripts/device_check.sh on the bundled binaries, then,
# when the bundle holds a second build (.devrun/prev), times decode with both,
# alternating, on the models the check made. Everything lands under $OUT when set.
#
#   scripts/device_run.sh [LIMIT_S] [device_check.sh options]   (default 330 s)
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .devrun/bin/toyllm ] || { echo "no .devrun/bin/toyllm: run scripts/device_bundle.sh and carry .devrun" >&2; exit 2; }
lib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublas.so.13" ] && lib=$d && break
done
[ -z "$lib" ] && lib=$(dirname "$(find / -xdev -name 'libcublas.so.13*' 2>/dev/null | head -1)")
echo "libcublas.so.13 in: $lib"
export LD_LIBRARY_PATH="$lib:$PWD/.devrun/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TOYLLM_BUILD=.devrun TOYLLM_SHARED="$PWD/.devrun/shared" TOYLLM_KEEP_MODELS=1
limit=${1:-330}
[ $# -gt 0 ] && shift
timeout "$limit" scripts/device_check.sh --skip-build "$@"
echo "device_check exit $?"
[ -x .devrun/prev/toyllm ] || exit 0
models=build/device_check_models
for f in "$models"/tinyllama-1.1b-q8_0.gguf "$models"/tinyllama-1.1b-f16.gguf "$models"/b135m-q8_0.gguf; do
    [ -f "$f" ] || continue
    for round in 1 2; do
        for bin in prev bin; do
            tps=$(timeout 60 ".devrun/$bin/toyllm" bench -m "$f" -p 0 -n 128 -r 2 --device cuda --json 2>/dev/null |
                  python3 -c 'import json, sys; print(round(json.load(sys.stdin)["tg"]["tokens_per_s"], 1))')
            echo "A/B $(basename "$f") round $round $bin: tg128 ${tps:-failed} t/s"
        done
    done
done
