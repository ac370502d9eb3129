// Tokenizers: text <-> token ids, matching llama.cpp's tokenizers id for id.
//
//   auto tok = toyllm::Tokenizer::load("model.gguf");          // or ".../tokenizer.json"
//   std::vector<toyllm::TokenId> ids = tok->encode("Hello world");  // BOS per the file's flag
//   std::string text = tok->decode(ids);
//
// Two algorithms, one class each (src/tokenizer/):
//   - SentencePiece-style (GGUF tokenizer.ggml.model = "llama"): spaces become U+2581 "▁",
//     a dummy "▁" is prefixed, adjacent pieces are merged by descending vocab score, and
//     characters without a token fall back to byte tokens "<0xXX>";
//   - byte-level BPE (tokenizer.ggml.model = "gpt2", or a Hugging Face tokenizer.json):
//     the text is split by the pre-tokenizer regexes of tokenizer.ggml.pre (PCRE2, Unicode
//     properties), each piece's bytes are mapped to GPT-2's printable byte characters and
//     merged by merge rank.
// Special tokens (CONTROL, USER_DEFINED and UNKNOWN token types) are matched in the text
// before either algorithm runs, as llama.cpp does.
#pragma once

#include "toyllm/error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace toyllm {

class GgufFile;

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// Bad tokenizer input: an unsupported model, a malformed vocab, an id out of range.
class TokenizerError : public Error {
  public:
    using Error::Error;
};

// Token types as GGUF's tokenizer.ggml.token_type stores them (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
    UNDEFINED = 0,
    NORMAL = 1,
    UNKNOWN = 2,       // the <unk> token
    CONTROL = 3,       // <s>, </s>, <|endoftext|>: matched in text only when parse_special
    USER_DEFINED = 4,  // added tokens matched in text always (Hugging Face non-special added tokens)
    UNUSED = 5,
    BYTE = 6,          // SentencePiece byte fallback "<0xXX>"
};

enum class TokenizerKind {
    SPM,  // SentencePiece-style: scores, "▁", byte fallback
    BPE,  // byte-level BPE: merges, GPT-2 byte characters, regex pre-tokenizer
};

// Whitespace a special token swallows next to it when matched in text (Hugging Face
// AddedToken lstrip/rstrip; llama.cpp sets rstrip for Phi-3's special tokens).
struct TokenStrip {
    bool left = false;
    bool right = false;
};

// Everything a tokenizer is built from, as read from the file (no behaviour of its own).
struct Vocab {
    TokenizerKind kind = TokenizerKind::SPM;
    std::string model;                   // tokenizer.ggml.model: "llama", "gpt2"
    std::string pre;                     // tokenizer.ggml.pre: "llama-bpe", "qwen2", ...; "" if absent
    std::vector<std::string> pre_regexes;  // BPE: pre-tokenizer regexes, applied in sequence

    std::vector<std::string> tokens;     // [n_vocab] text as stored ("▁Hello", "ĠHello", "<0x0A>")
    std::vector<float> scores;           // [n_vocab] SPM merge priority, higher first (0 if absent)
    std::vector<TokenType> types;        // [n_vocab]
    std::vector<std::pair<std::string, std::string>> merges;  // BPE; rank = index, 0 merges first
    std::unordered_map<TokenId, TokenStrip> strip;            // special tokens that eat whitespace

    TokenId bos = kNoToken;
    TokenId eos = kNoToken;
    TokenId unk = kNoToken;
    TokenId pad = kNoToken;
    bool add_bos = false;           // encode() prepends BOS by default (tokenizer.ggml.add_bos_token)
    bool add_eos = false;           // encode() appends EOS by default (tokenizer.ggml.add_eos_token)
    bool add_space_prefix = false;  // SPM: prefix a space to text at the start / after a special token
    bool ignore_merges = false;     // BPE: a pre-token that is itself a token is taken whole (Llama 3)

    std::string source;  // the file it came from, for messages

