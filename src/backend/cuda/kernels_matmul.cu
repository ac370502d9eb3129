// matmul on the GPU, out[n, m] = sum_k a[k, n] b[k, m] (and the transposed form
// out[k, m] = sum_n a[k, n] b[n, m] of the gradients), batched over dims 2/3 with a
// broadcast over b's batch.
//
//   <= 8 columns of b, a weight's layout (decode): kernels_matvec.cu's staged kernel
//   a f32 otherwise:     cuBLAS in f32 (no TF32), operands read in place through their
//                        strides when one of dims 0/1 is contiguous, else gathered
//   a not f32, <= 8 columns of b in another layout: the matrix-vector kernel here, one
//                        warp per output row, a converted as it is read, b in f32
//   a Q8_0/Q4_0/Q4_K/Q6_K, more columns: our 64 x 64 tiled kernel, a dequantized into
//                        shared memory tile by tile
//   a f16/bf16, more columns, and the transposed form with a not f32: a converted to f32
//                        scratch, then cuBLAS. (Not GemmEx on halves: that would round b to
//                        16 bits, where the CPU keeps f16/bf16 matmuls' activations f32.)
#include "backend/cuda/dequant.cuh"

#include "toyllm/error.h"

#include <algorithm>
#include <string>

namespace toyllm::cuda {

namespace {

constexpr int kMatvecCols = 4;     // columns of b per warp in the matrix-vector kernel
constexpr int64_t kMatvecMaxM = 8; // up to this many columns use the matrix-vector kernel
constexpr int kTile = 64;          // output tile of the tiled kernel
constexpr int kTileK = 32;         // k step of the tiled kernel (every block size divides it or is a multiple)

void check_cublas(cublasStatus_t s, const char * what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuda matmul: ") + what + " failed (cublasStatus " + std::to_string(static_cast<int>(s)) + ")");
}

// ---- conversions into scratch ---------------------------------------------------------

// dst (contiguous, src's shape) = src converted to float (any loadable type, any strides
// for f32; rows contiguous for the others).
template <int T> __global__ void to_f32_kernel(View src, float * dst) {
    const int64_t n = src.n_elements();
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const Idx4 j = unravel(e, src.ne);
        if (static_cast<DType>(T) == DType::F32) {
            dst[e] = src.f(j.i[0], j.i[1], j.i[2], j.i[3]);
        } else {
            const auto * row = reinterpret_cast<const uint8_t *>(src.p + j.i[1] * src.nb[1] + j.i[2] * src.nb[2] + j.i[3] * src.nb[3]);
            dst[e] = load_value(static_cast<DType>(T), row, j.i[0]);
        }
    }
}

float * to_f32(const Exec & e, const Tensor * t, const void * d) {
    auto * dst = static_cast<float *>(e.scratch(static_cast<size_t>(t->n_elements()) * sizeof(float)));
    const View v = view_of(t, d);
    const unsigned g = grid_for(t->n_elements(), kBlock);
    switch (t->type) {
        case DType::F32: to_f32_kernel<static_cast<int>(DType::F32)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::F16: to_f32_kernel<static_cast<int>(DType::F16)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::BF16: to_f32_kernel<static_cast<int>(DType::BF16)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::Q8_0: to_f32_kernel<static_cast<int>(DType::Q8_0)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::Q4_0: to_f32_kernel<static_cast<int>(DType::Q4_0)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::Q4_K: to_f32_kernel<static_cast<int>(DType::Q4_K)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        case DType::Q6_K: to_f32_kernel<static_cast<int>(DType::Q6_K)><<<g, kBlock, 0, e.stream>>>(v, dst); break;
        default: throw Error("cuda matmul: no device conversion from " + std::string(dtype_name(t->type)));
    }
    check_launch("matmul (convert to f32)");
    return dst;
}

// ---- quantized a: our kernels ---------------------------------------------------------

struct Batch {
    int64_t b_ne2, r2, r3;  // b's dim 2; b entries per a entry in dims 2 and 3
};

__device__ inline const uint8_t * a_row(const View & a, const Batch & bt, int64_t n, int64_t z) {
    const int64_t i2 = z % bt.b_ne2, i3 = z / bt.b_ne2;
    return reinterpret_cast<const uint8_t *>(a.p + n * a.nb[1] + (i2 / bt.r2) * a.nb[2] + (i3 / bt.r3) * a.nb[3]);
}

// One warp per output row n, kMatvecCols columns of b at a time: a's row is read once
// for all of them; lanes stride over k, then a fixed-order warp sum.
template <int T> __global__ void matvec_kernel(View a, View b, View out, Batch bt) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + warp;
    const int64_t z = blockIdx.y;
    const int64_t m0 = static_cast<int64_t>(blockIdx.z) * kMatvecCols;
    if (n >= out.ne[0]) return;
    const int64_t i2 = z % bt.b_ne2, i3 = z / bt.b_ne2;
    const int64_t K = a.ne[0], M = b.ne[1];
    const uint8_t * ar = a_row(a, bt, n, z);
    float acc[kMatvecCols] = {};
    for (int64_t k = lane; k < K; k += 32) {
        const float w = load_value(static_cast<DType>(T), ar, k);
#pragma unroll
        for (int c = 0; c < kMatvecCols; ++c) {
            if (m0 + c < M) acc[c] += w * b.f(k, m0 + c, i2, i3);
        }
    }
#pragma unroll
    for (int c = 0; c < kMatvecCols; ++c) {
        const float s = warp_sum(acc[c]);
        if (lane == 0 && m0 + c < M) out.f(n, m0 + c, i2, i3) = s;
    }
}

