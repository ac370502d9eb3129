// AdamW over chunks of 64 Ki elements spread over a thread pool: the gradient norm is
// summed per chunk (in double) and then over chunks in order, so the update has the same
// bits for any thread count.
#include "toyllm/adamw.h"

#include "backend/cpu/thread_pool.h"

#include <algorithm>
#include <cmath>

namespace toyllm {

namespace {

constexpr int64_t kChunk = 1 << 16;

// Sum of squares in double with four interleaved partial sums (a fixed order).
double sum_squares(const float * g, int64_t n) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; ++k) s[k] += static_cast<double>(g[i + k]) * g[i + k];
    }
    for (; i < n; ++i) s[0] += static_cast<double>(g[i]) * g[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

AdamW::AdamW(Context & ctx, std::vector<Tensor *> params, const AdamWConfig & cfg) : cfg_(cfg), params_(std::move(params)) {
    if (!(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f && cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f)) {
        throw Error("adamw: betas must be in [0, 1), got " + std::to_string(cfg.beta1) + ", " + std::to_string(cfg.beta2));
    }
    for (size_t j = 0; j < params_.size(); ++j) {
        Tensor * p = params_[j];
        if (p->type != DType::F32 || !p->is_contiguous()) throw Error("adamw: param '" + p->name + "' must be contiguous f32");
        Tensor * m = ctx.new_tensor(DType::F32, p->ne, p->name + ".adam_m");
        Tensor * v = ctx.new_tensor(DType::F32, p->ne, p->name + ".adam_v");
        ctx.alloc(m);
        ctx.alloc(v);
        m_.push_back(m);
        v_.push_back(v);
        for (int64_t b = 0; b < p->n_elements(); b += kChunk) chunks_.push_back({j, b, std::min(b + kChunk, p->n_elements())});
    }
    partial_.resize(chunks_.size());
    pool_ = std::make_unique<cpu::ThreadPool>(std::max(1, cfg.n_threads));
}

AdamW::~AdamW() = default;

float AdamW::step(float lr) {
    if (lr < 0.0f) lr = cfg_.lr;
    for (Tensor * p : params_) {
        if (p->grad == nullptr) throw Error("adamw: param '" + p->name + "' has no gradient (was build_backward run?)");
    }
    const auto n_chunks = static_cast<int64_t>(chunks_.size());
    pool_->run([&](int ith, int nth) {
        const cpu::RowRange rr = cpu::split_rows(n_chunks, ith, nth);
        for (int64_t c = rr.begin; c < rr.end; ++c) {
            const Chunk & ch = chunks_[static_cast<size_t>(c)];
            partial_[static_cast<size_t>(c)] = sum_squares(params_[ch.j]->grad->data_as<float>() + ch.begin, ch.end - ch.begin);
        }
    });
    double sq = 0.0;
    for (double s : partial_) sq += s;
    const float norm = static_cast<float>(std::sqrt(sq));
    float gscale = 1.0f;
    if (cfg_.grad_clip > 0.0f && norm > cfg_.grad_clip) gscale = cfg_.grad_clip / (norm + 1e-6f);

    ++t_;
    const float b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
    const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b1), static_cast<double>(t_)));
    const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b2), static_cast<double>(t_)));
    const float decay = 1.0f - lr * cfg_.weight_decay;
    pool_->run([&](int ith, int nth) {
        const cpu::RowRange rr = cpu::split_rows(n_chunks, ith, nth);
        for (int64_t c = rr.begin; c < rr.end; ++c) {
            const Chunk & ch = chunks_[static_cast<size_t>(c)];
            float * __restrict p = params_[ch.j]->data_as<float>();
            const float * __restrict g = params_[ch.j]->grad->data_as<float>();
            float * __restrict m = m_[ch.j]->data_as<float>();
            float * __restrict v = v_[ch.j]->data_as<float>();
            for (int64_t i = ch.begin; i < ch.end; ++i) {
                const float gi = g[i] * gscale;
                m[i] = b1 * m[i] + (1.0f - b1) * gi;
                v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
                const float mhat = m[i] / bc1;
                const float vhat = v[i] / bc2;
                p[i] = p[i] * decay - lr * mhat / (std::sqrt(vhat) + eps);
            }
        }
    });
    return norm;
}

}  // namespace toyllm
