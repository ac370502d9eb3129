// What both tokenizers share: loading, special-token matching (llama.cpp's
// tokenizer_st_partition), BOS/EOS, and decoding.
#include "toyllm/tokenizer.h"

#include "toyllm/gguf.h"

#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace toyllm {

namespace {

// Token attributes as bits (llama.cpp's llama_token_attr): a token can be, say,
// USER_DEFINED and CONTROL at once after the fix-ups below.
enum : uint8_t {
    ATTR_NORMAL = 1 << 0,
    ATTR_UNKNOWN = 1 << 1,
    ATTR_CONTROL = 1 << 2,
    ATTR_USER_DEFINED = 1 << 3,
    ATTR_UNUSED = 1 << 4,
    ATTR_BYTE = 1 << 5,
};

uint8_t attr_of(TokenType t) {
    switch (t) {
        case TokenType::NORMAL: return ATTR_NORMAL;
        case TokenType::UNKNOWN: return ATTR_UNKNOWN;
        case TokenType::CONTROL: return ATTR_CONTROL;
        case TokenType::USER_DEFINED: return ATTR_USER_DEFINED;
        case TokenType::UNUSED: return ATTR_UNUSED;
        case TokenType::BYTE: return ATTR_BYTE;
        case TokenType::UNDEFINED: break;
    }
    return 0;
}

// Texts llama.cpp treats as control tokens whatever the file says (end-of-turn, end of
// generation and fill-in-the-middle markers that converters wrote as normal tokens).
constexpr std::string_view kControlLooking[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "<｜end▁of▁sentence｜>", "<|eom_id|>", "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
    "▁<PRE>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|fim_middle|>",
    "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>",
    "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

}  // namespace

// A piece of the input: raw text [begin, end) or one special token.
struct Tokenizer::Fragment {
    TokenId token = kNoToken;
    uint32_t begin = 0;
    uint32_t end = 0;
};

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
    const int32_t n = vocab_.n_vocab();
    const auto bad = [&](const std::string & msg) { throw TokenizerError("tokenizer: " + vocab_.source + ": " + msg); };
    if (n == 0) bad("the vocabulary is empty");
    if (vocab_.scores.empty()) vocab_.scores.assign(n, 0.0f);
    if (vocab_.types.empty()) vocab_.types.assign(n, TokenType::NORMAL);
    if (static_cast<int32_t>(vocab_.scores.size()) != n || static_cast<int32_t>(vocab_.types.size()) != n) {
        bad("scores/types do not have one entry per token");
    }
    for (const TokenId id : {vocab_.bos, vocab_.eos, vocab_.unk, vocab_.pad}) {
        if (id != kNoToken && (id < 0 || id >= n)) bad("special token id " + std::to_string(id) + " is out of range");
    }

    text_to_id_.reserve(n);
    attrs_.resize(n);
    for (TokenId id = 0; id < n; ++id) {
        const std::string & t = vocab_.tokens[id];
        if (!t.empty()) text_to_id_.emplace(t, id);  // a duplicate text keeps its first id
        attrs_[id] = attr_of(vocab_.types[id]);
    }
    for (std::string_view s : kControlLooking) {
        const auto it = text_to_id_.find(s);
        if (it != text_to_id_.end()) attrs_[it->second] |= ATTR_CONTROL;
    }
    for (TokenId id = 0; id < n; ++id) {
        if ((attrs_[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) && !vocab_.tokens[id].empty()) {
            specials_.push_back(id);
        }
    }
    std::stable_sort(specials_.begin(), specials_.end(), [&](TokenId a, TokenId b) {
        return vocab_.tokens[a].size() > vocab_.tokens[b].size();
    });
}

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(Vocab vocab) {
    if (vocab.kind == TokenizerKind::SPM) return std::make_unique<SpmTokenizer>(std::move(vocab));
    return std::make_unique<BpeTokenizer>(std::move(vocab));
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile & f) { return from_vocab(Vocab::from_gguf(f)); }

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string & path) {
    std::string file = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) file = (std::filesystem::path(path) / "tokenizer.json").string();
    std::array<char, 4> magic{};
    size_t got = 0;
    {
        FILE * fp = std::fopen(file.c_str(), "rb");
        if (fp == nullptr) throw IoError("cannot open " + file + ": " + std::strerror(errno));
        got = std::fread(magic.data(), 1, magic.size(), fp);
        std::fclose(fp);
    }
    if (got == 4 && std::memcmp(magic.data(), "GGUF", 4) == 0) return from_gguf(GgufFile::open(file));
    const bool json_like = (got > 0 && (magic[0] == '{' || is_ascii_space(magic[0]))) ||
                           std::filesystem::path(file).extension() == ".json";
    if (!json_like) throw TokenizerError("tokenizer: " + file + ": neither a GGUF file nor a tokenizer.json");
    return from_vocab(Vocab::from_tokenizer_json(file));
}

TokenId Tokenizer::find(std::string_view token_text) const {
    const auto it = text_to_id_.find(token_text);
    return it == text_to_id_.end() ? kNoToken : it->second;
}

bool Tokenizer::is_special(TokenId id) const {
    if (id < 0 || id >= n_vocab()) return false;
    const uint8_t a = attrs_[id];
    return (a & (ATTR_CONTROL | ATTR_UNKNOWN)) != 0 || (a & (ATTR_NORMAL | ATTR_BYTE | ATTR_USER_DEFINED)) == 0;
}

