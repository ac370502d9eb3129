// Weights packed in bands of 16 rows (backend/cpu/repack.h) and their matmul kernels: the
// layout against the description in repack.h, every output against a double-precision
// sum over the reference dequantization of both operands (the weight as quant.h
// dequantizes it, the activation as quantize_row(Q8_0) rounds it, or for k-quants the
// Q8_K row of vec_dot_for(type), tested against ggml's formula in test_vec_dot; f32,
// f16 and bf16 take the activation as it is), the plain types' order of summation, the
// same bits whatever the number of activation rows, the band ranges or the thread count,
// and the backend's use of them for constant weights only.
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/vec_dot.h"
#include "simd_testing.h"
#include "testing.h"

#include "toyllm/graph.h"
#include "toyllm/half.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using toyllm::DType;
using toyllm::testing::random_floats;
namespace cpu = toyllm::cpu;

// Runs body(type) for each type at every SIMD level of this CPU with packed kernels for
// it (AVX-512 VNNI: all seven types; AVX2: Q8_0 and Q4_0).
template <class Body>
void for_each_packed(std::initializer_list<DType> types, const Body & body) {
    int runs = 0;
    toyllm::testing::for_each_level([&](cpu::SimdLevel) {
        for (DType t : types) {
            if (!cpu::packed_kernel_available(t)) continue;
            SCOPED_TRACE(std::string(toyllm::dtype_name(t)));
            body(t);
            ++runs;
        }
    });
    if (runs == 0) GTEST_SKIP() << "no packed kernels on this CPU (they need AVX2 or AVX-512 VNNI)";
}

constexpr std::initializer_list<DType> kPackedTypes = {DType::F32, DType::F16, DType::BF16, DType::Q8_0,
                                                       DType::Q4_0, DType::Q4_K, DType::Q6_K};

bool is_plain(DType t) { return toyllm::dtype_info(t).block_size == 1; }

struct Matrix {
    DType type;
    int64_t n_rows, n;
    std::vector<uint8_t> q;    // GGUF rows
    std::vector<float> deq;    // their reference dequantization
    std::vector<uint8_t> packed;

    Matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) : type(t), n_rows(rows), n(cols) {
        const auto f = random_floats(rows * cols, seed);
        q.resize(toyllm::dtype_row_bytes(t, cols) * static_cast<size_t>(rows));
        toyllm::quantize_row(t, f.data(), q.data(), rows * cols);
        deq.resize(f.size());
        toyllm::dequantize_row(t, q.data(), deq.data(), rows * cols);
        packed.resize(cpu::packed_bytes(t, rows, cols));
        cpu::pack_bands(t, q.data(), row_bytes(), rows, cols, 0, cpu::packed_bands(rows), packed.data());
    }
    int64_t row_bytes() const { return static_cast<int64_t>(toyllm::dtype_row_bytes(type, n)); }
};

struct Activations {
    std::vector<uint8_t> packed;  // packed_x_from_float rows
    std::vector<float> deq;       // the Q8_0 rounding of each row, dequantized
    int64_t row_bytes;
};

Activations make_activations(DType w, int64_t n, int64_t m, uint32_t seed) {
    Activations a;
    a.row_bytes = cpu::packed_x_row_bytes(w, n);
    const auto x = random_floats(n * m, seed, 3.0f);
    a.packed.resize(static_cast<size_t>(a.row_bytes * m));
    a.deq.resize(x.size());
    std::vector<uint8_t> q8(is_plain(w) ? 0 : toyllm::dtype_row_bytes(DType::Q8_0, n));
    std::vector<cpu::BlockQ8_K> q8k(static_cast<size_t>(n / 256 + 1));
    for (int64_t c = 0; c < m; ++c) {
        const float * xc = x.data() + c * n;
        float * deq = a.deq.data() + c * n;
        cpu::packed_x_from_float(w, xc, a.packed.data() + c * a.row_bytes, n);
        if (is_plain(w)) {
            std::copy(xc, xc + n, deq);
        } else if (w == DType::Q4_K || w == DType::Q6_K) {
            cpu::vec_dot_for(w).from_float(xc, q8k.data(), n);
            for (int64_t i = 0; i < n; ++i) deq[i] = q8k[static_cast<size_t>(i / 256)].d * q8k[static_cast<size_t>(i / 256)].qs[i % 256];
        } else {
            toyllm::quantize_row(DType::Q8_0, xc, q8.data(), n);
            toyllm::dequantize_row(DType::Q8_0, q8.data(), deq, n);
        }
    }
    return a;
}

