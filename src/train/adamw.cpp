#include "toyllm/adamw.h"

#include <cmath>

namespace toyllm {

AdamW::AdamW(Context & ctx, std::vector<Tensor *> params, const AdamWConfig & cfg) : cfg_(cfg), params_(std::move(params)) {
    if (!(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f && cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f)) {
        throw Error("adamw: betas must be in [0, 1), got " + std::to_string(cfg.beta1) + ", " + std::to_string(cfg.beta2));
    }
    for (Tensor * p : params_) {
        if (p->type != DType::F32 || !p->is_contiguous()) throw Error("adamw: param '" + p->name + "' must be contiguous f32");
        Tensor * m = ctx.new_tensor(DType::F32, p->ne, p->name + ".adam_m");
        Tensor * v = ctx.new_tensor(DType::F32, p->ne, p->name + ".adam_v");
        ctx.alloc(m);
        ctx.alloc(v);
        m_.push_back(m);
        v_.push_back(v);
    }
}

float AdamW::step(float lr) {
    if (lr < 0.0f) lr = cfg_.lr;
    // Global norm in double, params in order: the same for any thread count.
    double sq = 0.0;
    for (Tensor * p : params_) {
        if (p->grad == nullptr) throw Error("adamw: param '" + p->name + "' has no gradient (was build_backward run?)");
        const float * g = p->grad->data_as<float>();
        for (int64_t i = 0; i < p->n_elements(); ++i) sq += static_cast<double>(g[i]) * g[i];
    }
    const float norm = static_cast<float>(std::sqrt(sq));
    float gscale = 1.0f;
    if (cfg_.grad_clip > 0.0f && norm > cfg_.grad_clip) gscale = cfg_.grad_clip / (norm + 1e-6f);

    ++t_;
    const float b1 = cfg_.beta1, b2 = cfg_.beta2;
    const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b1), static_cast<double>(t_)));
    const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b2), static_cast<double>(t_)));
    const float decay = 1.0f - lr * cfg_.weight_decay;
    for (size_t j = 0; j < params_.size(); ++j) {
        float * p = params_[j]->data_as<float>();
        const float * g = params_[j]->grad->data_as<float>();
        float * m = m_[j]->data_as<float>();
        float * v = v_[j]->data_as<float>();
        for (int64_t i = 0; i < params_[j]->n_elements(); ++i) {
            const float gi = g[i] * gscale;
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
            const float mhat = m[i] / bc1;
            const float vhat = v[i] / bc2;
            p[i] = p[i] * decay - lr * mhat / (std::sqrt(vhat) + cfg_.eps);
        }
    }
    return norm;
}

}  // namespace toyllm
