// Corrupt-file suite for the GGUF reader (after llama.cpp's test-gguf.cpp): hand-made
// broken files, each of which must be rejected with the right GgufErrc and a message
// that names the file and the problem.
//
// The bytes are built here with a tiny little-endian builder, not with GgufWriter: the
// writer has its own tests and must not be the oracle for what a corrupt file looks
// like. Every case starts from one small valid file (base_spec) and breaks one thing.
#include "testing.h"
#include "toyllm/gguf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using toyllm::GgufErrc;
using toyllm::GgufError;
using toyllm::GgufFile;
using toyllm::GgufType;

std::string_view errc_name(GgufErrc c) {
    switch (c) {
        case GgufErrc::TRUNCATED:        return "TRUNCATED";
        case GgufErrc::BAD_MAGIC:        return "BAD_MAGIC";
        case GgufErrc::BAD_VERSION:      return "BAD_VERSION";
        case GgufErrc::BAD_LENGTH:       return "BAD_LENGTH";
        case GgufErrc::BAD_VALUE_TYPE:   return "BAD_VALUE_TYPE";
        case GgufErrc::BAD_VALUE:        return "BAD_VALUE";
        case GgufErrc::DUPLICATE_KEY:    return "DUPLICATE_KEY";
        case GgufErrc::WRONG_KEY_TYPE:   return "WRONG_KEY_TYPE";
        case GgufErrc::BAD_ALIGNMENT:    return "BAD_ALIGNMENT";
        case GgufErrc::BAD_DIMS:         return "BAD_DIMS";
        case GgufErrc::UNKNOWN_TYPE:     return "UNKNOWN_TYPE";
        case GgufErrc::BAD_BLOCK:        return "BAD_BLOCK";
        case GgufErrc::DUPLICATE_TENSOR: return "DUPLICATE_TENSOR";
        case GgufErrc::MISALIGNED:       return "MISALIGNED";
        case GgufErrc::OUT_OF_BOUNDS:    return "OUT_OF_BOUNDS";
        case GgufErrc::OVERLAP:          return "OVERLAP";
        case GgufErrc::MISSING_KEY:      return "MISSING_KEY";
        case GgufErrc::MISSING_TENSOR:   return "MISSING_TENSOR";
        case GgufErrc::BAD_TENSOR:       return "BAD_TENSOR";
    }
    return "?";
}

// Appends little-endian fields; independent of the reader and the writer under test.
class Bytes {
  public:
    Bytes & u8(uint8_t v) { return le(v); }
    Bytes & u32(uint32_t v) { return le(v); }
    Bytes & u64(uint64_t v) { return le(v); }
    Bytes & i32(int32_t v) { return le(static_cast<uint32_t>(v)); }
    Bytes & i64(int64_t v) { return le(static_cast<uint64_t>(v)); }
    Bytes & f32(float v) { return le(std::bit_cast<uint32_t>(v)); }
    // A GGUF string: u64 length, then the bytes.
    Bytes & str(std::string_view s) { return u64(s.size()).raw(s); }
    Bytes & raw(std::string_view s) {
        b_.insert(b_.end(), s.begin(), s.end());
        return *this;
    }
    Bytes & raw(const std::vector<uint8_t> & v) {
        b_.insert(b_.end(), v.begin(), v.end());
        return *this;
    }
    Bytes & zeros(size_t n) {
        b_.resize(b_.size() + n, 0);
        return *this;
    }
    size_t size() const { return b_.size(); }
    const std::vector<uint8_t> & vec() const { return b_; }

  private:
    template <class T> Bytes & le(T v) {
        for (size_t i = 0; i < sizeof(T); ++i) b_.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
        return *this;
    }
    std::vector<uint8_t> b_;
};

constexpr uint32_t kF32 = 0;   // ggml type ids
constexpr uint32_t kQ8_0 = 8;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

uint32_t id(GgufType t) { return static_cast<uint32_t>(t); }

