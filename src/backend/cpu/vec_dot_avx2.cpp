// AVX2 + FMA + F16C kernels (Haswell, Zen 1 and later). The quantized dots multiply
// u8 x s8 byte pairs with maddubs into int16 (checked not to saturate at each use) and
// widen with madd; the k-quants follow ggml's AVX2 kernels.
//
// Compiled with -mavx2 -mfma -mf16c: no std:: templates and no non-static inline
// functions from project headers here (see vec_dot_kernels.h).
#include "backend/cpu/vec_dot_kernels.h"

#include <immintrin.h>

#include <cstring>

namespace toyllm::cpu::kernels {

namespace {

float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float f16(uint16_t h) { return _cvtsh_ss(h); }

// ---- activation conversions ---------------------------------------------------------

// roundf (half away from zero), exactly: truncate, then step away from zero when the
// dropped fraction is at least one half (t - trunc(t) is exact in floating point).
__m256 round_half_away(__m256 t) {
    const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(t, r));
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(t, sign_bit));
    return _mm256_add_ps(r, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
}

// 32 int32 (values in [-127, 127]) from four vectors to 32 int8 in order.
__m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b);  // lane-interleaved: a0 b0 | a1 b1
    const __m256i cd = _mm256_packs_epi32(c, d);
    const __m256i abcd = _mm256_packs_epi16(ab, cd);  // a0 b0 c0 d0 | a1 b1 c1 d1 (4 bytes each)
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// Same arithmetic as the reference quantizer (d = amax / 127, id = 1 / d, q = roundf(x*id)),
// so the bytes are identical.
void q8_0_from_float(const float * x, void * y_, int64_t n) {
    auto * y = static_cast<Q8_0Block *>(y_);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / kQK; ++b, x += kQK) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < 4; ++j) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float d = _mm_cvtss_f32(m) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[j], vid)));
        _mm256_storeu_si256(reinterpret_cast<__m256i *>(y[b].qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    }
}

// ggml's quantize_row_q8_K_ref (see vec_dot.cpp): the largest magnitude with its sign
// maps to -127; rounding half to even as nearest_int does (the default MXCSR mode).
void q8_k_from_float(const float * x, void * y_, int64_t n) {
    auto * y = static_cast<Q8_KBlock *>(y_);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
        __m256 amax = _mm256_setzero_ps();
        for (int j = 0; j < kQK_K; j += 8) amax = _mm256_max_ps(amax, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float am = _mm_cvtss_f32(m);
        if (am == 0.0f) {
            std::memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        // The first value whose magnitude is amax, as the reference's strict > keeps it.
        float max = 0.0f;
        const __m256 vam = _mm256_set1_ps(am);
        for (int j = 0; j < kQK_K; j += 8) {
            const __m256 v = _mm256_loadu_ps(x + j);
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), vam, _CMP_EQ_OQ));
            if (mask != 0) {
                max = x[j + __builtin_ctz(static_cast<unsigned>(mask))];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vis = _mm256_set1_ps(iscale);
        const __m256i v127 = _mm256_set1_epi32(127);
        for (int j = 0; j < kQK_K; j += 32) {
            __m256i q[4];
            for (int l = 0; l < 4; ++l) {
                q[l] = _mm256_min_epi32(v127, _mm256_cvtps_epi32(_mm256_mul_ps(vis, _mm256_loadu_ps(x + j + 8 * l))));
            }
            const __m256i q8 = pack_i32_to_i8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256(reinterpret_cast<__m256i *>(y[b].qs + j), q8);
            // bsums of the two groups of 16 in these 32 bytes.
            const __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q8), _mm256_set1_epi16(1));
            const __m256i s32 = _mm256_hadd_epi32(s16, s16);  // per 128-bit lane: [s01, s23, s01, s23]
            const __m256i s = _mm256_hadd_epi32(s32, s32);
            y[b].bsums[j / 16] = static_cast<int16_t>(_mm256_extract_epi32(s, 0));
            y[b].bsums[j / 16 + 1] = static_cast<int16_t>(_mm256_extract_epi32(s, 4));
        }
        y[b].d = 1.0f / iscale;
    }
}

