// Random initialization of a model: a GGUF file with the shapes of a ModelConfig, weights
// drawn from N(0, init_std) (norm weights 1, biases 0), stored in a chosen dtype, and a
// tokenizer copied from another file. This is how training from scratch starts and how
// benchmark-shaped models are made without a download.
#pragma once

#include "toyllm/model.h"

#include <optional>

namespace toyllm {

// Shapes of well-known models and of the benchmark models: "smollm2-135m",
// "tinyllama-1.1b", "qwen2-0.5b", "b135m", "b1b". std::nullopt for an unknown name.
std::optional<ModelConfig> model_preset(std::string_view name);
std::vector<std::string> model_preset_names();

struct InitOptions {
    DType type = DType::F32;       // storage of the matrices (norms and biases stay f32)
    uint64_t seed = 0;             // same seed, same weights
    float init_std = 0.02f;        // standard deviation of the matrices
    const GgufFile * tokenizer_from = nullptr;  // copy its tokenizer.ggml.* keys
    bool byte_tokenizer = false;                // without tokenizer_from: the byte-level vocab below
};

// A tokenizer that needs no file: SentencePiece-style with <unk>, <s>, </s> (ids 0-2), the
// 256 byte tokens "<0x00>".."<0xFF>" (ids 3-258) and "▁" for the space (259); no dummy
// prefix, so any text round-trips. llama.cpp loads it like any SPM vocab.
inline constexpr int64_t kByteVocabSize = 260;
void set_byte_level_tokenizer(GgufWriter & w);

// Checks the config (heads divide, dims positive, block sizes) and writes the file.
void write_random_model(const ModelConfig & cfg, const InitOptions & opts, const std::string & path);

}  // namespace toyllm
