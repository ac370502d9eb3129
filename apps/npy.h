// Writing NumPy .npy files (format version 1.0): float32, C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace toyllm::cli {

// Writes data (shape[0] * shape[1] * ... floats) to path; throws IoError.
void write_npy_f32(const std::string & path, const std::vector<int64_t> & shape, const std::vector<float> & data);

}  // namespace toyllm::cli
