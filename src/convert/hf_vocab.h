// The tokenizer.ggml.* keys for a Hugging Face tokenizer.json, written so that the GGUF
// file tokenizes as the tokenizer.json does.
#pragma once

#include "toyllm/gguf.h"
#include "toyllm/tokenizer.h"

#include <optional>

namespace toyllm {

// Special token ids from config.json, used where tokenizer.json/tokenizer_config.json name
// none (Qwen2's tokenizer_config has bos_token null; its config.json has bos_token_id).
struct HfSpecialIds {
    std::optional<int64_t> bos;
    std::optional<int64_t> eos;
};

// The tokenizer.ggml.pre name whose regexes split text as `v`'s pre-tokenizer does.
// llama.cpp recognizes a tokenizer by the hash of its tokens for a check text; we compare
// the pre-tokenizer's pieces of a check text with those of each name toyllm knows.
// The name also fixes ignore_merges (true for llama-bpe), as it does in llama.cpp, whatever
// the tokenizer.json says. Throws TokenizerError when no name matches.
std::string gguf_pre_name(const Vocab & v);

// Writes model "gpt2", pre, tokens (padded with "[PAD<id>]" UNUSED tokens up to n_vocab,
// as llama.cpp's converter pads), token_type, merges, the special ids and the BOS/EOS
// flags, and `chat_template` when not empty. Throws TokenizerError when the tokenizer
// has more tokens than the model's n_vocab.
void write_hf_vocab(GgufWriter & w, const Vocab & v, int64_t n_vocab, const HfSpecialIds & fallback,
                    const std::string & chat_template);

}  // namespace toyllm
