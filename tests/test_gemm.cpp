// gemm_f32 against a double-precision reference, at every SIMD level this CPU has and
// with every built-in kernel variant; plus the determinism promises: the same bits for
// any thread count, any blocking, and (for the FMA kernels) any variant.
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace toyllm::cpu {
namespace {

struct Shape {
    int64_t m, n, k;
};

// Odd sizes, single rows and columns, sizes just past the register tiles (14 x 32,
// 12 x 32, 8 x 48, 6 x 64, 6 x 16, 4 x 4), and sizes crossing the cache blocks
// (kc = 256, mc = 140..144, nc = 1024..1056) so that edge tiles, several depth blocks
// (load_c) and several A and B blocks all run.
const Shape kShapes[] = {
    {1, 1, 1},      {1, 13, 5},    {7, 13, 5},     {13, 7, 5},     {2, 3, 1},
    {1, 64, 300},   {100, 1, 300}, {14, 32, 16},   {15, 33, 17},   {12, 48, 8},
    {6, 64, 9},     {5, 17, 31},   {29, 65, 257},  {37, 97, 513},  {64, 64, 64},
    {3, 200, 1},    {200, 3, 2},   {150, 70, 40},  {20, 1100, 24}, {145, 1060, 260},
};

// Which levels this CPU can run: every level up to the detected one.
std::vector<SimdLevel> available_levels() {
    unsetenv("TOYLLM_SIMD");
    const SimdLevel max = reset_cpu_features_for_testing().level;
    std::vector<SimdLevel> out;
    for (int l = 0; l <= int(max); ++l) out.push_back(SimdLevel(l));
    return out;
}

void use_level(SimdLevel l) {
    setenv("TOYLLM_SIMD", simd_level_name(l), 1);
    ASSERT_EQ(reset_cpu_features_for_testing().level, l);
}

class GemmTest : public ::testing::Test {
  protected:
    void TearDown() override {
        unsetenv("TOYLLM_SIMD");
        reset_cpu_features_for_testing();
    }
};

// Operands with leading dimensions larger than the sizes; the padding holds NaN, so a
// kernel reading A or B past a row shows up as NaN in C, and C's padding must survive.
struct Problem {
    Shape s;
    int64_t lda, ldb, ldc;
    std::vector<float> a, b, c0;  // c0: C before the call (the addend when accumulating)

    Problem(Shape shape, bool strided, uint32_t seed) : s(shape) {
        lda = s.k + (strided ? 3 : 0);
        ldb = s.k + (strided ? 5 : 0);
        ldc = s.n + (strided ? 7 : 0);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        a.assign(size_t(s.m * lda), nan);
        b.assign(size_t(s.n * ldb), nan);
        c0.assign(size_t(s.m * ldc), nan);
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t kk = 0; kk < s.k; ++kk) a[size_t(i * lda + kk)] = dist(rng);
        }
        for (int64_t j = 0; j < s.n; ++j) {
            for (int64_t kk = 0; kk < s.k; ++kk) b[size_t(j * ldb + kk)] = dist(rng);
        }
        for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t j = 0; j < s.n; ++j) c0[size_t(i * ldc + j)] = dist(rng);
        }
    }

    GemmArgs args(float * c, bool accumulate) const {
        return {.m = s.m, .n = s.n, .k = s.k, .a = a.data(), .lda = lda, .b = b.data(),
                .ldb = ldb, .c = c, .ldc = ldc, .accumulate = accumulate};
    }
};

// Checks C against sum_k a*b (+ c0) in double; the tolerance scales with sum |terms|,
// the size of the rounding errors an F32 summation can make.
void expect_matches_reference(const Problem & p, const std::vector<float> & c, bool accumulate) {
    int reported = 0;
    for (int64_t i = 0; i < p.s.m; ++i) {
        for (int64_t j = 0; j < p.s.n; ++j) {
            double ref = 0, mag = 0;
            for (int64_t kk = 0; kk < p.s.k; ++kk) {
                const double t = double(p.a[size_t(i * p.lda + kk)]) * double(p.b[size_t(j * p.ldb + kk)]);
                ref += t;
                mag += std::fabs(t);
            }
            if (accumulate) {
                ref += p.c0[size_t(i * p.ldc + j)];
                mag += std::fabs(p.c0[size_t(i * p.ldc + j)]);
            }
            const double got = c[size_t(i * p.ldc + j)];
            const double tol = 1e-5 * mag + 1e-30;
            if (!(std::fabs(got - ref) <= tol) && reported++ < 5) {
                ADD_FAILURE() << "C[" << i << "," << j << "] = " << got << ", reference " << ref
                              << " (tolerance " << tol << ")";
            }
        }
        for (int64_t j = p.s.n; j < p.ldc; ++j) {
            if (!std::isnan(c[size_t(i * p.ldc + j)]) && reported++ < 5) {
                ADD_FAILURE() << "padding C[" << i << "," << j << "] was overwritten";
            }
        }
    }
}

