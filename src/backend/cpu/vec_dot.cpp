// Dispatch of the dot-product kernels, and their scalar implementations (the fallback
// on every machine and the only path off x86-64).
#include "backend/cpu/vec_dot.h"

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/vec_dot_kernels.h"
#include "toyllm/error.h"
#include "toyllm/half.h"
#include "toyllm/quant.h"

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

namespace toyllm::cpu {

namespace k = kernels;

// The ISA files see only the mirrored layouts of vec_dot_kernels.h.
static_assert(sizeof(k::Q8_0Block) == sizeof(BlockQ8_0) && offsetof(k::Q8_0Block, qs) == offsetof(BlockQ8_0, qs));
static_assert(sizeof(k::Q4_0Block) == sizeof(BlockQ4_0) && offsetof(k::Q4_0Block, qs) == offsetof(BlockQ4_0, qs));
static_assert(sizeof(k::Q4_KBlock) == sizeof(BlockQ4_K) && offsetof(k::Q4_KBlock, scales) == offsetof(BlockQ4_K, scales) &&
              offsetof(k::Q4_KBlock, qs) == offsetof(BlockQ4_K, qs));
static_assert(sizeof(k::Q6_KBlock) == sizeof(BlockQ6_K) && offsetof(k::Q6_KBlock, qh) == offsetof(BlockQ6_K, qh) &&
              offsetof(k::Q6_KBlock, scales) == offsetof(BlockQ6_K, scales) &&
              offsetof(k::Q6_KBlock, d) == offsetof(BlockQ6_K, d));
static_assert(sizeof(k::Q8_KBlock) == sizeof(BlockQ8_K) && offsetof(k::Q8_KBlock, qs) == offsetof(BlockQ8_K, qs) &&
              offsetof(k::Q8_KBlock, bsums) == offsetof(BlockQ8_K, bsums));

namespace {

// ---- activation conversions ---------------------------------------------------------

void f32_from_float(const float * x, void * y, int64_t n) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void q8_0_from_float_scalar(const float * x, void * y, int64_t n) { quantize_row(DType::Q8_0, x, y, n); }

// ggml's nearest_int: round half to even by adding 1.5 * 2^23, valid for |v| <= 2^22.
int nearest_int(float v) {
    const float biased = v + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &biased, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

// ggml's quantize_row_q8_K_ref: the signed value of largest magnitude (the first one if
// several tie) maps to -127; d = 1 / iscale.
void q8_k_from_float_scalar(const float * x, void * y_, int64_t n) {
    auto * y = static_cast<k::Q8_KBlock *>(y_);
    for (int64_t i = 0; i < n / k::kQK_K; ++i, x += k::kQK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < k::kQK_K; ++j) {
            const float ax = x[j] < 0 ? -x[j] : x[j];
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            // ggml leaves bsums untouched here; zero them so the output is deterministic.
            std::memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < k::kQK_K; ++j) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
        }
        for (int g = 0; g < k::kQK_K / 16; ++g) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = static_cast<int16_t>(sum);
        }
        y[i].d = 1.0f / iscale;
    }
}

// ---- scalar dots ---------------------------------------------------------------------
// Eight independent partial sums for the plain types: the compiler can keep them in
// registers (or vectorize them) without reassociating, and the order stays fixed.

template <class Load>
float dot_plain(int64_t n, const Load & load_w, const float * x) {
    float acc[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; ++l) acc[l] += load_w(i + l) * x[i + l];
    }
    for (; i < n; ++i) acc[i % 8] += load_w(i) * x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float dot_f32_scalar(int64_t n, const void * w, const void * x) {
    const auto * wf = static_cast<const float *>(w);
    return dot_plain(n, [wf](int64_t i) { return wf[i]; }, static_cast<const float *>(x));
}

float dot_f16_scalar(int64_t n, const void * w, const void * x) {
    const auto * wh = static_cast<const uint16_t *>(w);
    return dot_plain(n, [wh](int64_t i) { return fp16_to_fp32(wh[i]); }, static_cast<const float *>(x));
}

float dot_bf16_scalar(int64_t n, const void * w, const void * x) {
    const auto * wh = static_cast<const uint16_t *>(w);
    return dot_plain(n, [wh](int64_t i) { return bf16_to_fp32(wh[i]); }, static_cast<const float *>(x));
}

float dot_q8_0_scalar(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const k::Q8_0Block *>(w_);
    const auto * x = static_cast<const k::Q8_0Block *>(x_);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / k::kQK; ++b) {
        int32_t isum = 0;
        for (int j = 0; j < k::kQK; ++j) isum += w[b].qs[j] * x[b].qs[j];
        sum += fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d) * static_cast<float>(isum);
    }
    return sum;
}

