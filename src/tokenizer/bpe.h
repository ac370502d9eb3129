// Byte-level BPE tokenizer (GGUF tokenizer.ggml.model = "gpt2", Hugging Face BPE), as
// llama.cpp's llm_tokenizer_bpe: the pre-tokenizer regexes cut the text into words; each
// word's bytes become GPT-2 byte characters, and the adjacent pair with the lowest merge
// rank (leftmost on ties) is merged until no pair has a rank.
//
// Symbols are ids: a vocab token's id, or an id past n_vocab for a merge part that is not
// a token, so that merges look up (left, right) in one hash map and never build strings.
#pragma once

#include "toyllm/tokenizer.h"

#include "tokenizer/pretokenizer.h"

#include <array>

namespace toyllm {

class BpeTokenizer final : public Tokenizer {
  public:
    explicit BpeTokenizer(Vocab vocab);

  protected:
    void encode_text(std::string_view text, bool after_special, std::vector<TokenId> & out) const override;
    std::string normal_piece(std::string_view token_text) const override;

  private:
    struct Merge {
        int32_t rank;
        int32_t result;  // symbol of the merged pair
    };
    struct Symbol {
        int32_t sym;
        int32_t prev;
        int32_t next;
    };
    struct Bigram {
        int32_t rank;
        int32_t left;  // index into the word's symbols
        int32_t right;
        int32_t left_sym;
        int32_t right_sym;
        int32_t result;
    };
    struct Scratch {
        std::vector<Symbol> symbols;
        std::vector<Bigram> heap;
        std::string encoded;
    };

    // (left, right) symbol pair -> merge, open addressing with linear probing: the one
    // lookup of the merge loop, kept flat.
    class MergeTable {
      public:
        void reserve(size_t n);
        void insert(uint64_t key, Merge m);  // keeps the first merge of a key
        const Merge * find(uint64_t key) const {
            for (uint64_t i = slot(key);; i = (i + 1) & mask_) {
                if (keys_[i] == key) return &merges_[i];
                if (keys_[i] == kEmpty) return nullptr;
            }
        }

      private:
        static constexpr uint64_t kEmpty = ~uint64_t{0};  // symbols are >= 0, so no key is all ones
        uint64_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
        std::vector<uint64_t> keys_;
        std::vector<Merge> merges_;
        uint64_t mask_ = 0;
        int shift_ = 64;
    };

    void encode_word(std::string_view word, Scratch & s, std::vector<TokenId> & out) const;
    void push_bigram(Scratch & s, int32_t left, int32_t right) const;
    static uint64_t pair_key(int32_t a, int32_t b) {
        return static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32 | static_cast<uint32_t>(b);
    }

    RegexSplitter splitter_;
    std::array<int32_t, 256> byte_sym_{};        // byte -> symbol of its GPT-2 character
    std::vector<std::string> extra_syms_;        // text of symbol n_vocab + i
    MergeTable merges_;                          // pair_key(left, right) -> merge
};

}  // namespace toyllm
