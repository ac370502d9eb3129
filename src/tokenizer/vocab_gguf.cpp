// Vocab from the tokenizer.ggml.* keys of a GGUF file, with llama.cpp's defaults
// (llama-vocab.cpp, llama_vocab::impl::load) for keys that are absent.
#include "toyllm/gguf.h"
#include "toyllm/tokenizer.h"

#include "tokenizer/pretokenizer.h"

#include <algorithm>
#include <cctype>

namespace toyllm {

namespace {

class GgufVocabReader {
  public:
    explicit GgufVocabReader(const GgufFile & f) : f_(f) {}

    [[noreturn]] void fail(const std::string & msg) const {
        throw TokenizerError("tokenizer: " + f_.path() + ": " + msg);
    }

    std::string_view string_key(std::string_view key, std::string_view fallback) const {
        const GgufValue * v = f_.find(key);
        if (v == nullptr) return fallback;
        if (v->type != GgufType::STRING) fail(std::string(key) + " is not a string");
        return v->str;
    }

    std::optional<bool> bool_key(std::string_view key) const {
        const GgufValue * v = f_.find(key);
        if (v == nullptr) return std::nullopt;
        if (v->type != GgufType::BOOL) fail(std::string(key) + " is not a bool");
        return v->scalar[0] != 0;
    }

    // A token id key; absent or out of range (llama.cpp writes 0xFFFFFFFF for "none")
    // keeps the default.
    TokenId id_key(std::string_view key, TokenId fallback, int32_t n_vocab) const {
        const GgufValue * v = f_.find(key);
        if (v == nullptr) return fallback;
        if (!v->is_integer()) fail(std::string(key) + " is not an integer");
        const int64_t id = v->as_int();
        return id >= 0 && id < n_vocab ? static_cast<TokenId>(id) : fallback;
    }

    // An array with at least `n` elements of one of the given types.
    const GgufValue * array_key(std::string_view key, std::initializer_list<GgufType> types, uint64_t n) const {
        const GgufValue * v = f_.find(key);
        if (v == nullptr) return nullptr;
        const bool ok = v->type == GgufType::ARRAY &&
                        std::find(types.begin(), types.end(), v->elem_type) != types.end();
        if (!ok) fail(std::string(key) + " has type " + std::string(gguf_type_name(v->type)) + ", not an array of the expected type");
        if (v->count < n) fail(std::string(key) + " has " + std::to_string(v->count) + " entries for " + std::to_string(n) + " tokens");
        return v;
    }

  private:
    const GgufFile & f_;
};

// llama.cpp's names for tokenizers it has and toyllm does not.
std::string unsupported_model(std::string_view model) {
    if (model == "bert") return "bert (WordPiece)";
    if (model == "t5") return "t5 (Unigram)";
    if (model == "rwkv") return "rwkv (RWKV world)";
    if (model == "plamo2") return "plamo2 (PLaMo-2)";
    return "'" + std::string(model) + "' (unknown tokenizer model)";
}

TokenType token_type_from(int32_t v) {
    return v >= 0 && v <= static_cast<int32_t>(TokenType::BYTE) ? static_cast<TokenType>(v) : TokenType::UNDEFINED;
}

// llama.cpp gives Phi-3's special tokens rstrip (its tokenizer.json says so; GGUF does not).
void apply_phi3_rstrip(std::string_view general_name, Vocab & v) {
    std::string name(general_name);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name.find("phi-3") == std::string::npos && name.find("phi3") == std::string::npos) return;
    for (TokenId id = 0; id < v.n_vocab(); ++id) {
        const TokenType t = v.types[id];
        if (t == TokenType::CONTROL || t == TokenType::USER_DEFINED || t == TokenType::UNKNOWN) v.strip[id].right = true;
    }
    for (TokenId id = 0; id < v.n_vocab(); ++id) {
        const std::string & s = v.tokens[id];
        if (s == "</s>") v.strip[id].right = true;
        if (s == "<unk>" || s == "<s>" || s == "<|endoftext|>") v.strip.erase(id);
    }
}

}  // namespace

