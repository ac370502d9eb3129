// CUDA kernels, one host entry per op (kernels_<family>.cu), listed against Op::COUNT in
// kernels.cpp. The backend passes each node with the device addresses of its output and
// sources; the tensors themselves (shapes, strides, params) stay the host's.
#pragma once

#include "toyllm/tensor.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace toyllm::cuda {

class DeviceAllocator;

// What a kernel gets: the node, device addresses, and the backend's stream, cuBLAS
// handle and scratch (valid until the next node: every kernel runs on the one stream).
struct Exec {
    cudaStream_t stream;
    cublasHandle_t cublas;
    void * (*scratch_fn)(void * self, size_t bytes);
    void * scratch_self;
    int sm_count;
    bool capturing = false;  // launches go into a CUDA graph: cuBLAS calls throw NotCapturable

    void * scratch(size_t bytes) const { return scratch_fn(scratch_self, bytes); }
};

// Thrown by a kernel that cannot be recorded into a CUDA graph (cuBLAS, which may
// allocate its workspace); the backend then runs the graph's nodes one by one.
struct NotCapturable {};

struct NodeArgs {
    const Tensor * node;
    void * out;                   // device memory of the node
    const void * src[kMaxSrc];    // device memory of each source (nullptr where absent)
};

using CudaKernel = void (*)(const Exec & e, const NodeArgs & a);

// The kernel of `op` (nullptr for NONE and VIEW, which compute nothing).
CudaKernel cuda_kernel(Op op);

// Storage types the device kernels read (matmul weights, embedding tables).
bool device_type_supported(DType t);

// Throws toyllm::Error naming `what` when the last launch or call failed.
void check(cudaError_t err, const char * what);
void check_launch(const char * what);

// Families (kernels_<family>.cu).
void kernel_cont(const Exec & e, const NodeArgs & a);
void kernel_acc(const Exec & e, const NodeArgs & a);
void kernel_concat(const Exec & e, const NodeArgs & a);
void kernel_add(const Exec & e, const NodeArgs & a);
void kernel_mul(const Exec & e, const NodeArgs & a);
void kernel_scale(const Exec & e, const NodeArgs & a);
void kernel_sum(const Exec & e, const NodeArgs & a);
void kernel_sum_to(const Exec & e, const NodeArgs & a);
void kernel_repeat(const Exec & e, const NodeArgs & a);
void kernel_silu(const Exec & e, const NodeArgs & a);
void kernel_silu_back(const Exec & e, const NodeArgs & a);
void kernel_swiglu(const Exec & e, const NodeArgs & a);
void kernel_get_rows(const Exec & e, const NodeArgs & a);
void kernel_get_rows_back(const Exec & e, const NodeArgs & a);
void kernel_matmul(const Exec & e, const NodeArgs & a);
// The decode matrix-vector product (kernels_matvec.cu) when a's and b's layouts allow it;
// false (nothing launched) otherwise.
bool launch_matvec(const Exec & e, const NodeArgs & a);
void kernel_rms_norm(const Exec & e, const NodeArgs & a);
void kernel_rms_norm_back(const Exec & e, const NodeArgs & a);
void kernel_rope(const Exec & e, const NodeArgs & a);
void kernel_attention(const Exec & e, const NodeArgs & a);
void kernel_attention_back(const Exec & e, const NodeArgs & a);
void kernel_causal_mask(const Exec & e, const NodeArgs & a);
void kernel_softmax(const Exec & e, const NodeArgs & a);
void kernel_softmax_back(const Exec & e, const NodeArgs & a);
void kernel_cross_entropy(const Exec & e, const NodeArgs & a);
void kernel_cross_entropy_back(const Exec & e, const NodeArgs & a);

}  // namespace toyllm::cuda
