// AVX-512 kernels (F, BW, VL, DQ and VNNI: Ice Lake, Zen 4 and later).
//
// Q8_0 and Q4_0: integer block dots with VNNI dpbusd on groups of 16 blocks, several
// rows at a time (see the section below). The k-quants multiply u8 x s8 pairs with
// maddubs into int16 and apply their 16-value (Q6_K) or 32-value (Q4_K) sub-block scales
// with the VNNI int16 dot (dpwssd) in the same step.
//
// Compiled with the AVX-512 flags: no std:: templates and no non-static inline functions
// from project headers here (see vec_dot_kernels.h).
#include "backend/cpu/vec_dot_kernels.h"

// GCC 12 reports the deliberately undefined __Y inside _mm512_undefined_*() as used
// uninitialized once some AVX-512 intrinsics are inlined (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstring>
#include <vector>

namespace toyllm::cpu::kernels {

namespace {

float f16(uint16_t h) { return _cvtsh_ss(h); }

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- activation conversions ---------------------------------------------------------

// roundf (half away from zero), exactly: truncate, then step away from zero when the
// dropped fraction is at least one half (t - trunc(t) is exact in floating point).
__m512 round_half_away(__m512 t) {
    const __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(t, r)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(t, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_add_ps(r, up, r, one);
}

// Same arithmetic as the reference quantizer (d = amax / 127, id = 1 / d, q = roundf(x*id)),
// so the bytes are identical.
void q8_0_from_float(const float * x, void * y_, int64_t n) {
    auto * y = static_cast<Q8_0Block *>(y_);
    for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
        const __m512 v0 = _mm512_loadu_ps(x);
        const __m512 v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
        const __m512 vid = _mm512_set1_ps(id);
        const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v0, vid))));
        const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v1, vid))));
        _mm_storeu_si128(reinterpret_cast<__m128i *>(y[b].qs), q0);
        _mm_storeu_si128(reinterpret_cast<__m128i *>(y[b].qs + 16), q1);
    }
}

// ggml's quantize_row_q8_K_ref (see vec_dot.cpp): the largest magnitude with its sign
// maps to -127; rounding half to even as nearest_int does (the default MXCSR mode).
void q8_k_from_float(const float * x, void * y_, int64_t n) {
    auto * y = static_cast<Q8_KBlock *>(y_);
    for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
        __m512 vmax = _mm512_setzero_ps();
        for (int j = 0; j < kQK_K; j += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(vmax);
        if (amax == 0.0f) {
            std::memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        // The first value whose magnitude is amax, as the reference's strict > keeps it.
        float max = 0.0f;
        const __m512 vam = _mm512_set1_ps(amax);
        for (int j = 0; j < kQK_K; j += 16) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), vam, _CMP_EQ_OQ);
            if (m != 0) {
                max = x[j + __builtin_ctz(static_cast<unsigned>(m))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vis = _mm512_set1_ps(iscale);
        const __m512i v127 = _mm512_set1_epi32(127);
        for (int j = 0; j < kQK_K; j += 16) {
            const __m512i q = _mm512_min_epi32(v127, _mm512_cvtps_epi32(_mm512_mul_ps(vis, _mm512_loadu_ps(x + j))));
            _mm_storeu_si128(reinterpret_cast<__m128i *>(y[b].qs + j), _mm512_cvtsepi32_epi8(q));
            y[b].bsums[j / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
        }
        y[b].d = 1.0f / iscale;
    }
}

constexpr int kPlainPrefetchBytes = 8192;

// ---- plain types ---------------------------------------------------------------------

__m512 load16_f32(const void * w, int64_t i) { return _mm512_loadu_ps(static_cast<const float *>(w) + i); }
__m512 load16_f16(const void * w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(static_cast<const uint16_t *>(w) + i)));
}
__m512 load16_bf16(const void * w, int64_t i) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(static_cast<const uint16_t *>(w) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
// The first `count` (< 16) values at i, zeros after.
__m512 tail16_f32(const void * w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float *>(w) + i);
}
__m512 tail16_f16(const void * w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t *>(w) + i));
}
__m512 tail16_bf16(const void * w, int64_t i, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t *>(w) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Four accumulators of 16 (64 values per step) hide the FMA latency; the loader
// parameters of this always-inlined static function are constants at each call site.
// F32 weights are prefetched kPlainPrefetchBytes ahead: from DRAM that took F32 from
// 10-14 to 17-20 GB/s on one Zen 5 core, and helps it with 2 threads on a Zen 4 too.
// F16 and BF16 are not: unchanged on the Zen 5, and on a Zen 4 (bench_matvec 5632 x 2048,
// alternating binaries) F16 read 14.8 -> 20.5 GB/s on one thread and 27.4 -> 32.9 on two
// without it, BF16 21 -> 25-28.5 on one. Prefetches past the row's end are harmless
// (they never fault) and usually useful: the next row follows.
__attribute__((always_inline)) inline float dot_plain(int64_t n, const void * w, const float * x, int elem_bytes,
                                                      bool prefetch, __m512 (*load16)(const void *, int64_t),
                                                      __m512 (*tail16)(const void *, int64_t, __mmask16)) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        if (prefetch) {
            const char * pf = static_cast<const char *>(w) + i * elem_bytes + kPlainPrefetchBytes;
            for (int l = 0; l < 64 * elem_bytes; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
        }
        acc0 = _mm512_fmadd_ps(load16(w, i), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load16(w, i + 16), _mm512_loadu_ps(x + i + 16), acc1);
        acc2 = _mm512_fmadd_ps(load16(w, i + 32), _mm512_loadu_ps(x + i + 32), acc2);
        acc3 = _mm512_fmadd_ps(load16(w, i + 48), _mm512_loadu_ps(x + i + 48), acc3);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load16(w, i), _mm512_loadu_ps(x + i), acc0);
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        acc1 = _mm512_fmadd_ps(tail16(w, i, m), _mm512_maskz_loadu_ps(m, x + i), acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

float dot_f32(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 4, true, load16_f32, tail16_f32);
}
float dot_f16(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 2, false, load16_f16, tail16_f16);
}
float dot_bf16(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 2, false, load16_bf16, tail16_bf16);
}

// ---- Q8_0 / Q4_0 ---------------------------------------------------------------------
//
// Both work on groups of 16 blocks. The integer dot of a block is a VNNI dpbusd, which
// multiplies unsigned by signed bytes: the weights are made unsigned by an offset (Q8_0:
// q + 128; Q4_0: the stored nibble, q + 8) and dpbusd starts from -offset * (sum of the
// block's activations), itself a dpbusd against a constant. What depends on the
// activation alone (its rearranged quants, block sums and scales) is computed once for
// several rows: Q8_0 takes R = 4 rows at a time (then single rows), Q4_0 prepares it for
// all the rows of a call. Each row's sum is a fixed sequence of operations, whatever the
// number of rows of the call.
//
// From DRAM the hardware prefetchers do not keep up with these kernels (on one Zen 5
// core Q8_0 with R = 4 read 14 GB/s, about 20 with software prefetch; in the L2 R = 4 is
// 15-45% faster than R = 1). So each row prefetches the lines kPrefetchBytes ahead of
// where it reads (4 KB: 18-20 GB/s, 8 KB: 20-21, 16 KB: 20); past its end, the same part
// of the row read after it.
constexpr int64_t kPrefetchBytes = 8192;

// Prefetches `bytes` bytes at kPrefetchBytes past byte `pos` of a row (or part of a row)
// of `row_bytes`; past its end, at the same distance into the row `next` bytes further
// on (0: nothing).
void prefetch_ahead(const void * row, int64_t pos, int64_t row_bytes, int64_t next, int bytes) {
    int64_t ahead = pos + kPrefetchBytes;
    if (ahead >= row_bytes) {
        if (next == 0) return;
        ahead += next - row_bytes;
    }
    const auto * p = static_cast<const char *>(row) + ahead;
    for (int l = 0; l < bytes; l += 64) _mm_prefetch(p + l, _MM_HINT_T0);
}

