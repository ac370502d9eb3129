// .npy v1.0: "\x93NUMPY" | u8 major=1 | u8 minor=0 | u16 header length | header (a Python
// dict literal, space-padded so that the data starts at a multiple of 64) | data.
#include "npy.h"

#include "toyllm/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace toyllm::cli {

void write_npy_f32(const std::string & path, const std::vector<int64_t> & shape, const std::vector<float> & data) {
    std::string dims;  // "2, 3" as numpy writes it, "2," for one dimension
    for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
    if (shape.size() == 1) dims += ",";
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    const size_t prefix = 10;
    while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    FILE * f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) throw IoError("cannot create " + path + ": " + std::strerror(errno));
    const uint16_t len = static_cast<uint16_t>(header.size());
    const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(&len, 2, 1, f) == 1 &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              std::fwrite(data.data(), sizeof(float), data.size(), f) == data.size();
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) throw IoError("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace toyllm::cli
