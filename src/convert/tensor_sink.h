// The tensors of a model being converted, on their way into a GgufWriter: values arrive
// as f32 in GGUF order (innermost dimension first) and leave in the type the conversion
// asks for. The converted bytes live here until the writer has written them.
#pragma once

#include "toyllm/convert.h"
#include "toyllm/gguf.h"

#include <vector>

namespace toyllm {

class TensorSink {
  public:
    TensorSink(GgufWriter & w, std::optional<DType> type) : w_(w), type_(type) {}

    // `source` is the type the values were stored in. 1-D tensors are written as f32
    // (as llama.cpp's converters do); matrices as the requested type when
    // retypes_tensor() allows it, else as `source`.
    void add(const std::string & name, std::vector<int64_t> ne, std::span<const float> values, DType source);

    size_t n_tensors() const { return storage_.size(); }

  private:
    GgufWriter & w_;
    std::optional<DType> type_;
    std::vector<std::vector<uint8_t>> storage_;  // one buffer per tensor; moves keep the bytes in place
};

}  // namespace toyllm