constexpr int kPlainPrefetchBytes = 8192;

// ---- plain types ---------------------------------------------------------------------

__m256 load8_f32(const void * w, int64_t i) { return _mm256_loadu_ps(static_cast<const float *>(w) + i); }
__m256 load8_f16(const void * w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const uint16_t *>(w) + i)));
}
__m256 load8_bf16(const void * w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const uint16_t *>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

float f32_at(const void * w, int64_t i) { return static_cast<const float *>(w)[i]; }
float f16_at(const void * w, int64_t i) { return f16(static_cast<const uint16_t *>(w)[i]); }
float bf16_at(const void * w, int64_t i) {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t *>(w)[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
}

// Four accumulators of 8 (32 values per step) hide the FMA latency; a function-pointer
// parameter of a static function is inlined at each call site. The weights are
// prefetched kPlainPrefetchBytes ahead, as in the AVX-512 kernels.
__attribute__((always_inline)) inline float dot_plain(int64_t n, const void * w, const float * x, int elem_bytes,
                                                      __m256 (*load8)(const void *, int64_t),
                                                      float (*at)(const void *, int64_t)) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const char * pf = static_cast<const char *>(w) + i * elem_bytes + kPlainPrefetchBytes;
        for (int l = 0; l < 32 * elem_bytes; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
        acc0 = _mm256_fmadd_ps(load8(w, i), _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(load8(w, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(load8(w, i + 16), _mm256_loadu_ps(x + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(load8(w, i + 24), _mm256_loadu_ps(x + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8(w, i), _mm256_loadu_ps(x + i), acc0);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; ++i) sum += at(w, i) * x[i];
    return sum;
}

float dot_f32(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 4, load8_f32, f32_at);
}
float dot_f16(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 2, load8_f16, f16_at);
}
float dot_bf16(int64_t n, const void * w, const void * x) {
    return dot_plain(n, w, static_cast<const float *>(x), 2, load8_bf16, bf16_at);
}

// ---- Q8_0 / Q4_0 ---------------------------------------------------------------------
//
// R = 4 rows at a time (then single rows): each activation block is loaded once for the
// R rows, and so is what depends on it alone (its scale, and for Q4_0 the pair sums of
// its quants). Each row's sum is the same sequence of operations for R = 4 and R = 1.
// (Converting the f16 scales of 8 blocks at once through a small stack array measured 2x
// slower, likely a store-forwarding stall: 16-bit stores read back by a 128-bit load.)

// From DRAM the hardware prefetchers do not keep up with four interleaved rows (Q8_0 and
// Q4_0 read 9 and 6 GB/s on one Zen 5 core without software prefetch, 24 and 22 with
// it), so each row prefetches the lines kPrefetchBytes ahead of where it reads; past its
// end, the same part of the row R rows further on, read next. Same scheme and distance
// as the AVX-512 kernels.
constexpr int64_t kPrefetchBytes = 8192;

// Prefetches `bytes` bytes at kPrefetchBytes past byte `pos` of a row of `row_bytes`;
// past its end, at the same distance into the row `next` bytes further on (0: nothing).
void prefetch_ahead(const void * row, int64_t pos, int64_t row_bytes, int64_t next, int bytes) {
    int64_t ahead = pos + kPrefetchBytes;
    if (ahead >= row_bytes) {
        if (next == 0) return;
        ahead += next - row_bytes;
    }
    const auto * p = static_cast<const char *>(row) + ahead;
    for (int l = 0; l < bytes; l += 64) _mm_prefetch(p + l, _MM_HINT_T0);
}

// The 32 stored nibbles (q + 8, 0..15) of a Q4_0 block in value order.
__m256i q4_0_nibbles(const Q4_0Block & blk) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i *>(blk.qs));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Sum of the products of 32 signed byte pairs as 8 int32: the sign of w moves to a so
// that maddubs sees |w| as unsigned (|w| <= 127 for Q8_0 quants: no saturation).
__m256i q8_0_products(__m256i w, __m256i a) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// next: bytes from a row to the one read after it (R rows on), 0 for a lone row.
template <int R>
void q8_0_rows(const Q8_0Block * const * w, const Q8_0Block * x, int64_t nb, float * y, int64_t next) {
    constexpr int64_t bs = sizeof(Q8_0Block);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        if (b % 8 == 0) {
            for (int r = 0; r < R; ++r) prefetch_ahead(w[r], b * bs, nb * bs, next, 8 * bs);
        }
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
        const float dx = f16(x[b].d);
        for (int r = 0; r < R; ++r) {
            const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(w[r][b].qs));
            const __m256 p = _mm256_cvtepi32_ps(q8_0_products(qw, a));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16(w[r][b].d) * dx), p, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
}

// Two blocks per register in halves: the 16 stored bytes of block b in the low 128 bits,
// of block b + 1 in the high; low nibbles (values 0-15) and high nibbles (16-31) are
// multiplied with the matching halves of the activations, which are shuffled once for
// all R rows. The two f16 scales are converted together. 2x faster than ggml's AVX2
// loop (one block per step, sign trick, scalar f16 scales) on Zen 5.
template <int R>
void q4_0_rows(const Q4_0Block * const * w, const Q8_0Block * x, int64_t nb, float * y, int64_t next) {
    constexpr int64_t bs = sizeof(Q4_0Block);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i eights = _mm256_set1_epi8(8);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i pair_lanes = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        if (b % 16 == 0) {
            for (int r = 0; r < R; ++r) prefetch_ahead(w[r], b * bs, nb * bs, next, 16 * bs);
        }
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b + 1].qs));
        const __m256i a_lo = _mm256_permute2x128_si256(x0, x1, 0x20);
        const __m256i a_hi = _mm256_permute2x128_si256(x0, x1, 0x31);
        // 8 * (pair sums of a): (q + 8) . a - 8 * sum(a) = q . a; |.| <= 4 * 15 * 127 per pair.
        const __m256i bias = _mm256_add_epi16(_mm256_maddubs_epi16(eights, a_lo), _mm256_maddubs_epi16(eights, a_hi));
        const __m128 dx = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(x[b].d), x[b + 1].d, 1));
        for (int r = 0; r < R; ++r) {
            const __m256i v = _mm256_loadu2_m128i(reinterpret_cast<const __m128i *>(w[r][b + 1].qs),
                                                  reinterpret_cast<const __m128i *>(w[r][b].qs));
            const __m256i lo = _mm256_and_si256(v, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const __m256i p16 = _mm256_sub_epi16(
                _mm256_add_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_maddubs_epi16(hi, a_hi)), bias);
            const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            const __m128 dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(w[r][b].d), w[r][b + 1].d, 1));
            const __m256 sc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_mul_ps(dw, dx)), pair_lanes);
            acc[r] = _mm256_fmadd_ps(sc, p, acc[r]);
        }
    }
    for (; b < nb; ++b) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
        const __m256i bias = _mm256_maddubs_epi16(eights, a);
        const float dx = f16(x[b].d);
        for (int r = 0; r < R; ++r) {
            const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q4_0_nibbles(w[r][b]), a), bias);
            const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16(w[r][b].d) * dx), p, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) y[r] = hsum(acc[r]);
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
    const Q4_0Block * rows[1] = {static_cast<const Q4_0Block *>(w)};
    q4_0_rows<1>(rows, static_cast<const Q8_0Block *>(x), n / kQK, &y, 0);
    return y;
}

