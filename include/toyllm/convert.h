// Conversion of other checkpoint formats to GGUF files that toyllm and llama.cpp load:
//
//   toyllm::convert_llama2c({.checkpoint = "stories15M.bin", .tokenizer = "tokenizer.bin"},
//                           "stories15M.gguf", {});
//   toyllm::convert_hf("SmolLM2-135M/", "smollm2.gguf", {.type = toyllm::DType::Q8_0});
//
// Sources:
//   - llama2.c's legacy checkpoint (run.c's format: 7 int32 of header, then f32 weights)
//     with its tokenizer file (tok.bin). Written as llama.cpp's convert-llama2c-to-ggml
//     writes it: same keys, tensor names, order and bytes, except that context_length is
//     the checkpoint's seq_len (llama.cpp writes its own default, 128) and output.weight
//     is written only when the checkpoint has its own classifier.
//   - a Hugging Face directory of LlamaForCausalLM or Qwen2ForCausalLM: config.json,
//     model.safetensors or shards listed by model.safetensors.index.json, tokenizer.json
//     (+ tokenizer_config.json). Llama's Q/K rows are permuted as llama.cpp's
//     convert_hf_to_gguf.py does, so that RoPE rotates adjacent pairs.
//
// Also here: the rule `toyllm quantize` and `convert --type` share for which tensors
// change type.
#pragma once

#include "toyllm/dtype.h"
#include "toyllm/error.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace toyllm {

struct ConvertOptions {
    // Storage of the weight matrices (f32, f16, bf16, q8_0, q4_0). Unset: each matrix keeps
    // its type in the source (llama2.c: f32). Norms and biases are always f32.
    std::optional<DType> type;
};

// What a conversion wrote, for the caller to report.
struct ConvertReport {
    std::string arch;          // general.architecture: "llama", "qwen2"
    size_t n_tensors = 0;      // tensors in the file
    int64_t n_vocab = 0;       // tokens of the vocabulary (rows of token_embd)
    bool tied_output = false;  // no output.weight: the classifier is token_embd
};

struct Llama2cSource {
    std::string checkpoint;  // model .bin (legacy format, version 0)
    std::string tokenizer;   // tok.bin: i32 max_token_length, then per token f32 score, i32 len, bytes
};

// Throw Error naming the file and the problem (truncated, inconsistent header, unknown
// architecture, missing tensor, ...); nothing is written then.
ConvertReport convert_llama2c(const Llama2cSource & src, const std::string & out_path, const ConvertOptions & opts);
ConvertReport convert_hf(const std::string & dir, const std::string & out_path, const ConvertOptions & opts);

// The types `quantize` and `convert --type` write: f32, f16, bf16, q8_0, q4_0.
bool is_weight_storage_type(DType t);

// Whether tensor `name` of shape `ne` (innermost first) is stored as `type` when a model
// is retyped: 2-D ".weight" matrices whose rows fill whole blocks of `type`. Norms,
// biases and matrices with partial blocks keep their type (llama.cpp keeps stories260K's
// 172-wide ffn_down in f32 the same way).
bool retypes_tensor(std::string_view name, std::span<const int64_t> ne, DType type);

// llama.cpp's general.file_type (enum llama_ftype) of a model whose matrices are `type`.
uint32_t gguf_file_type(DType type);

}  // namespace toyllm
