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

// a[i] = fma(s, c[i], b[i]): the STREAM triad that the benchmarks measure memory bandwidth
// with, in the widest stores the level has (the same bits at every level).
void triad(float * a, const float * b, const float * c, float s, int64_t n);

// The sum (mod 2^64) of a[0, n), read in the widest loads the level has: the read-only
// stream the benchmarks set beside the triad (the same sum at every level). Narrow loads
// undersell this VM's memory: 8-byte ones read 39 GB/s with 2 threads where 64-byte ones
// read 64-71.
uint64_t sum_words(const uint64_t * a, int64_t n);

namespace kernels { struct HalfKernels; }
// The f16 row operations of the current level (vec_math_kernels.h), fetched once by a
// kernel that calls them per key rather than dispatched on every call.
const kernels::HalfKernels & half_kernels();

}  // namespace toyllm::cpu
