// The decode product out[n, m] = sum_k a[k, n] b[k, m] for a few columns of b (m <= 8)
// and a weight a stored in rows (f32, f16, bf16 or a block format): the kernel that reads
// nearly all of a model's bytes per token, so it is shaped for bandwidth.
//
// Warps take rows of a. A warp copies its row into shared memory in chunks (2048 values,
// f32 1024) with 16-byte loads (whole lines, every lane busy, 2-4 KB in flight per warp),
// the next chunk's loads in flight while it dots the current one with b. Each lane takes
// a few consecutive values of a block (Q8_0: 4 quants, Q4_0: 4 bytes = 8 values,
// f16/bf16: 8 values, f32: 4), so that b is read as float4 and a block's scale once. Q4_K and Q6_K use the element-wise
// load_value on the staged bytes. The warp's sum is a fixed-order shuffle tree.
//
// Taken when a's rows are aligned for the dot (below) and b's columns are contiguous and
// 16-byte aligned (every weight times an activation); else the caller's general kernel.
#include "backend/cuda/dequant.cuh"

#include <algorithm>
#include <cstdint>

namespace toyllm::cuda {

namespace {

constexpr int kWarps = 4;          // rows (warps) per block
constexpr int kChunkBytes = 4096;  // the largest staged chunk (f32, f16, bf16)

// Values of a row staged at a time: 2048 (a multiple of 256, the largest block), f32 1024.
template <int T> __host__ __device__ constexpr int64_t chunk_values() { return static_cast<DType>(T) == DType::F32 ? 1024 : 2048; }

// Storage of n values of type T (n a multiple of the block size).
template <int T> __host__ __device__ constexpr int64_t bytes_of(int64_t n) {
    switch (static_cast<DType>(T)) {
        case DType::F32: return 4 * n;
        case DType::F16:
        case DType::BF16: return 2 * n;
        case DType::Q8_0: return n / 32 * 34;
        case DType::Q4_0: return n / 32 * 18;
        case DType::Q4_K: return n / 256 * 144;
        case DType::Q6_K: return n / 256 * 210;
        default: return 0;
    }
}

__device__ inline float h2f(const uint8_t * p) { return __half2float(*reinterpret_cast<const __half *>(p)); }
__device__ inline float i8(uint32_t x, int byte) { return static_cast<float>(static_cast<int8_t>((x >> (8 * byte)) & 0xFF)); }

// A chunk of a row, in flight: the 16-byte words that cover it (read from the word at
// or below its first byte, so that any row start works), kLoads per lane at most.
constexpr int kLoads = (kChunkBytes + 32) / 16 / 32 + 1;

struct Chunk {
    const uint4 * words;  // first word
    int n_words;
    int off;              // the chunk's first byte within the first word
};

__device__ inline Chunk chunk_at(const uint8_t * p, int64_t bytes) {
    const auto at = reinterpret_cast<uintptr_t>(p);
    const uintptr_t first = at & ~uintptr_t{15};
    const int off = static_cast<int>(at - first);
    return {reinterpret_cast<const uint4 *>(first), static_cast<int>((off + bytes + 15) / 16), off};
}

__device__ inline void load_chunk(const Chunk & c, uint4 * regs, int lane) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
        const int w = lane + 32 * j;
        if (w < c.n_words) regs[j] = __ldg(c.words + w);
    }
}

__device__ inline void store_chunk(const Chunk & c, const uint4 * regs, uint4 * shared, int lane) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
        const int w = lane + 32 * j;
        if (w < c.n_words) shared[w] = regs[j];
    }
}

