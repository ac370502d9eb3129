// rms_norm and its gradient, one row (ne[0] values) at a time.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

#include <cmath>

namespace toyllm::cpu {

namespace {

// 1 / sqrt(mean(x^2) + eps), the squares summed in double as ggml does, in eight
// interleaved partial sums: one chain of dependent double additions took ~4 cycles per
// value (about 2 us for a 2048-wide decode row, 45 rows per b1b token).
float inv_rms(const float * x, int64_t n, float eps) {
    constexpr int kParts = 8;
    double part[kParts] = {};
    int64_t i = 0;
    for (; i + kParts <= n; i += kParts) {
        for (int j = 0; j < kParts; ++j) part[j] += static_cast<double>(x[i + j] * x[i + j]);
    }
    double s = 0.0;
    for (const double p : part) s += p;
    for (; i < n; ++i) s += static_cast<double>(x[i] * x[i]);
    return 1.0f / std::sqrt(static_cast<float>(s / static_cast<double>(n)) + eps);
}

}  // namespace

void kernel_rms_norm(const KernelCtx & k, Tensor * node) {
    const Tensor * x = node->src[0];
    const Tensor * w = node->src[1];
    const float eps = node->params.f[0];
    const int64_t n = node->ne[0];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const float * xr = row<float>(x, r);
        float * y = row<float>(node, r);
        const float s = inv_rms(xr, n, eps);
        if (w != nullptr) {
            const float * pw = w->data_as<float>();
            for (int64_t i = 0; i < n; ++i) y[i] = xr[i] * s * pw[i];
        } else {
            for (int64_t i = 0; i < n; ++i) y[i] = xr[i] * s;
        }
    }
}

// y = x r with r = (mean(x^2) + eps)^-1/2:  dx = r dy - r^3 x mean(x dy)
void kernel_rms_norm_back(const KernelCtx & k, Tensor * node) {
    const Tensor * x = node->src[0];
    const Tensor * dy = node->src[1];
    const float eps = node->params.f[0];
    const int64_t n = node->ne[0];
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const float * xr = row<float>(x, r);
        const float * g = row<float>(dy, r);
        float * out = row<float>(node, r);
        const float s = inv_rms(xr, n, eps);
        double dot = 0.0;
        for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(xr[i]) * g[i];
        const float c = static_cast<float>(dot / static_cast<double>(n)) * s * s * s;
        for (int64_t i = 0; i < n; ++i) out[i] = s * g[i] - c * xr[i];
    }
}

}  // namespace toyllm::cpu