// Serialized kv payloads: u32 value type | value.
std::vector<uint8_t> val_u32(uint32_t v) { return Bytes().u32(id(GgufType::UINT32)).u32(v).vec(); }
std::vector<uint8_t> val_u64(uint64_t v) { return Bytes().u32(id(GgufType::UINT64)).u64(v).vec(); }
std::vector<uint8_t> val_bool(uint8_t v) { return Bytes().u32(id(GgufType::BOOL)).u8(v).vec(); }
std::vector<uint8_t> val_str(std::string_view s) { return Bytes().u32(id(GgufType::STRING)).str(s).vec(); }
// A string value whose length field lies.
std::vector<uint8_t> val_str_len(uint64_t len, std::string_view s) {
    return Bytes().u32(id(GgufType::STRING)).u64(len).raw(s).vec();
}
std::vector<uint8_t> val_arr_str(const std::vector<std::string> & v) {
    Bytes b;
    b.u32(id(GgufType::ARRAY)).u32(id(GgufType::STRING)).u64(v.size());
    for (const std::string & s : v) b.str(s);
    return b.vec();
}
std::vector<uint8_t> val_arr_f32(const std::vector<float> & v) {
    Bytes b;
    b.u32(id(GgufType::ARRAY)).u32(id(GgufType::FLOAT32)).u64(v.size());
    for (float f : v) b.f32(f);
    return b.vec();
}
std::vector<uint8_t> val_arr_i32(const std::vector<int32_t> & v) {
    Bytes b;
    b.u32(id(GgufType::ARRAY)).u32(id(GgufType::INT32)).u64(v.size());
    for (int32_t x : v) b.i32(x);
    return b.vec();
}
// An array header with any element type id and count, followed by `body`.
std::vector<uint8_t> val_arr_raw(uint32_t elem_type, uint64_t count, const std::vector<uint8_t> & body) {
    return Bytes().u32(id(GgufType::ARRAY)).u32(elem_type).u64(count).raw(body).vec();
}

struct KvSpec {
    KvSpec(std::string k, std::vector<uint8_t> p) : key(std::move(k)), payload(std::move(p)) {}

    std::string key;
    std::vector<uint8_t> payload;      // u32 type | value
    std::optional<uint64_t> key_len;  // default: key.size(); set to make the length lie
};

struct TensorSpec {
    TensorSpec(std::string n, std::vector<int64_t> dims, uint32_t t, uint64_t off)
        : name(std::move(n)), ne(std::move(dims)), type(t), offset(off) {}

    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    uint64_t offset;
    int64_t n_dims = -1;               // -1: ne.size(); otherwise written as is (lying n_dims)
    std::optional<uint64_t> name_len;  // default: name.size()
};

// A whole file, one field per part so that a case can break exactly one.
struct FileSpec {
    std::string magic = "GGUF";
    uint32_t version = 3;
    std::optional<uint64_t> n_tensors;  // default: tensors.size()
    std::optional<uint64_t> n_kv;       // default: kvs.size()
    std::vector<KvSpec> kvs;
    std::vector<TensorSpec> tensors;
    uint64_t pad_alignment = 32;  // padding written before the data section
    uint64_t data_size = 0;       // bytes of the data section, filled with a pattern
};

// The built bytes and where each field starts, so that cases can cut inside fields.
struct Built {
    std::vector<uint8_t> bytes;
    std::map<std::string, size_t> at;
};

uint8_t data_byte(size_t i) { return static_cast<uint8_t>(i * 7 + 1); }

Built build(const FileSpec & s) {
    Bytes b;
    Built out;
    b.raw(s.magic);
    out.at["version"] = b.size();
    b.u32(s.version);
    out.at["n_tensors"] = b.size();
    b.u64(s.n_tensors.value_or(s.tensors.size()));
    out.at["n_kv"] = b.size();
    b.u64(s.n_kv.value_or(s.kvs.size()));
    for (size_t i = 0; i < s.kvs.size(); ++i) {
        const std::string k = "kv" + std::to_string(i);
        out.at[k] = b.size();
        b.u64(s.kvs[i].key_len.value_or(s.kvs[i].key.size()));
        out.at[k + ".key"] = b.size();
        b.raw(s.kvs[i].key);
        out.at[k + ".type"] = b.size();
        out.at[k + ".value"] = b.size() + 4;
        b.raw(s.kvs[i].payload);
    }
    for (size_t i = 0; i < s.tensors.size(); ++i) {
        const TensorSpec & t = s.tensors[i];
        const std::string k = "t" + std::to_string(i);
        out.at[k] = b.size();
        b.u64(t.name_len.value_or(t.name.size()));
        out.at[k + ".name"] = b.size();
        b.raw(t.name);
        out.at[k + ".n_dims"] = b.size();
        b.u32(static_cast<uint32_t>(t.n_dims < 0 ? static_cast<int64_t>(t.ne.size()) : t.n_dims));
        out.at[k + ".ne"] = b.size();
        for (int64_t n : t.ne) b.i64(n);
        out.at[k + ".type"] = b.size();
        b.u32(t.type);
        out.at[k + ".offset"] = b.size();
        b.u64(t.offset);
    }
    out.at["infos_end"] = b.size();
    if (!s.tensors.empty()) b.zeros((s.pad_alignment - b.size() % s.pad_alignment) % s.pad_alignment);
    out.at["data"] = b.size();
    for (size_t i = 0; i < s.data_size; ++i) b.u8(data_byte(i));
    out.at["end"] = b.size();
    out.bytes = b.vec();
    return out;
}

const std::vector<std::string> kTokens = {"<unk>", "<s>", "</s>", "hello", "world", "foo", "bar", "baz"};
const std::vector<float> kScores = {0.0f, -1.0f, -2.0f, -3.0f, -4.0f, -5.0f, -6.0f, -7.0f};

