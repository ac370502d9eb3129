// Dispatch of vec_math.h and its scalar implementation.
#include "backend/cpu/vec_math.h"

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/vec_math_kernels.h"

#include "toyllm/half.h"

#include <cmath>

namespace toyllm::cpu {

namespace {

double exp_shifted_sum_scalar(float * x, int64_t n, float m) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - m);
        sum += x[i];
    }
    return sum;
}

void silu_mul_scalar(const float * g, const float * u, float * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = u != nullptr ? silu_value(g[i]) * u[i] : silu_value(g[i]);
}

void silu_back_scalar(const float * x, const float * dy, float * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = silu_grad_value(x[i], dy[i]);
}

void triad_scalar(float * a, const float * b, const float * c, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) a[i] = std::fma(s, c[i], b[i]);
}

uint64_t sum_words_scalar(const uint64_t * a, int64_t n) {
    uint64_t acc[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; ++l) acc[l] += a[i + l];
    }
    for (; i < n; ++i) acc[0] += a[i];
    uint64_t s = 0;
    for (const uint64_t v : acc) s += v;
    return s;
}

const kernels::MathKernels kScalarMath = {exp_shifted_sum_scalar, silu_mul_scalar, silu_back_scalar, triad_scalar, sum_words_scalar};

float dot_halves_scalar(const uint16_t * a, const uint16_t * b, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(a[i]) * fp16_to_fp32(b[i]));
    return static_cast<float>(sum);
}

void dot_f16_rows_scalar(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out) {
    for (int64_t j = 0; j < n_rows; ++j) out[j] = dot_halves_scalar(a, rows + j * stride, n) * scale;
}

void mad_f16_scalar(uint16_t * y, const uint16_t * x, float v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(std::fma(fp16_to_fp32(x[i]), v, fp16_to_fp32(y[i])));
}

void scale_f16_scalar(uint16_t * y, float v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(fp16_to_fp32(y[i]) * v);
}

const kernels::HalfKernels kScalarHalf = {dot_f16_rows_scalar, mad_f16_scalar, scale_f16_scalar};

const kernels::MathKernels & math_for(SimdLevel level) {
#if defined(TOYLLM_X86)
    if (level == SimdLevel::AVX512) return kernels::kAvx512Math;
    if (level == SimdLevel::AVX2) return kernels::kAvx2Math;
#endif
    (void)level;
    return kScalarMath;
}

const kernels::HalfKernels & half_for(SimdLevel level) {
#if defined(TOYLLM_X86)
    if (level == SimdLevel::AVX512) return kernels::kAvx512Half;
    if (level == SimdLevel::AVX2) return kernels::kAvx2Half;
#endif
    (void)level;
    return kScalarHalf;
}

}  // namespace

float silu_value(float x) { return x / (1.0f + std::exp(-x)); }

float silu_grad_value(float x, float dy) {
    const float s = 1.0f / (1.0f + std::exp(-x));
    return dy * s * (1.0f + x * (1.0f - s));
}

double exp_shifted_sum(float * x, int64_t n, float m) { return math_for(cpu_features().level).exp_shifted_sum(x, n, m); }

void silu_mul(const float * g, const float * u, float * y, int64_t n) { math_for(cpu_features().level).silu_mul(g, u, y, n); }

void silu_back(const float * x, const float * dy, float * y, int64_t n) { math_for(cpu_features().level).silu_back(x, dy, y, n); }

void triad(float * a, const float * b, const float * c, float s, int64_t n) { math_for(cpu_features().level).triad(a, b, c, s, n); }

uint64_t sum_words(const uint64_t * a, int64_t n) { return math_for(cpu_features().level).sum_words(a, n); }

const kernels::HalfKernels & half_kernels() { return half_for(cpu_features().level); }

}  // namespace toyllm::cpu
