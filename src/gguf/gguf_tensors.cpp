#include "toyllm/gguf_tensors.h"

#include "core/mapped_file.h"

namespace toyllm {

Tensor * map_gguf_tensor(Context & ctx, const GgufFile & file, std::string_view name) {
    const GgufTensorInfo & info = file.get_tensor(name);
    Tensor * t = ctx.new_tensor(info.type, std::span<const int64_t>(info.ne.data(), info.n_dims), std::string(name));
    const auto bytes = file.tensor_data(info);
    TOYLLM_ASSERT(bytes.size() == t->n_bytes());
    // The data is read-only (a private read-only mapping): ops never write to leaves.
    ctx.set_external(t, const_cast<uint8_t *>(bytes.data()), file.mapping());
    t->flags |= TENSOR_CONSTANT;
    return t;
}

}  // namespace toyllm
