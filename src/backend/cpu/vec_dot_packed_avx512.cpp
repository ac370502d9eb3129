// AVX-512 VNNI kernels for weights repacked in bands of 16 rows (repack.h describes the
// layouts): one lane per weight row, so a band's 16 outputs grow in one register, block
// after block, and the weights are read as one sequential stream. F32, F16 and BF16
// bands hold plain values (plain_band below); the quantized types:
//
// Per block of a band: the 16 rows' f16 scales (32 bytes), then the quants as 4 (Q4_0)
// or 8 (Q8_0) registers whose lane l holds 4 bytes of row l. The activation's matching
// 4 bytes are broadcast to every lane, so dpbusd (u8 weights x s8 activation) gives each
// row its block dot; the weights are stored unsigned (Q4_0: nibble q + 8; Q8_0: q + 128)
// and each dot starts from -offset * (sum of the activation block). The integer block dot
// is exact; then per row and block, in block order:
//     acc = fma(float(dot), f16(d_w) * d_x, acc)
// which is the same sequence whatever the number of activation rows a call takes, so
// decode (one row) and prefill (several) give the same bits.
//
// Compiled with the AVX-512 flags: no std:: templates and no non-static inline functions
// from project headers here (see vec_dot_kernels.h).
#include "backend/cpu/vec_dot_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstring>

namespace toyllm::cpu::kernels {

namespace {

// Activation quants [byte, byte + 4) in every lane.
__m512i act_dword(const int8_t * qs, int byte) {
    int32_t v;
    std::memcpy(&v, qs + byte, sizeof v);
    return _mm512_set1_epi32(v);
}

// The 16 rows' scales of a block times the activation's.
__m512 band_scales(const uint8_t * p, const PackedActBlock & x) {
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))), _mm512_set1_ps(x.d));
}

// Q4_0: 288 bytes per block of a band; register k's lane l holds row l's quant bytes
// 4k .. 4k+3, whose low nibbles are values 4k .. 4k+3 and high nibbles 16+4k .. 16+4k+3.
template <int CT>
void q4_0_band(const uint8_t * w, int64_t nb, const void * const * xv, __m512 * acc) {
    const auto * const * x = reinterpret_cast<const PackedActBlock * const *>(xv);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < CT; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 288) {
        __m512i lo[4], hi[4];
        for (int k = 0; k < 4; ++k) {
            const __m512i v = _mm512_loadu_si512(w + 32 + 64 * k);
            lo[k] = _mm512_and_si512(v, m4);
            hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        for (int c = 0; c < CT; ++c) {
            const PackedActBlock & xb = x[c][b];
            __m512i dlo = _mm512_set1_epi32(-8 * xb.sum), dhi = _mm512_setzero_si512();
            for (int k = 0; k < 4; ++k) {
                dlo = _mm512_dpbusd_epi32(dlo, lo[k], act_dword(xb.qs, 4 * k));
                dhi = _mm512_dpbusd_epi32(dhi, hi[k], act_dword(xb.qs, 16 + 4 * k));
            }
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(dlo, dhi)), band_scales(w, xb), acc[c]);
        }
    }
}

// Q8_0: 544 bytes per block of a band; register k's lane l holds row l's quants 4k ..
// 4k+3, each + 128.
template <int CT>
void q8_0_band(const uint8_t * w, int64_t nb, const void * const * xv, __m512 * acc) {
    const auto * const * x = reinterpret_cast<const PackedActBlock * const *>(xv);
    for (int c = 0; c < CT; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 544) {
        __m512i q[8];
        for (int k = 0; k < 8; ++k) q[k] = _mm512_loadu_si512(w + 32 + 64 * k);
        for (int c = 0; c < CT; ++c) {
            const PackedActBlock & xb = x[c][b];
            __m512i d0 = _mm512_set1_epi32(-128 * xb.sum), d1 = _mm512_setzero_si512();
            for (int k = 0; k < 8; k += 2) {
                d0 = _mm512_dpbusd_epi32(d0, q[k], act_dword(xb.qs, 4 * k));
                d1 = _mm512_dpbusd_epi32(d1, q[k + 1], act_dword(xb.qs, 4 * k + 4));
            }
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), band_scales(w, xb), acc[c]);
        }
    }
}

