#!/usr/bin/env bash
# Installs the Debian 12 packages toyllm builds, tests and fuzzes with.
# Idempotent: apt-get skips what is already installed. Nothing else is downloaded.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  clang libclang-rt-14-dev                       # libFuzzer and sanitizer runtimes
  googletest libgtest-dev libgmock-dev           # unit tests
  libbenchmark-dev                               # bench/
  nlohmann-json3-dev                             # JSON (tokenizer.json, config.json, --json output)
  libpcre2-dev                                   # Unicode regexes of the BPE pre-tokenizers
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
