// Reference (scalar) conversions between F32 rows and every storable dtype. These are
// the oracles of the SIMD kernels and the quantizers behind `toyllm quantize`.
//
// Block layouts (little-endian, as ggml-common.h declares them):
//   q8_0  { f16 d; i8 qs[32]; }                             x = d * qs[j]
//   q4_0  { f16 d; u8 qs[16]; }                             x[j] = d * ((qs[j] & 15) - 8),
//                                                           x[j+16] = d * ((qs[j] >> 4) - 8)
//   q4_K  { f16 d, dmin; u8 scales[12]; u8 qs[128]; }       8 sub-blocks of 32 with 6-bit
//                                                           scale and min: x = d*sc*q - dmin*m
//   q6_K  { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }  16 sub-blocks of 16, 6-bit q - 32:
//                                                           x = d * scales[s] * q
#pragma once

#include "toyllm/dtype.h"

#include <cstdint>

namespace toyllm {

struct BlockQ8_0 {
    uint16_t d;     // f16 scale
    int8_t qs[32];
};
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[16];  // low nibbles: values 0..15, high nibbles: values 16..31
};
struct BlockQ4_K {
    uint16_t d;         // f16 super-block scale of the 6-bit scales
    uint16_t dmin;      // f16 super-block scale of the 6-bit mins
    uint8_t scales[12]; // 8 scales and 8 mins, 6 bits each
    uint8_t qs[128];    // 4-bit quants
};
struct BlockQ6_K {
    uint8_t ql[128];    // low 4 bits of the quants
    uint8_t qh[64];     // high 2 bits
    int8_t scales[16];  // 8-bit sub-block scales
    uint16_t d;         // f16 super-block scale
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210);

// Sub-block j's (0-7) 6-bit scale and min in a Q4_K block's 12 scale bytes, as ggml packs
// them: the first four in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins), the last
// four split between the nibbles of bytes 8-11 and the top 2 bits of bytes 0-7.
void q4_k_scale_min(int j, const uint8_t * scales, uint8_t & sc, uint8_t & m);

// Whether dequantize_row / quantize_row handle the type.
bool can_dequantize(DType t);
bool can_quantize(DType t);

// n values (a multiple of the block size) from `src` in type t to floats.
void dequantize_row(DType t, const void * src, float * dst, int64_t n);

// n floats into type t. Q8_0 and Q4_0 are bit-identical to ggml's reference quantizers
// (quantize_row_q8_0_ref, quantize_row_q4_0_ref); Q4_K and Q6_K use a simple
// round-to-nearest search of the scales (correct, not tuned like llama.cpp's).
void quantize_row(DType t, const float * src, void * dst, int64_t n);

}  // namespace toyllm
