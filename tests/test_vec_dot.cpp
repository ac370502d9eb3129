// Dot-product kernels at every SIMD level this machine has, against double-precision
// sums of the reference dequantization (quant.h) of both operands: the weight row and
// the activation row as converted by the kernel's own from_float. The only difference
// left is summation order, so the tolerance is 1e-5 of sum |w * x|. The converted
// activations are compared byte by byte: Q8_0 with quant.h's quantize_row, Q8_K with
// ggml's quantize_row_q8_K_ref rewritten below. Also the thread pool and split_rows.
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_dot.h"
#include "backend/cpu/vec_math.h"
#include "backend/cpu/vec_math_kernels.h"
#include "simd_testing.h"
#include "testing.h"

#include "toyllm/error.h"
#include "toyllm/graph.h"
#include "toyllm/half.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using toyllm::DType;
using toyllm::testing::random_floats;
using toyllm::cpu::BlockQ8_K;
using toyllm::cpu::SimdLevel;
using toyllm::testing::available_levels;
using toyllm::testing::for_each_level;
using toyllm::testing::ScopedSimd;

constexpr DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0,
                                  DType::Q4_0, DType::Q4_K, DType::Q6_K};

// ggml's quantize_row_q8_K_ref, written from its source: iscale = -127 / max where max is
// the first value of largest magnitude, q = nearest_int(iscale * x) (half to even),
// capped at 127, d = 1 / iscale, bsums = sums of 16. An all-zero block is all zeros.
std::vector<BlockQ8_K> reference_q8_k(const std::vector<float> & x) {
    std::vector<BlockQ8_K> y(x.size() / 256);
    for (size_t b = 0; b < y.size(); ++b) {
        const float * v = x.data() + 256 * b;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 256; ++j) {
            if (std::fabs(v[j]) > amax) {
                amax = std::fabs(v[j]);
                max = v[j];
            }
        }
        std::memset(&y[b], 0, sizeof(BlockQ8_K));
        if (amax == 0.0f) continue;
        const float iscale = -127.0f / max;
        for (int j = 0; j < 256; ++j) {
            const int q = static_cast<int>(std::nearbyint(iscale * v[j]));
            y[b].qs[j] = static_cast<int8_t>(std::min(127, q));
        }
        for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += y[b].qs[16 * g + l];
            y[b].bsums[g] = static_cast<int16_t>(s);
        }
        y[b].d = 1.0f / iscale;
    }
    return y;
}

// The converted activation back to floats, by the reference dequantizers.
std::vector<float> dequantize_activation(DType t, const std::vector<uint8_t> & conv, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    if (t == DType::Q8_K) {
        const auto * blocks = reinterpret_cast<const BlockQ8_K *>(conv.data());
        for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = blocks[i / 256].d * blocks[i / 256].qs[i % 256];
    } else {
        toyllm::dequantize_row(t, conv.data(), out.data(), n);
    }
    return out;
}

size_t converted_bytes(DType vec_dot_type, int64_t n) {
    return vec_dot_type == DType::Q8_K ? static_cast<size_t>(n / 256) * sizeof(BlockQ8_K)
                                       : toyllm::dtype_row_bytes(vec_dot_type, n);
}

std::vector<int64_t> sizes_for(DType t) {
    const int64_t block = toyllm::dtype_info(t).block_size;
    std::vector<int64_t> out;
    // Odd lengths for the plain types exercise every tail; 17 and 33 Q8_0 / Q4_0 blocks
    // are a group of 16 plus a tail; 33024 = 1032 blocks spans chunks of columns.
    for (int64_t n : {1, 7, 17, 31, 32, 33, 65, 100, 96, 256, 544, 1056, 2304, 5632, 33024}) {
        if (n % block == 0) out.push_back(n);
    }
    return out;
}

struct Case {
    std::vector<uint8_t> w;
    std::vector<float> x;
    std::vector<float> w_deq;
};

Case make_case(DType t, int64_t n, uint32_t seed) {
    Case c;
    const auto wf = random_floats(n, seed);
    c.w.resize(toyllm::dtype_row_bytes(t, n));
    toyllm::quantize_row(t, wf.data(), c.w.data(), n);
    c.w_deq.resize(static_cast<size_t>(n));
    toyllm::dequantize_row(t, c.w.data(), c.w_deq.data(), n);
    c.x = random_floats(n, seed * 7919u + 1, 3.0f);
    return c;
}

