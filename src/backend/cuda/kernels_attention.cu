// Fused causal attention with GQA (online softmax: one pass over the keys, no [S, T]
// matrix), its gradient, and the causal mask of the composed reference.
//
// Shapes: q [D, H, T, B], k and v [D, G, S, B] (G kv heads, H % G == 0), rows contiguous.
// Query t sits at position n_past + t with n_past = S - T and sees keys s <= n_past + t.
// A warp holds a row of D values spread over its lanes (D <= 32 * kPerLane).
#include "backend/cuda/common.cuh"

#include "toyllm/error.h"

#include <string>

namespace toyllm::cuda {

namespace {

constexpr int kPerLane = 8;    // head_dim up to 256
constexpr int kRowWarps = 4;   // warps sharing one query row's keys in the forward

struct Geometry {
    int64_t D, H, T, B, G, S, n_past, rep;
    bool causal;
    float scale;

    __device__ int64_t last_key(int64_t t) const { return causal ? n_past + t : S - 1; }
};

Geometry geometry_of(const Tensor * node) {
    const Tensor * q = node->src[0];
    const Tensor * k = node->src[1];
    Geometry g{};
    g.D = q->ne[0], g.H = q->ne[1], g.T = q->ne[2], g.B = q->ne[3];
    g.G = k->ne[1], g.S = k->ne[2];
    g.rep = g.H / g.G;
    g.causal = node->params.i[0] != 0;
    g.n_past = g.S - g.T;
    g.scale = node->params.f[0];
    if (g.D > 32 * kPerLane) throw Error("cuda attention: head_dim " + std::to_string(g.D) + " above " + std::to_string(32 * kPerLane));
    return g;
}

__device__ inline const float * vec(const View & x, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<const float *>(x.p + i1 * x.nb[1] + i2 * x.nb[2] + i3 * x.nb[3]);
}

// Loads a row of D floats into this lane's registers (element lane + 32 j).
__device__ inline void load_row(const float * p, int64_t D, float (&r)[kPerLane]) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        r[j] = i < D ? p[i] : 0.0f;
    }
}

__device__ inline float dot_row(const float (&r)[kPerLane], const float * p, int64_t D) {
    const int lane = threadIdx.x % 32;
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < D) s += r[j] * p[i];
    }
    return warp_sum(s);
}

// One block of kRowWarps warps per query row (h, t, b); warp w takes keys w, w + kRowWarps,
// ...; the partial (max, sum, output) states are merged in warp order.
__global__ void attention_kernel(View q, View k, View v, View out, Geometry g) {
    __shared__ float s_m[kRowWarps], s_l[kRowWarps];
    __shared__ float s_o[kRowWarps][32 * kPerLane];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t r = blockIdx.x;
    const int64_t h = r % g.H, t = (r / g.H) % g.T, b = r / (g.H * g.T);
    const int64_t kv = h / g.rep;
    float qr[kPerLane], o[kPerLane] = {};
    load_row(vec(q, h, t, b), g.D, qr);
    float m = -INFINITY, l = 0.0f;
    const int64_t last = g.last_key(t);
    for (int64_t s = warp; s <= last; s += kRowWarps) {
        const float score = g.scale * dot_row(qr, vec(k, kv, s, b), g.D);
        const float m_new = fmaxf(m, score);
        const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
        const float p = expf(score - m_new);
        l = l * corr + p;
        const float * vs = vec(v, kv, s, b);
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
            const int64_t i = lane + 32 * j;
            o[j] = o[j] * corr + (i < g.D ? p * vs[i] : 0.0f);
        }
        m = m_new;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) s_o[warp][lane + 32 * j] = o[j];
    __syncthreads();
    if (warp != 0) return;
    float M = -INFINITY;
    for (int w = 0; w < kRowWarps; ++w) M = fmaxf(M, s_m[w]);
    float L = 0.0f;
    float acc[kPerLane] = {};
    for (int w = 0; w < kRowWarps; ++w) {
        if (s_l[w] == 0.0f) continue;  // a warp that saw no key
        const float c = expf(s_m[w] - M);
        L += s_l[w] * c;
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) acc[j] += s_o[w][lane + 32 * j] * c;
    }
    float * y = reinterpret_cast<float *>(out.p + h * out.nb[1] + t * out.nb[2] + b * out.nb[3]);
    const float inv = 1.0f / L;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < g.D) y[i] = acc[j] * inv;
    }
}

// Gradient, pass 1 (one warp per query row): lse and D = dO.O, then
// dq = scale * sum_s P (dO.v_s - D) k_s.
__global__ void attention_back_q(View q, View k, View v, View dout, Geometry g, float * lse, float * dd, float * dq, int64_t rows) {
    const int lane = threadIdx.x % 32;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const int64_t h = r % g.H, t = (r / g.H) % g.T, b = r / (g.H * g.T);
    const int64_t kv = h / g.rep;
    const int64_t last = g.last_key(t);
    float qr[kPerLane], go[kPerLane], o[kPerLane] = {};
    load_row(vec(q, h, t, b), g.D, qr);
    load_row(vec(dout, h, t, b), g.D, go);
    float m = -INFINITY, l = 0.0f;
    for (int64_t s = 0; s <= last; ++s) {
        const float score = g.scale * dot_row(qr, vec(k, kv, s, b), g.D);
        const float m_new = fmaxf(m, score);
        const float corr = expf(m - m_new);
        const float p = expf(score - m_new);
        l = l * corr + p;
        const float * vs = vec(v, kv, s, b);
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
            const int64_t i = lane + 32 * j;
            o[j] = o[j] * corr + (i < g.D ? p * vs[i] : 0.0f);
        }
        m = m_new;
    }
    const float row_lse = m + logf(l);
    float d_part = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) d_part += go[j] * (o[j] / l);
    const float d = warp_sum(d_part);
    float acc[kPerLane] = {};
    for (int64_t s = 0; s <= last; ++s) {
        const float * ks = vec(k, kv, s, b);
        const float p = expf(g.scale * dot_row(qr, ks, g.D) - row_lse);
        const float ds = p * (dot_row(go, vec(v, kv, s, b), g.D) - d);
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) {
            const int64_t i = lane + 32 * j;
            if (i < g.D) acc[j] += g.scale * ds * ks[i];
        }
    }
    if (lane == 0) {
        lse[r] = row_lse;
        dd[r] = d;
    }
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < g.D) dq[r * g.D + i] = acc[j];
    }
}

