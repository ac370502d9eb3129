// Fused causal attention with GQA and its gradient, by blocks of query rows: for one
// head and a block of up to kQueryBlock queries the scores live in a per-thread scratch
// block [rows, S] (no [S, T] matrix per head), and the products with K and V are
// gemm_f32 calls on strided views of q, k, v (no copies). Under the causal mask a block
// only reaches the keys its last query sees.
//
// Shapes: q [D, H, T, B], k and v [D, G, S, B] (G kv heads, H % G == 0), rows contiguous.
// Query t sits at position n_past + t with n_past = S - T and sees keys s <= n_past + t.
//
// Every output element is computed by one thread in an order fixed by the shapes (a gemm
// chain over k, or a sum over heads in increasing order), so results do not depend on
// the thread count; masked scores enter the products as exact zeros, so a query's output
// does not depend on which block, chunk or batch it came in.
#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_math.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace toyllm::cpu {

namespace {

constexpr int64_t kQueryBlock = 64;

struct Geometry {
    int64_t D, H, T, B, G, S, n_past, rep, n_blocks;
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
        n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
    }
    // Last key (inclusive) that query t sees.
    int64_t last_key(int64_t t) const { return causal ? n_past + t : S - 1; }
};

// Distance in floats between consecutive positions (dim 2) of a tensor.
int64_t pos_stride(const Tensor * t) { return t->nb[2] / static_cast<int64_t>(sizeof(float)); }

// One block of queries [t0, t0 + rows) of head h, batch b, against keys [0, n_keys).
struct QueryBlock {
    int64_t h, b, t0, rows, n_keys;

    QueryBlock(const Geometry & g, int64_t h_, int64_t b_, int64_t blk) : h(h_), b(b_), t0(blk * kQueryBlock) {
        rows = std::min(kQueryBlock, g.T - t0);
        n_keys = g.last_key(t0 + rows - 1) + 1;
    }
};

// row[0, n) = softmax(scale * row[0, n)).
void scaled_softmax(float * row, int64_t n, float scale) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < n; ++s) {
        row[s] *= scale;
        m = std::max(m, row[s]);
    }
    const auto inv = static_cast<float>(1.0 / exp_shifted_sum(row, n, m));
    for (int64_t s = 0; s < n; ++s) row[s] *= inv;
}

// p [rows, ld] = softmax(scale * q k^T) of the block, masked scores (and columns up to
// n_keys past a row's last key) exactly 0.
void block_probabilities(const Geometry & g, const Tensor * q, const Tensor * k, const QueryBlock & qb, float * p, int64_t ld) {
    gemm_f32({.m = qb.rows, .n = qb.n_keys, .k = g.D, .a = at<float>(q, 0, qb.h, qb.t0, qb.b), .lda = pos_stride(q),
              .b = at<float>(k, 0, qb.h / g.rep, 0, qb.b), .ldb = pos_stride(k), .c = p, .ldc = ld}, 0, 1);
    for (int64_t i = 0; i < qb.rows; ++i) {
        float * row = p + i * ld;
        const int64_t n = g.last_key(qb.t0 + i) + 1;
        scaled_softmax(row, n, g.scale);
        std::fill(row + n, row + qb.n_keys, 0.0f);
    }
}