TEST(VecDot, DotMatchesDequantizedReference) {
    for_each_level([](SimdLevel) {
        for (DType t : kWeightTypes) {
            const auto & vd = toyllm::cpu::vec_dot_for(t);
            for (int64_t n : sizes_for(t)) {
                SCOPED_TRACE(std::string(toyllm::dtype_name(t)) + " n=" + std::to_string(n));
                for (uint32_t seed = 1; seed <= 3; ++seed) {
                    const Case c = make_case(t, n, seed + static_cast<uint32_t>(n));
                    std::vector<uint8_t> conv(converted_bytes(vd.vec_dot_type, n));
                    vd.from_float(c.x.data(), conv.data(), n);
                    const auto x_deq = dequantize_activation(vd.vec_dot_type, conv, n);
                    double ref = 0.0, mag = 0.0;
                    for (int64_t i = 0; i < n; ++i) {
                        const double p = static_cast<double>(c.w_deq[i]) * x_deq[static_cast<size_t>(i)];
                        ref += p;
                        mag += std::fabs(p);
                    }
                    const float got = vd.dot(n, c.w.data(), conv.data());
                    EXPECT_NEAR(got, ref, 1e-5 * mag + 1e-30) << "seed " << seed;
                }
            }
        }
    });
}

TEST(VecDot, VecDotTypes) {
    using toyllm::cpu::vec_dot_for;
    EXPECT_EQ(vec_dot_for(DType::F32).vec_dot_type, DType::F32);
    EXPECT_EQ(vec_dot_for(DType::F16).vec_dot_type, DType::F32);
    EXPECT_EQ(vec_dot_for(DType::BF16).vec_dot_type, DType::F32);
    EXPECT_EQ(vec_dot_for(DType::Q8_0).vec_dot_type, DType::Q8_0);
    EXPECT_EQ(vec_dot_for(DType::Q4_0).vec_dot_type, DType::Q8_0);
    EXPECT_EQ(vec_dot_for(DType::Q4_K).vec_dot_type, DType::Q8_K);
    EXPECT_EQ(vec_dot_for(DType::Q6_K).vec_dot_type, DType::Q8_K);
    EXPECT_THROW(vec_dot_for(DType::Q5_0), toyllm::Error);
    EXPECT_THROW(vec_dot_for(DType::I32), toyllm::Error);
}

// Activations with the awkward cases: exact halves after scaling (rounding direction),
// a zero block, ties of +max and -max (the first wins in Q8_K), tiny and huge blocks.
std::vector<float> awkward_activation(int64_t n) {
    auto x = random_floats(n, 12345, 2.0f);
    // Block 0 of 32: amax 127 gives d = 1 and id = 1, so x * id keeps the halves.
    for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j % 2 ? j : -j) + 0.5f;
    x[5] = 127.0f;
    if (n >= 128) {
        for (int j = 32; j < 64; ++j) x[j] = 0.0f;  // an all-zero Q8_0 block
        for (int j = 64; j < 96; ++j) x[j] *= 1e-30f;
        for (int j = 96; j < 128; ++j) x[j] *= 1e30f;
    }
    if (n >= 1024) {
        // Q8_K block 1: max magnitude 127 with -127 first, so iscale = 1 and halves stay.
        for (int j = 256; j < 512; ++j) x[j] = static_cast<float>((j % 50) - 25) + 0.5f;
        x[300] = -127.0f;
        x[400] = 127.0f;
        for (int j = 512; j < 768; ++j) x[j] = 0.0f;  // an all-zero Q8_K block
        // Q8_K block 3: max positive: iscale = -1.
        for (int j = 768; j < 1024; ++j) x[j] = static_cast<float>((j % 21) - 10) - 0.5f;
        x[1000] = 127.0f;
    }
    return x;
}

TEST(VecDot, Q8_0ActivationIsByteIdenticalToReference) {
    for (int64_t n : {32, 96, 256, 2304, 5632}) {
        const auto x = awkward_activation(n);
        std::vector<uint8_t> ref(toyllm::dtype_row_bytes(DType::Q8_0, n));
        toyllm::quantize_row(DType::Q8_0, x.data(), ref.data(), n);
        for_each_level([&](SimdLevel) {
            for (DType w : {DType::Q8_0, DType::Q4_0}) {
                const auto & vd = toyllm::cpu::vec_dot_for(w);
                std::vector<uint8_t> got(ref.size(), 0xAB);
                vd.from_float(x.data(), got.data(), n);
                EXPECT_EQ(got, ref) << "n=" << n;
            }
        });
    }
}

