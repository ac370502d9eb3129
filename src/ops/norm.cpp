// rms_norm: y = x / sqrt(mean(x^2) + eps) * w over ne[0]. The fused form (weight in
// src[1]) has the composed reference mul(rms_norm(x, nullptr), w).
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

Tensor * rms_norm(Context & ctx, Tensor * x, Tensor * weight, float eps) {
    if (x->type != DType::F32) shape_error("rms_norm", "x must be f32", x);
    if (weight != nullptr && (weight->type != DType::F32 || weight->ne[0] != x->ne[0] || weight->n_elements() != weight->ne[0])) {
        shape_error("rms_norm", "weight must be f32 [ne[0] of x]", x, weight);
    }
    if (!(eps > 0.0f)) shape_error("rms_norm", "eps must be > 0", x);
    // The kernel reads the weight as a plain array.
    if (weight != nullptr && !weight->is_contiguous()) weight = cont(ctx, weight);
    Tensor * t = ctx.new_op(Op::RMS_NORM, DType::F32, x->ne, {ops::rows_contiguous(ctx, x), weight});
    t->params.f[0] = eps;
    return t;
}

namespace ops {

Tensor * rms_norm_back(Context & ctx, Tensor * x, Tensor * dy, float eps) {
    Tensor * t = ctx.new_op(Op::RMS_NORM_BACK, DType::F32, x->ne, {x, rows_contiguous(ctx, dy)});
    t->params.f[0] = eps;
    return t;
}

void backward_rms_norm(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * x = node->src[0];
    Tensor * w = node->src[1];
    const float eps = node->params.f[0];
    if (w == nullptr) {
        b.add_grad(x, rms_norm_back(b.ctx, x, grad, eps));
        return;
    }
    if (b.needs_grad(x)) b.add_grad(x, rms_norm_back(b.ctx, x, mul(b.ctx, grad, w), eps));
    if (b.needs_grad(w)) b.add_grad(w, sum_to(b.ctx, mul(b.ctx, grad, rms_norm(b.ctx, x, nullptr, eps)), w));
}

}  // namespace ops

}  // namespace toyllm
