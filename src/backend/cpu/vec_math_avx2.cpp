// AVX2 + FMA implementations of vec_math.h (compiled with -mavx2 -mfma -mf16c).
#include "backend/cpu/vec_math_kernels.h"

#include <immintrin.h>

#include <cmath>

namespace toyllm::cpu::kernels {

namespace {

// Cephes expf as in vec_math_avx512.cpp; 2^n goes into the exponent bits, so x is
// clamped to where 2^n is a normal number (exp(-87.3) ~ 1.2e-38 stands in for smaller).
__m256 exp_ps(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365447505531f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Adds the 8 floats of e to two 4-lane double accumulators.
void add_to_double(__m256 e, __m256d & lo, __m256d & hi) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

double hsum(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

double exp_shifted_sum(float * x, int64_t n, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        add_to_double(e, lo, hi);
    }
    if (i < n) {
        alignas(32) float tail[8] = {};
        for (int64_t j = i; j < n; ++j) tail[j - i] = x[j] - m;
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), lanes));
        const __m256 e = _mm256_and_ps(exp_ps(_mm256_load_ps(tail)), keep);
        _mm256_store_ps(tail, e);
        for (int64_t j = i; j < n; ++j) x[j] = tail[j - i];
        add_to_double(e, lo, hi);
    }
    return hsum(_mm256_add_pd(lo, hi));
}

__m256 silu_ps(__m256 g) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

__m256 silu_back_ps(__m256 x, __m256 dy) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    return _mm256_mul_ps(_mm256_mul_ps(dy, s), _mm256_add_ps(one, _mm256_mul_ps(x, _mm256_sub_ps(one, s))));
}

// The last n < 8 values go through a zero-padded stack copy.
void load_tail(const float * x, int64_t n, float * buf) {
    for (int64_t j = 0; j < 8; ++j) buf[j] = j < n ? x[j] : 0.0f;
}

void silu_mul(const float * g, const float * u, float * y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 s = silu_ps(_mm256_loadu_ps(g + i));
        if (u != nullptr) s = _mm256_mul_ps(s, _mm256_loadu_ps(u + i));
        _mm256_storeu_ps(y + i, s);
    }
    if (i < n) {
        alignas(32) float a[8], b[8];
        load_tail(g + i, n - i, a);
        __m256 s = silu_ps(_mm256_load_ps(a));
        if (u != nullptr) {
            load_tail(u + i, n - i, b);
            s = _mm256_mul_ps(s, _mm256_load_ps(b));
        }
        _mm256_store_ps(a, s);
        for (int64_t j = i; j < n; ++j) y[j] = a[j - i];
    }
}

void silu_back(const float * x, const float * dy, float * y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu_back_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(dy + i)));
    if (i < n) {
        alignas(32) float a[8], b[8];
        load_tail(x + i, n - i, a);
        load_tail(dy + i, n - i, b);
        _mm256_store_ps(a, silu_back_ps(_mm256_load_ps(a), _mm256_load_ps(b)));
        for (int64_t j = i; j < n; ++j) y[j] = a[j - i];
    }
}

// Eight halves from p, or the first n < 8 of them and zeros.
__m256 load_half(const uint16_t * p, int64_t n = 8) {
    if (n >= 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    alignas(16) uint16_t buf[8] = {};
    for (int64_t j = 0; j < n; ++j) buf[j] = p[j];
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i *>(buf)));
}

void store_half(uint16_t * p, __m256 v, int64_t n = 8) {
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (n >= 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i *>(p), h);
        return;
    }
    alignas(16) uint16_t buf[8];
    _mm_store_si128(reinterpret_cast<__m128i *>(buf), h);
    for (int64_t j = 0; j < n; ++j) p[j] = buf[j];
}

float dot_halves(const uint16_t * a, const uint16_t * b, int64_t n) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        const int64_t m = n - i;
        add_to_double(_mm256_mul_ps(load_half(a + i, m), load_half(b + i, m)), lo, hi);
    }
    return static_cast<float>(hsum(_mm256_add_pd(lo, hi)));
}

void dot_f16_rows(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out) {
    for (int64_t j = 0; j < n_rows; ++j) out[j] = dot_halves(a, rows + j * stride, n) * scale;
}

void mad_f16(uint16_t * y, const uint16_t * x, float v, int64_t n) {
    const __m256 vv = _mm256_set1_ps(v);
    for (int64_t i = 0; i < n; i += 8) {
        const int64_t m = n - i;
        store_half(y + i, _mm256_fmadd_ps(load_half(x + i, m), vv, load_half(y + i, m)), m);
    }
}

void scale_f16(uint16_t * y, float v, int64_t n) {
    const __m256 vv = _mm256_set1_ps(v);
    for (int64_t i = 0; i < n; i += 8) {
        const int64_t m = n - i;
        store_half(y + i, _mm256_mul_ps(load_half(y + i, m), vv), m);
    }
}

void triad(float * a, const float * b, const float * c, float s, int64_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(c + i), _mm256_loadu_ps(b + i)));
    for (; i < n; ++i) a[i] = std::fma(s, c[i], b[i]);
}

// Four 32-byte loads (two lines) per step into independent sums.
uint64_t sum_words(const uint64_t * a, int64_t n) {
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int l = 0; l < 4; ++l) {
            acc[l] = _mm256_add_epi64(acc[l], _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a + i + 4 * l)));
        }
    }
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i *>(lanes),
                       _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3])));
    uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; ++i) s += a[i];
    return s;
}

}  // namespace

extern const MathKernels kAvx2Math = {exp_shifted_sum, silu_mul, silu_back, triad, sum_words};
extern const HalfKernels kAvx2Half = {dot_f16_rows, mad_f16, scale_f16};

}  // namespace toyllm::cpu::kernels
