// toyllm info FILE [--json] [--max-array N]: a GGUF file's metadata and tensor table,
// read from the header alone (tensor data is mapped, never touched).
#include "args.h"
#include "commands.h"

#include "toyllm/gguf.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cinttypes>
#include <cstdlib>
#include <cstdio>

namespace toyllm::cli {

namespace {

using ojson = nlohmann::ordered_json;

// Scalar `i` of an array (or the value itself when i is npos) as JSON.
ojson scalar_json(const GgufValue & v, GgufType t, uint64_t i) {
    GgufValue one;
    one.type = t;
    if (i == UINT64_MAX) {
        one = v;
    } else {
        const size_t n = gguf_scalar_size(t);
        std::memcpy(one.scalar.data(), v.raw.data() + i * n, n);
    }
    switch (t) {
        case GgufType::BOOL: return one.scalar[0] != 0;
        case GgufType::FLOAT32: {
            // The shortest decimal that reads back as the same float: 1e-05, not 9.99999974e-06.
            char buf[32];
            const auto r = std::to_chars(buf, buf + sizeof(buf), one.scalar_as<float>());
            return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
        }
        case GgufType::FLOAT64: return one.as_float();
        case GgufType::UINT64: return one.scalar_as<uint64_t>();
        default: return one.as_int();
    }
}

ojson value_json(const GgufValue & v, uint64_t max_array) {
    if (v.type == GgufType::STRING) return std::string(v.str);
    if (v.type != GgufType::ARRAY) return scalar_json(v, v.type, UINT64_MAX);
    ojson items = ojson::array();
    const uint64_t n = max_array == 0 ? v.count : std::min(v.count, max_array);
    for (uint64_t i = 0; i < n; ++i) {
        if (v.elem_type == GgufType::STRING) items.push_back(std::string(v.strs[i]));
        else items.push_back(scalar_json(v, v.elem_type, i));
    }
    return items;
}

std::string type_label(const GgufValue & v) {
    if (v.type != GgufType::ARRAY) return std::string(gguf_type_name(v.type));
    return "[" + std::string(gguf_type_name(v.elem_type)) + "]";
}

std::string shape_text(const GgufTensorInfo & t) {
    std::string s;
    for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? " x " : "") + std::to_string(t.ne[d]);
    return s;
}

// Text as llama.cpp's gguf dump shows it: strings quoted, control bytes escaped,
// long strings cut.
std::string short_string(std::string_view s) {
    ojson j = std::string(s.substr(0, 80));
    std::string out = j.dump(-1, ' ', false, ojson::error_handler_t::replace);
    if (s.size() > 80) out += "...";
    return out;
}

std::string value_text(const GgufValue & v, uint64_t max_array) {
    if (v.type == GgufType::STRING) return short_string(v.str);
    if (v.type != GgufType::ARRAY) return value_json(v, 0).dump();
    std::string s = "[";
    const uint64_t n = max_array == 0 ? v.count : std::min(v.count, max_array);
    for (uint64_t i = 0; i < n; ++i) {
        if (i) s += ", ";
        s += v.elem_type == GgufType::STRING ? short_string(v.strs[i]) : scalar_json(v, v.elem_type, i).dump();
    }
    if (n < v.count) s += ", ... (" + std::to_string(v.count) + " total)";
    return s + "]";
}

void print_json(const GgufFile & f, uint64_t max_array) {
    ojson j;
    j["path"] = f.path();
    j["version"] = f.version();
    j["file_size"] = f.bytes().size();
    j["alignment"] = f.alignment();
    j["data_offset"] = f.data_offset();
    ojson meta = ojson::object();
    for (const GgufKv & kv : f.kvs()) {
        ojson e;
        e["type"] = type_label(kv.value);
        if (kv.value.type == GgufType::ARRAY) e["count"] = kv.value.count;
        e["value"] = value_json(kv.value, max_array);
        meta[std::string(kv.key)] = std::move(e);
    }
    j["metadata"] = std::move(meta);
    ojson tensors = ojson::array();
    for (const GgufTensorInfo & t : f.tensors()) {
        ojson e;
        e["name"] = std::string(t.name);
        e["type"] = std::string(dtype_name(t.type));
        e["shape"] = std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims);
        e["offset"] = f.data_offset() + t.offset;
        e["bytes"] = t.n_bytes;
        tensors.push_back(std::move(e));
    }
    j["tensors"] = std::move(tensors);
    std::puts(j.dump(2, ' ', false, ojson::error_handler_t::replace).c_str());
}

void print_text(const GgufFile & f, uint64_t max_array) {
    std::printf("%s: GGUF v%u, %zu bytes, alignment %" PRIu64 ", data at offset %" PRIu64 "\n", f.path().c_str(),
                f.version(), f.bytes().size(), f.alignment(), f.data_offset());
    std::printf("* %zu key/value pairs\n", f.kvs().size());
    size_t i = 0;
    for (const GgufKv & kv : f.kvs()) {
        const uint64_t count = kv.value.type == GgufType::ARRAY ? kv.value.count : 1;
        std::printf("%6zu: %-6s | %8" PRIu64 " | %.*s = %s\n", ++i, type_label(kv.value).c_str(), count,
                    static_cast<int>(kv.key.size()), kv.key.data(), value_text(kv.value, max_array).c_str());
    }
    std::printf("* %zu tensors\n", f.tensors().size());
    if (f.tensors().empty()) return;
    std::printf("%6s  %-7s %-24s %12s %12s  %s\n", "#", "type", "shape", "offset", "bytes", "name");
    uint64_t total = 0;
    i = 0;
    for (const GgufTensorInfo & t : f.tensors()) {
        std::printf("%6zu  %-7s %-24s %12" PRIu64 " %12" PRIu64 "  %.*s\n", ++i, std::string(dtype_name(t.type)).c_str(),
                    shape_text(t).c_str(), f.data_offset() + t.offset, t.n_bytes, static_cast<int>(t.name.size()),
                    t.name.data());
        total += t.n_bytes;
    }
    std::printf("* %" PRIu64 " bytes of tensor data\n", total);
}

}  // namespace

int cmd_info(const std::vector<std::string> & argv) {
    Args args("toyllm info FILE.gguf [--json] [--max-array N]",
              "Prints the GGUF header: every metadata key with its type and value, and the tensor table\n"
              "(name, type, shape, file offset, bytes). Tensor data is not read.",
              {
                  {"--json", "", "print one JSON object instead of text"},
                  {"--max-array", "N", "array elements shown per key (default 8, 0 = all)"},
              });
    if (!args.parse(argv, 1, 1)) return 0;
    const int max_array = args.get_int("--max-array", 8);
    if (max_array < 0) throw UsageError("--max-array must be >= 0");
    const GgufFile f = GgufFile::open(args.positional()[0]);
    if (args.has("--json")) print_json(f, static_cast<uint64_t>(max_array));
    else print_text(f, static_cast<uint64_t>(max_array));
    return 0;
}

}  // namespace toyllm::cli
