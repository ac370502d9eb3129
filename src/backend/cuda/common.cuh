// Device-side helpers shared by the kernel files: a strided view of a tensor (shape and
// byte strides copied from the host Tensor, data on the device), index helpers and
// block-wide reductions whose order is fixed (results do not depend on timing).
#pragma once

#include "backend/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace toyllm::cuda {

constexpr int kBlock = 256;  // threads per block of the simple kernels

// A tensor on the device: element (i0, i1, i2, i3) at p + sum i_d * nb[d].
struct View {
    char * p;
    int64_t ne[4];
    int64_t nb[4];

    __device__ float & f(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
        return *reinterpret_cast<float *>(p + i0 * nb[0] + i1 * nb[1] + i2 * nb[2] + i3 * nb[3]);
    }
    // Row r over dims 1..3 (r = i1 + ne1 * (i2 + ne2 * i3)), as the CPU's row().
    __device__ char * row(int64_t r) const {
        const int64_t i1 = r % ne[1], i2 = (r / ne[1]) % ne[2], i3 = r / (ne[1] * ne[2]);
        return p + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
    }
    __device__ float * frow(int64_t r) const { return reinterpret_cast<float *>(row(r)); }
    __device__ int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    __device__ int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

inline View view_of(const Tensor * t, const void * d) {
    View v{};
    v.p = static_cast<char *>(const_cast<void *>(d));
    for (int i = 0; i < 4; ++i) {
        v.ne[i] = t->ne[i];
        v.nb[i] = t->nb[i];
    }
    return v;
}

// Grid size for n work items at `per_block` items per block (capped; kernels loop).
inline unsigned grid_for(int64_t n, int per_block) {
    int64_t g = (n + per_block - 1) / per_block;
    if (g < 1) g = 1;
    if (g > 65535LL * 32) g = 65535LL * 32;
    return static_cast<unsigned>(g);
}

// Splits a linear element index into (i0, i1, i2, i3) of shape ne.
struct Idx4 {
    int64_t i[4];
};
__device__ inline Idx4 unravel(int64_t x, const int64_t * ne) {
    Idx4 r;
    r.i[0] = x % ne[0];
    x /= ne[0];
    r.i[1] = x % ne[1];
    x /= ne[1];
    r.i[2] = x % ne[2];
    r.i[3] = x / ne[2];
    return r;
}

__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `shared` holds 32 values of T.
template <class T> __device__ inline T block_sum(T v, T * shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / 32;
    T s = lane < n_warps ? shared[lane] : T(0);
    s = warp_sum(s);
    return s;
}

__device__ inline float block_max(float v, float * shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int n_warps = blockDim.x / 32;
    float m = lane < n_warps ? shared[lane] : -INFINITY;
    return warp_max(m);
}

__device__ inline float silu_f(float x) { return x / (1.0f + expf(-x)); }

}  // namespace toyllm::cuda