// The f16 scales (first word of each block) of 16 consecutive Q8_0 blocks as floats. A
// gather costs about a cycle per element on Zen 5 (measured: the kernels ran 2x slower
// with two gathers per group) and more on older cores, so the scales are picked out of
// plain 64-byte loads with word permutes (vpermt2w, AVX512BW): block i's scale is word
// 17i of the 34-byte blocks. No load leaves the 16 blocks.
alignas(64) constexpr uint16_t kQ8_0ScaleWords[4][32] = {
    {0, 17, 34, 51},                                      // blocks 0-3 -> words 0-3
    {0, 0, 0, 0, 0, 17, 34, 51},                          // blocks 4-7 -> words 4-7
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 34, 51},              // ...
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 34, 51},
};

__m512i load64(const void * p) { return _mm512_loadu_si512(p); }

// Pins a loaded value to a register, where the caller uses it (in a helper that returns
// the values, GCC spilled them to the stack instead). Without it the compiler frees
// registers it thinks it can reload, and folds the load of a weight line into each of its
// two or three users (vpermt2w memory operands): every extra read of a line still on its
// way from DRAM waits for it again. Q4_0 from DRAM, 2048 x 2048, alternating binaries:
// 1 thread 19-22 -> 27-35 GB/s, 2 threads 33-41 -> 40-62 GB/s.
void keep_in_register(__m512i & v) { asm("" : "+v"(v)); }
__m512i load_words(const uint16_t * p) { return _mm512_load_si512(p); }

__m512 q8_0_scales(const Q8_0Block * blocks) {
    const auto * p = reinterpret_cast<const uint8_t *>(blocks);
    __m512i d = _mm512_permutex2var_epi16(load64(p), load_words(kQ8_0ScaleWords[0]), load64(p + 64));
    for (int q = 1; q < 4; ++q) {
        const __m512i part =
            _mm512_permutex2var_epi16(load64(p + 136 * q), load_words(kQ8_0ScaleWords[q]), load64(p + 136 * q + 64));
        d = _mm512_mask_mov_epi16(d, static_cast<__mmask32>(0xFu << (4 * q)), part);
    }
    return _mm512_cvtph_ps(_mm512_castsi512_si256(d));
}

// One block at a time with 256-bit VNNI, for the blocks after the last full group.
float q8_0_tail(const Q8_0Block * w, const Q8_0Block * x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w[b].qs));
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w[b].d) * f16(x[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

float q4_0_tail(const Q4_0Block * w, const Q8_0Block * x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b].qs));
        const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
        const __m256i qw = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
        const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), qw, qx),
                                           _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), qx));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(w[b].d) * f16(x[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

// The 32 quants of two Q8_0 blocks, one block per 256-bit half.
__m512i q8_0_pair(const Q8_0Block & a, const Q8_0Block & b) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(a.qs));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qs)), 1);
}

// Lanes [2k x 8, 2k+1 x 8]: the scales of blocks 2k, 2k+1 (of 16) over a pair register.
__m512i pair_scale_index(int k) {
    return _mm512_add_epi32(_mm512_set1_epi32(2 * k), _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
}

// Q8_0: two blocks per register, 8 int32 lanes each. `next`: bytes from a row to the one
// read after it (R rows on), 0 for a lone row.
template <int R>
void q8_0_rows(const Q8_0Block * const * w, const Q8_0Block * x, int64_t nb, float * y, int64_t next) {
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16) {
        const __m512 dx = q8_0_scales(x + b);
        __m512 s[R];
        for (int r = 0; r < R; ++r) {
            prefetch_ahead(w[r], b * int64_t{sizeof(Q8_0Block)}, nb * int64_t{sizeof(Q8_0Block)}, next,
                           16 * sizeof(Q8_0Block));
        }
        for (int r = 0; r < R; ++r) s[r] = _mm512_mul_ps(q8_0_scales(w[r] + b), dx);
        for (int k = 0; k < 8; ++k) {
            const __m512i a = q8_0_pair(x[b + 2 * k], x[b + 2 * k + 1]);
            const __m512i neg_bias_sum =
                _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, a));
            const __m512i sidx = pair_scale_index(k);
            for (int r = 0; r < R; ++r) {
                const __m512i wu = _mm512_xor_si512(q8_0_pair(w[r][b + 2 * k], w[r][b + 2 * k + 1]), bias);
                const __m512i p = _mm512_dpbusd_epi32(neg_bias_sum, wu, a);
                acc[r][k & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(sidx, s[r]), acc[r][k & 1]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1])) + q8_0_tail(w[r] + b, x + b, nb - b);
    }
}

// Q4_0: quads of blocks, in halves. One register holds the 16 stored bytes of four blocks
// (one block per 128-bit lane); its low nibbles (values 0-15 of each block) and its high
// nibbles (values 16-31) go through two dpbusd into the same int32 lanes, against the
// matching halves of the four activation blocks (rearranged once per call). Two blocks
// per register, as for Q8_0, needed more shuffles and ran 1.9x slower.
//
// Activation quads by vpermt2w (all offsets even): block j of the 136-byte quad has
// values 0-15 at words 17j+1 .. 17j+8 (from loads at bytes 0 and 64: index w) and values
// 16-31 at words 17j+9 .. 17j+16 (from loads at bytes 8 and 72, words 4-35 and 36-67:
// index w - 4).
alignas(64) constexpr uint16_t kQ8_0QuadLoWords[32] = {
    1,  2,  3,  4,  5,  6,  7,  8,  18, 19, 20, 21, 22, 23, 24, 25,
    35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59};
alignas(64) constexpr uint16_t kQ8_0QuadHiWords[32] = {
    5,  6,  7,  8,  9,  10, 11, 12, 22, 23, 24, 25, 26, 27, 28, 29,
    39, 40, 41, 42, 43, 44, 45, 46, 56, 57, 58, 59, 60, 61, 62, 63};

// Lanes [4q x 4, 4q+1 x 4, 4q+2 x 4, 4q+3 x 4]: the scales of quad q (of 4) per 128-bit lane.
__m512i quad_scale_index(int q) {
    return _mm512_add_epi32(_mm512_set1_epi32(4 * q), _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
}

// A group of 16 Q4_0 blocks (288 bytes) read front to back: 4 x 64 + 32 bytes. Loading
// it this way instead of one overlapping 64-byte load per need doubled the throughput
// from DRAM (14 -> 27 GB/s for the loads alone on one Zen 5 core); everything else is
// permuted out of these registers.
struct Q4_0Group {
    __m512i r[5];  // r[4]: bytes 256-287 in its low half
};

Q4_0Group load_q4_0_group(const Q4_0Block * blocks) {
    const auto * p = reinterpret_cast<const uint8_t *>(blocks);
    Q4_0Group g;
    for (int i = 0; i < 4; ++i) g.r[i] = load64(p + 64 * i);
    g.r[4] = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + 256)));
    return g;
}

// Scale words: block j's f16 scale is at byte 18j. Blocks 0-7 from (r0, r1) at word 9j,
// blocks 8-14 from (r2, r3) at word 9j - 64, block 15 from (r3, r4) at word 39.
alignas(64) constexpr uint16_t kQ4_0GroupScaleWords[3][32] = {
    {0, 9, 18, 27, 36, 45, 54, 63},
    {0, 0, 0, 0, 0, 0, 0, 0, 8, 17, 26, 35, 44, 53, 62},
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 39},
};

__m512 q4_0_group_scales(const Q4_0Group & g) {
    __m512i d = _mm512_permutex2var_epi16(g.r[0], load_words(kQ4_0GroupScaleWords[0]), g.r[1]);
    d = _mm512_mask_mov_epi16(d, 0x7F00, _mm512_permutex2var_epi16(g.r[2], load_words(kQ4_0GroupScaleWords[1]), g.r[3]));
    d = _mm512_mask_mov_epi16(d, 0x8000, _mm512_permutex2var_epi16(g.r[3], load_words(kQ4_0GroupScaleWords[2]), g.r[4]));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(d));
}

