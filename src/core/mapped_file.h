// A whole file as read-only bytes. Mapped (the default): pages are read on first touch,
// so opening a multi-gigabyte model costs nothing until its tensors are used. Read: the
// file is copied into anonymous memory at once, in transparent huge pages where the
// kernel gives them; a page-cache mapping has 4 KiB pages, and streaming a gigabyte of
// weights through them per token costs decode about a quarter of its speed in TLB
// misses (b1b q8_0 here: 30-33 t/s mapped, 36-43 read).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace toyllm {

class MappedFile {
  public:
    enum class Load { Map, Read };

    // Throws IoError naming the path and the system's reason.
    explicit MappedFile(const std::string & path, Load how = Load::Map);
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