// One lane's share of the dot of a staged chunk of `len` values with NC columns of b
// (bcol[c] already at the chunk's first value), added to acc.
template <int T, int NC> __device__ inline void dot_chunk(const uint8_t * s, int64_t len, const float * const * bcol, int lane, float * acc) {
    constexpr DType t = static_cast<DType>(T);
    if constexpr (t == DType::Q8_0) {
        for (int64_t k = 4 * lane; k < len; k += 128) {
            const uint8_t * blk = s + (k / 32) * 34;
            const uint8_t * q = blk + 2 + (k % 32);  // 2-byte aligned
            const uint32_t x = reinterpret_cast<const uint16_t *>(q)[0] | (static_cast<uint32_t>(reinterpret_cast<const uint16_t *>(q)[1]) << 16);
            const float d = h2f(blk);
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float4 v = *reinterpret_cast<const float4 *>(bcol[c] + k);
                acc[c] += d * (i8(x, 0) * v.x + i8(x, 1) * v.y + i8(x, 2) * v.z + i8(x, 3) * v.w);
            }
        }
    } else if constexpr (t == DType::Q4_0) {
        for (int64_t g = lane; g < len / 8; g += 32) {  // 4 groups of 4 bytes per block
            const int64_t k = (g / 4) * 32 + (g % 4) * 4;
            const uint8_t * blk = s + (g / 4) * 18;
            const uint8_t * q = blk + 2 + (g % 4) * 4;
            const uint32_t x = reinterpret_cast<const uint16_t *>(q)[0] | (static_cast<uint32_t>(reinterpret_cast<const uint16_t *>(q)[1]) << 16);
            const float d = h2f(blk);
            float lo[4], hi[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                lo[j] = static_cast<float>(static_cast<int>((x >> (8 * j)) & 0xF) - 8);
                hi[j] = static_cast<float>(static_cast<int>((x >> (8 * j + 4)) & 0xF) - 8);
            }
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float4 v = *reinterpret_cast<const float4 *>(bcol[c] + k);
                const float4 w = *reinterpret_cast<const float4 *>(bcol[c] + k + 16);
                acc[c] += d * (lo[0] * v.x + lo[1] * v.y + lo[2] * v.z + lo[3] * v.w + hi[0] * w.x + hi[1] * w.y + hi[2] * w.z + hi[3] * w.w);
            }
        }
    } else if constexpr (t == DType::F32) {
        for (int64_t g = lane; g < len / 4; g += 32) {
            const float4 w = reinterpret_cast<const float4 *>(s)[g];
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float4 v = *reinterpret_cast<const float4 *>(bcol[c] + 4 * g);
                acc[c] += w.x * v.x + w.y * v.y + w.z * v.z + w.w * v.w;
            }
        }
    } else if constexpr (t == DType::F16 || t == DType::BF16) {
        for (int64_t g = lane; g < len / 8; g += 32) {
            const uint4 x = reinterpret_cast<const uint4 *>(s)[g];
            const uint32_t words[4] = {x.x, x.y, x.z, x.w};
            float w[8];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if constexpr (t == DType::F16) {
                    const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&words[j]));
                    w[2 * j] = f.x;
                    w[2 * j + 1] = f.y;
                } else {
                    w[2 * j] = __uint_as_float(words[j] << 16);
                    w[2 * j + 1] = __uint_as_float(words[j] & 0xFFFF0000u);
                }
            }
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float4 v = *reinterpret_cast<const float4 *>(bcol[c] + 8 * g);
                const float4 u = *reinterpret_cast<const float4 *>(bcol[c] + 8 * g + 4);
                acc[c] += w[0] * v.x + w[1] * v.y + w[2] * v.z + w[3] * v.w + w[4] * u.x + w[5] * u.y + w[6] * u.z + w[7] * u.w;
            }
        }
    } else {
        for (int64_t k = lane; k < len; k += 32) {
            const float w = load_value(t, s, k);
#pragma unroll
            for (int c = 0; c < NC; ++c) acc[c] += w * bcol[c][k];
        }
    }
}

struct Batch {
    int64_t b_ne2, r2, r3;  // b's dim 2; b entries per a entry in dims 2 and 3
};

