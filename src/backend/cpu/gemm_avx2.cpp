// AVX2 + FMA GEMM kernels: packing by 8 x 8 register transposes and a 6 x 16
// broadcast-FMA micro-kernel (12 ymm accumulators, 2 for B, 1 broadcast: 15 of 16).
// Compiled with AVX2 flags: everything here is file-local except the KernelSet object,
// and nothing instantiates std:: templates (see CMakeLists.txt).
#include "backend/cpu/gemm_kernels.h"

#include <immintrin.h>

namespace toyllm::cpu::gemm_detail {
namespace {

// In-register transpose: r[i] holds row i (8 floats); afterwards r[j] holds column j.
inline void transpose_8x8(__m256 r[8]) {
    __m256 t[8];
    for (int i = 0; i < 4; ++i) {
        // Lane l (128 bits) of t[2i]: rows 2i, 2i+1 at columns 4l, 4l+1; of t[2i+1]: 4l+2, 4l+3.
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    __m256 u[8];
    for (int g = 0; g < 2; ++g) {
        // Lane l of u[4g + j]: rows 4g..4g+3 at column j + 4l.
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[j + 4] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

// Lanes [0, n) set, for maskload / maskstore.
inline __m256i low_lanes(int64_t n) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 0 ? 0 : n > 8 ? 8 : n)), iota);
}

// Packs rows into panels of width W (format in gemm_kernels.h), 8 rows by 8 k at a time.
template <int W>
void pack_panels(const PackArgs & p) {
    for (int64_t p0 = 0; p0 < p.rows; p0 += W) {
        float * panel = p.dst + p0 * p.kc;
        for (int g0 = 0; g0 < W; g0 += 8) {
            // Source rows of this group; rows past them (or past the panel) read as zero.
            int64_t valid = p.rows - p0 - g0;
            if (valid > W - g0) valid = W - g0;
            const bool full_store = W - g0 >= 8;
            const __m256i store_mask = low_lanes(W - g0);
            const float * src = p.src + (p0 + g0) * p.ld;
            const int64_t k_main = p.kc / 8 * 8;
            for (int64_t k0 = 0; k0 < k_main; k0 += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; ++i) {
                    r[i] = i < valid ? _mm256_loadu_ps(src + i * p.ld + k0) : _mm256_setzero_ps();
                }
                transpose_8x8(r);
                for (int kk = 0; kk < 8; ++kk) {
                    float * d = panel + (k0 + kk) * W + g0;
                    if (full_store) {
                        _mm256_storeu_ps(d, r[kk]);
                    } else {
                        _mm256_maskstore_ps(d, store_mask, r[kk]);
                    }
                }
            }
            const int64_t g_width = W - g0 < 8 ? W - g0 : 8;
            for (int64_t kk = k_main; kk < p.kc; ++kk) {
                for (int64_t i = 0; i < g_width; ++i) {
                    panel[kk * W + g0 + i] = i < valid ? src[i * p.ld + kk] : 0.0f;
                }
            }
        }
    }
}

constexpr int kMr = 6;
constexpr int kNr = 16;

// One tile's job. The tile also prefetches pf_rows source rows of B (kc floats each,
// pf_ld apart, from pf_src) for the pack of the next panel.
struct TileArgs {
    int64_t kc;
    const float * ap;  // A panel
    const float * bp;  // B panel
    float * c;         // the tile's first element
    int64_t ldc;
    int cols;          // valid columns, 1..16
    bool load_c;
    const float * pf_src;
    int64_t pf_ld;
    int64_t pf_rows;
};

// One k step of the register tile: acc[r][v] += A[r, kk] * B[8 v .. 8 v + 7, kk].
template <int ROWS>
__attribute__((always_inline)) inline void k_step(__m256 (&acc)[ROWS][2], const float * ap,
                                                  const float * bp, int64_t kk) {
    const __m256 b0 = _mm256_load_ps(bp + kk * kNr);
    const __m256 b1 = _mm256_load_ps(bp + kk * kNr + 8);
    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        const __m256 a = _mm256_broadcast_ss(ap + kk * kMr + r);
        acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
}

// ROWS (<= 6) rows of C by t.cols columns (16 when FULL) over depth kc. FULL is a
// template parameter, and every register loop carries "#pragma GCC unroll": otherwise
// GCC 12 -O3 keeps accumulators in memory inside the k loop.
template <int ROWS, bool FULL>
void tile(const TileArgs & t) {
    const __m256i mask0 = low_lanes(t.cols);
    const __m256i mask1 = low_lanes(t.cols - 8);

    __m256 acc[ROWS][2];
    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        #pragma GCC unroll 16
        for (int v = 0; v < 2; ++v) {
            const __m256i mask = v == 0 ? mask0 : mask1;
            const float * cv = t.c + r * t.ldc + 8 * v;
            acc[r][v] = !t.load_c ? _mm256_setzero_ps() : FULL ? _mm256_loadu_ps(cv) : _mm256_maskload_ps(cv, mask);
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
            k_step<ROWS>(acc, t.ap, t.bp, kk);
        }
    }
    for (; kk < t.kc; ++kk) k_step<ROWS>(acc, t.ap, t.bp, kk);

    #pragma GCC unroll 16
    for (int r = 0; r < ROWS; ++r) {
        if constexpr (FULL) {
            _mm256_storeu_ps(t.c + r * t.ldc, acc[r][0]);
            _mm256_storeu_ps(t.c + r * t.ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(t.c + r * t.ldc, mask0, acc[r][0]);
            _mm256_maskstore_ps(t.c + r * t.ldc + 8, mask1, acc[r][1]);
        }
    }
}