TEST(VecDot, Q8_KActivationIsByteIdenticalToGgmlFormula) {
    for (int64_t n : {256, 2304, 5632}) {
        const auto x = awkward_activation(n);
        const auto ref = reference_q8_k(x);
        for_each_level([&](SimdLevel) {
            for (DType w : {DType::Q4_K, DType::Q6_K}) {
                const auto & vd = toyllm::cpu::vec_dot_for(w);
                std::vector<BlockQ8_K> got(ref.size());
                std::memset(got.data(), 0xAB, got.size() * sizeof(BlockQ8_K));
                vd.from_float(x.data(), got.data(), n);
                EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(BlockQ8_K)), 0) << "n=" << n;
            }
        });
    }
}

TEST(VecDot, Q8_KFormulaDetails) {
    // The hand-checked corners of the formula the byte test above relies on.
    std::vector<float> x(256, 0.0f);
    x[0] = 2.5f;     // iscale = -1: -2.5 rounds half to even -> -2
    x[1] = -3.5f;    // -> 4
    x[2] = 127.0f;   // the max, first of the two magnitudes 127: -> -127
    x[3] = -127.0f;  // -> 127
    const auto y = reference_q8_k(x);
    EXPECT_FLOAT_EQ(y[0].d, -1.0f);
    EXPECT_EQ(y[0].qs[0], -2);
    EXPECT_EQ(y[0].qs[1], 4);
    EXPECT_EQ(y[0].qs[2], -127);
    EXPECT_EQ(y[0].qs[3], 127);
    EXPECT_EQ(y[0].bsums[0], -2 + 4 - 127 + 127);
}

TEST(VecDot, MatVecRowsMatchesDot) {
    constexpr int64_t kRows = 37;
    for_each_level([](SimdLevel) {
        for (DType t : kWeightTypes) {
            SCOPED_TRACE(std::string(toyllm::dtype_name(t)));
            const int64_t n = toyllm::dtype_info(t).block_size == 256 ? 768 : 544;
            const size_t row_bytes = toyllm::dtype_row_bytes(t, n);
            // Rows padded by 64 bytes: row_bytes is a stride, not the row size.
            const size_t stride = row_bytes + 64;
            std::vector<uint8_t> w(stride * kRows);
            for (int64_t r = 0; r < kRows; ++r) {
                const auto f = random_floats(n, static_cast<uint32_t>(100 + r));
                toyllm::quantize_row(t, f.data(), w.data() + stride * r, n);
            }
            const auto x = random_floats(n, 77);
            const auto & vd = toyllm::cpu::vec_dot_for(t);
            std::vector<uint8_t> conv(converted_bytes(vd.vec_dot_type, n));
            vd.from_float(x.data(), conv.data(), n);
            std::vector<float> y(kRows, -1.0f);
            const toyllm::cpu::MatVecArgs args{.w_type = t,
                                               .w = w.data(),
                                               .w_row_bytes = static_cast<int64_t>(stride),
                                               .n = n,
                                               .x_conv = conv.data(),
                                               .y = y.data()};
            toyllm::cpu::matvec_rows(args, 0, kRows);
            for (int64_t r = 0; r < kRows; ++r) {
                const float d = vd.dot(n, w.data() + stride * r, conv.data());
                EXPECT_NEAR(y[r], d, 1e-5f * (std::fabs(d) + 1.0f)) << "row " << r;
            }
            // The same rows split between threads give bit-identical results.
            for (int nth = 1; nth <= 3; ++nth) {
                toyllm::cpu::ThreadPool pool(nth);
                std::vector<float> y2(kRows, -1.0f);
                auto args2 = args;
                args2.y = y2.data();
                pool.run([&](int ith, int nth_) {
                    const auto rr = toyllm::cpu::split_rows(kRows, ith, nth_);
                    toyllm::cpu::matvec_rows(args2, rr.begin, rr.end);
                });
                EXPECT_EQ(y2, y) << nth << " threads";
            }
        }
    });
}

