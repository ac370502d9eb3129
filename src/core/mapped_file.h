// A read-only memory map of a whole file. Pages are read on first touch, so opening a
// multi-gigabyte model costs nothing until its tensors are used.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace toyllm {

class MappedFile {
  public:
    // Throws IoError naming the path and the system's reason.
    explicit MappedFile(const std::string & path);
    ~MappedFile();
    MappedFile(const MappedFile &) = delete;
    MappedFile & operator=(const MappedFile &) = delete;

    std::span<const uint8_t> bytes() const { return {data_, size_}; }
    const std::string & path() const { return path_; }

  private:
    std::string path_;
    const uint8_t * data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace toyllm
