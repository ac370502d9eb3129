// softmax over rows, its gradient, and cross-entropy with its gradient. Sums over rows
// are made per row, then combined in row order by one thread.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_math.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace toyllm::cpu {

namespace {

float row_max(const float * x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

// y = exp(x - max x) over n values (y may be x); the max and the sum of y.
struct ExpRow {
    float m;
    double sum;
};
ExpRow exp_row(const float * x, float * y, int64_t n) {
    const float m = row_max(x, n);
    if (y != x) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
    return {m, exp_shifted_sum(y, n, m)};
}

// y = softmax(x) over n values (y may be x).
void softmax_row(const float * x, float * y, int64_t n) {
    const float inv = static_cast<float>(1.0 / exp_row(x, y, n).sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

int32_t target_of(const Tensor * targets, int64_t r) {
    return *at<int32_t>(targets, r % targets->ne[0], r / targets->ne[0], 0, 0);
}

}  // namespace

void kernel_softmax(const KernelCtx & k, Tensor * node) {
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) softmax_row(row<float>(node->src[0], r), row<float>(node, r), node->ne[0]);
}

void kernel_softmax_back(const KernelCtx & k, Tensor * node) {
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const float * y = row<float>(node->src[0], r);
        const float * dy = row<float>(node->src[1], r);
        float * dx = row<float>(node, r);
        double dot = 0.0;
        for (int64_t i = 0; i < node->ne[0]; ++i) dot += static_cast<double>(y[i]) * dy[i];
        for (int64_t i = 0; i < node->ne[0]; ++i) dx[i] = y[i] * (dy[i] - static_cast<float>(dot));
    }
}

// Per-row losses, then a row of exponentials per thread.
size_t scratch_cross_entropy(const Tensor * node, int nth) {
    const Tensor * logits = node->src[0];
    return static_cast<size_t>(logits->n_rows()) * sizeof(double) + static_cast<size_t>(nth * logits->ne[0]) * sizeof(float);
}

// Phase 0: per-row loss (NaN marks an ignored row); phase 1: the mean, in row order.
void kernel_cross_entropy(const KernelCtx & k, Tensor * node) {
    const Tensor * logits = node->src[0];
    const Tensor * targets = node->src[1];
    const int32_t ignore = node->params.i[0];
    auto * loss = reinterpret_cast<double *>(k.scratch);
    const int64_t n_rows = logits->n_rows();
    const int64_t n_vocab = logits->ne[0];
    if (k.phase == 0) {
        const RowRange rr = split_rows(n_rows, k.ith, k.nth);
        for (int64_t r = rr.begin; r < rr.end; ++r) {
            const int32_t t = target_of(targets, r);
            if (t == ignore) {
                loss[r] = std::numeric_limits<double>::quiet_NaN();
                continue;
            }
            if (t < 0 || t >= n_vocab) throw Error("cross_entropy: target " + std::to_string(t) + " outside the vocabulary of " + std::to_string(n_vocab));
            const float * x = row<float>(logits, r);
            float * e = reinterpret_cast<float *>(loss + n_rows) + static_cast<int64_t>(k.ith) * n_vocab;
            const ExpRow er = exp_row(x, e, n_vocab);
            loss[r] = std::log(er.sum) + er.m - x[t];  // log-sum-exp minus the target's logit
        }
        return;
    }
    if (k.ith != 0) return;
    double s = 0.0;
    int64_t n_valid = 0;
    for (int64_t r = 0; r < n_rows; ++r) {
        if (std::isnan(loss[r])) continue;
        s += loss[r];
        ++n_valid;
    }
    *node->data_as<float>() = n_valid > 0 ? static_cast<float>(s / static_cast<double>(n_valid)) : 0.0f;
}

size_t scratch_cross_entropy_back(const Tensor *, int) { return sizeof(int64_t); }

// Phase 0: thread 0 counts the targets that count; phase 1: (softmax - onehot) * dloss / n.
void kernel_cross_entropy_back(const KernelCtx & k, Tensor * node) {
    const Tensor * logits = node->src[0];
    const Tensor * targets = node->src[1];
    const int32_t ignore = node->params.i[0];
    auto * n_valid = reinterpret_cast<int64_t *>(k.scratch);
    const int64_t n_rows = logits->n_rows();
    if (k.phase == 0) {
        if (k.ith == 0) {
            *n_valid = 0;
            for (int64_t r = 0; r < n_rows; ++r) *n_valid += target_of(targets, r) != ignore;
        }
        return;
    }
    const float dloss = *node->src[2]->data_as<float>();
    const float c = *n_valid > 0 ? dloss / static_cast<float>(*n_valid) : 0.0f;
    const RowRange rr = split_rows(n_rows, k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        float * dx = row<float>(node, r);
        const int32_t t = target_of(targets, r);
        if (t == ignore) {
            for (int64_t i = 0; i < node->ne[0]; ++i) dx[i] = 0.0f;
            continue;
        }
        softmax_row(row<float>(logits, r), dx, node->ne[0]);
        dx[t] -= 1.0f;
        for (int64_t i = 0; i < node->ne[0]; ++i) dx[i] *= c;
    }
}

}  // namespace toyllm::cpu
