#include "tokenizer/pretokenizer.h"

#include "toyllm/tokenizer.h"

#include "tokenizer/unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <new>

namespace toyllm {

namespace {

// The regexes are llama.cpp's (llama-vocab.cpp, llm_tokenizer_bpe), which in turn are
// the Hugging Face tokenizer.json ones, "(?i:'s|...)" spelled out case by case.
constexpr std::string_view kGpt2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr std::string_view kLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kPoro = R"re( ?[^(\s|.,!?…。，、।۔،)]+)re";

// llama.cpp runs regexes without \p{..} through std::wregex after replacing every
// non-ASCII whitespace character of the text by U+000B, so such characters never match
// a literal class range. The CJK class "[一-龥ࠀ-一가-퟿]" (U+4E00-9FA5, U+0800-4E00,
// U+AC00-D7FF) is therefore written here without the whitespace inside U+0800-4E00
// (U+1680, U+2000-200A, U+2028-2029, U+202F, U+205F, U+3000).
constexpr std::string_view kDeepseekCjk =
    R"re([\x{0800}-\x{167F}\x{1681}-\x{1FFF}\x{200B}-\x{2027}\x{202A}-\x{202E}\x{2030}-\x{205E}\x{2060}-\x{2FFF})re"
    R"re(\x{3001}-\x{4E00}\x{4E00}-\x{9FA5}\x{AC00}-\x{D7FF}]+)re";
// deepseek-llm's letters (the cased-letter ranges of its tokenizer.json), code points
// spelled out: several are compatibility characters (U+1F7D, U+1FBE, U+2126, U+212A, ...)
// that any Unicode normalization of this source would silently change.
constexpr std::string_view kDeepseekLetters =
    R"re(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})re"
    R"re(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})re"
    R"re(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})re"
    R"re(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})re"
    R"re(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})re"
    R"re(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})re"
    R"re(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})re"
    R"re(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})re"
    R"re(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})re"
    R"re(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})re"
    R"re(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})re"
    R"re(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})re"
    R"re(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)re";
// "[!-/:-~！-／：-～‘-‟　-。]" without U+3000 (whitespace, see above).
constexpr std::string_view kDeepseekPunct =
    R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+)re";

struct NamedPre {
    std::vector<std::string_view> names;
    std::vector<std::string_view> regexes;
    bool ignore_merges = false;
    bool add_bos = false;
};

const NamedPre kPreTokenizers[] = {
    {.names = {"default"},
     .regexes = {R"re([\p{P}\$\+<=>\^~\|]+)re", kGpt2, R"re(\p{N}+)re", R"re([0-9][0-9][0-9])re"}},
    {.names = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe",
               "chatglm-bpe", "glm4"},
     .regexes = {kLlama3},
     .ignore_merges = true,
     .add_bos = true},
    {.names = {"deepseek-llm"},
     .regexes = {R"re([\r\n])re", kDeepseekLetters, kDeepseekPunct, R"re(\s+$)re", kDeepseekCjk, R"re(\p{N}+)re"}},
    {.names = {"deepseek-coder"},
     .regexes = {R"re([\r\n])re", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kDeepseekCjk, R"re(\p{N})re"}},
    {.names = {"falcon"}, .regexes = {R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2, R"re([0-9][0-9][0-9])re"}},
    {.names = {"gpt-2", "mpt", "olmo", "jais", "phi-2", "roberta-bpe", "jina-es", "jina-de", "jina-v1-en",
               "jina-v2-es", "jina-v2-de", "jina-v2-code"},
     .regexes = {kGpt2}},
    {.names = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     .regexes = {R"re(\p{N})re", kGpt2}},
    {.names = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"}, .regexes = {kQwen2}},
    {.names = {"poro-chat", "bloom", "gpt3-finnish"}, .regexes = {kPoro}},
    {.names = {"viking"}, .regexes = {kPoro, R"re(\p{N})re"}},
};

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    const int n = pcre2_get_error_message(code, buf, sizeof(buf));
    return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char *>(buf), n);
}

}  // namespace

