// CUDA backend parity (after ggml's test-backend-ops): every op on small graphs with odd
// sizes and non-contiguous views, built twice from the same seed and run on the CPU
// backend and on the CUDA backend; the outputs (forward cases) or the loss and every
// parameter's gradient (backward cases: the *_BACK ops, the transposed matmul, acc,
// sum_to) are compared by normalized error  max|cuda - cpu| / max(max|cpu|, 1e-6).
// Then stories260K: greedy tokens on CUDA equal the CPU's.
//
//   what                                   tolerance  why
//   f32 ops, f16/bf16 matmul               1e-5       float rounding in other summation
//                                                     orders (both keep activations f32)
//   quantized matmul (forward)             2e-2       the CPU quantizes the activation row
//                                                     to 8 bits (Q8_0 / Q8_K), the GPU
//                                                     kernels multiply by f32 activations
//   backward cases                         1e-4       a few f32 ops chained, sums of ~100
//   stories260K logits, f32 / q8_0         1e-4 / 5e-2  five layers; q8_0: the activation
//                                                     rounding of the CPU's quantized matmuls
//
// Without a GPU every test but the error message one is skipped, saying why.
#include "model_testing.h"

#include "toyllm/graph.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"
#include "toyllm/session.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace toyllm;
using Ne = std::array<int64_t, 4>;

constexpr double kTolF32 = 1e-5;
constexpr double kTolQuant = 2e-2;
constexpr double kTolGrad = 1e-4;

// The CUDA backend, or nullptr with the reason in `why`.
std::unique_ptr<Backend> try_cuda(std::string & why) {
    try {
        return make_backend("cuda", {});
    } catch (const Error & e) {
        why = e.what();
        return nullptr;
    }
}

#define REQUIRE_CUDA(var)                                          \
    std::string var##_why;                                         \
    std::unique_ptr<Backend> var = try_cuda(var##_why);            \
    if (!var) GTEST_SKIP() << "no CUDA device: " << var##_why

// Random leaves; the same seed gives the same values in every context.
struct Maker {
    Context & ctx;
    std::mt19937 rng;

    // {7, 5} means [7, 5, 1, 1]: the dims left out of a braced list are 1.
    static Ne dims(Ne ne) {
        for (int64_t & n : ne) n = n == 0 ? 1 : n;
        return ne;
    }
    Tensor * f32(Ne ne, float scale = 1.0f) {
        Tensor * t = ctx.new_tensor(DType::F32, dims(ne));
        ctx.alloc(t);
        std::normal_distribution<float> d(0.0f, scale);
        for (int64_t i = 0; i < t->n_elements(); ++i) t->data_as<float>()[i] = d(rng);
        return t;
    }
    Tensor * param(Ne ne, float scale = 1.0f) {
        Tensor * t = f32(ne, scale);
        ctx.set_param(t);
        return t;
    }
    // Random values stored in type t (quantized row by row).
    Tensor * typed(DType type, Ne ne) {
        ne = dims(ne);
        Tensor * t = ctx.new_tensor(type, ne);
        ctx.alloc(t);
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> row(static_cast<size_t>(ne[0]));
        const size_t row_bytes = dtype_row_bytes(type, ne[0]);
        for (int64_t r = 0; r < t->n_rows(); ++r) {
            for (float & x : row) x = d(rng);
            quantize_row(type, row.data(), static_cast<uint8_t *>(t->data) + static_cast<size_t>(r) * row_bytes, ne[0]);
        }
        return t;
    }
    Tensor * ids(Ne ne, int32_t lo, int32_t hi) {
        Tensor * t = ctx.new_tensor(DType::I32, dims(ne));
        ctx.alloc(t);
        t->flags |= TENSOR_INPUT;
        std::uniform_int_distribution<int32_t> d(lo, hi);
        for (int64_t i = 0; i < t->n_elements(); ++i) t->data_as<int32_t>()[i] = d(rng);
        return t;
    }
    Tensor * shape(Ne ne) { return ctx.new_tensor(DType::F32, dims(ne)); }  // for sum_to / repeat
};

// Forward: the tensors to compare. Backward: {loss}; the params' grads are compared too.
using Build = std::function<std::vector<Tensor *>(Maker &)>;

enum class Mode {
    FORWARD,     // compare the returned tensors
    BACKWARD,    // compare the loss and every param's gradient
    GRADS_ONLY,  // the gradients only (the loss goes through a quantized forward matmul)
};

std::vector<float> values(const Tensor * t) {
    std::vector<float> out;
    out.reserve(static_cast<size_t>(t->n_elements()));
    const auto * base = static_cast<const uint8_t *>(t->data);
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) {
                    float x;
                    std::memcpy(&x, base + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3], sizeof x);
                    out.push_back(x);
                }
    return out;
}

