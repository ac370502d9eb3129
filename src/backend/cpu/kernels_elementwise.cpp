// Element-wise kernels, copies and reductions. Rows (dims 1..3) are split between
// threads; operands may be strided in every dim, including dim 0.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_math.h"
#include "toyllm/half.h"

#include <cstring>

namespace toyllm::cpu {

namespace {

struct Index {
    int64_t i1, i2, i3;
};

Index row_index(const Tensor * t, int64_t r) {
    return {r % t->ne[1], (r / t->ne[1]) % t->ne[2], r / (t->ne[1] * t->ne[2])};
}

float load(const Tensor * t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) { return *at<float>(t, i0, i1, i2, i3); }

// out = f(a, b) with b tiled over a; rows where both operands are contiguous and of the
// same length go through row_fn(a, b, out, n) instead.
template <class F, class R> void binary_rows(const KernelCtx & k, Tensor * node, F f, R row_fn) {
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    const int64_t n0 = node->ne[0];
    const bool fast = a->nb[0] == 4 && b->nb[0] == 4 && b->ne[0] == n0;
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const Index x = row_index(node, r);
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        const float * pa = at<float>(a, 0, x.i1, x.i2, x.i3);
        const float * pb = at<float>(b, 0, x.i1 % b->ne[1], x.i2 % b->ne[2], x.i3 % b->ne[3]);
        if (fast) {
            row_fn(pa, pb, y, n0);
        } else {
            for (int64_t i = 0; i < n0; ++i) {
                y[i] = f(load(a, i, x.i1, x.i2, x.i3), load(b, i % b->ne[0], x.i1 % b->ne[1], x.i2 % b->ne[2], x.i3 % b->ne[3]));
            }
        }
    }
}

template <class F> void binary_rows(const KernelCtx & k, Tensor * node, F f) {
    binary_rows(k, node, f, [&f](const float * a, const float * b, float * y, int64_t n) {
        for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
    });
}

// out = f(a); contiguous rows go through row_fn(a, out, n) instead.
template <class F, class R> void unary_rows(const KernelCtx & k, Tensor * node, F f, R row_fn) {
    const Tensor * a = node->src[0];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const Index x = row_index(node, r);
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        if (a->nb[0] == 4) {
            row_fn(at<float>(a, 0, x.i1, x.i2, x.i3), y, node->ne[0]);
        } else {
            for (int64_t i = 0; i < node->ne[0]; ++i) y[i] = f(load(a, i, x.i1, x.i2, x.i3));
        }
    }
}

template <class F> void unary_rows(const KernelCtx & k, Tensor * node, F f) {
    unary_rows(k, node, f, [&f](const float * a, float * y, int64_t n) {
        for (int64_t i = 0; i < n; ++i) y[i] = f(a[i]);
    });
}

}  // namespace

void kernel_cont(const KernelCtx & k, Tensor * node) {
    unary_rows(k, node, [](float v) { return v; });
}

void kernel_add(const KernelCtx & k, Tensor * node) {
    binary_rows(k, node, [](float a, float b) { return a + b; });
}

void kernel_mul(const KernelCtx & k, Tensor * node) {
    binary_rows(k, node, [](float a, float b) { return a * b; });
}

void kernel_swiglu(const KernelCtx & k, Tensor * node) {
    binary_rows(k, node, [](float g, float u) { return silu_value(g) * u; }, silu_mul);
}

void kernel_silu_back(const KernelCtx & k, Tensor * node) { binary_rows(k, node, silu_grad_value, silu_back); }

void kernel_scale(const KernelCtx & k, Tensor * node) {
    const float s = node->params.f[0];
    unary_rows(k, node, [s](float v) { return v * s; });
}

void kernel_silu(const KernelCtx & k, Tensor * node) {
    unary_rows(k, node, silu_value, [](const float * a, float * y, int64_t n) { silu_mul(a, nullptr, y, n); });
}

// Phase 0: each row's sum (in order) into scratch; phase 1: thread 0 adds the rows in
// order. The result is the same for any thread count.
size_t scratch_sum(const Tensor * node, int) { return static_cast<size_t>(node->src[0]->n_rows()) * sizeof(double); }

void kernel_sum(const KernelCtx & k, Tensor * node) {
    const Tensor * a = node->src[0];
    auto * partial = reinterpret_cast<double *>(k.scratch);
    if (k.phase == 0) {
        const RowRange rr = split_rows(a->n_rows(), k.ith, k.nth);
        for (int64_t r = rr.begin; r < rr.end; ++r) {
            const Index x = row_index(a, r);
            double s = 0.0;
            for (int64_t i = 0; i < a->ne[0]; ++i) s += load(a, i, x.i1, x.i2, x.i3);
            partial[r] = s;
        }
    } else if (k.ith == 0) {
        double s = 0.0;
        for (int64_t r = 0; r < a->n_rows(); ++r) s += partial[r];
        *node->data_as<float>() = static_cast<float>(s);
    }
}

