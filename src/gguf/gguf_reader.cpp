// GGUF reader: validates every field against the file before anything is used.
//
// Each read checks its bounds first; counts and lengths are compared with the bytes
// left in the file before anything is allocated for them; sizes are computed so that
// they cannot overflow. The first problem found is thrown as a GgufError naming the
// file, the place (kv or tensor, by index and name) and the offending value.
#include "toyllm/gguf.h"

#include "core/mapped_file.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace toyllm {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;
// Smallest encodings, used to bound counts by the bytes left in the file.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim

struct KnownKey {
    std::string_view key;
    GgufType type;
    GgufType elem_type;  // for arrays
};

// Keys whose type llama.cpp relies on; a file that stores them otherwise is corrupt.
constexpr KnownKey kKnownKeys[] = {
    {"general.alignment", GgufType::UINT32, GgufType::UINT8},
    {"general.architecture", GgufType::STRING, GgufType::UINT8},
    {"general.name", GgufType::STRING, GgufType::UINT8},
    {"general.type", GgufType::STRING, GgufType::UINT8},
    {"general.file_type", GgufType::UINT32, GgufType::UINT8},
    {"general.quantization_version", GgufType::UINT32, GgufType::UINT8},
    {"tokenizer.ggml.model", GgufType::STRING, GgufType::UINT8},
    {"tokenizer.ggml.pre", GgufType::STRING, GgufType::UINT8},
    {"tokenizer.ggml.tokens", GgufType::ARRAY, GgufType::STRING},
    {"tokenizer.ggml.merges", GgufType::ARRAY, GgufType::STRING},
    {"tokenizer.ggml.scores", GgufType::ARRAY, GgufType::FLOAT32},
    {"tokenizer.ggml.token_type", GgufType::ARRAY, GgufType::INT32},
    {"tokenizer.ggml.bos_token_id", GgufType::UINT32, GgufType::UINT8},
    {"tokenizer.ggml.eos_token_id", GgufType::UINT32, GgufType::UINT8},
    {"tokenizer.ggml.unknown_token_id", GgufType::UINT32, GgufType::UINT8},
    {"tokenizer.ggml.padding_token_id", GgufType::UINT32, GgufType::UINT8},
};

std::string type_desc(GgufType type, GgufType elem_type) {
    std::string s(gguf_type_name(type));
    if (type == GgufType::ARRAY) s += "[" + std::string(gguf_type_name(elem_type)) + "]";
    return s;
}

std::string quoted(std::string_view s) {
    constexpr size_t kMax = 64;
    std::string out = "'";
    for (char c : s.substr(0, kMax)) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else {
            out += c;
        }
    }
    if (s.size() > kMax) out += "...";
    return out + "'";
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

class GgufFile::Parser {
  public:
    Parser(GgufFile & f) : f_(f), data_(f.bytes_.data()), size_(f.bytes_.size()) {}

    void parse() {
        parse_header();
        f_.kvs_.reserve(n_kv_);
        for (uint64_t i = 0; i < n_kv_; ++i) parse_kv(i);
        where_.clear();
        check_alignment();
        f_.tensors_.reserve(n_tensors_);
        for (uint64_t i = 0; i < n_tensors_; ++i) parse_tensor_info(i);
        where_.clear();
        parse_data_section();
    }

  private:
    [[noreturn]] void fail(GgufErrc code, const std::string & msg) const {
        std::string s = "gguf: " + f_.path_ + ": ";
        if (!where_.empty()) s += where_ + ": ";
        throw GgufError(code, s + msg);
    }

    uint64_t left() const { return size_ - pos_; }

    void need(uint64_t n, const char * what) const {
        if (n > left()) {
            fail(GgufErrc::TRUNCATED, std::string("file ends inside ") + what + " at offset " +
                                          std::to_string(pos_) + " (needs " + std::to_string(n) +
                                          " bytes, " + std::to_string(left()) + " left)");
        }
    }