// Quad q (blocks 4q .. 4q+3, bytes 72q .. 72q+71) starts 8q bytes into r[q]: its quants
// are words 4q + {1-8, 10-17, 19-26, 28-35} of the table (r[q], r[q+1]); at most 47.
alignas(64) constexpr uint16_t kQ4_0QuadWords[32] = {
    1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
    19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35};

// The activation side of Q4_0 x Q8_0, prepared once per call for all the rows: per quad
// of blocks the two halves and -8 * the block sums, per group the 16 scales. A row then
// costs 9 vector operations per quad. Rows are streamed one at a time, which the
// hardware prefetchers follow best; with this, 2 threads read 37 GB/s from DRAM against
// 30 when 4 rows shared the activation work.
struct Q4_0ActQuad {
    __m512i lo, hi, neg_bias_sum;
};
// Groups per chunk of columns: 16384 values, 26 KB of stack for the prepared activation.
constexpr int64_t kQ4_0ChunkGroups = 32;

void prepare_q4_0_activation(const Q8_0Block * x, int64_t n_groups, Q4_0ActQuad * quads, __m512 * dx) {
    const __m512i eights = _mm512_set1_epi8(8);
    const __m512i lo_words = load_words(kQ8_0QuadLoWords);
    const __m512i hi_words = load_words(kQ8_0QuadHiWords);
    for (int64_t g = 0; g < n_groups; ++g) {
        dx[g] = q8_0_scales(x + 16 * g);
        for (int q = 0; q < 4; ++q) {
            const auto * xq = reinterpret_cast<const uint8_t *>(x + 16 * g + 4 * q);
            Q4_0ActQuad & a = quads[4 * g + q];
            a.lo = _mm512_permutex2var_epi16(load64(xq), lo_words, load64(xq + 64));
            a.hi = _mm512_permutex2var_epi16(load64(xq + 8), hi_words, load64(xq + 72));
            a.neg_bias_sum = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, a.lo), eights, a.hi));
        }
    }
}

// One row over n_groups groups starting at w, against the prepared activation. `next`:
// bytes from w to where the following row's part starts (prefetched once this one is),
// 0 for none.
float q4_0_row_groups(const Q4_0Block * w, int64_t n_groups, const Q4_0ActQuad * quads, const __m512 * dx,
                      int64_t next) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i w_words = load_words(kQ4_0QuadWords);
    constexpr int64_t group_bytes = 16 * sizeof(Q4_0Block);
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t g = 0; g < n_groups; ++g) {
        prefetch_ahead(w, g * group_bytes, n_groups * group_bytes, next, group_bytes);
        Q4_0Group grp = load_q4_0_group(w + 16 * g);
        for (__m512i & r : grp.r) keep_in_register(r);
        const __m512 s = _mm512_mul_ps(q4_0_group_scales(grp), dx[g]);
        for (int q = 0; q < 4; ++q) {
            const Q4_0ActQuad & a = quads[4 * g + q];
            const __m512i quad_words = _mm512_add_epi16(w_words, _mm512_set1_epi16(static_cast<int16_t>(4 * q)));
            const __m512i v = _mm512_permutex2var_epi16(grp.r[q], quad_words, grp.r[q + 1]);
            const __m512i lo = _mm512_and_si512(v, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a.neg_bias_sum, lo, a.lo), hi, a.hi);
            acc[q & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(quad_scale_index(q), s), acc[q & 1]);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

// y[r] for n_rows rows `stride` bytes apart: per chunk of columns, the partial sums of
// all rows, added in chunk order; then the blocks after the last full group.
void q4_0_rows(const uint8_t * base, int64_t stride, int64_t n_rows, const Q8_0Block * x, int64_t nb, float * y) {
    alignas(64) Q4_0ActQuad quads[4 * kQ4_0ChunkGroups];
    alignas(64) __m512 dx[kQ4_0ChunkGroups];
    const auto row = [&](int64_t r) { return reinterpret_cast<const Q4_0Block *>(base + r * stride); };
    const int64_t n_groups = nb / 16;
    for (int64_t r = 0; r < n_rows; ++r) y[r] = 0.0f;
    for (int64_t g0 = 0; g0 < n_groups; g0 += kQ4_0ChunkGroups) {
        const int64_t ng = n_groups - g0 < kQ4_0ChunkGroups ? n_groups - g0 : kQ4_0ChunkGroups;
        prepare_q4_0_activation(x + 16 * g0, ng, quads, dx);
        for (int64_t r = 0; r < n_rows; ++r) y[r] += q4_0_row_groups(row(r) + 16 * g0, ng, quads, dx, stride);
    }
    const int64_t b = 16 * n_groups;
    if (b < nb) {
        for (int64_t r = 0; r < n_rows; ++r) y[r] += q4_0_tail(row(r) + b, x + b, nb - b);
    }
}

// Rows in fours, then one by one.
template <class Block, void (*Rows4)(const Block * const *, const Q8_0Block *, int64_t, float *, int64_t),
          void (*Rows1)(const Block * const *, const Q8_0Block *, int64_t, float *, int64_t)>
void rows_by_four(const RowsArgs & a) {
    const auto * base = static_cast<const uint8_t *>(a.w);
    const auto * x = static_cast<const Q8_0Block *>(a.x);
    const int64_t nb = a.n / kQK;
    const auto row = [&](int64_t r) { return reinterpret_cast<const Block *>(base + r * a.w_row_bytes); };
    int64_t r = 0;
    for (; r + 4 <= a.n_rows; r += 4) {
        const Block * w[4] = {row(r), row(r + 1), row(r + 2), row(r + 3)};
        Rows4(w, x, nb, a.y + r, 4 * a.w_row_bytes);
    }
    for (; r < a.n_rows; ++r) {
        const Block * w[1] = {row(r)};
        Rows1(w, x, nb, a.y + r, a.w_row_bytes);
    }
}

float dot_q8_0(int64_t n, const void * w, const void * x) {
    float y;
    const Q8_0Block * rows[1] = {static_cast<const Q8_0Block *>(w)};
    q8_0_rows<1>(rows, static_cast<const Q8_0Block *>(x), n / kQK, &y, 0);
    return y;
}

float dot_q4_0(int64_t n, const void * w, const void * x) {
    float y;
    q4_0_rows(static_cast<const uint8_t *>(w), 0, 1, static_cast<const Q8_0Block *>(x), n / kQK, &y);
    return y;
}

void rows_q8_0(const RowsArgs & a) { rows_by_four<Q8_0Block, q8_0_rows<4>, q8_0_rows<1>>(a); }
void rows_q4_0(const RowsArgs & a) {
    q4_0_rows(static_cast<const uint8_t *>(a.w), a.w_row_bytes, a.n_rows, static_cast<const Q8_0Block *>(a.x),
              a.n / kQK, a.y);
}

// ---- tiles: several weight rows x several activation rows (prefill) ---------------------
//
// Each output is computed with exactly the operations of the dot of this file for its
// pair (same lanes, same fma chains, same reductions); only what is shared is hoisted:
// a weight block is loaded and decoded once for kCT activation rows, and what depends on
// an activation row alone (its rearranged quants, the bias term of the weights' unsigned
// offset, its scales as floats) is computed once per matmul by pack(). Register tiles
// are kRT weight rows x kCT activation rows; tile_by() walks an arbitrary tile with them.

// Prefetches the weight rows [begin, end) of the tile (clamped to it).
void prefetch_rows(const TileArgs & a, int64_t begin, int64_t end) {
    end = end < a.n_rows ? end : a.n_rows;
    for (int64_t r = begin; r < end; ++r) {
        const char * p = static_cast<const char *>(a.w) + r * a.w_row_bytes;
        for (int64_t l = 0; l < a.w_row_bytes; l += 64) _mm_prefetch(p + l, _MM_HINT_T0);
    }
}

// The first group of activation rows meets the weight rows straight from DRAM (a
// matmul's weights are read once per prefill), which the hardware prefetchers alone
// did not stream fast enough: it prefetches the rows kPrefetchBytes ahead. The other
// groups find them in L2.
template <class K, int CT>
void tile_rows(const TileArgs & a, int64_t c) {
    const int64_t ahead = (kPrefetchBytes + a.w_row_bytes - 1) / a.w_row_bytes;
    if (c == 0) prefetch_rows(a, 0, ahead);
    int64_t r = 0;
    for (; r + K::kRT <= a.n_rows; r += K::kRT) {
        if (c == 0) prefetch_rows(a, r + ahead, r + ahead + K::kRT);
        K::template run<K::kRT, CT>(a, r, c);
    }
    for (; r < a.n_rows; ++r) K::template run<1, CT>(a, r, c);
}

// The last 1 .. kCT - 1 activation rows.
template <class K, int CT>
void tile_rest(const TileArgs & a, int64_t c) {
    if constexpr (CT > 0) {
        if (a.n_cols - c == CT) {
            tile_rows<K, CT>(a, c);
            return;
        }
        tile_rest<K, CT - 1>(a, c);
    }
}

// Activation rows in groups of kCT (the rows of the tile stream past each group, which
// stays in L1), then the rest.
template <class K>
void tile_by(const TileArgs & a) {
    int64_t c = 0;
    for (; c + K::kCT <= a.n_cols; c += K::kCT) tile_rows<K, K::kCT>(a, c);
    tile_rest<K, K::kCT - 1>(a, c);
}

// -- Q8_0 and Q4_0 --
//
// Prepared activation row: per group of 16 blocks its scales as floats and per pair
// (Q8_0) or quad (Q4_0) of blocks the quants as the dot rearranges them with the bias
// term; then the blocks after the last group (the dot's 256-bit tail): their scales as
// floats and per block the 32 quants with the bias term of its 8 int32 lanes. The tail is
// computed for two activation rows per 512-bit register (one per half, the same lanes
// as the dot's 256-bit register), its sum per half as the dot's hsum.
struct Q8_0TilePair {
    int8_t qs[64];       // blocks 2k, 2k+1 (q8_0_pair)
    int32_t nbias[16];   // -128 * sums of 4 quants (weights are read as q + 128)
};
struct Q8_0TileGroup {
    float d[16];
    Q8_0TilePair pairs[8];
};
struct Q4_0TileQuad {     // Q4_0ActQuad in bytes (the rows need not be 64-byte aligned)
    int8_t lo[64];
    int8_t hi[64];
    int32_t nbias[16];   // -8 * sums of 4 quants of lo and hi (the stored nibbles are q + 8)
};
struct Q4_0TileGroup {
    float d[16];
    Q4_0TileQuad quads[4];
};
struct TileTailBlock {
    int8_t qs[32];
    int32_t nbias[8];    // Q8_0 weights: -128 * sums of 4; Q4_0: -8 * sums of 4
};
struct TileTail {
    float d[16];
    TileTailBlock blocks[15];  // nb % 16 of them
};
static_assert(sizeof(Q8_0TileGroup) % 64 == 0 && sizeof(Q4_0TileGroup) % 64 == 0 && sizeof(TileTailBlock) == 64);

template <class Group>
int64_t packed_bytes_q(int64_t n) {
    const int64_t nb = n / kQK;
    return nb / 16 * int64_t{sizeof(Group)} + 64 + nb % 16 * int64_t{sizeof(TileTailBlock)};
}

// The tail blocks of x (from block b on) with the bias term -bias_unit * (sums of 4 quants).
void pack_tail(const Q8_0Block * x, int64_t b, int64_t nb, int bias_unit, TileTail * t) {
    const __m256i unit = _mm256_set1_epi8(static_cast<char>(bias_unit));
    _mm512_storeu_ps(t->d, _mm512_setzero_ps());
    for (int64_t j = 0; b + j < nb; ++j) {
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b + j].qs));
        t->d[j] = f16(x[b + j].d);
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(t->blocks[j].qs), qx);
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(t->blocks[j].nbias),
                            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), unit, qx)));
    }
}

