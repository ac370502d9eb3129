#include "convert/tensor_sink.h"

#include "toyllm/quant.h"

namespace toyllm {

void TensorSink::add(const std::string & name, std::vector<int64_t> ne, std::span<const float> values, DType source) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    TOYLLM_ASSERT(static_cast<int64_t>(values.size()) == n);
    DType t = ne.size() == 1 ? DType::F32 : source;
    if (type_ && retypes_tensor(name, ne, *type_)) t = *type_;
    const size_t row_bytes = dtype_row_bytes(t, ne[0]);
    auto & bytes = storage_.emplace_back(row_bytes * static_cast<size_t>(n / ne[0]));
    for (int64_t r = 0; r < n / ne[0]; ++r) {
        quantize_row(t, values.data() + r * ne[0], bytes.data() + static_cast<size_t>(r) * row_bytes, ne[0]);
    }
    w_.add_tensor(name, t, ne, bytes);
}

}  // namespace toyllm
