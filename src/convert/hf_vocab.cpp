#include "convert/hf_vocab.h"

#include "tokenizer/pretokenizer.h"

namespace toyllm {

namespace {

// Pieces every pre-tokenizer toyllm knows cuts differently: runs of spaces, tabs and
// newlines, digit groups of every length, contractions in mixed case, letters of several
// scripts next to digits and punctuation, emoji with joiners, runs of punctuation.
constexpr std::string_view kCheckText =
    "\n \n\n \t\t \t\n  \n   \r\n    x  \n"
    "Hello, World! it's I'M we'Ve THEY'LL 'd x'Re ab'S\n"
    "7 42 256 1024 65536 1234567 3.14 1..2 4...8 0x1F\n"
    "\xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 \xe2\x9c\x85 \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f "  // 🦙🦙 ✅ 😶‍🌫️
    "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c" "123abc "                                              // 你好世界
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! "                            // Привет, мир!
    "\xc3\x80\xc3\x89\xc3\x8e\xc3\xb5\xc3\xbc "                                                              // ÀÉÎõü
    "----====....!!!??? ``` \"\"\" (x) [y] {z} $5 +1 <a> ^ ~ | end   ";

// Names as llama.cpp's convert_hf_to_gguf.py writes them, one per group of synonyms in
// pretokenizer.cpp, most common first.
constexpr std::string_view kPreNames[] = {
    "llama-bpe", "qwen2", "gpt-2", "starcoder", "falcon", "deepseek-llm", "deepseek-coder", "poro-chat", "viking", "default",
};

std::vector<std::pair<uint32_t, uint32_t>> pieces(const std::vector<std::string> & regexes) {
    std::vector<std::pair<uint32_t, uint32_t>> out;
    for (const TextSpan & s : RegexSplitter(regexes).split(kCheckText)) out.emplace_back(s.begin, s.end);
    return out;
}

}  // namespace

std::string gguf_pre_name(const Vocab & v) {
    const auto want = pieces(v.pre_regexes);
    for (std::string_view name : kPreNames) {
        if (pieces(pre_tokenizer_for(name).regexes) == want) return std::string(name);
    }
    throw TokenizerError("tokenizer: " + v.source +
                         ": the pre-tokenizer splits text like none of the tokenizer.ggml.pre names toyllm knows");
}

void write_hf_vocab(GgufWriter & w, const Vocab & v, int64_t n_vocab, const HfSpecialIds & fallback,
                    const std::string & chat_template) {
    if (v.n_vocab() > n_vocab) {
        throw TokenizerError("tokenizer: " + v.source + " has " + std::to_string(v.n_vocab()) + " tokens, more than the model's " +
                             std::to_string(n_vocab));
    }
    std::vector<std::string> tokens = v.tokens;
    std::vector<int32_t> types;
    for (TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
    for (int64_t id = v.n_vocab(); id < n_vocab; ++id) {
        tokens.push_back("[PAD" + std::to_string(id) + "]");
        types.push_back(static_cast<int32_t>(TokenType::UNUSED));
    }
    std::vector<std::string> merges;
    merges.reserve(v.merges.size());
    for (const auto & [a, b] : v.merges) merges.push_back(a + " " + b);

    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", gguf_pre_name(v));
    w.set_strings("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.token_type", GgufType::INT32, types.data(), types.size());
    w.set_strings("tokenizer.ggml.merges", merges);
    auto set_id = [&](const char * key, TokenId id, std::optional<int64_t> alt) {
        if (id == kNoToken && alt && *alt >= 0 && *alt < n_vocab) id = static_cast<TokenId>(*alt);
        if (id != kNoToken) w.set_u32(key, static_cast<uint32_t>(id));
    };
    set_id("tokenizer.ggml.bos_token_id", v.bos, fallback.bos);
    set_id("tokenizer.ggml.eos_token_id", v.eos, fallback.eos);
    set_id("tokenizer.ggml.unknown_token_id", v.unk, std::nullopt);
    set_id("tokenizer.ggml.padding_token_id", v.pad, std::nullopt);
    w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
    w.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);
    if (!chat_template.empty()) w.set_string("tokenizer.chat_template", chat_template);
}

}  // namespace toyllm