// y[c * ldy + r] for all bands, rows past n_rows left as they were.
std::vector<float> run_packed(const Matrix & w, const Activations & x, int64_t m, int64_t ldy, int64_t band_begin,
                              int64_t band_end, std::vector<float> y) {
    cpu::packed_matmul({.w_type = w.type, .w = w.packed.data(), .n_rows = w.n_rows, .n = w.n, .x = x.packed.data(),
                        .x_row_bytes = x.row_bytes, .n_cols = m, .y = y.data(), .ldy = ldy},
                       band_begin, band_end);
    return y;
}

TEST(Repack, LayoutIsTheOneRepackHDescribes) {
    for (DType t : {DType::Q8_0, DType::Q4_0}) {  // Q4_K: Q4_KLayoutIsTheOneRepackHDescribes
        SCOPED_TRACE(std::string(toyllm::dtype_name(t)));
        const Matrix w(t, 21, 64, 3);  // two bands, the second with 5 rows and 11 of padding
        const int64_t nb = 2, block_bytes = t == DType::Q4_0 ? 288 : 544, runs = t == DType::Q4_0 ? 4 : 8;
        ASSERT_EQ(w.packed.size(), static_cast<size_t>(2 * nb * block_bytes));
        const size_t block_q = t == DType::Q4_0 ? 18 : 34;
        for (int64_t band = 0; band < 2; ++band) {
            for (int64_t b = 0; b < nb; ++b) {
                const uint8_t * blk = w.packed.data() + (band * nb + b) * block_bytes;
                for (int64_t l = 0; l < 16; ++l) {
                    const int64_t r = 16 * band + l;
                    uint16_t d;
                    std::memcpy(&d, blk + 2 * l, 2);
                    const uint8_t * src = w.q.data() + r * w.row_bytes() + b * static_cast<int64_t>(block_q);
                    if (r >= w.n_rows) {
                        EXPECT_EQ(d, 0);
                    } else {
                        uint16_t want;
                        std::memcpy(&want, src, 2);
                        EXPECT_EQ(d, want) << "row " << r << " block " << b;
                    }
                    for (int64_t k = 0; k < runs; ++k) {
                        for (int i = 0; i < 4; ++i) {
                            const uint8_t got = blk[32 + 64 * k + 4 * l + i];
                            // Padding is zero-valued: nibble 8 (Q4_0), 128 (Q8_0).
                            uint8_t want = t == DType::Q4_0 ? 0x88 : 0x80;
                            if (r < w.n_rows) want = t == DType::Q4_0 ? src[2 + 4 * k + i] : static_cast<uint8_t>(src[2 + 4 * k + i] + 128);
                            EXPECT_EQ(got, want) << "row " << r << " block " << b << " run " << k;
                        }
                    }
                }
            }
        }
    }
}

