// matmul: out[n, m] = sum_k a[k, n] * b[k, m], a of any dtype (weights stay in their
// file's format), b f32, a broadcast over b's batch dims. params.i[0] = 1 marks the
// transposed form used by gradients, out[k, m] = sum_n a[k, n] * b[n, m], which reads a
// in its storage type (a quantized frozen weight passes gradients without an f32 copy).
// params.i[1] = 1 marks the accumulating form of gradient buffers: out += the product,
// the node a view of src[2] (see accumulate_grad).
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

namespace {

void check_batch(const Tensor * a, const Tensor * b) {
    if (b->ne[2] % a->ne[2] != 0 || b->ne[3] % a->ne[3] != 0) shape_error("matmul", "a's batch dims must divide b's", a, b);
}

// out[k, m] = sum_n a[k, n] * b[n, m]
Tensor * matmul_transposed_a(Context & ctx, Tensor * a, Tensor * b) {
    if (a->ne[1] != b->ne[0]) shape_error("matmul (a transposed)", "a.ne[1] != b.ne[0]", a, b);
    check_batch(a, b);
    const int64_t ne[] = {a->ne[0], b->ne[1], b->ne[2], b->ne[3]};
    Tensor * t = ctx.new_op(Op::MATMUL, DType::F32, ne, {a, b});
    t->params.i[0] = 1;
    return t;
}

// Sums da [K, N, B2', B3'] over the batch entries of b that share one entry of a, giving
// a's shape. Entry i2 of b uses entry i2 / (B2' / B2) of a (contiguous groups, the way GQA
// maps query heads to kv heads), which sum_to (modulo tiling) does not undo when B2 > 1.
Tensor * sum_batch_groups(Context & ctx, Tensor * da, const Tensor * a) {
    const int64_t kn = da->ne[0] * da->ne[1];
    const int64_t r2 = da->ne[2] / a->ne[2], r3 = da->ne[3] / a->ne[3];
    Tensor * t = da;
    if (r2 > 1) {  // [K*N, r2, B2, B3'] -> [K*N, 1, B2, B3']
        t = reshape(ctx, t, {kn, r2, a->ne[2], da->ne[3]});
        t = sum_to(ctx, t, ctx.new_tensor(DType::F32, {kn, 1, a->ne[2], da->ne[3]}));
    }
    if (r3 > 1) {  // [K*N*B2, r3, B3] -> [K*N*B2, 1, B3]
        t = reshape(ctx, t, {kn * a->ne[2], r3, a->ne[3]});
        t = sum_to(ctx, t, ctx.new_tensor(DType::F32, {kn * a->ne[2], 1, a->ne[3]}));
    }
    return reshape(ctx, t, a->ne);
}

}  // namespace

Tensor * matmul(Context & ctx, Tensor * a, Tensor * b) {
    if (b->type != DType::F32) shape_error("matmul", "b must be f32", a, b);
    if (a->ne[0] != b->ne[0]) shape_error("matmul", "a.ne[0] != b.ne[0]", a, b);
    if (a->type != DType::F32 && a->nb[0] != static_cast<int64_t>(dtype_info(a->type).type_size)) {
        shape_error("matmul", "a non-f32 a must have contiguous rows", a, b);
    }
    check_batch(a, b);
    const int64_t ne[] = {a->ne[1], b->ne[1], b->ne[2], b->ne[3]};
    return ctx.new_op(Op::MATMUL, DType::F32, ne, {a, b});
}

namespace ops {

Tensor * matmul_accumulating(Context & ctx, Tensor * acc, Tensor * t) {
    if (t->op != Op::MATMUL || t->params.i[0] != 0 || t->params.i[1] != 0 || t->src[0]->type != DType::F32 ||
        t->ne != acc->ne || !t->is_contiguous()) {
        return nullptr;
    }
    Tensor * mm = ctx.new_op(Op::MATMUL, DType::F32, acc->ne, {t->src[0], t->src[1], acc});
    mm->params.i[1] = 1;
    mm->view_src = acc;  // writes into acc's memory
    return mm;
}

void backward_matmul(Backward & b, Tensor * node, Tensor * grad) {
    TOYLLM_ASSERT(node->params.i[0] == 0 && node->params.i[1] == 0 && "only the plain form is differentiated");
    Tensor * a = node->src[0];
    Tensor * x = node->src[1];
    if (b.needs_grad(x)) b.add_grad(x, matmul_transposed_a(b.ctx, a, grad));
    if (b.needs_grad(a)) {
        // da[k, n] = sum_m x[k, m] * grad[n, m], summed over the batch dims a was broadcast on
        Tensor * da = matmul(b.ctx, transpose(b.ctx, x), transpose(b.ctx, grad));
        b.add_grad(a, da->ne == a->ne ? da : sum_batch_groups(b.ctx, da, a));
    }
}

}  // namespace ops

}  // namespace toyllm