// The valid file every case breaks. The arrays come first so that fields cut in the
// later kvs lie far enough into the file for the reader's up-front bound on the counts
// (13 bytes per kv, 32 per tensor info) to pass, and the truncation is seen at the field.
// Data: f32 [8,2] = 64 bytes at 0; q8_0 [32,2] = 2 rows of 1 block of 34 bytes = 68,
// padded to 96, at 64; f32 [8] = 32 bytes at 160; 192 in all, the last tensor ending on
// the alignment so that every strict prefix of the file is invalid.
FileSpec base_spec() {
    FileSpec s;
    s.kvs = {
        {"tokenizer.ggml.tokens", val_arr_str(kTokens)},
        {"tokenizer.ggml.scores", val_arr_f32(kScores)},
        {"general.architecture", val_str("llama")},
        {"general.alignment", val_u32(32)},
    };
    s.tensors = {
        {"tok_embd.weight", {8, 2}, kF32, 0},
        {"blk.0.attn_q.weight", {32, 2}, kQ8_0, 64},
        {"output_norm.weight", {8}, kF32, 160},
    };
    s.data_size = 192;
    return s;
}

const Built & base() {
    static const Built b = build(base_spec());
    return b;
}

// Parses a copy in a heap buffer of exactly the input's size, so that AddressSanitizer
// catches any read past the end (a vector's spare capacity would hide it). Returns the
// number of kvs and tensors; the GgufFile cannot outlive the buffer it views.
std::pair<size_t, size_t> parse_exact(const std::vector<uint8_t> & bytes, const std::string & name) {
    auto buf = std::make_unique<uint8_t[]>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), buf.get());
    const GgufFile f = GgufFile::from_bytes({buf.get(), bytes.size()}, name);
    return {f.kvs().size(), f.tensors().size()};
}

struct Case {
    std::string name;
    std::vector<uint8_t> bytes;
    GgufErrc code;
    std::string needle;  // the message must contain it
};

void PrintTo(const Case & c, std::ostream * os) { *os << c.name << " (" << c.bytes.size() << " bytes)"; }

KvSpec & kv(FileSpec & s, std::string_view key) {
    for (KvSpec & k : s.kvs) {
        if (k.key == key) return k;
    }
    throw std::logic_error("base_spec has no kv " + std::string(key));
}

Case mutated(std::string name, GgufErrc code, std::string needle, const std::function<void(FileSpec &)> & edit) {
    FileSpec s = base_spec();
    edit(s);
    return {std::move(name), build(s).bytes, code, std::move(needle)};
}

// The base file cut to its first `n` bytes, `n` given as a field's start plus a delta.
Case truncated(std::string name, const std::string & field, int64_t delta, GgufErrc code, std::string needle) {
    const Built & b = base();
    const auto n = static_cast<size_t>(static_cast<int64_t>(b.at.at(field)) + delta);
    if (n >= b.bytes.size()) throw std::logic_error("truncation " + name + " is not a strict prefix");
    return {std::move(name), std::vector<uint8_t>(b.bytes.begin(), b.bytes.begin() + n), code, std::move(needle)};
}