// One query per head (decode), in three phases so that K and V are each read once, in
// shares, by all threads (splitting the query heads instead made several threads read a
// kv head's K and V whole): phase 0, the scores of (batch, key chunk) items, the query
// heads of each kv head at once, into the shared scratch [B, H, S]; phase 1, each
// head's softmax; phase 2, P V by (batch, kv head, chunk of the head dim). Every score is
// gemm's chain over the head dim, every output gemm's chain over all keys, as in the
// general path (gemm's order does not depend on m or on the columns of a call), so decode
// and prefill agree to the bit.
void decode_attention(const KernelCtx & k, Tensor * node, const Geometry & g) {
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    auto * scores = reinterpret_cast<float *>(k.scratch);  // [B, H, S]
    const int64_t groups = g.G * g.B, n_keys = g.last_key(0) + 1;
    const auto row = [&](int64_t b, int64_t h) { return scores + (b * g.H + h) * g.S; };
    if (k.phase == 0) {
        // Items of 64 keys, every kv head of them in turn: the keys of all heads of a
        // position are adjacent, so a thread reads its part of K as one stream. With
        // fewer than two such items per thread, an item per kv head instead.
        constexpr int64_t kChunk = 64;
        const int64_t n_chunks = (n_keys + kChunk - 1) / kChunk;
        const int64_t heads = g.B * n_chunks < 2 * k.nth ? 1 : g.G;  // kv heads per item
        const int64_t per_chunk = g.G / heads;
        const int64_t q_heads = q->nb[1] / static_cast<int64_t>(sizeof(float));
        const RowRange rr = split_rows(g.B * n_chunks * per_chunk, k.ith, k.nth);
        for (int64_t u = rr.begin; u < rr.end; ++u) {
            const int64_t kv0 = u % per_chunk * heads, j0 = u / per_chunk % n_chunks * kChunk, b = u / (per_chunk * n_chunks);
            for (int64_t kv = kv0; kv < kv0 + heads; ++kv) {
                const int64_t h0 = kv * g.rep;
                gemm_f32({.m = g.rep, .n = std::min(kChunk, n_keys - j0), .k = g.D, .a = at<float>(q, 0, h0, 0, b), .lda = q_heads,
                          .b = at<float>(kk, 0, kv, j0, b), .ldb = pos_stride(kk), .c = row(b, h0) + j0, .ldc = g.S}, 0, 1);
            }
        }
    } else if (k.phase == 1) {
        const RowRange rr = split_rows(g.H * g.B, k.ith, k.nth);
        for (int64_t u = rr.begin; u < rr.end; ++u) scaled_softmax(row(u / g.H, u % g.H), n_keys, g.scale);
    } else {
        // Head-dim chunks of 32 values (the AVX-512 few-rows step), about two per thread.
        const int64_t want = std::max<int64_t>(1, (2 * k.nth + groups - 1) / groups);
        const int64_t chunk = std::max<int64_t>(32, (g.D + want - 1) / want + 31) / 32 * 32;
        const int64_t n_chunks = (g.D + chunk - 1) / chunk;
        const int64_t out_heads = node->nb[1] / static_cast<int64_t>(sizeof(float));
        const RowRange rr = split_rows(groups * n_chunks, k.ith, k.nth);
        for (int64_t u = rr.begin; u < rr.end; ++u) {
            const int64_t c = u % n_chunks, kv = u / n_chunks % g.G, b = u / (n_chunks * g.G);
            const int64_t d0 = c * chunk, h0 = kv * g.rep;
            gemm_f32({.m = g.rep, .n = std::min(chunk, g.D - d0), .k = n_keys, .a = row(b, h0), .lda = g.S,
                      .b = at<float>(v, d0, kv, 0, b), .ldb = pos_stride(v), .c = at<float>(node, d0, h0, 0, b),
                      .ldc = out_heads, .b_kn = true}, 0, 1);
        }
    }
}

}  // namespace

// Prefill: per thread a block of probabilities [kQueryBlock, S]; decode: the scores of
// every head [B, H, S], shared.
size_t scratch_attention(const Tensor * node, int nth) {
    if (node->src[1]->type == DType::F16) return scratch_attention_f16(node, nth);
    const Geometry g(node);
    const int64_t floats = g.T == 1 ? g.B * g.H * g.S : nth * kQueryBlock * g.S;
    return static_cast<size_t>(floats) * sizeof(float);
}

// Three phases for decode (decode_attention); otherwise everything in phase 0, by work
// items (head, batch, query block): out rows of the block = P v by a gemm.
void kernel_attention(const KernelCtx & k, Tensor * node) {
    const Geometry g(node);
    if (g.T == 1 && node->src[1]->type == DType::F32) {
        decode_attention(k, node, g);
        return;
    }
    if (k.phase != 0) return;
    if (node->src[1]->type == DType::F16) {
        kernel_attention_f16(k, node);
        return;
    }
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    float * p = reinterpret_cast<float *>(k.scratch) + static_cast<int64_t>(k.ith) * kQueryBlock * g.S;
    const RowRange rr = split_rows(g.H * g.B * g.n_blocks, k.ith, k.nth);
    for (int64_t u = rr.begin; u < rr.end; ++u) {
        const QueryBlock qb(g, u / g.n_blocks % g.H, u / (g.n_blocks * g.H), u % g.n_blocks);
        block_probabilities(g, q, kk, qb, p, g.S);
        gemm_f32({.m = qb.rows, .n = g.D, .k = qb.n_keys, .a = p, .lda = g.S, .b = at<float>(v, 0, qb.h / g.rep, 0, qb.b),
                  .ldb = pos_stride(v), .c = at<float>(node, 0, qb.h, qb.t0, qb.b), .ldc = pos_stride(node), .b_kn = true}, 0, 1);
    }
}

// Scratch: per-head partial dk and dv [B, H, S, D] each, then per thread the block's P
// and dP/dS [kQueryBlock, S].
size_t scratch_attention_back(const Tensor * node, int nth) {
    const Geometry g(node);
    const size_t partials = 2 * static_cast<size_t>(g.B * g.H * g.S * g.D);
    return (partials + static_cast<size_t>(nth) * 2 * static_cast<size_t>(kQueryBlock * g.S)) * sizeof(float);
}