    template <class T> T read(const char * what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string_view read_string(const char * what) {
        const uint64_t at = pos_;
        const uint64_t n = read<uint64_t>(what);
        if (n > left()) {
            fail(GgufErrc::BAD_LENGTH, std::string(what) + " at offset " + std::to_string(at) + " has length " +
                                           std::to_string(n) + ", past the end of the file (" +
                                           std::to_string(left()) + " bytes left)");
        }
        std::string_view s(reinterpret_cast<const char *>(data_ + pos_), n);
        pos_ += n;
        return s;
    }

    GgufType read_type(const char * what) {
        const uint32_t t = read<uint32_t>(what);
        if (t > static_cast<uint32_t>(GgufType::FLOAT64)) {
            fail(GgufErrc::BAD_VALUE_TYPE, std::string("unknown ") + what + " " + std::to_string(t));
        }
        return static_cast<GgufType>(t);
    }

    void parse_header() {
        const uint32_t magic = read<uint32_t>("the magic");
        if (magic != kMagic) {
            std::string got;
            for (int i = 0; i < 4; ++i) got += static_cast<char>((magic >> (8 * i)) & 0xff);
            fail(GgufErrc::BAD_MAGIC, "not a GGUF file (magic " + quoted(got) + ", expected 'GGUF')");
        }
        const uint32_t version = read<uint32_t>("the version");
        if (version == 1) {
            fail(GgufErrc::BAD_VERSION, "GGUF version 1 is not supported (only 2 and 3); convert the file again");
        }
        if ((version & 0xffff) == 0 && (version >> 24) >= 1 && (version >> 24) <= 3) {
            fail(GgufErrc::BAD_VERSION, "big-endian GGUF (version " + std::to_string(version >> 24) +
                                            " byte-swapped) is not supported");
        }
        if (version != 2 && version != 3) {
            fail(GgufErrc::BAD_VERSION, "GGUF version " + std::to_string(version) + " is not supported (only 2 and 3)");
        }
        f_.version_ = version;
        n_tensors_ = read<uint64_t>("the tensor count");
        n_kv_ = read<uint64_t>("the kv count");
        if (n_kv_ > left() / kMinKvBytes) {
            fail(GgufErrc::BAD_LENGTH, "kv count " + std::to_string(n_kv_) + " cannot fit in the " +
                                           std::to_string(left()) + " bytes after the header");
        }
        if (n_tensors_ > (left() - n_kv_ * kMinKvBytes) / kMinTensorInfoBytes) {
            fail(GgufErrc::BAD_LENGTH, "tensor count " + std::to_string(n_tensors_) + " cannot fit in the " +
                                           std::to_string(left()) + " bytes after the header");
        }
    }

    void parse_value(GgufValue & v) {
        switch (v.type) {
            case GgufType::STRING:
                v.str = read_string("a string value");
                return;
            case GgufType::ARRAY:
                parse_array(v);
                return;
            default: {
                const size_t n = gguf_scalar_size(v.type);
                need(n, "a value");
                std::memcpy(v.scalar.data(), data_ + pos_, n);
                pos_ += n;
                if (v.type == GgufType::BOOL && v.scalar[0] > 1) {
                    fail(GgufErrc::BAD_VALUE, "bool value " + std::to_string(v.scalar[0]) + " is neither 0 nor 1");
                }
            }
        }
    }

    void parse_array(GgufValue & v) {
        v.elem_type = read_type("array element type");
        if (v.elem_type == GgufType::ARRAY) fail(GgufErrc::BAD_VALUE_TYPE, "nested arrays are not allowed");
        const uint64_t at = pos_;
        v.count = read<uint64_t>("the array count");
        const uint64_t elem = v.elem_type == GgufType::STRING ? 8 : gguf_scalar_size(v.elem_type);
        if (v.count > left() / elem) {
            fail(GgufErrc::BAD_LENGTH, "array of " + std::to_string(v.count) + " " +
                                           std::string(gguf_type_name(v.elem_type)) + " at offset " +
                                           std::to_string(at) + " needs more than the " +
                                           std::to_string(left()) + " bytes left");
        }
        if (v.elem_type == GgufType::STRING) {
            v.strs.reserve(v.count);
            for (uint64_t i = 0; i < v.count; ++i) v.strs.push_back(read_string("an array string"));
            return;
        }
        v.raw = {data_ + pos_, v.count * elem};
        pos_ += v.count * elem;
        if (v.elem_type == GgufType::BOOL) {
            for (uint64_t i = 0; i < v.count; ++i) {
                if (v.raw[i] > 1) fail(GgufErrc::BAD_VALUE, "bool element " + std::to_string(i) + " is " + std::to_string(v.raw[i]));
            }
        }
    }

    void parse_kv(uint64_t i) {
        where_ = "kv " + std::to_string(i);
        GgufKv kv;
        kv.key = read_string("a key");
        where_ += " " + quoted(kv.key);
        kv.value.type = read_type("value type");
        parse_value(kv.value);
        if (!f_.kv_index_.emplace(kv.key, f_.kvs_.size()).second) {
            fail(GgufErrc::DUPLICATE_KEY, "duplicate key (first at kv " + std::to_string(f_.kv_index_[kv.key]) + ")");
        }
        check_known_key(kv);
        f_.kvs_.push_back(std::move(kv));
    }

    void check_known_key(const GgufKv & kv) const {
        for (const KnownKey & k : kKnownKeys) {
            if (k.key != kv.key) continue;
            const bool ok = kv.value.type == k.type && (k.type != GgufType::ARRAY || kv.value.elem_type == k.elem_type);
            if (!ok) {
                fail(GgufErrc::WRONG_KEY_TYPE, "must be " + type_desc(k.type, k.elem_type) + ", found " +
                                                   type_desc(kv.value.type, kv.value.elem_type));
            }
        }
    }

    void check_alignment() {
        const GgufValue * a = f_.find("general.alignment");
        if (a == nullptr) return;
        const uint32_t v = a->scalar_as<uint32_t>();  // type checked in check_known_key
        if (!is_power_of_two(v)) {
            fail(GgufErrc::BAD_ALIGNMENT, "general.alignment is " + std::to_string(v) + ", not a power of two");
        }
        f_.alignment_ = v;
    }

    void parse_tensor_info(uint64_t i) {
        where_ = "tensor " + std::to_string(i);
        GgufTensorInfo t;
        t.name = read_string("a tensor name");
        where_ += " " + quoted(t.name);
        t.n_dims = read<uint32_t>("n_dims");
        if (t.n_dims == 0 || t.n_dims > kMaxDims) {
            fail(GgufErrc::BAD_DIMS, "n_dims is " + std::to_string(t.n_dims) + " (must be 1 to 4)");
        }
        int64_t n_elements = 1;
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            t.ne[d] = read<int64_t>("a dimension");
            if (t.ne[d] < 1) fail(GgufErrc::BAD_DIMS, "ne[" + std::to_string(d) + "] is " + std::to_string(t.ne[d]) + " (must be >= 1)");
            if (n_elements > std::numeric_limits<int64_t>::max() / t.ne[d]) {
                fail(GgufErrc::BAD_DIMS, "element count overflows at ne[" + std::to_string(d) + "] = " + std::to_string(t.ne[d]));
            }
            n_elements *= t.ne[d];
        }
        const uint32_t type_id = read<uint32_t>("the tensor type");
        const auto info = dtype_info(type_id);
        if (!info) fail(GgufErrc::UNKNOWN_TYPE, "unknown ggml type id " + std::to_string(type_id));
        t.type = static_cast<DType>(type_id);
        if (t.ne[0] % info->block_size != 0) {
            fail(GgufErrc::BAD_BLOCK, "ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of " +
                                          std::string(info->name) + "'s block size " + std::to_string(info->block_size));
        }
        // n_elements / block_size * type_size <= INT64_MAX / 1 * 292: check before multiplying.
        const uint64_t n_blocks = static_cast<uint64_t>(n_elements) / info->block_size;
        if (n_blocks > std::numeric_limits<uint64_t>::max() / info->type_size) {
            fail(GgufErrc::BAD_DIMS, "byte size overflows");
        }
        t.n_bytes = n_blocks * info->type_size;
        t.offset = read<uint64_t>("the tensor offset");
        if (t.offset % f_.alignment_ != 0) {
            fail(GgufErrc::MISALIGNED, "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                           std::to_string(f_.alignment_));
        }
        if (!f_.tensor_index_.emplace(t.name, f_.tensors_.size()).second) {
            fail(GgufErrc::DUPLICATE_TENSOR, "duplicate tensor name (first at tensor " +
                                                 std::to_string(f_.tensor_index_[t.name]) + ")");
        }
        f_.tensors_.push_back(t);
    }

    void parse_data_section() {
        if (f_.tensors_.empty()) {
            f_.data_offset_ = pos_;
            return;
        }
        const uint64_t pad = (f_.alignment_ - pos_ % f_.alignment_) % f_.alignment_;
        need(pad, "the padding before the tensor data");
        f_.data_offset_ = pos_ + pad;
        const uint64_t data_size = size_ - f_.data_offset_;
        for (const GgufTensorInfo & t : f_.tensors_) {
            if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
                where_ = "tensor " + quoted(t.name);
                fail(GgufErrc::OUT_OF_BOUNDS, "data [" + std::to_string(t.offset) + ", +" + std::to_string(t.n_bytes) +
                                                  ") ends past the end of the file (data section is " +
                                                  std::to_string(data_size) + " bytes)");
            }
        }
        std::vector<size_t> order(f_.tensors_.size());
        std::iota(order.begin(), order.end(), 0);
        const auto & ts = f_.tensors_;
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ts[a].offset < ts[b].offset; });
        for (size_t k = 1; k < order.size(); ++k) {
            const GgufTensorInfo & a = ts[order[k - 1]];
            const GgufTensorInfo & b = ts[order[k]];
            if (a.offset + a.n_bytes > b.offset) {
                where_ = "tensor " + quoted(b.name);
                fail(GgufErrc::OVERLAP, "data at offset " + std::to_string(b.offset) + " overlaps tensor " +
                                            quoted(a.name) + " [" + std::to_string(a.offset) + ", " +
                                            std::to_string(a.offset + a.n_bytes) + ")");
            }
        }
    }

    GgufFile & f_;
    const uint8_t * data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    uint64_t n_kv_ = 0;
    uint64_t n_tensors_ = 0;
    std::string where_;  // "kv 3 'general.name'" while parsing it, for messages
};