std::string shape_name(const Shape & s) {
    return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

// C from gemm_f32 with the current level, the nth parts computed one after the other.
std::vector<float> run_parts(const Problem & p, bool accumulate, int nth) {
    std::vector<float> c = p.c0;
    const GemmArgs g = p.args(c.data(), accumulate);
    for (int ith = 0; ith < nth; ++ith) gemm_f32(g, ith, nth);
    return c;
}

bool same_bits(const std::vector<float> & x, const std::vector<float> & y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

TEST_F(GemmTest, MatchesReferenceAtEveryLevel) {
    for (SimdLevel level : available_levels()) {
        use_level(level);
        uint32_t seed = 1;
        for (const Shape & s : kShapes) {
            for (bool strided : {false, true}) {
                for (bool accumulate : {false, true}) {
                    SCOPED_TRACE(std::string(simd_level_name(level)) + " " + shape_name(s) +
                                 (strided ? " strided" : "") + (accumulate ? " accumulate" : ""));
                    const Problem p(s, strided, seed++);
                    expect_matches_reference(p, run_parts(p, accumulate, 1), accumulate);
                }
            }
        }
    }
}

TEST_F(GemmTest, SameBitsForAnyThreadCount) {
    for (SimdLevel level : available_levels()) {
        use_level(level);
        for (const Shape & s : kShapes) {
            SCOPED_TRACE(std::string(simd_level_name(level)) + " " + shape_name(s));
            const Problem p(s, true, 7);
            for (bool accumulate : {false, true}) {
                const std::vector<float> one = run_parts(p, accumulate, 1);
                for (int nth = 2; nth <= 4; ++nth) {
                    EXPECT_TRUE(same_bits(one, run_parts(p, accumulate, nth))) << "nth = " << nth;
                }
                EXPECT_TRUE(same_bits(one, run_parts(p, accumulate, 1))) << "run to run";
            }
        }
    }
}

TEST_F(GemmTest, SameBitsThroughThreadPool) {
    ThreadPool pool(3);
    for (SimdLevel level : available_levels()) {
        use_level(level);
        for (const Shape & s : {Shape{145, 1060, 260}, Shape{7, 13, 5}, Shape{64, 200, 300}}) {
            SCOPED_TRACE(std::string(simd_level_name(level)) + " " + shape_name(s));
            const Problem p(s, false, 11);
            const std::vector<float> one = run_parts(p, false, 1);
            for (int rep = 0; rep < 3; ++rep) {
                std::vector<float> c = p.c0;
                const GemmArgs g = p.args(c.data(), false);
                pool.run([&](int ith, int nth) { gemm_f32(g, ith, nth); });
                EXPECT_TRUE(same_bits(one, c));
            }
        }
    }
}

// Every built-in variant is correct, and blocking never changes the bits: each element
// is one fma chain over k in order (gemm_kernels.h). The FMA kernels (AVX2 and AVX-512,
// any tile shape) also agree with each other bit for bit.
TEST_F(GemmTest, VariantsAndBlockingsAgree) {
    using namespace gemm_detail;
    const SimdLevel max = available_levels().back();
    const Shape shapes[] = {{37, 97, 513}, {145, 1060, 260}, {1, 50, 70}, {30, 5, 600}};
    for (const Shape & s : shapes) {
        const Problem p(s, true, 23);
        std::vector<float> fma_ref;
        for (int v = 0; v < gemm_variant_count(); ++v) {
            const GemmVariant & var = gemm_variant(v);
            if (var.level > max) continue;
            const KernelSet & ks = *var.config.kernels;
            // The variant's own blocking, then small blocks that cut k, m and n many times.
            const Blocking blockings[] = {var.config.blocking,
                                          {.mc = 2 * ks.mr, .kc = 33, .nc = 3 * ks.nr},
                                          {.mc = ks.mr, .kc = 1, .nc = ks.nr}};
            std::vector<float> first;
            for (const Blocking & bl : blockings) {
                SCOPED_TRACE(std::string(var.name) + " " + shape_name(s) + " kc " + std::to_string(bl.kc));
                std::vector<float> c = p.c0;
                const GemmArgs g = p.args(c.data(), true);
                for (int ith = 0; ith < 2; ++ith) gemm_f32_with({var.config.kernels, bl}, g, ith, 2);
                if (first.empty()) {
                    expect_matches_reference(p, c, true);
                    first = c;
                } else {
                    EXPECT_TRUE(same_bits(first, c));
                }
            }
            if (var.level != SimdLevel::SCALAR) {
                if (fma_ref.empty()) fma_ref = first;
                EXPECT_TRUE(same_bits(fma_ref, first)) << var.name << " " << shape_name(s);
            }
        }
    }
}

// Decode multiplies one activation row (m = 1, the AVX-512 gemv kernel, no packing);
// prefill many. Each row of a product must not depend on how many rows came with it.
TEST_F(GemmTest, OneRowGivesTheBitsOfThatRowInAManyRowProduct) {
    for (SimdLevel level : available_levels()) {
        use_level(level);
        for (const Shape s : {Shape{7, 1100, 600}, Shape{5, 37, 17}, Shape{3, 16, 16}}) {
            for (bool accumulate : {false, true}) {
                const Problem p(s, true, 41);
                std::vector<float> all = p.c0;
                for (int ith = 0; ith < 2; ++ith) gemm_f32(p.args(all.data(), accumulate), ith, 2);
                for (int64_t i = 0; i < s.m; ++i) {
                    std::vector<float> row(p.c0.begin() + i * p.ldc, p.c0.begin() + i * p.ldc + s.n);
                    GemmArgs g = p.args(row.data(), accumulate);
                    g.m = 1;
                    g.a = p.a.data() + i * p.lda;
                    for (int ith = 0; ith < 3; ++ith) gemm_f32(g, ith, 3);
                    EXPECT_EQ(std::memcmp(row.data(), all.data() + i * p.ldc, size_t(s.n) * sizeof(float)), 0)
                        << simd_level_name(level) << " " << shape_name(s) << " row " << i << (accumulate ? " accumulate" : "");
                }
            }
        }
    }
}

// The k-major layouts (A stored [k, m], B stored [k, n], as attention and the input
// gradients hand them over) pack into the same panels: same bits as the k-contiguous
// call, with their own NaN-padded strides, at every level and under a small blocking.
std::vector<float> k_major_copy(const std::vector<float> & src, int64_t rows, int64_t k, int64_t ld, int64_t ld_out) {
    std::vector<float> out(size_t(k * ld_out), std::numeric_limits<float>::quiet_NaN());
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t kk = 0; kk < k; ++kk) out[size_t(kk * ld_out + r)] = src[size_t(r * ld + kk)];
    }
    return out;
}