// Phase 0, per (head, batch), block by block of queries:
//   P = softmax(scale q k^T), dP = dO v^T, dS = scale P (dP - rowsum(P dP)),
//   dq = dS k, and this head's dk_h += dS^T q, dv_h += P^T dO.
// Phase 1, per key row of a kv head: dk, dv = sum of dk_h, dv_h over its query heads.
void kernel_attention_back(const KernelCtx & k, Tensor * node) {
    const Geometry g(node);
    const Tensor * q = node->src[0];
    const Tensor * kk = node->src[1];
    const Tensor * v = node->src[2];
    const Tensor * dout = node->src[3];
    float * dq = node->data_as<float>();
    float * dk = dq + q->n_elements();
    float * dv = dk + kk->n_elements();
    const int64_t head_floats = g.S * g.D;
    float * dk_h = reinterpret_cast<float *>(k.scratch);
    float * dv_h = dk_h + g.B * g.H * head_floats;

    if (k.phase == 0) {
        float * p = dv_h + g.B * g.H * head_floats + static_cast<int64_t>(k.ith) * 2 * kQueryBlock * g.S;
        float * ds = p + kQueryBlock * g.S;
        const RowRange rr = split_rows(g.H * g.B, k.ith, k.nth);
        for (int64_t u = rr.begin; u < rr.end; ++u) {
            const int64_t h = u % g.H, b = u / g.H;
            float * dkh = dk_h + u * head_floats;
            float * dvh = dv_h + u * head_floats;
            std::fill(dkh, dkh + head_floats, 0.0f);
            std::fill(dvh, dvh + head_floats, 0.0f);
            const float * kh = at<float>(kk, 0, h / g.rep, 0, b);
            const float * vh = at<float>(v, 0, h / g.rep, 0, b);
            for (int64_t blk = 0; blk < g.n_blocks; ++blk) {
                const QueryBlock qb(g, h, b, blk);
                const float * qr = at<float>(q, 0, h, qb.t0, b);
                const float * go = at<float>(dout, 0, h, qb.t0, b);
                block_probabilities(g, q, kk, qb, p, g.S);
                gemm_f32({.m = qb.rows, .n = qb.n_keys, .k = g.D, .a = go, .lda = pos_stride(dout), .b = vh,
                          .ldb = pos_stride(v), .c = ds, .ldc = g.S}, 0, 1);
                for (int64_t i = 0; i < qb.rows; ++i) {
                    const float * pr = p + i * g.S;
                    float * dsr = ds + i * g.S;
                    const int64_t n = g.last_key(qb.t0 + i) + 1;
                    float dd = 0.0f;
                    for (int64_t s = 0; s < n; ++s) dd += pr[s] * dsr[s];
                    for (int64_t s = 0; s < n; ++s) dsr[s] = g.scale * pr[s] * (dsr[s] - dd);
                    std::fill(dsr + n, dsr + qb.n_keys, 0.0f);
                }
                gemm_f32({.m = qb.rows, .n = g.D, .k = qb.n_keys, .a = ds, .lda = g.S, .b = kh, .ldb = pos_stride(kk),
                          .c = dq + (h + g.H * (qb.t0 + g.T * b)) * g.D, .ldc = g.H * g.D, .b_kn = true}, 0, 1);
                gemm_f32({.m = qb.n_keys, .n = g.D, .k = qb.rows, .a = ds, .lda = g.S, .b = qr, .ldb = pos_stride(q),
                          .c = dkh, .ldc = g.D, .accumulate = true, .a_km = true, .b_kn = true}, 0, 1);
                gemm_f32({.m = qb.n_keys, .n = g.D, .k = qb.rows, .a = p, .lda = g.S, .b = go, .ldb = pos_stride(dout),
                          .c = dvh, .ldc = g.D, .accumulate = true, .a_km = true, .b_kn = true}, 0, 1);
            }
        }
        return;
    }

    const RowRange rr = split_rows(kk->n_rows(), k.ith, k.nth);
    for (int64_t u = rr.begin; u < rr.end; ++u) {
        const int64_t kv = u % g.G, s = (u / g.G) % g.S, b = u / (g.G * g.S);
        float * dks = dk + u * g.D;
        float * dvs = dv + u * g.D;
        const int64_t first = (b * g.H + kv * g.rep) * head_floats + s * g.D;
        std::memcpy(dks, dk_h + first, static_cast<size_t>(g.D) * sizeof(float));
        std::memcpy(dvs, dv_h + first, static_cast<size_t>(g.D) * sizeof(float));
        for (int64_t j = 1; j < g.rep; ++j) {
            const float * a = dk_h + first + j * head_floats;
            const float * c = dv_h + first + j * head_floats;
            for (int64_t d = 0; d < g.D; ++d) {
                dks[d] += a[d];
                dvs[d] += c[d];
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
