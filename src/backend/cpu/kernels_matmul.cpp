// matmul on the CPU. Phase 0 brings the operands into the layout the inner kernels
// want (scratch copies only when needed); phase 1 computes.
//
//   a f32:          C[m, n] = sum_k b[m, k] a[n, k] through gemm_f32; an operand that is a
//                   transposed view of contiguous rows (x^T, grad^T in the weight
//                   gradient) is handed over in place as gemm's k-major operand. One
//                   activation row per weight matrix (decode) takes the dot-product path
//                   below instead: gemm would pack (transpose) every weight row to use
//                   it once. Its outputs differ from the many-row GEMM's in the last bits.
//   a quantized/f16/bf16: b's rows are converted once into the partner format of a's
//                   type (vec_dot.h) and each output is one dot product of a row of a.
//                   One activation row (decode): matvec_rows. Several (prefill): the
//                   rows of a are taken in chunks that stay in L2, each multiplied with
//                   all activation rows by the tile kernels (matmul_tile), which decode
//                   a weight block once for several activation rows. Both give every
//                   output bit-identical to dot(), whatever M, the chunks or nth.
//   a constant matrix of a type with packed kernels on this CPU (repack.h; f32 too,
//                   for any number of activation rows): its packed copy, which the
//                   backend passes in KernelCtx::packed; b's rows are converted into
//                   the packed kernels' activation rows and each thread takes a range
//                   of 16-row bands against all of them. Decode and prefill give the
//                   same bits.
//   transposed a (gradients): gemm_f32 with a as its k-major operand (b_kn), read in
//                   place when f32, else dequantized into f32 scratch first.
#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_dot.h"

#include "toyllm/quant.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace toyllm::cpu {

namespace {

constexpr size_t kAlign = 64;
constexpr int64_t kTile = 32;  // rows per block of the transposing gathers (32 x 32 floats: 4 KiB)

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// One weight matrix for every row of b (a not batched) and the node contiguous.
bool one_weight_matrix(const Tensor * node) {
    const Tensor * a = node->src[0];
    return a->ne[2] == 1 && a->ne[3] == 1 && node->nb[2] == node->nb[1] * node->ne[1] && node->nb[3] == node->nb[2] * node->ne[2];
}

// Where phase 0 puts things in the scratch, and which operands to read in phase 1.
struct MatmulPlan {
    bool transposed;   // out[k, m] = sum_n a[k, n] b[n, m]
    bool accumulate;   // out += the product (a gradient buffer; f32 a, through gemm)
    bool a_direct;     // use a in place (rows contiguous; f32 when transposed; or a_kn)
    bool a_kn;         // f32 a stored k-major (dim 1 contiguous): gemm's b_kn operand
    bool b_direct;     // f32 b used in place: contiguous rows, or b_km
    bool b_km;         // b stored k-major (dim 1 contiguous): gemm's a_km operand
    bool packed;       // a's packed copy and the packed kernels (implies quant, not tiled)
    bool quant;        // dot-product path (a not f32 or one row of b per matrix; not transposed)
    bool tiled;        // quant with several activation rows per weight matrix: matmul_tile
    bool shared_a;     // one weight matrix for every row of b (a not batched), node contiguous
    DType vdt = DType::F32;
    size_t a_off = 0, a_bytes = 0;  // contiguous f32 copy of a
    size_t b_off = 0, b_bytes = 0;  // contiguous f32 copy of b, or b converted to vdt
    size_t b_row_bytes = 0;
    size_t total = 0;