TEST(Repack, Q4_KLayoutIsTheOneRepackHDescribes) {
    const Matrix w(DType::Q4_K, 19, 512, 4);  // two bands, the second with 3 rows
    const int64_t nb = 2, block_bytes = 2368;
    ASSERT_EQ(w.packed.size(), static_cast<size_t>(2 * nb * block_bytes));
    for (int64_t band = 0; band < 2; ++band) {
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t * blk = w.packed.data() + (band * nb + b) * block_bytes;
            for (int64_t l = 0; l < 16; ++l) {
                const int64_t r = 16 * band + l;
                const toyllm::BlockQ4_K * src =
                    r < w.n_rows ? reinterpret_cast<const toyllm::BlockQ4_K *>(w.q.data() + r * w.row_bytes()) + b : nullptr;
                uint16_t d, dmin;
                std::memcpy(&d, blk + 2 * l, 2);
                std::memcpy(&dmin, blk + 32 + 2 * l, 2);
                EXPECT_EQ(d, src ? src->d : 0) << "row " << r;
                EXPECT_EQ(dmin, src ? src->dmin : 0) << "row " << r;
                for (int j = 0; j < 8; ++j) {
                    // ggml's get_scale_min_k4, written out.
                    int sc = 0, m = 0;
                    if (src) {
                        const uint8_t * q = src->scales;
                        sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
                        m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
                    }
                    EXPECT_EQ(blk[64 + 16 * j + l], sc) << "row " << r << " sub-block " << j;
                    EXPECT_EQ(blk[192 + 16 * j + l], m) << "row " << r << " sub-block " << j;
                }
                for (int run = 0; run < 32; ++run) {
                    for (int i = 0; i < 4; ++i) {
                        EXPECT_EQ(blk[320 + 64 * run + 4 * l + i], src ? src->qs[4 * run + i] : 0) << "row " << r << " run " << run;
                    }
                }
            }
        }
    }
}

TEST(Repack, Q6_KLayoutIsTheOneRepackHDescribes) {
    const Matrix w(DType::Q6_K, 18, 256, 8);  // two bands, the second with 2 rows
    const int64_t block_bytes = 3360;
    ASSERT_EQ(w.packed.size(), static_cast<size_t>(2 * block_bytes));
    for (int64_t band = 0; band < 2; ++band) {
        const uint8_t * blk = w.packed.data() + band * block_bytes;
        for (int64_t l = 0; l < 16; ++l) {
            const int64_t r = 16 * band + l;
            const auto * src = r < w.n_rows ? reinterpret_cast<const toyllm::BlockQ6_K *>(w.q.data() + r * w.row_bytes()) : nullptr;
            uint16_t d;
            std::memcpy(&d, blk + 2 * l, 2);
            EXPECT_EQ(d, src ? src->d : 0) << "row " << r;
            for (int j = 0; j < 16; ++j) EXPECT_EQ(static_cast<int8_t>(blk[32 + 16 * j + l]), src ? src->scales[j] : 0);
            for (int h = 0; h < 2; ++h) {
                for (int g = 0; g < 8; ++g) {
                    const uint8_t * run = blk + 288 + 64 * (24 * h + 3 * g) + 4 * l;
                    for (int i = 0; i < 4; ++i) {
                        EXPECT_EQ(run[i], src ? src->ql[64 * h + 4 * g + i] : 0);
                        EXPECT_EQ(run[64 + i], src ? src->ql[64 * h + 32 + 4 * g + i] : 0);
                        EXPECT_EQ(run[128 + i], src ? src->qh[32 * h + 4 * g + i] : 0);
                    }
                }
            }
        }
    }
}

// The block dots are exact integers and the cross-block sum is one fma chain per output
// (plain types: four chains), so the result is within a few roundings per block of the
// exact sum: 1e-5 of sum |w x|.
TEST(Repack, MatmulMatchesDequantizedReference) {
    for_each_packed(kPackedTypes, [](DType t) {
        for (int64_t n_rows : {1, 16, 37}) {
            for (int64_t n : {32, 96, 256, 576, 2048, 67}) {
                if (n % toyllm::dtype_info(t).block_size != 0) continue;
                SCOPED_TRACE(std::string(toyllm::dtype_name(t)) + " " + std::to_string(n_rows) + " x " + std::to_string(n));
                const Matrix w(t, n_rows, n, static_cast<uint32_t>(n_rows * 7 + n));
                const int64_t m = 7, ldy = n_rows + 3;
                const Activations x = make_activations(t, n, m, static_cast<uint32_t>(n + 1));
                const float sentinel = -12345.0f;
                const auto y = run_packed(w, x, m, ldy, 0, cpu::packed_bands(n_rows),
                                          std::vector<float>(static_cast<size_t>(ldy * m), sentinel));
                for (int64_t c = 0; c < m; ++c) {
                    for (int64_t r = 0; r < ldy; ++r) {
                        const float got = y[static_cast<size_t>(c * ldy + r)];
                        if (r >= n_rows) {
                            EXPECT_EQ(got, sentinel) << "row " << r << " past the matrix was written";
                            continue;
                        }
                        double sum = 0.0, mag = 0.0;
                        for (int64_t i = 0; i < n; ++i) {
                            const double p = static_cast<double>(w.deq[static_cast<size_t>(r * n + i)]) *
                                             x.deq[static_cast<size_t>(c * n + i)];
                            sum += p;
                            mag += std::fabs(p);
                        }
                        EXPECT_NEAR(got, sum, 1e-5 * mag + 1e-30) << "row " << r << " column " << c;
                    }
                }
            }
        }
    });
}

