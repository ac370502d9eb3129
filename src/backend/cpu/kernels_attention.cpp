// Fused causal attention with GQA and its gradient, one query row at a time: the scores
// of a row live in a per-thread scratch row of S floats; no [S, T] matrix per head.
//
// Shapes: q [D, H, T, B], k and v [D, G, S, B] (G kv heads, H % G == 0), rows contiguous.
// Query t sits at position n_past + t with n_past = S - T and sees keys s <= n_past + t.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace toyllm::cpu {

namespace {

float dot(const float * a, const float * b, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void axpy(float a, const float * x, float * y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

struct Geometry {
    int64_t D, H, T, B, G, S, n_past, rep;
    bool causal;
    float scale;

    explicit Geometry(const Tensor * node) {
        const Tensor * q = node->src[0];
        const Tensor * k = node->src[1];
        D = q->ne[0], H = q->ne[1], T = q->ne[2], B = q->ne[3];
        G = k->ne[1], S = k->ne[2];
        rep = H / G;
        causal = node->params.i[0] != 0;
        n_past = S - T;
        scale = node->params.f[0];
    }
    // Last key (inclusive) that query t sees.
    int64_t last_key(int64_t t) const { return causal ? n_past + t : S - 1; }
};

// Scores of query row (h, t, b) into p[0..last], softmaxed; returns log-sum-exp.
float softmax_scores(const Geometry & g, const Tensor * q, const Tensor * k, int64_t h, int64_t t, int64_t b, float * p) {
    const float * qr = at<float>(q, 0, h, t, b);
    const int64_t kv = h / g.rep;
    const int64_t last = g.last_key(t);
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s <= last; ++s) {
        p[s] = g.scale * dot(qr, at<float>(k, 0, kv, s, b), g.D);
        m = p[s] > m ? p[s] : m;
    }
    double l = 0.0;
    for (int64_t s = 0; s <= last; ++s) {
        p[s] = std::exp(p[s] - m);
        l += p[s];
    }
    const float inv = static_cast<float>(1.0 / l);
    for (int64_t s = 0; s <= last; ++s) p[s] *= inv;
    return m + static_cast<float>(std::log(l));
}

}  // namespace

size_t scratch_attention(const Tensor * node, int nth) {
    return static_cast<size_t>(nth) * static_cast<size_t>(node->src[1]->ne[2]) * sizeof(float);
}

void kernel_attention(const KernelCtx & k, Tensor * node) {
    const Geometry g(node);
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    float * p = reinterpret_cast<float *>(k.scratch) + static_cast<int64_t>(k.ith) * g.S;
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const int64_t h = r % g.H, t = (r / g.H) % g.T, b = r / (g.H * g.T);
        softmax_scores(g, q, kk, h, t, b, p);
        float * out = at<float>(node, 0, h, t, b);
        std::memset(out, 0, static_cast<size_t>(g.D) * sizeof(float));
        for (int64_t s = 0; s <= g.last_key(t); ++s) axpy(p[s], at<float>(v, 0, h / g.rep, s, b), out, g.D);
    }
}

// Scratch: log-sum-exp and D = dO.O per query row, then S + D floats per thread.
size_t scratch_attention_back(const Tensor * node, int nth) {
    const Tensor * q = node->src[0];
    const int64_t rows = q->n_rows();
    return (2 * static_cast<size_t>(rows) + static_cast<size_t>(nth) * static_cast<size_t>(node->src[1]->ne[2] + q->ne[0])) * sizeof(float);
}

