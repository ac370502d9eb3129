// The device kernels' element access to stored rows (backend/cuda/dequant.cuh), built for
// the host: every value equals quant.cpp's dequantize_row bit for bit. Runs without a GPU.
#include "backend/cuda/dequant.cuh"

#include "toyllm/quant.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using namespace toyllm;

class CudaDequant : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDequant, LoadValueEqualsDequantizeRow) {
    const DType t = GetParam();
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0.0f, 1.0f);
    const int64_t n = 1024;
    std::vector<float> x(n), want(n);
    for (float & v : x) v = d(rng);
    std::vector<uint8_t> stored(dtype_row_bytes(t, n));
    quantize_row(t, x.data(), stored.data(), n);
    dequantize_row(t, stored.data(), want.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(cuda::load_value(t, stored.data(), i), want[static_cast<size_t>(i)]) << "value " << i;
}

INSTANTIATE_TEST_SUITE_P(Types, CudaDequant,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K),
                         [](const auto & p) { return std::string(dtype_name(p.param)); });

}  // namespace
