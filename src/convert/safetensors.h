// Safetensors, Hugging Face's weight format, read through a memory map:
//
//   u64 n        little-endian length of the header
//   header       n bytes of JSON: {"NAME": {"dtype": "F32", "shape": [d0, d1, ...],
//                "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "value"}}
//   data         the tensors' bytes, row-major (shape[0] outermost, little-endian);
//                offsets count from the start of this section
//
// open() checks every entry before anything uses it: the header inside the file and
// valid JSON, each dtype known, dimensions >= 0, end - begin == product(shape) * the
// dtype's size, the range inside the file, no two tensors sharing bytes.
#pragma once

#include "toyllm/dtype.h"

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace toyllm {

class MappedFile;

struct SafetensorsTensor {
    std::string name;
    std::string dtype;           // as written: "F32", "BF16", "I64", ...
    std::optional<DType> type;   // F32, F16, BF16; unset for dtypes toyllm does not convert
    std::vector<int64_t> shape;  // torch order: shape[0] is the outermost dimension
    std::span<const uint8_t> data;

    int64_t n_elements() const;
};

class SafetensorsFile {
  public:
    // Throws IoError (cannot open) or Error ("safetensors FILE: ...").
    static SafetensorsFile open(const std::string & path);

    const std::string & path() const { return path_; }
    const std::vector<SafetensorsTensor> & tensors() const { return tensors_; }
    const SafetensorsTensor * find(std::string_view name) const;  // nullptr when absent

    // The values of a F32/F16/BF16 tensor as f32; Error for other dtypes.
    std::vector<float> to_f32(const SafetensorsTensor & t) const;

  private:
    std::string path_;
    std::shared_ptr<const MappedFile> map_;
    std::vector<SafetensorsTensor> tensors_;
};

}  // namespace toyllm
