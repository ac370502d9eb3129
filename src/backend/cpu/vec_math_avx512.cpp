// AVX-512 implementations of vec_math.h (compiled with -mavx512f and friends).
#include "backend/cpu/vec_math_kernels.h"

#include <immintrin.h>

#include <cmath>

// GCC 12 reports the _mm512_undefined_ps() inside its own intrinsic headers as maybe
// uninitialized (and its reduce_add as uninitialized) once they are inlined here; the
// headers, not this code, are the cause.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace toyllm::cpu::kernels {

namespace {

// Cephes expf: n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts), exp(r) by a
// degree-6 polynomial, times 2^n by scalef (which also underflows to 0 properly).
__m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// The mask of lanes [0, n), n < 16.
__mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// Adds the 16 floats of e to two 8-lane double accumulators.
void add_to_double(__m512 e, __m512d & lo, __m512d & hi) {
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}

double exp_shifted_sum(float * x, int64_t n, float m) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        const __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
        _mm512_mask_storeu_ps(x + i, k, e);
        add_to_double(e, lo, hi);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

__m512 silu_ps(__m512 g) {
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

void silu_mul(const float * g, const float * u, float * y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        __m512 s = silu_ps(_mm512_maskz_loadu_ps(k, g + i));
        if (u != nullptr) s = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i));
        _mm512_mask_storeu_ps(y + i, k, s);
    }
}

void silu_back(const float * x, const float * dy, float * y, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
        const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), xv))));
        const __m512 d = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + i), s),
                                       _mm512_add_ps(one, _mm512_mul_ps(xv, _mm512_sub_ps(one, s))));
        _mm512_mask_storeu_ps(y + i, k, d);
    }
}

// Sixteen halves from p (lanes outside k zero) as floats, and back rounded to nearest even.
__m512 load_half(const uint16_t * p, __mmask16 k) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p)); }

void store_half(uint16_t * p, __m512 v, __mmask16 k) {
    _mm256_mask_storeu_epi16(p, k, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

float dot_halves(const uint16_t * a, const uint16_t * b, int64_t n) {
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        add_to_double(_mm512_mul_ps(load_half(a + i, k), load_half(b + i, k)), lo, hi);
    }
    return static_cast<float>(_mm512_reduce_add_pd(_mm512_add_pd(lo, hi)));
}

void dot_f16_rows(const uint16_t * a, const uint16_t * rows, int64_t stride, int64_t n_rows, int64_t n, float scale, float * out) {
    for (int64_t j = 0; j < n_rows; ++j) out[j] = dot_halves(a, rows + j * stride, n) * scale;
}

void mad_f16(uint16_t * y, const uint16_t * x, float v, int64_t n) {
    const __m512 vv = _mm512_set1_ps(v);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        store_half(y + i, _mm512_fmadd_ps(load_half(x + i, k), vv, load_half(y + i, k)), k);
    }
}

void scale_f16(uint16_t * y, float v, int64_t n) {
    const __m512 vv = _mm512_set1_ps(v);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : tail_mask(n - i);
        store_half(y + i, _mm512_mul_ps(load_half(y + i, k), vv), k);
    }
}

// Wide stores: with 16-byte stores (SSE2, the baseline build) this VM's triad read 42-46 GB/s
// against 58-63 with 32- or 64-byte stores (probably because the narrow ones read each
// line before writing it: 16 / 12 bytes per element is about that ratio).
void triad(float * a, const float * b, const float * c, float s, int64_t n) {
    const __m512 vs = _mm512_set1_ps(s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(a + i, _mm512_fmadd_ps(vs, _mm512_loadu_ps(c + i), _mm512_loadu_ps(b + i)));
    for (; i < n; ++i) a[i] = std::fma(s, c[i], b[i]);
}

// Four 64-byte loads (four lines) per step into independent sums. Without software
// prefetch: here the loop alone keeps enough lines in flight (with prefetch 8 KB ahead it
// read 10% less).
uint64_t sum_words(const uint64_t * a, int64_t n) {
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; ++l) acc[l] = _mm512_add_epi64(acc[l], _mm512_loadu_si512(a + i + 8 * l));
    }
    // Not _mm512_reduce_add_epi64: GCC's adds its lanes as signed integers (UBSan: overflow).
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(acc[0], acc[1]), _mm512_add_epi64(acc[2], acc[3])));
    uint64_t s = 0;
    for (const uint64_t v : lanes) s += v;
    for (; i < n; ++i) s += a[i];
    return s;
}

}  // namespace

extern const MathKernels kAvx512Math = {exp_shifted_sum, silu_mul, silu_back, triad, sum_words};
extern const HalfKernels kAvx512Half = {dot_f16_rows, mad_f16, scale_f16};

}  // namespace toyllm::cpu::kernels
