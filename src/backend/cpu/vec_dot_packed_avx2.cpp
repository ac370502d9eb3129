// AVX2 kernels for Q8_0 and Q4_0 weights repacked in bands of 16 rows (repack.h; the
// AVX-512 file describes the layout and the order of operations). A band is two halves
// of 8 rows, one int32 lane per row in a 256-bit register; without VNNI the byte products
// go through maddubs (u8 x s8 pairs into int16) and madd (int16 pairs into int32):
//   Q4_0: the nibbles (0..15) times the activation, eight maddubs per block summed in
//         int16 (|sum| <= 8 x 2 x 15 x 127 = 30480), then -8 * (activation sum) added;
//   Q8_0: the stored q + 128 turned back into q, whose sign moves to the activation so
//         that maddubs sees |q| (|pair| <= 2 x 128 x 127), each pair sum widened at once.
// Then per row and block, in block order: acc = fma(float(dot), f16(d_w) * d_x, acc), the
// same sequence for one activation row (decode) and several (prefill).
//
// Compiled with -mavx2 -mfma -mf16c: no std:: templates and no non-static inline
// functions from project headers here (see vec_dot_kernels.h).
#include "backend/cpu/vec_dot_kernels.h"

#include <immintrin.h>

#include <cstring>

namespace toyllm::cpu::kernels {

namespace {

__m256i act_dword(const int8_t * qs, int byte) {
    int32_t v;
    std::memcpy(&v, qs + byte, sizeof v);
    return _mm256_set1_epi32(v);
}

// Half h's 8 scales of a block times the activation's.
__m256 half_scales(const uint8_t * p, int h, float dx) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 16 * h))), _mm256_set1_ps(dx));
}

// Q4_0: 288 bytes per block of a band; half h's part of run k at 32 + 64k + 32h.
template <int CT>
void q4_0_half(const uint8_t * w, int64_t nb, int h, const PackedActBlock * const * x, __m256 * acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int c = 0; c < CT; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 288) {
        __m256i lo[4], hi[4];
        for (int k = 0; k < 4; ++k) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + 32 + 64 * k + 32 * h));
            lo[k] = _mm256_and_si256(v, m4);
            hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        for (int c = 0; c < CT; ++c) {
            const PackedActBlock & xb = x[c][b];
            __m256i p16 = _mm256_maddubs_epi16(lo[0], act_dword(xb.qs, 0));
            p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(hi[0], act_dword(xb.qs, 16)));
            for (int k = 1; k < 4; ++k) {
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(lo[k], act_dword(xb.qs, 4 * k)));
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(hi[k], act_dword(xb.qs, 16 + 4 * k)));
            }
            const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(p16, ones), _mm256_set1_epi32(-8 * xb.sum));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), half_scales(w, h, xb.d), acc[c]);
        }
    }
}

// Q8_0: 544 bytes per block of a band; half h's part of run k at 32 + 64k + 32h.
template <int CT>
void q8_0_half(const uint8_t * w, int64_t nb, int h, const PackedActBlock * const * x, __m256 * acc) {
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i ones = _mm256_set1_epi16(1);
    for (int c = 0; c < CT; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 544) {
        __m256i dot[CT];
        for (int c = 0; c < CT; ++c) dot[c] = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i q = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + 32 + 64 * k + 32 * h)), bias);
            const __m256i aq = _mm256_sign_epi8(q, q);
            for (int c = 0; c < CT; ++c) {
                const __m256i p16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(act_dword(x[c][b].qs, 4 * k), q));
                dot[c] = _mm256_add_epi32(dot[c], _mm256_madd_epi16(p16, ones));
            }
        }
        for (int c = 0; c < CT; ++c) acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[c]), half_scales(w, h, x[c][b].d), acc[c]);
    }
}

using HalfFn = void (*)(const uint8_t *, int64_t, int, const PackedActBlock * const *, __m256 *);

// Stores the first `left` (of 8) lanes of v at y.
void store_rows(float * y, __m256 v, int64_t left) {
    if (left >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    for (int64_t i = 0; i < left; ++i) y[i] = t[i];
}

// One band against activation columns c0 .. c0+CT-1, half by half.
template <int CT, HalfFn Half>
void band_columns(const PackedArgs & a, int64_t band, int64_t c0) {
    const PackedActBlock * x[CT];
    for (int c = 0; c < CT; ++c) {
        x[c] = reinterpret_cast<const PackedActBlock *>(static_cast<const uint8_t *>(a.x) + (c0 + c) * a.x_row_bytes);
    }
    for (int h = 0; h < 2; ++h) {
        const int64_t r0 = kBandRows * band + 8 * h;
        if (r0 >= a.n_rows) return;
        __m256 acc[CT];
        Half(static_cast<const uint8_t *>(a.w) + band * a.band_bytes, a.nb, h, x, acc);
        for (int c = 0; c < CT; ++c) store_rows(a.y + (c0 + c) * a.ldy + r0, acc[c], a.n_rows - r0);
    }
}

// Band by band, the columns in fours, then the rest.
template <HalfFn H1, HalfFn H2, HalfFn H3, HalfFn H4>
void packed_by_columns(const PackedArgs & a) {
    for (int64_t band = 0; band < a.n_bands; ++band) {
        int64_t c = 0;
        for (; c + 4 <= a.n_cols; c += 4) band_columns<4, H4>(a, band, c);
        switch (a.n_cols - c) {
            case 3: band_columns<3, H3>(a, band, c); break;
            case 2: band_columns<2, H2>(a, band, c); break;
            case 1: band_columns<1, H1>(a, band, c); break;
            default: break;
        }
    }
}

void packed_q4_0(const PackedArgs & a) { packed_by_columns<q4_0_half<1>, q4_0_half<2>, q4_0_half<3>, q4_0_half<4>>(a); }
void packed_q8_0(const PackedArgs & a) { packed_by_columns<q8_0_half<1>, q8_0_half<2>, q8_0_half<3>, q8_0_half<4>>(a); }

}  // namespace

const PackedFn kAvx2Packed[kWeightKinds] = {nullptr, nullptr, nullptr, packed_q8_0, packed_q4_0, nullptr, nullptr};

}  // namespace toyllm::cpu::kernels