// Up to 2 * kFewRows rows go through the kernels' few_rows path (no packing; decode
// attention): the same bits as the register tiles, for either layout of B, over tails of
// n and k, with 1 and 3 threads.
TEST_F(GemmTest, FewRowsGiveTheBitsOfTheRegisterTiles) {
    using namespace gemm_detail;
    const SimdLevel max = available_levels().back();
    int checked = 0;
    for (int v = 0; v < gemm_variant_count(); ++v) {
        const GemmVariant & var = gemm_variant(v);
        if (var.level > max || var.config.kernels->few_rows[0] == nullptr) continue;
        KernelSet tiles_only = *var.config.kernels;
        for (auto & f : tiles_only.few_rows) f = nullptr;
        for (int64_t m = 1; m <= 2 * kFewRows + 1; ++m) {
            for (const int64_t n : {1, 15, 16, 17, 33, 70, 97}) {
                for (const int64_t k : {1, 5, 16, 17, 40}) {
                    const Problem p({m, n, k}, true, uint32_t(m * 1000 + n * 10 + k));
                    const std::vector<float> b_kn = k_major_copy(p.b, n, k, p.ldb, n + 3);
                    for (bool kn : {false, true}) {
                        SCOPED_TRACE(std::string(var.name) + " " + shape_name({m, n, k}) + (kn ? " b_kn" : ""));
                        std::vector<float> want = p.c0, got = p.c0;
                        GemmArgs g = p.args(want.data(), false);
                        if (kn) g.b = b_kn.data(), g.ldb = n + 3, g.b_kn = true;
                        gemm_f32_with({&tiles_only, var.config.blocking}, g, 0, 1);
                        g.c = got.data();
                        for (int ith = 0; ith < 3; ++ith) gemm_f32_with(var.config, g, ith, 3);
                        EXPECT_TRUE(same_bits(want, got));
                        ++checked;
                    }
                }
            }
        }
    }
    if (checked == 0) GTEST_SKIP() << "no SIMD level with few_rows kernels on this CPU";
}

