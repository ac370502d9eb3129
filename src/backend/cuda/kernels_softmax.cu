// softmax over rows and its gradient, cross-entropy and its gradient: one block per
// row, then (for the mean loss) one block combining the rows in a fixed order.
#include "backend/cuda/common.cuh"

#include "toyllm/error.h"

#include <cmath>
#include <string>

namespace toyllm::cuda {

namespace {

// y = softmax(x) over n values, computed by the whole block (y may be the output row).
__device__ void softmax_row(const float * x, float * y, int64_t n, float * fshared, double * dshared) {
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, x[i]);
    m = block_max(m, fshared);
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        y[i] = expf(x[i] - m);
        s += y[i];
    }
    s = block_sum(s, dshared);
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[i] *= inv;
}

__global__ void softmax_kernel(View x, View y) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    for (int64_t r = blockIdx.x; r < y.n_rows(); r += gridDim.x) softmax_row(x.frow(r), y.frow(r), y.ne[0], fshared, dshared);
}

__global__ void softmax_back_kernel(View y, View dy, View dx) {
    __shared__ double shared[32];
    const int64_t n = dx.ne[0];
    for (int64_t r = blockIdx.x; r < dx.n_rows(); r += gridDim.x) {
        const float * yr = y.frow(r);
        const float * g = dy.frow(r);
        float * o = dx.frow(r);
        double dot = 0.0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += static_cast<double>(yr[i]) * g[i];
        dot = block_sum(dot, shared);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = yr[i] * (g[i] - static_cast<float>(dot));
    }
}

__device__ int32_t target_of(const View & targets, int64_t r) {
    const int64_t i0 = r % targets.ne[0], i1 = r / targets.ne[0];
    return *reinterpret_cast<const int32_t *>(targets.p + i0 * targets.nb[0] + i1 * targets.nb[1]);
}

// Per-row loss (NaN marks an ignored row or a target outside the vocabulary, which the
// host checks beforehand when it can read the targets).
__global__ void cross_entropy_rows(View logits, View targets, int32_t ignore, double * loss) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    const int64_t n = logits.ne[0];
    for (int64_t r = blockIdx.x; r < logits.n_rows(); r += gridDim.x) {
        const int32_t t = target_of(targets, r);
        if (t == ignore || t < 0 || t >= n) {
            if (threadIdx.x == 0) loss[r] = NAN;
            continue;
        }
        const float * x = logits.frow(r);
        float m = -INFINITY;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, x[i]);
        m = block_max(m, fshared);
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += exp(static_cast<double>(x[i] - m));
        s = block_sum(s, dshared);
        if (threadIdx.x == 0) loss[r] = log(s) + m - x[t];
    }
}

__global__ void cross_entropy_mean(const double * loss, int64_t n_rows, float * out) {
    __shared__ double dshared[32];
    double s = 0.0, n_valid = 0.0;
    for (int64_t r = threadIdx.x; r < n_rows; r += blockDim.x) {
        if (isnan(loss[r])) continue;
        s += loss[r];
        n_valid += 1.0;
    }
    s = block_sum(s, dshared);
    n_valid = block_sum(n_valid, dshared);
    if (threadIdx.x == 0) *out = n_valid > 0 ? static_cast<float>(s / n_valid) : 0.0f;
}

__global__ void count_valid(View targets, int64_t n_rows, int32_t ignore, float * n_valid) {
    __shared__ double dshared[32];
    double c = 0.0;
    for (int64_t r = threadIdx.x; r < n_rows; r += blockDim.x) c += target_of(targets, r) != ignore ? 1.0 : 0.0;
    c = block_sum(c, dshared);
    if (threadIdx.x == 0) *n_valid = static_cast<float>(c);
}

// dx = (softmax - onehot) * dloss / n_valid
__global__ void cross_entropy_back_kernel(View logits, View targets, View dx, int32_t ignore, const float * dloss, const float * n_valid) {
    __shared__ float fshared[32];
    __shared__ double dshared[32];
    const int64_t n = dx.ne[0];
    const float c = *n_valid > 0 ? *dloss / *n_valid : 0.0f;
    for (int64_t r = blockIdx.x; r < dx.n_rows(); r += gridDim.x) {
        float * o = dx.frow(r);
        const int32_t t = target_of(targets, r);
        if (t == ignore || t < 0 || t >= n) {
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = 0.0f;
            continue;
        }
        softmax_row(logits.frow(r), o, n, fshared, dshared);
        __syncthreads();
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = (i == t ? o[i] - 1.0f : o[i]) * c;
    }
}

// Host check of the targets when they are a leaf (their host memory is current), with
// the CPU kernel's message.
void check_targets(const Tensor * targets, int32_t ignore, int64_t n_vocab) {
    if (targets->op != Op::NONE || targets->data == nullptr) return;
    for (int64_t r = 0; r < targets->n_elements(); ++r) {
        const int64_t i0 = r % targets->ne[0], i1 = r / targets->ne[0];
        const int32_t t = *reinterpret_cast<const int32_t *>(static_cast<const uint8_t *>(targets->data) + i0 * targets->nb[0] + i1 * targets->nb[1]);
        if (t != ignore && (t < 0 || t >= n_vocab)) {
            throw Error("cross_entropy: target " + std::to_string(t) + " outside the vocabulary of " + std::to_string(n_vocab));
        }
    }
}

}  // namespace

void kernel_softmax(const Exec & e, const NodeArgs & a) {
    softmax_kernel<<<grid_for(a.node->n_rows(), 1), kBlock, 0, e.stream>>>(view_of(a.node->src[0], a.src[0]), view_of(a.node, a.out));
    check_launch("softmax");
}

void kernel_softmax_back(const Exec & e, const NodeArgs & a) {
    softmax_back_kernel<<<grid_for(a.node->n_rows(), 1), kBlock, 0, e.stream>>>(
        view_of(a.node->src[0], a.src[0]), view_of(a.node->src[1], a.src[1]), view_of(a.node, a.out));
    check_launch("softmax_back");
}

void kernel_cross_entropy(const Exec & e, const NodeArgs & a) {
    const Tensor * logits = a.node->src[0];
    const int64_t n_rows = logits->n_rows();
    check_targets(a.node->src[1], a.node->params.i[0], logits->ne[0]);
    auto * loss = static_cast<double *>(e.scratch(static_cast<size_t>(n_rows) * sizeof(double)));
    cross_entropy_rows<<<grid_for(n_rows, 1), kBlock, 0, e.stream>>>(view_of(logits, a.src[0]), view_of(a.node->src[1], a.src[1]),
                                                                   a.node->params.i[0], loss);
    check_launch("cross_entropy");
    cross_entropy_mean<<<1, 1024, 0, e.stream>>>(loss, n_rows, static_cast<float *>(a.out));
    check_launch("cross_entropy (mean)");
}

void kernel_cross_entropy_back(const Exec & e, const NodeArgs & a) {
    const Tensor * logits = a.node->src[0];
    const View targets = view_of(a.node->src[1], a.src[1]);
    auto * n_valid = static_cast<float *>(e.scratch(sizeof(float)));
    count_valid<<<1, 1024, 0, e.stream>>>(targets, logits->n_rows(), a.node->params.i[0], n_valid);
    check_launch("cross_entropy_back (count)");
    cross_entropy_back_kernel<<<grid_for(logits->n_rows(), 1), kBlock, 0, e.stream>>>(
        view_of(logits, a.src[0]), targets, view_of(a.node, a.out), a.node->params.i[0], static_cast<const float *>(a.src[2]), n_valid);
    check_launch("cross_entropy_back");
}

}  // namespace toyllm::cuda