// grid (blocks, batch entries, column groups of NC); block kWarps warps. Warp w of the
// grid takes rows w, w + warps, ... and walks their chunks in order, loading the next
// chunk into registers while it dots the current one from shared memory.
template <int T, int NC> __global__ void __launch_bounds__(kWarps * 32) matvec_staged(View a, View b, View out, Batch bt) {
    __shared__ uint4 staged[kWarps][kLoads * 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t z = blockIdx.y, i2 = z % bt.b_ne2, i3 = z / bt.b_ne2;
    const int64_t m0 = static_cast<int64_t>(blockIdx.z) * NC, M = b.ne[1], K = a.ne[0], N = out.ne[0];
    const int64_t n_warps = static_cast<int64_t>(gridDim.x) * kWarps;
    const char * a_base = a.p + (i2 / bt.r2) * a.nb[2] + (i3 / bt.r3) * a.nb[3];
    const float * bcol[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c) {
        const int64_t m = m0 + c < M ? m0 + c : M - 1;  // columns past M: read a valid one, never written
        bcol[c] = reinterpret_cast<const float *>(b.p + m * b.nb[1] + i2 * b.nb[2] + i3 * b.nb[3]);
    }
    constexpr int64_t kChunk = chunk_values<T>();
    auto chunk_of = [&](int64_t n, int64_t k0) {
        const auto * row = reinterpret_cast<const uint8_t *>(a_base + n * a.nb[1]);
        return chunk_at(row + bytes_of<T>(k0), bytes_of<T>(K - k0 < kChunk ? K - k0 : kChunk));
    };
    int64_t n = static_cast<int64_t>(blockIdx.x) * kWarps + warp, k0 = 0;
    if (n >= N) return;
    uint4 regs[kLoads];
    Chunk cur = chunk_of(n, k0);
    load_chunk(cur, regs, lane);
    float acc[NC] = {};
    uint4 * sh = staged[warp];
    while (true) {
        store_chunk(cur, regs, sh, lane);
        __syncwarp();
        // The next chunk: the rest of this row, else the warp's next row.
        const int64_t len = K - k0 < kChunk ? K - k0 : kChunk;
        const bool row_done = k0 + len >= K;
        const int64_t next_n = row_done ? n + n_warps : n, next_k0 = row_done ? 0 : k0 + kChunk;
        Chunk next{};
        if (next_n < N) {
            next = chunk_of(next_n, next_k0);
            load_chunk(next, regs, lane);
        }
        const float * bc[NC];
#pragma unroll
        for (int c = 0; c < NC; ++c) bc[c] = bcol[c] + k0;
        dot_chunk<T, NC>(reinterpret_cast<const uint8_t *>(sh) + cur.off, len, bc, lane, acc);
        if (row_done) {
#pragma unroll
            for (int c = 0; c < NC; ++c) {
                const float sum = warp_sum(acc[c]);
                if (lane == 0 && m0 + c < M) out.f(n, m0 + c, i2, i3) = sum;
                acc[c] = 0.0f;
            }
        }
        __syncwarp();
        if (next_n >= N) break;
        n = next_n;
        k0 = next_k0;
        cur = next;
    }
}

bool aligned(const void * p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0; }

template <int T> void launch(const Exec & e, const View & a, const View & b, const View & out, const Batch & bt, int64_t n_batch) {
    const int64_t N = out.ne[0], M = b.ne[1];
    // Enough warps to keep ~70 KB per multiprocessor in flight; more rows loop.
    const int64_t blocks = std::min<int64_t>((N + kWarps - 1) / kWarps, std::max<int64_t>(int64_t{8} * e.sm_count / n_batch, 1));
    if (M == 1) {
        const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(n_batch), 1);
        matvec_staged<T, 1><<<grid, kWarps * 32, 0, e.stream>>>(a, b, out, bt);
    } else {
        const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(n_batch), static_cast<unsigned>((M + 3) / 4));
        matvec_staged<T, 4><<<grid, kWarps * 32, 0, e.stream>>>(a, b, out, bt);
    }
    check_launch("matmul (staged matrix-vector)");
}

}  // namespace

bool launch_matvec(const Exec & e, const NodeArgs & args) {
    const Tensor * node = args.node;
    const Tensor * a = node->src[0];
    const Tensor * b = node->src[1];
    const DType t = a->type;
    if (!device_type_supported(t) || b->type != DType::F32 || b->ne[1] > 8) return false;
    const DTypeInfo & info = dtype_info(t);
    // a: rows of whole blocks starting on 16 bytes (f16, bf16: the dot reads 16-byte
    // words of the staged row) or 2 bytes (the block formats: 2-byte scales and quants).
    // The staging reads the 16-byte words around each row, up to 15 bytes outside it:
    // inside the allocation, as every device buffer is a multiple of 256 bytes.
    const int64_t align = (t == DType::F32 || t == DType::F16 || t == DType::BF16) ? 16 : 2;
    if (a->ne[0] % info.block_size != 0 || a->nb[0] != static_cast<int64_t>(info.type_size) || a->nb[1] % align != 0 ||
        a->nb[2] % align != 0 || a->nb[3] % align != 0 || !aligned(args.src[0], align)) {
        return false;
    }
    if (b->nb[0] != 4 || b->nb[1] % 16 != 0 || b->nb[2] % 16 != 0 || b->nb[3] % 16 != 0 || !aligned(args.src[1], 16)) return false;
    const View av = view_of(a, args.src[0]), bv = view_of(b, args.src[1]), ov = view_of(node, args.out);
    const Batch bt{b->ne[2], b->ne[2] / a->ne[2], b->ne[3] / a->ne[3]};
    const int64_t n_batch = b->ne[2] * b->ne[3];
    if (n_batch > 65535) return false;
    switch (t) {
        case DType::F32: launch<static_cast<int>(DType::F32)>(e, av, bv, ov, bt, n_batch); break;
        case DType::F16: launch<static_cast<int>(DType::F16)>(e, av, bv, ov, bt, n_batch); break;
        case DType::BF16: launch<static_cast<int>(DType::BF16)>(e, av, bv, ov, bt, n_batch); break;
        case DType::Q8_0: launch<static_cast<int>(DType::Q8_0)>(e, av, bv, ov, bt, n_batch); break;
        case DType::Q4_0: launch<static_cast<int>(DType::Q4_0)>(e, av, bv, ov, bt, n_batch); break;
        case DType::Q4_K: launch<static_cast<int>(DType::Q4_K)>(e, av, bv, ov, bt, n_batch); break;
        case DType::Q6_K: launch<static_cast<int>(DType::Q6_K)>(e, av, bv, ov, bt, n_batch); break;
        default: return false;
    }
    return true;
}

}  // namespace toyllm::cuda