double normalized_error(const std::vector<float> & want, const std::vector<float> & got) {
    if (want.size() != got.size()) return INFINITY;
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (want[i] == got[i]) continue;  // equal infinities included
        if (!std::isfinite(want[i]) || !std::isfinite(got[i])) return INFINITY;
        max_diff = std::max(max_diff, std::abs(static_cast<double>(want[i]) - got[i]));
    }
    for (float x : want) {
        if (std::isfinite(x)) max_ref = std::max(max_ref, std::abs(static_cast<double>(x)));
    }
    return max_diff / std::max(max_ref, 1e-6);
}

// Builds the case in a fresh context, computes it `n_runs` times on `be`, returns the values.
std::vector<std::vector<float>> run_on(Backend & be, const Build & build, bool backward, int n_runs) {
    Context ctx;
    Maker m{ctx, std::mt19937(1234)};
    std::vector<Tensor *> outs = build(m);
    Graph g;
    if (backward) {
        set_output(outs[0]);  // the loss: read by the host like every output
        g.build_backward(ctx, outs[0]);
        for (Tensor * p : g.params()) outs.push_back(p->grad);
    } else {
        for (Tensor * t : outs) {
            set_output(t);
            g.build_forward(t);
        }
    }
    for (int i = 0; i < n_runs; ++i) be.compute(g);
    std::vector<std::vector<float>> v;
    for (const Tensor * t : outs) v.push_back(values(t));
    return v;
}

void expect_parity(Backend & cuda, const Build & build, double tol, Mode mode = Mode::FORWARD) {
    const bool backward = mode != Mode::FORWARD;
    auto cpu = make_backend("cpu", {.n_threads = 2});
    // Backward runs twice: the grads accumulate, and the copies of the grads made by the
    // host between computes must reach the device.
    const int n_runs = backward ? 2 : 1;
    const auto want = run_on(*cpu, build, backward, n_runs);
    const auto got = run_on(cuda, build, backward, n_runs);
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = mode == Mode::GRADS_ONLY ? 1 : 0; i < want.size(); ++i) {
        EXPECT_LE(normalized_error(want[i], got[i]), tol) << "output " << i;
    }
    // The same graph twice on the device gives the same bytes.
    if (!backward) {
        const auto again = run_on(cuda, build, backward, 1);
        for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(0, std::memcmp(got[i].data(), again[i].data(), got[i].size() * sizeof(float))) << "output " << i;
    }
}

// loss = sum(y * r) with r random: every element of y gets a distinct gradient.
Tensor * probe(Maker & m, Tensor * y) { return sum(m.ctx, mul(m.ctx, y, m.f32(y->ne))); }

TEST(CudaBackend, NoDeviceErrorIsClear) {
    std::string why;
    auto be = try_cuda(why);
    if (be) {
        EXPECT_STREQ(be->name(), "cuda");
    } else {
        EXPECT_NE(why.find("no CUDA device found (cudaGetDeviceCount: "), std::string::npos) << why;
    }
}

TEST(CudaOps, ContAddMulScale) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.f32({7, 5, 3, 2});
        Tensor * t = m.f32({5, 7});
        return {cont(c, permute(c, x, {1, 2, 0, 3})),
                add(c, m.f32({7, 5, 3}), m.f32({7, 1, 3})),
                add(c, transpose(c, t), m.f32({7, 5})),
                mul(c, m.f32({9, 4, 3}), m.f32({1, 4, 1})),
                scale(c, slice(c, x, {1, 1, 0, 0}, {5, 3, 3, 2}), 0.37f)};
    }, kTolF32);
}