// Q4_K: 2368 bytes per super-block of a band: the 16 rows' d and dmin (f16, 32 bytes
// each), their 8 sub-block scales and 8 mins unpacked to bytes ([sub-block][row], 128
// bytes each), then the quants as 32 registers, register r's lane l holding row l's
// quant bytes 4r .. 4r+3: for r = 8p + i, the low nibbles are values 64p + 4i .. +3
// (sub-block 2p), the high nibbles values 64p + 32 + 4i .. +3 (sub-block 2p + 1). Per
// row: isum = sum over sub-blocks of scale * (integer dot), imin = sum of min * (block
// sum of the activation), both exact in int32; then
//     acc = fma(float(isum), d * d_x, acc);  acc = fnmadd(float(imin), dmin * d_x, acc)
__m512i scale_lanes(const uint8_t * p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))); }

template <int CT>
void q4_k_band(const uint8_t * w, int64_t nb, const void * const * xv, __m512 * acc) {
    const auto * const * x = reinterpret_cast<const PackedActKBlock * const *>(xv);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < CT; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 2368) {
        __m512i isum[CT], imin[CT];
        for (int c = 0; c < CT; ++c) isum[c] = imin[c] = _mm512_setzero_si512();
        for (int p = 0; p < 4; ++p) {
            __m512i dlo[CT], dhi[CT];
            for (int c = 0; c < CT; ++c) dlo[c] = dhi[c] = _mm512_setzero_si512();
            for (int i = 0; i < 8; ++i) {
                const __m512i v = _mm512_loadu_si512(w + 320 + 64 * (8 * p + i));
                const __m512i lo = _mm512_and_si512(v, m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                for (int c = 0; c < CT; ++c) {
                    dlo[c] = _mm512_dpbusd_epi32(dlo[c], lo, act_dword(x[c][b].qs, 64 * p + 4 * i));
                    dhi[c] = _mm512_dpbusd_epi32(dhi[c], hi, act_dword(x[c][b].qs, 64 * p + 32 + 4 * i));
                }
            }
            const __m512i sc_lo = scale_lanes(w + 64 + 16 * (2 * p)), sc_hi = scale_lanes(w + 64 + 16 * (2 * p + 1));
            for (int c = 0; c < CT; ++c) {
                isum[c] = _mm512_add_epi32(isum[c], _mm512_add_epi32(_mm512_mullo_epi32(dlo[c], sc_lo), _mm512_mullo_epi32(dhi[c], sc_hi)));
            }
        }
        for (int j = 0; j < 8; ++j) {
            const __m512i m = scale_lanes(w + 192 + 16 * j);
            for (int c = 0; c < CT; ++c) {
                const int32_t sum32 = x[c][b].sums[2 * j] + x[c][b].sums[2 * j + 1];
                imin[c] = _mm512_add_epi32(imin[c], _mm512_mullo_epi32(m, _mm512_set1_epi32(sum32)));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w + 32)));
        for (int c = 0; c < CT; ++c) {
            const __m512 dx = _mm512_set1_ps(x[c][b].d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, dx), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin[c]), _mm512_mul_ps(dmin, dx), acc[c]);
        }
    }
}