// The multi-row kernels of prefill (matmul_tile) against dot() of each pair, bit for bit:
// odd activation counts (1, 3, 5, 17), odd weight row counts, lengths with and without
// full groups of 16 blocks and tails, rows padded (strides are not sizes), output with a
// leading dimension larger than the row count, and the same products computed as one
// tile and as sub-tiles cut at odd places (as the matmul's cache blocking and thread
// split cut them).
TEST(VecDot, MatmulTileIsBitIdenticalToDot) {
    for_each_level([](SimdLevel) {
        for (DType t : kWeightTypes) {
            const int64_t block = toyllm::dtype_info(t).block_size;
            std::vector<int64_t> lengths;
            if (block == 256) {
                lengths = {256, 768, 2304};
            } else if (block == 32) {
                // 3 blocks (tail only), 16 (a group only), 18 (b135m: group + tail),
                // 64 (b1b), 1032 (two chunks of Q4_0 groups + tail).
                lengths = {96, 512, 576, 2048, 33024};
            } else {
                // Tails of 1-15 values, and (2100, 5650) several blocks of the F16 tile.
                lengths = {1, 17, 64, 100, 576, 1000, 2100, 5650};
            }
            for (int64_t n : lengths) {
                for (int64_t n_rows : {1, 3, 9}) {
                    for (int64_t n_cols : {1, 3, 5, 17}) {
                        if (n > 4096 && (n_rows > 3 || n_cols > 5)) continue;  // keep it quick
                        SCOPED_TRACE(std::string(toyllm::dtype_name(t)) + " n=" + std::to_string(n) + " rows=" +
                                     std::to_string(n_rows) + " cols=" + std::to_string(n_cols));
                        const size_t w_stride = toyllm::dtype_row_bytes(t, n) + 36;  // not a multiple of 8: unaligned rows, but element-aligned as in a file
                        std::vector<uint8_t> w(w_stride * static_cast<size_t>(n_rows));
                        for (int64_t r = 0; r < n_rows; ++r) {
                            const auto f = random_floats(n, static_cast<uint32_t>(1000 + r + n));
                            toyllm::quantize_row(t, f.data(), w.data() + w_stride * static_cast<size_t>(r), n);
                        }
                        const auto & vd = toyllm::cpu::vec_dot_for(t);
                        const size_t conv_bytes = converted_bytes(vd.vec_dot_type, n);
                        const size_t x_stride = static_cast<size_t>(toyllm::cpu::tile_x_row_bytes(t, n)) + 64;
                        std::vector<uint8_t> xp(x_stride * static_cast<size_t>(n_cols));
                        std::vector<uint8_t> conv(conv_bytes * static_cast<size_t>(n_cols));
                        for (int64_t c = 0; c < n_cols; ++c) {
                            const auto f = random_floats(n, static_cast<uint32_t>(5000 + c), 2.0f);
                            toyllm::cpu::tile_x_from_float(t, f.data(), xp.data() + x_stride * static_cast<size_t>(c), n);
                            vd.from_float(f.data(), conv.data() + conv_bytes * static_cast<size_t>(c), n);
                        }
                        const int64_t ldy = n_rows + 5;
                        std::vector<float> want(static_cast<size_t>(ldy * n_cols), -7.0f);
                        for (int64_t c = 0; c < n_cols; ++c) {
                            for (int64_t r = 0; r < n_rows; ++r) {
                                want[static_cast<size_t>(c * ldy + r)] =
                                    vd.dot(n, w.data() + w_stride * static_cast<size_t>(r), conv.data() + conv_bytes * static_cast<size_t>(c));
                            }
                        }
                        const toyllm::cpu::MatTileArgs whole{.w_type = t,
                                                             .w = w.data(),
                                                             .w_row_bytes = static_cast<int64_t>(w_stride),
                                                             .n_rows = n_rows,
                                                             .x = xp.data(),
                                                             .x_row_bytes = static_cast<int64_t>(x_stride),
                                                             .n_cols = n_cols,
                                                             .n = n,
                                                             .y = nullptr,
                                                             .ldy = ldy};
                        // The whole tile, then four sub-tiles cut after row r1 and column c1.
                        for (int split = 0; split < 2; ++split) {
                            std::vector<float> got(want.size(), -7.0f);
                            const int64_t r1 = split ? n_rows / 2 : n_rows, c1 = split ? (n_cols + 1) / 3 : n_cols;
                            for (const auto & [rb, re, cb, ce] : {std::array<int64_t, 4>{0, r1, 0, c1}, {r1, n_rows, 0, c1},
                                                                  {0, r1, c1, n_cols}, {r1, n_rows, c1, n_cols}}) {
                                auto part = whole;
                                part.w = w.data() + w_stride * static_cast<size_t>(rb);
                                part.n_rows = re - rb;
                                part.x = xp.data() + x_stride * static_cast<size_t>(cb);
                                part.n_cols = ce - cb;
                                part.y = got.data() + cb * ldy + rb;
                                toyllm::cpu::matmul_tile(part);
                            }
                            ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
                                << "split " << split << ": first difference at "
                                << std::mismatch(got.begin(), got.end(), want.begin(),
                                                 [](float a, float b) { return std::memcmp(&a, &b, sizeof(a)) == 0; })
                                           .first -
                                       got.begin();
                        }
                    }
                }
            }
        }
    });
}

