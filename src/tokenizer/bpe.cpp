#include "tokenizer/bpe.h"

#include "tokenizer/unicode.h"

#include <algorithm>

namespace toyllm {

namespace {

// Lowest rank first; on ties the leftmost pair (llama.cpp's llm_bigram_bpe::comparator).
template <class B>
bool later(const B & a, const B & b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
}

}  // namespace

void BpeTokenizer::MergeTable::reserve(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < 2 * n) cap <<= 1, ++bits;
    keys_.assign(cap, kEmpty);
    merges_.assign(cap, Merge{});
    mask_ = cap - 1;
    shift_ = 64 - bits;
}

void BpeTokenizer::MergeTable::insert(uint64_t key, Merge m) {
    for (uint64_t i = slot(key);; i = (i + 1) & mask_) {
        if (keys_[i] == key) return;
        if (keys_[i] == kEmpty) {
            keys_[i] = key;
            merges_[i] = m;
            return;
        }
    }
}

BpeTokenizer::BpeTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)), splitter_(vocab_.pre_regexes) {
    const int32_t n_vocab = vocab_.n_vocab();
    std::unordered_map<std::string, int32_t> extra_index;
    const auto intern = [&](const std::string & text) -> int32_t {
        if (const TokenId id = find(text); id != kNoToken) return id;
        const auto [it, inserted] = extra_index.emplace(text, n_vocab + static_cast<int32_t>(extra_syms_.size()));
        if (inserted) extra_syms_.push_back(text);
        return it->second;
    };
    const unicode::ByteLevel & bl = unicode::byte_level();
    for (int b = 0; b < 256; ++b) byte_sym_[b] = intern(bl.encoded[b]);
    merges_.reserve(vocab_.merges.size());
    for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
        const auto & [a, b] = vocab_.merges[rank];
        const int32_t left = intern(a);
        const int32_t right = intern(b);
        const int32_t result = intern(a + b);
        merges_.insert(pair_key(left, right), Merge{static_cast<int32_t>(rank), result});  // a repeated pair keeps its first rank
    }
    build_pieces();
}

std::string BpeTokenizer::normal_piece(std::string_view token_text) const {
    const unicode::ByteLevel & bl = unicode::byte_level();
    std::string out;
    out.reserve(token_text.size());
    for (size_t i = 0; i < token_text.size();) {
        const size_t start = i;
        const uint32_t cp = unicode::next_code_point(token_text, i);
        const int b = bl.decode(cp);
        if (b >= 0) out += static_cast<char>(b);
        else out.append(token_text.substr(start, i - start));  // not a byte character: kept as it is
    }
    return out;
}

void BpeTokenizer::push_bigram(Scratch & s, int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return;
    const int32_t ls = s.symbols[left].sym;
    const int32_t rs = s.symbols[right].sym;
    const Merge * m = merges_.find(pair_key(ls, rs));
    if (m == nullptr) return;
    s.heap.push_back({m->rank, left, right, ls, rs, m->result});
    std::push_heap(s.heap.begin(), s.heap.end(), later<Bigram>);
}

void BpeTokenizer::encode_word(std::string_view word, Scratch & s, std::vector<TokenId> & out) const {
    const unicode::ByteLevel & bl = unicode::byte_level();
    if (vocab_.ignore_merges) {
        s.encoded.clear();
        for (const char c : word) s.encoded += bl.encoded[static_cast<uint8_t>(c)];
        if (const TokenId id = find(s.encoded); id != kNoToken) {
            out.push_back(id);
            return;
        }
    }
    const auto n = static_cast<int32_t>(word.size());
    s.symbols.resize(n);
    for (int32_t i = 0; i < n; ++i) s.symbols[i] = {byte_sym_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
    s.heap.clear();
    for (int32_t i = 1; i < n; ++i) push_bigram(s, i - 1, i);

    while (!s.heap.empty()) {
        std::pop_heap(s.heap.begin(), s.heap.end(), later<Bigram>);
        const Bigram b = s.heap.back();
        s.heap.pop_back();
        Symbol & left = s.symbols[b.left];
        Symbol & right = s.symbols[b.right];
        // Stale when either side has merged since (its symbol changed or it is gone).
        if (left.sym != b.left_sym || right.sym != b.right_sym) continue;
        left.sym = b.result;
        right.sym = -1;
        left.next = right.next;
        if (right.next >= 0) s.symbols[right.next].prev = b.left;
        push_bigram(s, left.prev, b.left);
        push_bigram(s, b.left, left.next);
    }

    const int32_t n_vocab = vocab_.n_vocab();
    for (int32_t i = n > 0 ? 0 : -1; i != -1; i = s.symbols[i].next) {
        const int32_t sym = s.symbols[i].sym;
        if (sym < n_vocab) {
            out.push_back(sym);
            continue;
        }
        // A symbol that is no token: llama.cpp emits the tokens of its single bytes, where
        // there are such.
        for (const char c : extra_syms_[sym - n_vocab]) {
            if (const TokenId id = find(std::string_view(&c, 1)); id != kNoToken) out.push_back(id);
        }
    }
}

void BpeTokenizer::encode_text(std::string_view text, bool /*after_special*/, std::vector<TokenId> & out) const {
    // PCRE2 needs well-formed UTF-8; text that is not goes through llama.cpp's lenient
    // decoding first (invalid bytes become U+FFFD).
    unicode::SanitizedText sanitized;
    std::string_view bytes = text;
    std::string_view regex_text = text;
    if (!unicode::is_valid_utf8(text)) {
        sanitized = unicode::sanitize_utf8(text);
        bytes = sanitized.bytes;
        regex_text = sanitized.regex;
    }
    Scratch scratch;
    if (splitter_.empty()) {
        if (!bytes.empty()) encode_word(bytes, scratch, out);
        return;
    }
    // Words repeat: each distinct word is merged once per call, later copies reuse the
    // ids already in `out` (kept as offsets, since `out` grows).
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
    for (const TextSpan span : splitter_.split(regex_text)) {
        const std::string_view word = bytes.substr(span.begin, span.end - span.begin);
        if (const auto it = seen.find(word); it != seen.end()) {
            const auto [first, n] = it->second;
            out.resize(out.size() + n);
            std::copy_n(out.begin() + static_cast<std::ptrdiff_t>(first), n, out.end() - static_cast<std::ptrdiff_t>(n));
            continue;
        }
        const size_t first = out.size();
        encode_word(word, scratch, out);
        seen.emplace(word, std::make_pair(first, out.size() - first));
    }
}

}  // namespace toyllm