// Q6_K: 3360 bytes per super-block of a band: the 16 rows' d (f16), their 16 sub-block
// scales (int8, [sub-block][row], 256 bytes), then per half h and group g (positions
// 4g .. 4g+3 of 32) three registers: ql[64h + 4g ..], ql[64h + 32 + 4g ..] and
// qh[32h + 4g ..], lane l holding row l's 4 bytes. They give four runs of 4 values, each
// q + 32 in 0 .. 63: A = low nibbles of the first | qh bits 0-1 (values 128h + 4g ..),
// B = low nibbles of the second | bits 2-3 (+32), C = high nibbles of the first | bits
// 4-5 (+64), D = high nibbles of the second | bits 6-7 (+96). Each sub-block's integer
// dot starts from -32 * (its activation sum) and is multiplied by its scale; then per
// row and block acc = fma(float(isum), d * d_x, acc).
template <int CT>
void q6_k_band(const uint8_t * w, int64_t nb, const void * const * xv, __m512 * acc) {
    const auto * const * x = reinterpret_cast<const PackedActKBlock * const *>(xv);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (int c = 0; c < CT; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, w += 3360) {
        __m512i isum[CT];
        for (int c = 0; c < CT; ++c) isum[c] = _mm512_setzero_si512();
        for (int h = 0; h < 2; ++h) {
            for (int gq = 0; gq < 2; ++gq) {
                // Sub-blocks 8h + gq + {0, 2, 4, 6}: runs A, B, C, D of groups 4gq .. 4gq+3.
                __m512i dot[CT][4];
                for (int c = 0; c < CT; ++c) {
                    for (int s = 0; s < 4; ++s) dot[c][s] = _mm512_set1_epi32(-32 * x[c][b].sums[8 * h + gq + 2 * s]);
                }
                for (int g = 4 * gq; g < 4 * gq + 4; ++g) {
                    const uint8_t * p = w + 288 + 64 * (24 * h + 3 * g);
                    const __m512i ql0 = _mm512_loadu_si512(p), ql1 = _mm512_loadu_si512(p + 64);
                    const __m512i qh = _mm512_loadu_si512(p + 128);
                    const __m512i v[4] = {
                        _mm512_or_si512(_mm512_and_si512(ql0, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30)),
                        _mm512_or_si512(_mm512_and_si512(ql1, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30)),
                        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql0, 4), m4), _mm512_and_si512(qh, m30)),
                        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql1, 4), m4), _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30)),
                    };
                    for (int c = 0; c < CT; ++c) {
                        for (int s = 0; s < 4; ++s) dot[c][s] = _mm512_dpbusd_epi32(dot[c][s], v[s], act_dword(x[c][b].qs, 128 * h + 32 * s + 4 * g));
                    }
                }
                for (int s = 0; s < 4; ++s) {
                    const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(w + 32 + 16 * (8 * h + gq + 2 * s))));
                    for (int c = 0; c < CT; ++c) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(dot[c][s], sc));
                }
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w)));
        for (int c = 0; c < CT; ++c) {
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(d, _mm512_set1_ps(x[c][b].d)), acc[c]);
        }
    }
}

// F32 / F16 / BF16: a band holds the 16 rows' value k (64 bytes of f32, 32 of f16 or
// bf16) for k = 0, 1, ... in turn. Per row and activation column four chains take the
// values k = 4i + j (chain j) in increasing i, a tail of n % 4 values going to chains
// 0, 1, 2; then y = (chain 0 + chain 1) + (chain 2 + chain 3). Every lane is its own
// sequence of fma, so the bits do not depend on the vector width.
__m512 band_f32(const uint8_t * p) { return _mm512_loadu_ps(reinterpret_cast<const float *>(p)); }
__m512 band_f16(const uint8_t * p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))); }
__m512 band_bf16(const uint8_t * p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))), 16));
}

template <int CT, __m512 (*Load)(const uint8_t *), int kBytes>
void plain_band(const uint8_t * w, int64_t n, const void * const * xv, __m512 * acc) {
    const float * x[CT];
    for (int c = 0; c < CT; ++c) x[c] = static_cast<const float *>(xv[c]);
    __m512 chain[4][CT];
    for (int j = 0; j < 4; ++j) {
        for (int c = 0; c < CT; ++c) chain[j][c] = _mm512_setzero_ps();
    }
    const int64_t n4 = n / 4 * 4;
    for (int64_t k = 0; k < n4; k += 4, w += 4 * kBytes) {
        for (int j = 0; j < 4; ++j) {
            const __m512 v = Load(w + j * kBytes);
            for (int c = 0; c < CT; ++c) chain[j][c] = _mm512_fmadd_ps(v, _mm512_set1_ps(x[c][k + j]), chain[j][c]);
        }
    }
    for (int j = 0; j < 3; ++j) {
        if (n4 + j >= n) break;
        const __m512 v = Load(w + j * kBytes);
        for (int c = 0; c < CT; ++c) chain[j][c] = _mm512_fmadd_ps(v, _mm512_set1_ps(x[c][n4 + j]), chain[j][c]);
    }
    for (int c = 0; c < CT; ++c) {
        acc[c] = _mm512_add_ps(_mm512_add_ps(chain[0][c], chain[1][c]), _mm512_add_ps(chain[2][c], chain[3][c]));
    }
}