void pack_q8_0(const void * x_, void * out, int64_t n) {
    const auto * x = static_cast<const Q8_0Block *>(x_);
    const int64_t nb = n / kQK, ng = nb / 16;
    auto * g = static_cast<Q8_0TileGroup *>(out);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int64_t i = 0; i < ng; ++i) {
        const Q8_0Block * xb = x + 16 * i;
        _mm512_storeu_ps(g[i].d, q8_0_scales(xb));
        #pragma GCC unroll 16
        for (int k = 0; k < 8; ++k) {
            const __m512i a = q8_0_pair(xb[2 * k], xb[2 * k + 1]);
            _mm512_storeu_si512(g[i].pairs[k].qs, a);
            _mm512_storeu_si512(g[i].pairs[k].nbias,
                                _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, a)));
        }
    }
    pack_tail(x, 16 * ng, nb, 0x80, reinterpret_cast<TileTail *>(g + ng));
}

void pack_q4_0(const void * x_, void * out, int64_t n) {
    const auto * x = static_cast<const Q8_0Block *>(x_);
    const int64_t nb = n / kQK, ng = nb / 16;
    auto * g = static_cast<Q4_0TileGroup *>(out);
    for (int64_t i = 0; i < ng; ++i) {
        alignas(64) Q4_0ActQuad quads[4];
        __m512 dx;
        prepare_q4_0_activation(x + 16 * i, 1, quads, &dx);
        _mm512_storeu_ps(g[i].d, dx);
        #pragma GCC unroll 16
        for (int q = 0; q < 4; ++q) {
            _mm512_storeu_si512(g[i].quads[q].lo, quads[q].lo);
            _mm512_storeu_si512(g[i].quads[q].hi, quads[q].hi);
            _mm512_storeu_si512(g[i].quads[q].nbias, quads[q].neg_bias_sum);
        }
    }
    pack_tail(x, 16 * ng, nb, 8, reinterpret_cast<TileTail *>(g + ng));
}

// The tail of RT weight rows x CT activation rows, two activation rows per register.
// `decode` gives the 32 weight values of a block in value order with the offset that
// the bias term undoes (Q8_0: q + 128; Q4_0: the stored nibbles).
template <int RT, int CT, class Block, __m256i (*decode)(const Block &)>
void tile_tail(const Block * const * w, const TileTail * const * xt, int64_t nt, __m512 (&tacc)[RT][(CT + 1) / 2]) {
    constexpr int CP = (CT + 1) / 2;
    #pragma GCC unroll 16
    for (int r = 0; r < RT; ++r) {
        #pragma GCC unroll 16
        for (int p = 0; p < CP; ++p) tacc[r][p] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < nt; ++j) {
        __m512i a[CP], nbias[CP];
        __m512 dx[CP];
        #pragma GCC unroll 16
        for (int p = 0; p < CP; ++p) {
            const TileTail * t0 = xt[2 * p];
            const TileTail * t1 = xt[2 * p + 1 < CT ? 2 * p + 1 : 2 * p];
            a[p] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(t0->blocks[j].qs))),
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t1->blocks[j].qs)), 1);
            nbias[p] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(t0->blocks[j].nbias))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t1->blocks[j].nbias)), 1);
            dx[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(t0->d[j])), _mm256_set1_ps(t1->d[j]), 1);
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            const __m512i wv = _mm512_broadcast_i64x4(decode(w[r][j]));
            const __m512 dw = _mm512_set1_ps(f16(w[r][j].d));
            #pragma GCC unroll 16
            for (int p = 0; p < CP; ++p) {
                const __m512i prod = _mm512_dpbusd_epi32(nbias[p], wv, a[p]);
                tacc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx[p]), _mm512_cvtepi32_ps(prod), tacc[r][p]);
            }
        }
    }
}

// hsum of half c % 2 of a tail register.
float tail_sum(__m512 v, int c) {
    return hsum(c % 2 == 0 ? _mm512_castps512_ps256(v) : _mm512_extractf32x8_ps(v, 1));
}

