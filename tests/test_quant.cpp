// Quantization against references nobody here wrote: llama.cpp's own Q8_0/Q4_0 files of
// stories260K, the CPU's F16C converter, and the Q4_K/Q6_K formulas of ggml-common.h
// re-derived bit by bit from the block descriptions on hand-made blocks.
#include "testing.h"

#include "toyllm/gguf.h"
#include "toyllm/half.h"
#include "toyllm/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using toyllm::DType;
using toyllm::GgufFile;

std::vector<float> f32_of(const GgufFile & f, const toyllm::GgufTensorInfo & t) {
    std::vector<float> v(static_cast<size_t>(t.n_elements()));
    std::memcpy(v.data(), f.tensor_data(t).data(), v.size() * sizeof(float));
    return v;
}

// Every quantized tensor of llama.cpp's file equals our quantization of the F32 original.
void expect_same_quantization(const std::string & quantized_file, DType main_type) {
    TOYLLM_REQUIRE_SHARED(f32_path, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(q_path, "models/stories260K/" + quantized_file);
    const GgufFile f32 = GgufFile::open(f32_path.string());
    const GgufFile q = GgufFile::open(q_path.string());
    int n_checked = 0, n_main = 0;
    for (const auto & t : q.tensors()) {
        if (t.type == DType::F32) continue;
        SCOPED_TRACE(std::string(t.name) + " " + std::string(toyllm::dtype_name(t.type)));
        const auto src = f32_of(f32, f32.get_tensor(t.name));
        std::vector<uint8_t> ours(t.n_bytes);
        toyllm::quantize_row(t.type, src.data(), ours.data(), t.n_elements());
        const auto theirs = q.tensor_data(t);
        const auto diff = std::mismatch(ours.begin(), ours.end(), theirs.begin());
        EXPECT_TRUE(diff.first == ours.end()) << "first difference at byte " << (diff.first - ours.begin());
        ++n_checked;
        n_main += t.type == main_type;
    }
    EXPECT_EQ(n_checked, 32);  // 5 blocks x 6 matrices + token_embd + output
    EXPECT_GE(n_main, 31);
}

TEST(Quant, Q8_0IsByteIdenticalToLlamaCpp) { expect_same_quantization("stories260K-q8_0.gguf", DType::Q8_0); }
TEST(Quant, Q4_0IsByteIdenticalToLlamaCpp) { expect_same_quantization("stories260K-q4_0.gguf", DType::Q4_0); }

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t hw_fp32_to_fp16(float x) {
    return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_fp16_to_fp32(uint16_t h) { return _cvtsh_ss(h); }
#endif

TEST(Half, ConversionsMatchTheF16CInstructions) {
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "this CPU has no F16C";
    for (uint32_t h = 0; h < 65536; ++h) {
        const float a = toyllm::fp16_to_fp32(static_cast<uint16_t>(h));
        const float b = hw_fp16_to_fp32(static_cast<uint16_t>(h));
        ASSERT_EQ(std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)), true) << h;
    }
    std::mt19937 rng(1);
    std::uniform_int_distribution<uint32_t> bits;
    for (int i = 0; i < 2000000; ++i) {
        // Random bit patterns cover subnormals, overflow, ties and NaNs.
        uint32_t u = bits(rng);
        if (i % 2) u = (u & 0x8fffffffu) | 0x38000000u;  // exponents near half's range
        float x;
        std::memcpy(&x, &u, 4);
        const uint16_t ours = toyllm::fp32_to_fp16(x);
        const uint16_t hw = hw_fp32_to_fp16(x);
        if (std::isnan(x)) {
            ASSERT_TRUE(std::isnan(toyllm::fp16_to_fp32(ours)));
        } else {
            ASSERT_EQ(ours, hw) << "x = " << x << " bits " << u;
        }
    }
#else
    GTEST_SKIP() << "F16C reference is x86-only";
#endif
}

