// Element types of tensors, with the numeric ids and block layouts of ggml/GGUF.
//
// A quantized type stores `block_size` consecutive values of a row in `type_size`
// bytes; a row of n values (n a multiple of block_size) takes n / block_size * type_size
// bytes. Plain types have block_size 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace toyllm {

// Values are ggml's `enum ggml_type`; they are stored in GGUF tensor infos.
// Gaps (4, 5, 31-33, 36-38) are ids ggml has retired; files using them are rejected.
enum class DType : uint32_t {
    F32     = 0,
    F16     = 1,
    Q4_0    = 2,
    Q4_1    = 3,
    Q5_0    = 6,
    Q5_1    = 7,
    Q8_0    = 8,
    Q8_1    = 9,
    Q2_K    = 10,
    Q3_K    = 11,
    Q4_K    = 12,
    Q5_K    = 13,
    Q6_K    = 14,
    Q8_K    = 15,
    IQ2_XXS = 16,
    IQ2_XS  = 17,
    IQ3_XXS = 18,
    IQ1_S   = 19,
    IQ4_NL  = 20,
    IQ3_S   = 21,
    IQ2_S   = 22,
    IQ4_XS  = 23,
    I8      = 24,
    I16     = 25,
    I32     = 26,
    I64     = 27,
    F64     = 28,
    IQ1_M   = 29,
    BF16    = 30,
    TQ1_0   = 34,
    TQ2_0   = 35,
    MXFP4   = 39,
};

struct DTypeInfo {
    std::string_view name;  // lowercase, as llama.cpp prints it: "q8_0", "f16"
    uint32_t block_size;    // values per block (1 for plain types, 32 or 256 otherwise)
    uint32_t type_size;     // bytes per block
};

// Layout of a known id; std::nullopt for an id ggml never had or has retired.
std::optional<DTypeInfo> dtype_info(uint32_t id);

// Layout of a DType value (always known).
const DTypeInfo & dtype_info(DType t);

inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }

// Parses "q8_0", "F16", ... (case-insensitive); std::nullopt if unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of a row of n values; n must be a multiple of the block size.
size_t dtype_row_bytes(DType t, int64_t n);

}  // namespace toyllm
