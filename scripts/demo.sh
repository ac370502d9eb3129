#!/usr/bin/env bash
# The README's first command: install what is needed, build, run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target toyllm_cli
build/release/bin/toyllm demo "$@"
