#!/usr/bin/env python3
"""PyTorch eager baseline for the CUDA issue, run by scripts/device_check.sh on the GPU
machine when torch and transformers are installed there (nothing is downloaded).

A randomly initialised Hugging Face LlamaForCausalLM of a benchmark shape, on the GPU:

  decode: bf16 weights, batch 1, a prompt of --prompt tokens then --gen greedy steps
          through the KV cache (past_key_values), timed step by step -> tokens/s;
  train:  f32 master weights, torch.autocast(bfloat16), AdamW, --batch x --ctx tokens per
          step, --steps timed after one warm-up step -> tokens/s and MFU (6 N per token
          against --peak-tflops).

Prints one JSON object; exits 3 with {"skipped": reason} when torch, transformers or a
GPU is missing, so the caller can say so instead of failing.
"""
import argparse
import json
import sys
import time

SHAPES = {
    # n_embd, n_ff, n_layer, n_head, n_head_kv, vocab: the presets of `toyllm init`
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152),
    "b135m": (576, 1536, 30, 9, 3, 32000),
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000),
}


def skip(reason):
    print(json.dumps({"skipped": reason}))
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="tinyllama-1.1b", choices=sorted(SHAPES))
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200 SXM: 989)")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        skip("torch is not installed")
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        skip("transformers is not installed")
    if not torch.cuda.is_available():
        skip("torch sees no CUDA device")

    n_embd, n_ff, n_layer, n_head, n_head_kv, vocab = SHAPES[args.shape]
    cfg = LlamaConfig(hidden_size=n_embd, intermediate_size=n_ff, num_hidden_layers=n_layer,
                      num_attention_heads=n_head, num_key_value_heads=n_head_kv, vocab_size=vocab,
                      max_position_embeddings=max(2048, args.prompt + args.gen, args.ctx),
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=args.shape != "tinyllama-1.1b")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    out = {"shape": args.shape, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}

    # ---- decode, bf16 -------------------------------------------------------------
    with dev:  # initialise on the GPU: a 1.1B model takes tens of seconds on the host
        model = LlamaForCausalLM(cfg).to(dtype=torch.bfloat16).eval()
    n_params = sum(p.numel() for p in model.parameters())
    out["params"] = n_params
    ids = torch.randint(0, vocab, (1, args.prompt), device=dev)
    with torch.inference_mode():
        for _ in range(2):  # warm-up, then the timed round
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = model(input_ids=ids, use_cache=True)
            torch.cuda.synchronize()
            t_prefill = time.perf_counter() - t0
            past = res.past_key_values
            nxt = res.logits[:, -1:].argmax(-1)
            t0 = time.perf_counter()
            for _ in range(args.gen):
                res = model(input_ids=nxt, past_key_values=past, use_cache=True)
                past = res.past_key_values
                nxt = res.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            t_decode = time.perf_counter() - t0
    out["pp_tokens_per_s"] = args.prompt / t_prefill
    out["tg_tokens_per_s"] = args.gen / t_decode
    del model, past, res
    torch.cuda.empty_cache()

    # ---- training: f32 master weights, bf16 autocast, AdamW ------------------------
    if not args.skip_train:
        with dev:
            model = LlamaForCausalLM(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        x = torch.randint(0, vocab, (args.batch, args.ctx), device=dev)
        times = []
        for step in range(args.steps + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if step > 0:
                times.append(time.perf_counter() - t0)
        tps = args.batch * args.ctx * len(times) / sum(times)
        # Weights a token is multiplied with: all but an untied embedding table (a lookup).
        n_matmul = n_params - (0 if cfg.tie_word_embeddings else vocab * n_embd)
        out["train_tokens_per_s"] = tps
        out["train_batch"], out["train_ctx"] = args.batch, args.ctx
        out["train_mfu"] = 6.0 * n_matmul * tps / (args.peak_tflops * 1e12)
        out["train_last_loss"] = float(loss)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
