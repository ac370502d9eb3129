// AdamW against values derived by hand: with a constant gradient g the bias-corrected
// moments are exactly m_hat = g and v_hat = g^2, so every step is
//   p <- p (1 - lr wd) - lr g / (|g| + eps)
// (in double here), and torch's clip_grad_norm_ scales g by max_norm / (norm + 1e-6).
#include "toyllm/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace {

using toyllm::AdamW;
using toyllm::AdamWConfig;
using toyllm::Context;
using toyllm::DType;
using toyllm::Tensor;

Tensor * param_with_grad(Context & ctx, const std::vector<float> & p, const std::vector<float> & g) {
    Tensor * t = ctx.new_tensor(DType::F32, {static_cast<int64_t>(p.size())}, "w");
    ctx.alloc(t);
    ctx.set_param(t);
    std::copy(p.begin(), p.end(), t->data_as<float>());
    t->grad = ctx.new_tensor(DType::F32, {static_cast<int64_t>(g.size())}, "w.grad");
    ctx.alloc(t->grad);
    std::copy(g.begin(), g.end(), t->grad->data_as<float>());
    return t;
}

TEST(AdamW, ThreeStepsMatchTheHandDerivedRecurrence) {
    Context ctx;
    const std::vector<float> p0 = {1.0f, -2.0f, 0.25f};
    const std::vector<float> g = {0.5f, -1.0f, 1e-3f};
    Tensor * w = param_with_grad(ctx, p0, g);
    const AdamWConfig cfg{.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    AdamW opt(ctx, {w}, cfg);
    std::vector<double> want(p0.begin(), p0.end());
    for (int step = 1; step <= 3; ++step) {
        opt.step();
        for (size_t i = 0; i < want.size(); ++i) {
            want[i] = want[i] * (1.0 - 0.1 * 0.01) - 0.1 * g[i] / (std::fabs(static_cast<double>(g[i])) + 1e-8);
            EXPECT_NEAR(w->data_as<float>()[i], want[i], 1e-6) << "step " << step << " element " << i;
        }
    }
    EXPECT_EQ(opt.steps_done(), 3);
    EXPECT_EQ(opt.m(0)->name, "w.adam_m");
    EXPECT_EQ(opt.v(0)->name, "w.adam_v");
    // m_3 = (1 - 0.9^3) g, v_3 = (1 - 0.999^3) g^2
    EXPECT_NEAR(opt.m(0)->data_as<float>()[1], (1 - std::pow(0.9, 3)) * -1.0, 1e-6);
    EXPECT_NEAR(opt.v(0)->data_as<float>()[0], (1 - std::pow(0.999, 3)) * 0.25, 1e-7);
}

TEST(AdamW, VaryingGradientsFollowTheMomentRecurrences) {
    Context ctx;
    Tensor * w = param_with_grad(ctx, {0.3f}, {0.0f});
    AdamW opt(ctx, {w}, {.lr = 0.05f, .beta1 = 0.8f, .beta2 = 0.9f, .eps = 1e-6f});
    const double grads[3] = {0.2, -0.6, 0.1};
    double p = 0.3, m = 0, v = 0;
    for (int t = 1; t <= 3; ++t) {
        w->grad->data_as<float>()[0] = static_cast<float>(grads[t - 1]);
        opt.step();
        m = 0.8 * m + 0.2 * grads[t - 1];
        v = 0.9 * v + 0.1 * grads[t - 1] * grads[t - 1];
        p -= 0.05 * (m / (1 - std::pow(0.8, t))) / (std::sqrt(v / (1 - std::pow(0.9, t))) + 1e-6);
        EXPECT_NEAR(w->data_as<float>()[0], p, 1e-6) << "step " << t;
    }
}

TEST(AdamW, ClipsByTheGlobalNormOfAllParams) {
    Context ctx;
    Tensor * a = param_with_grad(ctx, {0.0f}, {3.0f});
    Tensor * b = param_with_grad(ctx, {0.0f}, {4.0f});
    AdamW opt(ctx, {a, b}, {.lr = 0.1f, .grad_clip = 1.0f});
    EXPECT_FLOAT_EQ(opt.step(), 5.0f);  // the norm before clipping
    // m_1 = (1 - beta1) * g * 1 / (5 + 1e-6)
    EXPECT_NEAR(opt.m(0)->data_as<float>()[0], 0.1 * 3.0 / (5.0 + 1e-6), 1e-7);
    EXPECT_NEAR(opt.m(1)->data_as<float>()[0], 0.1 * 4.0 / (5.0 + 1e-6), 1e-7);
}

// Several chunks of work over params of odd sizes: the norm (summed per chunk, then in
// chunk order) and every updated value have the same bits for 1 and 3 threads, and the
// norm is the double-precision one.
TEST(AdamW, SameBitsForAnyThreadCount) {
    std::vector<std::vector<float>> results;
    for (int n_threads : {1, 3}) {
        Context ctx;
        std::vector<Tensor *> params;
        double sq = 0.0;
        for (int64_t n : {200001, 7, 65536}) {
            std::vector<float> p(static_cast<size_t>(n)), g(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) {
                p[static_cast<size_t>(i)] = std::sin(0.001f * static_cast<float>(i));
                g[static_cast<size_t>(i)] = std::cos(0.37f * static_cast<float>(i + n));
                sq += static_cast<double>(g[static_cast<size_t>(i)]) * g[static_cast<size_t>(i)];
            }
            params.push_back(param_with_grad(ctx, p, g));
        }
        AdamW opt(ctx, params, {.lr = 0.01f, .weight_decay = 0.1f, .grad_clip = 1.0f, .n_threads = n_threads});
        const float norm = opt.step();
        EXPECT_NEAR(norm, std::sqrt(sq), 1e-6 * std::sqrt(sq));
        std::vector<float> all(1, norm);
        opt.step();
        for (const Tensor * p : params) all.insert(all.end(), p->data_as<float>(), p->data_as<float>() + p->n_elements());
        results.push_back(all);
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)), 0);
}

TEST(AdamW, RejectsBadInput) {
    Context ctx;
    Tensor * w = ctx.new_tensor(DType::F32, {2}, "w");
    ctx.alloc(w);
    AdamW opt(ctx, {w}, {});
    EXPECT_THROW(opt.step(), toyllm::Error);  // no gradient
    EXPECT_THROW(AdamW(ctx, {w}, {.beta1 = 1.0f}), toyllm::Error);
}

}  // namespace