// The reductions of a 2 x 4 register tile, for all 8 pairs at once with the additions
// of the dot's own reductions, in the same tree (float addition is commutative, so only
// which values meet matters, not the operand order):
//   _mm512_reduce_add_ps(a): b[i] = a[i] + a[i+8]; c[i] = b[i] + b[i+4];
//                            d0 = c0 + c2, d1 = c1 + c3; d0 + d1
//   hsum(t) of 8 lanes:      the same from b = t on.
// Level 1 takes the accumulators of two pairs to [b of one | b of the other], which is
// also how the tail holds its two 8-lane sums; levels 2-4 then reduce four such vectors.
__m512 reduce_level1(__m512 p, __m512 q) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
}

// x0 .. x3 = [b of pairs (0,0) | (0,1)], [(0,2) | (0,3)], [(1,0) | (1,1)], [(1,2) | (1,3)]
// (row, column). Returns per 128-bit lane k the sums of pairs (0,k) and (1,k) in
// elements 0 and 1.
__m512 reduce_levels234(__m512 x0, __m512 x1, __m512 x2, __m512 x3) {
    const __m512 y0 = _mm512_add_ps(_mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1)));  // c of row 0, per lane
    const __m512 y1 = _mm512_add_ps(_mm512_shuffle_f32x4(x2, x3, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x2, x3, _MM_SHUFFLE(3, 1, 3, 1)));  // c of row 1
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y0, y1, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(y0, y1, _MM_SHUFFLE(3, 2, 3, 2)));  // d0 d1 of both
    return _mm512_add_ps(_mm512_shuffle_ps(z, z, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(z, z, _MM_SHUFFLE(3, 1, 3, 1)));
}

// The 2 x 4 sums of 2 x 4 pairs of accumulators, in reduce_levels234's layout.
__attribute__((always_inline)) inline __m512 reduce_2x4(const __m512 (&acc)[2][4][2]) {
    __m512 x[2][2];
    #pragma GCC unroll 16
    for (int r = 0; r < 2; ++r) {
        #pragma GCC unroll 16
        for (int p = 0; p < 2; ++p) {
            x[r][p] = reduce_level1(_mm512_add_ps(acc[r][2 * p][0], acc[r][2 * p][1]),
                                    _mm512_add_ps(acc[r][2 * p + 1][0], acc[r][2 * p + 1][1]));
        }
    }
    return reduce_levels234(x[0][0], x[0][1], x[1][0], x[1][1]);
}

// Stores sums in reduce_levels234's layout: y[c * ldy + r] for the 2 x 4 tile at y.
void store_2x4(__m512 v, float * y, int64_t ldy) {
    _mm_storel_pi(reinterpret_cast<__m64 *>(y), _mm512_castps512_ps128(v));
    _mm_storel_pi(reinterpret_cast<__m64 *>(y + ldy), _mm512_extractf32x4_ps(v, 1));
    _mm_storel_pi(reinterpret_cast<__m64 *>(y + 2 * ldy), _mm512_extractf32x4_ps(v, 2));
    _mm_storel_pi(reinterpret_cast<__m64 *>(y + 3 * ldy), _mm512_extractf32x4_ps(v, 3));
}

__m256i decode_q8_0_unsigned(const Q8_0Block & b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(b.qs)), _mm256_set1_epi8(static_cast<char>(0x80)));
}

__m256i decode_q4_0_nibbles(const Q4_0Block & b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i *>(b.qs));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// The first weight row and activation row of each row and column of a register tile.
template <class Block, class XRow, int RT, int CT>
struct TileRows {
    const Block * w[RT];
    const XRow * x[CT];
    TileRows(const TileArgs & ta, int64_t r0, int64_t c0) {
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            w[r] = reinterpret_cast<const Block *>(static_cast<const uint8_t *>(ta.w) + (r0 + r) * ta.w_row_bytes);
        }
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) {
            x[c] = reinterpret_cast<const XRow *>(static_cast<const uint8_t *>(ta.x) + (c0 + c) * ta.x_row_bytes);
        }
    }
};

// Q8_0: the operations of q8_0_rows for each pair.
struct Q8_0Tile {
    static constexpr int kRT = 2, kCT = 4;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const int64_t nb = ta.n / kQK, ng = nb / 16, nt = nb % 16;
        const TileRows<Q8_0Block, Q8_0TileGroup, RT, CT> t(ta, r0, c0);
        const auto & w = t.w;
        const auto & x = t.x;
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
        __m512 acc[RT][CT][2];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
        }
        alignas(64) float s[RT][CT][16];
        for (int64_t g = 0; g < ng; ++g) {
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                const __m512 sw = q8_0_scales(w[r] + 16 * g);
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) _mm512_store_ps(s[r][c], _mm512_mul_ps(sw, _mm512_loadu_ps(x[c][g].d)));
            }
            #pragma GCC unroll 16
            for (int k = 0; k < 8; ++k) {
                const __m512i sidx = pair_scale_index(k);
                __m512i wu[RT];
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    wu[r] = _mm512_xor_si512(q8_0_pair(w[r][16 * g + 2 * k], w[r][16 * g + 2 * k + 1]), bias);
                }
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    #pragma GCC unroll 16
                    for (int c = 0; c < CT; ++c) {
                        const Q8_0TilePair & xp = x[c][g].pairs[k];
                        const __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(xp.nbias), wu[r], _mm512_loadu_si512(xp.qs));
                        acc[r][c][k & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(sidx, _mm512_load_ps(s[r][c])),
                                                           acc[r][c][k & 1]);
                    }
                }
            }
        }
        const TileTail * xt[CT];
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) xt[c] = reinterpret_cast<const TileTail *>(x[c] + ng);
        const Q8_0Block * wt[RT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) wt[r] = w[r] + 16 * ng;
        __m512 tacc[RT][(CT + 1) / 2];
        tile_tail<RT, CT, Q8_0Block, decode_q8_0_unsigned>(wt, xt, nt, tacc);
        if constexpr (RT == 2 && CT == 4) {
            const __m512 tail = reduce_levels234(tacc[0][0], tacc[0][1], tacc[1][0], tacc[1][1]);
            store_2x4(_mm512_add_ps(reduce_2x4(acc), tail), ta.y + c0 * ta.ldy + r0, ta.ldy);
            return;
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                ta.y[(c0 + c) * ta.ldy + r0 + r] =
                    _mm512_reduce_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1])) + tail_sum(tacc[r][c / 2], c);
            }
        }
    }
};

