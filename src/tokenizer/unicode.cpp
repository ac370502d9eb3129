#include "tokenizer/unicode.h"

namespace toyllm::unicode {

namespace {

bool is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

// Private-use and noncharacter stand-ins (no L/N/P/S/whitespace property), same UTF-8
// length as what they replace.
constexpr uint32_t kSurrogateStandIn = 0xE000;

}  // namespace

void append_utf8(std::string & out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

uint32_t next_code_point(std::string_view s, size_t & i) {
    const auto at = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    const uint8_t b0 = at(i);
    if (b0 < 0x80) {
        i += 1;
        return b0;
    }
    size_t n = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2, cp = b0 & 0x1F, min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3, cp = b0 & 0x0F, min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4, cp = b0 & 0x07, min = 0x10000;
    }
    if (n == 0 || i + n > s.size()) {
        i += 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k < n; ++k) {
        if (!is_cont(at(i + k))) {
            i += 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (at(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        i += 1;
        return 0xFFFD;
    }
    i += n;
    return cp;
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const uint8_t b = static_cast<uint8_t>(s[i]);
        if (b < 0x80) {
            ++i;
            continue;
        }
        const size_t before = i;
        const uint32_t cp = next_code_point(s, i);
        // U+FFFD spelled out in the text is fine; one produced from a single bad byte is not.
        if (cp == 0xFFFD && i - before == 1) return false;
    }
    return true;
}

SanitizedText sanitize_utf8(std::string_view s) {
    SanitizedText out;
    out.bytes.reserve(s.size() + 16);
    out.regex.reserve(s.size() + 16);
    const auto at = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    size_t i = 0;
    while (i < s.size()) {
        // llama.cpp's unicode_cpt_from_utf8: checks continuation bytes only.
        const uint8_t b0 = at(i);
        uint32_t cp = 0xFFFD;
        size_t n = 1;
        if (b0 < 0x80) {
            cp = b0;
        } else if ((b0 & 0x40) == 0) {
            // a stray continuation byte
        } else if ((b0 & 0x20) == 0) {
            if (i + 1 < s.size() && is_cont(at(i + 1))) cp = ((b0 & 0x1Fu) << 6) | (at(i + 1) & 0x3F), n = 2;
        } else if ((b0 & 0x10) == 0) {
            if (i + 2 < s.size() && is_cont(at(i + 1)) && is_cont(at(i + 2))) {
                cp = ((b0 & 0x0Fu) << 12) | ((at(i + 1) & 0x3Fu) << 6) | (at(i + 2) & 0x3F), n = 3;
            }
        } else if ((b0 & 0x08) == 0) {
            if (i + 3 < s.size() && is_cont(at(i + 1)) && is_cont(at(i + 2)) && is_cont(at(i + 3))) {
                cp = ((b0 & 0x07u) << 18) | ((at(i + 1) & 0x3Fu) << 12) | ((at(i + 2) & 0x3Fu) << 6) | (at(i + 3) & 0x3F);
                n = 4;
            }
        }
        if (cp > 0x10FFFF) cp = 0xFFFD;  // llama.cpp cannot re-encode these either
        i += n;
        append_utf8(out.bytes, cp);
        append_utf8(out.regex, cp >= 0xD800 && cp <= 0xDFFF ? kSurrogateStandIn : cp);
    }
    return out;
}

size_t incomplete_tail(std::string_view s) {
    const size_t n = s.size();
    for (size_t k = 1; k <= 3 && k <= n; ++k) {
        const uint8_t b = static_cast<uint8_t>(s[n - k]);
        if (is_cont(b)) continue;
        size_t need = 0;
        if (b >= 0xC2 && b <= 0xDF) need = 2;
        else if (b >= 0xE0 && b <= 0xEF) need = 3;
        else if (b >= 0xF0 && b <= 0xF4) need = 4;
        return need > k ? k : 0;
    }
    return 0;
}

ByteLevel::ByteLevel() {
    decoded.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
        append_utf8(encoded[b], cp);
        decoded[cp] = static_cast<int16_t>(b);
    }
}

const ByteLevel & byte_level() {
    static const ByteLevel table;
    return table;
}

}  // namespace toyllm::unicode
