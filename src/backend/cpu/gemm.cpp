// The GEMM driver (GotoBLAS / BLIS loop nest) and the scalar kernels.
//
// Per thread, for its rectangle of C:
//   for jc over n by nc:
//     for pc over k by kc:           depth blocks in increasing k: the fma chain order
//       for ic over m by mc:
//         pack A[ic.., pc..]         A block [mc, kc], meant to stay in L2
//         macro kernel: every mr x nr tile of the block pair; on the first ic it also
//                       packs the B block [nc, kc] panel by panel (see MacroArgs)
#include "backend/cpu/gemm.h"

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/thread_pool.h"

#include <algorithm>
#include <cstddef>
#include <new>

namespace toyllm::cpu {
namespace gemm_detail {
namespace {

// ---- scalar kernels: the fallback on every machine, 4 x 4 register tile ----

constexpr int kScalarMr = 4;
constexpr int kScalarNr = 4;

template <int W>
void pack_panels_scalar(const PackArgs & p) {
    for (int64_t p0 = 0; p0 < p.rows; p0 += W) {
        float * panel = p.dst + p0 * p.kc;
        const int64_t valid = std::min<int64_t>(W, p.rows - p0);
        for (int64_t r = 0; r < W; ++r) {
            const float * src = p.src + (p0 + r) * p.ld;
            for (int64_t kk = 0; kk < p.kc; ++kk) panel[kk * W + r] = r < valid ? src[kk] : 0.0f;
        }
    }
}

void macro_scalar(const MacroArgs & a) {
    constexpr int MR = kScalarMr;
    constexpr int NR = kScalarNr;
    for (int64_t j = 0; j < a.nc; j += NR) {
        const int64_t cols = std::min<int64_t>(NR, a.nc - j);
        float * bp = a.keep_b || a.b_src == nullptr ? a.bp + j * a.kc : a.bp;
        if (a.b_src != nullptr) {
            pack_panels_scalar<NR>({.src = a.b_src + j * a.ldb, .ld = a.ldb, .rows = cols, .kc = a.kc, .dst = bp});
        }
        for (int64_t i = 0; i < a.mc; i += MR) {
            const int64_t rows = std::min<int64_t>(MR, a.mc - i);
            const float * ap = a.ap + i * a.kc;
            float * c = a.c + i * a.ldc + j;
            float acc[MR][NR] = {};
            if (a.load_c) {
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t q = 0; q < cols; ++q) acc[r][q] = c[r * a.ldc + q];
                }
            }
            for (int64_t kk = 0; kk < a.kc; ++kk) {
                for (int r = 0; r < MR; ++r) {
                    for (int q = 0; q < NR; ++q) acc[r][q] += ap[kk * MR + r] * bp[kk * NR + q];
                }
            }
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t q = 0; q < cols; ++q) c[r * a.ldc + q] = acc[r][q];
            }
        }
    }
}

// Packing from a k-major source (src[kk * ld + r]): each panel row is a plain copy, the
// same packed layout as the ISA kernels' transposing pack_a gives from a k-contiguous one.
void pack_panels_k_major(const PackArgs & p, int w) {
    for (int64_t p0 = 0; p0 < p.rows; p0 += w) {
        float * panel = p.dst + p0 * p.kc;
        const int64_t valid = std::min<int64_t>(w, p.rows - p0);
        for (int64_t kk = 0; kk < p.kc; ++kk) {
            const float * src = p.src + kk * p.ld + p0;
            float * dst = panel + kk * w;
            std::copy(src, src + valid, dst);
            std::fill(dst + valid, dst + w, 0.0f);
        }
    }
}

// ---- packing buffers ----

// A growable 64-byte aligned float buffer; one per thread and operand, kept between
// calls so steady-state GEMMs allocate nothing.
class PackBuffer {
  public:
    PackBuffer() = default;
    PackBuffer(const PackBuffer &) = delete;
    PackBuffer & operator=(const PackBuffer &) = delete;
    ~PackBuffer() { release(); }

    float * get(int64_t n_floats) {
        if (n_floats > cap_) {
            release();
            data_ = static_cast<float *>(::operator new[](size_t(n_floats) * sizeof(float), kAlign));
            cap_ = n_floats;
        }
        return data_;
    }