    int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }

    // From the tokenizer.ggml.* keys of a GGUF file. Throws TokenizerError naming the model
    // for tokenizers other than SPM and BPE ("bert (WordPiece) is not supported").
    static Vocab from_gguf(const GgufFile & f);
    // From a Hugging Face tokenizer.json (BPE model, byte-level); tokenizer_config.json next
    // to it, when present, supplies bos/eos and add_bos_token/add_eos_token.
    static Vocab from_tokenizer_json(const std::string & path);
};

struct EncodeOptions {
    std::optional<bool> add_bos = std::nullopt;  // prepend BOS; unset: the vocab's add_bos flag
    std::optional<bool> add_eos = std::nullopt;  // append EOS; unset: the vocab's add_eos flag
    // Match the text of CONTROL/UNKNOWN tokens ("<|endoftext|>", "<s>") and emit their ids.
    // When false such text is tokenized as plain text; USER_DEFINED tokens are matched
    // either way (llama.cpp's parse_special).
    bool parse_special = true;
};

struct DecodeOptions {
    bool render_special = true;  // CONTROL/UNKNOWN tokens decode to their text (else to nothing)
    // SPM with add_space_prefix: drop the leading space of the first piece that has text,
    // undoing the dummy prefix, so that decode(encode(s)) == s.
    bool strip_space_prefix = true;
};

class Tokenizer {
  public:
    // A GGUF file (its tokenizer.ggml.* keys), a tokenizer.json, or a directory holding one.
    static std::unique_ptr<Tokenizer> load(const std::string & path);
    static std::unique_ptr<Tokenizer> from_gguf(const GgufFile & f);
    static std::unique_ptr<Tokenizer> from_vocab(Vocab vocab);

    virtual ~Tokenizer();
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer & operator=(const Tokenizer &) = delete;

    const Vocab & vocab() const { return vocab_; }
    int32_t n_vocab() const { return vocab_.n_vocab(); }
    TokenizerKind kind() const { return vocab_.kind; }
    TokenId find(std::string_view token_text) const;  // kNoToken when absent
    bool is_special(TokenId id) const;                // CONTROL or UNKNOWN (after llama.cpp's fix-ups)

    // Thread-safe (no mutable state).
    std::vector<TokenId> encode(std::string_view text, const EncodeOptions & opts = {}) const;

    // The bytes a token stands for: "▁" -> ' ', "<0x0A>" -> '\n', "Ġ" -> ' '; a special
    // token's text. Throws TokenizerError for an id out of range.
    const std::string & piece(TokenId id) const;
    // Concatenated pieces; may end inside a UTF-8 character if the ids do.
    std::string decode(std::span<const TokenId> ids, const DecodeOptions & opts = {}) const;

  protected:
    explicit Tokenizer(Vocab vocab);

    // Tokenizes text that holds no special token. `after_special`: the text starts the input
    // or follows a special token (where SPM adds its space prefix).
    virtual void encode_text(std::string_view text, bool after_special, std::vector<TokenId> & out) const = 0;
    // Bytes of a NORMAL token's stored text.
    virtual std::string normal_piece(std::string_view token_text) const = 0;
    // Fills the piece cache; derived constructors call it once their tables exist.
    void build_pieces();

    Vocab vocab_;
    std::unordered_map<std::string_view, TokenId> text_to_id_;  // views into vocab_.tokens

  private:
    struct Fragment;
    std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
    bool strips_space_prefix(const DecodeOptions & opts) const;

    std::vector<uint8_t> attrs_;        // [n_vocab] bit set of TokenType flags (see tokenizer.cpp)
    std::vector<TokenId> specials_;     // matched in text, longest first
    std::vector<std::string> pieces_;   // [n_vocab]

    friend class StreamDecoder;
};

// Decodes tokens one at a time for streaming output: push() returns only whole UTF-8
// characters and holds back an incomplete trailing sequence until its last byte arrives
// (a character split over several byte tokens is emitted once, complete).
class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer & tok, DecodeOptions opts = {});

    std::string push(TokenId id);
    // The bytes still held (an incomplete sequence at the end of the stream), as they are.
    std::string flush();
    void reset();

  private:
    const Tokenizer & tok_;
    DecodeOptions opts_;
    std::string held_;
    bool started_ = false;  // a piece with text was seen (the space prefix is behind us)
};

}  // namespace toyllm
