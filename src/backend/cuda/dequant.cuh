// Element access to rows in their storage type, on the device: the weights stay in
// their GGUF block format ("Q8 stays Q8") and kernels convert values as they read them.
// Formulas (and the order of float operations) follow src/tensor/quant.cpp.
#pragma once

#include "backend/cuda/common.cuh"

#include "toyllm/dtype.h"

#include <cstring>

namespace toyllm::cuda {

// Host and device: the host builds of the same code check it against quant.cpp.
__host__ __device__ inline float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

__host__ __device__ inline float half_at(const uint8_t * p) {
    const uint16_t bits = static_cast<uint16_t>(p[0] | (p[1] << 8));
    return __half2float(__ushort_as_half(bits));
}

// Value i of a row of type t starting at `row`.
__host__ __device__ inline float load_value(DType t, const uint8_t * row, int64_t i) {
    switch (t) {
        case DType::F32:
            return reinterpret_cast<const float *>(row)[i];
        case DType::F16:
            return half_at(row + 2 * i);
        case DType::BF16:
            return bits_to_float(static_cast<uint32_t>(row[2 * i] | (row[2 * i + 1] << 8)) << 16);
        case DType::Q8_0: {
            const uint8_t * b = row + (i / 32) * 34;
            return static_cast<float>(static_cast<int8_t>(b[2 + i % 32])) * half_at(b);
        }
        case DType::Q4_0: {
            const uint8_t * b = row + (i / 32) * 18;
            const int j = static_cast<int>(i % 32);
            const int q = j < 16 ? (b[2 + j] & 0x0F) : (b[2 + j - 16] >> 4);
            return static_cast<float>(q - 8) * half_at(b);
        }
        case DType::Q4_K: {
            const uint8_t * b = row + (i / 256) * 144;
            const int j = static_cast<int>(i % 256);
            const int chunk = j / 64, l = j % 64;
            const int sub = chunk * 2 + (l >= 32 ? 1 : 0);
            const uint8_t * sc = b + 4;
            int s, m;
            if (sub < 4) {
                s = sc[sub] & 63;
                m = sc[sub + 4] & 63;
            } else {
                s = (sc[sub + 4] & 0xF) | ((sc[sub - 4] >> 6) << 4);
                m = (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4);
            }
            const uint8_t q = b[16 + chunk * 32 + l % 32];
            const int v = l < 32 ? (q & 0xF) : (q >> 4);
            const float d1 = half_at(b) * static_cast<float>(s);
            const float m1 = half_at(b + 2) * static_cast<float>(m);
            return d1 * static_cast<float>(v) - m1;
        }
        case DType::Q6_K: {
            const uint8_t * b = row + (i / 256) * 210;
            const int j = static_cast<int>(i % 256);
            const int n = j / 128, jj = j % 128;
            const int l = jj % 32, quarter = jj / 32;
            const uint8_t * ql = b + n * 64;
            const uint8_t * qh = b + 128 + n * 32;
            const int8_t * sc = reinterpret_cast<const int8_t *>(b + 192) + n * 8;
            int q;
            switch (quarter) {
                case 0: q = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4); break;
                case 1: q = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4); break;
                case 2: q = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4); break;
                default: q = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4); break;
            }
            const float d = half_at(b + 208);
            return d * static_cast<float>(sc[l / 16 + 2 * quarter]) * static_cast<float>(q - 32);
        }
        default:
            return bits_to_float(0x7fc00000u);  // NaN: the host refuses other types first
    }
}

// The types load_value reads.
inline bool device_can_load(DType t) { return device_type_supported(t); }

}  // namespace toyllm::cuda
