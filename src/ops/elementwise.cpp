// Element-wise ops and reductions: add, mul (b tiled over a), scale, silu, swiglu,
// sum, sum_to (the inverse of tiling), repeat.
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

namespace {

void require_f32(const char * op, const Tensor * t) {
    if (t->type != DType::F32) shape_error(op, "operands must be f32, not " + std::string(dtype_name(t->type)), t);
}

// b can be tiled over a: each dim of b divides a's.
void require_tileable(const char * op, const Tensor * a, const Tensor * b) {
    for (int d = 0; d < kMaxDims; ++d) {
        if (a->ne[d] % b->ne[d] != 0) shape_error(op, "b cannot be broadcast over a", a, b);
    }
}

Tensor * binary(Context & ctx, Op op, const char * name, Tensor * a, Tensor * b) {
    require_f32(name, a);
    require_f32(name, b);
    require_tileable(name, a, b);
    return ctx.new_op(op, DType::F32, a->ne, {a, b});
}

bool same_shape(const Tensor * a, const Tensor * b) { return a->ne == b->ne; }

}  // namespace

Tensor * add(Context & ctx, Tensor * a, Tensor * b) { return binary(ctx, Op::ADD, "add", a, b); }
Tensor * mul(Context & ctx, Tensor * a, Tensor * b) { return binary(ctx, Op::MUL, "mul", a, b); }

Tensor * scale(Context & ctx, Tensor * a, float s) {
    require_f32("scale", a);
    Tensor * t = ctx.new_op(Op::SCALE, DType::F32, a->ne, {a});
    t->params.f[0] = s;
    return t;
}

Tensor * sum(Context & ctx, Tensor * a) {
    require_f32("sum", a);
    const int64_t one[] = {1};
    return ctx.new_op(Op::SUM, DType::F32, one, {a});
}

Tensor * mean(Context & ctx, Tensor * a) { return scale(ctx, sum(ctx, a), 1.0f / static_cast<float>(a->n_elements())); }

Tensor * sum_to(Context & ctx, Tensor * a, const Tensor * shape_like) {
    require_f32("sum_to", a);
    require_tileable("sum_to", a, shape_like);
    return ctx.new_op(Op::SUM_TO, DType::F32, shape_like->ne, {a});
}

Tensor * repeat(Context & ctx, Tensor * a, const Tensor * shape_like) {
    require_f32("repeat", a);
    require_tileable("repeat", shape_like, a);
    return ctx.new_op(Op::REPEAT, DType::F32, shape_like->ne, {a});
}

Tensor * silu(Context & ctx, Tensor * x) {
    require_f32("silu", x);
    return ctx.new_op(Op::SILU, DType::F32, x->ne, {x});
}

Tensor * swiglu(Context & ctx, Tensor * gate, Tensor * up) {
    require_f32("swiglu", gate);
    require_f32("swiglu", up);
    if (!same_shape(gate, up)) shape_error("swiglu", "gate and up differ in shape", gate, up);
    return ctx.new_op(Op::SWIGLU, DType::F32, gate->ne, {gate, up});
}

namespace ops {

Tensor * silu_back(Context & ctx, Tensor * x, Tensor * dy) { return ctx.new_op(Op::SILU_BACK, DType::F32, x->ne, {x, dy}); }

Tensor * add_inplace(Context & ctx, Tensor * a, Tensor * b) {
    if (!a->is_contiguous() || !same_shape(a, b)) shape_error("add_inplace", "a must be contiguous and shaped like b", a, b);
    Tensor * t = binary(ctx, Op::ADD, "add_inplace", a, b);
    t->view_src = a;  // writes into a's memory
    return t;
}

void backward_add(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * y = node->src[1];
    b.add_grad(node->src[0], grad);
    if (b.needs_grad(y)) b.add_grad(y, same_shape(node, y) ? grad : sum_to(b.ctx, grad, y));
}

void backward_mul(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * x = node->src[0];
    Tensor * y = node->src[1];
    if (b.needs_grad(x)) b.add_grad(x, mul(b.ctx, grad, y));
    if (b.needs_grad(y)) {
        Tensor * gy = mul(b.ctx, grad, x);
        b.add_grad(y, same_shape(node, y) ? gy : sum_to(b.ctx, gy, y));
    }
}

void backward_scale(Backward & b, Tensor * node, Tensor * grad) {
    b.add_grad(node->src[0], scale(b.ctx, grad, node->params.f[0]));
}

void backward_sum(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], repeat(b.ctx, grad, node->src[0])); }
void backward_sum_to(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], repeat(b.ctx, grad, node->src[0])); }
void backward_repeat(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], sum_to(b.ctx, grad, node->src[0])); }

void backward_silu(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], silu_back(b.ctx, node->src[0], grad)); }

void backward_swiglu(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * gate = node->src[0];
    Tensor * up = node->src[1];
    if (b.needs_grad(gate)) b.add_grad(gate, silu_back(b.ctx, gate, mul(b.ctx, grad, up)));
    if (b.needs_grad(up)) b.add_grad(up, mul(b.ctx, grad, silu(b.ctx, gate)));
}

}  // namespace ops

}  // namespace toyllm
