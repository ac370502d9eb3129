#!/usr/bin/env bash
# The README's second command: install what is needed, build, and run the whole test
# suite: the release build, the same tests under ASan+UBSan, then the GGUF fuzzer. The
# sanitizer and fuzzer builds use -O1 -g1 (a third of -O2 -g's compile time; line
# numbers in reports) to keep the whole run near 15 minutes on 2 cores.
# TOYLLM_FUZZ_SECONDS (default 60) sets the fuzzing time; 0 skips it. Where nvcc is
# installed, the CUDA backend is also compiled and its tests run: without a GPU the
# device tests skip, saying so, and the host-side dequantization test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== release build and tests"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

echo "== ASan + UBSan build and tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$jobs"
ctest --preset asan -j "$jobs"

nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ -x "$nvcc" ]; then
  echo "== CUDA build (sm_90) and CUDA tests"
  cmake --preset cuda -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DTOYLLM_BENCH=OFF >/dev/null
  cmake --build --preset cuda -j "$jobs" --target toyllm test_cuda_ops test_cuda_dequant
  ctest --test-dir build/cuda -j "$jobs" -R "Cuda"
fi

fuzz_seconds=${TOYLLM_FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== GGUF reader fuzzing for ${fuzz_seconds} s"
  scripts/fuzz_gguf.sh "$fuzz_seconds"
fi
