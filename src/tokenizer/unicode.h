// UTF-8 and GPT-2 byte-level helpers shared by the tokenizers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace toyllm::unicode {

// Length of the UTF-8 sequence a byte starts, from its high bits alone, as llama.cpp's
// tokenizers split text: ASCII and stray continuation bytes 1, 0xC0-0xDF 2, 0xE0-0xEF 3,
// 0xF0-0xFF 4. Callers clip it to the bytes left.
inline size_t seq_len(uint8_t lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

void append_utf8(std::string & out, uint32_t cp);

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or values > U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Text that a Unicode regex engine accepts, cut at the same offsets as the text the
// tokenizer takes its bytes from. llama.cpp decodes leniently (an invalid byte becomes
// U+FFFD; overlong forms decode to their code point) and re-encodes; `bytes` is that
// re-encoding. `regex` equals it except that code points PCRE2 rejects (surrogates,
// values above U+10FFFF) are replaced by same-length stand-ins without letter, number
// or space properties.
struct SanitizedText {
    std::string bytes;
    std::string regex;
};
SanitizedText sanitize_utf8(std::string_view s);

// Number of bytes at the end of `s` that start a UTF-8 sequence still missing bytes
// (0 when `s` ends on a character boundary or with bytes that can never complete).
size_t incomplete_tail(std::string_view s);

// GPT-2's byte-level alphabet: every byte maps to one printable code point (printable
// Latin-1 bytes to themselves, the other 68 bytes to U+0100..U+0143 in byte order).
struct ByteLevel {
    ByteLevel();
    std::array<std::string, 256> encoded;  // byte -> UTF-8 of its code point
    // Code point -> byte, -1 for code points outside the alphabet.
    int decode(uint32_t cp) const { return cp < decoded.size() ? decoded[cp] : -1; }
    std::array<int16_t, 0x144> decoded;
};
const ByteLevel & byte_level();

// Decodes one code point of well-formed UTF-8 at s[i] and advances i; U+FFFD and one
// byte for anything malformed.
uint32_t next_code_point(std::string_view s, size_t & i);

}  // namespace toyllm::unicode