// out[j] = sum of a over every tile position that maps to j; outputs are split between
// threads, each summed over the tiles in a fixed order.
void kernel_sum_to(const KernelCtx & k, Tensor * node) {
    const Tensor * a = node->src[0];
    const int64_t rep[4] = {a->ne[0] / node->ne[0], a->ne[1] / node->ne[1], a->ne[2] / node->ne[2], a->ne[3] / node->ne[3]};
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const Index x = row_index(node, r);
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        for (int64_t i0 = 0; i0 < node->ne[0]; ++i0) {
            double s = 0.0;
            for (int64_t t3 = 0; t3 < rep[3]; ++t3)
                for (int64_t t2 = 0; t2 < rep[2]; ++t2)
                    for (int64_t t1 = 0; t1 < rep[1]; ++t1)
                        for (int64_t t0 = 0; t0 < rep[0]; ++t0)
                            s += load(a, i0 + t0 * node->ne[0], x.i1 + t1 * node->ne[1], x.i2 + t2 * node->ne[2], x.i3 + t3 * node->ne[3]);
            y[i0] = static_cast<float>(s);
        }
    }
}

void kernel_repeat(const KernelCtx & k, Tensor * node) {
    const Tensor * a = node->src[0];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const Index x = row_index(node, r);
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        for (int64_t i = 0; i < node->ne[0]; ++i) y[i] = load(a, i % a->ne[0], x.i1 % a->ne[1], x.i2 % a->ne[2], x.i3 % a->ne[3]);
    }
}

// out = zeros (or src[0]) with src[1] added (params.i[4] == 0) or written (== 1) into
// the window starting at params.i[0..3]. In place (out shares src[0]'s memory) only the
// window's rows are touched.
void kernel_acc(const KernelCtx & k, Tensor * node) {
    const Tensor * base = node->src[0];
    const Tensor * g = node->src[1];
    const int64_t b0 = node->params.i[0], b1 = node->params.i[1], b2 = node->params.i[2], b3 = node->params.i[3];
    if (node->type == DType::F16) {  // write_window into an f16 cache: in place, set
        const RowRange rr = split_rows(g->n_rows(), k.ith, k.nth);
        for (int64_t r = rr.begin; r < rr.end; ++r) {
            const Index w = row_index(g, r);
            uint16_t * y = at<uint16_t>(node, b0, w.i1 + b1, w.i2 + b2, w.i3 + b3);
            for (int64_t j0 = 0; j0 < g->ne[0]; ++j0) y[j0] = fp32_to_fp16(load(g, j0, w.i1, w.i2, w.i3));
        }
        return;
    }
    const bool set = node->params.i[4] != 0;
    const bool in_place = base != nullptr && base->data == node->data;
    const int64_t n_rows = in_place ? g->n_rows() : node->n_rows();
    const RowRange rr = split_rows(n_rows, k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        Index x;
        if (in_place) {
            const Index w = row_index(g, r);
            x = {w.i1 + b1, w.i2 + b2, w.i3 + b3};
        } else {
            x = row_index(node, r);
        }
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        if (!in_place) {
            for (int64_t i = 0; i < node->ne[0]; ++i) y[i] = base ? load(base, i, x.i1, x.i2, x.i3) : 0.0f;
        }
        const int64_t j1 = x.i1 - b1, j2 = x.i2 - b2, j3 = x.i3 - b3;
        if (j1 < 0 || j2 < 0 || j3 < 0 || j1 >= g->ne[1] || j2 >= g->ne[2] || j3 >= g->ne[3]) continue;
        for (int64_t j0 = 0; j0 < g->ne[0]; ++j0) {
            const float v = load(g, j0, j1, j2, j3);
            y[b0 + j0] = set ? v : y[b0 + j0] + v;
        }
    }
}

void kernel_concat(const KernelCtx & k, Tensor * node) {
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    const int dim = node->params.i[0];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const Index x = row_index(node, r);
        float * y = at<float>(node, 0, x.i1, x.i2, x.i3);
        for (int64_t i = 0; i < node->ne[0]; ++i) {
            int64_t idx[4] = {i, x.i1, x.i2, x.i3};
            const Tensor * s = a;
            if (idx[dim] >= a->ne[dim]) {
                idx[dim] -= a->ne[dim];
                s = b;
            }
            y[i] = load(s, idx[0], idx[1], idx[2], idx[3]);
        }
    }
}

}  // namespace toyllm::cpu