void Tokenizer::build_pieces() {
    pieces_.resize(vocab_.n_vocab());
    for (TokenId id = 0; id < vocab_.n_vocab(); ++id) {
        const std::string & t = vocab_.tokens[id];
        const uint8_t a = attrs_[id];
        if (a & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED)) {
            pieces_[id] = t;
        } else if (a & ATTR_NORMAL) {
            pieces_[id] = normal_piece(t);
        } else if ((a & ATTR_BYTE) && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
            pieces_[id] = std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
        } else {
            pieces_[id] = t;  // unused/undefined: shown like special tokens
        }
    }
}

const std::string & Tokenizer::piece(TokenId id) const {
    if (id < 0 || id >= n_vocab()) {
        throw TokenizerError("tokenizer: token id " + std::to_string(id) + " is out of range (n_vocab " +
                             std::to_string(n_vocab()) + ")");
    }
    return pieces_[id];
}

bool Tokenizer::strips_space_prefix(const DecodeOptions & opts) const {
    return opts.strip_space_prefix && vocab_.kind == TokenizerKind::SPM && vocab_.add_space_prefix;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, const DecodeOptions & opts) const {
    std::string out;
    bool strip = strips_space_prefix(opts);
    for (const TokenId id : ids) {
        const std::string & p = piece(id);
        if (p.empty() || (!opts.render_special && is_special(id))) continue;
        const size_t skip = strip && p[0] == ' ' ? 1 : 0;
        strip = false;
        out.append(p, skip);
    }
    return out;
}

std::vector<Tokenizer::Fragment> Tokenizer::split_special(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({kNoToken, 0, static_cast<uint32_t>(text.size())});

    // Which byte pairs occur in the text: a token with a pair that does not cannot occur.
    std::vector<uint64_t> pairs;
    if (text.size() >= 64 && specials_.size() > 4) {
        pairs.assign(65536 / 64, 0);
        for (size_t i = 0; i + 1 < text.size(); ++i) {
            const unsigned k = static_cast<uint8_t>(text[i]) << 8 | static_cast<uint8_t>(text[i + 1]);
            pairs[k >> 6] |= uint64_t{1} << (k & 63);
        }
    }
    const auto may_occur = [&](std::string_view t) {
        if (pairs.empty()) return true;
        for (size_t i = 0; i + 1 < t.size(); ++i) {
            const unsigned k = static_cast<uint8_t>(t[i]) << 8 | static_cast<uint8_t>(t[i + 1]);
            if ((pairs[k >> 6] & (uint64_t{1} << (k & 63))) == 0) return false;
        }
        return true;
    };

    std::vector<Fragment> next;
    for (const TokenId id : specials_) {
        if (!parse_special && (attrs_[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const std::string_view t = vocab_.tokens[id];
        if (!may_occur(t)) continue;
        const auto strip_it = vocab_.strip.find(id);
        const TokenStrip strip = strip_it == vocab_.strip.end() ? TokenStrip{} : strip_it->second;
        next.clear();
        bool changed = false;
        for (const Fragment & f : frags) {
            if (f.token != kNoToken) {
                next.push_back(f);
                continue;
            }
            const std::string_view area = text.substr(0, f.end);
            uint32_t pos = f.begin;
            for (size_t m = area.find(t, pos); m != std::string_view::npos; m = area.find(t, pos)) {
                changed = true;
                uint32_t left_end = static_cast<uint32_t>(m);
                if (strip.left) {
                    while (left_end > pos && is_ascii_space(text[left_end - 1])) --left_end;
                }
                if (left_end > pos) next.push_back({kNoToken, pos, left_end});
                next.push_back({id, 0, 0});
                pos = static_cast<uint32_t>(m + t.size());
                if (strip.right) {
                    while (pos < f.end && is_ascii_space(text[pos])) ++pos;
                }
            }
            if (pos < f.end) next.push_back({kNoToken, pos, f.end});
        }
        if (changed) frags.swap(next);
    }
    return frags;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions & opts) const {
    if (text.size() >= UINT32_MAX) throw TokenizerError("tokenizer: text of " + std::to_string(text.size()) + " bytes is too long");
    const bool add_bos = opts.add_bos.value_or(vocab_.add_bos);
    const bool add_eos = opts.add_eos.value_or(vocab_.add_eos);
    if (add_bos && vocab_.bos == kNoToken) throw TokenizerError("tokenizer: " + vocab_.source + ": BOS requested but the vocabulary has no BOS token");
    if (add_eos && vocab_.eos == kNoToken) throw TokenizerError("tokenizer: " + vocab_.source + ": EOS requested but the vocabulary has no EOS token");

    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos) out.push_back(vocab_.bos);
    bool after_special = true;
    for (const Fragment & f : split_special(text, opts.parse_special)) {
        if (f.token != kNoToken) {
            out.push_back(f.token);
            after_special = true;
        } else {
            encode_text(text.substr(f.begin, f.end - f.begin), after_special, out);
            after_special = false;
        }
    }
    if (add_eos) out.push_back(vocab_.eos);
    return out;
}

StreamDecoder::StreamDecoder(const Tokenizer & tok, DecodeOptions opts) : tok_(tok), opts_(opts) {}

std::string StreamDecoder::push(TokenId id) {
    const std::string & p = tok_.piece(id);
    if (p.empty() || (!opts_.render_special && tok_.is_special(id))) return {};
    std::string_view v = p;
    if (!started_) {
        started_ = true;
        if (tok_.strips_space_prefix(opts_) && v.front() == ' ') v.remove_prefix(1);
    }
    held_ += v;
    const size_t keep = unicode::incomplete_tail(held_);
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out;
    out.swap(held_);
    return out;
}

void StreamDecoder::reset() {
    held_.clear();
    started_ = false;
}

}  // namespace toyllm