// Q4_0: the operations of q4_0_rows for each pair (partial sums per chunk of
// kQ4_0ChunkGroups groups added in order, then the tail if there is one).
struct Q4_0Tile {
    static constexpr int kRT = 2, kCT = 4;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const int64_t nb = ta.n / kQK, ng = nb / 16, nt = nb % 16;
        const TileRows<Q4_0Block, Q4_0TileGroup, RT, CT> t(ta, r0, c0);
        const auto & w = t.w;
        const auto & x = t.x;
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        const __m512i w_words = load_words(kQ4_0QuadWords);
        float y[RT][CT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) y[r][c] = 0.0f;
        }
        alignas(64) float s[RT][CT][16];
        __m512 y24 = _mm512_setzero_ps();  // the 2 x 4 tile's y in reduce_levels234's layout
        for (int64_t g0 = 0; g0 < ng; g0 += kQ4_0ChunkGroups) {
            const int64_t g1 = ng - g0 < kQ4_0ChunkGroups ? ng : g0 + kQ4_0ChunkGroups;
            __m512 acc[RT][CT][2];
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
            }
            for (int64_t g = g0; g < g1; ++g) {
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    const __m512 sw = q4_0_group_scales(load_q4_0_group(w[r] + 16 * g));
                    #pragma GCC unroll 16
                    for (int c = 0; c < CT; ++c) _mm512_store_ps(s[r][c], _mm512_mul_ps(sw, _mm512_loadu_ps(x[c][g].d)));
                }
                #pragma GCC unroll 16
                for (int q = 0; q < 4; ++q) {
                    const __m512i quad_words = _mm512_add_epi16(w_words, _mm512_set1_epi16(static_cast<int16_t>(4 * q)));
                    const __m512i sidx = quad_scale_index(q);
                    __m512i lo[RT], hi[RT];
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) {
                        const auto * p = reinterpret_cast<const uint8_t *>(w[r] + 16 * g);
                        // The bytes of r[q + 1] in load_q4_0_group: r[4] is 32 bytes, zero-extended.
                        const __m512i next = q < 3 ? load64(p + 64 * (q + 1))
                                                   : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p + 256)));
                        const __m512i v = _mm512_permutex2var_epi16(load64(p + 64 * q), quad_words, next);
                        lo[r] = _mm512_and_si512(v, m4);
                        hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                    }
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) {
                        #pragma GCC unroll 16
                        for (int c = 0; c < CT; ++c) {
                            const Q4_0TileQuad & a = x[c][g].quads[q];
                            const __m512i p = _mm512_dpbusd_epi32(
                                _mm512_dpbusd_epi32(_mm512_loadu_si512(a.nbias), lo[r], _mm512_loadu_si512(a.lo)), hi[r],
                                _mm512_loadu_si512(a.hi));
                            acc[r][c][q & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(sidx, _mm512_load_ps(s[r][c])),
                                                               acc[r][c][q & 1]);
                        }
                    }
                }
            }
            if constexpr (RT == 2 && CT == 4) {
                y24 = _mm512_add_ps(y24, reduce_2x4(acc));
                continue;
            }
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) y[r][c] += _mm512_reduce_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1]));
            }
        }
        if (nt > 0) {
            const TileTail * xt[CT];
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) xt[c] = reinterpret_cast<const TileTail *>(x[c] + ng);
            const Q4_0Block * wt[RT];
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) wt[r] = w[r] + 16 * ng;
            __m512 tacc[RT][(CT + 1) / 2];
            tile_tail<RT, CT, Q4_0Block, decode_q4_0_nibbles>(wt, xt, nt, tacc);
            if constexpr (RT == 2 && CT == 4) y24 = _mm512_add_ps(y24, reduce_levels234(tacc[0][0], tacc[0][1], tacc[1][0], tacc[1][1]));
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) y[r][c] += tail_sum(tacc[r][c / 2], c);
            }
        }
        if constexpr (RT == 2 && CT == 4) {
            store_2x4(y24, ta.y + c0 * ta.ldy + r0, ta.ldy);
            return;
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) ta.y[(c0 + c) * ta.ldy + r0 + r] = y[r][c];
        }
    }
};

// -- F16 / BF16 --
// The operations of dot_plain for each pair: four accumulators over 64-value steps
// (accumulator j takes values 16j .. 16j + 15 of each step), then 16-value steps into
// the first and a masked tail into the second. The activation rows are the f32 rows.
//
// Each accumulator is a chain of its own, so they are computed one after the other:
// with all four live, a register tile had room for 2 x 3 pairs (32 registers), which
// needs 5 loads per 6 fma and ran at about half the fma peak; one at a time, 4 x 4 pairs
// need 8 loads per 16 fma (in a scratch loop on one Zen 5 core: 118 -> 170 GFLOP/s).
// Accumulator j reads one 64-byte line of every four, each line once. The f16 / bf16
// weights are converted where they are used (4 conversions per 16 fma): converting
// blocks of rows to f32 once for all activation rows was 12% slower in prefill, the
// conversion loop waiting on DRAM with nothing to overlap.
constexpr int64_t kPlainTileBlock = 1024;  // values per block at most

template <__m512 (*load16)(const void *, int64_t), __m512 (*tail16)(const void *, int64_t, __mmask16)>
struct PlainTile {
    static constexpr int kRT = 4, kCT = 4;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const int64_t n = ta.n, n64 = n / 64 * 64, n16 = n / 16 * 16;
        const TileRows<uint8_t, float, RT, CT> t(ta, r0, c0);
        const auto & w = t.w;  // rows of 16-bit or 32-bit weights, read by load16 / tail16
        const auto & x = t.x;
        __m512 part[4][RT][CT];
        #pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) {
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) part[j][r][c] = _mm512_setzero_ps();
            }
        }
        // Equal blocks of at most kPlainTileBlock values, in which the four passes find
        // the rows in L1 (a row of 5632 f32 activations alone is 22 KB); the chains go on
        // across blocks. 5632 x 2048: 82 -> 132 GFLOP/s on one core.
        const int64_t n_blocks = (n64 + kPlainTileBlock - 1) / kPlainTileBlock;
        const int64_t block = n_blocks > 1 ? (n64 / 64 + n_blocks - 1) / n_blocks * 64 : n64;
        for (int64_t k0 = 0;; k0 += block) {
            const int64_t k1 = n64 - k0 < block ? n64 : k0 + block;
            const bool last = k1 == n64;
            #pragma GCC unroll 4
            for (int j = 0; j < 4; ++j) {
                __m512 acc[RT][CT];
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    #pragma GCC unroll 16
                    for (int c = 0; c < CT; ++c) acc[r][c] = part[j][r][c];
                }
                const auto step = [&](int64_t i) {
                    __m512 wv[RT];
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) wv[r] = load16(w[r], i);
                    #pragma GCC unroll 16
                    for (int c = 0; c < CT; ++c) {
                        const __m512 xv = _mm512_loadu_ps(x[c] + i);
                        #pragma GCC unroll 16
                        for (int r = 0; r < RT; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
                    }
                };
                for (int64_t i = k0 + 16 * j; i < k1; i += 64) step(i);
                if (j == 0 && last) {
                    for (int64_t i = n64; i < n16; i += 16) step(i);
                }
                if (j == 1 && last && n16 < n) {
                    const __mmask16 m = static_cast<__mmask16>((1u << (n - n16)) - 1);
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) {
                        const __m512 wv = tail16(w[r], n16, m);
                        #pragma GCC unroll 16
                        for (int c = 0; c < CT; ++c) acc[r][c] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[c] + n16), acc[r][c]);
                    }
                }
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    #pragma GCC unroll 16
                    for (int c = 0; c < CT; ++c) part[j][r][c] = acc[r][c];
                }
            }
            if (last) break;
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                ta.y[(c0 + c) * ta.ldy + r0 + r] = _mm512_reduce_add_ps(
                    _mm512_add_ps(_mm512_add_ps(part[0][r][c], part[1][r][c]), _mm512_add_ps(part[2][r][c], part[3][r][c])));
            }
        }
    }
};

void tile_q8_0(const TileArgs & a) { tile_by<Q8_0Tile>(a); }
void tile_q4_0(const TileArgs & a) { tile_by<Q4_0Tile>(a); }
void tile_f16(const TileArgs & a) { tile_by<PlainTile<load16_f16, tail16_f16>>(a); }
void tile_bf16(const TileArgs & a) { tile_by<PlainTile<load16_bf16, tail16_bf16>>(a); }

// ---- Q4_K ----------------------------------------------------------------------------

// The 8 6-bit scales (bytes 0-7) and 8 mins (bytes 8-15) of a Q4_K block, unpacked in a
// vector register (quant.cpp has the layout): with q the 12 packed bytes,
//   bytes 0-3:   q[0..3] & 63             bytes 8-11:  q[4..7] & 63
//   bytes 4-7:   (q[8..11] & 15) | (q[0..3] >> 6) << 4
//   bytes 12-15: (q[8..11] >> 4) | (q[4..7] >> 6) << 4
// for four blocks at once, one per 128-bit lane of q.
__m512i q4_k_scales_mins_x4(__m512i q) {
    const __m512i low = _mm512_shuffle_epi8(q, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11)));
    const __m512i top = _mm512_shuffle_epi8(q, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 4, 5, 6, 7)));
    const __m512i low_shifted = _mm512_mask_mov_epi8(low, 0xF000F000F000F000ull, _mm512_srli_epi16(low, 4));
    const __m512i low_bits = _mm512_and_si512(
        low_shifted, _mm512_broadcast_i32x4(_mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15)));
    const __m512i top_bits = _mm512_and_si512(_mm512_srli_epi16(top, 2),
                                              _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48)));
    return _mm512_or_si512(low_bits, top_bits);
}

