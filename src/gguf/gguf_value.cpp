// Metadata value types: names, sizes and numeric conversions shared by reader and writer.
#include "toyllm/gguf.h"

#include <limits>

namespace toyllm {

std::string_view gguf_type_name(GgufType t) {
    switch (t) {
        case GgufType::UINT8:   return "u8";
        case GgufType::INT8:    return "i8";
        case GgufType::UINT16:  return "u16";
        case GgufType::INT16:   return "i16";
        case GgufType::UINT32:  return "u32";
        case GgufType::INT32:   return "i32";
        case GgufType::FLOAT32: return "f32";
        case GgufType::BOOL:    return "bool";
        case GgufType::STRING:  return "str";
        case GgufType::ARRAY:   return "arr";
        case GgufType::UINT64:  return "u64";
        case GgufType::INT64:   return "i64";
        case GgufType::FLOAT64: return "f64";
    }
    return "?";
}

size_t gguf_scalar_size(GgufType t) {
    switch (t) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
        case GgufType::UINT16: case GgufType::INT16: return 2;
        case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
        case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
        case GgufType::STRING: case GgufType::ARRAY: return 0;
    }
    return 0;
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
        case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
            return true;
        default:
            return false;
    }
}

int64_t GgufValue::as_int() const {
    switch (type) {
        case GgufType::UINT8:  return scalar_as<uint8_t>();
        case GgufType::INT8:   return scalar_as<int8_t>();
        case GgufType::UINT16: return scalar_as<uint16_t>();
        case GgufType::INT16:  return scalar_as<int16_t>();
        case GgufType::UINT32: return scalar_as<uint32_t>();
        case GgufType::INT32:  return scalar_as<int32_t>();
        case GgufType::INT64:  return scalar_as<int64_t>();
        case GgufType::UINT64: {
            const uint64_t v = scalar_as<uint64_t>();
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                throw GgufError(GgufErrc::WRONG_KEY_TYPE, "gguf: u64 value " + std::to_string(v) + " does not fit in i64");
            }
            return static_cast<int64_t>(v);
        }
        default:
            throw GgufError(GgufErrc::WRONG_KEY_TYPE,
                            "gguf: expected an integer, found " + std::string(gguf_type_name(type)));
    }
}

double GgufValue::as_float() const {
    if (type == GgufType::FLOAT32) return scalar_as<float>();
    if (type == GgufType::FLOAT64) return scalar_as<double>();
    return static_cast<double>(as_int());
}

}  // namespace toyllm