TEST(CudaOps, SumSumToRepeat) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.f32({33, 17, 3});
        return {sum(c, x), mean(c, transpose(c, x)), sum_to(c, m.f32({6, 4, 3}), m.shape({3, 1, 3})),
                repeat(c, m.f32({3, 1, 2}), m.shape({6, 4, 2}))};
    }, kTolF32);
}

TEST(CudaOps, SiluSwigluSoftmax) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.f32({37, 5, 2}, 3.0f);
        return {silu(c, x), swiglu(c, slice(c, x, {0, 1, 0, 0}, {37, 4, 2, 1}), m.f32({37, 4, 2})), softmax(c, x),
                softmax(c, permute(c, x, {1, 0, 2, 3})), softmax(c, m.f32({1029, 3}, 4.0f))};
    }, kTolF32);
}

TEST(CudaOps, RmsNorm) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.f32({37, 5, 2});
        return {rms_norm(c, x, m.f32({37}), 1e-5f), rms_norm(c, transpose(c, x), nullptr, 1e-6f), rms_norm(c, m.f32({2049, 2}), nullptr, 1e-5f)};
    }, kTolF32);
}

TEST(CudaOps, Rope) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.f32({16, 3, 5, 2});
        Tensor * pos = m.ids({5}, 0, 39);
        return {rope(c, x, pos, {.mode = RopeMode::NORMAL, .n_rot = 16}),
                rope(c, x, pos, {.mode = RopeMode::NEOX, .n_rot = 12, .freq_base = 500000.0f}, m.f32({6}, 0.1f)),
                rope(c, permute(c, m.f32({16, 5, 3, 2}), {0, 2, 1, 3}), pos, {.mode = RopeMode::NORMAL, .n_rot = 10, .freq_scale = 0.5f})};
    }, kTolF32);
}

TEST(CudaOps, AttentionAndMask) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * q = m.f32({16, 6, 5, 2});
        Tensor * k = m.f32({16, 2, 9, 2});
        Tensor * v = m.f32({16, 2, 9, 2});
        Tensor * q40 = m.f32({40, 4, 3, 1});
        Tensor * k40 = m.f32({40, 4, 7, 1});
        return {attention(c, q, k, v, {}), attention(c, q, k, v, {.scale = 0.2f, .causal = false}),
                attention(c, q40, k40, m.f32({40, 4, 7, 1}), {}), attention(c, m.f32({64, 4, 1, 1}), m.f32({64, 1, 300, 1}), m.f32({64, 1, 300, 1}), {}),
                causal_mask(c, m.f32({9, 5, 3}), 4)};
    }, kTolF32);
}

TEST(CudaOps, CrossEntropyConcatGetRows) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * targets = m.ids({7, 2}, -1, 32);
        Tensor * a = m.f32({5, 4, 3});
        Tensor * ids = m.ids({6, 2}, 0, 10);
        std::vector<Tensor *> out = {cross_entropy(c, m.f32({33, 7, 2}, 2.0f), targets), concat(c, a, m.f32({2, 4, 3}), 0),
                                     concat(c, a, m.f32({5, 3, 3}), 1), concat(c, transpose(c, a), m.f32({4, 5, 2}), 2),
                                     get_rows(c, m.f32({17, 11}), ids)};
        for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) out.push_back(get_rows(c, m.typed(t, {256, 11}), ids));
        return out;
    }, kTolF32);
}

TEST(CudaOps, WriteWindowIntoALeaf) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * cache = m.f32({8, 10, 2});
        Tensor * w = write_window(c, cache, m.f32({8, 3, 2}), {0, 4, 0, 0});
        return {w, slice(c, w, {0, 0, 0, 0}, {8, 7, 2, 1})};
    }, kTolF32);
}

