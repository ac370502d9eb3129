// Element-wise math over float arrays, SIMD picked at run time (AVX-512, AVX2 + FMA, or
// scalar through <cmath>): the exponentials of softmax, attention and SiLU. The vector exp is
// Cephes' expf (range reduction by ln 2 in two parts, degree-6 polynomial), within 2 ulp
// of std::exp over the range softmax uses; results are deterministic for a SIMD level.
#pragma once

#include <cstdint>

namespace toyllm::cpu {

// x[i] = exp(x[i] - m) for i < n; returns the sum of the new x[i], summed in double in
// an order that depends only on n and the SIMD level.
double exp_shifted_sum(float * x, int64_t n, float m);

// One value through <cmath>: the scalar level's arithmetic, also used for strided operands.
float silu_value(float x);                  // x / (1 + exp(-x))
float silu_grad_value(float x, float dy);   // dy s (1 + x (1 - s)), s = 1 / (1 + exp(-x))

// y[i] = silu(g[i]) * u[i], or silu(g[i]) when u is nullptr.
void silu_mul(const float * g, const float * u, float * y, int64_t n);

// y[i] = dy[i] * silu'(x[i]) = dy s (1 + x (1 - s)) with s = 1 / (1 + exp(-x)).
void silu_back(const float * x, const float * dy, float * y, int64_t n);

// Half-precision rows (IEEE f16 bits), the arithmetic of ggml's f16 vector ops:
// dot_f16 sums the products of halves (each exact in float) in double and rounds once;
// mad_f16 sets y[i] = half(fma(x[i], v, y[i])); scale_f16 sets y[i] = half(y[i] * v).
// Every level gives the same bits (the sum of products is exact unless their magnitudes
// span more than about 2^29).
float dot_f16(const uint16_t * a, const uint16_t * b, int64_t n);
// out[j] = dot_f16(a, rows + j * stride, n) * scale for j < n_rows (stride in halves).
void dot_f16_rows(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out);
void mad_f16(uint16_t * y, const uint16_t * x, float v, int64_t n);
void scale_f16(uint16_t * y, float v, int64_t n);

namespace kernels { struct HalfKernels; }
// The level's f16 row operations, for loops that call them many times (no dispatch per call).
const kernels::HalfKernels & half_kernels();

}  // namespace toyllm::cpu
