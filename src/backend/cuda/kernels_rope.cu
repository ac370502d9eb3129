// rope: one thread per output element. The angle of pair i is built as the CPU builds
// it (theta multiplied by base^(-2/n_rot) i times, in float) so that both backends
// follow llama.cpp's rounding.
#include "backend/cuda/common.cuh"

#include <cmath>

namespace toyllm::cuda {

namespace {

struct RopeArgs {
    bool neox;
    int64_t n_rot;
    float sin_sign;
    float freq_scale;
    float theta_scale;
};

__global__ void rope_kernel(View x, View y, const char * positions, int64_t pos_stride, const float * factors, RopeArgs p) {
    const int64_t head_dim = y.ne[0];
    const int64_t n = y.n_elements();
    const int64_t half = p.n_rot / 2;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t d = e % head_dim, r = e / head_dim;
        const float * src = x.frow(r);
        float * dst = y.frow(r);
        if (d >= p.n_rot) {
            dst[d] = src[d];
            continue;
        }
        const int64_t i = p.neox ? (d < half ? d : d - half) : d / 2;
        const bool first = p.neox ? d < half : d % 2 == 0;
        const int64_t ia = p.neox ? i : 2 * i;
        const int64_t ib = p.neox ? i + half : 2 * i + 1;
        const int64_t t = (r / y.ne[1]) % y.ne[2];
        float theta = static_cast<float>(*reinterpret_cast<const int32_t *>(positions + t * pos_stride));
        for (int64_t k = 0; k < i; ++k) theta *= p.theta_scale;
        const float ff = factors != nullptr ? factors[i] : 1.0f;
        const float angle = p.freq_scale * (theta / ff);
        const float c = cosf(angle);
        const float s = sinf(angle) * p.sin_sign;
        const float va = src[ia], vb = src[ib];
        dst[d] = first ? va * c - vb * s : va * s + vb * c;
    }
}

}  // namespace

void kernel_rope(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    RopeArgs p{};
    p.neox = node->params.i[0] == 2;
    p.n_rot = node->params.i[1];
    p.sin_sign = node->params.i[2] ? -1.0f : 1.0f;
    p.freq_scale = node->params.f[1];
    p.theta_scale = std::pow(node->params.f[0], -2.0f / static_cast<float>(p.n_rot));
    const int64_t n = node->n_elements();
    rope_kernel<<<grid_for(n, kBlock), kBlock, 0, e.stream>>>(view_of(node->src[0], a.src[0]), view_of(node, a.out),
                                                              static_cast<const char *>(a.src[1]), node->src[1]->nb[0],
                                                              static_cast<const float *>(a.src[2]), p);
    check_launch("rope");
}

}  // namespace toyllm::cuda
