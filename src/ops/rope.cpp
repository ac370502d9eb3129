// rope: rotary position embedding. Pair (x_a, x_b) of head dimension i (i < n_rot / 2)
// turns by angle pos * freq_scale * freq_base^(-2i / n_rot) / factor[i]:
//   NORMAL pairs (2i, 2i+1), NEOX pairs (i, i + n_rot/2); dims >= n_rot pass through.
// params: i[0] mode, i[1] n_rot, i[2] inverse (turn by -angle: the gradient),
//         f[0] freq_base, f[1] freq_scale.
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

namespace {

Tensor * rope_impl(Context & ctx, Tensor * x, Tensor * positions, const RopeConfig & cfg, Tensor * freq_factors, bool inverse) {
    if (x->type != DType::F32) shape_error("rope", "x must be f32", x);
    if (cfg.mode != RopeMode::NORMAL && cfg.mode != RopeMode::NEOX) shape_error("rope", "unknown mode", x);
    if (cfg.n_rot <= 0 || cfg.n_rot % 2 != 0 || cfg.n_rot > x->ne[0]) {
        shape_error("rope", "n_rot = " + std::to_string(cfg.n_rot) + " must be even and in (0, head_dim]", x);
    }
    if (positions->type != DType::I32 || positions->n_elements() != x->ne[2]) {
        shape_error("rope", "positions must be i32 [T] with T = x.ne[2]", x, positions);
    }
    if (freq_factors != nullptr && (freq_factors->type != DType::F32 || freq_factors->n_elements() != cfg.n_rot / 2)) {
        shape_error("rope", "freq_factors must be f32 [n_rot / 2]", x, freq_factors);
    }
    // The kernel reads the factors as a plain array.
    if (freq_factors != nullptr && !freq_factors->is_contiguous()) freq_factors = cont(ctx, freq_factors);
    Tensor * t = ctx.new_op(Op::ROPE, DType::F32, x->ne, {ops::rows_contiguous(ctx, x), positions, freq_factors});
    t->params.i[0] = static_cast<int32_t>(cfg.mode);
    t->params.i[1] = cfg.n_rot;
    t->params.i[2] = inverse ? 1 : 0;
    t->params.f[0] = cfg.freq_base;
    t->params.f[1] = cfg.freq_scale;
    return t;
}

}  // namespace

Tensor * rope(Context & ctx, Tensor * x, Tensor * positions, const RopeConfig & cfg, Tensor * freq_factors) {
    return rope_impl(ctx, x, positions, cfg, freq_factors, false);
}

namespace ops {

void backward_rope(Backward & b, Tensor * node, Tensor * grad) {
    const RopeConfig cfg{
        .mode = static_cast<RopeMode>(node->params.i[0]),
        .n_rot = node->params.i[1],
        .freq_base = node->params.f[0],
        .freq_scale = node->params.f[1],
    };
    // The rotation is orthogonal: its gradient is the rotation by the opposite angle.
    b.add_grad(node->src[0], rope_impl(b.ctx, grad, node->src[1], cfg, node->src[2], node->params.i[2] == 0));
}

}  // namespace ops

}  // namespace toyllm
