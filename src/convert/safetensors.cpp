#include "convert/safetensors.h"

#include "core/mapped_file.h"
#include "toyllm/error.h"
#include "toyllm/quant.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace toyllm {

namespace {

using json = nlohmann::json;

struct DtypeSize {
    std::string_view name;
    size_t size;
    std::optional<DType> type;
};

// The dtypes of the safetensors format; only the float ones convert.
constexpr DtypeSize kDtypes[] = {
    {"F32", 4, DType::F32}, {"F16", 2, DType::F16}, {"BF16", 2, DType::BF16},
    {"F64", 8, std::nullopt}, {"I64", 8, std::nullopt}, {"U64", 8, std::nullopt},
    {"I32", 4, std::nullopt}, {"U32", 4, std::nullopt}, {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt}, {"I8", 1, std::nullopt}, {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

// The safetensors library refuses headers above 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeader = 100'000'000;

struct Checker {
    const std::string & path;
    [[noreturn]] void operator()(const std::string & msg) const { throw Error("safetensors " + path + ": " + msg); }
};

}  // namespace

int64_t SafetensorsTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

SafetensorsFile SafetensorsFile::open(const std::string & path) {
    SafetensorsFile f;
    f.path_ = path;
    f.map_ = std::make_shared<MappedFile>(path);
    const std::span<const uint8_t> bytes = f.map_->bytes();
    const Checker fail{path};

    if (bytes.size() < 8) fail("the file has " + std::to_string(bytes.size()) + " bytes, less than the 8-byte header length");
    uint64_t n_header = 0;
    std::memcpy(&n_header, bytes.data(), 8);
    if (n_header > bytes.size() - 8) {
        fail("the header length " + std::to_string(n_header) + " is past the end of the file (" + std::to_string(bytes.size()) + " bytes)");
    }
    if (n_header > kMaxHeader) fail("the header length " + std::to_string(n_header) + " is above the 100 MB limit");
    const auto * text = reinterpret_cast<const char *>(bytes.data() + 8);
    json header;
    try {
        header = json::parse(text, text + n_header);
    } catch (const json::exception & e) {
        fail(std::string("the header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail("the header is not a JSON object");

    const uint64_t data_start = 8 + n_header;
    const uint64_t data_size = bytes.size() - data_start;
    for (const auto & [name, entry] : header.items()) {
        if (name == "__metadata__") continue;
        const std::string where = "tensor '" + name + "'";
        if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
            fail(where + ": expected an object with dtype, shape and data_offsets");
        }
        const json & dt = entry["dtype"];
        const json & shape = entry["shape"];
        const json & offs = entry["data_offsets"];
        if (!dt.is_string()) fail(where + ": dtype is not a string");
        const std::string dtype = dt.get<std::string>();
        const auto known = std::find_if(std::begin(kDtypes), std::end(kDtypes), [&](const DtypeSize & d) { return d.name == dtype; });
        if (known == std::end(kDtypes)) fail(where + ": unknown dtype '" + dtype + "'");

        SafetensorsTensor t;
        t.name = name;
        t.dtype = dtype;
        t.type = known->type;
        if (!shape.is_array()) fail(where + ": shape is not an array");
        uint64_t n = 1;
        for (const json & d : shape) {
            if (!d.is_number_unsigned()) fail(where + ": shape " + shape.dump() + " holds something other than a size");
            const uint64_t v = d.get<uint64_t>();
            // Keeps n * the dtype's size (at most 8) below 2^63; the size check follows.
            if (v != 0 && n > (uint64_t{1} << 59) / v) fail(where + ": shape " + shape.dump() + " has too many elements");
            n *= v;
            t.shape.push_back(static_cast<int64_t>(v));
        }
        if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned()) {
            fail(where + ": data_offsets is not [begin, end]");
        }
        const uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
        if (begin > end) fail(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] run backwards");
        if (end > data_size) {
            fail(where + ": data_offsets end " + std::to_string(end) + " is past the end of the data (" + std::to_string(data_size) + " bytes)");
        }
        if (end - begin != n * known->size) {
            fail(where + ": " + std::to_string(end - begin) + " bytes for shape " + shape.dump() + " of " + dtype + " (expected " +
                 std::to_string(n * known->size) + ")");
        }
        t.data = bytes.subspan(data_start + begin, end - begin);
        f.tensors_.push_back(std::move(t));
    }

    std::vector<const SafetensorsTensor *> by_offset;
    for (const auto & t : f.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto * a, auto * b) { return a->data.data() < b->data.data(); });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const SafetensorsTensor & prev = *by_offset[i - 1];
        if (by_offset[i]->data.data() < prev.data.data() + prev.data.size()) {
            fail("tensors '" + prev.name + "' and '" + by_offset[i]->name + "' overlap");
        }
    }
    return f;
}

const SafetensorsTensor * SafetensorsFile::find(std::string_view name) const {
    for (const auto & t : tensors_) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

std::vector<float> SafetensorsFile::to_f32(const SafetensorsTensor & t) const {
    if (!t.type) throw Error("safetensors " + path_ + ": tensor '" + t.name + "' has dtype " + t.dtype + " (toyllm converts F32, F16, BF16)");
    const auto n = static_cast<size_t>(t.n_elements());
    std::vector<float> out(n);
    if (*t.type == DType::F32) {
        std::memcpy(out.data(), t.data.data(), n * sizeof(float));  // the data need not be 4-byte aligned
    } else {
        std::vector<uint16_t> halves(n);
        std::memcpy(halves.data(), t.data.data(), n * sizeof(uint16_t));
        dequantize_row(*t.type, halves.data(), out.data(), static_cast<int64_t>(n));
    }
    return out;
}

}  // namespace toyllm