void rows_q8_0(const RowsArgs & a) { rows_by_four<Q8_0Block, q8_0_rows<4>, q8_0_rows<1>>(a); }
void rows_q4_0(const RowsArgs & a) { rows_by_four<Q4_0Block, q4_0_rows<4>, q4_0_rows<1>>(a); }

// ---- tiles: several weight rows x several activation rows (prefill) ---------------------
//
// Each output is computed with exactly the operations of the dot of this file for its
// pair (same lanes, same fma chains, same sums); a weight block is loaded and decoded
// once for kCT activation rows, an activation block once for kRT weight rows. The
// activation rows are the converted rows (no packing at this level).

// Prefetches the weight rows [begin, end) of the tile (clamped to it).
void prefetch_rows(const TileArgs & a, int64_t begin, int64_t end) {
    end = end < a.n_rows ? end : a.n_rows;
    for (int64_t r = begin; r < end; ++r) {
        const char * p = static_cast<const char *>(a.w) + r * a.w_row_bytes;
        for (int64_t l = 0; l < a.w_row_bytes; l += 64) _mm_prefetch(p + l, _MM_HINT_T0);
    }
}

// The first group of activation rows meets the weight rows straight from DRAM: they are
// prefetched kPrefetchBytes ahead (as in the AVX-512 file); the other groups find them
// in L2.
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