TEST(Half, Bf16RoundsToNearestEven) {
    // 1 + 2^-8 lies halfway between the bf16 neighbours 1 and 1 + 2^-7: ties go to even.
    EXPECT_EQ(toyllm::fp32_to_bf16(1.0f + 0x1.0p-8f), 0x3f80);
    EXPECT_EQ(toyllm::fp32_to_bf16(1.0f + 0x1.8p-8f), 0x3f81);
    EXPECT_EQ(toyllm::fp32_to_bf16(1.0f + 0x1.0p-7f + 0x1.0p-8f), 0x3f82);
    EXPECT_TRUE(std::isnan(toyllm::bf16_to_fp32(toyllm::fp32_to_bf16(NAN))));
    EXPECT_EQ(toyllm::bf16_to_fp32(0xc040), -3.0f);
}

// ---- Q4_K / Q6_K: formulas from the block descriptions ----------------------------
//
// block_q4_K: d, dmin (f16); scales[12] holding 8 six-bit scales and 8 six-bit mins;
// qs[128]. Value k of the block, k = 64*g + 32*h + l (group g of 64, half h, lane l)
// is the nibble h of qs[32*g + l], with sub-block s = 2*g + h:
//   x = d * scale[s] * nibble - dmin * min[s]
// where for s < 4: scale = scales[s] & 63, min = scales[s+4] & 63, and for s >= 4:
//   scale = (scales[s+4] & 15) | (scales[s-4] >> 6) << 4,
//   min   = (scales[s+4] >> 4) | (scales[s]   >> 6) << 4.
float q4_k_value(const uint8_t * blk, int k) {
    const float d = toyllm::fp16_to_fp32(static_cast<uint16_t>(blk[0] | blk[1] << 8));
    const float dmin = toyllm::fp16_to_fp32(static_cast<uint16_t>(blk[2] | blk[3] << 8));
    const uint8_t * sc = blk + 4;
    const uint8_t * qs = blk + 16;
    const int g = k / 64, h = (k / 32) % 2, l = k % 32, s = 2 * g + h;
    const int nib = (qs[32 * g + l] >> (4 * h)) & 15;
    int scale, min;
    if (s < 4) {
        scale = sc[s] & 63;
        min = sc[s + 4] & 63;
    } else {
        scale = (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
        min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
    return d * static_cast<float>(scale) * static_cast<float>(nib) - dmin * static_cast<float>(min);
}

// block_q6_K: ql[128], qh[64], scales[16] (int8), d (f16). Value k = 128*n + 32*c + l
// (half n, quarter c, lane l) has 4 low bits in ql[64*n + l + 32*(c%2)] (nibble c/2)
// and 2 high bits in qh[32*n + l] (bits 2c..2c+1); q = (high << 4 | low) - 32;
//   x = d * scales[8*n + 2*c + l/16] * q
float q6_k_value(const uint8_t * blk, int k) {
    const uint8_t * ql = blk;
    const uint8_t * qh = blk + 128;
    const auto * scales = reinterpret_cast<const int8_t *>(blk + 192);
    const float d = toyllm::fp16_to_fp32(static_cast<uint16_t>(blk[208] | blk[209] << 8));
    const int n = k / 128, c = (k / 32) % 4, l = k % 32;
    const int low = (ql[64 * n + l + 32 * (c % 2)] >> (4 * (c / 2))) & 15;
    const int high = (qh[32 * n + l] >> (2 * c)) & 3;
    const int q = (high << 4 | low) - 32;
    return d * static_cast<float>(scales[8 * n + 2 * c + l / 16]) * static_cast<float>(q);
}

std::vector<uint8_t> random_blocks(size_t n_bytes, uint32_t seed, size_t block, size_t d_at, int n_d) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> b(n_bytes);
    for (auto & x : b) x = static_cast<uint8_t>(rng());
    // Keep the f16 scales finite and modest so that values are comparable.
    std::uniform_real_distribution<float> ud(0.001f, 0.1f);
    for (size_t i = 0; i < n_bytes; i += block) {
        for (int j = 0; j < n_d; ++j) {
            const uint16_t h = toyllm::fp32_to_fp16(ud(rng));
            b[i + d_at + 2 * j] = static_cast<uint8_t>(h);
            b[i + d_at + 2 * j + 1] = static_cast<uint8_t>(h >> 8);
        }
    }
    return b;
}

TEST(Quant, Q4_KDequantizationFollowsTheBlockLayout) {
    const int n_blocks = 8;
    const auto blocks = random_blocks(144 * n_blocks, 7, 144, 0, 2);
    std::vector<float> ours(256 * n_blocks);
    toyllm::dequantize_row(DType::Q4_K, blocks.data(), ours.data(), 256 * n_blocks);
    for (int b = 0; b < n_blocks; ++b) {
        for (int k = 0; k < 256; ++k) {
            ASSERT_FLOAT_EQ(ours[256 * b + k], q4_k_value(blocks.data() + 144 * b, k)) << "block " << b << " k " << k;
        }
    }
}

TEST(Quant, Q6_KDequantizationFollowsTheBlockLayout) {
    const int n_blocks = 8;
    const auto blocks = random_blocks(210 * n_blocks, 9, 210, 208, 1);
    std::vector<float> ours(256 * n_blocks);
    toyllm::dequantize_row(DType::Q6_K, blocks.data(), ours.data(), 256 * n_blocks);
    for (int b = 0; b < n_blocks; ++b) {
        for (int k = 0; k < 256; ++k) {
            ASSERT_FLOAT_EQ(ours[256 * b + k], q6_k_value(blocks.data() + 210 * b, k)) << "block " << b << " k " << k;
        }
    }
}

// Quantizing then dequantizing stays within the format's resolution: RMS error relative
// to the data's RMS below what 4 (resp. 6, 8) bits allow.
TEST(Quant, RoundTripErrorIsWithinEachFormatsResolution) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t n = 256 * 64;
    std::vector<float> x(n);
    for (auto & v : x) v = nd(rng);
    struct Case {
        DType t;
        double max_rel_rms;
    };
    for (const Case c : {Case{DType::Q8_0, 0.01}, Case{DType::Q4_0, 0.12}, Case{DType::Q4_K, 0.12},
                         Case{DType::Q6_K, 0.03}, Case{DType::F16, 1e-3}, Case{DType::BF16, 5e-3}}) {
        std::vector<uint8_t> q(toyllm::dtype_row_bytes(c.t, n));
        std::vector<float> y(n);
        toyllm::quantize_row(c.t, x.data(), q.data(), n);
        toyllm::dequantize_row(c.t, q.data(), y.data(), n);
        double err = 0, ref = 0;
        for (int64_t i = 0; i < n; ++i) {
            err += (x[i] - y[i]) * (x[i] - y[i]);
            ref += x[i] * x[i];
        }
        EXPECT_LT(std::sqrt(err / ref), c.max_rel_rms) << toyllm::dtype_name(c.t);
    }
    // All-zero blocks quantize to zeros, not NaNs.
    std::vector<float> zeros(256, 0.0f), back(256, 1.0f);
    for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
        std::vector<uint8_t> q(toyllm::dtype_row_bytes(t, 256));
        toyllm::quantize_row(t, zeros.data(), q.data(), 256);
        toyllm::dequantize_row(t, q.data(), back.data(), 256);
        for (float v : back) ASSERT_EQ(v, 0.0f) << toyllm::dtype_name(t);
    }
}

TEST(Quant, UnsupportedTypesSayWhich) {
    float x[256] = {};
    uint8_t buf[512];
    try {
        toyllm::quantize_row(DType::IQ2_XXS, x, buf, 256);
        FAIL();
    } catch (const toyllm::Error & e) {
        EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
    }
}

}  // namespace
