// The CUDA backend, made by make_backend("cuda", cfg) in builds with TOYLLM_CUDA.
#pragma once

#include "toyllm/graph.h"

#include <memory>

namespace toyllm::cuda {

// Throws toyllm::Error "no CUDA device found (cudaGetDeviceCount: ...)" without a GPU.
std::unique_ptr<Backend> make_cuda_backend(const BackendConfig & cfg);

}  // namespace toyllm::cuda
