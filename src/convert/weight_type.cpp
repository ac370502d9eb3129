// The retyping rule shared by `toyllm quantize` and `toyllm convert --type`.
#include "toyllm/convert.h"

namespace toyllm {

bool is_weight_storage_type(DType t) {
    return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0;
}

bool retypes_tensor(std::string_view name, std::span<const int64_t> ne, DType type) {
    constexpr std::string_view kWeight = ".weight";
    const bool matrix = ne.size() == 2 && name.size() > kWeight.size() && name.ends_with(kWeight);
    return matrix && ne[0] % dtype_info(type).block_size == 0;
}

uint32_t gguf_file_type(DType type) {
    switch (type) {
        case DType::F32: return 0;
        case DType::F16: return 1;
        case DType::Q4_0: return 2;
        case DType::Q8_0: return 7;
        case DType::BF16: return 32;
        default: return 0;
    }
}

}  // namespace toyllm