TEST(Repack, BitsDoNotDependOnColumnsOrBandRanges) {
    for_each_packed(kPackedTypes, [](DType t) {
        const int64_t n_rows = 75, n = toyllm::dtype_info(t).block_size == 256 ? 512 : 576, m = 9, bands = cpu::packed_bands(n_rows);
        const Matrix w(t, n_rows, n, 5);
        const Activations x = make_activations(t, n, m, 6);
        const std::vector<float> zeros(static_cast<size_t>(n_rows * m));
        const auto all = run_packed(w, x, m, n_rows, 0, bands, zeros);
        // Band ranges one by one.
        std::vector<float> split = zeros;
        for (int64_t b = 0; b < bands; ++b) split = run_packed(w, x, m, n_rows, b, b + 1, split);
        EXPECT_EQ(std::memcmp(all.data(), split.data(), all.size() * sizeof(float)), 0);
        // Each column alone.
        for (int64_t c = 0; c < m; ++c) {
            Activations one{.packed = {}, .deq = {}, .row_bytes = x.row_bytes};
            one.packed.assign(x.packed.begin() + c * x.row_bytes, x.packed.begin() + (c + 1) * x.row_bytes);
            const auto y = run_packed(w, one, 1, n_rows, 0, bands, std::vector<float>(static_cast<size_t>(n_rows)));
            EXPECT_EQ(std::memcmp(y.data(), all.data() + c * n_rows, static_cast<size_t>(n_rows) * sizeof(float)), 0)
                << "column " << c;
        }
    });
}

// Through the backend: a constant weight takes the packed path (its results are the
// packed kernel's, not the plain one's), batches and thread counts do not change a bit,
// and a weight whose data pointer moves is packed again.
TEST(Repack, BackendPacksConstantWeights) {
    for_each_packed(kPackedTypes, [](DType t) {
        const int64_t K = toyllm::dtype_info(t).block_size == 256 ? 512 : 576, N = 75, M = 5, B = 2;
        const Matrix w1(t, N, K, 21), w2(t, N, K, 22);
        const Activations xs = make_activations(t, K, M * B, 23);
        const auto xf = random_floats(K * M * B, 23, 3.0f);  // the same floats make_activations drew

        toyllm::Context ctx;
        toyllm::Tensor * w = ctx.new_tensor(t, {K, N}, "w");
        toyllm::Tensor * x = ctx.new_tensor(DType::F32, {K, M, B}, "x");
        ctx.alloc(x);
        std::vector<uint8_t> q1 = w1.q, q2 = w2.q;
        ctx.set_external(w, q1.data(), nullptr);
        w->flags |= toyllm::TENSOR_CONSTANT;
        std::memcpy(x->data, xf.data(), xf.size() * sizeof(float));
        toyllm::Tensor * y = toyllm::matmul(ctx, w, x);
        toyllm::Graph g;
        g.build_forward(y);
        ASSERT_TRUE(cpu::matmul_uses_packed(y));

        const auto want1 = run_packed(w1, xs, M * B, N, 0, cpu::packed_bands(N), std::vector<float>(static_cast<size_t>(N * M * B)));
        const auto want2 = run_packed(w2, xs, M * B, N, 0, cpu::packed_bands(N), std::vector<float>(static_cast<size_t>(N * M * B)));
        for (int nth = 1; nth <= 3; ++nth) {
            auto be = toyllm::make_backend("cpu", {.n_threads = nth});
            w->data = q1.data();
            be->compute(g);
            EXPECT_EQ(std::memcmp(y->data, want1.data(), want1.size() * sizeof(float)), 0) << nth << " threads";
            w->data = q2.data();
            be->compute(g);
            EXPECT_EQ(std::memcmp(y->data, want2.data(), want2.size() * sizeof(float)), 0) << nth << " threads, moved";
        }
        // Without the flag the plain kernels run: close to the packed result, other bits.
        w->flags &= ~toyllm::TENSOR_CONSTANT;
        EXPECT_FALSE(cpu::matmul_uses_packed(y));
        auto be = toyllm::make_backend("cpu", {.n_threads = 2});
        be->compute(g);
        const auto * got = static_cast<const float *>(y->data);
        for (size_t i = 0; i < want2.size(); ++i) EXPECT_NEAR(got[i], want2[i], 1e-3 * (1.0 + std::fabs(want2[i])));
    });
}