template <bool FULL>
void tile_rows(int rows, const TileArgs & t) {
    switch (rows) {
        case 6: tile<6, FULL>(t); break;
        case 5: tile<5, FULL>(t); break;
        case 4: tile<4, FULL>(t); break;
        case 3: tile<3, FULL>(t); break;
        case 2: tile<2, FULL>(t); break;
        default: tile<1, FULL>(t); break;
    }
}

// For each B panel (packed here first when a.b_src is set), sweep the A panels of the
// block; see the AVX-512 macro kernel.
void macro_6x16(const MacroArgs & a) {
    const int64_t tiles_m = (a.mc + kMr - 1) / kMr;
    for (int64_t j = 0; j < a.nc; j += kNr) {
        const int cols = a.nc - j < kNr ? int(a.nc - j) : kNr;
        float * bp = a.keep_b || a.b_src == nullptr ? a.bp + j * a.kc : a.bp;
        int64_t next_rows = 0;  // rows of the next panel to prefetch
        if (a.b_src != nullptr) {
            pack_panels<kNr>({.src = a.b_src + j * a.ldb, .ld = a.ldb, .rows = cols, .kc = a.kc, .dst = bp});
            const int64_t left = a.nc - j - kNr;
            next_rows = left < 0 ? 0 : left < kNr ? left : kNr;
        }
        for (int64_t ti = 0; ti < tiles_m; ++ti) {
            const int64_t i = ti * kMr;
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
                                .pf_src = r1 > r0 ? a.b_src + (j + kNr + r0) * a.ldb : nullptr,
                                .pf_ld = a.ldb,
                                .pf_rows = r1 - r0};
            const int rows = a.mc - i < kMr ? int(a.mc - i) : kMr;
            if (cols == kNr) {
                tile_rows<true>(rows, t);
            } else {
                tile_rows<false>(rows, t);
            }
        }
    }
}

// FewRowsArgs: M rows of C by 16 columns at a time, two ymm accumulators per row. A
// k-contiguous B is transposed 8 x 8 into a stack block first (8 columns by 8 k).
template <int M>
void few_rows_m(const FewRowsArgs & f) {
    for (int64_t j0 = f.n0; j0 < f.n1; j0 += 16) {
        const int64_t nj = f.n1 - j0 < 16 ? f.n1 - j0 : 16;
        const __m256i m0 = low_lanes(nj), m1 = low_lanes(nj - 8);
        __m256 acc[M][2];
        for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        if (f.b_kn) {
            for (int64_t kk = 0; kk < f.k; ++kk) {
                const float * row = f.b + kk * f.ldb + j0;
                const __m256 b0 = _mm256_maskload_ps(row, m0), b1 = _mm256_maskload_ps(row + 8, m1);
                for (int i = 0; i < M; ++i) {
                    const __m256 av = _mm256_set1_ps(f.a[i * f.lda + kk]);
                    acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
                }
            }
        } else {
            alignas(32) float bt[2][8][8];
            for (int64_t k0 = 0; k0 < f.k; k0 += 8) {
                const int64_t kn = f.k - k0 < 8 ? f.k - k0 : 8;
                const __m256i lm = low_lanes(kn);
                for (int h = 0; h < 2; ++h) {
                    __m256 r[8];
                    for (int q = 0; q < 8; ++q) {
                        r[q] = 8 * h + q < nj ? _mm256_maskload_ps(f.b + (j0 + 8 * h + q) * f.ldb + k0, lm) : _mm256_setzero_ps();
                    }
                    transpose_8x8(r);
                    for (int q = 0; q < 8; ++q) _mm256_store_ps(bt[h][q], r[q]);
                }
                for (int64_t kk = 0; kk < kn; ++kk) {
                    const __m256 b0 = _mm256_load_ps(bt[0][kk]), b1 = _mm256_load_ps(bt[1][kk]);
                    for (int i = 0; i < M; ++i) {
                        const __m256 av = _mm256_set1_ps(f.a[i * f.lda + k0 + kk]);
                        acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
                    }
                }
            }
        }
        for (int i = 0; i < M; ++i) {
            _mm256_maskstore_ps(f.c + i * f.ldc + j0, m0, acc[i][0]);
            _mm256_maskstore_ps(f.c + i * f.ldc + j0 + 8, m1, acc[i][1]);
        }
    }
}

}  // namespace

extern const KernelSet kernels_avx2_6x16 = {kMr, kNr, pack_panels<kMr>, macro_6x16, {few_rows_m<1>, few_rows_m<2>, few_rows_m<3>, few_rows_m<4>}, 16};

}  // namespace toyllm::cpu::gemm_detail