// The matmul op with several activation rows (the tiled prefill path) against the same
// rows one at a time (the matrix-vector decode path), bit for bit, for 1, 2 and 3
// threads and every level: prefill and decode agree, and neither M nor the thread count
// changes a result. Also b with two batch entries sharing one weight matrix (the rows
// of both go through one tiled product) and an odd weight row count.
TEST(VecDot, MatmulOpIsBatchAndThreadInvariant) {
    for_each_level([](SimdLevel) {
        for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
            const int64_t K = toyllm::dtype_info(t).block_size == 256 ? 512 : 576, N = 75, M = 9, B = 2;
            SCOPED_TRACE(std::string(toyllm::dtype_name(t)));
            toyllm::Context ctx;
            toyllm::Tensor * w = ctx.new_tensor(t, {K, N}, "w");
            toyllm::Tensor * x = ctx.new_tensor(DType::F32, {K, M, B}, "x");
            ctx.alloc(w);
            ctx.alloc(x);
            const auto wf = random_floats(K * N, 11);
            toyllm::quantize_row(t, wf.data(), w->data, K * N);
            const auto xf = random_floats(K * M * B, 12, 2.0f);
            std::memcpy(x->data, xf.data(), xf.size() * sizeof(float));
            toyllm::Tensor * y = toyllm::matmul(ctx, w, x);  // [N, M, B]
            toyllm::Graph g;
            g.build_forward(y);
            // Each activation row alone: M = 1.
            std::vector<float> alone(static_cast<size_t>(N * M * B));
            {
                toyllm::Context c1;
                toyllm::Tensor * x1 = c1.new_tensor(DType::F32, {K, 1}, "x1");
                c1.alloc(x1);
                toyllm::Tensor * y1 = toyllm::matmul(c1, w, x1);
                toyllm::Graph g1;
                g1.build_forward(y1);
                auto be = toyllm::make_backend("cpu", {.n_threads = 2});
                for (int64_t m = 0; m < M * B; ++m) {
                    std::memcpy(x1->data, xf.data() + m * K, static_cast<size_t>(K) * sizeof(float));
                    be->compute(g1);
                    std::memcpy(alone.data() + m * N, y1->data, static_cast<size_t>(N) * sizeof(float));
                }
            }
            for (int nth = 1; nth <= 3; ++nth) {
                auto be = toyllm::make_backend("cpu", {.n_threads = nth});
                be->compute(g);
                EXPECT_EQ(std::memcmp(y->data, alone.data(), alone.size() * sizeof(float)), 0) << nth << " threads";
            }
        }
    });
}

TEST(CpuFeatures, SimdEnvironmentVariable) {
    {
        ScopedSimd s("bogus");
        EXPECT_THROW(toyllm::cpu::reset_cpu_features_for_testing(), toyllm::Error);
        EXPECT_THROW(toyllm::cpu::cpu_features(), toyllm::Error);
    }
    {
        ScopedSimd s("scalar");
        EXPECT_EQ(toyllm::cpu::reset_cpu_features_for_testing().level, SimdLevel::SCALAR);
        EXPECT_EQ(toyllm::cpu::cpu_features().level, SimdLevel::SCALAR);
    }
    const auto levels = available_levels();
    if (levels.back() != SimdLevel::AVX512) {
        ScopedSimd s("avx512");
        EXPECT_THROW(toyllm::cpu::reset_cpu_features_for_testing(), toyllm::Error);
    }
    ScopedSimd none(nullptr);  // whatever the caller's TOYLLM_SIMD: the CPU's own level
    const auto & f = toyllm::cpu::reset_cpu_features_for_testing();
    EXPECT_EQ(f.avx2, levels.size() >= 2);
    EXPECT_TRUE(!f.avx512_vnni || f.avx512);
    EXPECT_TRUE(!f.avx512 || f.avx2);
    EXPECT_STREQ(toyllm::cpu::simd_level_name(f.level), toyllm::cpu::simd_level_name(levels.back()));
}

