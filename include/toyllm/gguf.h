// GGUF, the model file format of llama.cpp: reading (mmap, zero copy, every field
// validated against the file) and writing (streamed, aligned, atomic).
//
// Layout, all integers little-endian:
//
//   header        "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//   kv   x n_kv   string key | u32 value type | value
//   info x n_t    string name | u32 n_dims (1..4) | i64 ne[n_dims] | u32 ggml type | u64 offset
//   padding       zeros up to a multiple of general.alignment (u32, default 32)
//   data          tensor bytes; offsets are relative to the start of this section,
//                 multiples of the alignment, each tensor padded with zeros to it
//
//   string = u64 length | bytes (no terminating NUL)
//   value  = the scalar's bytes | string | array
//   array  = u32 element type | u64 count | count elements (no nested arrays)
//
// ne[0] is the innermost (contiguous) dimension: a torch (out, in) matrix has ne = [in, out].
// Files without tensors end right after the last kv (the Python writer of llama.cpp
// writes vocab-only files that way); the writer here does the same.
#pragma once

#include "toyllm/dtype.h"
#include "toyllm/error.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace toyllm {

class MappedFile;

// What went wrong, for code and tests that must tell failures apart; the message
// carries the details (file, field, value).
enum class GgufErrc {
    TRUNCATED,         // the file ends inside a fixed-size field or the padding
    BAD_MAGIC,         // not "GGUF"
    BAD_VERSION,       // version other than 2 or 3 (v1 and big-endian files included)
    BAD_LENGTH,        // a count or length larger than the file can hold
    BAD_VALUE_TYPE,    // unknown value type id, or a nested array
    BAD_VALUE,         // a bool other than 0/1
    DUPLICATE_KEY,
    WRONG_KEY_TYPE,    // a well-known key with the wrong type (general.alignment not u32, ...)
    BAD_ALIGNMENT,     // general.alignment 0 or not a power of two
    BAD_DIMS,          // n_dims 0 or > 4, a dimension < 1, element count overflow
    UNKNOWN_TYPE,      // a ggml type id that does not exist (or was retired)
    BAD_BLOCK,         // ne[0] not a multiple of the type's block size
    DUPLICATE_TENSOR,
    MISALIGNED,        // tensor offset not a multiple of the alignment
    OUT_OF_BOUNDS,     // tensor data past the end of the file
    OVERLAP,           // two tensors share bytes
    MISSING_KEY,       // a getter asked for a key the file does not have
    MISSING_TENSOR,
    BAD_TENSOR,        // the writer was given a tensor that is not valid
};

class GgufError : public Error {
  public:
    GgufError(GgufErrc code, const std::string & what) : Error(what), code_(code) {}
    GgufErrc code() const { return code_; }

  private:
    GgufErrc code_;
};

// Value types of GGUF metadata (ids of `enum gguf_type`).
enum class GgufType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

std::string_view gguf_type_name(GgufType t);     // "u32", "str", "arr", ...
size_t gguf_scalar_size(GgufType t);             // bytes of a scalar; 0 for STRING/ARRAY

// A metadata value. It views memory it does not own: the mapped file of a GgufFile.
struct GgufValue {
    GgufType type = GgufType::UINT8;
    std::array<uint8_t, 8> scalar{};       // scalar types: the little-endian bytes
    std::string_view str;                  // STRING
    GgufType elem_type = GgufType::UINT8;  // ARRAY: element type (never ARRAY)
    uint64_t count = 0;                    // ARRAY: number of elements
    std::span<const uint8_t> raw;          // ARRAY of scalars: count * element size bytes
    std::vector<std::string_view> strs;    // ARRAY of STRING

    bool is_integer() const;
    bool is_array_of(GgufType t) const { return type == GgufType::ARRAY && elem_type == t; }

    // Scalar of type T read from the raw bytes; T must match the type's size.
    template <class T> T scalar_as() const {
        T v;
        std::memcpy(&v, scalar.data(), sizeof(T));
        return v;
    }
    // Element i of an array of scalars, read as T (sizeof(T) must be the element size).
    template <class T> T at(uint64_t i) const {
        T v;
        std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
        return v;
    }
    // Any integer type as int64 (u64 above INT64_MAX throws), any float as double.
    int64_t as_int() const;
    double as_float() const;
};

struct GgufKv {
    std::string_view key;
    GgufValue value;
};

