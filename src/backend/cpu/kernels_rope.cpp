// rope: angles computed as ggml does (theta multiplied by base^(-2/n_rot) pair after
// pair, in float) and each rotated value as one fused multiply-add, as ggml's
// x0 cos - x1 sin compiles with FMA contraction, so results equal llama.cpp's to the bit.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

#include <cmath>
#include <vector>

namespace toyllm::cpu {

void kernel_rope(const KernelCtx & k, Tensor * node) {
    const Tensor * x = node->src[0];
    const Tensor * positions = node->src[1];
    const Tensor * factors = node->src[2];
    const bool neox = node->params.i[0] == 2;
    const int64_t n_rot = node->params.i[1];
    const float sin_sign = node->params.i[2] ? -1.0f : 1.0f;
    const float freq_base = node->params.f[0];
    const float freq_scale = node->params.f[1];
    const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
    const int64_t head_dim = node->ne[0];
    const int64_t half = n_rot / 2;
    // The heads of one position (consecutive rows) share their angles: cos and sin are
    // computed once per position, not once per head (decode: 36 heads, one position).
    thread_local std::vector<float> cos_sin;
    cos_sin.resize(static_cast<size_t>(2 * half));
    int64_t angles_of = -1;  // the position cos_sin holds
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const int64_t t = (r / node->ne[1]) % node->ne[2];
        if (t != angles_of) {
            float theta = static_cast<float>(*at<int32_t>(positions, t, 0, 0, 0));
            for (int64_t i = 0; i < half; ++i) {
                const float ff = factors ? factors->data_as<float>()[i] : 1.0f;
                const float angle = freq_scale * (theta / ff);
                cos_sin[static_cast<size_t>(2 * i)] = std::cos(angle);
                cos_sin[static_cast<size_t>(2 * i + 1)] = std::sin(angle) * sin_sign;
                theta *= theta_scale;
            }
            angles_of = t;
        }
        const float * src = row<float>(x, r);
        float * dst = row<float>(node, r);
        for (int64_t i = 0; i < half; ++i) {
            const float c = cos_sin[static_cast<size_t>(2 * i)], s = cos_sin[static_cast<size_t>(2 * i + 1)];
            const int64_t ia = neox ? i : 2 * i;
            const int64_t ib = neox ? i + half : 2 * i + 1;
            const float a = src[ia], b = src[ib];
            dst[ia] = std::fma(a, c, -(b * s));
            dst[ib] = std::fma(a, s, b * c);
        }
        for (int64_t i = n_rot; i < head_dim; ++i) dst[i] = src[i];
    }
}

}  // namespace toyllm::cpu
