#include "tokenizer/spm.h"

#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstdio>
#include <queue>
#include <unordered_map>

namespace toyllm {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;  // bytes of both symbols when queued; a mismatch later means stale
};

// Highest score first; on ties the leftmost pair (llama.cpp's llm_bigram_spm::comparator).
struct BigramOrder {
    bool operator()(const Bigram & a, const Bigram & b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

bool ends_with_space(std::string_view s) { return s.size() >= kSpace.size() && s.substr(s.size() - kSpace.size()) == kSpace; }

}  // namespace

SpmTokenizer::SpmTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)) {
    for (int b = 0; b < 256; ++b) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
        TokenId id = find(hex);
        if (id == kNoToken) id = find(std::string(1, static_cast<char>(b)));
        if (id == kNoToken) id = vocab_.unk;
        byte_tokens_[b] = id;
    }
    words_are_independent_ = true;
    for (const std::string & t : vocab_.tokens) {
        for (size_t p = t.find(kSpace, 1); p != std::string::npos; p = t.find(kSpace, p + 1)) {
            if (!ends_with_space(std::string_view(t).substr(0, p))) words_are_independent_ = false;
        }
    }
    build_pieces();
}

std::string SpmTokenizer::normal_piece(std::string_view token_text) const {
    std::string out;
    out.reserve(token_text.size());
    for (size_t i = 0; i < token_text.size();) {
        if (token_text.compare(i, kSpace.size(), kSpace) == 0) {
            out += ' ';
            i += kSpace.size();
        } else {
            out += token_text[i++];
        }
    }
    return out;
}

void SpmTokenizer::encode_chunk(std::string_view s, std::vector<Symbol> & symbols, std::vector<TokenId> & out) const {
    std::vector<Bigram> storage;
    storage.reserve(symbols.size());
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue(BigramOrder{}, std::move(storage));
    const auto try_add = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const uint32_t size = symbols[left].n + symbols[right].n;
        const auto it = text_to_id_.find(s.substr(symbols[left].offset, size));
        if (it == text_to_id_.end()) return;
        queue.push({vocab_.scores[it->second], left, right, size});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol & left = symbols[b.left];
        Symbol & right = symbols[b.right];
        if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) symbols[right.next].prev = b.left;
        try_add(left.prev, b.left);
        try_add(b.left, left.next);
    }

    // Every merged symbol is a token; a single character may not be, and falls back to
    // its bytes.
    for (int32_t i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
        const std::string_view piece = s.substr(symbols[i].offset, symbols[i].n);
        const auto it = text_to_id_.find(piece);
        if (it != text_to_id_.end()) {
            out.push_back(it->second);
            continue;
        }
        for (const char c : piece) {
            const TokenId id = byte_tokens_[static_cast<uint8_t>(c)];
            if (id == kNoToken) {
                throw TokenizerError("tokenizer: " + vocab_.source + ": no token for byte " +
                                     std::to_string(static_cast<uint8_t>(c)) + " and no unknown token");
            }
            out.push_back(id);
        }
    }
}

void SpmTokenizer::encode_text(std::string_view text, bool after_special, std::vector<TokenId> & out) const {
    std::string s;
    s.reserve(text.size() + text.size() / 2 + kSpace.size());
    if (vocab_.add_space_prefix && after_special) s += kSpace;
    for (const char c : text) {
        if (c == ' ') s += kSpace;
        else s += c;
    }
    if (s.size() >= UINT32_MAX) throw TokenizerError("tokenizer: text of " + std::to_string(text.size()) + " bytes is too long");

    // Characters, cut by the lead byte alone as llama.cpp does (no validation).
    std::vector<std::pair<uint32_t, uint32_t>> chars;  // offset, bytes
    chars.reserve(s.size());
    for (uint32_t off = 0; off < s.size();) {
        const auto n = static_cast<uint32_t>(std::min(unicode::seq_len(static_cast<uint8_t>(s[off])), s.size() - off));
        chars.emplace_back(off, n);
        off += n;
    }
    const std::string_view sv = s;
    const auto char_at = [&](size_t i) { return sv.substr(chars[i].first, chars[i].second); };

    // Chunks: the whole text, or each word ("▁" after a non-"▁" character starts one)
    // when merges cannot cross word starts; a repeated word reuses its ids.
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
    std::vector<Symbol> symbols;
    for (size_t begin = 0; begin < chars.size();) {
        size_t end = begin + 1;
        if (words_are_independent_) {
            while (end < chars.size() && !(char_at(end) == kSpace && !ends_with_space(char_at(end - 1)))) ++end;
        } else {
            end = chars.size();
        }
        const uint32_t off = chars[begin].first;
        const std::string_view chunk = sv.substr(off, chars[end - 1].first + chars[end - 1].second - off);
        if (const auto it = seen.find(chunk); it != seen.end()) {
            const auto [first, n] = it->second;
            out.resize(out.size() + n);
            std::copy_n(out.begin() + static_cast<std::ptrdiff_t>(first), n, out.end() - static_cast<std::ptrdiff_t>(n));
        } else {
            const size_t first = out.size();
            symbols.clear();
            for (size_t i = begin; i < end; ++i) {
                const auto k = static_cast<int32_t>(i - begin);
                symbols.push_back({k - 1, i + 1 == end ? -1 : k + 1, chars[i].first, chars[i].second});
            }
            encode_chunk(sv, symbols, out);
            seen.emplace(chunk, std::make_pair(first, out.size() - first));
        }
        begin = end;
    }
}

}  // namespace toyllm
