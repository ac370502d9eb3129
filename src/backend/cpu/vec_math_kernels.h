// The interface between vec_math.cpp (dispatch) and the per-ISA files vec_math_avx2.cpp
// and vec_math_avx512.cpp: function pointers only (see vec_dot_kernels.h for why).
#pragma once

#include <cstdint>

namespace toyllm::cpu::kernels {

struct MathKernels {
    double (*exp_shifted_sum)(float * x, int64_t n, float m);
    void (*silu_mul)(const float * g, const float * u, float * y, int64_t n);
    void (*silu_back)(const float * x, const float * dy, float * y, int64_t n);
};

// The f16 row operations (vec_math.h's dot_f16, mad_f16, scale_f16).
struct HalfKernels {
    float (*dot_f16)(const uint16_t * a, const uint16_t * b, int64_t n);
    void (*dot_f16_rows)(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out);
    void (*mad_f16)(uint16_t * y, const uint16_t * x, float v, int64_t n);
    void (*scale_f16)(uint16_t * y, float v, int64_t n);
};

extern const HalfKernels kAvx2Half;    // vec_math_avx2.cpp
extern const HalfKernels kAvx512Half;  // vec_math_avx512.cpp

extern const MathKernels kAvx2Math;    // vec_math_avx2.cpp; needs AVX2 + FMA
extern const MathKernels kAvx512Math;  // vec_math_avx512.cpp; needs AVX-512 F/DQ

}  // namespace toyllm::cpu::kernels
