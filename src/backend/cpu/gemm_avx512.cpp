// AVX-512 GEMM kernels: packing by 16 x 16 register transposes and broadcast-FMA
// micro-kernels of MR rows by 16 * NV columns (NV zmm accumulators per row).
// Compiled with AVX-512 flags: everything here is file-local except the KernelSet
// objects, and nothing instantiates std:: templates (see CMakeLists.txt).
#include "backend/cpu/gemm_kernels.h"

#include <immintrin.h>

// GCC 12's AVX-512 intrinsics (_mm512_unpacklo_ps, _mm512_shuffle_f32x4, ...) pass a
// self-initialized _mm512_undefined_ps() as their unused pass-through operand, which
// -W(maybe-)uninitialized reports once inlined; nothing here reads an uninitialized value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace toyllm::cpu::gemm_detail {
namespace {

// In-register transpose: r[i] holds row i (16 floats); afterwards r[j] holds column j.
inline void transpose_16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        // Lane l (128 bits) of t[2i]: rows 2i, 2i+1 at columns 4l, 4l+1; of t[2i+1]: 4l+2, 4l+3.
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    __m512 u[16];
    for (int g = 0; g < 4; ++g) {
        // Lane l of u[4g + j]: rows 4g..4g+3 at column j + 4l.
        const __m512d t0 = _mm512_castps_pd(t[4 * g]);
        const __m512d t1 = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d t3 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int j = 0; j < 4; ++j) {
        // 0x88 takes 128-bit lanes (0, 2) of each source, 0xDD lanes (1, 3).
        const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        const __m512 v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[j + 4] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[j + 12] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

inline __mmask16 low_lanes(int64_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// Packs ROWS source rows (all valid; the panel is ROWS wide here) by 16 k into 16 panel
// rows `dst_stride` floats apart.
template <int ROWS>
inline void pack_block(const float * src, int64_t ld, float * dst, int64_t dst_stride) {
    constexpr __mmask16 store_mask = __mmask16((1u << ROWS) - 1);
    __m512 r[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = i < ROWS ? _mm512_loadu_ps(src + i * ld) : _mm512_setzero_ps();
    transpose_16x16(r);
    #pragma GCC unroll 16
    for (int kk = 0; kk < 16; ++kk) _mm512_mask_storeu_ps(dst + kk * dst_stride, store_mask, r[kk]);
}

// Packs rows into panels of width W (format in gemm_kernels.h), 16 rows by 16 k at a
// time: groups of 16 rows, then one of W % 16.
template <int W>
void pack_panels(const PackArgs & p) {
    constexpr int kTail = W % 16;
    for (int64_t p0 = 0; p0 < p.rows; p0 += W) {
        float * panel = p.dst + p0 * p.kc;
        for (int g0 = 0; g0 < W; g0 += 16) {
            const int width = W - g0 < 16 ? W - g0 : 16;  // this group's lanes of the panel
            // Source rows of this group; rows past them read as zero.
            const int64_t valid = p.rows - p0 - g0 < width ? p.rows - p0 - g0 : width;
            const float * src = p.src + (p0 + g0) * p.ld;
            int64_t k0 = 0;
            if (valid == width) {  // the bulk: no masks, no per-row tests
                for (; k0 + 16 <= p.kc; k0 += 16) {
                    if (width == 16) {
                        pack_block<16>(src + k0, p.ld, panel + k0 * W + g0, W);
                    } else if constexpr (kTail != 0) {
                        pack_block<kTail>(src + k0, p.ld, panel + k0 * W + g0, W);
                    }
                }
            }
            const __mmask16 store_mask = low_lanes(width);
            for (; k0 < p.kc; k0 += 16) {
                const int64_t kn = p.kc - k0 < 16 ? p.kc - k0 : 16;
                const __mmask16 load_mask = low_lanes(kn);
                __m512 r[16];
                for (int i = 0; i < 16; ++i) {
                    r[i] = i < valid ? _mm512_maskz_loadu_ps(load_mask, src + i * p.ld + k0)
                                     : _mm512_setzero_ps();
                }
                transpose_16x16(r);
                for (int64_t kk = 0; kk < kn; ++kk) {
                    _mm512_mask_storeu_ps(panel + (k0 + kk) * W + g0, store_mask, r[kk]);
                }
            }
        }
    }
}

// One tile's job. The tile also prefetches pf_rows source rows of B (kc floats each,
// pf_ld apart, from pf_src) for the pack of the next panel.
struct TileArgs {
    int64_t kc;
    const float * ap;  // A panel
    const float * bp;  // B panel
    float * c;         // the tile's first element
    int64_t ldc;
    int cols;          // valid columns, 1..16 * NV
    bool load_c;
    const float * pf_src;
    int64_t pf_ld;
    int64_t pf_rows;
};

// One k step of the register tile: acc[r][v] += A[r, kk] * B[16 v .. 16 v + 15, kk].
template <int MR, int NV, int ROWS>
__attribute__((always_inline)) inline void k_step(__m512 (&acc)[ROWS][NV], const float * ap,
                                                  const float * bp, int64_t kk) {
    constexpr int NR = 16 * NV;
    __m512 b[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(bp + kk * NR + 16 * v);
    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        const __m512 a = _mm512_set1_ps(ap[kk * MR + r]);
        #pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
}

// ROWS (<= MR) rows of C by t.cols columns over depth kc. Accumulators stay in
// registers: ROWS * NV + NV + 1 <= 32 zmm. The "#pragma GCC unroll" on every register
// loop matters: without them GCC 12 -O3 keeps some accumulators in memory.
template <int MR, int NV, int ROWS>
void tile(const TileArgs & t) {
    __mmask16 mask[NV];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) mask[v] = low_lanes(t.cols - 16 * v);

    __m512 acc[ROWS][NV];
    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        #pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) {
            acc[r][v] = t.load_c ? _mm512_maskz_loadu_ps(mask[v], t.c + r * t.ldc + 16 * v)
                                 : _mm512_setzero_ps();
        }
    }
    // One prefetch (a 64-byte line) per k step until this tile's share of the next B
    // panel is requested, then the plain loop.
    int64_t kk = 0;
    for (int64_t r = 0; r < t.pf_rows; ++r) {
        const char * row = reinterpret_cast<const char *>(t.pf_src + r * t.pf_ld);
        const char * end = row + t.kc * int64_t(sizeof(float));
        for (const char * line = row; line < end && kk < t.kc; line += 64, ++kk) {
            _mm_prefetch(line, _MM_HINT_T1);
            k_step<MR, NV, ROWS>(acc, t.ap, t.bp, kk);
        }
    }
    for (; kk < t.kc; ++kk) k_step<MR, NV, ROWS>(acc, t.ap, t.bp, kk);

    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        #pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(t.c + r * t.ldc + 16 * v, mask[v], acc[r][v]);
    }
}

// Calls tile<MR, NV, rows> for a run-time rows in [1, R].
template <int MR, int NV, int R>
void tile_rows(int rows, const TileArgs & t) {
    if constexpr (R > 0) {
        if (rows == R) {
            tile<MR, NV, R>(t);
        } else {
            tile_rows<MR, NV, R - 1>(rows, t);
        }
    }
}

// For each B panel (packed here first when a.b_src is set), sweep the A panels of the
// block; the panel stays in L1/L2 while the A panels stream from L2.
template <int MR, int NV>
void macro(const MacroArgs & a) {
    constexpr int NR = 16 * NV;
    const int64_t tiles_m = (a.mc + MR - 1) / MR;
    for (int64_t j = 0; j < a.nc; j += NR) {
        const int cols = a.nc - j < NR ? int(a.nc - j) : NR;
        float * bp = a.keep_b || a.b_src == nullptr ? a.bp + j * a.kc : a.bp;
        int64_t next_rows = 0;  // rows of the next panel to prefetch
        if (a.b_src != nullptr) {
            pack_panels<NR>({.src = a.b_src + j * a.ldb, .ld = a.ldb, .rows = cols, .kc = a.kc, .dst = bp});
            const int64_t left = a.nc - j - NR;
            next_rows = left < 0 ? 0 : left < NR ? left : NR;
        }
        for (int64_t ti = 0; ti < tiles_m; ++ti) {
            const int64_t i = ti * MR;
            // Tile ti prefetches rows [r0, r1) of the next panel.
            const int64_t r0 = next_rows * ti / tiles_m;
            const int64_t r1 = next_rows * (ti + 1) / tiles_m;
            const TileArgs t = {.kc = a.kc,
                                .ap = a.ap + i * a.kc,
                                .bp = bp,
                                .c = a.c + i * a.ldc + j,
                                .ldc = a.ldc,
                                .cols = cols,
                                .load_c = a.load_c,
                                .pf_src = r1 > r0 ? a.b_src + (j + NR + r0) * a.ldb : nullptr,
                                .pf_ld = a.ldb,
                                .pf_rows = r1 - r0};
            if (a.mc - i >= MR) {
                tile<MR, NV, MR>(t);
            } else {
                tile_rows<MR, NV, MR - 1>(int(a.mc - i), t);
            }
        }
    }
}

// FewRowsArgs: M rows of C by 32 columns at a time, two zmm accumulators per row. A
// k-contiguous B is transposed 16 x 16 into a stack block first (16 columns by 16 k).
template <int M>
void few_rows_m(const FewRowsArgs & f) {
    for (int64_t j0 = f.n0; j0 < f.n1; j0 += 32) {
        const int64_t nj = f.n1 - j0 < 32 ? f.n1 - j0 : 32;
        const __mmask16 m0 = low_lanes(nj), m1 = low_lanes(nj - 16);
        __m512 acc[M][2];
        for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        if (f.b_kn) {
            for (int64_t kk = 0; kk < f.k; ++kk) {
                const float * row = f.b + kk * f.ldb + j0;
                const __m512 b0 = _mm512_maskz_loadu_ps(m0, row), b1 = _mm512_maskz_loadu_ps(m1, row + 16);
                for (int i = 0; i < M; ++i) {
                    const __m512 av = _mm512_set1_ps(f.a[i * f.lda + kk]);
                    acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
                }
            }
        } else {
            alignas(64) float bt[2][16][16];
            for (int64_t k0 = 0; k0 < f.k; k0 += 16) {
                const int64_t kn = f.k - k0 < 16 ? f.k - k0 : 16;
                const __mmask16 lm = low_lanes(kn);
                for (int h = 0; h < 2; ++h) {
                    __m512 r[16];
                    for (int q = 0; q < 16; ++q) {
                        r[q] = 16 * h + q < nj ? _mm512_maskz_loadu_ps(lm, f.b + (j0 + 16 * h + q) * f.ldb + k0) : _mm512_setzero_ps();
                    }
                    transpose_16x16(r);
                    for (int q = 0; q < 16; ++q) _mm512_store_ps(bt[h][q], r[q]);
                }
                for (int64_t kk = 0; kk < kn; ++kk) {
                    const __m512 b0 = _mm512_load_ps(bt[0][kk]), b1 = _mm512_load_ps(bt[1][kk]);
                    for (int i = 0; i < M; ++i) {
                        const __m512 av = _mm512_set1_ps(f.a[i * f.lda + k0 + kk]);
                        acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
                        acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
                    }
                }
            }
        }
        for (int i = 0; i < M; ++i) {
            _mm512_mask_storeu_ps(f.c + i * f.ldc + j0, m0, acc[i][0]);
            _mm512_mask_storeu_ps(f.c + i * f.ldc + j0 + 16, m1, acc[i][1]);
        }
    }
}

}  // namespace

extern const KernelSet kernels_avx512_14x32 = {14, 32, pack_panels<14>, macro<14, 2>, {few_rows_m<1>, few_rows_m<2>, few_rows_m<3>, few_rows_m<4>}, 32};
extern const KernelSet kernels_avx512_12x32 = {12, 32, pack_panels<12>, macro<12, 2>, {few_rows_m<1>, few_rows_m<2>, few_rows_m<3>, few_rows_m<4>}, 32};
extern const KernelSet kernels_avx512_8x48 = {8, 48, pack_panels<8>, macro<8, 3>, {few_rows_m<1>, few_rows_m<2>, few_rows_m<3>, few_rows_m<4>}, 32};
extern const KernelSet kernels_avx512_6x64 = {6, 64, pack_panels<6>, macro<6, 4>, {few_rows_m<1>, few_rows_m<2>, few_rows_m<3>, few_rows_m<4>}, 32};

}  // namespace toyllm::cpu::gemm_detail
