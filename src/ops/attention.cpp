// attention: softmax(q.k * scale + causal mask) . v per query head, fused (online
// softmax, no [S, T] matrix per head). Its composed reference is
//   matmul(v^T, softmax(causal_mask(scale(matmul(k, q)))))
// per head, built by the op test. params: f[0] scale, i[0] causal. k and v may be f16 (an
// f16 KV cache): then the CPU kernel follows llama.cpp's order (kernels_attention_f16.cpp)
// and there is no gradient.
#include "ops/op_table.h"

#include <cmath>

namespace toyllm {

using ops::Backward;
using ops::shape_error;

Tensor * attention(Context & ctx, Tensor * q, Tensor * k, Tensor * v, const AttentionConfig & cfg) {
    if (q->type != DType::F32) shape_error("attention", "q must be f32", q);
    if ((k->type != DType::F32 && k->type != DType::F16) || v->type != k->type) shape_error("attention", "k and v must be both f32 or both f16", k, v);
    if (k->ne != v->ne) shape_error("attention", "k and v differ in shape", k, v);
    if (q->ne[0] != k->ne[0]) shape_error("attention", "head_dim of q and k differ", q, k);
    if (k->ne[1] < 1 || q->ne[1] % k->ne[1] != 0) shape_error("attention", "n_head must be a multiple of n_head_kv", q, k);
    if (q->ne[3] != k->ne[3]) shape_error("attention", "batch sizes differ", q, k);
    if (cfg.causal && q->ne[2] > k->ne[2]) shape_error("attention", "more queries than keys in causal attention", q, k);
    Tensor * t = ctx.new_op(Op::ATTENTION, DType::F32, q->ne,
                            {ops::rows_contiguous(ctx, q), ops::rows_contiguous(ctx, k), ops::rows_contiguous(ctx, v)});
    t->params.f[0] = cfg.scale != 0.0f ? cfg.scale : 1.0f / std::sqrt(static_cast<float>(q->ne[0]));
    t->params.i[0] = cfg.causal ? 1 : 0;
    return t;
}

Tensor * causal_mask(Context & ctx, Tensor * scores, int64_t n_past) {
    if (scores->type != DType::F32) shape_error("causal_mask", "scores must be f32", scores);
    Tensor * t = ctx.new_op(Op::CAUSAL_MASK, DType::F32, scores->ne, {ops::rows_contiguous(ctx, scores)});
    t->params.i[0] = static_cast<int32_t>(n_past);
    t->params.i[1] = 0;  // fill with -inf
    return t;
}

namespace ops {

Tensor * attention_back(Context & ctx, Tensor * node, Tensor * dout) {
    const int64_t n = node->src[0]->n_elements() + 2 * node->src[1]->n_elements();
    const int64_t ne[] = {n};
    Tensor * t = ctx.new_op(Op::ATTENTION_BACK, DType::F32, ne, {node->src[0], node->src[1], node->src[2], rows_contiguous(ctx, dout)});
    t->params = node->params;
    return t;
}

void backward_attention(Backward & b, Tensor * node, Tensor * grad) {
    if (node->src[1]->type != DType::F32) shape_error("attention", "no gradient through f16 k and v", node->src[1], node->src[2]);
    Tensor * packed = attention_back(b.ctx, node, grad);
    int64_t at = 0;
    for (int i = 0; i < 3; ++i) {
        Tensor * s = node->src[i];
        const int64_t n = s->n_elements();
        if (b.needs_grad(s)) b.add_grad(s, reshape(b.ctx, slice(b.ctx, packed, {at, 0, 0, 0}, {n, 1, 1, 1}), s->ne));
        at += n;
    }
}

void backward_causal_mask(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * t = b.ctx.new_op(Op::CAUSAL_MASK, DType::F32, grad->ne, {rows_contiguous(b.ctx, grad)});
    t->params.i[0] = node->params.i[0];
    t->params.i[1] = 1;  // masked entries get no gradient
    b.add_grad(node->src[0], t);
}

}  // namespace ops

}  // namespace toyllm