std::vector<Case> all_cases() {
    using E = GgufErrc;
    std::vector<Case> c;

    // Truncation at every section boundary and inside each kind of field.
    c.push_back({"empty", {}, E::TRUNCATED, "file ends inside the magic at offset 0"});
    c.push_back(truncated("in_magic", "version", -2, E::TRUNCATED, "file ends inside the magic"));
    c.push_back(truncated("after_magic", "version", 0, E::TRUNCATED, "file ends inside the version"));
    c.push_back(truncated("in_version", "version", 3, E::TRUNCATED, "file ends inside the version"));
    c.push_back(truncated("in_n_tensors", "n_tensors", 5, E::TRUNCATED, "file ends inside the tensor count"));
    c.push_back(truncated("in_n_kv", "n_kv", 1, E::TRUNCATED, "file ends inside the kv count"));
    // Right after the header the counts cannot fit in what is left: caught up front.
    c.push_back(truncated("after_header", "kv0", 0, E::BAD_LENGTH, "kv count 4 cannot fit in the 0 bytes"));
    c.push_back(truncated("in_first_kv_strings", "kv0.value", 30, E::BAD_LENGTH, "cannot fit in the"));
    c.push_back(truncated("in_key_length", "kv2", 3, E::TRUNCATED, "kv 2: file ends inside a key"));
    c.push_back(truncated("in_key", "kv2.key", 5, E::BAD_LENGTH, "kv 2: a key at offset"));
    c.push_back(truncated("in_value_type", "kv3.type", 2, E::TRUNCATED,
                          "kv 3 'general.alignment': file ends inside value type"));
    c.push_back(truncated("in_scalar_value", "kv3.value", 1, E::TRUNCATED,
                          "kv 3 'general.alignment': file ends inside a value"));
    c.push_back(truncated("in_string_length", "kv2.value", 4, E::TRUNCATED,
                          "kv 2 'general.architecture': file ends inside a string value"));
    c.push_back(truncated("in_string_value", "kv2.value", 8 + 2, E::BAD_LENGTH,
                          "kv 2 'general.architecture': a string value at offset"));
    c.push_back(truncated("in_array_elem_type", "kv1.value", 2, E::TRUNCATED,
                          "kv 1 'tokenizer.ggml.scores': file ends inside array element type"));
    c.push_back(truncated("in_array_count", "kv1.value", 4 + 3, E::TRUNCATED,
                          "kv 1 'tokenizer.ggml.scores': file ends inside the array count"));
    c.push_back(truncated("in_array_elements", "kv1.value", 12 + 10, E::BAD_LENGTH,
                          "kv 1 'tokenizer.ggml.scores': array of 8 f32"));
    c.push_back(truncated("after_kvs", "t0", 0, E::TRUNCATED, "tensor 0: file ends inside a tensor name"));
    c.push_back(truncated("in_tensor_name_length", "t1", 6, E::TRUNCATED, "tensor 1: file ends inside a tensor name"));
    c.push_back(truncated("in_tensor_name", "t1.name", 4, E::BAD_LENGTH, "tensor 1: a tensor name at offset"));
    c.push_back(truncated("in_n_dims", "t1.n_dims", 1, E::TRUNCATED,
                          "tensor 1 'blk.0.attn_q.weight': file ends inside n_dims"));
    c.push_back(truncated("in_ne", "t1.ne", 8 + 4, E::TRUNCATED,
                          "tensor 1 'blk.0.attn_q.weight': file ends inside a dimension"));
    c.push_back(truncated("in_tensor_type", "t1.type", 3, E::TRUNCATED,
                          "tensor 1 'blk.0.attn_q.weight': file ends inside the tensor type"));
    c.push_back(truncated("in_tensor_offset", "t2.offset", 7, E::TRUNCATED,
                          "tensor 2 'output_norm.weight': file ends inside the tensor offset"));
    c.push_back(truncated("after_tensor_infos", "infos_end", 0, E::TRUNCATED,
                          "file ends inside the padding before the tensor data"));
    c.push_back(truncated("in_padding", "infos_end", 1, E::TRUNCATED,
                          "file ends inside the padding before the tensor data"));
    c.push_back(truncated("at_data_start", "data", 0, E::OUT_OF_BOUNDS,
                          "tensor 'tok_embd.weight': data [0, +64) ends past the end of the file (data section is 0 bytes)"));
    c.push_back(truncated("in_tensor_data", "data", 100, E::OUT_OF_BOUNDS,
                          "tensor 'blk.0.attn_q.weight': data [64, +68) ends past the end"));
    c.push_back(truncated("one_byte_short", "end", -1, E::OUT_OF_BOUNDS,
                          "tensor 'output_norm.weight': data [160, +32) ends past the end of the file (data section is 191 bytes)"));

    // Header.
    c.push_back(mutated("bad_magic", E::BAD_MAGIC, "not a GGUF file (magic 'GGUX', expected 'GGUF')",
                        [](FileSpec & s) { s.magic = "GGUX"; }));
    c.push_back(mutated("zero_magic", E::BAD_MAGIC, "magic '\\x00\\x00\\x00\\x00'",
                        [](FileSpec & s) { s.magic = std::string(4, '\0'); }));
    c.push_back(mutated("version_0", E::BAD_VERSION, "GGUF version 0 is not supported", [](FileSpec & s) { s.version = 0; }));
    c.push_back(mutated("version_1", E::BAD_VERSION, "GGUF version 1 is not supported", [](FileSpec & s) { s.version = 1; }));
    c.push_back(mutated("version_4", E::BAD_VERSION, "GGUF version 4 is not supported", [](FileSpec & s) { s.version = 4; }));
    c.push_back(mutated("version_big_endian", E::BAD_VERSION, "big-endian GGUF (version 3 byte-swapped)",
                        [](FileSpec & s) { s.version = 0x03000000; }));
    c.push_back(mutated("huge_n_kv", E::BAD_LENGTH, "kv count 4611686018427387904 cannot fit",
                        [](FileSpec & s) { s.n_kv = uint64_t{1} << 62; }));
    c.push_back(mutated("max_n_kv", E::BAD_LENGTH, "kv count 18446744073709551615 cannot fit",
                        [](FileSpec & s) { s.n_kv = kU64Max; }));
    c.push_back(mutated("huge_n_tensors", E::BAD_LENGTH, "tensor count 4611686018427387904 cannot fit",
                        [](FileSpec & s) { s.n_tensors = uint64_t{1} << 62; }));
    c.push_back(mutated("max_n_tensors", E::BAD_LENGTH, "tensor count 18446744073709551615 cannot fit",
                        [](FileSpec & s) { s.n_tensors = kU64Max; }));

    // Lengths and counts.
    c.push_back(mutated("key_length_past_eof", E::BAD_LENGTH, "kv 2: a key at offset 241 has length 1099511627776",
                        [](FileSpec & s) { kv(s, "general.architecture").key_len = uint64_t{1} << 40; }));
    c.push_back(mutated("tensor_name_length_past_eof", E::BAD_LENGTH, "tensor 1: a tensor name at offset",
                        [](FileSpec & s) { s.tensors[1].name_len = 1000; }));
    c.push_back(mutated("string_length_past_eof", E::BAD_LENGTH,
                        "kv 2 'general.architecture': a string value at offset 273 has length 100000, past the end",
                        [](FileSpec & s) { kv(s, "general.architecture").payload = val_str_len(100000, "llama"); }));
    c.push_back(mutated("string_length_2_63", E::BAD_LENGTH, "has length 9223372036854775808, past the end",
                        [](FileSpec & s) { kv(s, "general.architecture").payload = val_str_len(uint64_t{1} << 63, "llama"); }));
    c.push_back(mutated("string_length_max", E::BAD_LENGTH, "has length 18446744073709551615, past the end",
                        [](FileSpec & s) { kv(s, "general.architecture").payload = val_str_len(kU64Max, "llama"); }));
    // 2^62 + 1 f32s are 2^64 + 4 bytes: a reader multiplying first would see 4.
    c.push_back(mutated("array_count_overflow_f32", E::BAD_LENGTH, "array of 4611686018427387905 f32",
                        [](FileSpec & s) {
                            kv(s, "tokenizer.ggml.scores").payload =
                                val_arr_raw(id(GgufType::FLOAT32), (uint64_t{1} << 62) + 1, Bytes().f32(1.0f).vec());
                        }));
    c.push_back(mutated("array_count_overflow_u64", E::BAD_LENGTH, "array of 2305843009213693952 u64",
                        [](FileSpec & s) {
                            s.kvs.push_back({"toyllm.big", val_arr_raw(id(GgufType::UINT64), uint64_t{1} << 61, {})});
                        }));
    c.push_back(mutated("huge_string_array_count", E::BAD_LENGTH, "array of 1152921504606846976 str",
                        [](FileSpec & s) {
                            kv(s, "tokenizer.ggml.tokens").payload =
                                val_arr_raw(id(GgufType::STRING), uint64_t{1} << 60, Bytes().str("x").vec());
                        }));
    c.push_back(mutated("string_array_element_past_eof", E::BAD_LENGTH, "an array string at offset",
                        [](FileSpec & s) {
                            kv(s, "tokenizer.ggml.tokens").payload =
                                val_arr_raw(id(GgufType::STRING), 2, Bytes().str("a").u64(1u << 30).raw("b").vec());
                        }));

    // Value types and values.
    c.push_back(mutated("nested_array", E::BAD_VALUE_TYPE, "kv 0 'tokenizer.ggml.tokens': nested arrays are not allowed",
                        [](FileSpec & s) {
                            kv(s, "tokenizer.ggml.tokens").payload =
                                val_arr_raw(id(GgufType::ARRAY), 1, val_arr_f32({1.0f}));
                        }));
    c.push_back(mutated("unknown_value_type_13", E::BAD_VALUE_TYPE, "unknown value type 13",
                        [](FileSpec & s) { s.kvs.push_back({"toyllm.odd", Bytes().u32(13).u32(0).vec()}); }));
    c.push_back(mutated("unknown_value_type_max", E::BAD_VALUE_TYPE, "unknown value type 4294967295",
                        [](FileSpec & s) { s.kvs.push_back({"toyllm.odd", Bytes().u32(0xFFFFFFFF).u32(0).vec()}); }));
    c.push_back(mutated("unknown_array_elem_type", E::BAD_VALUE_TYPE, "unknown array element type 13",
                        [](FileSpec & s) { s.kvs.push_back({"toyllm.odd", val_arr_raw(13, 1, Bytes().u32(0).vec())}); }));
    c.push_back(mutated("bool_value_2", E::BAD_VALUE, "kv 4 'toyllm.flag': bool value 2 is neither 0 nor 1",
                        [](FileSpec & s) { s.kvs.push_back({"toyllm.flag", val_bool(2)}); }));
    c.push_back(mutated("bool_array_element_255", E::BAD_VALUE, "bool element 1 is 255",
                        [](FileSpec & s) {
                            s.kvs.push_back({"toyllm.flags", val_arr_raw(id(GgufType::BOOL), 3, Bytes().u8(1).u8(255).u8(0).vec())});
                        }));
    c.push_back(mutated("duplicate_key", E::DUPLICATE_KEY,
                        "kv 4 'general.architecture': duplicate key (first at kv 2)",
                        [](FileSpec & s) { s.kvs.push_back({"general.architecture", val_str("llama")}); }));

    // Well-known keys with the wrong type, and the alignment.
    c.push_back(mutated("alignment_0", E::BAD_ALIGNMENT, "general.alignment is 0, not a power of two",
                        [](FileSpec & s) { kv(s, "general.alignment").payload = val_u32(0); }));
    c.push_back(mutated("alignment_3", E::BAD_ALIGNMENT, "general.alignment is 3, not a power of two",
                        [](FileSpec & s) { kv(s, "general.alignment").payload = val_u32(3); }));
    c.push_back(mutated("alignment_u64", E::WRONG_KEY_TYPE, "kv 3 'general.alignment': must be u32, found u64",
                        [](FileSpec & s) { kv(s, "general.alignment").payload = val_u64(32); }));
    c.push_back(mutated("architecture_u32", E::WRONG_KEY_TYPE, "kv 2 'general.architecture': must be str, found u32",
                        [](FileSpec & s) { kv(s, "general.architecture").payload = val_u32(7); }));
    c.push_back(mutated("tokens_i32_array", E::WRONG_KEY_TYPE,
                        "kv 0 'tokenizer.ggml.tokens': must be arr[str], found arr[i32]",
                        [](FileSpec & s) { kv(s, "tokenizer.ggml.tokens").payload = val_arr_i32({1, 2, 3}); }));
    c.push_back(mutated("tokens_plain_string", E::WRONG_KEY_TYPE, "must be arr[str], found str",
                        [](FileSpec & s) { kv(s, "tokenizer.ggml.tokens").payload = val_str("<s>"); }));

    // Tensor infos.
    c.push_back(mutated("duplicate_tensor", E::DUPLICATE_TENSOR,
                        "tensor 2 'tok_embd.weight': duplicate tensor name (first at tensor 0)",
                        [](FileSpec & s) { s.tensors[2].name = "tok_embd.weight"; }));
    for (uint32_t bad : {4u, 31u, 40u, 0xFFFFFFFFu}) {
        c.push_back(mutated("unknown_ggml_type_" + std::to_string(bad), E::UNKNOWN_TYPE,
                            "tensor 1 'blk.0.attn_q.weight': unknown ggml type id " + std::to_string(bad),
                            [bad](FileSpec & s) { s.tensors[1].type = bad; }));
    }
    c.push_back(mutated("q8_0_ne0_33", E::BAD_BLOCK, "ne[0] = 33 is not a multiple of q8_0's block size 32",
                        [](FileSpec & s) { s.tensors[1].ne = {33, 2}; }));
    c.push_back(mutated("n_dims_5", E::BAD_DIMS, "tensor 0 'tok_embd.weight': n_dims is 5 (must be 1 to 4)",
                        [](FileSpec & s) { s.tensors[0].ne = {8, 2, 1, 1, 1}; }));
    c.push_back(mutated("n_dims_0", E::BAD_DIMS, "tensor 0 'tok_embd.weight': n_dims is 0 (must be 1 to 4)",
                        [](FileSpec & s) { s.tensors[0].ne = {}; }));
    c.push_back(mutated("n_dims_max", E::BAD_DIMS, "n_dims is 4294967295",
                        [](FileSpec & s) { s.tensors[0].n_dims = 0xFFFFFFFF; }));
    c.push_back(mutated("zero_dimension", E::BAD_DIMS, "ne[1] is 0 (must be >= 1)",
                        [](FileSpec & s) { s.tensors[0].ne = {8, 0}; }));
    c.push_back(mutated("negative_dimension", E::BAD_DIMS, "ne[0] is -8 (must be >= 1)",
                        [](FileSpec & s) { s.tensors[0].ne = {-8, 2}; }));
    c.push_back(mutated("element_count_overflow", E::BAD_DIMS, "element count overflows at ne[1] = 4294967296",
                        [](FileSpec & s) {
                            s.tensors[0].ne = {int64_t{1} << 32, int64_t{1} << 32, int64_t{1} << 32, int64_t{1} << 32};
                        }));
    // 2^62 f32 elements fit in int64 but their 2^64 bytes do not fit in uint64.
    c.push_back(mutated("byte_size_overflow", E::BAD_DIMS, "byte size overflows",
                        [](FileSpec & s) { s.tensors[0].ne = {int64_t{1} << 31, int64_t{1} << 31}; }));

    // Tensor data placement.
    c.push_back(mutated("offset_past_eof", E::OUT_OF_BOUNDS,
                        "tensor 'output_norm.weight': data [1048576, +32) ends past the end of the file",
                        [](FileSpec & s) { s.tensors[2].offset = 1 << 20; }));
    c.push_back(mutated("offset_at_eof", E::OUT_OF_BOUNDS, "data [192, +32) ends past the end of the file",
                        [](FileSpec & s) { s.tensors[2].offset = 192; }));
    c.push_back(mutated("offset_plus_size_past_eof", E::OUT_OF_BOUNDS,
                        "tensor 'blk.0.attn_q.weight': data [160, +68) ends past the end of the file (data section is 192 bytes)",
                        [](FileSpec & s) { s.tensors[1].offset = 160; }));
    c.push_back(mutated("offset_near_u64_max", E::OUT_OF_BOUNDS, "ends past the end of the file",
                        [](FileSpec & s) { s.tensors[2].offset = kU64Max - 31; }));
    c.push_back(mutated("misaligned_offset", E::MISALIGNED,
                        "tensor 1 'blk.0.attn_q.weight': offset 16 is not a multiple of the alignment 32",
                        [](FileSpec & s) { s.tensors[1].offset = 16; }));
    // The base offset 160 is a multiple of 32 but not of 64.
    c.push_back(mutated("misaligned_for_larger_alignment", E::MISALIGNED, "offset 160 is not a multiple of the alignment 64",
                        [](FileSpec & s) {
                            kv(s, "general.alignment").payload = val_u32(64);
                            s.pad_alignment = 64;
                        }));
    c.push_back(mutated("overlapping_tensors", E::OVERLAP,
                        "tensor 'blk.0.attn_q.weight': data at offset 32 overlaps tensor 'tok_embd.weight' [0, 64)",
                        [](FileSpec & s) { s.tensors[1].offset = 32; }));
    c.push_back(mutated("same_offset", E::OVERLAP, "overlaps tensor",
                        [](FileSpec & s) { s.tensors[2].offset = 64; }));
    // Listed out of offset order: the overlap must still be found.
    c.push_back(mutated("overlap_out_of_order", E::OVERLAP, "data at offset 32 overlaps tensor 'tok_embd.weight' [0, 64)",
                        [](FileSpec & s) {
                            std::swap(s.tensors[0], s.tensors[2]);
                            s.tensors[1].offset = 96;
                            s.tensors[0].offset = 32;  // output_norm.weight, now first in the list
                        }));
    return c;
}

