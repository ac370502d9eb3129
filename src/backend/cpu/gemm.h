// F32 matrix-matrix product for prefill and training:
//   C[m, n] (+)= sum_k A[m, k] * B[n, k]       ("NT": both operands have k contiguous,
//                                               the layout of ggml's mul_mat)
// Row-major with leading dimensions in elements. Either operand may instead be stored
// k-major (a_km: A as [k rows, m]; b_kn: B as [k rows, n], i.e. C = A B): the packing
// then copies rows instead of transposing them, and the result has the same bits.
// Cache-blocked, with AVX-512 / AVX2 / scalar micro-kernels picked at run time. Work is split between threads by output
// tiles only: each C element is summed over k in one fixed order by one thread, so the
// result does not depend on the thread count.
#pragma once

#include <cstdint>

namespace toyllm::cpu {

struct GemmArgs {
    int64_t m, n, k;
    const float * a;  // [m rows, k], row stride lda
    int64_t lda;
    const float * b;  // [n rows, k], row stride ldb
    int64_t ldb;
    float * c;        // [m rows, n], row stride ldc
    int64_t ldc;
    bool accumulate = false;  // C += A B^T instead of C = A B^T
    bool a_km = false;        // a[kk * lda + i] holds A[i, kk]
    bool b_kn = false;        // b[kk * ldb + j] holds B[j, kk]
};

// The part of the product that thread ith of nth computes; call it from every thread
// of a ThreadPool::run. Needs no scratch from the caller (packs into thread-local buffers).
void gemm_f32(const GemmArgs & g, int ith, int nth);

}  // namespace toyllm::cpu
