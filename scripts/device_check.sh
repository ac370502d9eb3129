#!/usr/bin/env bash
# The GPU checks, in one run on a machine with an NVIDIA GPU (meant to finish in under
# 6 minutes on an H100):
#   1. configure and build with the CUDA backend for this machine's GPU (preset cuda,
#      CMAKE_CUDA_ARCHITECTURES=native), only what the checks need;
#   2. the CUDA tests (tests/test_cuda_ops.cpp: every op against the CPU backend,
#      stories260K greedy tokens equal to the CPU's);
#   3. `toyllm bench --device cuda` on random b135m and tinyllama-1.1b models made by
#      `toyllm init`, in f16 and q8_0, printed as one table;
#   4. a 6-step training run on both devices whose losses must agree, and tokens/s of
#      `toyllm train --device cuda` on the tinyllama-1.1b shape;
#   5. where torch and transformers are installed, the PyTorch eager baseline of the
#      same shape (bench/torch_baseline.py: decode tokens/s in bf16, training tokens/s
#      and MFU with bf16 autocast + AdamW).
# Logs and the table go to build/device_check/, packed into $OUT/device_check.tgz when
# $OUT is set (an output folder that the caller collects, which takes few files).
#
#   scripts/device_check.sh [--skip-build] [--quick] [--no-baselines] [--no-train-speed]
# --quick: b135m only; --no-baselines: no tinyllama training speed, no PyTorch (steps 4-5
# but the parity run); --no-train-speed: no tinyllama training speed (~80 s).
# TOYLLM_KEEP_MODELS=1 keeps the benchmark models in build/device_check_models.
# Where the GPU machine receives only the checkout: scripts/device_bundle.sh here, carry
# .devrun/, scripts/device_run.sh there.
# With --skip-build, TOYLLM_BUILD names a folder holding bin/toyllm and tests/ built
# elsewhere (default build/cuda).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT_DIR=build/device_check
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
# $OUT takes few files: the logs go there packed.
pack() {
    [ -n "${OUT:-}" ] || return 0
    (cd "$OUT_DIR" && find . -type f -size -4M ! -name '*.gguf' -print0 | tar czf "$OUT/device_check.tgz" --null -T -)
    cp "$OUT_DIR/bench.md" "$OUT/" 2>/dev/null || true
}
trap pack EXIT
BUILD="${TOYLLM_BUILD:-build/cuda}"  # with --skip-build: where bin/toyllm and tests/ were built
QUICK=0
SKIP_BUILD=0
BASELINES=1
TRAIN_SPEED=1
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        --skip-build) SKIP_BUILD=1 ;;
        --no-baselines) BASELINES=0 ;;
        --no-train-speed) TRAIN_SPEED=0 ;;
        *) echo "unknown option $a" >&2; exit 2 ;;
    esac
done
# The reference data (stories260K): shared/ in the checkout when it has one, else the
# tests' default (../shared beside the sources).
if [ -z "${TOYLLM_SHARED:-}" ] && [ -d shared/models ]; then export TOYLLM_SHARED="$PWD/shared"; fi
t_start=$SECONDS
step() { echo "== [$((SECONDS - t_start)) s] $*"; }