TEST(ThreadPool, EveryThreadRunsOncePerRun) {
    for (int n_threads = 1; n_threads <= 4; ++n_threads) {
        toyllm::cpu::ThreadPool pool(n_threads);
        EXPECT_EQ(pool.size(), n_threads);
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n_threads));
        std::atomic<int> bad_nth{0};
        for (int run = 0; run < 1000; ++run) {
            for (auto & s : seen) s.store(0, std::memory_order_relaxed);
            pool.run([&](int ith, int nth) {
                if (nth != n_threads || ith < 0 || ith >= nth) {
                    bad_nth.fetch_add(1);
                    return;
                }
                seen[static_cast<size_t>(ith)].fetch_add(1, std::memory_order_relaxed);
            });
            for (int i = 0; i < n_threads; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1) << "run " << run;
        }
        EXPECT_EQ(bad_nth.load(), 0);
    }
}

TEST(ThreadPool, WritesOfWorkersAreVisibleAfterRun) {
    // Plain (non-atomic) writes: run() must order them before its return.
    toyllm::cpu::ThreadPool pool(3);
    std::vector<int64_t> out(3 * 1000, 0);
    for (int run = 0; run < 1000; ++run) {
        pool.run([&](int ith, int) { out[static_cast<size_t>(3 * run + ith)] = run + ith; });
    }
    for (int run = 0; run < 1000; ++run) {
        for (int ith = 0; ith < 3; ++ith) ASSERT_EQ(out[static_cast<size_t>(3 * run + ith)], run + ith);
    }
}