TEST(CudaOps, MatmulF32) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * a = m.f32({37, 19});
        return {matmul(c, a, m.f32({37, 5})), matmul(c, a, transpose(c, m.f32({5, 37}))), matmul(c, transpose(c, m.f32({19, 37})), m.f32({37, 41})),
                matmul(c, m.f32({13, 7, 2, 1}), m.f32({13, 5, 4, 3})), matmul(c, permute(c, m.f32({13, 3, 7}), {0, 2, 1, 3}), m.f32({13, 9, 3})),
                // the decode kernel: rows of 2052 values (chunks of 1024, 1024, 4), 1 and 3 columns
                matmul(c, m.f32({2052, 33}), m.f32({2052, 1})), matmul(c, m.f32({2052, 33}), m.f32({2052, 3}))};
    }, kTolF32);
}

class CudaMatmulTyped : public ::testing::TestWithParam<DType> {};

TEST_P(CudaMatmulTyped, DecodeAndPrefillShapes) {
    REQUIRE_CUDA(be);
    const DType type = GetParam();
    const bool quant = type != DType::F16 && type != DType::BF16;
    expect_parity(*be, [type](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * a = m.typed(type, {512, 19});
        // 4608 columns: the decode kernel's two whole chunks of 2048 and a part one.
        Tensor * wide = m.typed(type, {4608, 7});
        std::vector<Tensor *> out = {matmul(c, a, m.f32({512, 1})), matmul(c, a, m.f32({512, 3})), matmul(c, a, m.f32({512, 37})),
                                     matmul(c, a, transpose(c, m.f32({9, 512}))), matmul(c, m.typed(type, {256, 9, 2}), m.f32({256, 37, 4})),
                                     matmul(c, wide, m.f32({4608, 1})), matmul(c, wide, m.f32({4608, 6})),
                                     matmul(c, m.typed(type, {256, 9, 2}), m.f32({256, 1, 4})),
                                     // more rows than the decode kernel's warps: each warp takes several
                                     matmul(c, m.typed(type, {256, 20000}), m.f32({256, 1}))};
        // 576 columns of 32-value blocks: rows of 612 (q8_0) or 324 (q4_0) bytes, not on 16
        if (type == DType::Q8_0 || type == DType::Q4_0) out.push_back(matmul(c, m.typed(type, {576, 33}), m.f32({576, 1})));
        return out;
    }, quant ? kTolQuant : kTolF32);
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulTyped,
                         ::testing::Values(DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K),
                         [](const auto & p) { return std::string(dtype_name(p.param)); });

// ---- backward ops ------------------------------------------------------------------

TEST(CudaBackward, MlpWithCrossEntropy) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * x = m.param({13, 5, 2});
        Tensor * w = m.param({13, 33}, 0.3f);
        Tensor * g = m.param({13});
        Tensor * h = rms_norm(c, x, g, 1e-5f);
        Tensor * logits = matmul(c, w, silu(c, h));
        return {cross_entropy(c, logits, m.ids({5, 2}, -1, 32))};
    }, kTolGrad, Mode::BACKWARD);
}

TEST(CudaBackward, QuantizedFrozenWeight) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Tensor * x = m.param({256, 7});
        return {probe(m, matmul(m.ctx, m.typed(DType::Q8_0, {256, 11}), x))};
    }, kTolGrad, Mode::GRADS_ONLY);
}

TEST(CudaBackward, Attention) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Tensor * q = m.param({16, 6, 5, 2});
        Tensor * k = m.param({16, 2, 7, 2});
        Tensor * v = m.param({16, 2, 7, 2});
        return {probe(m, attention(m.ctx, q, k, v, {}))};
    }, kTolGrad, Mode::BACKWARD);
}

TEST(CudaBackward, ComposedAttentionSoftmaxMask) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * q = m.param({8, 5});
        Tensor * k = m.param({8, 9});
        Tensor * scores = softmax(c, causal_mask(c, scale(c, matmul(c, k, q), 0.35f), 4));
        return {probe(m, scores)};
    }, kTolGrad, Mode::BACKWARD);
}

