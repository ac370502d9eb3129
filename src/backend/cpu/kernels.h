// CPU kernels, one per op. The backend runs a node's kernel once per phase on every
// thread of the pool (threads wait for each other between phases); each thread picks
// its share of the work from {ith, nth}. Reductions are ordered so that the result
// does not depend on nth.
#pragma once

#include "toyllm/tensor.h"

#include <cstddef>
#include <cstdint>

namespace toyllm::cpu {

struct KernelCtx {
    int ith;           // this thread
    int nth;           // threads in the pool
    int phase;         // 0 .. n_phases - 1
    uint8_t * scratch; // shared by the node's threads, scratch_bytes(node, nth) bytes, 64-aligned
    const void * packed = nullptr;  // matmul: src[0] packed (repack.h) when matmul_uses_packed
};

struct CpuKernel {
    void (*run)(const KernelCtx & k, Tensor * node);
    int n_phases;
    size_t (*scratch_bytes)(const Tensor * node, int nth);  // nullptr: none
};

// The kernel of `op`; kernels.cpp lists them against Op::COUNT.
const CpuKernel & cpu_kernel(Op op);

// Pointer to element (i0, i1, i2, i3) of a tensor with strides nb.
template <class T> inline T * at(Tensor * t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<T *>(static_cast<uint8_t *>(t->data) + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]);
}
template <class T> inline const T * at(const Tensor * t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<const T *>(static_cast<const uint8_t *>(t->data) + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]);
}

// Row r (over dims 1..3, r = i1 + ne1 * (i2 + ne2 * i3)) of t.
template <class T> inline T * row(Tensor * t, int64_t r) {
    const int64_t i1 = r % t->ne[1];
    const int64_t i2 = (r / t->ne[1]) % t->ne[2];
    const int64_t i3 = r / (t->ne[1] * t->ne[2]);
    return at<T>(t, 0, i1, i2, i3);
}
template <class T> inline const T * row(const Tensor * t, int64_t r) { return row<T>(const_cast<Tensor *>(t), r); }

// Families (kernels_<family>.cpp).
void kernel_cont(const KernelCtx & k, Tensor * node);
void kernel_acc(const KernelCtx & k, Tensor * node);
void kernel_concat(const KernelCtx & k, Tensor * node);
void kernel_add(const KernelCtx & k, Tensor * node);
void kernel_mul(const KernelCtx & k, Tensor * node);
void kernel_scale(const KernelCtx & k, Tensor * node);
void kernel_sum(const KernelCtx & k, Tensor * node);
size_t scratch_sum(const Tensor * node, int nth);
void kernel_sum_to(const KernelCtx & k, Tensor * node);
void kernel_repeat(const KernelCtx & k, Tensor * node);
void kernel_silu(const KernelCtx & k, Tensor * node);
void kernel_silu_back(const KernelCtx & k, Tensor * node);
void kernel_swiglu(const KernelCtx & k, Tensor * node);
void kernel_get_rows(const KernelCtx & k, Tensor * node);
void kernel_get_rows_back(const KernelCtx & k, Tensor * node);
void kernel_matmul(const KernelCtx & k, Tensor * node);
size_t scratch_matmul(const Tensor * node, int nth);
// Packed products that read the same activation rows (Q, K and V; gate and up) can run as
// one: phase 0 of the first converts the rows for all, then kernel_matmul_packed_run is
// phase 1 of all n, their bands split between the threads as one range. Of two packed
// products (matmul_uses_packed), next may join a run that first begins when
// matmul_packed_joins(first, next).
bool matmul_packed_joins(const Tensor * first, const Tensor * next);
void kernel_matmul_packed_run(const KernelCtx & k, Tensor * const * nodes, const void * const * packed, int n);
void kernel_rms_norm(const KernelCtx & k, Tensor * node);
void kernel_rms_norm_back(const KernelCtx & k, Tensor * node);
void kernel_rope(const KernelCtx & k, Tensor * node);
void kernel_attention(const KernelCtx & k, Tensor * node);
size_t scratch_attention(const Tensor * node, int nth);
void kernel_attention_f16(const KernelCtx & k, Tensor * node);  // k, v f16: llama.cpp's order
size_t scratch_attention_f16(const Tensor * node, int nth);
void kernel_attention_back(const KernelCtx & k, Tensor * node);
size_t scratch_attention_back(const Tensor * node, int nth);
void kernel_causal_mask(const KernelCtx & k, Tensor * node);
void kernel_softmax(const KernelCtx & k, Tensor * node);
void kernel_softmax_back(const KernelCtx & k, Tensor * node);
void kernel_cross_entropy(const KernelCtx & k, Tensor * node);
size_t scratch_cross_entropy(const Tensor * node, int nth);
void kernel_cross_entropy_back(const KernelCtx & k, Tensor * node);
size_t scratch_cross_entropy_back(const Tensor * node, int nth);

}  // namespace toyllm::cpu
