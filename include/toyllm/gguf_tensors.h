// Tensors that view the tensor data of a GGUF file in place (zero copy): the mmap'd
// bytes become the tensor's memory, in the file's dtype, and the context keeps the
// mapping alive.
#pragma once

#include "toyllm/gguf.h"
#include "toyllm/tensor.h"

namespace toyllm {

// The tensor `name` of `file` as a leaf of ctx; throws GgufError MISSING_TENSOR.
Tensor * map_gguf_tensor(Context & ctx, const GgufFile & file, std::string_view name);

}  // namespace toyllm
