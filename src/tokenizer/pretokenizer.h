// BPE pre-tokenizers: the regexes that cut text into words before merging, per
// tokenizer.ggml.pre name, and the PCRE2 splitter that applies them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace toyllm {

// llama.cpp's pre-tokenizer for one tokenizer.ggml.pre name, with the defaults it implies.
struct PreTokenizerSpec {
    std::vector<std::string> regexes;  // applied in sequence
    bool ignore_merges = false;        // Llama 3 style: a word that is a token is taken whole
    bool add_bos = false;              // default for tokenizer.ggml.add_bos_token
};

// Throws TokenizerError for a name llama.cpp does not know (or that toyllm does not
// carry). "" (the key is absent) gives llama.cpp's "default".
PreTokenizerSpec pre_tokenizer_for(std::string_view pre);

// A piece of text: byte offsets [begin, end).
struct TextSpan {
    uint32_t begin = 0;
    uint32_t end = 0;
};

// Applies regexes in sequence as llama.cpp's unicode_regex_split does: each regex cuts
// every piece of the previous pass into its matches and the text between them (nothing
// is dropped), matching each piece on its own (anchors and lookarounds see the piece).
// Compiled with UTF, UCP (Unicode \s, \p{L}, ...) and DOLLAR_ENDONLY, JIT when available.
class RegexSplitter {
  public:
    explicit RegexSplitter(const std::vector<std::string> & patterns);
    ~RegexSplitter();
    RegexSplitter(RegexSplitter &&) noexcept;
    RegexSplitter & operator=(RegexSplitter &&) noexcept;

    // `text` must be well-formed UTF-8 (see unicode::sanitize_utf8).
    std::vector<TextSpan> split(std::string_view text) const;
    bool empty() const { return patterns_.empty(); }

  private:
    struct Pattern;
    std::vector<std::unique_ptr<Pattern>> patterns_;
};

}  // namespace toyllm
