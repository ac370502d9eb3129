// concat(a, b, dim): b after a along dim; the gradient is the two windows of grad.
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

Tensor * concat(Context & ctx, Tensor * a, Tensor * b, int dim) {
    if (dim < 0 || dim >= kMaxDims) shape_error("concat", "dim " + std::to_string(dim) + " out of range", a, b);
    if (a->type != DType::F32 || b->type != DType::F32) shape_error("concat", "operands must be f32", a, b);
    for (int d = 0; d < kMaxDims; ++d) {
        if (d != dim && a->ne[d] != b->ne[d]) shape_error("concat", "shapes differ outside dim " + std::to_string(dim), a, b);
    }
    auto ne = a->ne;
    ne[dim] += b->ne[dim];
    Tensor * t = ctx.new_op(Op::CONCAT, DType::F32, ne, {a, b});
    t->params.i[0] = dim;
    return t;
}

namespace ops {

void backward_concat(Backward & b, Tensor * node, Tensor * grad) {
    const int dim = node->params.i[0];
    Tensor * x = node->src[0];
    Tensor * y = node->src[1];
    std::array<int64_t, 4> begin{};
    if (b.needs_grad(x)) b.add_grad(x, slice(b.ctx, grad, begin, x->ne));
    begin[dim] = x->ne[dim];
    if (b.needs_grad(y)) b.add_grad(y, slice(b.ctx, grad, begin, y->ne));
}

}  // namespace ops

}  // namespace toyllm