// Phase 0 (query rows): dq = scale * sum_s P (dO.v_s - D) k_s, saving lse and D.
// Phase 1 (key rows, per kv head): dk_s = scale * sum_{h,t} dS q, dv_s = sum_{h,t} P dO,
// recomputing P from lse. Each output row is summed in a fixed order by one thread.
void kernel_attention_back(const KernelCtx & k, Tensor * node) {
    const Geometry g(node);
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    const Tensor * dout = node->src[3];
    const int64_t rows = q->n_rows();
    float * lse = reinterpret_cast<float *>(k.scratch);
    float * dd = lse + rows;
    float * dq = node->data_as<float>();
    float * dk = dq + q->n_elements();
    float * dv = dk + kk->n_elements();

    if (k.phase == 0) {
        float * p = dd + rows + static_cast<int64_t>(k.ith) * (g.S + g.D);
        float * o = p + g.S;
        const RowRange rr = split_rows(rows, k.ith, k.nth);
        for (int64_t r = rr.begin; r < rr.end; ++r) {
            const int64_t h = r % g.H, t = (r / g.H) % g.T, b = r / (g.H * g.T);
            const int64_t kv = h / g.rep;
            const int64_t last = g.last_key(t);
            lse[r] = softmax_scores(g, q, kk, h, t, b, p);
            std::memset(o, 0, static_cast<size_t>(g.D) * sizeof(float));
            for (int64_t s = 0; s <= last; ++s) axpy(p[s], at<float>(v, 0, kv, s, b), o, g.D);
            const float * go = at<float>(dout, 0, h, t, b);
            dd[r] = dot(go, o, g.D);
            float * dqr = dq + r * g.D;
            std::memset(dqr, 0, static_cast<size_t>(g.D) * sizeof(float));
            for (int64_t s = 0; s <= last; ++s) {
                const float ds = p[s] * (dot(go, at<float>(v, 0, kv, s, b), g.D) - dd[r]);
                axpy(g.scale * ds, at<float>(kk, 0, kv, s, b), dqr, g.D);
            }
        }
        return;
    }

    const RowRange rr = split_rows(kk->n_rows(), k.ith, k.nth);
    for (int64_t u = rr.begin; u < rr.end; ++u) {
        const int64_t kv = u % g.G, s = (u / g.G) % g.S, b = u / (g.G * g.S);
        const float * ks = at<float>(kk, 0, kv, s, b);
        const float * vs = at<float>(v, 0, kv, s, b);
        float * dks = dk + u * g.D;
        float * dvs = dv + u * g.D;
        std::memset(dks, 0, static_cast<size_t>(g.D) * sizeof(float));
        std::memset(dvs, 0, static_cast<size_t>(g.D) * sizeof(float));
        const int64_t t0 = g.causal ? (s - g.n_past > 0 ? s - g.n_past : 0) : 0;
        for (int64_t h = kv * g.rep; h < (kv + 1) * g.rep; ++h) {
            for (int64_t t = t0; t < g.T; ++t) {
                const int64_t r = h + g.H * (t + g.T * b);
                const float * qr = at<float>(q, 0, h, t, b);
                const float * go = at<float>(dout, 0, h, t, b);
                const float pr = std::exp(g.scale * dot(qr, ks, g.D) - lse[r]);
                const float ds = pr * (dot(go, vs, g.D) - dd[r]);
                axpy(g.scale * ds, qr, dks, g.D);
                axpy(pr, go, dvs, g.D);
            }
        }
    }
}

// scores [S, T, ...]: entry (s, t) with s > n_past + t becomes -inf (forward) or 0
// (gradient: masked scores pass nothing back).
void kernel_causal_mask(const KernelCtx & k, Tensor * node) {
    const Tensor * x = node->src[0];
    const int64_t n_past = node->params.i[0];
    const float fill = node->params.i[1] ? 0.0f : -std::numeric_limits<float>::infinity();
    const RowRange rr = split_rows(node->n_rows(), k.ith, k.nth);
    for (int64_t r = rr.begin; r < rr.end; ++r) {
        const int64_t t = r % node->ne[1];
        const float * src = row<float>(x, r);
        float * dst = row<float>(node, r);
        for (int64_t s = 0; s < node->ne[0]; ++s) dst[s] = s > n_past + t ? fill : src[s];
    }
}

}  // namespace toyllm::cpu
