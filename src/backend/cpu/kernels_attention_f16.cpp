// Causal attention over f16 keys and values (the f16 KV cache), in the order of llama.cpp's
// CPU flash attention (ggml's one-chunk path), one query row of one head at a time:
// the query is rounded to f16; each score is the dot of halves (exact products summed in
// double, rounded to float) times the scale; then, key by key, an online softmax whose
// running output lives in f16: a new maximum M scales it by exp(M_old - M), any other key
// enters with weight exp(s - M), both through fma and a rounding to half as ggml's f16
// vector ops do; the output is that f16 sum times 1 / (sum of the weights).
//
// The scores of a row are computed first (one call for all its keys), then the online
// pass; the f16 row operations come from the level's table fetched once per call.
//
// Where ggml's dot product runs scalar (head_dim below its SIMD step: 64 with AVX-512, 32
// with AVX2) this is its arithmetic to the bit, and with rope's fused multiply-adds the
// logits of a llama.cpp-quantized file equal llama.cpp's (test_model's KL test). Forward only;
// each row is one thread's, so the bits do not depend on the thread count.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_math.h"
#include "backend/cpu/vec_math_kernels.h"
#include "toyllm/half.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace toyllm::cpu {

namespace {

// Per thread: the query and the running output in f16 (D each), then the row's scores (S
// floats), rounded up to whole cache lines.
size_t scratch_per_thread(int64_t D, int64_t S) {
    const size_t bytes = 2 * static_cast<size_t>(D) * sizeof(uint16_t) + static_cast<size_t>(S) * sizeof(float);
    return (bytes + 63) / 64 * 64;
}

}  // namespace

void kernel_attention_f16(const KernelCtx & k, Tensor * node) {
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    const int64_t D = q->ne[0], H = q->ne[1], T = q->ne[2];
    const int64_t S = kk->ne[2], rep = H / kk->ne[1];
    const bool causal = node->params.i[0] != 0;
    const float scale = node->params.f[0];
    const kernels::HalfKernels & hk = half_kernels();
    auto * q16 = reinterpret_cast<uint16_t *>(k.scratch + static_cast<size_t>(k.ith) * scratch_per_thread(D, S));
    uint16_t * acc = q16 + D;
    auto * scores = reinterpret_cast<float *>(acc + D);
    const int64_t k_stride = kk->nb[2] / static_cast<int64_t>(sizeof(uint16_t));
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const int64_t h = r % H, t = (r / H) % T, b = r / (H * T);
        const float * qr = at<float>(q, 0, h, t, b);
        for (int64_t d = 0; d < D; ++d) q16[d] = fp32_to_fp16(qr[d]);
        std::fill(acc, acc + D, uint16_t{0});
        float m = -std::numeric_limits<float>::infinity(), sum = 0.0f;
        const int64_t n_keys = causal ? S - T + t + 1 : S;
        hk.dot_f16_rows(q16, at<uint16_t>(kk, 0, h / rep, 0, b), k_stride, n_keys, D, scale, scores);
        for (int64_t j = 0; j < n_keys; ++j) {
            const float s = scores[j];
            float ms = 1.0f, vs = 1.0f;
            if (s > m) {
                ms = std::exp(m - s);
                m = s;
                hk.scale_f16(acc, ms, D);
            } else {
                vs = std::exp(s - m);
            }
            hk.mad_f16(acc, at<uint16_t>(v, 0, h / rep, j, b), vs, D);
            sum = sum * ms + vs;
        }
        const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
        float * out = at<float>(node, 0, h, t, b);
        for (int64_t d = 0; d < D; ++d) out[d] = fp16_to_fp32(acc[d]) * inv;
    }
}

size_t scratch_attention_f16(const Tensor * node, int nth) {
    return static_cast<size_t>(nth) * scratch_per_thread(node->src[0]->ne[0], node->src[1]->ne[2]);
}

}  // namespace toyllm::cpu
