// The interface between vec_dot.cpp (dispatch) and the per-ISA kernel files
// vec_dot_avx2.cpp / vec_dot_avx512.cpp.
//
// The ISA files are compiled with -mavx2 or -mavx512*; anything they share with the rest
// of the program must not be an inline function or template (the linker keeps one copy
// of those, possibly the AVX-512 one, for every caller). So this header holds only plain
// structs, function-pointer types and one table object per ISA, and it mirrors the block
// layouts of quant.h / vec_dot.h instead of including them (vec_dot.cpp static_asserts
// that the mirrors match).
#pragma once

#include <cstdint>

namespace toyllm::cpu::kernels {

constexpr int kQK = 32;     // values per Q8_0 / Q4_0 block
constexpr int kQK_K = 256;  // values per k-quant super-block

struct Q8_0Block {
    uint16_t d;  // f16
    int8_t qs[kQK];
};
struct Q4_0Block {
    uint16_t d;  // f16
    uint8_t qs[kQK / 2];
};
struct Q4_KBlock {
    uint16_t d, dmin;  // f16
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];
};
struct Q6_KBlock {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;  // f16
};
struct Q8_KBlock {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};

// Weight types with kernels, in table order.
enum WeightKind { kF32 = 0, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K, kQ6_K, kWeightKinds };

using FromFloatFn = void (*)(const float * x, void * y, int64_t n);
using DotFn = float (*)(int64_t n, const void * w, const void * x);

// A run of consecutive weight rows dotted with one converted activation row.
struct RowsArgs {
    const void * w;       // first row
    int64_t w_row_bytes;  // distance between rows
    int64_t n;            // values per row
    const void * x;       // activation in the weight type's vec_dot_type
    float * y;            // y[r] for r in [0, n_rows)
    int64_t n_rows;
};
using RowsFn = void (*)(const RowsArgs & a);

// A tile of a matmul with several activation rows (prefill): n_rows consecutive weight
// rows times n_cols activation rows, each prepared by the kind's pack (below). Every
// y[c * ldy + r] must be bit-identical to dot() of that pair at the same level.
struct TileArgs {
    const void * w;       // first weight row
    int64_t w_row_bytes;  // distance between weight rows
    int64_t n_rows;
    const void * x;       // first prepared activation row
    int64_t x_row_bytes;  // distance between prepared activation rows
    int64_t n_cols;
    int64_t n;            // values per row
    float * y;            // y[c * ldy + r] for r < n_rows, c < n_cols
    int64_t ldy;
};
using TileFn = void (*)(const TileArgs & a);
// Bytes of one activation row as tile() wants it, and the conversion from the row in
// vec_dot_type (pack may rearrange it and precompute what depends on it alone).
using PackedBytesFn = int64_t (*)(int64_t n);
using PackFn = void (*)(const void * x_conv, void * x_packed, int64_t n);

struct TileKernel {
    TileFn tile;                 // nullptr: vec_dot.cpp loops over dot
    PackedBytesFn packed_bytes;  // nullptr: tile reads the converted row as is
    PackFn pack;
};

// Weights repacked in bands of kBandRows rows (repack.h): n_bands bands of band_bytes from
// w, against n_cols activation rows of nb PackedActBlocks (PackedActKBlocks for Q4_K and
// Q6_K; for F32 / F16 / BF16 nb floats, one per value) each. Stores y[c * ldy + r] for the
// rows r < n_rows of the bands (the last band may be padding).
constexpr int64_t kBandRows = 16;
struct PackedActBlock {
    int8_t qs[kQK];  // the Q8_0 quants
    int32_t sum;     // their sum
    float d;         // the Q8_0 scale, as a float
};
struct PackedActKBlock {
    int8_t qs[kQK_K];  // the Q8_K quants
    int32_t sums[16];  // their sums of 16 (Q8_K's bsums)
    float d;
};
struct PackedArgs {
    const void * w;
    int64_t band_bytes;
    int64_t n_bands;
    int64_t nb;           // blocks per row (values per row for F32 / F16 / BF16)
    const void * x;
    int64_t x_row_bytes;
    int64_t n_cols;
    float * y;
    int64_t ldy;
    int64_t n_rows;
};
using PackedFn = void (*)(const PackedArgs & a);

struct IsaKernels {
    FromFloatFn q8_0_from_float;  // bit-identical to quantize_row(Q8_0) at every level
    FromFloatFn q8_k_from_float;  // bit-identical to ggml's quantize_row_q8_K_ref
    DotFn dot[kWeightKinds];
    RowsFn rows[kWeightKinds];    // nullptr: vec_dot.cpp loops over dot
    TileKernel tiles[kWeightKinds];
};

#if defined(TOYLLM_X86)
extern const IsaKernels kAvx2Kernels;    // vec_dot_avx2.cpp; needs AVX2 + FMA + F16C
extern const IsaKernels kAvx512Kernels;  // vec_dot_avx512.cpp; needs AVX-512 F/BW/VL/DQ + VNNI
extern const PackedFn kAvx512Packed[kWeightKinds];  // vec_dot_packed_avx512.cpp; nullptr: none
extern const PackedFn kAvx2Packed[kWeightKinds];    // vec_dot_packed_avx2.cpp; nullptr: none
#endif

}  // namespace toyllm::cpu::kernels