  private:
    static constexpr std::align_val_t kAlign{64};
    void release() {
        if (data_ != nullptr) ::operator delete[](data_, kAlign);
        data_ = nullptr;
        cap_ = 0;
    }
    float * data_ = nullptr;
    int64_t cap_ = 0;
};

thread_local PackBuffer tl_pack_a;
thread_local PackBuffer tl_pack_b;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- splitting C between threads ----

struct Rect {
    int64_t m0, m1, n0, n1;
};

// Thread ith's rectangle of C in a pm x pn grid of whole register tiles, pm * pn = nth.
// The grid minimizes the largest rectangle's work plus its packing (a thread packs all
// the A rows and B rows its rectangle touches). Which thread computes an element never
// changes how it is computed, so this only affects speed.
Rect thread_rect(int64_t m, int64_t n, const KernelSet & ks, int ith, int nth) {
    const int64_t tiles_m = ceil_div(m, ks.mr);
    const int64_t tiles_n = ceil_div(n, ks.nr);
    // Packing one element costs about as much as 16 multiply-adds of the macro kernel
    // (it is a transpose through registers, and memory-bound).
    constexpr int64_t kPackCost = 16;
    int best_pm = 1;
    int64_t best_cost = -1;
    for (int pm = 1; pm <= nth; ++pm) {
        if (nth % pm != 0) continue;
        const int pn = nth / pm;
        const int64_t rows = std::min(m, ceil_div(tiles_m, pm) * ks.mr);
        const int64_t cols = std::min(n, ceil_div(tiles_n, pn) * ks.nr);
        const int64_t cost = rows * cols + kPackCost * (rows + cols);
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            best_pm = pm;
        }
    }
    const int pn = nth / best_pm;
    const RowRange tm = split_rows(tiles_m, ith / pn, best_pm);
    const RowRange tn = split_rows(tiles_n, ith % pn, pn);
    return {std::min(m, tm.begin * ks.mr), std::min(m, tm.end * ks.mr),
            std::min(n, tn.begin * ks.nr), std::min(n, tn.end * ks.nr)};
}

// ---- variants ----

// Blocking measured with bench_gemm on Zen 5 (48 KiB L1d, 1 MiB L2); kc = 512 beat 256
// and 384 for every AVX-512 tile (fewer passes over C), and 6 x 64 beat the others or
// tied. For 6 x 64: an A block is 132 x 512 floats (264 KiB) and a B panel 64 x 512
// (128 KiB), both in L2. AVX2 keeps kc = 256 so that a B panel (16 KiB) fits the 32 KiB
// L1 and an A block (144 KiB) the 256 KiB L2 of older AVX2 cores.
const GemmVariant kVariants[] = {
#if TOYLLM_X86
    {"avx512_6x64", SimdLevel::AVX512, {&kernels_avx512_6x64, {.mc = 132, .kc = 512, .nc = 1024}}},
    {"avx512_14x32", SimdLevel::AVX512, {&kernels_avx512_14x32, {.mc = 140, .kc = 512, .nc = 1024}}},
    {"avx512_12x32", SimdLevel::AVX512, {&kernels_avx512_12x32, {.mc = 132, .kc = 512, .nc = 1024}}},
    {"avx512_8x48", SimdLevel::AVX512, {&kernels_avx512_8x48, {.mc = 128, .kc = 512, .nc = 1056}}},
    {"avx2_6x16", SimdLevel::AVX2, {&kernels_avx2_6x16, {.mc = 144, .kc = 256, .nc = 1024}}},
#endif
    {"scalar_4x4", SimdLevel::SCALAR, {&kernels_scalar_4x4, {.mc = 64, .kc = 256, .nc = 512}}},
};
constexpr int kVariantCount = int(sizeof(kVariants) / sizeof(kVariants[0]));

const GemmConfig & default_config(SimdLevel level) {
    for (const GemmVariant & v : kVariants) {
        if (v.level == level) return v.config;
    }
    return kVariants[kVariantCount - 1].config;  // scalar
}

}  // namespace

extern const KernelSet kernels_scalar_4x4 = {kScalarMr, kScalarNr, pack_panels_scalar<kScalarMr>,
                                             macro_scalar, {}, 0};

int gemm_variant_count() { return kVariantCount; }

const GemmVariant & gemm_variant(int i) { return kVariants[i]; }

