// A caching allocator over cudaMalloc: freed blocks go to free lists bucketed by size
// (powers of two from 256 bytes; exact sizes above 64 MiB are kept as they are) and are
// handed out again without another cudaMalloc. Safe with one stream: a block freed
// while kernels that use it are still queued is only reused by work queued after them.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

namespace toyllm::cuda {

class DeviceAllocator {
  public:
    DeviceAllocator() = default;
    DeviceAllocator(const DeviceAllocator &) = delete;
    DeviceAllocator & operator=(const DeviceAllocator &) = delete;
    ~DeviceAllocator();

    void * alloc(size_t bytes);
    void free(void * p);
    // Returns every cached block to the driver (after a failed cudaMalloc, and at exit).
    void release_cached();

    size_t bytes_in_use() const { return in_use_; }
    size_t bytes_cached() const { return cached_; }

  private:
    static size_t bucket(size_t bytes);

    std::map<size_t, std::vector<void *>> free_;  // bucket size -> blocks
    std::map<void *, size_t> sizes_;              // every live block -> its bucket size
    size_t in_use_ = 0;
    size_t cached_ = 0;
};

}  // namespace toyllm::cuda
