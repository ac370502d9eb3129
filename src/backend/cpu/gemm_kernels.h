// Internal interface between the GEMM driver (gemm.cpp) and its kernels: the scalar ones
// in gemm.cpp, the AVX2 ones in gemm_avx2.cpp and the AVX-512 ones in gemm_avx512.cpp.
// Plain structs and function declarations only: the ISA files include this header and
// must not share inline code with the rest of the library (see CMakeLists.txt).
//
// Packed format. A panel of width w holds w rows of A (or of B) over a depth of kc,
// transposed so that each k step is w contiguous floats:
//     panel[kk * w + r] = src[r * ld + kk]      0 <= kk < kc, 0 <= r < w
// Rows past the last source row are zero. A packed block is ceil(rows / w) panels back
// to back, panel p starting at p * w * kc.
//
// Arithmetic contract (what makes results independent of the thread count and of the
// blocking): every kernel computes each C element as one chain c = fma(a, b, c) (scalar:
// c = a * b + c, which the compiler may or may not fuse) over k in increasing order,
// starting from the C value when load_c is set and from +0 otherwise. The driver calls
// depth blocks in increasing k order with load_c set after the first, so the chain is
// the same whatever mc, kc, nc and the split; and all FMA kernels (AVX2, AVX-512, any
// register tile) give the same bits.
#pragma once

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm.h"

#include <cstdint>

namespace toyllm::cpu::gemm_detail {

struct PackArgs {
    const float * src;  // row 0, column 0 of the block; rows are k-contiguous
    int64_t ld;         // row stride of src, in elements
    int64_t rows;       // rows to copy, >= 1 (the last panel is zero-padded)
    int64_t kc;         // depth, >= 1
    float * dst;        // ceil(rows / width) * width * kc floats, 64-byte aligned
};

// C[mc, nc] (row stride ldc) = (load_c ? C : 0) + Ap Bp^T over depth kc.
//
// With b_src set, the macro kernel packs each B panel into bp itself, just before its
// first use, from b_src (row 0, depth 0 of the block; row stride ldb); meanwhile the
// tiles using one panel prefetch the source lines of the next. That overlaps reading B
// (weights: usually from DRAM) with the FMAs; packing B as a separate pass leaves the
// FMA units idle for it. Without b_src, bp holds the packed block already (the driver's
// later A blocks reuse it). When no later A block needs the packed block (keep_b
// false), every panel is packed into the first slot, which stays in cache.
struct MacroArgs {
    int64_t mc, nc, kc;
    const float * ap;     // ceil(mc / mr) A panels
    float * bp;           // ceil(nc / nr) B panels
    const float * b_src;  // nullptr: bp is packed already
    int64_t ldb;
    bool keep_b;
    float * c;
    int64_t ldc;
    bool load_c;
};

// C[i, j] = the chain of the macro kernels (fma over k in increasing order, from +0) for
// the rows i < m (m <= kFewRows) and the columns [n0, n1), read straight from the
// operands without packing: A k-contiguous (a[i * lda + kk]), B k-contiguous
// (b[j * ldb + kk]) or with b_kn k-major (b[kk * ldb + j]). C is written, not added to.
// For products of a few rows (decode attention: one query per head), where a register
// tile of mr rows would be mostly empty and packing A costs more than the product.
constexpr int64_t kFewRows = 4;
struct FewRowsArgs {
    int64_t m, n0, n1, k;
    const float * a;
    int64_t lda;
    const float * b;
    int64_t ldb;
    bool b_kn;
    float * c;
    int64_t ldc;
};

struct KernelSet {
    int mr, nr;                        // register tile: mr rows of A by nr rows of B
    void (*pack_a)(const PackArgs &);  // panels of width mr
    void (*macro)(const MacroArgs &);  // all mr x nr tiles of one block pair
    void (*few_rows[kFewRows])(const FewRowsArgs &);  // for m = 1 .. kFewRows; nullptr: the scalar
                                                      // level, whose chains may not fuse
    int few_cols;                      // columns per few_rows step (the split between threads)
};

// Cache blocking, in elements; mc should be a multiple of mr and nc of nr. A packed A
// block (mc x kc) and one B panel (kc x nr) are meant to stay in L2 (the panel in L1
// where it fits) while the tiles sweep over them; the packed B block (kc x nc), kept
// only when the rows need several A blocks, lives in L2/L3.
struct Blocking {
    int64_t mc, kc, nc;
};

struct GemmConfig {
    const KernelSet * kernels;
    Blocking blocking;
};

// Kernel sets. The x86 ones are built only in x86-64 builds and may be called only when
// cpu_features() reports their ISA.
extern const KernelSet kernels_scalar_4x4;
extern const KernelSet kernels_avx2_6x16;
extern const KernelSet kernels_avx512_14x32;
extern const KernelSet kernels_avx512_12x32;
extern const KernelSet kernels_avx512_8x48;
extern const KernelSet kernels_avx512_6x64;

// A named configuration for tests and bench_gemm, which try all of them side by side.
struct GemmVariant {
    const char * name;
    SimdLevel level;  // the SIMD level the CPU needs for it
    GemmConfig config;
};

// The variants built into this binary; the first one of each level is its default.
int gemm_variant_count();
const GemmVariant & gemm_variant(int i);

// gemm_f32 with an explicit configuration (gemm_f32 uses the default of the current level).
void gemm_f32_with(const GemmConfig & cfg, const GemmArgs & g, int ith, int nth);

}  // namespace toyllm::cpu::gemm_detail