template <class K>
void tile_by(const TileArgs & a) {
    static_assert(K::kCT >= 1 && K::kCT <= 3);
    int64_t c = 0;
    for (; c + K::kCT <= a.n_cols; c += K::kCT) tile_rows<K, K::kCT>(a, c);
    const int64_t rest = a.n_cols - c;
    if constexpr (K::kCT > 1) {
        if (rest == 1) tile_rows<K, 1>(a, c);
    }
    if constexpr (K::kCT > 2) {
        if (rest == 2) tile_rows<K, 2>(a, c);
    }
}

template <class Block, int RT, int CT>
struct TileRows {
    const Block * w[RT];
    const Q8_0Block * x[CT];
    TileRows(const TileArgs & ta, int64_t r0, int64_t c0) {
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            w[r] = reinterpret_cast<const Block *>(static_cast<const uint8_t *>(ta.w) + (r0 + r) * ta.w_row_bytes);
        }
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) {
            x[c] = reinterpret_cast<const Q8_0Block *>(static_cast<const uint8_t *>(ta.x) + (c0 + c) * ta.x_row_bytes);
        }
    }
};

// Q8_0: the operations of q8_0_rows for each pair.
struct Q8_0Tile {
    static constexpr int kRT = 2, kCT = 3;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const TileRows<Q8_0Block, RT, CT> t(ta, r0, c0);
        const int64_t nb = ta.n / kQK;
        __m256 acc[RT][CT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_setzero_ps();
        }
        for (int64_t b = 0; b < nb; ++b) {
            __m256i a[CT];
            float dx[CT];
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                a[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.x[c][b].qs));
                dx[c] = f16(t.x[c][b].d);
            }
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.w[r][b].qs));
                const float dw = f16(t.w[r][b].d);
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const __m256 p = _mm256_cvtepi32_ps(q8_0_products(qw, a[c]));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[c]), p, acc[r][c]);
                }
            }
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) ta.y[(c0 + c) * ta.ldy + r0 + r] = hsum(acc[r][c]);
        }
    }
};

// Q4_0: the operations of q4_0_rows for each pair.
struct Q4_0Tile {
    static constexpr int kRT = 2, kCT = 2;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        const TileRows<Q4_0Block, RT, CT> t(ta, r0, c0);
        const int64_t nb = ta.n / kQK;
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        const __m256i eights = _mm256_set1_epi8(8);
        const __m256i ones = _mm256_set1_epi16(1);
        const __m256i pair_lanes = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
        __m256 acc[RT][CT];
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_setzero_ps();
        }
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            __m256i a_lo[CT], a_hi[CT], bias[CT];
            __m128 dx[CT];
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                const Q8_0Block * x = t.x[c];
                const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].qs));
                const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b + 1].qs));
                a_lo[c] = _mm256_permute2x128_si256(x0, x1, 0x20);
                a_hi[c] = _mm256_permute2x128_si256(x0, x1, 0x31);
                bias[c] = _mm256_add_epi16(_mm256_maddubs_epi16(eights, a_lo[c]), _mm256_maddubs_epi16(eights, a_hi[c]));
                dx[c] = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(x[b].d), x[b + 1].d, 1));
            }
            #pragma GCC unroll 16
            for (int r = 0; r < RT; ++r) {
                const Q4_0Block * w = t.w[r];
                const __m256i v = _mm256_loadu2_m128i(reinterpret_cast<const __m128i *>(w[b + 1].qs),
                                                      reinterpret_cast<const __m128i *>(w[b].qs));
                const __m256i lo = _mm256_and_si256(v, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                const __m128 dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(w[b].d), w[b + 1].d, 1));
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) {
                    const __m256i p16 = _mm256_sub_epi16(
                        _mm256_add_epi16(_mm256_maddubs_epi16(lo, a_lo[c]), _mm256_maddubs_epi16(hi, a_hi[c])), bias[c]);
                    const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                    const __m256 sc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_mul_ps(dw, dx[c])), pair_lanes);
                    acc[r][c] = _mm256_fmadd_ps(sc, p, acc[r][c]);
                }
            }
        }
        for (; b < nb; ++b) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) {
                const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(t.x[c][b].qs));
                const __m256i bias = _mm256_maddubs_epi16(eights, a);
                const float dx = f16(t.x[c][b].d);
                #pragma GCC unroll 16
                for (int r = 0; r < RT; ++r) {
                    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q4_0_nibbles(t.w[r][b]), a), bias);
                    const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(f16(t.w[r][b].d) * dx), p, acc[r][c]);
                }
            }
        }
        #pragma GCC unroll 16
        for (int r = 0; r < RT; ++r) {
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) ta.y[(c0 + c) * ta.ldy + r0 + r] = hsum(acc[r][c]);
        }
    }
};