    explicit MatmulPlan(const Tensor * node) {
        const Tensor * a = node->src[0];
        const Tensor * b = node->src[1];
        transposed = node->params.i[0] != 0;
        accumulate = node->params.i[1] != 0;
        shared_a = one_weight_matrix(node);
        const int64_t rows_per_matrix = shared_a ? b->n_rows() : b->ne[1];
        packed = matmul_uses_packed(node);
        quant = packed || (!transposed && (a->type != DType::F32 || (rows_per_matrix == 1 && a->nb[0] == 4 && !accumulate)));
        a_kn = !transposed && a->type == DType::F32 && a->nb[0] != 4 && a->nb[1] == 4 && a->nb[0] % 4 == 0;
        a_direct = a_kn || (a->nb[0] == static_cast<int64_t>(dtype_info(a->type).type_size) && (!transposed || a->type == DType::F32));
        b_km = !quant && b->nb[0] != 4 && b->nb[1] == 4 && b->nb[0] % 4 == 0;
        b_direct = b->nb[0] == 4 || b_km;
        size_t at = 0;
        if (!a_direct) {
            a_off = at;
            a_bytes = align_up(static_cast<size_t>(a->n_elements()) * sizeof(float));
            at += a_bytes;
        }
        tiled = quant && !packed && rows_per_matrix > 1;
        if (packed) {
            b_row_bytes = static_cast<size_t>(packed_x_row_bytes(a->type, b->ne[0]));
            b_off = at;
            b_bytes = align_up(b_row_bytes * static_cast<size_t>(b->n_rows()));
            at += b_bytes;
        } else if (tiled) {
            b_row_bytes = align_up(static_cast<size_t>(tile_x_row_bytes(a->type, b->ne[0])));
            b_off = at;
            b_bytes = align_up(b_row_bytes * static_cast<size_t>(b->n_rows()));
            at += b_bytes;
        } else if (quant) {
            vdt = vec_dot_for(a->type).vec_dot_type;
            b_row_bytes = dtype_row_bytes(vdt, b->ne[0]);
            b_off = at;
            b_bytes = align_up(b_row_bytes * static_cast<size_t>(b->n_rows()));
            at += b_bytes;
        } else if (!b_direct) {
            b_row_bytes = static_cast<size_t>(b->ne[0]) * sizeof(float);
            b_off = at;
            b_bytes = align_up(b_row_bytes * static_cast<size_t>(b->n_rows()));
            at += b_bytes;
        }
        total = at;
    }
};

const float * row_ptr(const Tensor * t, int64_t r) {
    const int64_t i1 = r % t->ne[1], i2 = (r / t->ne[1]) % t->ne[2], i3 = r / (t->ne[1] * t->ne[2]);
    return at<float>(t, 0, i1, i2, i3);
}

// Rows [r0, r1) of an f32 tensor with any strides into dst (row r at dst + r * ne[0]).
// A strided dim 0 (a transposed view: x^T, grad^T in the matmul gradient) is read in
// kTile x 64 blocks so that every cache line fetched is used kTile times.
void gather_rows(const Tensor * t, int64_t r0, int64_t r1, float * dst) {
    const int64_t n0 = t->ne[0], s0 = t->nb[0] / 4;
    if (s0 == 1) {
        for (int64_t r = r0; r < r1; ++r) std::memcpy(dst + r * n0, row_ptr(t, r), static_cast<size_t>(n0) * sizeof(float));
        return;
    }
    for (int64_t rb = r0; rb < r1; rb += kTile) {
        const int64_t re = std::min(rb + kTile, r1);
        for (int64_t ib = 0; ib < n0; ib += 64) {
            const int64_t ie = std::min(ib + 64, n0);
            for (int64_t r = rb; r < re; ++r) {
                const float * src = row_ptr(t, r);
                float * out = dst + r * n0;
                for (int64_t i = ib; i < ie; ++i) out[i] = src[i * s0];
            }
        }
    }
}

void prepare(const KernelCtx & k, const Tensor * node, const MatmulPlan & p) {
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    if (!p.a_direct) {
        // Contiguous f32 copy of a.
        float * dst = reinterpret_cast<float *>(k.scratch + p.a_off);
        const RowRange rr = split_rows(a->n_rows(), k.ith, k.nth);
        if (a->type == DType::F32) {
            gather_rows(a, rr.begin, rr.end, dst);
        } else {
            for (int64_t r = rr.begin; r < rr.end; ++r) {
                const int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
                TOYLLM_ASSERT(a->nb[0] == static_cast<int64_t>(dtype_info(a->type).type_size));
                dequantize_row(a->type, at<uint8_t>(a, 0, i1, i2, i3), dst + r * a->ne[0], a->ne[0]);
            }
        }
    }
    if (p.quant) {
        const VecDot & vd = vec_dot_for(a->type);
        const RowRange rr = split_rows(b->n_rows(), k.ith, k.nth);
        std::vector<float> gathered;
        for (int64_t r = rr.begin; r < rr.end; ++r) {
            const float * src = row<float>(b, r);
            if (!p.b_direct) {
                gathered.resize(static_cast<size_t>(b->ne[0]));
                const int64_t i1 = r % b->ne[1], i2 = (r / b->ne[1]) % b->ne[2], i3 = r / (b->ne[1] * b->ne[2]);
                for (int64_t i = 0; i < b->ne[0]; ++i) gathered[static_cast<size_t>(i)] = *at<float>(b, i, i1, i2, i3);
                src = gathered.data();
            }
            uint8_t * dst = k.scratch + p.b_off + p.b_row_bytes * static_cast<size_t>(r);
            if (p.packed) {
                packed_x_from_float(a->type, src, dst, b->ne[0]);
            } else if (p.tiled) {
                tile_x_from_float(a->type, src, dst, b->ne[0]);
            } else {
                vd.from_float(src, dst, b->ne[0]);
            }
        }
    } else if (!p.b_direct) {
        const RowRange rr = split_rows(b->n_rows(), k.ith, k.nth);
        gather_rows(b, rr.begin, rr.end, reinterpret_cast<float *>(k.scratch + p.b_off));
    }
}

// Cache blocking of the tiled path: a thread takes chunks of about kWeightChunkBytes of
// weight rows (kept in L2 while they meet the activation rows) times chunks of about
// kActChunkBytes of prepared activation rows.
constexpr int64_t kWeightChunkBytes = 256 * 1024;
constexpr int64_t kActChunkBytes = 256 * 1024;

// The whole product of one weight matrix (N rows) with M prepared activation rows,
// split into (row chunk, column chunk) items; thread ith takes a contiguous range of
// items in row-chunk-major order, so it reuses each weight chunk for all its columns.
void compute_tiled(const KernelCtx & k, MatTileArgs t) {
    const int64_t N = t.n_rows, M = t.n_cols;
    // Column chunks of equal size (a multiple of 4, the tile kernels' widest register tile).
    const int64_t max_cols = std::max<int64_t>(4, kActChunkBytes / t.x_row_bytes);
    int64_t n_col_chunks = (M + max_cols - 1) / max_cols;
    const int64_t cols_per_chunk = ((M + n_col_chunks - 1) / n_col_chunks + 3) / 4 * 4;
    n_col_chunks = (M + cols_per_chunk - 1) / cols_per_chunk;
    // Enough row chunks for the cache, and a multiple of nth when that leaves rows to all.
    int64_t n_row_chunks = std::max<int64_t>(1, N * t.w_row_bytes / kWeightChunkBytes);
    if (n_row_chunks * n_col_chunks % k.nth != 0) {
        const int64_t want = (n_row_chunks + k.nth - 1) / k.nth * k.nth;
        if (want <= N / 4) n_row_chunks = want;
    }
    const int64_t rows_per_chunk = ((N + n_row_chunks - 1) / n_row_chunks + 3) / 4 * 4;
    n_row_chunks = (N + rows_per_chunk - 1) / rows_per_chunk;
    const RowRange items = split_rows(n_row_chunks * n_col_chunks, k.ith, k.nth);
    const auto * w = static_cast<const uint8_t *>(t.w);
    const auto * x = static_cast<const uint8_t *>(t.x);
    float * y = t.y;
    for (int64_t i = items.begin; i < items.end; ++i) {
        const int64_t r0 = i / n_col_chunks * rows_per_chunk, c0 = i % n_col_chunks * cols_per_chunk;
        t.w = w + r0 * t.w_row_bytes;
        t.n_rows = std::min(rows_per_chunk, N - r0);
        t.x = x + c0 * t.x_row_bytes;
        t.n_cols = std::min(cols_per_chunk, M - c0);
        t.y = y + c0 * t.ldy + r0;
        matmul_tile(t);
    }
}

void compute(const KernelCtx & k, Tensor * node, const MatmulPlan & p) {
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    if (p.packed) {
        TOYLLM_ASSERT(k.packed != nullptr);
        const RowRange bands = split_rows(packed_bands(a->ne[1]), k.ith, k.nth);
        // One weight matrix: every row of b is a column of one product (shared_a), or
        // each batch of b is.
        const int64_t n_products = p.shared_a ? 1 : b->ne[2] * b->ne[3];
        const int64_t M = p.shared_a ? b->n_rows() : b->ne[1];
        for (int64_t i = 0; i < n_products; ++i) {
            const int64_t i2 = i % b->ne[2], i3 = i / b->ne[2];
            packed_matmul({.w_type = a->type, .w = k.packed, .n_rows = a->ne[1], .n = a->ne[0],
                           .x = k.scratch + p.b_off + p.b_row_bytes * static_cast<size_t>(i * M),
                           .x_row_bytes = static_cast<int64_t>(p.b_row_bytes), .n_cols = M,
                           .y = at<float>(node, 0, 0, i2, i3), .ldy = node->nb[1] / static_cast<int64_t>(sizeof(float))},
                          bands.begin, bands.end);
        }
        return;
    }
    if (p.tiled && p.shared_a) {
        // Every row of b against the one weight matrix: one product with M = all rows.
        compute_tiled(k, {.w_type = a->type, .w = a->data, .w_row_bytes = a->nb[1], .n_rows = a->ne[1],
                          .x = k.scratch + p.b_off, .x_row_bytes = static_cast<int64_t>(p.b_row_bytes),
                          .n_cols = b->n_rows(), .n = a->ne[0], .y = static_cast<float *>(node->data),
                          .ldy = node->nb[1] / static_cast<int64_t>(sizeof(float))});
        return;
    }
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    const int64_t M = b->ne[1];
    for (int64_t i3 = 0; i3 < b->ne[3]; ++i3) {
        for (int64_t i2 = 0; i2 < b->ne[2]; ++i2) {
            const int64_t a2 = i2 / r2, a3 = i3 / r3;
            const int64_t a_batch = a2 + a->ne[2] * a3;
            const int64_t b_batch = i2 + b->ne[2] * i3;
            float * c = at<float>(node, 0, 0, i2, i3);
            if (p.tiled) {
                compute_tiled(k, {.w_type = a->type, .w = at<uint8_t>(a, 0, 0, a2, a3), .w_row_bytes = a->nb[1],
                                  .n_rows = a->ne[1], .x = k.scratch + p.b_off + p.b_row_bytes * static_cast<size_t>(b_batch * M),
                                  .x_row_bytes = static_cast<int64_t>(p.b_row_bytes), .n_cols = M, .n = a->ne[0], .y = c,
                                  .ldy = node->nb[1] / static_cast<int64_t>(sizeof(float))});
                continue;
            }
            if (p.quant) {
                const RowRange rr = split_rows(a->ne[1], k.ith, k.nth);
                for (int64_t m = 0; m < M; ++m) {
                    const uint8_t * x = k.scratch + p.b_off + p.b_row_bytes * static_cast<size_t>(b_batch * M + m);
                    MatVecArgs mv{a->type, at<uint8_t>(a, 0, 0, a2, a3), a->nb[1], a->ne[0], x, c + m * node->ne[0]};
                    matvec_rows(mv, rr.begin, rr.end);
                }
                continue;
            }
            GemmArgs g{};
            g.m = M;
            g.a = p.b_direct ? at<float>(b, 0, 0, i2, i3) : reinterpret_cast<const float *>(k.scratch + p.b_off) + b_batch * M * b->ne[0];
            g.lda = p.b_direct ? (p.b_km ? b->nb[0] : b->nb[1]) / 4 : b->ne[0];
            g.a_km = p.b_km;
            g.ldc = node->ne[0];
            g.c = c;
            g.n = p.transposed ? a->ne[0] : a->ne[1];
            g.k = p.transposed ? a->ne[1] : a->ne[0];
            g.b = p.a_direct ? at<float>(a, 0, 0, a2, a3) : reinterpret_cast<const float *>(k.scratch + p.a_off) + a_batch * a->ne[0] * a->ne[1];
            g.ldb = p.a_direct ? (p.a_kn ? a->nb[0] : a->nb[1]) / 4 : a->ne[0];
            g.b_kn = p.transposed || p.a_kn;
            g.accumulate = p.accumulate;
            gemm_f32(g, k.ith, k.nth);
        }
    }
}

}  // namespace

