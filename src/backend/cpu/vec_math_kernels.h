// The interface between vec_math.cpp (dispatch) and the per-ISA files vec_math_avx2.cpp
// and vec_math_avx512.cpp: function pointers only (see vec_dot_kernels.h for why).
#pragma once

#include <cstdint>

namespace toyllm::cpu::kernels {

struct MathKernels {
    double (*exp_shifted_sum)(float * x, int64_t n, float m);
    void (*silu_mul)(const float * g, const float * u, float * y, int64_t n);
    void (*silu_back)(const float * x, const float * dy, float * y, int64_t n);
    void (*triad)(float * a, const float * b, const float * c, float s, int64_t n);
    uint64_t (*sum_words)(const uint64_t * a, int64_t n);
};

// Operations on rows of halves (IEEE f16 bits) with the arithmetic of ggml's f16 vector
// ops; every level gives the same bits. vec_math.h's half_kernels() picks the level.
struct HalfKernels {
    // out[j] = dot(a, rows + j * stride) * scale for j < n_rows (stride in halves), each
    // dot the sum of the products of halves (exact in float) in double, rounded once:
    // exact unless the products' magnitudes span more than about 2^29.
    void (*dot_f16_rows)(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out);
    void (*mad_f16)(uint16_t * y, const uint16_t * x, float v, int64_t n);  // y[i] = half(fma(x[i], v, y[i]))
    void (*scale_f16)(uint16_t * y, float v, int64_t n);                    // y[i] = half(y[i] * v)
};

extern const HalfKernels kAvx2Half;    // vec_math_avx2.cpp
extern const HalfKernels kAvx512Half;  // vec_math_avx512.cpp

extern const MathKernels kAvx2Math;    // vec_math_avx2.cpp; needs AVX2 + FMA
extern const MathKernels kAvx512Math;  // vec_math_avx512.cpp; needs AVX-512 F/DQ

}  // namespace toyllm::cpu::kernels
