#!/usr/bin/env bash
# Builds the CUDA backend here (no GPU needed) and gathers what scripts/device_check.sh
# needs on a GPU machine that receives only the checkout: .devrun/ (ignored by git) with
# the binaries, the reference data the tests read and libpcre2; carry that folder and run
# scripts/device_run.sh there. With --prev FILE, a toyllm binary of another build goes in
# too, and device_run.sh times both, alternating, after the check.
#
#   scripts/device_bundle.sh [--arch 90] [--prev path/to/toyllm]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=90
PREV=""
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --prev) PREV="$2"; shift 2 ;;
        *) echo "unknown option $1 (expected --arch N, --prev FILE)" >&2; exit 2 ;;
    esac
done
SHARED="${TOYLLM_SHARED:-../shared}"
for f in models/stories260K testdata/stories260K testdata/vocab/ggml-vocab-llama-spm.gguf; do
    [ -e "$SHARED/$f" ] || { echo "missing reference data: $SHARED/$f (set TOYLLM_SHARED)" >&2; exit 1; }
done
[ -z "$PREV" ] || [ -x "$PREV" ] || { echo "--prev $PREV: not an executable" >&2; exit 1; }

cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DTOYLLM_BENCH=OFF > /dev/null
cmake --build build/cuda --target toyllm_cli test_cuda_ops test_cuda_dequant

rm -rf .devrun
mkdir -p .devrun/bin .devrun/tests .devrun/lib .devrun/shared/models .devrun/shared/testdata/vocab
cp build/cuda/bin/toyllm .devrun/bin/
cp build/cuda/tests/test_cuda_ops build/cuda/tests/test_cuda_dequant .devrun/tests/
cp -r "$SHARED/models/stories260K" .devrun/shared/models/
cp -r "$SHARED/testdata/stories260K" .devrun/shared/testdata/
cp "$SHARED/testdata/vocab/ggml-vocab-llama-spm.gguf" .devrun/shared/testdata/vocab/
# The GPU image may lack the regex library the binaries link.
pcre=$(ldd build/cuda/bin/toyllm | awk '/libpcre2-8/ {print $3}')
[ -n "$pcre" ] && cp -L "$pcre" .devrun/lib/
if [ -n "$PREV" ]; then
    mkdir -p .devrun/prev
    cp "$PREV" .devrun/prev/toyllm
fi
echo "bundle: $(du -sh .devrun | cut -f1) in .devrun/ (carry it; run scripts/device_run.sh there)"
