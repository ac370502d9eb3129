// Dot products between a weight row in its storage type and an activation row, the
// inner loop of every matrix-vector product (decode) and of quantized matmuls.
//
// As llama.cpp does, the activation row is converted once per matmul into the weight
// type's partner format ("vec_dot_type"): Q8_0 for Q8_0 and Q4_0 weights, Q8_K for
// Q4_K and Q6_K, F32 for F32 and F16 and BF16 weights. Then each weight row is dotted
// with it using integer arithmetic for quantized types.
//
// Every function has a scalar implementation and, on x86-64, AVX2 and AVX-512 ones,
// picked at run time from cpu_features(). Results are deterministic for a given SIMD
// level (fixed summation order), but levels may differ from each other in the last bits.
#pragma once

#include "toyllm/dtype.h"

#include <cstdint>

namespace toyllm::cpu {

// block_q8_K of ggml: the activation format of the k-quants.
struct BlockQ8_K {
    float d;              // scale
    int8_t qs[256];       // quants
    int16_t bsums[16];    // sums of qs in groups of 16 (for the k-quant mins)
};
static_assert(sizeof(BlockQ8_K) == 292);

struct VecDot {
    DType vec_dot_type;  // format the activation row must be converted to
    // Converts n floats (n a multiple of the block size) into vec_dot_type.
    void (*from_float)(const float * x, void * y, int64_t n);
    // sum_i w[i] * x[i] over n values; w in the weight type, x in vec_dot_type.
    float (*dot)(int64_t n, const void * w, const void * x);
};

// The pair for weights of type w at the current SIMD level; throws Error for types
// without kernels (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K).
const VecDot & vec_dot_for(DType w);

// y[r] = dot(W row r, x) for rows [row_begin, row_end) of W.
// W: rows of `n` values in type w_type, `w_row_bytes` apart; x_conv: the activation row
// already converted to vec_dot_for(w_type).vec_dot_type.
struct MatVecArgs {
    DType w_type;
    const void * w;
    int64_t w_row_bytes;
    int64_t n;              // values per row (the reduction length)
    const void * x_conv;
    float * y;
};
void matvec_rows(const MatVecArgs & a, int64_t row_begin, int64_t row_end);

// Matmuls with several activation rows (prefill). Each activation row is prepared once
// per matmul (converted to vec_dot_type and, at some levels, rearranged with what
// depends on it alone precomputed); then a tile of weight rows x activation rows is
// computed with each weight block decoded once for several activation rows. Every
// output is bit-identical to dot() of its (weight row, activation row) pair at the same
// SIMD level, so results do not depend on the tiling, on M or on the thread count.

// Bytes of one prepared activation row of n values for weights of type w.
int64_t tile_x_row_bytes(DType w, int64_t n);
// Prepares the activation row x (n floats) for weights of type w into out.
void tile_x_from_float(DType w, const float * x, void * out, int64_t n);

// y[c * ldy + r] = dot(W row r, activation row c) for r < n_rows, c < n_cols.
struct MatTileArgs {
    DType w_type;
    const void * w;       // first weight row
    int64_t w_row_bytes;  // distance between weight rows
    int64_t n_rows;
    const void * x;       // first prepared activation row (tile_x_from_float)
    int64_t x_row_bytes;  // distance between them, >= tile_x_row_bytes
    int64_t n_cols;
    int64_t n;            // values per row (the reduction length)
    float * y;
    int64_t ldy;
};
void matmul_tile(const MatTileArgs & a);

}  // namespace toyllm::cpu
