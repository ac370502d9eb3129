// Views: reshape, permute, transpose, slice share their source's memory (Op::VIEW,
// params.i[0] = kind); cont copies into a contiguous tensor; acc_window is slice's
// gradient. A view's data is view_src->data + view_offs.
#include "ops/op_table.h"

namespace toyllm {

using ops::shape_error;

namespace {

enum ViewKind : int32_t { VIEW_RESHAPE = 0, VIEW_PERMUTE = 1, VIEW_SLICE = 2 };

Tensor * new_view(Context & ctx, Tensor * a, std::span<const int64_t> ne, ViewKind kind) {
    Tensor * v = ctx.new_op(Op::VIEW, a->type, ne, {a});
    v->view_src = a;
    v->params.i[0] = kind;
    v->name = a->name.empty() ? "" : a->name + " (view)";
    return v;
}

}  // namespace

Tensor * reshape(Context & ctx, Tensor * a, std::span<const int64_t> ne) {
    if (!a->is_contiguous()) shape_error("reshape", "source must be contiguous (use cont)", a);
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    if (n != a->n_elements()) shape_error("reshape", "to " + std::to_string(n) + " elements", a);
    return new_view(ctx, a, ne, VIEW_RESHAPE);
}

Tensor * permute(Context & ctx, Tensor * a, std::array<int, 4> axes) {
    std::array<bool, 4> seen{};
    for (int x : axes) {
        if (x < 0 || x > 3 || seen[x]) shape_error("permute", "axes are not a permutation of 0..3", a);
        seen[x] = true;
    }
    if (axes[0] != 0 && dtype_info(a->type).block_size != 1) shape_error("permute", "cannot move dim 0 of a block-quantized tensor", a);
    std::array<int64_t, 4> ne{};
    for (int i = 0; i < 4; ++i) ne[axes[i]] = a->ne[i];
    Tensor * v = new_view(ctx, a, ne, VIEW_PERMUTE);
    for (int i = 0; i < 4; ++i) {
        v->nb[axes[i]] = a->nb[i];
        v->params.i[1 + i] = axes[i];
    }
    return v;
}

Tensor * transpose(Context & ctx, Tensor * a) { return permute(ctx, a, {1, 0, 2, 3}); }

Tensor * slice(Context & ctx, Tensor * a, std::array<int64_t, 4> begin, std::array<int64_t, 4> ne) {
    const DTypeInfo & info = dtype_info(a->type);
    for (int d = 0; d < 4; ++d) {
        if (begin[d] < 0 || ne[d] < 1 || begin[d] + ne[d] > a->ne[d]) {
            shape_error("slice", "window [" + std::to_string(begin[d]) + ", +" + std::to_string(ne[d]) +
                                     ") outside dim " + std::to_string(d), a);
        }
    }
    if (begin[0] % info.block_size != 0 || ne[0] % info.block_size != 0) shape_error("slice", "dim 0 must cut whole blocks", a);
    Tensor * v = new_view(ctx, a, ne, VIEW_SLICE);
    v->nb = a->nb;
    // nb[0], not the type size: a slice of a transposed view steps over dim 0 by its stride.
    v->view_offs = begin[0] / info.block_size * a->nb[0];
    for (int d = 1; d < 4; ++d) v->view_offs += begin[d] * a->nb[d];
    for (int d = 0; d < 4; ++d) v->params.i[1 + d] = static_cast<int32_t>(begin[d]);
    return v;
}

Tensor * cont(Context & ctx, Tensor * a) {
    if (a->type != DType::F32) shape_error("cont", "only f32 tensors are copied", a);
    return ctx.new_op(Op::CONT, DType::F32, a->ne, {a});
}

Tensor * write_window(Context & ctx, Tensor * dst, Tensor * src, std::array<int64_t, 4> begin) {
    if ((dst->type != DType::F32 && dst->type != DType::F16) || !dst->is_contiguous()) shape_error("write_window", "dst must be contiguous f32 or f16", dst, src);
    if (src->type != DType::F32) shape_error("write_window", "src must be f32", dst, src);
    for (int d = 0; d < 4; ++d) {
        if (begin[d] < 0 || begin[d] + src->ne[d] > dst->ne[d]) shape_error("write_window", "window outside dst in dim " + std::to_string(d), dst, src);
    }
    Tensor * t = ctx.new_op(Op::ACC, dst->type, dst->ne, {dst, ops::rows_contiguous(ctx, src)});
    for (int d = 0; d < 4; ++d) t->params.i[d] = static_cast<int32_t>(begin[d]);
    t->params.i[4] = 1;  // set, not add (an f16 dst gets the values rounded to nearest even)
    t->view_src = dst;   // in place
    return t;
}

namespace ops {

Tensor * acc_window(Context & ctx, const Tensor * shape_like, std::array<int64_t, 4> begin, Tensor * g) {
    Tensor * t = ctx.new_op(Op::ACC, DType::F32, shape_like->ne, {nullptr, rows_contiguous(ctx, g)});
    for (int d = 0; d < 4; ++d) t->params.i[d] = static_cast<int32_t>(begin[d]);
    return t;
}

void backward_view(Backward & b, Tensor * node, Tensor * grad) {
    Tensor * src = node->src[0];
    switch (node->params.i[0]) {
        case VIEW_RESHAPE: {
            Tensor * g = grad->is_contiguous() ? grad : cont(b.ctx, grad);
            b.add_grad(src, reshape(b.ctx, g, src->ne));
            return;
        }
        case VIEW_PERMUTE: {
            std::array<int, 4> inverse{};
            for (int i = 0; i < 4; ++i) inverse[node->params.i[1 + i]] = i;
            b.add_grad(src, permute(b.ctx, grad, inverse));
            return;
        }
        case VIEW_SLICE: {
            std::array<int64_t, 4> begin{};
            for (int d = 0; d < 4; ++d) begin[d] = node->params.i[1 + d];
            b.add_grad(src, acc_window(b.ctx, src, begin, grad));
            return;
        }
        default:
            TOYLLM_ASSERT(false && "unknown view kind");
    }
}

void backward_cont(Backward & b, Tensor * node, Tensor * grad) { b.add_grad(node->src[0], grad); }

}  // namespace ops

}  // namespace toyllm