// Gradient, pass 2 (one warp per key row (kv, s, b)): dk_s = scale * sum_{h,t} dS q,
// dv_s = sum_{h,t} P dO, with P recomputed from lse; each sum in a fixed order.
__global__ void attention_back_kv(View q, View k, View v, View dout, Geometry g, const float * lse, const float * dd, float * dk, float * dv,
                                  int64_t key_rows) {
    const int lane = threadIdx.x % 32;
    const int64_t u = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (u >= key_rows) return;
    const int64_t kv = u % g.G, s = (u / g.G) % g.S, b = u / (g.G * g.S);
    float ks[kPerLane], vs[kPerLane], dks[kPerLane] = {}, dvs[kPerLane] = {};
    load_row(vec(k, kv, s, b), g.D, ks);
    load_row(vec(v, kv, s, b), g.D, vs);
    const int64_t t0 = g.causal ? (s - g.n_past > 0 ? s - g.n_past : 0) : 0;
    for (int64_t h = kv * g.rep; h < (kv + 1) * g.rep; ++h) {
        for (int64_t t = t0; t < g.T; ++t) {
            const int64_t r = h + g.H * (t + g.T * b);
            const float * qr = vec(q, h, t, b);
            const float * go = vec(dout, h, t, b);
            const float p = expf(g.scale * dot_row(ks, qr, g.D) - lse[r]);
            const float ds = p * (dot_row(vs, go, g.D) - dd[r]);
#pragma unroll
            for (int j = 0; j < kPerLane; ++j) {
                const int64_t i = lane + 32 * j;
                if (i < g.D) {
                    dks[j] += g.scale * ds * qr[i];
                    dvs[j] += p * go[i];
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < g.D) {
            dk[u * g.D + i] = dks[j];
            dv[u * g.D + i] = dvs[j];
        }
    }
}

__global__ void causal_mask_kernel(View x, View y, int64_t n_past, float fill) {
    const int64_t n = y.n_elements();
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t s = e % y.ne[0], r = e / y.ne[0];
        const int64_t t = r % y.ne[1];
        y.frow(r)[s] = s > n_past + t ? fill : x.frow(r)[s];
    }
}

}  // namespace

void kernel_attention(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    if (node->src[1]->type != DType::F32) throw Error("cuda attention: f16 keys and values (an f16 KV cache) run on the cpu device only");
    const Geometry g = geometry_of(node);
    const int64_t rows = node->n_rows();
    if (rows > 2147483647LL) throw Error("cuda attention: too many query rows");
    attention_kernel<<<static_cast<unsigned>(rows), kRowWarps * 32, 0, e.stream>>>(view_of(node->src[0], a.src[0]), view_of(node->src[1], a.src[1]),
                                                                                  view_of(node->src[2], a.src[2]), view_of(node, a.out), g);
    check_launch("attention");
}

void kernel_attention_back(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    const Geometry g = geometry_of(node);
    const Tensor * q = node->src[0];
    const Tensor * k = node->src[1];
    const int64_t rows = q->n_rows(), key_rows = k->n_rows();
    auto * lse = static_cast<float *>(e.scratch(static_cast<size_t>(2 * rows) * sizeof(float)));
    float * dd = lse + rows;
    auto * dq = static_cast<float *>(a.out);
    float * dk = dq + q->n_elements();
    float * dv = dk + k->n_elements();
    const View qv = view_of(q, a.src[0]), kv = view_of(k, a.src[1]), vv = view_of(node->src[2], a.src[2]), dov = view_of(node->src[3], a.src[3]);
    constexpr int kWarps = 4;
    attention_back_q<<<grid_for(rows, kWarps), kWarps * 32, 0, e.stream>>>(qv, kv, vv, dov, g, lse, dd, dq, rows);
    check_launch("attention_back (queries)");
    attention_back_kv<<<grid_for(key_rows, kWarps), kWarps * 32, 0, e.stream>>>(qv, kv, vv, dov, g, lse, dd, dk, dv, key_rows);
    check_launch("attention_back (keys)");
}

void kernel_causal_mask(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    const float fill = node->params.i[1] ? 0.0f : -INFINITY;
    causal_mask_kernel<<<grid_for(node->n_elements(), kBlock), kBlock, 0, e.stream>>>(view_of(node->src[0], a.src[0]), view_of(node, a.out),
                                                                                      node->params.i[0], fill);
    check_launch("causal_mask");
}

}  // namespace toyllm::cuda