step "GPU"
missing=$(ldd "$BUILD/bin/toyllm" 2>&1 | grep "not found")
[ -z "$missing" ] || { echo "$BUILD/bin/toyllm cannot start (set LD_LIBRARY_PATH):"; echo "$missing"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt" || true

if [ "$SKIP_BUILD" = 0 ]; then
    step "configure ($BUILD)"
    cmake --preset cuda -DCMAKE_CUDA_ARCHITECTURES=native -DTOYLLM_BENCH=OFF > "$OUT_DIR/configure.log" 2>&1 \
        || { tail -30 "$OUT_DIR/configure.log"; exit 1; }
    step "build"
    cmake --build "$BUILD" -j "$(nproc)" --target toyllm_cli test_cuda_ops test_cuda_dequant > "$OUT_DIR/build.log" 2>&1 \
        || { grep -E "error|Error" "$OUT_DIR/build.log" | head -40; tail -20 "$OUT_DIR/build.log"; exit 1; }
fi

step "CUDA tests"
status=0
"$BUILD/tests/test_cuda_dequant" --gtest_brief=1 > "$OUT_DIR/test_cuda_dequant.log" 2>&1 || status=$?
tail -3 "$OUT_DIR/test_cuda_dequant.log"
timeout 180 "$BUILD/tests/test_cuda_ops" --gtest_brief=1 > "$OUT_DIR/test_cuda_ops.log" 2>&1 || status=$?
tail -40 "$OUT_DIR/test_cuda_ops.log"
# On the GPU machine a skip for want of a device is a failure, not a pass.
if grep -q "no CUDA device" "$OUT_DIR/test_cuda_ops.log"; then
    echo "the CUDA tests were skipped: no device"
    status=1
fi
echo "test_cuda_ops exit status: $status"

step "bench"
TOYLLM="$BUILD/bin/toyllm"
MODELS=build/device_check_models
mkdir -p "$MODELS"
presets="b135m tinyllama-1.1b"
[ "$QUICK" = 1 ] && presets="b135m"
P=512
N=128
table="$OUT_DIR/bench.md"
printf "| model | type | pp%d t/s | tg%d t/s | MB per token | decode bound t/s | tg / bound |\n|---|---|---:|---:|---:|---:|---:|\n" "$P" "$N" > "$table"
for preset in $presets; do
    # One random f16 model per shape (init is single-threaded: ~30 s for tinyllama);
    # the q8_0 one is quantized from it.
    for type in f16 q8_0; do
        f="$MODELS/$preset-$type.gguf"
        if [ "$type" = f16 ]; then
            timeout 120 "$TOYLLM" init --preset "$preset" --type f16 -o "$f" > "$OUT_DIR/init-$preset.log" 2>&1 \
                || { echo "init $preset failed"; tail -5 "$OUT_DIR/init-$preset.log"; break; }
        else
            timeout 120 "$TOYLLM" quantize "$MODELS/$preset-f16.gguf" "$f" q8_0 > "$OUT_DIR/quantize-$preset.log" 2>&1 \
                || { echo "quantize $preset failed"; tail -5 "$OUT_DIR/quantize-$preset.log"; break; }
        fi
        json="$OUT_DIR/bench-$preset-$type.json"
        if timeout 120 "$TOYLLM" bench -m "$f" -p "$P" -n "$N" -r 2 --device cuda --json > "$json" 2> "$OUT_DIR/bench-$preset-$type.err"; then
            python3 - "$json" "$preset" "$type" >> "$table" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
bound = j.get("tg_bound_tokens_per_s", 0)
ratio = f"{100 * j['tg']['tokens_per_s'] / bound:.0f}%" if bound else "-"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {j['pp']['tokens_per_s']:.1f} ± {j['pp']['stddev']:.1f} | {j['tg']['tokens_per_s']:.1f} ± {j['tg']['stddev']:.1f} "
      f"| {j['bytes_per_token'] / 1e6:.1f} | {bound:.0f} | {ratio} |")
PY
        else
            echo "| $preset | $type | failed | $(tail -1 "$OUT_DIR/bench-$preset-$type.err") |" >> "$table"
        fi
        # Time per op of decode (TOYLLM_PROFILE: CUDA events around every node), one round.
        TOYLLM_PROFILE=1 timeout 60 "$TOYLLM" bench -m "$f" -p 0 -n 64 -r 1 --device cuda > /dev/null \
            2> "$OUT_DIR/profile-$preset-$type.txt" || true
    done
    [ -n "${TOYLLM_KEEP_MODELS:-}" ] || rm -f "$MODELS/$preset-"*.gguf  # disk: the tinyllama files are 1-2 GB each
done
cat "$table"

step "training parity (cpu vs cuda)"
# The same 6 steps of a tiny model from scratch on both devices: the losses of the steps
# and the final validation loss should agree to ~1e-4 (f32 everywhere; AdamW on the host).
TRAIN="$OUT_DIR/train"
rm -rf "$TRAIN"
mkdir -p "$TRAIN"
echo '{"arch": "llama", "n_embd": 64, "n_ff": 160, "n_layer": 2, "n_head": 4, "n_head_kv": 2}' > "$TRAIN/tiny.json"
for i in $(seq 1 40); do echo "Once upon a time there was a little cat number $i who liked to play in the sun."; done > "$TRAIN/corpus.txt"
for dev in cpu cuda; do
    timeout 120 "$TOYLLM" train --config "$TRAIN/tiny.json" --data "$TRAIN/corpus.txt" -o "$TRAIN/run-$dev" \
        --steps 6 --batch 4 --ctx 32 --seed 1 --threads 4 --device "$dev" > "$TRAIN/train-$dev.log" 2>&1 \
        || { echo "train on $dev failed:"; tail -5 "$TRAIN/train-$dev.log"; status=1; }