class GgufCorrupt : public ::testing::TestWithParam<Case> {};

TEST_P(GgufCorrupt, IsRejectedWithCodeAndMessage) {
    const Case & c = GetParam();
    const std::string file = "corrupt/" + c.name + ".gguf";
    try {
        const auto [n_kv, n_tensors] = parse_exact(c.bytes, file);
        ADD_FAILURE() << "parsed without error: " << n_kv << " kvs, " << n_tensors << " tensors";
    } catch (const GgufError & e) {
        const std::string msg = e.what();
        EXPECT_EQ(errc_name(e.code()), errc_name(c.code)) << msg;
        EXPECT_EQ(msg.rfind("gguf: " + file + ": ", 0), 0u) << "message does not start with the file name: " << msg;
        EXPECT_NE(msg.find(c.needle), std::string::npos) << "message: " << msg << "\nexpected to contain: " << c.needle;
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, GgufCorrupt, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case> & p) { return p.param.name; });

// The suite is only meaningful if the file it breaks is valid.
TEST(GgufCorruptBase, ValidBaseParses) {
    const Built & b = base();
    const GgufFile f = GgufFile::from_bytes(b.bytes, "base.gguf");
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    ASSERT_EQ(f.kvs().size(), 4u);
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.data_offset(), b.at.at("data"));
    EXPECT_EQ(f.data_offset() % 32, 0u);
    // The padding case must cut real padding, and the last tensor must end the file.
    EXPECT_NE(b.at.at("infos_end"), b.at.at("data"));
    EXPECT_EQ(f.data_offset() + 192, b.bytes.size());

    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    const auto & tokens = f.get_array("tokenizer.ggml.tokens", GgufType::STRING);
    ASSERT_EQ(tokens.strs.size(), kTokens.size());
    for (size_t i = 0; i < kTokens.size(); ++i) EXPECT_EQ(tokens.strs[i], kTokens[i]);
    const auto & scores = f.get_array("tokenizer.ggml.scores", GgufType::FLOAT32);
    ASSERT_EQ(scores.count, kScores.size());
    EXPECT_EQ(scores.at<float>(7), -7.0f);
    EXPECT_EQ(f.get_u32("general.alignment"), 32u);

    const auto & q = f.get_tensor("blk.0.attn_q.weight");
    EXPECT_EQ(q.type, toyllm::DType::Q8_0);
    EXPECT_EQ(q.n_dims, 2u);
    EXPECT_EQ(q.ne[0], 32);
    EXPECT_EQ(q.ne[1], 2);
    EXPECT_EQ(q.offset, 64u);
    EXPECT_EQ(q.n_bytes, 68u);
    const auto data = f.tensor_data(q);
    ASSERT_EQ(data.size(), 68u);
    for (size_t i = 0; i < data.size(); ++i) ASSERT_EQ(data[i], data_byte(64 + i)) << "byte " << i;
    EXPECT_EQ(f.get_tensor("tok_embd.weight").n_bytes, 64u);
    EXPECT_EQ(f.get_tensor("output_norm.weight").offset, 160u);
}

