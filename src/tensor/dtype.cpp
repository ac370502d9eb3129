#include "toyllm/dtype.h"

#include "toyllm/error.h"

#include <array>
#include <cctype>

namespace toyllm {

namespace {

constexpr uint32_t QK = 32;    // values per block of the 32-wide formats
constexpr uint32_t QK_K = 256; // values per super-block of the k-quants and i-quants

struct Entry {
    DType id;
    DTypeInfo info;
};

// Block sizes in bytes follow the structs of ggml-common.h, e.g.
// block_q8_0 = { fp16 d; int8 qs[32]; } = 34 bytes for 32 values.
constexpr std::array kTypes = {
    Entry{DType::F32,     {"f32", 1, 4}},
    Entry{DType::F16,     {"f16", 1, 2}},
    Entry{DType::Q4_0,    {"q4_0", QK, 2 + QK / 2}},
    Entry{DType::Q4_1,    {"q4_1", QK, 4 + QK / 2}},
    Entry{DType::Q5_0,    {"q5_0", QK, 2 + 4 + QK / 2}},
    Entry{DType::Q5_1,    {"q5_1", QK, 4 + 4 + QK / 2}},
    Entry{DType::Q8_0,    {"q8_0", QK, 2 + QK}},
    Entry{DType::Q8_1,    {"q8_1", QK, 4 + QK}},
    Entry{DType::Q2_K,    {"q2_k", QK_K, QK_K / 16 + QK_K / 4 + 4}},
    Entry{DType::Q3_K,    {"q3_k", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2}},
    Entry{DType::Q4_K,    {"q4_k", QK_K, 4 + 12 + QK_K / 2}},
    Entry{DType::Q5_K,    {"q5_k", QK_K, 4 + 12 + QK_K / 8 + QK_K / 2}},
    Entry{DType::Q6_K,    {"q6_k", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2}},
    Entry{DType::Q8_K,    {"q8_k", QK_K, 4 + QK_K + QK_K / 16 * 2}},
    Entry{DType::IQ2_XXS, {"iq2_xxs", QK_K, 2 + QK_K / 8 * 2}},
    Entry{DType::IQ2_XS,  {"iq2_xs", QK_K, 2 + QK_K / 8 * 2 + QK_K / 32}},
    Entry{DType::IQ3_XXS, {"iq3_xxs", QK_K, 2 + 3 * QK_K / 8}},
    Entry{DType::IQ1_S,   {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 32 * 2}},
    Entry{DType::IQ4_NL,  {"iq4_nl", QK, 2 + QK / 2}},
    Entry{DType::IQ3_S,   {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64}},
    Entry{DType::IQ2_S,   {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 32}},
    Entry{DType::IQ4_XS,  {"iq4_xs", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2}},
    Entry{DType::I8,      {"i8", 1, 1}},
    Entry{DType::I16,     {"i16", 1, 2}},
    Entry{DType::I32,     {"i32", 1, 4}},
    Entry{DType::I64,     {"i64", 1, 8}},
    Entry{DType::F64,     {"f64", 1, 8}},
    Entry{DType::IQ1_M,   {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32}},
    Entry{DType::BF16,    {"bf16", 1, 2}},
    Entry{DType::TQ1_0,   {"tq1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2}},
    Entry{DType::TQ2_0,   {"tq2_0", QK_K, QK_K / 4 + 2}},
    Entry{DType::MXFP4,   {"mxfp4", QK, 1 + QK / 2}},
};

static_assert(kTypes.size() == 32, "a DType was added without its layout");

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t id) {
    for (const Entry & e : kTypes) {
        if (static_cast<uint32_t>(e.id) == id) return e.info;
    }
    return std::nullopt;
}

const DTypeInfo & dtype_info(DType t) {
    for (const Entry & e : kTypes) {
        if (e.id == t) return e.info;
    }
    TOYLLM_ASSERT(false && "DType value outside the table");
}

std::optional<DType> dtype_from_name(std::string_view name) {
    for (const Entry & e : kTypes) {
        if (e.info.name.size() != name.size()) continue;
        bool same = true;
        for (size_t i = 0; i < name.size() && same; ++i) {
            same = std::tolower(static_cast<unsigned char>(name[i])) == e.info.name[i];
        }
        if (same) return e.id;
    }
    return std::nullopt;
}

size_t dtype_row_bytes(DType t, int64_t n) {
    const DTypeInfo & info = dtype_info(t);
    TOYLLM_ASSERT(n >= 0 && n % info.block_size == 0);
    return static_cast<size_t>(n / info.block_size) * info.type_size;
}

}  // namespace toyllm
