// softmax over ne[0], and cross-entropy of logits against i32 targets (mean over the
// targets that are not ignore_index; params.i[0] = ignore_index).
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

Tensor * softmax(Context & ctx, Tensor * x) {
    if (x->type != DType::F32) shape_error("softmax", "x must be f32", x);
    return ctx.new_op(Op::SOFTMAX, DType::F32, x->ne, {ops::rows_contiguous(ctx, x)});
}

Tensor * cross_entropy(Context & ctx, Tensor * logits, Tensor * targets, int32_t ignore_index) {
    if (logits->type != DType::F32) shape_error("cross_entropy", "logits must be f32", logits);
    if (targets->type != DType::I32 || targets->n_elements() != logits->n_rows()) {
        shape_error("cross_entropy", "targets must be i32 with one entry per logits row", logits, targets);
    }
    const int64_t one[] = {1};
    Tensor * t = ctx.new_op(Op::CROSS_ENTROPY, DType::F32, one, {ops::rows_contiguous(ctx, logits), targets});
    t->params.i[0] = ignore_index;
    t->flags |= TENSOR_LOSS;
    return t;
}

namespace ops {

Tensor * softmax_back(Context & ctx, Tensor * y, Tensor * dy) {
    return ctx.new_op(Op::SOFTMAX_BACK, DType::F32, y->ne, {y, rows_contiguous(ctx, dy)});
}

Tensor * cross_entropy_back(Context & ctx, Tensor * logits, Tensor * targets, Tensor * dloss, int32_t ignore_index) {
    Tensor * t = ctx.new_op(Op::CROSS_ENTROPY_BACK, DType::F32, logits->ne, {logits, targets, dloss});
    t->params.i[0] = ignore_index;
    return t;
}

void backward_softmax(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], softmax_back(b.ctx, node, grad)); }

void backward_cross_entropy(Backward & b, Tensor * node, Tensor * grad) {
    b.add_grad(node->src[0], cross_entropy_back(b.ctx, node->src[0], node->src[1], grad, node->params.i[0]));
}

}  // namespace ops

}  // namespace toyllm