done
python3 - "$TRAIN" <<'PY' || status=1
import json, sys
d = sys.argv[1]
def losses(dev):
    return [json.loads(l) for l in open(f"{d}/run-{dev}/metrics.jsonl")]
cpu, cuda = losses("cpu"), losses("cuda")
worst = 0.0
for a, b in zip(cpu, cuda):
    for k in ("loss", "val_loss", "grad_norm"):
        if k in a and k in b:
            worst = max(worst, abs(a[k] - b[k]) / max(abs(a[k]), 1e-6))
            print(f"step {a.get('step')}: {k} cpu {a[k]:.6f} cuda {b[k]:.6f}")
print(f"largest relative difference {worst:.2e} ({'ok' if worst < 1e-3 else 'TOO LARGE'})")
sys.exit(0 if worst < 1e-3 and len(cpu) == len(cuda) else 1)
PY

step "training speed, tinyllama-1.1b shape (toyllm, f32, --device cuda)"
if [ "$QUICK" = 0 ] && [ "$BASELINES" = 1 ] && [ "$TRAIN_SPEED" = 1 ]; then
    for i in $(seq 1 400); do cat "$TRAIN/corpus.txt"; done > "$TRAIN/big.txt"
    # The 32000-token vocabulary of the shapes PyTorch runs, where the reference data is here.
    vocab="${TOYLLM_SHARED:-../shared}/testdata/vocab/ggml-vocab-llama-spm.gguf"
    tok_from=()
    [ -f "$vocab" ] && tok_from=(--tokenizer-from "$vocab")
    timeout 240 "$TOYLLM" train --preset tinyllama-1.1b "${tok_from[@]}" --data "$TRAIN/big.txt" -o "$TRAIN/run-tiny" \
        --steps 4 --batch 4 --ctx 512 --val-fraction 0 --threads "$(nproc)" --device cuda > "$TRAIN/train-tiny.log" 2>&1 \
        || { echo "tinyllama training failed:"; tail -5 "$TRAIN/train-tiny.log"; }
    python3 - "$TRAIN/run-tiny/metrics.jsonl" <<'PY' | tee "$OUT_DIR/train_speed.txt" || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
last = rows[1:] or rows  # the first step includes the uploads
tps = sum(r["tokens_per_s"] for r in last) / len(last)
cfg = json.load(open(sys.argv[1].replace("metrics.jsonl", "config.json")))
print(f"toyllm train tinyllama-1.1b f32 batch 4 x ctx 512 on cuda: {tps:.0f} tokens/s "
      f"(tokenizer: {cfg.get('tokenizer_from') or 'byte-level, 260 tokens'})")
PY
fi

step "PyTorch eager baseline (bench/torch_baseline.py)"
if [ "$BASELINES" = 1 ]; then
    timeout 240 python3 bench/torch_baseline.py --shape tinyllama-1.1b --prompt "$P" --gen "$N" --batch 4 --ctx 512 \
        > "$OUT_DIR/torch.json" 2> "$OUT_DIR/torch.err"
    torch_rc=$?
    if [ "$torch_rc" = 0 ]; then
        python3 - "$OUT_DIR/torch.json" <<'PY' | tee -a "$table"
import json, sys
j = json.load(open(sys.argv[1]))
print(f"| tinyllama-1.1b | PyTorch {j['torch']} bf16 eager | {j['pp_tokens_per_s']:.1f} | {j['tg_tokens_per_s']:.1f} | | | |")
print(f"\nPyTorch training (f32 master, bf16 autocast, AdamW, batch {j['train_batch']} x ctx {j['train_ctx']}): "
      f"{j['train_tokens_per_s']:.0f} tokens/s, MFU {100 * j['train_mfu']:.1f}% on {j['gpu']}")
PY
    else
        echo "PyTorch baseline not run (exit $torch_rc): $(cat "$OUT_DIR/torch.json" 2>/dev/null) $(tail -2 "$OUT_DIR/torch.err")"
    fi
fi
step "done (tests exit status $status)"
exit "$status"
