// SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = "llama"), as llama.cpp's
// llm_tokenizer_spm: the text, spaces written as U+2581 and with a dummy prefix, is cut
// into UTF-8 characters; the adjacent pair whose concatenation is the highest-scoring
// token is merged until no pair forms a token; what is left without a token becomes
// byte tokens "<0xXX>" (or the unknown token when the vocab has no byte tokens).
#pragma once

#include "toyllm/tokenizer.h"

#include <array>

namespace toyllm {

class SpmTokenizer final : public Tokenizer {
  public:
    explicit SpmTokenizer(Vocab vocab);

  protected:
    void encode_text(std::string_view text, bool after_special, std::vector<TokenId> & out) const override;
    std::string normal_piece(std::string_view token_text) const override;

  private:
    struct Symbol {
        int32_t prev;
        int32_t next;
        uint32_t offset;  // into the escaped text
        uint32_t n;       // bytes; 0 once merged into its left neighbour
    };

    // Merges the characters `symbols` of `s` (one chunk) and appends their tokens.
    void encode_chunk(std::string_view s, std::vector<Symbol> & symbols, std::vector<TokenId> & out) const;

    std::array<TokenId, 256> byte_tokens_{};  // byte -> "<0xXX>" token (kNoToken if none)
    // No token has "▁" after a character other than "▁" (true of Llama's and Phi-3's vocabs):
    // then no merge crosses the start of a word, and words are merged independently.
    bool words_are_independent_ = false;
};

}  // namespace toyllm