// One block's: the 16-byte load reads 4 bytes of the quants after the scales (same block).
__m128i q4_k_scales_mins(const uint8_t * packed) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i *>(packed));
    return _mm512_castsi512_si128(q4_k_scales_mins_x4(_mm512_castsi128_si512(q)));
}

// pshufb control putting int16 word i in 128-bit lanes 0-1 and word i+1 in lanes 2-3.
__m512i word_pair_shuffle(int i) {
    const __m128i lo = _mm_set1_epi16(static_cast<int16_t>((2 * i + 1) << 8 | (2 * i)));
    const __m128i hi = _mm_set1_epi16(static_cast<int16_t>((2 * i + 3) << 8 | (2 * i + 2)));
    const __m512i v = _mm512_broadcast_i32x4(lo);
    return _mm512_mask_broadcast_i32x4(v, 0xFF00, hi);
}

// One Q4_K block against its Q8_K block, given the block's scales (8 words, in each
// 128-bit lane), mins (8 words), d and dmin (times the activation's scale) and the
// activation's 8 sub-block sums: the float operations that Q4_KTile repeats per pair.
inline void q4_k_block(const Q4_KBlock & w, const Q8_KBlock & x, __m512i sc, __m128i mins, __m512 d, __m128 dmin,
                       __m128i q8s, __m512 & acc, __m128 & acc_m) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    // Mins: sum_j m_j * (sum of a over sub-block j).
    acc_m = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(_mm_madd_epi16(mins, q8s)), acc_m);
    // Two accumulators: a chain of four dpwssd would cost four latencies per block.
    __m512i sumi[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int c = 0; c < 4; ++c) {
        // 32 bytes of nibbles: low nibbles are sub-block 2c, high nibbles 2c+1.
        __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w.qs + 32 * c)));
        v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), m4);
        const __m512i p16 = _mm512_maddubs_epi16(v, _mm512_loadu_si512(x.qs + 64 * c));  // |.| <= 2 * 15 * 127
        sumi[c & 1] = _mm512_dpwssd_epi32(sumi[c & 1], p16, _mm512_shuffle_epi8(sc, word_pair_shuffle(2 * c)));
    }
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[0], sumi[1])), acc);
}

// The 8 sub-block sums of a Q8_K block (pairs of its 16 bsums).
__m128i q8_k_sub_block_sums(const Q8_KBlock & x) {
    const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x.bsums));
    return _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
}

// Block I of four whose unpacked scales and mins are in the 128-bit lanes of sm4 and
// whose (d, dmin) pairs are lanes 2I, 2I+1 of dm.
template <int I>
void q4_k_block_of_four(const Q4_KBlock * w, const Q8_KBlock * x, const __m128i * q8s, __m512i sm4, __m256 dm,
                        __m512 & acc, __m128 & acc_m) {
    const __m256i words = _mm256_cvtepu8_epi16(_mm512_extracti32x4_epi32(sm4, I));  // scales, then mins
    const __m512 d = _mm512_permutexvar_ps(_mm512_set1_epi32(2 * I), _mm512_castps256_ps512(dm));
    const __m128 dmin = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, _mm256_set1_epi32(2 * I + 1)));
    q4_k_block(w[I], x[I], _mm512_broadcast_i32x4(_mm256_castsi256_si128(words)), _mm256_extracti128_si256(words, 1), d, dmin,
               _mm_loadu_si128(q8s + I), acc, acc_m);
}

// Q4_K x Q8_K for n_rows rows. The activation's sub-block sums and scales are prepared
// once per call; each row's blocks go four at a time: their packed scales and mins
// unpacked in one register (a block per 128-bit lane), their d and dmin converted and
// multiplied together, all kept in registers. Each row's float operations are the same
// for any row count and are Q4_KTile's, so decode and prefill give the same bits;
// dot_q4_k is this with one row.
void rows_q4_k(const RowsArgs & a) {
    const auto * x = static_cast<const Q8_KBlock *>(a.x);
    const int64_t nb = a.n / kQK_K;
    thread_local std::vector<int16_t> q8s_buf;
    thread_local std::vector<float> xd_buf;
    q8s_buf.resize(static_cast<size_t>(8 * nb));
    xd_buf.resize(static_cast<size_t>(2 * nb));
    auto * q8s = reinterpret_cast<__m128i *>(q8s_buf.data());
    float * xd = xd_buf.data();  // each block's scale twice, beside its (d, dmin)
    for (int64_t b = 0; b < nb; ++b) {
        _mm_storeu_si128(q8s + b, q8_k_sub_block_sums(x[b]));
        xd[2 * b] = xd[2 * b + 1] = x[b].d;
    }
    for (int64_t r = 0; r < a.n_rows; ++r) {
        const auto * w = reinterpret_cast<const Q4_KBlock *>(static_cast<const uint8_t *>(a.w) + r * a.w_row_bytes);
        __m512 acc = _mm512_setzero_ps();
        __m128 acc_m = _mm_setzero_ps();
        int64_t b = 0;
        for (; b + 4 <= nb; b += 4) {
            __m512i packed = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b].scales)));
            packed = _mm512_inserti32x4(packed, _mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b + 1].scales)), 1);
            packed = _mm512_inserti32x4(packed, _mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b + 2].scales)), 2);
            packed = _mm512_inserti32x4(packed, _mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b + 3].scales)), 3);
            const __m512i sm4 = q4_k_scales_mins_x4(packed);
            uint32_t d_dmin[4];
            for (int i = 0; i < 4; ++i) std::memcpy(&d_dmin[i], &w[b + i].d, sizeof d_dmin[i]);
            const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i *>(d_dmin));
            const __m256 dm = _mm256_mul_ps(_mm256_cvtph_ps(halves), _mm256_loadu_ps(xd + 2 * b));
            q4_k_block_of_four<0>(w + b, x + b, q8s + b, sm4, dm, acc, acc_m);
            q4_k_block_of_four<1>(w + b, x + b, q8s + b, sm4, dm, acc, acc_m);
            q4_k_block_of_four<2>(w + b, x + b, q8s + b, sm4, dm, acc, acc_m);
            q4_k_block_of_four<3>(w + b, x + b, q8s + b, sm4, dm, acc, acc_m);
        }
        for (; b < nb; ++b) {
            const __m128i sm = q4_k_scales_mins(w[b].scales);
            const float d = x[b].d * f16(w[b].d);
            const float dmin = x[b].d * f16(w[b].dmin);
            q4_k_block(w[b], x[b], _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sm)), _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm)),
                       _mm512_set1_ps(d), _mm_set1_ps(dmin), _mm_loadu_si128(q8s + b), acc, acc_m);
        }
        __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        a.y[r] = _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(m);
    }
}

float dot_q4_k(int64_t n, const void * w, const void * x) {
    float y;
    rows_q4_k({.w = w, .w_row_bytes = 0, .n = n, .x = x, .y = &y, .n_rows = 1});
    return y;
}

// ---- Q6_K ----------------------------------------------------------------------------

// pshufb control putting int16 word i + L in 128-bit lane L.
__m512i word_quad_shuffle(int i) {
    __m512i v = _mm512_setzero_si512();
    for (int l = 0; l < 4; ++l) {
        const int wi = i + l;
        const __m128i c = _mm_set1_epi16(static_cast<int16_t>((2 * wi + 1) << 8 | (2 * wi)));
        v = _mm512_mask_broadcast_i32x4(v, static_cast<__mmask16>(0xF << (4 * l)), c);
    }
    return v;
}