PreTokenizerSpec pre_tokenizer_for(std::string_view pre) {
    if (pre.empty()) pre = "default";
    for (const NamedPre & p : kPreTokenizers) {
        for (std::string_view name : p.names) {
            if (name != pre) continue;
            PreTokenizerSpec spec;
            spec.regexes.assign(p.regexes.begin(), p.regexes.end());
            spec.ignore_merges = p.ignore_merges;
            spec.add_bos = p.add_bos;
            return spec;
        }
    }
    std::string known;
    for (const NamedPre & p : kPreTokenizers) {
        for (std::string_view name : p.names) known += (known.empty() ? "" : ", ") + std::string(name);
    }
    throw TokenizerError("tokenizer: unknown pre-tokenizer tokenizer.ggml.pre = '" + std::string(pre) +
                         "' (known: " + known + ")");
}

struct RegexSplitter::Pattern {
    std::string source;
    pcre2_code * code = nullptr;

    ~Pattern() { pcre2_code_free(code); }

    // Appends the pieces of text[span] to `out`.
    void split_piece(std::string_view text, TextSpan span, pcre2_match_data * md, std::vector<TextSpan> & out) const {
        const auto * subject = reinterpret_cast<PCRE2_SPTR>(text.data() + span.begin);
        const size_t len = span.end - span.begin;
        size_t pos = 0;
        size_t last = 0;
        while (pos < len) {
            int rc = pcre2_match(code, subject, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
                rc = pcre2_match(code, subject, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
            }
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                throw TokenizerError("tokenizer: pre-tokenizer regex /" + source + "/ failed: " + pcre2_message(rc));
            }
            const PCRE2_SIZE * ov = pcre2_get_ovector_pointer(md);
            const size_t s = ov[0];
            const size_t e = ov[1];
            if (e <= s) {  // an empty match cuts nothing; step over one character
                if (s >= len) break;
                pos = std::min(len, s + unicode::seq_len(static_cast<uint8_t>(subject[s])));
                continue;
            }
            if (s > last) out.push_back({span.begin + static_cast<uint32_t>(last), span.begin + static_cast<uint32_t>(s)});
            out.push_back({span.begin + static_cast<uint32_t>(s), span.begin + static_cast<uint32_t>(e)});
            last = pos = e;
        }
        if (last < len) out.push_back({span.begin + static_cast<uint32_t>(last), span.end});
    }
};

RegexSplitter::RegexSplitter(const std::vector<std::string> & patterns) {
    for (const std::string & src : patterns) {
        auto p = std::make_unique<Pattern>();
        p->source = src;
        int err = 0;
        PCRE2_SIZE err_offset = 0;
        p->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset, nullptr);
        if (p->code == nullptr) {
            throw TokenizerError("tokenizer: bad pre-tokenizer regex /" + src + "/ at offset " +
                                 std::to_string(err_offset) + ": " + pcre2_message(err));
        }
        pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
        patterns_.push_back(std::move(p));
    }
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter &&) noexcept = default;
RegexSplitter & RegexSplitter::operator=(RegexSplitter &&) noexcept = default;

std::vector<TextSpan> RegexSplitter::split(std::string_view text) const {
    if (text.size() >= UINT32_MAX) throw TokenizerError("tokenizer: text of " + std::to_string(text.size()) + " bytes is too long");
    std::vector<TextSpan> cur;
    if (text.empty()) return cur;
    cur.push_back({0, static_cast<uint32_t>(text.size())});
    std::vector<TextSpan> next;
    for (const auto & p : patterns_) {
        pcre2_match_data * md = pcre2_match_data_create_from_pattern(p->code, nullptr);
        if (md == nullptr) throw std::bad_alloc();
        next.clear();
        next.reserve(cur.size() + text.size() / 4);
        try {
            for (const TextSpan s : cur) p->split_piece(text, s, md, next);
        } catch (...) {
            pcre2_match_data_free(md);
            throw;
        }
        pcre2_match_data_free(md);
        cur.swap(next);
    }
    return cur;
}

}  // namespace toyllm