GgufFile GgufFile::open(const std::string & path, bool in_memory) {
    auto map = std::make_shared<const MappedFile>(path, in_memory ? MappedFile::Load::Read : MappedFile::Load::Map);
    GgufFile f;
    f.path_ = path;
    f.bytes_ = map->bytes();
    f.map_ = std::move(map);
    Parser(f).parse();
    return f;
}

GgufFile GgufFile::from_bytes(std::span<const uint8_t> bytes, std::string name) {
    GgufFile f;
    f.path_ = std::move(name);
    f.bytes_ = bytes;
    Parser(f).parse();
    return f;
}

GgufFile::GgufFile(GgufFile &&) noexcept = default;
GgufFile & GgufFile::operator=(GgufFile &&) noexcept = default;
GgufFile::~GgufFile() = default;

const GgufValue * GgufFile::find(std::string_view key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

namespace {

[[noreturn]] void wrong_type(const std::string & path, std::string_view key, const std::string & want, const GgufValue & v) {
    throw GgufError(GgufErrc::WRONG_KEY_TYPE, "gguf: " + path + ": key '" + std::string(key) + "' must be " + want +
                                                  ", found " + type_desc(v.type, v.elem_type));
}

const GgufValue & require(const GgufFile & f, std::string_view key) {
    const GgufValue * v = f.find(key);
    if (v == nullptr) throw GgufError(GgufErrc::MISSING_KEY, "gguf: " + f.path() + ": missing key '" + std::string(key) + "'");
    return *v;
}

}  // namespace

std::string_view GgufFile::get_string(std::string_view key) const {
    const GgufValue & v = require(*this, key);
    if (v.type != GgufType::STRING) wrong_type(path_, key, "str", v);
    return v.str;
}

uint32_t GgufFile::get_u32(std::string_view key) const {
    const GgufValue & v = require(*this, key);
    if (!v.is_integer()) wrong_type(path_, key, "an integer", v);
    if (v.type == GgufType::UINT64 && v.scalar_as<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
        wrong_type(path_, key, "an integer in u32 range", v);
    }
    const int64_t i = v.as_int();
    if (i < 0 || i > std::numeric_limits<uint32_t>::max()) wrong_type(path_, key, "an integer in u32 range", v);
    return static_cast<uint32_t>(i);
}

float GgufFile::get_f32(std::string_view key) const {
    const GgufValue & v = require(*this, key);
    if (v.type != GgufType::FLOAT32 && v.type != GgufType::FLOAT64) wrong_type(path_, key, "f32", v);
    return static_cast<float>(v.as_float());
}

bool GgufFile::get_bool(std::string_view key) const {
    const GgufValue & v = require(*this, key);
    if (v.type != GgufType::BOOL) wrong_type(path_, key, "bool", v);
    return v.scalar[0] != 0;
}

const GgufValue & GgufFile::get_array(std::string_view key, GgufType elem_type) const {
    const GgufValue & v = require(*this, key);
    if (!v.is_array_of(elem_type)) wrong_type(path_, key, type_desc(GgufType::ARRAY, elem_type), v);
    return v;
}

const GgufTensorInfo * GgufFile::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo & GgufFile::get_tensor(std::string_view name) const {
    const GgufTensorInfo * t = find_tensor(name);
    if (t == nullptr) throw GgufError(GgufErrc::MISSING_TENSOR, "gguf: " + path_ + ": missing tensor '" + std::string(name) + "'");
    return *t;
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo & t) const {
    return bytes_.subspan(data_offset_ + t.offset, t.n_bytes);
}

}  // namespace toyllm