// F16 / BF16: the operations of dot_plain for each pair (one weight row at a time:
// four accumulators per pair fill the 16 registers with three activation rows).
template <__m256 (*load8)(const void *, int64_t), float (*at)(const void *, int64_t)>
struct PlainTile {
    static constexpr int kRT = 1, kCT = 3;

    template <int RT, int CT>
    static void run(const TileArgs & ta, int64_t r0, int64_t c0) {
        static_assert(RT == 1);
        const int64_t n = ta.n;
        const void * w = static_cast<const uint8_t *>(ta.w) + r0 * ta.w_row_bytes;
        const float * x[CT];
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) {
            x[c] = reinterpret_cast<const float *>(static_cast<const uint8_t *>(ta.x) + (c0 + c) * ta.x_row_bytes);
        }
        __m256 acc[CT][4];
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) {
            #pragma GCC unroll 16
            for (int j = 0; j < 4; ++j) acc[c][j] = _mm256_setzero_ps();
        }
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            #pragma GCC unroll 16
            for (int j = 0; j < 4; ++j) {
                const __m256 wv = load8(w, i + 8 * j);
                #pragma GCC unroll 16
                for (int c = 0; c < CT; ++c) acc[c][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[c] + i + 8 * j), acc[c][j]);
            }
        }
        for (; i + 8 <= n; i += 8) {
            const __m256 wv = load8(w, i);
            #pragma GCC unroll 16
            for (int c = 0; c < CT; ++c) acc[c][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[c] + i), acc[c][0]);
        }
        #pragma GCC unroll 16
        for (int c = 0; c < CT; ++c) {
            float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][1]), _mm256_add_ps(acc[c][2], acc[c][3])));
            for (int64_t l = i; l < n; ++l) sum += at(w, l) * x[c][l];
            ta.y[(c0 + c) * ta.ldy + r0] = sum;
        }
    }
};

void tile_q8_0(const TileArgs & a) { tile_by<Q8_0Tile>(a); }
void tile_q4_0(const TileArgs & a) { tile_by<Q4_0Tile>(a); }
void tile_f16(const TileArgs & a) { tile_by<PlainTile<load8_f16, f16_at>>(a); }
void tile_bf16(const TileArgs & a) { tile_by<PlainTile<load8_bf16, bf16_at>>(a); }

// ---- Q4_K ----------------------------------------------------------------------------

