// toyllm quantize IN.gguf OUT.gguf TYPE: stores the 2-D weight matrices of a model in
// another dtype; norms, biases and matrices whose rows do not fill whole blocks stay as
// they are (llama.cpp keeps stories260K's 172-wide ffn_down in f32 the same way).
#include "commands.h"
#include "common.h"

#include "toyllm/convert.h"
#include "toyllm/quant.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_quantize(const std::vector<std::string> & argv) {
    Args args("toyllm quantize IN.gguf OUT.gguf TYPE",
              "Writes OUT with every 2-D '.weight' matrix of IN converted to TYPE (f32, f16, bf16,\n"
              "q8_0, q4_0); other tensors and all metadata are copied. Q8_0 and Q4_0 are\n"
              "bit-identical to llama.cpp's reference quantizers.",
              {});
    if (!args.parse(argv, 3, 3)) return 0;
    const std::string in = args.positional()[0], out = args.positional()[1], type_name = args.positional()[2];
    const DType type = parse_weight_type("TYPE", type_name);
    const GgufFile src = GgufFile::open(in);
    GgufWriter w(src.version());
    for (const GgufKv & kv : src.kvs()) w.set(kv.key, kv.value);
    w.set_u32("general.file_type", gguf_file_type(type));
    if (dtype_info(type).block_size > 1) w.set_u32("general.quantization_version", 2);

    std::vector<std::vector<uint8_t>> storage;  // converted data until write()
    size_t n_converted = 0;
    for (const GgufTensorInfo & t : src.tensors()) {
        const std::string name(t.name);
        const auto ne = std::span<const int64_t>(t.ne.data(), t.n_dims);
        if (!retypes_tensor(name, ne, type) || t.type == type || !can_dequantize(t.type)) {
            w.add_tensor(name, t.type, ne, src.tensor_data(t));
            continue;
        }
        std::vector<float> row(static_cast<size_t>(t.ne[0]));
        const size_t in_row = dtype_row_bytes(t.type, t.ne[0]), out_row = dtype_row_bytes(type, t.ne[0]);
        auto & bytes = storage.emplace_back(out_row * static_cast<size_t>(t.ne[1]));
        for (int64_t r = 0; r < t.ne[1]; ++r) {
            dequantize_row(t.type, src.tensor_data(t).data() + static_cast<size_t>(r) * in_row, row.data(), t.ne[0]);
            quantize_row(type, row.data(), bytes.data() + static_cast<size_t>(r) * out_row, t.ne[0]);
        }
        w.add_tensor(name, type, ne, bytes);
        ++n_converted;
    }
    w.write(out);
    std::fprintf(stderr, "wrote %s: %zu of %zu tensors as %s\n", out.c_str(), n_converted, src.tensors().size(), type_name.c_str());
    return 0;
}

}  // namespace toyllm::cli
