#include "ops/op_table.h"

#include <array>
#include <vector>

namespace toyllm::ops {

namespace {

constexpr std::array<OpInfo, static_cast<size_t>(Op::COUNT)> kOps = {{
    {"none", nullptr},
    {"view", backward_view},
    {"cont", backward_cont},
    {"get_rows", backward_get_rows},
    {"get_rows_back", nullptr},
    {"matmul", backward_matmul},
    {"add", backward_add},
    {"mul", backward_mul},
    {"scale", backward_scale},
    {"sum", backward_sum},
    {"sum_to", backward_sum_to},
    {"repeat", backward_repeat},
    {"rms_norm", backward_rms_norm},
    {"rms_norm_back", nullptr},
    {"rope", backward_rope},
    {"attention", backward_attention},
    {"attention_back", nullptr},
    {"causal_mask", backward_causal_mask},
    {"silu", backward_silu},
    {"silu_back", nullptr},
    {"swiglu", backward_swiglu},
    {"softmax", backward_softmax},
    {"softmax_back", nullptr},
    {"cross_entropy", backward_cross_entropy},
    {"cross_entropy_back", nullptr},
    {"concat", backward_concat},
    {"acc", nullptr},
}};
static_assert(static_cast<int>(Op::COUNT) == 27, "add the new op to kOps (and to every backend's kernel table)");

}  // namespace

const OpInfo & op_info(Op op) { return kOps[static_cast<size_t>(op)]; }

void Backward::add_grad(Tensor * t, Tensor * g) {
    if (!needs_grad(t)) return;
    TOYLLM_ASSERT(g->ne == t->ne);
    auto it = grads_.find(t);
    if (it == grads_.end()) {
        grads_[t] = g;
    } else {
        it->second = add(ctx, it->second, g);
    }
}

Tensor * Backward::grad_of(const Tensor * t) const {
    const auto it = grads_.find(t);
    return it == grads_.end() ? nullptr : it->second;
}

namespace {

// The terms of a sum of same-shaped gradients, in the order the sum was built.
void sum_terms(Tensor * g, std::vector<Tensor *> & out) {
    if (g->op == Op::ADD && g->view_src == nullptr && g->src[0]->ne == g->ne && g->src[1]->ne == g->ne) {
        sum_terms(g->src[0], out);
        sum_terms(g->src[1], out);
    } else {
        out.push_back(g);
    }
}

}  // namespace

Tensor * accumulate_grad(Context & ctx, Tensor * dst, Tensor * g) {
    if (!dst->is_contiguous() || dst->ne != g->ne || dst->type != DType::F32) {
        shape_error("accumulate_grad", "dst must be contiguous f32 shaped like g", dst, g);
    }
    std::vector<Tensor *> terms;
    sum_terms(g, terms);
    Tensor * acc = dst;
    for (Tensor * t : terms) {
        Tensor * next = matmul_accumulating(ctx, acc, t);
        if (next == nullptr) next = get_rows_back_accumulating(ctx, acc, t);
        acc = next != nullptr ? next : add_inplace(ctx, acc, t);
    }
    return acc;
}

Tensor * rows_contiguous(Context & ctx, Tensor * t) {
    return t->nb[0] == static_cast<int64_t>(dtype_info(t->type).type_size) ? t : cont(ctx, t);
}

void shape_error(const char * op, const std::string & msg, const Tensor * a, const Tensor * b) {
    std::string s = std::string(op) + ": " + msg + " (";
    if (a) s += (a->name.empty() ? "a" : "'" + a->name + "'") + " " + shape_str(*a);
    if (b) s += ", " + (b->name.empty() ? std::string("b") : "'" + b->name + "'") + " " + shape_str(*b);
    throw ShapeError(s + ")");
}

}  // namespace toyllm::ops