float dot_q4_0_scalar(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const k::Q4_0Block *>(w_);
    const auto * x = static_cast<const k::Q8_0Block *>(x_);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / k::kQK; ++b) {
        int32_t isum = 0;
        for (int j = 0; j < k::kQK / 2; ++j) {
            isum += ((w[b].qs[j] & 0xF) - 8) * x[b].qs[j];
            isum += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + k::kQK / 2];
        }
        sum += fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d) * static_cast<float>(isum);
    }
    return sum;
}

// Sub-block j's 6-bit scale and min of a Q4_K block (layout in quant.cpp).
void q4_k_scale_min(int j, const uint8_t * q, int & sc, int & m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// sum = d * dx * sum_j sc_j (q . a)_j  -  dmin * dx * sum_j m_j sum(a)_j, the sums of a
// coming from the activation's bsums.
float dot_q4_k_scalar(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const k::Q4_KBlock *>(w_);
    const auto * x = static_cast<const k::Q8_KBlock *>(x_);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / k::kQK_K; ++b) {
        const uint8_t * q = w[b].qs;
        const int8_t * a = x[b].qs;
        int32_t sum_scaled = 0, sum_mins = 0;
        for (int j = 0; j < 8; j += 2, q += 32, a += 64) {
            int sc0, m0, sc1, m1;
            q4_k_scale_min(j, w[b].scales, sc0, m0);
            q4_k_scale_min(j + 1, w[b].scales, sc1, m1);
            int32_t lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) {
                lo += (q[l] & 0xF) * a[l];
                hi += (q[l] >> 4) * a[l + 32];
            }
            sum_scaled += sc0 * lo + sc1 * hi;
            sum_mins += m0 * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]) +
                        m1 * (x[b].bsums[2 * j + 2] + x[b].bsums[2 * j + 3]);
        }
        sum += x[b].d * (fp16_to_fp32(w[b].d) * static_cast<float>(sum_scaled) -
                         fp16_to_fp32(w[b].dmin) * static_cast<float>(sum_mins));
    }
    return sum;
}