TEST(GgufCorruptBase, HasEnoughCases) { EXPECT_GE(all_cases().size(), 30u); }

// Every strict prefix of the valid file, the cut after the tensor infos included, is
// rejected with a GgufError: never accepted, never another exception, never a crash.
TEST(GgufCorruptSweep, EveryStrictPrefixIsRejected) {
    const std::vector<uint8_t> & full = base().bytes;
    for (size_t n = 0; n < full.size(); ++n) {
        const std::vector<uint8_t> prefix(full.begin(), full.begin() + n);
        const std::string file = "prefix-" + std::to_string(n) + ".gguf";
        try {
            parse_exact(prefix, file);
            ADD_FAILURE() << "prefix of " << n << " bytes (of " << full.size() << ") was accepted";
        } catch (const GgufError & e) {
            EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
        } catch (const std::exception & e) {
            ADD_FAILURE() << "prefix of " << n << " bytes threw a non-GgufError: " << e.what();
        }
    }
}

// Each byte of the valid file overwritten with a few values: the reader either accepts
// the file or throws GgufError (under the sanitizers this checks that no input of this
// shape reads out of bounds or overflows).
TEST(GgufCorruptSweep, SingleByteCorruptionNeverCrashes) {
    const std::vector<uint8_t> & full = base().bytes;
    size_t rejected = 0;
    for (size_t i = 0; i < full.size(); ++i) {
        for (uint8_t v : {uint8_t{0x00}, uint8_t{0x01}, uint8_t{0x7f}, uint8_t{0x80}, uint8_t{0xff}}) {
            if (full[i] == v) continue;
            std::vector<uint8_t> bytes = full;
            bytes[i] = v;
            try {
                parse_exact(bytes, "flip.gguf");
            } catch (const GgufError &) {
                ++rejected;
            } catch (const std::exception & e) {
                ADD_FAILURE() << "byte " << i << " = " << int(v) << " threw a non-GgufError: " << e.what();
            }
        }
    }
    EXPECT_GT(rejected, 0u);
}

