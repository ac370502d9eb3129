// AdamW against values derived by hand: with a constant gradient g the bias-corrected
// moments are exactly m_hat = g and v_hat = g^2, so every step is
//   p <- p (1 - lr wd) - lr g / (|g| + eps)
// (in double here), and torch's clip_grad_norm_ scales g by max_norm / (norm + 1e-6).
#include "toyllm/adamw.h"

#include <gtest/gtest.h>

#include <cmath>

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

TEST(AdamW, RejectsBadInput) {
    Context ctx;
    Tensor * w = ctx.new_tensor(DType::F32, {2}, "w");
    ctx.alloc(w);
    AdamW opt(ctx, {w}, {});
    EXPECT_THROW(opt.step(), toyllm::Error);  // no gradient
    EXPECT_THROW(AdamW(ctx, {w}, {.beta1 = 1.0f}), toyllm::Error);
}

}  // namespace
