// LoRA (Hu et al. 2021): low-rank adapters beside frozen weight matrices,
// y = W x + (alpha / r) B (A x), with A [n_in, r] and B [r, n_out] (GGUF order).
// Adapters are written and read in llama.cpp's adapter GGUF format (SYSTEM.md):
// general.type "adapter", adapter.type "lora", adapter.lora.alpha, tensors
// "<base>.lora_a" and "<base>.lora_b". The per-head Q mode (one pair per query head, as
// the original system had) is written as one adapter of rank n_head * r: the heads' A
// side by side, B block-diagonal, alpha scaled so that alpha / rank is unchanged.
#pragma once

#include "toyllm/model.h"

#include <string>
#include <string_view>
#include <vector>

namespace toyllm {

struct LoraConfig {
    int64_t rank = 8;
    float alpha = 16.0f;
    std::vector<LoraTarget> targets = {LoraTarget::Q, LoraTarget::K, LoraTarget::V, LoraTarget::O,
                                       LoraTarget::GATE, LoraTarget::UP, LoraTarget::DOWN};
    bool per_head_q = false;  // the Q adapter is one rank-r pair per query head
};

// "q,k,v,o,gate,up,down" (any subset, any order); throws Error naming a bad entry.
std::vector<LoraTarget> parse_lora_targets(std::string_view list);
std::string lora_targets_str(const std::vector<LoraTarget> & targets);
// The GGUF tensor of a target in block il: "blk.3.attn_q.weight".
std::string lora_base_name(int64_t il, LoraTarget t);

// Attaches new trainable adapters to every block's targets: A drawn from
// U(-1/sqrt(n_in), 1/sqrt(n_in)) (PEFT's default), B = 0, so the model is unchanged until
// trained. Returns the params (per block and target: A, then B), named "<base>.lora_a/b".
std::vector<Tensor *> add_lora(Model & m, const LoraConfig & cfg, uint64_t seed);

// The attached adapters in llama.cpp's format (per-head Q converted as described above).
void write_lora_gguf(const Model & m, const LoraConfig & cfg, const std::string & path);

// Attaches the adapters of a llama.cpp-format adapter file (f32 or f16 tensors) to m,
// scaled by strength * alpha / r. Throws Error for another architecture, a tensor that
// names no matrix of m, or shapes that do not fit.
void load_lora(Model & m, const std::string & path, float strength = 1.0f);

// Writes base with every adapted matrix replaced by W + scale B A in f32 (other tensors
// and all metadata copied).
void merge_lora(const Model & m, const std::string & path);

}  // namespace toyllm