// GgufFile::open: the file system errors are IoError, an empty file is a truncated GGUF.
class GgufCorruptOpen : public ::testing::Test {
  protected:
    toyllm::testing::TempDir dir_;

    void write(const std::filesystem::path & p, const std::vector<uint8_t> & bytes) {
        std::ofstream out(p, std::ios::binary);
        out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        ASSERT_TRUE(out.good()) << p;
    }
};

TEST_F(GgufCorruptOpen, MissingPathIsIoError) {
    const std::string path = (dir_ / "no-such-model.gguf").string();
    try {
        GgufFile::open(path);
        FAIL() << "opened a missing file";
    } catch (const toyllm::IoError & e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    } catch (const std::exception & e) {
        FAIL() << "expected IoError, got: " << e.what();
    }
}

TEST_F(GgufCorruptOpen, DirectoryIsIoError) {
    const std::string path = dir_.path().string();
    try {
        GgufFile::open(path);
        FAIL() << "opened a directory";
    } catch (const toyllm::IoError & e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    } catch (const std::exception & e) {
        FAIL() << "expected IoError, got: " << e.what();
    }
}

TEST_F(GgufCorruptOpen, EmptyFileIsTruncated) {
    const std::string path = (dir_ / "empty.gguf").string();
    write(path, {});
    try {
        GgufFile::open(path);
        FAIL() << "opened an empty file";
    } catch (const GgufError & e) {
        EXPECT_EQ(errc_name(e.code()), errc_name(GgufErrc::TRUNCATED)) << e.what();
        EXPECT_NE(std::string(e.what()).find("gguf: " + path + ": "), std::string::npos) << e.what();
    } catch (const std::exception & e) {
        FAIL() << "expected GgufError, got: " << e.what();
    }
}

TEST_F(GgufCorruptOpen, TruncatedFileOnDiskIsRejected) {
    const std::string good = (dir_ / "good.gguf").string();
    const std::string cut = (dir_ / "cut.gguf").string();
    const std::vector<uint8_t> & full = base().bytes;
    write(good, full);
    write(cut, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(base().at.at("infos_end") + 1)));
    EXPECT_EQ(GgufFile::open(good).tensors().size(), 3u);
    try {
        GgufFile::open(cut);
        FAIL() << "opened a truncated file";
    } catch (const GgufError & e) {
        EXPECT_EQ(errc_name(e.code()), errc_name(GgufErrc::TRUNCATED)) << e.what();
        EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
    }
}

}  // namespace
