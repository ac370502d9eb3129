#include "core/mapped_file.h"

#include "toyllm/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace toyllm {

namespace {

[[noreturn]] void throw_errno(const std::string & what, const std::string & path) {
    throw IoError(what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

MappedFile::MappedFile(const std::string & path, Load how) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("cannot open", path);
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        throw_errno("cannot stat", path);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw IoError("cannot map " + path + ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0 && how == Load::Read) {
        void * p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            throw_errno("cannot allocate memory for", path);
        }
        ::madvise(p, size_, MADV_HUGEPAGE);  // a hint: no error when THP is off
        auto * dst = static_cast<uint8_t *>(p);
        for (size_t done = 0; done < size_;) {
            const ssize_t n = ::pread(fd, dst + done, size_ - done, static_cast<off_t>(done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const int err = n == 0 ? EIO : errno;  // 0: the file shrank while being read
                ::munmap(p, size_);
                ::close(fd);
                errno = err;
                throw_errno("cannot read", path);
            }
            done += static_cast<size_t>(n);
        }
        ::mprotect(p, size_, PROT_READ);
        data_ = dst;
    } else if (size_ > 0) {
        void * p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            ::close(fd);
            throw_errno("cannot map", path);
        }
        data_ = static_cast<const uint8_t *>(p);
    }
    ::close(fd);  // the mapping keeps the file referenced
}

MappedFile::~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t *>(data_), size_);
}

}  // namespace toyllm