size_t scratch_matmul(const Tensor * node, int /*nth*/) { return MatmulPlan(node).total; }

bool matmul_packed_joins(const Tensor * first, const Tensor * next) {
    const Tensor * a = first->src[0];
    const Tensor * b = next->src[0];
    return next->src[1] == first->src[1] && a->type == b->type && a->ne[0] == b->ne[0] && one_weight_matrix(first) &&
           one_weight_matrix(next);
}

void kernel_matmul_packed_run(const KernelCtx & k, Tensor * const * nodes, const void * const * packed, int n) {
    const MatmulPlan p(nodes[0]);  // the same plan for every node of the run
    int64_t total = 0;
    for (int i = 0; i < n; ++i) total += packed_bands(nodes[i]->src[0]->ne[1]);
    const RowRange mine = split_rows(total, k.ith, k.nth);
    const Tensor * b = nodes[0]->src[1];
    int64_t first = 0;  // the run's band index of node i's band 0
    for (int i = 0; i < n; ++i) {
        const Tensor * a = nodes[i]->src[0];
        const int64_t bands = packed_bands(a->ne[1]);
        const int64_t begin = std::max(mine.begin, first) - first, end = std::min(mine.end, first + bands) - first;
        if (begin < end) {
            packed_matmul({.w_type = a->type, .w = packed[i], .n_rows = a->ne[1], .n = a->ne[0], .x = k.scratch + p.b_off,
                           .x_row_bytes = static_cast<int64_t>(p.b_row_bytes), .n_cols = b->n_rows(),
                           .y = static_cast<float *>(nodes[i]->data), .ldy = nodes[i]->nb[1] / static_cast<int64_t>(sizeof(float))},
                          begin, end);
        }
        first += bands;
    }
}

void kernel_matmul(const KernelCtx & k, Tensor * node) {
    const MatmulPlan p(node);
    if (k.phase == 0) prepare(k, node, p);
    else compute(k, node, p);
}

}  // namespace toyllm::cpu