using BandFn = void (*)(const uint8_t *, int64_t, const void * const *, __m512 *);

// One band against activation columns c0 .. c0+CT-1.
template <int CT, BandFn Band>
void band_columns(const PackedArgs & a, int64_t band, int64_t c0) {
    const void * x[CT];
    for (int c = 0; c < CT; ++c) x[c] = static_cast<const uint8_t *>(a.x) + (c0 + c) * a.x_row_bytes;
    __m512 acc[CT];
    Band(static_cast<const uint8_t *>(a.w) + band * a.band_bytes, a.nb, x, acc);
    const int64_t r0 = kBandRows * band;
    const int64_t left = a.n_rows - r0;
    const __mmask16 m = left >= kBandRows ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    for (int c = 0; c < CT; ++c) _mm512_mask_storeu_ps(a.y + (c0 + c) * a.ldy + r0, m, acc[c]);
}

// Groups of bands of about kGroupBytes times chunks of columns of about kChunkBytes, both
// meant to stay in L2 while they meet: band by band within a group, each band against
// the chunk's columns in fours (the weights decoded once for four), then the rest. The
// order changes no bits: every output is one band_columns call's, the same for any CT.
constexpr int64_t kGroupBytes = 256 * 1024;
constexpr int64_t kChunkBytes = 256 * 1024;

template <BandFn B1, BandFn B2, BandFn B3, BandFn B4>
void packed_by_columns(const PackedArgs & a) {
    const int64_t group = a.band_bytes >= kGroupBytes ? 1 : kGroupBytes / a.band_bytes;
    const int64_t chunk = a.x_row_bytes * 8 >= kChunkBytes ? 4 : kChunkBytes / a.x_row_bytes / 4 * 4;
    for (int64_t g0 = 0; g0 < a.n_bands; g0 += group) {
        const int64_t g1 = a.n_bands - g0 < group ? a.n_bands : g0 + group;
        for (int64_t c0 = 0; c0 < a.n_cols; c0 += chunk) {
            const int64_t c1 = a.n_cols - c0 < chunk ? a.n_cols : c0 + chunk;
            for (int64_t band = g0; band < g1; ++band) {
                int64_t c = c0;
                for (; c + 4 <= c1; c += 4) band_columns<4, B4>(a, band, c);
                switch (c1 - c) {
                    case 3: band_columns<3, B3>(a, band, c); break;
                    case 2: band_columns<2, B2>(a, band, c); break;
                    case 1: band_columns<1, B1>(a, band, c); break;
                    default: break;
                }
            }
        }
    }
}

template <__m512 (*Load)(const uint8_t *), int kBytes>
void packed_plain(const PackedArgs & a) {
    packed_by_columns<plain_band<1, Load, kBytes>, plain_band<2, Load, kBytes>, plain_band<3, Load, kBytes>,
                      plain_band<4, Load, kBytes>>(a);
}

void packed_q4_0(const PackedArgs & a) { packed_by_columns<q4_0_band<1>, q4_0_band<2>, q4_0_band<3>, q4_0_band<4>>(a); }
void packed_q8_0(const PackedArgs & a) { packed_by_columns<q8_0_band<1>, q8_0_band<2>, q8_0_band<3>, q8_0_band<4>>(a); }
void packed_q4_k(const PackedArgs & a) { packed_by_columns<q4_k_band<1>, q4_k_band<2>, q4_k_band<3>, q4_k_band<4>>(a); }
void packed_q6_k(const PackedArgs & a) { packed_by_columns<q6_k_band<1>, q6_k_band<2>, q6_k_band<3>, q6_k_band<4>>(a); }

}  // namespace

const PackedFn kAvx512Packed[kWeightKinds] = {packed_plain<band_f32, 64>, packed_plain<band_f16, 32>,
                                              packed_plain<band_bf16, 32>, packed_q8_0, packed_q4_0, packed_q4_k, packed_q6_k};

}  // namespace toyllm::cpu::kernels