// Packed products of one activation (Q, K and V) run as one pass over their bands, split
// between the threads as one range: each output has the bits of its product run alone.
TEST(Repack, ProductsOfOneActivationRunAsOne) {
    for_each_packed(kPackedTypes, [](DType t) {
        const int64_t K = toyllm::dtype_info(t).block_size == 256 ? 512 : 576, M = 3;
        const std::vector<int64_t> rows = {75, 20, 33};
        std::vector<Matrix> ws;
        for (size_t i = 0; i < rows.size(); ++i) ws.emplace_back(t, rows[i], K, static_cast<uint32_t>(40 + i));
        const auto xf = random_floats(K * M, 44, 3.0f);
        toyllm::Context ctx;
        toyllm::Tensor * x0 = ctx.new_tensor(DType::F32, {K, M}, "x0");
        ctx.alloc(x0);
        std::memcpy(x0->data, xf.data(), xf.size() * sizeof(float));
        toyllm::Tensor * x = toyllm::scale(ctx, x0, 1.0f);
        std::vector<toyllm::Tensor *> ys;
        std::vector<toyllm::Graph> alone(rows.size());
        toyllm::Graph all;
        for (size_t i = 0; i < rows.size(); ++i) {
            toyllm::Tensor * w = ctx.new_tensor(t, {K, rows[i]}, "w" + std::to_string(i));
            ctx.set_external(w, ws[i].q.data(), nullptr);
            w->flags |= toyllm::TENSOR_CONSTANT;
            ys.push_back(toyllm::matmul(ctx, w, x));
            ys.back()->flags |= toyllm::TENSOR_OUTPUT;
            all.build_forward(ys.back());
            alone[i].build_forward(toyllm::matmul(ctx, w, x));
        }
        std::vector<std::vector<float>> want;
        for (size_t i = 0; i < rows.size(); ++i) {
            toyllm::make_backend("cpu", {.n_threads = 2})->compute(alone[i]);
            const auto * y = static_cast<const float *>(alone[i].nodes().back()->data);
            want.emplace_back(y, y + rows[i] * M);
        }
        for (int nth = 1; nth <= 3; ++nth) {
            toyllm::make_backend("cpu", {.n_threads = nth})->compute(all);
            for (size_t i = 0; i < rows.size(); ++i) {
                EXPECT_EQ(std::memcmp(ys[i]->data, want[i].data(), want[i].size() * sizeof(float)), 0) << "product " << i << ", " << nth << " threads";
            }
        }
    });
}