float dot_q6_k(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const Q6_KBlock *>(w_);
    const auto * x = static_cast<const Q8_KBlock *>(x_);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i shuf_a = word_quad_shuffle(0);
    const __m512i shuf_b = word_quad_shuffle(4);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_c = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float d = x[b].d * f16(w[b].d);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b].scales)));
        // 32 * sum_s sc_s * bsum_s: the -32 offset of the quants.
        const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].bsums)));
        acc_c = _mm256_fmadd_ps(_mm256_set1_ps(32.0f * d), _mm256_cvtepi32_ps(corr), acc_c);

        // Two accumulators: a chain of four dpwssd would cost four latencies per block.
        __m512i sumi[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int h = 0; h < 2; ++h) {
            const __m512i sc = _mm512_broadcast_i32x4(h == 0 ? _mm256_castsi256_si128(sc16) : _mm256_extracti128_si256(sc16, 1));
            const __m512i ql = _mm512_loadu_si512(w[b].ql + 64 * h);
            const __m512i qhb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(w[b].qh + 32 * h)));
            // Upper half shifted by 2: its bits 0-1 / 4-5 are the 2 high bits of values
            // 32-63 / 96-127; the lower half's are those of values 0-31 / 64-95.
            const __m512i t = _mm512_mask_srli_epi16(qhb, 0xFFFF0000u, qhb, 2);
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(t, 4), m30));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(t, m30));
            const __m512i pa = _mm512_maddubs_epi16(qa, _mm512_loadu_si512(x[b].qs + 128 * h));  // values 0-63
            const __m512i pb = _mm512_maddubs_epi16(qb, _mm512_loadu_si512(x[b].qs + 128 * h + 64));  // 64-127
            sumi[0] = _mm512_dpwssd_epi32(sumi[0], pa, _mm512_shuffle_epi8(sc, shuf_a));
            sumi[1] = _mm512_dpwssd_epi32(sumi[1], pb, _mm512_shuffle_epi8(sc, shuf_b));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[0], sumi[1])), acc);
    }
    return _mm512_reduce_add_ps(acc) - hsum(acc_c);
}

// ---- k-quant tiles -------------------------------------------------------------------
//
// The operations of dot_q4_k / dot_q6_k for each pair of a kRT x kCT register tile: the
// weight block's scales and quants are unpacked once for the kCT activation rows, which
// are the converted Q8_K rows.

struct Q4_KTile {
    static constexpr int kRT = 2, kCT = 4;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const TileRows<Q4_KBlock, Q8_KBlock, RT, CT> t(ta, r0, c0);
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        __m512 acc[RT][CT];
        __m128 acc_m[RT][CT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                acc[r][c] = _mm512_setzero_ps();
                acc_m[r][c] = _mm_setzero_ps();
            }
        }
        for (int64_t b = 0; b < ta.n / kQK_K; ++b) {
            __m128i mins[RT];
            __m512i sc[RT];
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                const __m128i sm = q4_k_scales_mins(t.w[r][b].scales);
                sc[r] = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sm));
                mins[r] = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
            }
            __m512i sumi[RT][CT][2];
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.x[c][b].bsums));
                const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    const float dmin = t.x[c][b].d * f16(t.w[r][b].dmin);
                    acc_m[r][c] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins[r], q8s)), acc_m[r][c]);
                    sumi[r][c][0] = sumi[r][c][1] = _mm512_setzero_si512();
                }
            }
            #pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) {
                __m512i v[RT], s[RT];
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    v[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.w[r][b].qs + 32 * k)));
                    v[r] = _mm512_and_si512(_mm512_mask_srli_epi16(v[r], 0xFFFF0000u, v[r], 4), m4);
                    s[r] = _mm512_shuffle_epi8(sc[r], word_pair_shuffle(2 * k));
                }
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const __m512i a = _mm512_loadu_si512(t.x[c][b].qs + 64 * k);
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) {
                        sumi[r][c][k & 1] = _mm512_dpwssd_epi32(sumi[r][c][k & 1], _mm512_maddubs_epi16(v[r], a), s[r]);
                    }
                }
            }
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const float d = t.x[c][b].d * f16(t.w[r][b].d);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[r][c][0], sumi[r][c][1])),
                                                acc[r][c]);
                }
            }
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                __m128 m = _mm_add_ps(acc_m[r][c], _mm_movehl_ps(acc_m[r][c], acc_m[r][c]));
                m = _mm_add_ss(m, _mm_movehdup_ps(m));
                ta.y[(c0 + c) * ta.ldy + r0 + r] = _mm512_reduce_add_ps(acc[r][c]) - _mm_cvtss_f32(m);
            }
        }
    }
};

struct Q6_KTile {
    static constexpr int kRT = 1, kCT = 4;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const TileRows<Q6_KBlock, Q8_KBlock, RT, CT> t(ta, r0, c0);
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        const __m512i m30 = _mm512_set1_epi8(0x30);
        const __m512i shuf_a = word_quad_shuffle(0);
        const __m512i shuf_b = word_quad_shuffle(4);
        __m512 acc[RT][CT];
        __m256 acc_c[RT][CT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                acc[r][c] = _mm512_setzero_ps();
                acc_c[r][c] = _mm256_setzero_ps();
            }
        }
        for (int64_t b = 0; b < ta.n / kQK_K; ++b) {
            __m256i sc16[RT];
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                sc16[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(t.w[r][b].scales)));
            }
            __m512i sumi[RT][CT][2];
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.x[c][b].bsums));
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    const float d = t.x[c][b].d * f16(t.w[r][b].d);
                    const __m256i corr = _mm256_madd_epi16(sc16[r], bsums);
                    acc_c[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(32.0f * d), _mm256_cvtepi32_ps(corr), acc_c[r][c]);
                    sumi[r][c][0] = sumi[r][c][1] = _mm512_setzero_si512();
                }
            }
            #pragma GCC unroll 2
            for (int h = 0; h < 2; ++h) {
                __m512i qa[RT], qb[RT], sa[RT], sb[RT];
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    const __m512i sc = _mm512_broadcast_i32x4(h == 0 ? _mm256_castsi256_si128(sc16[r]) : _mm256_extracti128_si256(sc16[r], 1));
                    const __m512i ql = _mm512_loadu_si512(t.w[r][b].ql + 64 * h);
                    const __m512i qhb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.w[r][b].qh + 32 * h)));
                    const __m512i tt = _mm512_mask_srli_epi16(qhb, 0xFFFF0000u, qhb, 2);
                    qa[r] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(tt, 4), m30));
                    qb[r] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(tt, m30));
                    sa[r] = _mm512_shuffle_epi8(sc, shuf_a);
                    sb[r] = _mm512_shuffle_epi8(sc, shuf_b);
                }
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const __m512i xa = _mm512_loadu_si512(t.x[c][b].qs + 128 * h);
                    const __m512i xb = _mm512_loadu_si512(t.x[c][b].qs + 128 * h + 64);
                    #pragma GCC unroll 16
                    for (int r = 0; r < RT; ++r) {
                        sumi[r][c][0] = _mm512_dpwssd_epi32(sumi[r][c][0], _mm512_maddubs_epi16(qa[r], xa), sa[r]);
                        sumi[r][c][1] = _mm512_dpwssd_epi32(sumi[r][c][1], _mm512_maddubs_epi16(qb[r], xb), sb[r]);
                    }
                }
            }
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const float d = t.x[c][b].d * f16(t.w[r][b].d);
                    acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_add_epi32(sumi[r][c][0], sumi[r][c][1])),
                                                acc[r][c]);
                }
            }
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) ta.y[(c0 + c) * ta.ldy + r0 + r] = _mm512_reduce_add_ps(acc[r][c]) - hsum(acc_c[r][c]);
        }
    }
};

void tile_q4_k(const TileArgs & a) { tile_by<Q4_KTile>(a); }
void tile_q6_k(const TileArgs & a) { tile_by<Q6_KTile>(a); }

}  // namespace

const IsaKernels kAvx512Kernels = {
    .q8_0_from_float = q8_0_from_float,
    .q8_k_from_float = q8_k_from_float,
    .dot = {dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q4_k, dot_q6_k},
    .rows = {nullptr, nullptr, nullptr, rows_q8_0, rows_q4_0, rows_q4_k, nullptr},
    .tiles = {{}, {tile_f16, nullptr, nullptr}, {tile_bf16, nullptr, nullptr},
              {tile_q8_0, packed_bytes_q<Q8_0TileGroup>, pack_q8_0}, {tile_q4_0, packed_bytes_q<Q4_0TileGroup>, pack_q4_0},
              {tile_q4_k, nullptr, nullptr}, {tile_q6_k, nullptr, nullptr}},
};

}  // namespace toyllm::cpu::kernels
