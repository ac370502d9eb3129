// rms_norm and its gradient: one block per row, sums in double as on the CPU.
#include "backend/cuda/common.cuh"

namespace toyllm::cuda {

namespace {

__device__ float inv_rms(const float * x, int64_t n, float eps, double * shared) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(x[i]) * x[i];
    s = block_sum(s, shared);
    return 1.0f / sqrtf(static_cast<float>(s / static_cast<double>(n)) + eps);
}

__global__ void rms_norm_kernel(View x, View y, const float * w, float eps) {
    __shared__ double shared[32];
    const int64_t n = y.ne[0];
    for (int64_t r = blockIdx.x; r < y.n_rows(); r += gridDim.x) {
        const float * xr = x.frow(r);
        float * yr = y.frow(r);
        const float s = inv_rms(xr, n, eps, shared);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w != nullptr ? xr[i] * s * w[i] : xr[i] * s;
    }
}

// dx = r dy - r^3 x mean(x dy)
__global__ void rms_norm_back_kernel(View x, View dy, View out, float eps) {
    __shared__ double shared[32];
    const int64_t n = out.ne[0];
    for (int64_t r = blockIdx.x; r < out.n_rows(); r += gridDim.x) {
        const float * xr = x.frow(r);
        const float * g = dy.frow(r);
        float * o = out.frow(r);
        const float s = inv_rms(xr, n, eps, shared);
        double dot = 0.0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += static_cast<double>(xr[i]) * g[i];
        dot = block_sum(dot, shared);
        const float c = static_cast<float>(dot / static_cast<double>(n)) * s * s * s;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = s * g[i] - c * xr[i];
    }
}

}  // namespace

void kernel_rms_norm(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    const auto * w = static_cast<const float *>(a.src[1]);
    rms_norm_kernel<<<grid_for(node->n_rows(), 1), kBlock, 0, e.stream>>>(view_of(node->src[0], a.src[0]), view_of(node, a.out), w,
                                                                         node->params.f[0]);
    check_launch("rms_norm");
}

void kernel_rms_norm_back(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    rms_norm_back_kernel<<<grid_for(node->n_rows(), 1), kBlock, 0, e.stream>>>(
        view_of(node->src[0], a.src[0]), view_of(node->src[1], a.src[1]), view_of(node, a.out), node->params.f[0]);
    check_launch("rms_norm_back");
}

}  // namespace toyllm::cuda
