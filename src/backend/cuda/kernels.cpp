#include "backend/cuda/kernels.h"

#include "toyllm/error.h"
#include "toyllm/quant.h"

#include <array>
#include <string>

namespace toyllm::cuda {

namespace {

constexpr std::array<CudaKernel, static_cast<size_t>(Op::COUNT)> kKernels = {{
    nullptr,                    // NONE
    nullptr,                    // VIEW
    kernel_cont,                // CONT
    kernel_get_rows,            // GET_ROWS
    kernel_get_rows_back,       // GET_ROWS_BACK
    kernel_matmul,              // MATMUL
    kernel_add,                 // ADD
    kernel_mul,                 // MUL
    kernel_scale,               // SCALE
    kernel_sum,                 // SUM
    kernel_sum_to,              // SUM_TO
    kernel_repeat,              // REPEAT
    kernel_rms_norm,            // RMS_NORM
    kernel_rms_norm_back,       // RMS_NORM_BACK
    kernel_rope,                // ROPE
    kernel_attention,           // ATTENTION
    kernel_attention_back,      // ATTENTION_BACK
    kernel_causal_mask,         // CAUSAL_MASK
    kernel_silu,                // SILU
    kernel_silu_back,           // SILU_BACK
    kernel_swiglu,              // SWIGLU
    kernel_softmax,             // SOFTMAX
    kernel_softmax_back,        // SOFTMAX_BACK
    kernel_cross_entropy,       // CROSS_ENTROPY
    kernel_cross_entropy_back,  // CROSS_ENTROPY_BACK
    kernel_concat,              // CONCAT
    kernel_acc,                 // ACC
}};
static_assert(static_cast<int>(Op::COUNT) == 27, "add the new op's CUDA kernel to kKernels");

}  // namespace

CudaKernel cuda_kernel(Op op) { return kKernels[static_cast<size_t>(op)]; }

bool device_type_supported(DType t) { return can_dequantize(t); }  // the same seven types

void check(cudaError_t err, const char * what) {
    if (err != cudaSuccess) throw Error(std::string("cuda: ") + what + ": " + cudaGetErrorString(err));
}

void check_launch(const char * what) { check(cudaGetLastError(), what); }

}  // namespace toyllm::cuda
