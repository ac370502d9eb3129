// Scalar reference conversions between F32 and the storable dtypes (see quant.h).
#include "toyllm/quant.h"

#include "toyllm/error.h"
#include "toyllm/half.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace toyllm {

namespace {

constexpr int kQK = 32;
constexpr int kQK_K = 256;

// ---- Q8_0 / Q4_0: bit-identical to ggml's reference quantizers -------------------

void quantize_q8_0(const float * x, BlockQ8_0 * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
}

void dequantize_q8_0(const BlockQ8_0 * x, float * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = x[i].qs[j] * d;
    }
}

void quantize_q4_0(const float * x, BlockQ4_0 * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK) {
        // The value of largest magnitude maps to -8, keeping its sign.
        float amax = 0.0f;
        float max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const uint8_t q0 = std::min<int8_t>(15, static_cast<int8_t>(x0 + 8.5f));
            const uint8_t q1 = std::min<int8_t>(15, static_cast<int8_t>(x1 + 8.5f));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

void dequantize_q4_0(const BlockQ4_0 * x, float * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, y += kQK) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + kQK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// ---- Q4_K ---------------------------------------------------------------------

void dequantize_q4_k(const BlockQ4_K * x, float * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const float dmin = fp16_to_fp32(x[i].dmin);
        const uint8_t * q = x[i].qs;
        for (int j = 0; j < kQK_K; j += 64, q += 32) {
            uint8_t sc, m;
            q4_k_scale_min(j / 32, x[i].scales, sc, m);
            const float d1 = d * sc, m1 = dmin * m;
            q4_k_scale_min(j / 32 + 1, x[i].scales, sc, m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

uint8_t round_clamp(float v, int lo, int hi) {
    return static_cast<uint8_t>(std::clamp(static_cast<int>(std::lround(v)), lo, hi));
}

void quantize_q4_k(const float * x, BlockQ4_K * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        // Per sub-block of 32: x ~ scale * q - min with q in 0..15 and min >= 0.
        float scales[8], mins[8];
        for (int s = 0; s < 8; ++s) {
            const float * v = x + 32 * s;
            const float lo = std::min(0.0f, *std::min_element(v, v + 32));
            const float hi = *std::max_element(v, v + 32);
            scales[s] = (hi - lo) / 15.0f;
            mins[s] = -lo;
        }
        const float max_scale = *std::max_element(scales, scales + 8);
        const float max_min = *std::max_element(mins, mins + 8);
        const float d = max_scale / 63.0f;
        const float dmin = max_min / 63.0f;
        y[i].d = fp32_to_fp16(d);
        y[i].dmin = fp32_to_fp16(dmin);
        // Quantize against the scales as stored (f16 super scales, 6-bit sub scales).
        const float d_q = fp16_to_fp32(y[i].d), dmin_q = fp16_to_fp32(y[i].dmin);
        uint8_t ls[8], lm[8];
        for (int s = 0; s < 8; ++s) {
            ls[s] = d_q > 0.0f ? round_clamp(scales[s] / d_q, 0, 63) : 0;
            lm[s] = dmin_q > 0.0f ? round_clamp(mins[s] / dmin_q, 0, 63) : 0;
        }
        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        for (int s = 0; s < 8; ++s) {
            if (s < 4) {
                y[i].scales[s] = ls[s];
                y[i].scales[s + 4] = lm[s];
            } else {
                y[i].scales[s + 4] = static_cast<uint8_t>((ls[s] & 0xF) | ((lm[s] & 0xF) << 4));
                y[i].scales[s - 4] |= static_cast<uint8_t>((ls[s] >> 4) << 6);
                y[i].scales[s] |= static_cast<uint8_t>((lm[s] >> 4) << 6);
            }
        }
        uint8_t q[kQK_K];
        for (int s = 0; s < 8; ++s) {
            const float step = d_q * ls[s];
            const float shift = dmin_q * lm[s];
            for (int l = 0; l < 32; ++l) {
                q[32 * s + l] = step > 0.0f ? round_clamp((x[32 * s + l] + shift) / step, 0, 15) : 0;
            }
        }
        uint8_t * qs = y[i].qs;
        for (int j = 0; j < kQK_K; j += 64, qs += 32) {
            for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(q[j + l] | (q[j + l + 32] << 4));
        }
    }
}

// ---- Q6_K ---------------------------------------------------------------------

void dequantize_q6_k(const BlockQ6_K * x, float * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(x[i].d);
        const uint8_t * ql = x[i].ql;
        const uint8_t * qh = x[i].qh;
        const int8_t * sc = x[i].scales;
        for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

void quantize_q6_k(const float * x, BlockQ6_K * y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
        // Per sub-block of 16: x ~ scale * q with q in -32..31; the signed scale maps the
        // value of largest magnitude to -32 (as q4_0 does), so both ends are used.
        float scales[16];
        for (int s = 0; s < 16; ++s) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 16; ++l) {
                const float v = x[16 * s + l];
                if (std::fabs(v) > amax) {
                    amax = std::fabs(v);
                    max = v;
                }
            }
            scales[s] = max / -32.0f;
        }
        float amax_scale = 0.0f;
        for (float s : scales) amax_scale = std::max(amax_scale, std::fabs(s));
        y[i].d = fp32_to_fp16(amax_scale / 127.0f);
        const float d_q = fp16_to_fp32(y[i].d);
        uint8_t q[kQK_K];  // q + 32, 0..63
        for (int s = 0; s < 16; ++s) {
            const int sc = d_q > 0.0f ? std::clamp(static_cast<int>(std::lround(scales[s] / d_q)), -128, 127) : 0;
            y[i].scales[s] = static_cast<int8_t>(sc);
            const float step = d_q * sc;
            for (int l = 0; l < 16; ++l) {
                q[16 * s + l] = step != 0.0f ? round_clamp(x[16 * s + l] / step + 32.0f, 0, 63) : 32;
            }
        }
        uint8_t * ql = y[i].ql;
        uint8_t * qh = y[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t * L = q + j + l;
                ql[l] = static_cast<uint8_t>((L[0] & 0xF) | ((L[64] & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((L[32] & 0xF) | ((L[96] & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((L[0] >> 4) | ((L[32] >> 4) << 2) | ((L[64] >> 4) << 4) | ((L[96] >> 4) << 6));
            }
        }
    }
}

int64_t n_blocks(DType t, int64_t n) {
    const auto block = static_cast<int64_t>(dtype_info(t).block_size);
    TOYLLM_ASSERT(n % block == 0);
    return n / block;
}

}  // namespace

void q4_k_scale_min(int j, const uint8_t * q, uint8_t & sc, uint8_t & m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}


bool can_dequantize(DType t) {
    switch (t) {
        case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0:
        case DType::Q4_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

bool can_quantize(DType t) { return can_dequantize(t); }

void dequantize_row(DType t, const void * src, float * dst, int64_t n) {
    switch (t) {
        case DType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            return;
        case DType::F16: {
            const auto * s = static_cast<const uint16_t *>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
            return;
        }
        case DType::BF16: {
            const auto * s = static_cast<const uint16_t *>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
            return;
        }
        case DType::Q8_0: return dequantize_q8_0(static_cast<const BlockQ8_0 *>(src), dst, n_blocks(t, n));
        case DType::Q4_0: return dequantize_q4_0(static_cast<const BlockQ4_0 *>(src), dst, n_blocks(t, n));
        case DType::Q4_K: return dequantize_q4_k(static_cast<const BlockQ4_K *>(src), dst, n_blocks(t, n));
        case DType::Q6_K: return dequantize_q6_k(static_cast<const BlockQ6_K *>(src), dst, n_blocks(t, n));
        default:
            throw Error("dequantize: no conversion from " + std::string(dtype_name(t)) + " to f32");
    }
}

void quantize_row(DType t, const float * src, void * dst, int64_t n) {
    switch (t) {
        case DType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            return;
        case DType::F16: {
            auto * d = static_cast<uint16_t *>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
            return;
        }
        case DType::BF16: {
            auto * d = static_cast<uint16_t *>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
            return;
        }
        case DType::Q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0 *>(dst), n_blocks(t, n));
        case DType::Q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0 *>(dst), n_blocks(t, n));
        case DType::Q4_K: return quantize_q4_k(src, static_cast<BlockQ4_K *>(dst), n_blocks(t, n));
        case DType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K *>(dst), n_blocks(t, n));
        default:
            throw Error("quantize: no conversion from f32 to " + std::string(dtype_name(t)));
    }
}

}  // namespace toyllm