// The 8 6-bit scales (bytes 0-7) and 8 mins (bytes 8-15) of a Q4_K block as bytes, by
// ggml's word-wise unpacking of the 12 packed bytes.
void q4_k_unpack_scales(const uint8_t * packed, uint32_t out[4]) {
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t u[3];
    std::memcpy(u, packed, 12);
    out[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    out[2] = u[1] & kmask1;
    out[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    out[0] = u[0] & kmask1;
}

float dot_q4_k(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const Q4_KBlock *>(w_);
    const auto * x = static_cast<const Q8_KBlock *>(x_);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc_m = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float d = x[b].d * f16(w[b].d);
        const float dmin = x[b].d * f16(w[b].dmin);
        uint32_t sm[4];
        q4_k_unpack_scales(w[b].scales, sm);
        const __m128i scales_mins = _mm_loadu_si128(reinterpret_cast<const __m128i *>(sm));

        // Mins: words m0 m0 m1 m1 ... against the 16 bsums: madd gives m_j * (sum of the
        // activations of sub-block j).
        const __m256i mins2 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scales_mins, scales_mins));
        const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].bsums));
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins2, bsums)), acc_m);

        const __m256i scales = _mm256_broadcastsi128_si256(scales_mins);
        const uint8_t * q4 = w[b].qs;
        const int8_t * q8 = x[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j, q4 += 32, q8 += 64) {
            // Scale byte 2j (low nibbles) or 2j+1 (high nibbles) as an int16 in every word
            // (0x80 in a pshufb control gives a zero byte).
            const __m256i scale_l = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<int16_t>(0x8000 | (2 * j))));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<int16_t>(0x8000 | (2 * j + 1))));
            const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q4));
            const __m256i q4l = _mm256_and_si256(bits, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i q8l = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q8));
            const __m256i q8h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q8 + 32));
            const __m256i pl = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
            const __m256i ph = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - hsum(acc_m);
}

// ---- Q6_K ----------------------------------------------------------------------------

float dot_q6_k(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const Q6_KBlock *>(w_);
    const auto * x = static_cast<const Q8_KBlock *>(x_);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m2 = _mm256_set1_epi8(0x03);
    __m256 acc = _mm256_setzero_ps();
    __m256 acc_c = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float d = x[b].d * f16(w[b].d);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i *>(w[b].scales)));
        // The -32 offset of the quants: 32 * sum_s sc_s * (sum of a over sub-block s).
        const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i *>(x[b].bsums)));
        acc_c = _mm256_fmadd_ps(_mm256_set1_ps(32.0f * d), _mm256_cvtepi32_ps(corr), acc_c);
        const uint8_t * ql = w[b].ql;
        const uint8_t * qh = w[b].qh;
        const int8_t * q8 = x[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h, ql += 64, qh += 32, q8 += 128) {
            // The 8 int16 scales of this half's sub-blocks in both 128-bit lanes.
            const __m256i sc = h == 0 ? _mm256_permute4x64_epi64(sc16, 0x44) : _mm256_permute4x64_epi64(sc16, 0xEE);
            const __m256i bits1 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ql));
            const __m256i bits2 = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(ql + 32));
            const __m256i hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(qh));
            // 6-bit quants (0..63) of values 0-31, 32-63, 64-95, 96-127 of this half.
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(bits1, m4), _mm256_slli_epi16(_mm256_and_si256(hbits, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(bits2, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 6), m2), 4));
            for (int c = 0; c < 4; ++c) {
                const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(q8 + 32 * c));
                const __m256i p16 = _mm256_maddubs_epi16(q[c], a);  // |.| <= 2 * 63 * 127: no saturation
                // Sub-blocks 2c (low 128 bits) and 2c + 1 (high) of this half: int16 words 2c, 2c+1.
                const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>((4 * c + 3) << 8 | (4 * c + 2))),
                                                      _mm_set1_epi16(static_cast<int16_t>((4 * c + 1) << 8 | (4 * c))));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, pick), p16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - hsum(acc_c);
}

}  // namespace

const IsaKernels kAvx2Kernels = {
    .q8_0_from_float = q8_0_from_float,
    .q8_k_from_float = q8_k_from_float,
    .dot = {dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q4_k, dot_q6_k},
    .rows = {nullptr, nullptr, nullptr, rows_q8_0, rows_q4_0, nullptr, nullptr},
    .tiles = {{}, {tile_f16, nullptr, nullptr}, {tile_bf16, nullptr, nullptr}, {tile_q8_0, nullptr, nullptr},
              {tile_q4_0, nullptr, nullptr}, {}, {}},
};

}  // namespace toyllm::cpu::kernels