// 64 x 64 output tile per block of 256 threads (4 x 4 outputs each); a's values are
// dequantized into shared memory kTileK at a time.
template <int T> __global__ void tiled_kernel(View a, View b, View out, Batch bt) {
    __shared__ float as[kTileK][kTile + 1];
    __shared__ float bs[kTileK][kTile + 1];
    const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTile, m0 = static_cast<int64_t>(blockIdx.y) * kTile;
    const int64_t z = blockIdx.z;
    const int64_t i2 = z % bt.b_ne2, i3 = z / bt.b_ne2;
    const int64_t K = a.ne[0], N = out.ne[0], M = out.ne[1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
        for (int x = threadIdx.x; x < kTileK * kTile; x += blockDim.x) {
            const int kk = x % kTileK, j = x / kTileK;
            const int64_t k = k0 + kk;
            as[kk][j] = (n0 + j < N && k < K) ? load_value(static_cast<DType>(T), a_row(a, bt, n0 + j, z), k) : 0.0f;
            bs[kk][j] = (m0 + j < M && k < K) ? b.f(k, m0 + j, i2, i3) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < kTileK; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                av[i] = as[kk][tx + 16 * i];
                bv[i] = bs[kk][ty + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tx + 16 * i, m = m0 + ty + 16 * j;
            if (n < N && m < M) out.f(n, m, i2, i3) = acc[i][j];
        }
}

template <int T> void launch_quant(const Exec & e, const View & a, const View & b, const View & out, const Batch & bt, int64_t n_batch) {
    const int64_t N = out.ne[0], M = out.ne[1];
    if (M <= kMatvecMaxM) {
        constexpr int kWarps = 4;
        const dim3 grid(static_cast<unsigned>((N + kWarps - 1) / kWarps), static_cast<unsigned>(n_batch),
                        static_cast<unsigned>((M + kMatvecCols - 1) / kMatvecCols));
        matvec_kernel<T><<<grid, kWarps * 32, 0, e.stream>>>(a, b, out, bt);
        check_launch("matmul (quantized matrix-vector)");
    } else {
        const dim3 grid(static_cast<unsigned>((N + kTile - 1) / kTile), static_cast<unsigned>((M + kTile - 1) / kTile),
                        static_cast<unsigned>(n_batch));
        tiled_kernel<T><<<grid, 256, 0, e.stream>>>(a, b, out, bt);
        check_launch("matmul (quantized tiles)");
    }
}

// a not f32 and not transposed: the matrix-vector kernel for a few columns of b, else
// (quantized a) the tiled kernel.
void matmul_own(const Exec & e, const NodeArgs & args) {
    const Tensor * node = args.node;
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    const View av = view_of(a, args.src[0]), bv = view_of(b, args.src[1]), ov = view_of(node, args.out);
    const Batch bt{b->ne[2], b->ne[2] / a->ne[2], b->ne[3] / a->ne[3]};
    const int64_t n_batch = b->ne[2] * b->ne[3];
    if (n_batch > 65535) throw Error("cuda matmul: more than 65535 batch entries");
    switch (a->type) {
        case DType::F16: return launch_quant<static_cast<int>(DType::F16)>(e, av, bv, ov, bt, n_batch);
        case DType::BF16: return launch_quant<static_cast<int>(DType::BF16)>(e, av, bv, ov, bt, n_batch);
        case DType::Q8_0: return launch_quant<static_cast<int>(DType::Q8_0)>(e, av, bv, ov, bt, n_batch);
        case DType::Q4_0: return launch_quant<static_cast<int>(DType::Q4_0)>(e, av, bv, ov, bt, n_batch);
        case DType::Q4_K: return launch_quant<static_cast<int>(DType::Q4_K)>(e, av, bv, ov, bt, n_batch);
        case DType::Q6_K: return launch_quant<static_cast<int>(DType::Q6_K)>(e, av, bv, ov, bt, n_batch);
        default: throw Error("cuda matmul: no quantized kernel for " + std::string(dtype_name(a->type)));
    }
}

// ---- cuBLAS ---------------------------------------------------------------------------

// A logical R x C matrix whose element (r, c) sits at r * sr + c * sc elements, as
// cuBLAS sees it: column-major storage with leading dimension ld, used as is (op N) or
// transposed (op T). ok = false: neither dim is contiguous, gather first.
struct Operand {
    bool ok = false;
    cublasOperation_t op = CUBLAS_OP_N;
    int64_t ld = 0;
};

Operand as_operand(int64_t R, int64_t C, int64_t sr, int64_t sc) {
    if (sr == 1 && (sc >= R || C == 1)) return {true, CUBLAS_OP_N, C == 1 ? std::max<int64_t>(R, 1) : sc};
    if (sc == 1 && (sr >= C || R == 1)) return {true, CUBLAS_OP_T, R == 1 ? std::max<int64_t>(C, 1) : sr};
    if (R == 1 && sc >= 1) return {true, CUBLAS_OP_N, sc};
    if (C == 1 && sr >= 1) return {true, CUBLAS_OP_T, sr};
    return {};
}

// A matmul operand on the device: its memory, element type and strides in elements.
struct Mat {
    const char * p;
    cudaDataType_t type;
    size_t elem;
    int64_t s[4];  // strides in elements
    int64_t ne[4];
};

Mat in_place(const Tensor * t, const void * d, cudaDataType_t type, size_t elem) {
    Mat m{static_cast<const char *>(d), type, elem, {}, {}};
    for (int i = 0; i < 4; ++i) {
        m.s[i] = t->nb[i] / static_cast<int64_t>(elem);
        m.ne[i] = t->ne[i];
    }
    return m;
}

Mat contiguous(const Tensor * t, const void * d, cudaDataType_t type, size_t elem) {
    Mat m{static_cast<const char *>(d), type, elem, {1, t->ne[0], t->ne[0] * t->ne[1], t->ne[0] * t->ne[1] * t->ne[2]}, {}};
    for (int i = 0; i < 4; ++i) m.ne[i] = t->ne[i];
    return m;
}

// The logical R x C view of a 2-D slice of m: rows along dim `rdim` (0 or 1).
Operand operand_of(const Mat & m, int rdim) {
    const int cdim = 1 - rdim;
    return as_operand(m.ne[rdim], m.ne[cdim], m.s[rdim], m.s[cdim]);
}

void matmul_cublas(const Exec & e, const NodeArgs & args) {
    if (e.capturing) throw NotCapturable{};
    const Tensor * node = args.node;
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    const bool transposed = node->params.i[0] != 0;

    // a: f32 in place, else an f32 copy.
    Mat am = a->type == DType::F32 ? in_place(a, args.src[0], CUDA_R_32F, 4) : contiguous(a, to_f32(e, a, args.src[0]), CUDA_R_32F, 4);
    // Non-transposed: op(A) is N x K, rows along a's dim 1. Transposed: K x N, rows along dim 0.
    const int a_rdim = transposed ? 0 : 1;
    Operand ao = operand_of(am, a_rdim);
    if (!ao.ok) {
        am = contiguous(a, to_f32(e, a, args.src[0]), CUDA_R_32F, 4);
        ao = operand_of(am, a_rdim);
    }

    // b: K x M (or N x M), rows along dim 0.
    Mat bm = in_place(b, args.src[1], CUDA_R_32F, 4);
    Operand bo = operand_of(bm, 0);
    if (!bo.ok) {
        bm = contiguous(b, to_f32(e, b, args.src[1]), CUDA_R_32F, 4);
        bo = operand_of(bm, 0);
    }

    const int64_t rows = node->ne[0], cols = node->ne[1];
    const int64_t inner = transposed ? a->ne[1] : a->ne[0];
    const int64_t ldc = node->nb[1] / 4;
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    const float alpha = 1.0f, beta = node->params.i[1] != 0 ? 1.0f : 0.0f;  // accumulate_grad's form
    for (int64_t i3 = 0; i3 < b->ne[3]; ++i3) {
        for (int64_t i2 = 0; i2 < b->ne[2]; ++i2) {
            const char * pa = am.p + ((i2 / r2) * am.s[2] + (i3 / r3) * am.s[3]) * static_cast<int64_t>(am.elem);
            const char * pb = bm.p + (i2 * bm.s[2] + i3 * bm.s[3]) * static_cast<int64_t>(bm.elem);
            char * pc = static_cast<char *>(args.out) + i2 * node->nb[2] + i3 * node->nb[3];
            check_cublas(cublasGemmEx(e.cublas, ao.op, bo.op, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(inner), &alpha, pa,
                                      am.type, static_cast<int>(ao.ld), pb, bm.type, static_cast<int>(bo.ld), &beta, pc, CUDA_R_32F,
                                      static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx");
        }
    }
}

bool quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K; }

}  // namespace

void kernel_matmul(const Exec & e, const NodeArgs & a) {
    const Tensor * w = a.node->src[0];
    if (!device_can_load(w->type)) throw Error("cuda matmul: weights of type " + std::string(dtype_name(w->type)) + " are not supported");
    const bool transposed = a.node->params.i[0] != 0;
    const bool few_columns = a.node->src[1]->ne[1] <= kMatvecMaxM;
    const bool accumulate = a.node->params.i[1] != 0;  // f32 a, through cuBLAS with beta = 1
    if (!transposed && !accumulate && few_columns && launch_matvec(e, a)) return;  // decode, any weight type
    if (!transposed && !accumulate && w->type != DType::F32 && (few_columns || quantized(w->type))) matmul_own(e, a);
    else matmul_cublas(e, a);
}

}  // namespace toyllm::cuda