// Each round every thread writes its slot, waits, then reads every slot of the round:
// all writes before the barrier are visible after it, round after round.
TEST(ThreadPool, SpinBarrierOrdersEveryRound) {
    for (int n_threads = 1; n_threads <= 4; ++n_threads) {
        toyllm::cpu::ThreadPool pool(n_threads);
        toyllm::cpu::SpinBarrier barrier(n_threads);
        std::vector<int> slots(2 * static_cast<size_t>(n_threads), -1);
        std::atomic<int> wrong{0};
        pool.run([&](int ith, int nth) {
            for (int round = 0; round < 3000; ++round) {
                int * row = slots.data() + (round % 2) * nth;
                row[ith] = round;
                barrier.wait();
                for (int j = 0; j < nth; ++j) {
                    if (row[j] != round) wrong.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
        EXPECT_EQ(wrong.load(), 0) << n_threads << " threads";
    }
}

// A kernel that throws on one thread while the others go on: the graph's compute
// rethrows the error, and the same backend computes the next graph normally.
TEST(ThreadPool, KernelErrorsLeaveTheBackendUsable) {
    toyllm::Context ctx;
    toyllm::Tensor * table = ctx.new_tensor(DType::F32, {4, 3}, "table");
    toyllm::Tensor * ids = ctx.new_tensor(DType::I32, {5}, "ids");
    ctx.alloc(table);
    ctx.alloc(ids);
    for (int i = 0; i < 12; ++i) table->data_as<float>()[i] = static_cast<float>(i);
    toyllm::Tensor * rows = toyllm::scale(ctx, toyllm::get_rows(ctx, table, ids), 2.0f);
    toyllm::Graph g;
    g.build_forward(rows);
    auto be = toyllm::make_backend("cpu", {.n_threads = 3});
    const int32_t bad[] = {0, 1, 2, 1, 7};  // 7: outside the table, met by the last thread
    std::memcpy(ids->data, bad, sizeof(bad));
    EXPECT_THROW(be->compute(g), toyllm::Error);
    const int32_t good[] = {2, 0, 1, 2, 0};
    std::memcpy(ids->data, good, sizeof(good));
    be->compute(g);
    for (int t = 0; t < 5; ++t) {
        for (int i = 0; i < 4; ++i) EXPECT_EQ(rows->data_as<float>()[t * 4 + i], 2.0f * static_cast<float>(good[t] * 4 + i));
    }
}

TEST(ThreadPool, SplitRowsCoversEachRowOnce) {
    for (int64_t n = 0; n <= 70; ++n) {
        for (int nth = 1; nth <= 9; ++nth) {
            int64_t next = 0;
            for (int ith = 0; ith < nth; ++ith) {
                const auto r = toyllm::cpu::split_rows(n, ith, nth);
                ASSERT_EQ(r.begin, next) << "n=" << n << " nth=" << nth << " ith=" << ith;
                ASSERT_LE(r.begin, r.end);
                next = r.end;
            }
            ASSERT_EQ(next, n) << "n=" << n << " nth=" << nth;
        }
    }
}

TEST(ThreadPool, ExceptionsPropagateToTheCaller) {
    for (int n_threads = 1; n_threads <= 4; ++n_threads) {
        toyllm::cpu::ThreadPool pool(n_threads);
        const int thrower = n_threads - 1;  // a worker when there is one, else the caller
        try {
            pool.run([&](int ith, int) {
                if (ith == thrower) throw std::runtime_error("boom " + std::to_string(ith));
            });
            ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error & e) {
            EXPECT_EQ(std::string(e.what()), "boom " + std::to_string(thrower));
        }
        // Every thread throwing: one of them comes out, the pool stays usable.
        EXPECT_THROW(pool.run([](int, int) { throw toyllm::Error("all"); }), toyllm::Error);
        std::atomic<int> count{0};
        pool.run([&](int, int) { count.fetch_add(1); });
        EXPECT_EQ(count.load(), n_threads);
    }
    EXPECT_THROW(toyllm::cpu::ThreadPool(0), toyllm::Error);
}

// The vector exp of softmax and attention against std::exp in double: within 2 ulp
// (relative 2.4e-7) down to exp(-87) (AVX2 stops at the smallest normal float there, so
// below it only an absolute 1.2e-38 is promised), every tail length, -inf giving 0.
TEST(VecMath, ExpShiftedSumMatchesStdExp) {
    for_each_level([](SimdLevel) {
        std::mt19937 rng(17);
        std::uniform_real_distribution<float> u(-110.0f, 5.0f);
        for (int64_t n : {0, 1, 7, 8, 15, 16, 17, 33, 1000}) {
            SCOPED_TRACE("n " + std::to_string(n));
            std::vector<float> x(static_cast<size_t>(n));
            for (float & v : x) v = u(rng);
            if (n > 3) x[2] = -std::numeric_limits<float>::infinity();
            const float m = n > 0 ? *std::max_element(x.begin(), x.end()) : 0.0f;  // as softmax does
            std::vector<float> y = x;
            const float sum = toyllm::cpu::exp_shifted_sum(y.data(), n, m);
            double ref_sum = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                const double ref = std::exp(static_cast<double>(x[static_cast<size_t>(i)] - m));  // the float difference
                ref_sum += ref;
                EXPECT_NEAR(y[static_cast<size_t>(i)], ref, 2.4e-7 * ref + 1.2e-38) << "x " << x[static_cast<size_t>(i)] << " m " << m;
            }
            EXPECT_NEAR(sum, ref_sum, 1e-6 * ref_sum + 1e-30);
        }
    });
}

// SiLU, SwiGLU and the SiLU gradient against double formulas at every level and tail
// length, over the range where exp(-x) under- and overflows.
TEST(VecMath, SiluFamilyMatchesDouble) {
    for_each_level([](SimdLevel) {
        std::mt19937 rng(29);
        std::uniform_real_distribution<float> u(-95.0f, 95.0f), w(-2.0f, 2.0f);
        for (int64_t n : {1, 7, 8, 9, 16, 31, 300}) {
            SCOPED_TRACE("n " + std::to_string(n));
            std::vector<float> x(static_cast<size_t>(n)), b(static_cast<size_t>(n));
            for (size_t i = 0; i < x.size(); ++i) {
                x[i] = i % 3 == 0 ? w(rng) : u(rng);
                b[i] = w(rng);
            }
            std::vector<float> silu(x.size()), swiglu(x.size()), back(x.size());
            toyllm::cpu::silu_mul(x.data(), nullptr, silu.data(), n);
            toyllm::cpu::silu_mul(x.data(), b.data(), swiglu.data(), n);
            toyllm::cpu::silu_back(x.data(), b.data(), back.data(), n);
            for (size_t i = 0; i < x.size(); ++i) {
                const double xd = x[i], s = 1.0 / (1.0 + std::exp(-xd));
                const double want_back = b[i] * s * (1.0 + xd * (1.0 - s));
                EXPECT_NEAR(silu[i], xd * s, 1e-6 * std::fabs(xd * s) + 1e-30) << "x " << x[i];
                EXPECT_NEAR(swiglu[i], xd * s * b[i], 1e-6 * std::fabs(xd * s * b[i]) + 1e-30) << "x " << x[i];
                EXPECT_NEAR(back[i], want_back, 2e-6 * (std::fabs(want_back) + std::fabs(b[i]) * s) + 1e-30) << "x " << x[i];
            }
        }
    });
}

// The benchmarks' triad at every level and tail length: a single rounding of s * c + b,
// bit for bit (a multiply, then an add, differs in about one value in four here).
TEST(VecMath, TriadIsOneFusedMultiplyAdd) {
    std::mt19937 rng(43);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 1000}) {
        std::vector<float> b(static_cast<size_t>(n)), c(b.size()), want(b.size());
        for (size_t i = 0; i < b.size(); ++i) {
            b[i] = u(rng);
            c[i] = u(rng);
            want[i] = std::fma(0.7f, c[i], b[i]);
        }
        for_each_level([&](SimdLevel) {
            SCOPED_TRACE("n " + std::to_string(n));
            std::vector<float> a(b.size() + 1, -1.0f);
            toyllm::cpu::triad(a.data(), b.data(), c.data(), 0.7f, n);
            EXPECT_EQ(std::vector<float>(a.begin(), a.begin() + n), want);
            EXPECT_EQ(a.back(), -1.0f);  // nothing written past n
        });
    }
}

// The read-only stream's sum: every word once, wrapping, at every level and tail length.
TEST(VecMath, SumWordsAddsEveryWordOnce) {
    std::mt19937_64 rng(44);
    for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 32, 33, 1000}) {
        std::vector<uint64_t> a(static_cast<size_t>(n) + 1);
        uint64_t want = 0;
        for (size_t i = 0; i < a.size(); ++i) {
            a[i] = rng();  // large words: the sum wraps
            if (i < static_cast<size_t>(n)) want += a[i];
        }
        for_each_level([&](SimdLevel) {
            SCOPED_TRACE("n " + std::to_string(n));
            EXPECT_EQ(toyllm::cpu::sum_words(a.data(), n), want);  // a[n] is not read into it
        });
    }
}