struct GgufTensorInfo {
    std::string_view name;
    DType type = DType::F32;
    uint32_t n_dims = 0;
    std::array<int64_t, 4> ne{1, 1, 1, 1};  // unused dimensions are 1
    uint64_t offset = 0;                    // from the start of the data section
    uint64_t n_bytes = 0;

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// A GGUF file opened for reading. Every field was validated by open(); a GgufFile that
// exists is consistent (bounded counts, unique keys and names, tensors inside the file,
// aligned, not overlapping). Tensor data is never read by open().
class GgufFile {
  public:
    // in_memory: read the whole file into memory (huge pages where possible) instead of
    // mapping it (see core/mapped_file.h for when that pays).
    static GgufFile open(const std::string & path, bool in_memory = false);
    // Parses bytes the caller keeps alive for the GgufFile's lifetime (tests, fuzzing).
    static GgufFile from_bytes(std::span<const uint8_t> bytes, std::string name = "<memory>");

    GgufFile(GgufFile &&) noexcept;
    GgufFile & operator=(GgufFile &&) noexcept;
    ~GgufFile();

    const std::string & path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section
    std::span<const uint8_t> bytes() const { return bytes_; }

    const std::vector<GgufKv> & kvs() const { return kvs_; }
    const GgufValue * find(std::string_view key) const;  // nullptr when absent

    // Typed getters: throw GgufError MISSING_KEY when absent, WRONG_KEY_TYPE when the
    // value cannot be represented (integers of any width are accepted if they fit).
    std::string_view get_string(std::string_view key) const;
    uint32_t get_u32(std::string_view key) const;
    float get_f32(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    const GgufValue & get_array(std::string_view key, GgufType elem_type) const;

    const std::vector<GgufTensorInfo> & tensors() const { return tensors_; }
    const GgufTensorInfo * find_tensor(std::string_view name) const;  // nullptr when absent
    const GgufTensorInfo & get_tensor(std::string_view name) const;   // throws MISSING_TENSOR
    std::span<const uint8_t> tensor_data(const GgufTensorInfo & t) const;

    // Keeps the mapping alive for views that outlive this object (weights).
    std::shared_ptr<const MappedFile> mapping() const { return map_; }

  private:
    GgufFile() = default;
    class Parser;

    std::string path_;
    std::shared_ptr<const MappedFile> map_;
    std::span<const uint8_t> bytes_;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<GgufKv> kvs_;
    std::vector<GgufTensorInfo> tensors_;
    std::unordered_map<std::string_view, size_t> kv_index_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Builds a GGUF file in memory (metadata copied, tensor data viewed) and writes it
// in one pass. Keys keep the order in which they were first set; setting a key again
// replaces its value in place. Tensor data must stay valid until write().
class GgufWriter {
  public:
    explicit GgufWriter(uint32_t version = 3);

    // Copies every kv and tensor of `src` (tensor data as views into src's mapping);
    // writing it again gives a byte-identical file for files laid out as llama.cpp does.
    static GgufWriter copy_of(const GgufFile & src);

    void set(std::string_view key, const GgufValue & v);
    void set_u32(std::string_view key, uint32_t v);
    void set_i32(std::string_view key, int32_t v);
    void set_u64(std::string_view key, uint64_t v);
    void set_f32(std::string_view key, float v);
    void set_bool(std::string_view key, bool v);
    void set_string(std::string_view key, std::string_view v);
    void set_strings(std::string_view key, const std::vector<std::string> & v);
    // An array of scalars: `count` elements of `elem_type` read from `data`.
    void set_array(std::string_view key, GgufType elem_type, const void * data, uint64_t count);
    void remove(std::string_view key);

    // `ne` innermost first (1 to 4 dims); `data` must hold exactly the tensor's bytes.
    void add_tensor(std::string_view name, DType type, std::span<const int64_t> ne,
                    std::span<const uint8_t> data);

    uint64_t alignment() const { return alignment_; }

    // Writes to a temporary file next to `path`, fsyncs it and renames it over `path`:
    // a failure leaves any existing file untouched. Throws IoError.
    void write(const std::string & path) const;
    std::vector<uint8_t> to_bytes() const;

  private:
    struct Kv {
        std::string key;
        std::vector<uint8_t> payload;  // u32 type | value, as serialized
    };
    struct Tensor {
        std::string name;
        DType type;
        std::vector<int64_t> ne;
        std::span<const uint8_t> data;
    };
    class Sink;

    void set_payload(std::string_view key, std::vector<uint8_t> payload);
    void emit(Sink & out) const;

    uint32_t version_;
    uint64_t alignment_ = 32;
    std::vector<Kv> kvs_;
    std::vector<Tensor> tensors_;
};

}  // namespace toyllm