Vocab Vocab::from_gguf(const GgufFile & f) {
    const GgufVocabReader r(f);
    Vocab v;
    v.source = f.path();

    const GgufValue * model = f.find("tokenizer.ggml.model");
    if (model == nullptr) r.fail("no tokenizer in the file (tokenizer.ggml.model is missing)");
    if (model->type != GgufType::STRING) r.fail("tokenizer.ggml.model is not a string");
    v.model = std::string(model->str);
    if (v.model == "llama") {
        v.kind = TokenizerKind::SPM;
    } else if (v.model == "gpt2") {
        v.kind = TokenizerKind::BPE;
    } else if (v.model == "none" || v.model == "no_vocab") {
        r.fail("the file has no vocabulary (tokenizer.ggml.model = " + v.model + ")");
    } else {
        r.fail("tokenizer.ggml.model = " + unsupported_model(v.model) +
               " is not supported (toyllm has SentencePiece 'llama' and byte-level BPE 'gpt2')");
    }
    v.pre = std::string(r.string_key("tokenizer.ggml.pre", ""));

    const GgufValue * tokens = r.array_key("tokenizer.ggml.tokens", {GgufType::STRING}, 0);
    if (tokens == nullptr) r.fail("tokenizer.ggml.tokens is missing");
    if (tokens->count == 0) r.fail("tokenizer.ggml.tokens is empty");
    if (tokens->count > INT32_MAX) r.fail("tokenizer.ggml.tokens has too many entries");
    const uint64_t n = tokens->count;
    v.tokens.assign(tokens->strs.begin(), tokens->strs.end());

    v.scores.assign(n, 0.0f);
    if (const GgufValue * s = r.array_key("tokenizer.ggml.scores", {GgufType::FLOAT32, GgufType::INT32}, n)) {
        for (uint64_t i = 0; i < n; ++i) {
            v.scores[i] = s->elem_type == GgufType::FLOAT32 ? s->at<float>(i) : static_cast<float>(s->at<int32_t>(i));
        }
    }
    v.types.assign(n, TokenType::NORMAL);
    if (const GgufValue * t = r.array_key("tokenizer.ggml.token_type", {GgufType::INT32}, n)) {
        for (uint64_t i = 0; i < n; ++i) v.types[i] = token_type_from(t->at<int32_t>(i));
    }

    const int32_t n_vocab = static_cast<int32_t>(n);
    if (v.kind == TokenizerKind::SPM) {
        v.bos = 1 < n_vocab ? 1 : kNoToken;
        v.eos = 2 < n_vocab ? 2 : kNoToken;
        v.unk = 0;
        v.add_bos = true;
        v.add_space_prefix = true;
    } else {
        const GgufValue * merges = r.array_key("tokenizer.ggml.merges", {GgufType::STRING}, 0);
        if (merges == nullptr) r.fail("tokenizer.ggml.merges is missing (a gpt2 tokenizer needs its BPE merges)");
        v.merges.reserve(merges->count);
        for (std::string_view m : merges->strs) {
            // "left right"; the split is at the first space after the first byte, as in llama.cpp.
            const size_t sp = m.find(' ', 1);
            if (sp == std::string_view::npos) continue;
            v.merges.emplace_back(std::string(m.substr(0, sp)), std::string(m.substr(sp + 1)));
        }
        try {
            PreTokenizerSpec pre = pre_tokenizer_for(v.pre);
            v.pre_regexes = std::move(pre.regexes);
            v.ignore_merges = pre.ignore_merges;
            v.add_bos = pre.add_bos;
        } catch (const TokenizerError & e) {
            r.fail(std::string(e.what()).substr(std::string_view("tokenizer: ").size()));
        }
    }

    v.bos = r.id_key("tokenizer.ggml.bos_token_id", v.bos, n_vocab);
    v.eos = r.id_key("tokenizer.ggml.eos_token_id", v.eos, n_vocab);
    v.unk = r.id_key("tokenizer.ggml.unknown_token_id", v.unk, n_vocab);
    v.pad = r.id_key("tokenizer.ggml.padding_token_id", v.pad, n_vocab);
    v.add_bos = r.bool_key("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
    v.add_eos = r.bool_key("tokenizer.ggml.add_eos_token").value_or(v.add_eos);
    v.add_space_prefix = r.bool_key("tokenizer.ggml.add_space_prefix").value_or(v.add_space_prefix);
    if (v.add_bos && v.bos == kNoToken) r.fail("tokenizer.ggml.add_bos_token is true, but there is no BOS token");
    if (v.add_eos && v.eos == kNoToken) r.fail("tokenizer.ggml.add_eos_token is true, but there is no EOS token");

    apply_phi3_rstrip(r.string_key("general.name", ""), v);
    return v;
}

}  // namespace toyllm
