// The op table: each op's name and gradient rule. Builders and rules live in
// src/ops/<family>.cpp; backends add kernels in their own tables.
#pragma once

#include "toyllm/ops.h"

#include <unordered_map>
#include <unordered_set>

namespace toyllm::ops {

// State of one build_backward: which nodes need gradients and the gradient of each so far.
class Backward {
  public:
    explicit Backward(Context & c) : ctx(c) {}

    Context & ctx;

    // Adds g to the gradient of t (ignored when t needs none). g must have t's shape.
    void add_grad(Tensor * t, Tensor * g);
    bool needs_grad(const Tensor * t) const { return t != nullptr && needs_.count(t) != 0; }
    Tensor * grad_of(const Tensor * t) const;

    std::unordered_set<const Tensor *> needs_;
    std::unordered_map<const Tensor *, Tensor *> grads_;
};

// Adds to `b` the gradients of node's sources given dL/dnode = grad.
using BackwardFn = void (*)(Backward & b, Tensor * node, Tensor * grad);

struct OpInfo {
    const char * name;
    BackwardFn backward;  // nullptr: not differentiable (leaves, backward-only ops)
};

const OpInfo & op_info(Op op);

// ---- builders used only by gradient rules ------------------------------------------

// Zeros shaped like `shape_like` with g added into the window starting at `begin`
// (per dimension, in elements): the gradient of slice().
Tensor * acc_window(Context & ctx, const Tensor * shape_like, std::array<int64_t, 4> begin, Tensor * g);
Tensor * get_rows_back(Context & ctx, Tensor * grad, Tensor * ids, const Tensor * table);
Tensor * rms_norm_back(Context & ctx, Tensor * x, Tensor * dy, float eps);
Tensor * silu_back(Context & ctx, Tensor * x, Tensor * dy);
Tensor * softmax_back(Context & ctx, Tensor * y, Tensor * dy);
Tensor * cross_entropy_back(Context & ctx, Tensor * logits, Tensor * targets, Tensor * dloss, int32_t ignore_index);
// Packed [dq | dk | dv]; views of it give each part.
Tensor * attention_back(Context & ctx, Tensor * node, Tensor * dout);
// In-place a += b (the node shares a's memory): gradient accumulation.
Tensor * add_inplace(Context & ctx, Tensor * a, Tensor * b);
// dst += g in place, for a param's gradient buffer: a sum of gradients (ADD nodes) is
// accumulated term by term; a term that is a plain f32 matmul (a weight gradient) or a
// scatter-add of rows (an embedding gradient) is recomputed in its accumulating form,
// writing straight into dst, so neither the term nor the sum is ever stored. Returns
// the last in-place node.
Tensor * accumulate_grad(Context & ctx, Tensor * dst, Tensor * g);
// The accumulating forms: acc += t's value, as a node viewing acc; nullptr when t is
// not of that kind.
Tensor * matmul_accumulating(Context & ctx, Tensor * acc, Tensor * t);
Tensor * get_rows_back_accumulating(Context & ctx, Tensor * acc, Tensor * t);

// t itself when its rows are contiguous (nb[0] is the element size), else cont(t).
Tensor * rows_contiguous(Context & ctx, Tensor * t);
// Throws ShapeError "op: message (a [..], b [..])".
[[noreturn]] void shape_error(const char * op, const std::string & msg, const Tensor * a, const Tensor * b = nullptr);

// Backward rules, one per family file.
void backward_view(Backward & b, Tensor * node, Tensor * grad);
void backward_cont(Backward & b, Tensor * node, Tensor * grad);
void backward_get_rows(Backward & b, Tensor * node, Tensor * grad);
void backward_matmul(Backward & b, Tensor * node, Tensor * grad);
void backward_add(Backward & b, Tensor * node, Tensor * grad);
void backward_mul(Backward & b, Tensor * node, Tensor * grad);
void backward_scale(Backward & b, Tensor * node, Tensor * grad);
void backward_sum(Backward & b, Tensor * node, Tensor * grad);
void backward_sum_to(Backward & b, Tensor * node, Tensor * grad);
void backward_repeat(Backward & b, Tensor * node, Tensor * grad);
void backward_rms_norm(Backward & b, Tensor * node, Tensor * grad);
void backward_rope(Backward & b, Tensor * node, Tensor * grad);
void backward_attention(Backward & b, Tensor * node, Tensor * grad);
void backward_causal_mask(Backward & b, Tensor * node, Tensor * grad);
void backward_silu(Backward & b, Tensor * node, Tensor * grad);
void backward_swiglu(Backward & b, Tensor * node, Tensor * grad);
void backward_softmax(Backward & b, Tensor * node, Tensor * grad);
void backward_cross_entropy(Backward & b, Tensor * node, Tensor * grad);
void backward_concat(Backward & b, Tensor * node, Tensor * grad);

}  // namespace toyllm::ops