void gemm_f32_with(const GemmConfig & cfg, const GemmArgs & g, int ith, int nth) {
    const KernelSet & ks = *cfg.kernels;
    // Up to 2 * kFewRows rows, the second call only while B stays in L2 (B of a weight
    // product comes from DRAM, and a register tile reads it once).
    constexpr int64_t kFewRowsCachedB = 256 * 1024 / sizeof(float);
    if (ks.few_rows[0] != nullptr && (g.m <= kFewRows || (g.m <= 2 * kFewRows && g.n * g.k <= kFewRowsCachedB)) && g.k > 0 &&
        !g.accumulate && !g.a_km) {
        // Few rows: every thread takes all of them for a range of column steps.
        const RowRange steps = split_rows((g.n + ks.few_cols - 1) / ks.few_cols, ith, nth);
        const int64_t n0 = std::min(g.n, steps.begin * ks.few_cols), n1 = std::min(g.n, steps.end * ks.few_cols);
        for (int64_t i = 0; n0 < n1 && i < g.m; i += kFewRows) {
            const int64_t m = std::min(kFewRows, g.m - i);
            ks.few_rows[m - 1]({.m = m, .n0 = n0, .n1 = n1, .k = g.k, .a = g.a + i * g.lda, .lda = g.lda,
                         .b = g.b, .ldb = g.ldb, .b_kn = g.b_kn, .c = g.c + i * g.ldc, .ldc = g.ldc});
        }
        return;
    }
    const Rect rect = thread_rect(g.m, g.n, ks, ith, nth);
    if (rect.m0 >= rect.m1 || rect.n0 >= rect.n1) return;
    if (g.k <= 0) {
        if (!g.accumulate) {
            for (int64_t i = rect.m0; i < rect.m1; ++i) {
                std::fill(g.c + i * g.ldc + rect.n0, g.c + i * g.ldc + rect.n1, 0.0f);
            }
        }
        return;
    }
    const Blocking & bl = cfg.blocking;
    // With one A block per depth block, B panels are packed into one slot (MacroArgs);
    // a k-major B is packed whole before the macro kernel instead.
    const bool keep_b = rect.m1 - rect.m0 > bl.mc || g.b_kn;
    const int64_t kc_max = std::min(bl.kc, g.k);
    const int64_t mc_max = round_up(std::min(bl.mc, rect.m1 - rect.m0), ks.mr);
    const int64_t nc_max = keep_b ? round_up(std::min(bl.nc, rect.n1 - rect.n0), ks.nr) : ks.nr;
    float * pack_a = tl_pack_a.get(mc_max * kc_max);
    float * pack_b = tl_pack_b.get(nc_max * kc_max);

    for (int64_t jc = rect.n0; jc < rect.n1; jc += bl.nc) {
        const int64_t nc = std::min(bl.nc, rect.n1 - jc);
        for (int64_t pc = 0; pc < g.k; pc += bl.kc) {
            const int64_t kc = std::min(bl.kc, g.k - pc);
            if (g.b_kn) pack_panels_k_major({.src = g.b + pc * g.ldb + jc, .ld = g.ldb, .rows = nc, .kc = kc, .dst = pack_b}, ks.nr);
            for (int64_t ic = rect.m0; ic < rect.m1; ic += bl.mc) {
                const int64_t mc = std::min(bl.mc, rect.m1 - ic);
                if (g.a_km) {
                    pack_panels_k_major({.src = g.a + pc * g.lda + ic, .ld = g.lda, .rows = mc, .kc = kc, .dst = pack_a}, ks.mr);
                } else {
                    ks.pack_a({.src = g.a + ic * g.lda + pc, .ld = g.lda, .rows = mc, .kc = kc, .dst = pack_a});
                }
                // The first A block packs the B block as it goes; the others reuse it.
                ks.macro({.mc = mc,
                          .nc = nc,
                          .kc = kc,
                          .ap = pack_a,
                          .bp = pack_b,
                          .b_src = ic == rect.m0 && !g.b_kn ? g.b + jc * g.ldb + pc : nullptr,
                          .ldb = g.ldb,
                          .keep_b = keep_b,
                          .c = g.c + ic * g.ldc + jc,
                          .ldc = g.ldc,
                          .load_c = g.accumulate || pc > 0});
            }
        }
    }
}

}  // namespace gemm_detail

void gemm_f32(const GemmArgs & g, int ith, int nth) {
    gemm_detail::gemm_f32_with(gemm_detail::default_config(cpu_features().level), g, ith, nth);
}

}  // namespace toyllm::cpu
