#include "backend/cpu/kernels.h"

#include <array>

namespace toyllm::cpu {

namespace {

void no_compute(const KernelCtx &, Tensor *) {}

constexpr std::array<CpuKernel, static_cast<size_t>(Op::COUNT)> kKernels = {{
    {no_compute, 0, nullptr},                                  // NONE
    {no_compute, 0, nullptr},                                  // VIEW
    {kernel_cont, 1, nullptr},                                 // CONT
    {kernel_get_rows, 1, nullptr},                             // GET_ROWS
    {kernel_get_rows_back, 1, nullptr},                        // GET_ROWS_BACK
    {kernel_matmul, 2, scratch_matmul},                        // MATMUL
    {kernel_add, 1, nullptr},                                  // ADD
    {kernel_mul, 1, nullptr},                                  // MUL
    {kernel_scale, 1, nullptr},                                // SCALE
    {kernel_sum, 2, scratch_sum},                              // SUM
    {kernel_sum_to, 1, nullptr},                               // SUM_TO
    {kernel_repeat, 1, nullptr},                               // REPEAT
    {kernel_rms_norm, 1, nullptr},                             // RMS_NORM
    {kernel_rms_norm_back, 1, nullptr},                        // RMS_NORM_BACK
    {kernel_rope, 1, nullptr},                                 // ROPE
    {kernel_attention, 3, scratch_attention},                  // ATTENTION (decode: 3 phases)
    {kernel_attention_back, 2, scratch_attention_back},        // ATTENTION_BACK
    {kernel_causal_mask, 1, nullptr},                          // CAUSAL_MASK
    {kernel_silu, 1, nullptr},                                 // SILU
    {kernel_silu_back, 1, nullptr},                            // SILU_BACK
    {kernel_swiglu, 1, nullptr},                               // SWIGLU
    {kernel_softmax, 1, nullptr},                              // SOFTMAX
    {kernel_softmax_back, 1, nullptr},                         // SOFTMAX_BACK
    {kernel_cross_entropy, 2, scratch_cross_entropy},          // CROSS_ENTROPY
    {kernel_cross_entropy_back, 2, scratch_cross_entropy_back},// CROSS_ENTROPY_BACK
    {kernel_concat, 1, nullptr},                               // CONCAT
    {kernel_acc, 1, nullptr},                                  // ACC
}};
static_assert(static_cast<int>(Op::COUNT) == 27, "add the new op's CPU kernel to kKernels");

}  // namespace

const CpuKernel & cpu_kernel(Op op) { return kKernels[static_cast<size_t>(op)]; }

}  // namespace toyllm::cpu
