#include "backend/cuda/device_allocator.h"

#include "backend/cuda/kernels.h"

#include "toyllm/error.h"

#include <string>

namespace toyllm::cuda {

namespace {

constexpr size_t kMinBlock = 256;
constexpr size_t kExactAbove = size_t{64} << 20;

}  // namespace

size_t DeviceAllocator::bucket(size_t bytes) {
    if (bytes <= kMinBlock) return kMinBlock;
    if (bytes > kExactAbove) return (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
    size_t b = kMinBlock;
    while (b < bytes) b <<= 1;
    return b;
}

void * DeviceAllocator::alloc(size_t bytes) {
    const size_t size = bucket(bytes);
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
        void * p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        in_use_ += size;
        return p;
    }
    void * p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
        // Give the cached blocks back to the driver and try once more.
        (void)cudaGetLastError();
        release_cached();
        err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        throw Error("cuda: out of device memory allocating " + std::to_string(size) + " bytes (" + std::to_string(in_use_) +
                    " in use): " + cudaGetErrorString(err));
    }
    sizes_[p] = size;
    in_use_ += size;
    return p;
}

void DeviceAllocator::free(void * p) {
    if (p == nullptr) return;
    const auto it = sizes_.find(p);
    if (it == sizes_.end()) throw Error("cuda: freeing a block this allocator does not own");
    free_[it->second].push_back(p);
    in_use_ -= it->second;
    cached_ += it->second;
}

void DeviceAllocator::release_cached() {
    // Queued kernels may still use cached blocks: wait for them before handing them back.
    cudaDeviceSynchronize();
    for (auto & [size, blocks] : free_) {
        for (void * p : blocks) {
            cudaFree(p);
            sizes_.erase(p);
        }
        blocks.clear();
    }
    cached_ = 0;
}

DeviceAllocator::~DeviceAllocator() {
    cudaDeviceSynchronize();
    for (auto & [p, size] : sizes_) cudaFree(p);
}

}  // namespace toyllm::cuda
