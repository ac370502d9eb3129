// GGUF writer: serializes metadata as it is set, lays tensors out in the order they
// were added (each at the next multiple of the alignment) and streams everything in
// one pass. Files are written to a temporary name, fsynced and renamed into place.
#include "toyllm/gguf.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

namespace toyllm {

namespace {

void put_bytes(std::vector<uint8_t> & out, const void * p, size_t n) {
    const auto * b = static_cast<const uint8_t *>(p);
    out.insert(out.end(), b, b + n);
}

template <class T> void put(std::vector<uint8_t> & out, T v) { put_bytes(out, &v, sizeof(T)); }

void put_string(std::vector<uint8_t> & out, std::string_view s) {
    put<uint64_t>(out, s.size());
    put_bytes(out, s.data(), s.size());
}

uint64_t pad_to(uint64_t n, uint64_t align) { return (align - n % align) % align; }

[[noreturn]] void writer_error(GgufErrc code, const std::string & msg) { throw GgufError(code, "gguf writer: " + msg); }

}  // namespace

class GgufWriter::Sink {
  public:
    virtual ~Sink() = default;
    virtual void write(const void * p, size_t n) = 0;

    void zeros(size_t n) {
        static const uint8_t z[64] = {};
        for (; n > sizeof(z); n -= sizeof(z)) write(z, sizeof(z));
        write(z, n);
    }
};

GgufWriter::GgufWriter(uint32_t version) : version_(version) {
    if (version != 2 && version != 3) writer_error(GgufErrc::BAD_VERSION, "version " + std::to_string(version) + " (only 2 and 3)");
}

void GgufWriter::set_payload(std::string_view key, std::vector<uint8_t> payload) {
    for (Kv & kv : kvs_) {
        if (kv.key == key) {
            kv.payload = std::move(payload);
            return;
        }
    }
    kvs_.push_back({std::string(key), std::move(payload)});
}

void GgufWriter::set(std::string_view key, const GgufValue & v) {
    if (key == "general.alignment") {
        if (v.type != GgufType::UINT32) writer_error(GgufErrc::WRONG_KEY_TYPE, "general.alignment must be u32");
        const uint32_t a = v.scalar_as<uint32_t>();
        if (a == 0 || (a & (a - 1)) != 0) writer_error(GgufErrc::BAD_ALIGNMENT, "general.alignment " + std::to_string(a) + " is not a power of two");
        alignment_ = a;
    }
    std::vector<uint8_t> p;
    put<uint32_t>(p, static_cast<uint32_t>(v.type));
    switch (v.type) {
        case GgufType::STRING:
            put_string(p, v.str);
            break;
        case GgufType::ARRAY:
            if (v.elem_type == GgufType::ARRAY) writer_error(GgufErrc::BAD_VALUE_TYPE, "nested arrays are not allowed");
            put<uint32_t>(p, static_cast<uint32_t>(v.elem_type));
            put<uint64_t>(p, v.count);
            if (v.elem_type == GgufType::STRING) {
                TOYLLM_ASSERT(v.strs.size() == v.count);
                for (std::string_view s : v.strs) put_string(p, s);
            } else {
                TOYLLM_ASSERT(v.raw.size() == v.count * gguf_scalar_size(v.elem_type));
                put_bytes(p, v.raw.data(), v.raw.size());
            }
            break;
        default:
            put_bytes(p, v.scalar.data(), gguf_scalar_size(v.type));
    }
    set_payload(key, std::move(p));
}

namespace {

template <class T> GgufValue scalar_value(GgufType t, T x) {
    GgufValue v;
    v.type = t;
    std::memcpy(v.scalar.data(), &x, sizeof(T));
    return v;
}

}  // namespace

void GgufWriter::set_u32(std::string_view key, uint32_t v) { set(key, scalar_value(GgufType::UINT32, v)); }
void GgufWriter::set_i32(std::string_view key, int32_t v) { set(key, scalar_value(GgufType::INT32, v)); }
void GgufWriter::set_u64(std::string_view key, uint64_t v) { set(key, scalar_value(GgufType::UINT64, v)); }
void GgufWriter::set_f32(std::string_view key, float v) { set(key, scalar_value(GgufType::FLOAT32, v)); }
void GgufWriter::set_bool(std::string_view key, bool v) { set(key, scalar_value(GgufType::BOOL, static_cast<uint8_t>(v))); }

void GgufWriter::set_string(std::string_view key, std::string_view s) {
    GgufValue v;
    v.type = GgufType::STRING;
    v.str = s;
    set(key, v);
}

void GgufWriter::set_strings(std::string_view key, const std::vector<std::string> & strs) {
    GgufValue v;
    v.type = GgufType::ARRAY;
    v.elem_type = GgufType::STRING;
    v.count = strs.size();
    v.strs.assign(strs.begin(), strs.end());
    set(key, v);
}

void GgufWriter::set_array(std::string_view key, GgufType elem_type, const void * data, uint64_t count) {
    if (elem_type == GgufType::STRING || elem_type == GgufType::ARRAY) {
        writer_error(GgufErrc::BAD_VALUE_TYPE, "set_array takes scalars; use set_strings for strings");
    }
    GgufValue v;
    v.type = GgufType::ARRAY;
    v.elem_type = elem_type;
    v.count = count;
    v.raw = {static_cast<const uint8_t *>(data), count * gguf_scalar_size(elem_type)};
    set(key, v);
}

void GgufWriter::remove(std::string_view key) {
    std::erase_if(kvs_, [&](const Kv & kv) { return kv.key == key; });
    if (key == "general.alignment") alignment_ = 32;
}

void GgufWriter::add_tensor(std::string_view name, DType type, std::span<const int64_t> ne, std::span<const uint8_t> data) {
    const std::string who = "tensor '" + std::string(name) + "': ";
    for (const Tensor & t : tensors_) {
        if (t.name == name) writer_error(GgufErrc::DUPLICATE_TENSOR, who + "added twice");
    }
    if (ne.empty() || ne.size() > 4) writer_error(GgufErrc::BAD_DIMS, who + std::to_string(ne.size()) + " dims (must be 1 to 4)");
    int64_t n = 1;
    for (int64_t d : ne) {
        if (d < 1 || n > INT64_MAX / d) writer_error(GgufErrc::BAD_DIMS, who + "dimension " + std::to_string(d));
        n *= d;
    }
    const DTypeInfo & info = dtype_info(type);
    if (ne[0] % info.block_size != 0) {
        writer_error(GgufErrc::BAD_BLOCK, who + "ne[0] = " + std::to_string(ne[0]) + " is not a multiple of " +
                                              std::to_string(info.block_size));
    }
    const uint64_t bytes = static_cast<uint64_t>(n / info.block_size) * info.type_size;
    if (data.size() != bytes) {
        writer_error(GgufErrc::BAD_TENSOR, who + "data has " + std::to_string(data.size()) + " bytes, shape needs " +
                                               std::to_string(bytes));
    }
    tensors_.push_back({std::string(name), type, {ne.begin(), ne.end()}, data});
}

GgufWriter GgufWriter::copy_of(const GgufFile & src) {
    GgufWriter w(src.version());
    for (const GgufKv & kv : src.kvs()) w.set(kv.key, kv.value);
    for (const GgufTensorInfo & t : src.tensors()) {
        w.add_tensor(t.name, t.type, std::span(t.ne.data(), t.n_dims), src.tensor_data(t));
    }
    return w;
}

void GgufWriter::emit(Sink & out) const {
    std::vector<uint8_t> head;
    put<uint32_t>(head, 0x46554747);  // "GGUF"
    put<uint32_t>(head, version_);
    put<uint64_t>(head, tensors_.size());
    put<uint64_t>(head, kvs_.size());
    for (const Kv & kv : kvs_) {
        put_string(head, kv.key);
        put_bytes(head, kv.payload.data(), kv.payload.size());
    }
    uint64_t offset = 0;
    for (const Tensor & t : tensors_) {
        put_string(head, t.name);
        put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put<int64_t>(head, d);
        put<uint32_t>(head, static_cast<uint32_t>(t.type));
        put<uint64_t>(head, offset);
        offset += t.data.size() + pad_to(t.data.size(), alignment_);
    }
    out.write(head.data(), head.size());
    if (tensors_.empty()) return;  // vocab-only files end after the metadata
    out.zeros(pad_to(head.size(), alignment_));
    for (const Tensor & t : tensors_) {
        out.write(t.data.data(), t.data.size());
        out.zeros(pad_to(t.data.size(), alignment_));
    }
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    struct Mem : Sink {
        std::vector<uint8_t> buf;
        void write(const void * p, size_t n) override { put_bytes(buf, p, n); }
    } mem;
    emit(mem);
    return std::move(mem.buf);
}

void GgufWriter::write(const std::string & path) const {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::string tmp = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) throw IoError("cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));

    struct File : Sink {
        int fd;
        std::string path;
        std::vector<uint8_t> buf;
        void flush() {
            const uint8_t * p = buf.data();
            size_t n = buf.size();
            while (n > 0) {
                const ssize_t k = ::write(fd, p, n);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) throw IoError("cannot write " + path + ": " + std::strerror(errno));
                p += k;
                n -= static_cast<size_t>(k);
            }
            buf.clear();
        }
        void write(const void * p, size_t n) override {
            constexpr size_t kBuf = 4 << 20;
            if (buf.size() + n > kBuf) flush();
            if (n >= kBuf) {
                buf.assign(static_cast<const uint8_t *>(p), static_cast<const uint8_t *>(p) + n);
                flush();
                return;
            }
            put_bytes(buf, p, n);
        }
    } file;
    file.fd = fd;
    file.path = tmp;
    try {
        emit(file);
        file.flush();
        if (::fsync(fd) != 0) throw IoError("cannot fsync " + tmp + ": " + std::strerror(errno));
        if (::close(fd) != 0) {
            file.fd = -1;
            throw IoError("cannot close " + tmp + ": " + std::strerror(errno));
        }
        file.fd = -1;
        // mkstemp creates 0600; a model file should be readable like any other file.
        const mode_t mask = ::umask(0);
        ::umask(mask);
        ::chmod(tmp.c_str(), 0666 & ~mask);
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            throw IoError("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
        }
    } catch (...) {
        if (file.fd >= 0) ::close(file.fd);
        ::unlink(tmp.c_str());
        throw;
    }
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);  // makes the rename durable; best effort on filesystems that refuse
        ::close(dfd);
    }
}

}  // namespace toyllm