TEST(CudaBackward, EmbeddingRopeSwigluViews) {
    REQUIRE_CUDA(be);
    expect_parity(*be, [](Maker & m) -> std::vector<Tensor *> {
        Context & c = m.ctx;
        Tensor * table = m.param({16, 11});
        Tensor * e = get_rows(c, table, m.ids({5, 2}, 0, 4));  // repeated ids
        Tensor * r = rope(c, reshape(c, e, {8, 2, 5, 2}), m.ids({5}, 0, 20), {.mode = RopeMode::NEOX, .n_rot = 6});
        Tensor * x = m.param({7, 4, 3});
        Tensor * y = m.param({7, 1, 3});
        Tensor * s = swiglu(c, slice(c, x, {0, 1, 0, 0}, {7, 3, 3, 1}), slice(c, mul(c, x, y), {0, 0, 0, 0}, {7, 3, 3, 1}));
        return {add(c, probe(m, r), add(c, probe(m, s), probe(m, concat(c, x, scale(c, x, 2.0f), 1))))};
    }, kTolGrad, Mode::BACKWARD);
}

// ---- a real model ------------------------------------------------------------------

// Session on both devices: a prompt in chunks of 4 (KV-cache appends between computes,
// the cache resident on the device), every position's logits, then a few decode steps.
void expect_session_parity(const char * file, double tol) {
    TOYLLM_REQUIRE_SHARED(path, std::string("models/stories260K/") + file);
    auto m = Model::load(path.string());
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 24, 64, 25, 330, 359, 11};
    SessionConfig sc{.n_ctx = 64, .n_batch = 4, .n_threads = 2};
    Session cpu(*m, sc);
    sc.device = "cuda";
    Session gpu(*m, sc);
    EXPECT_LE(normalized_error(cpu.eval(prompt, true), gpu.eval(prompt, true)), tol) << "prompt";
    for (int32_t id : {42, 7, 300}) {
        EXPECT_LE(normalized_error(cpu.eval(std::span<const int32_t>(&id, 1)), gpu.eval(std::span<const int32_t>(&id, 1))), tol) << "token " << id;
    }
}

TEST(CudaModel, Stories260KSessionLogitsF32) {
    REQUIRE_CUDA(be);
    expect_session_parity("stories260K.gguf", 1e-4);
}

TEST(CudaModel, Stories260KSessionLogitsQ8_0) {
    REQUIRE_CUDA(be);
    expect_session_parity("stories260K-q8_0.gguf", 5e-2);
}

// Decode steps replayed as CUDA graphs (updated in place from token to token) give the
// same bytes as the same kernels launched one by one (TOYLLM_CUDA_GRAPHS=0).
TEST(CudaModel, GraphReplayEqualsNodeByNode) {
    REQUIRE_CUDA(be);
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K-q8_0.gguf");
    auto m = Model::load(path.string());
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 24, 64, 25};
    auto run = [&](const char * graphs) {
        ::setenv("TOYLLM_CUDA_GRAPHS", graphs, 1);
        Session s(*m, {.n_ctx = 64, .n_batch = 4, .n_threads = 2, .device = "cuda"});
        ::unsetenv("TOYLLM_CUDA_GRAPHS");
        std::vector<std::vector<float>> out{s.eval(prompt)};
        for (int32_t id : {42, 7, 300, 9}) out.push_back(s.eval(std::span<const int32_t>(&id, 1)));
        return out;
    };
    const auto eager = run("0"), graphs = run("1");
    ASSERT_EQ(eager.size(), graphs.size());
    for (size_t i = 0; i < eager.size(); ++i) {
        ASSERT_EQ(eager[i].size(), graphs[i].size());
        EXPECT_EQ(0, std::memcmp(eager[i].data(), graphs[i].data(), eager[i].size() * sizeof(float))) << "step " << i;
    }
}

TEST(CudaModel, Stories260KGreedyEqualsCpu) {
    REQUIRE_CUDA(be);
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    auto m = Model::load(path.string());
    const auto ref = toyllm::testing::read_json(ref_path);
    for (const auto & [name, c] : ref["cases"].items()) {
        const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
        const size_t n = c["generated_ids"].size();
        const auto cpu = toyllm::testing::greedy(*m, prompt, n, "cpu");
        const auto cuda = toyllm::testing::greedy(*m, prompt, n, "cuda");
        EXPECT_EQ(cuda, cpu) << "case " << name;
        EXPECT_EQ(cuda, c["generated_ids"].get<std::vector<int32_t>>()) << "case " << name << " (run.c)";
    }
}

}  // namespace