// The f16 row operations at every level and tail length: the dot product (also over rows
// at a stride, scaled) is the exact sum of the products of halves rounded once to float
// (halves in [-2, 2] keep it exact in double); mad and scale round fma(x, v, y) and
// y * v to half, bit for bit.
TEST(VecMath, HalfRowOpsMatchExactArithmetic) {
    std::mt19937 rng(41);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    auto halves = [&](int64_t n) {
        std::vector<uint16_t> h(static_cast<size_t>(n));
        for (uint16_t & x : h) x = toyllm::fp32_to_fp16(u(rng));
        return h;
    };
    // fma and a multiply-then-add differ after rounding to half once in ~2^13 values: the
    // long row makes that difference show.
    for (int64_t n : {1, 7, 8, 9, 16, 64, 67, 1 << 17}) {
        const auto a = halves(n), b = halves(n), y0 = halves(n);
        const float v = u(rng);
        const auto exact_dot = [&](const std::vector<uint16_t> & c) {
            long double sum = 0;
            for (size_t i = 0; i < a.size(); ++i) sum += static_cast<long double>(toyllm::fp16_to_fp32(a[i])) * toyllm::fp16_to_fp32(c[i]);
            return static_cast<float>(sum);
        };
        // a against the rows b, y0 and a, n + 3 halves apart.
        const float exact[3] = {exact_dot(b), exact_dot(y0), exact_dot(a)};
        std::vector<uint16_t> rows(static_cast<size_t>(3 * (n + 3)));
        std::copy(b.begin(), b.end(), rows.begin());
        std::copy(y0.begin(), y0.end(), rows.begin() + n + 3);
        std::copy(a.begin(), a.end(), rows.begin() + 2 * (n + 3));
        std::vector<uint16_t> want_mad(y0), want_scale(y0);
        for (size_t i = 0; i < y0.size(); ++i) {
            want_mad[i] = toyllm::fp32_to_fp16(std::fma(toyllm::fp16_to_fp32(a[i]), v, toyllm::fp16_to_fp32(y0[i])));
            want_scale[i] = toyllm::fp32_to_fp16(toyllm::fp16_to_fp32(y0[i]) * v);
        }
        for_each_level([&](SimdLevel) {
            SCOPED_TRACE("n " + std::to_string(n));
            const toyllm::cpu::kernels::HalfKernels & hk = toyllm::cpu::half_kernels();
            if (n < 1000) {
                float one;
                hk.dot_f16_rows(a.data(), b.data(), n, 1, n, 1.0f, &one);
                EXPECT_EQ(one, exact[0]);
                float out[3];
                hk.dot_f16_rows(a.data(), rows.data(), n + 3, 3, n, 0.3f, out);
                for (int j = 0; j < 3; ++j) EXPECT_EQ(out[j], exact[j] * 0.3f) << "row " << j;
            }
            std::vector<uint16_t> y = y0;
            hk.mad_f16(y.data(), a.data(), v, n);
            EXPECT_EQ(y, want_mad);
            y = y0;
            hk.scale_f16(y.data(), v, n);
            EXPECT_EQ(y, want_scale);
        });
    }
}

}  // namespace