TEST(Repack, OnlyConstantMatricesArePacked) {
    if (!cpu::packed_kernel_available(DType::Q4_0)) GTEST_SKIP() << "no packed kernels on this CPU (they need AVX2 or AVX-512 VNNI)";
    toyllm::Context ctx;
    toyllm::Tensor * w = ctx.new_tensor(DType::Q4_0, {64, 8}, "w");
    toyllm::Tensor * wf = ctx.new_tensor(DType::F32, {64, 8}, "wf");
    toyllm::Tensor * x = ctx.new_tensor(DType::F32, {64, 2}, "x");
    for (toyllm::Tensor * t : {w, wf, x}) ctx.alloc(t);
    EXPECT_FALSE(cpu::matmul_uses_packed(toyllm::matmul(ctx, w, x)));  // not flagged constant
    w->flags |= toyllm::TENSOR_CONSTANT;
    wf->flags |= toyllm::TENSOR_CONSTANT;
    EXPECT_TRUE(cpu::matmul_uses_packed(toyllm::matmul(ctx, w, x)));
    EXPECT_EQ(cpu::matmul_uses_packed(toyllm::matmul(ctx, wf, x)), cpu::packed_kernel_available(DType::F32));
    ctx.set_param(wf);
    EXPECT_EQ(wf->flags & toyllm::TENSOR_CONSTANT, 0u);  // a parameter is written by its optimizer
    EXPECT_FALSE(cpu::matmul_uses_packed(toyllm::matmul(ctx, wf, x)));
}

// F32, F16 and BF16 bands: value k of the band's 16 rows at k * 16 + row, zeros past the
// matrix.
TEST(Repack, PlainLayoutIsTheOneRepackHDescribes) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) {
        SCOPED_TRACE(std::string(toyllm::dtype_name(t)));
        const int64_t n = 37, elem = static_cast<int64_t>(toyllm::dtype_info(t).type_size);
        const Matrix w(t, 21, n, 4);
        ASSERT_EQ(w.packed.size(), static_cast<size_t>(2 * 16 * n * elem));
        for (int64_t r = 0; r < 32; ++r) {
            for (int64_t k = 0; k < n; ++k) {
                const uint8_t * got = w.packed.data() + ((r / 16 * n + k) * 16 + r % 16) * elem;
                std::vector<uint8_t> want(static_cast<size_t>(elem), 0);
                if (r < w.n_rows) std::memcpy(want.data(), w.q.data() + r * w.row_bytes() + k * elem, static_cast<size_t>(elem));
                EXPECT_EQ(std::memcmp(got, want.data(), static_cast<size_t>(elem)), 0) << "row " << r << " value " << k;
            }
        }
    }
}

// The order repack.h promises for plain bands, written out with std::fma: chain j takes
// the values k = 4i + j, the last n % 4 values go to chains 0, 1, 2, and
// y = (chain 0 + chain 1) + (chain 2 + chain 3). The kernels give exactly these bits.
TEST(Repack, PlainBandsSumInFourChains) {
    for_each_packed({DType::F32, DType::F16, DType::BF16}, [](DType t) {
        for (int64_t n : {1, 2, 3, 4, 5, 7, 64, 67, 576}) {
            SCOPED_TRACE(std::to_string(n) + " values");
            const int64_t n_rows = 19, m = 5;
            const Matrix w(t, n_rows, n, static_cast<uint32_t>(n + 40));
            const Activations x = make_activations(t, n, m, static_cast<uint32_t>(n + 41));
            const auto y = run_packed(w, x, m, n_rows, 0, cpu::packed_bands(n_rows), std::vector<float>(static_cast<size_t>(n_rows * m)));
            const int64_t n4 = n / 4 * 4;
            for (int64_t c = 0; c < m; ++c) {
                for (int64_t r = 0; r < n_rows; ++r) {
                    float chain[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    for (int64_t k = 0; k < n; ++k) {
                        const int64_t j = k < n4 ? k % 4 : k - n4;
                        chain[j] = std::fma(w.deq[static_cast<size_t>(r * n + k)], x.deq[static_cast<size_t>(c * n + k)], chain[j]);
                    }
                    const float want = (chain[0] + chain[1]) + (chain[2] + chain[3]);
                    const float got = y[static_cast<size_t>(c * n_rows + r)];
                    EXPECT_EQ(std::memcmp(&got, &want, sizeof got), 0) << "row " << r << " column " << c << ": " << got << " vs " << want;
                }
            }
        }
    });
}

}  // namespace
