// libFuzzer target for the GGUF reader and writer.
//
// Any input must either be rejected with a GgufError or give a GgufFile whose every
// view lies inside the input (ASan checks the touches below). An accepted file must
// survive GgufWriter::copy_of -> to_bytes -> from_bytes with the same keys, values,
// tensor table and tensor bytes; a difference traps so that libFuzzer keeps the input.
#include "toyllm/gguf.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

using toyllm::GgufError;
using toyllm::GgufFile;
using toyllm::GgufType;
using toyllm::GgufValue;

namespace {

// Keeps reads of the views from being optimized away.
volatile uint64_t g_sink;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

template <class T> uint64_t sum_array(const GgufValue & v) {
    uint64_t s = 0;
    for (uint64_t i = 0; i < v.count; ++i) {
        T x = v.at<T>(i);
        uint64_t bits = 0;
        std::memcpy(&bits, &x, sizeof(T));
        s += bits;
    }
    return s;
}

uint64_t touch_string(std::string_view s) {
    return s.empty() ? 0 : static_cast<uint8_t>(s.front()) + static_cast<uint8_t>(s.back()) + s.size();
}

uint64_t touch_value(const GgufValue & v) {
    switch (v.type) {
        case GgufType::STRING:
            return touch_string(v.str);
        case GgufType::ARRAY:
            break;
        default:
            return v.scalar_as<uint64_t>();
    }
    switch (v.elem_type) {
        case GgufType::STRING: {
            check(v.strs.size() == v.count);
            uint64_t s = 0;
            for (std::string_view str : v.strs) s += touch_string(str);
            return s;
        }
        case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL:
            return sum_array<uint8_t>(v);
        case GgufType::UINT16: case GgufType::INT16:
            return sum_array<uint16_t>(v);
        case GgufType::UINT32: case GgufType::INT32:
            return sum_array<uint32_t>(v);
        case GgufType::FLOAT32:
            return sum_array<float>(v);
        case GgufType::UINT64: case GgufType::INT64:
            return sum_array<uint64_t>(v);
        case GgufType::FLOAT64:
            return sum_array<double>(v);
        case GgufType::ARRAY:
            check(false);  // the reader rejects nested arrays
    }
    return 0;
}

void touch_all(const GgufFile & f) {
    uint64_t s = f.version() + f.alignment() + f.data_offset();
    for (const toyllm::GgufKv & kv : f.kvs()) {
        s += touch_string(kv.key);
        s += touch_value(kv.value);
        check(f.find(kv.key) == &kv.value);
    }
    for (const toyllm::GgufTensorInfo & t : f.tensors()) {
        s += touch_string(t.name);
        const std::span<const uint8_t> d = f.tensor_data(t);
        check(d.size() == t.n_bytes && !d.empty());
        s += d.front() + d.back();
        check(f.find_tensor(t.name) == &t);
    }
    g_sink = s;
}

bool same_value(const GgufValue & a, const GgufValue & b) {
    if (a.type != b.type) return false;
    switch (a.type) {
        case GgufType::STRING:
            return a.str == b.str;
        case GgufType::ARRAY:
            if (a.elem_type != b.elem_type || a.count != b.count) return false;
            if (a.elem_type == GgufType::STRING) return a.strs == b.strs;
            return std::equal(a.raw.begin(), a.raw.end(), b.raw.begin(), b.raw.end());
        default:
            return std::memcmp(a.scalar.data(), b.scalar.data(), toyllm::gguf_scalar_size(a.type)) == 0;
    }
}

void check_round_trip(const GgufFile & a) {
    const std::vector<uint8_t> bytes = toyllm::GgufWriter::copy_of(a).to_bytes();
    // The writer's output is valid by construction: a GgufError here is a bug too.
    const GgufFile b = GgufFile::from_bytes(bytes, "<round trip>");
    check(b.version() == a.version());
    check(b.alignment() == a.alignment());
    check(b.kvs().size() == a.kvs().size());
    for (size_t i = 0; i < a.kvs().size(); ++i) {
        check(b.kvs()[i].key == a.kvs()[i].key);
        check(same_value(b.kvs()[i].value, a.kvs()[i].value));
    }
    check(b.tensors().size() == a.tensors().size());
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const toyllm::GgufTensorInfo & ta = a.tensors()[i];
        const toyllm::GgufTensorInfo & tb = b.tensors()[i];
        check(tb.name == ta.name && tb.type == ta.type && tb.n_dims == ta.n_dims && tb.ne == ta.ne);
        check(tb.n_bytes == ta.n_bytes);
        const std::span<const uint8_t> da = a.tensor_data(ta);
        const std::span<const uint8_t> db = b.tensor_data(tb);
        check(std::equal(da.begin(), da.end(), db.begin(), db.end()));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    std::optional<GgufFile> file;
    try {
        file.emplace(GgufFile::from_bytes({data, size}, "<fuzz>"));
    } catch (const GgufError &) {
        return 0;  // rejected cleanly: the expected outcome for most inputs
    }
    touch_all(*file);
    try {
        check_round_trip(*file);
    } catch (const GgufError &) {
        __builtin_trap();
    }
    return 0;
}
