// get_rows: the embedding lookup, and its gradient, a scatter-add of rows
// (params.i[0] = 1: added into src[2]'s memory instead of a zeroed tensor; see
// accumulate_grad).
#include "ops/op_table.h"

namespace toyllm {

using ops::Backward;
using ops::shape_error;

Tensor * get_rows(Context & ctx, Tensor * table, Tensor * ids) {
    if (ids->type != DType::I32) shape_error("get_rows", "ids must be i32", table, ids);
    if (table->ne[2] != 1 || table->ne[3] != 1) shape_error("get_rows", "table must be 2-D", table, ids);
    if (ids->ne[2] != 1 || ids->ne[3] != 1) shape_error("get_rows", "ids must be at most 2-D", table, ids);
    if (table->nb[0] != static_cast<int64_t>(dtype_info(table->type).type_size)) shape_error("get_rows", "table rows must be contiguous", table);
    const int64_t ne[] = {table->ne[0], ids->ne[0], ids->ne[1]};
    return ctx.new_op(Op::GET_ROWS, DType::F32, ne, {table, ids});
}

namespace ops {

Tensor * get_rows_back(Context & ctx, Tensor * grad, Tensor * ids, const Tensor * table) {
    return ctx.new_op(Op::GET_ROWS_BACK, DType::F32, table->ne, {rows_contiguous(ctx, grad), ids});
}

Tensor * get_rows_back_accumulating(Context & ctx, Tensor * acc, Tensor * t) {
    if (t->op != Op::GET_ROWS_BACK || t->params.i[0] != 0 || t->ne != acc->ne) return nullptr;
    Tensor * out = ctx.new_op(Op::GET_ROWS_BACK, DType::F32, acc->ne, {t->src[0], t->src[1], acc});
    out->params.i[0] = 1;
    out->view_src = acc;  // adds the rows into acc's memory
    return out;
}

void backward_get_rows(Backward & b, Tensor * node, Tensor * grad) {
    b.add_grad(node->src[0], get_rows_back(b.ctx, grad, node->src[1], node->src[0]));
}

}  // namespace ops

}  // namespace toyllm