float dot_q6_k_scalar(int64_t n, const void * w_, const void * x_) {
    const auto * w = static_cast<const k::Q6_KBlock *>(w_);
    const auto * x = static_cast<const k::Q8_KBlock *>(x_);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / k::kQK_K; ++b) {
        // Unpack to 6-bit values - 32 in value order, then one integer dot per 16 values.
        int8_t q[k::kQK_K];
        const uint8_t * ql = w[b].ql;
        const uint8_t * qh = w[b].qh;
        for (int h = 0; h < k::kQK_K; h += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                q[h + l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                q[h + l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[h + l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[h + l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t isum = 0;
        for (int s = 0; s < k::kQK_K / 16; ++s) {
            int32_t part = 0;
            for (int l = 0; l < 16; ++l) part += q[16 * s + l] * x[b].qs[16 * s + l];
            isum += w[b].scales[s] * part;
        }
        sum += fp16_to_fp32(w[b].d) * x[b].d * static_cast<float>(isum);
    }
    return sum;
}

const k::IsaKernels kScalarKernels = {
    .q8_0_from_float = q8_0_from_float_scalar,
    .q8_k_from_float = q8_k_from_float_scalar,
    .dot = {dot_f32_scalar, dot_f16_scalar, dot_bf16_scalar, dot_q8_0_scalar, dot_q4_0_scalar, dot_q4_k_scalar,
            dot_q6_k_scalar},
    .rows = {},
    .tiles = {},
};

// ---- tables --------------------------------------------------------------------------

struct LevelTable {
    VecDot vd[k::kWeightKinds];
    k::RowsFn rows[k::kWeightKinds];
    k::TileKernel tiles[k::kWeightKinds];
};

LevelTable make_table(const k::IsaKernels & isa) {
    LevelTable t{};
    t.vd[k::kF32] = {DType::F32, f32_from_float, isa.dot[k::kF32]};
    t.vd[k::kF16] = {DType::F32, f32_from_float, isa.dot[k::kF16]};
    t.vd[k::kBF16] = {DType::F32, f32_from_float, isa.dot[k::kBF16]};
    t.vd[k::kQ8_0] = {DType::Q8_0, isa.q8_0_from_float, isa.dot[k::kQ8_0]};
    t.vd[k::kQ4_0] = {DType::Q8_0, isa.q8_0_from_float, isa.dot[k::kQ4_0]};
    t.vd[k::kQ4_K] = {DType::Q8_K, isa.q8_k_from_float, isa.dot[k::kQ4_K]};
    t.vd[k::kQ6_K] = {DType::Q8_K, isa.q8_k_from_float, isa.dot[k::kQ6_K]};
    for (int i = 0; i < k::kWeightKinds; ++i) {
        t.rows[i] = isa.rows[i];
        t.tiles[i] = isa.tiles[i];
    }
    return t;
}

const LevelTable & table_for(SimdLevel level) {
    static const LevelTable scalar = make_table(kScalarKernels);
#if defined(TOYLLM_X86)
    static const LevelTable avx2 = make_table(k::kAvx2Kernels);
    static const LevelTable avx512 = make_table(k::kAvx512Kernels);
    if (level == SimdLevel::AVX512) return avx512;
    if (level == SimdLevel::AVX2) return avx2;
#endif
    return scalar;
}

int weight_kind(DType w) {
    switch (w) {
        case DType::F32: return k::kF32;
        case DType::F16: return k::kF16;
        case DType::BF16: return k::kBF16;
        case DType::Q8_0: return k::kQ8_0;
        case DType::Q4_0: return k::kQ4_0;
        case DType::Q4_K: return k::kQ4_K;
        case DType::Q6_K: return k::kQ6_K;
        default:
            throw Error("vec_dot: no CPU kernel for weights of type " + std::string(dtype_name(w)));
    }
}

}  // namespace

const VecDot & vec_dot_for(DType w) {
    return table_for(cpu_features().level).vd[weight_kind(w)];
}

void matvec_rows(const MatVecArgs & a, int64_t row_begin, int64_t row_end) {
    if (row_end <= row_begin) return;
    const int kind = weight_kind(a.w_type);
    const LevelTable & t = table_for(cpu_features().level);
    const auto * w = static_cast<const uint8_t *>(a.w) + row_begin * a.w_row_bytes;
    if (const k::RowsFn rows = t.rows[kind]) {
        rows({.w = w, .w_row_bytes = a.w_row_bytes, .n = a.n, .x = a.x_conv, .y = a.y + row_begin,
              .n_rows = row_end - row_begin});
        return;
    }
    const k::DotFn dot = t.vd[kind].dot;
    for (int64_t r = row_begin; r < row_end; ++r, w += a.w_row_bytes) a.y[r] = dot(a.n, w, a.x_conv);
}

int64_t tile_x_row_bytes(DType w, int64_t n) {
    const int kind = weight_kind(w);
    const LevelTable & t = table_for(cpu_features().level);
    if (const k::PackedBytesFn packed = t.tiles[kind].packed_bytes) return packed(n);
    return static_cast<int64_t>(dtype_row_bytes(t.vd[kind].vec_dot_type, n));
}

void tile_x_from_float(DType w, const float * x, void * out, int64_t n) {
    const int kind = weight_kind(w);
    const LevelTable & t = table_for(cpu_features().level);
    const k::TileKernel & tk = t.tiles[kind];
    if (tk.pack == nullptr) {
        t.vd[kind].from_float(x, out, n);
        return;
    }
    thread_local std::vector<uint8_t> conv;
    conv.resize(dtype_row_bytes(t.vd[kind].vec_dot_type, n));
    t.vd[kind].from_float(x, conv.data(), n);
    tk.pack(conv.data(), out, n);
}

void matmul_tile(const MatTileArgs & a) {
    if (a.n_rows <= 0 || a.n_cols <= 0) return;
    const int kind = weight_kind(a.w_type);
    const LevelTable & t = table_for(cpu_features().level);
    if (const k::TileFn tile = t.tiles[kind].tile) {
        tile({.w = a.w, .w_row_bytes = a.w_row_bytes, .n_rows = a.n_rows, .x = a.x, .x_row_bytes = a.x_row_bytes,
              .n_cols = a.n_cols, .n = a.n, .y = a.y, .ldy = a.ldy});
        return;
    }
    // Scalar path (and kinds without a tile kernel): one dot per pair, weight rows in the
    // inner loop so that each activation row stays in L1 while the rows go by.
    const k::DotFn dot = t.vd[kind].dot;
    const auto * w = static_cast<const uint8_t *>(a.w);
    const auto * x = static_cast<const uint8_t *>(a.x);
    for (int64_t c = 0; c < a.n_cols; ++c) {
        for (int64_t r = 0; r < a.n_rows; ++r) a.y[c * a.ldy + r] = dot(a.n, w + r * a.w_row_bytes, x + c * a.x_row_bytes);
    }
}

}  // namespace toyllm::cpu