TEST_F(GemmTest, KMajorOperandsGiveTheSameBits) {
    using namespace gemm_detail;
    for (SimdLevel level : available_levels()) {
        use_level(level);
        for (const Shape s : {Shape{37, 97, 513}, Shape{145, 70, 40}, Shape{1, 13, 5}, Shape{64, 64, 256}}) {
            const Problem p(s, true, 57);
            const std::vector<float> a_km = k_major_copy(p.a, s.m, s.k, p.lda, s.m + 2);
            const std::vector<float> b_kn = k_major_copy(p.b, s.n, s.k, p.ldb, s.n + 3);
            for (bool accumulate : {false, true}) {
                const std::vector<float> ref = run_parts(p, accumulate, 1);
                for (int layout = 1; layout < 4; ++layout) {
                    SCOPED_TRACE(std::string(simd_level_name(level)) + " " + shape_name(s) + " layout " + std::to_string(layout));
                    std::vector<float> c = p.c0;
                    GemmArgs g = p.args(c.data(), accumulate);
                    if (layout & 1) g.a = a_km.data(), g.lda = s.m + 2, g.a_km = true;
                    if (layout & 2) g.b = b_kn.data(), g.ldb = s.n + 3, g.b_kn = true;
                    for (int ith = 0; ith < 2; ++ith) gemm_f32(g, ith, 2);
                    EXPECT_TRUE(same_bits(ref, c));
                    std::vector<float> small = p.c0;
                    g.c = small.data();
                    const GemmVariant & var = gemm_variant(0);
                    if (var.level <= level) {
                        const KernelSet & ks = *var.config.kernels;
                        gemm_f32_with({var.config.kernels, {.mc = 2 * ks.mr, .kc = 33, .nc = 3 * ks.nr}}, g, 0, 1);
                        std::vector<float> small_ref = p.c0;
                        GemmArgs gr = p.args(small_ref.data(), accumulate);
                        gemm_f32_with({var.config.kernels, {.mc = 2 * ks.mr, .kc = 33, .nc = 3 * ks.nr}}, gr, 0, 1);
                        EXPECT_TRUE(same_bits(small_ref, small));
                    }
                }
            }
        }
    }
}

// An empty sum: C = 0, or C unchanged when accumulating.
TEST_F(GemmTest, ZeroDepth) {
    const float a = 1.0f, b = 2.0f;
    for (SimdLevel level : available_levels()) {
        use_level(level);
        for (bool accumulate : {false, true}) {
            std::vector<float> c = {3.0f, 4.0f, 5.0f, 6.0f};
            const GemmArgs g = {.m = 2, .n = 2, .k = 0, .a = &a, .lda = 1, .b = &b, .ldb = 1,
                                .c = c.data(), .ldc = 2, .accumulate = accumulate};
            for (int ith = 0; ith < 2; ++ith) gemm_f32(g, ith, 2);
            EXPECT_EQ(c, accumulate ? std::vector<float>({3.0f, 4.0f, 5.0f, 6.0f}) : std::vector<float>(4, 0.0f));
        }
    }
}

TEST_F(GemmTest, DefaultVariantOfEachLevelComesFirst) {
    using namespace gemm_detail;
    ASSERT_GT(gemm_variant_count(), 0);
    EXPECT_EQ(gemm_variant(gemm_variant_count() - 1).level, SimdLevel::SCALAR);
    for (int v = 1; v < gemm_variant_count(); ++v) {
        EXPECT_GE(int(gemm_variant(v - 1).level), int(gemm_variant(v).level)) << "variants grouped by level";
    }
}

}  // namespace
}  // namespace toyllm::cpu
