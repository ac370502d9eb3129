// toyllm demo [-o DIR]: the README's main job. For now it writes a small Llama-shaped
// GGUF with random F32 weights (no download needed) and prints its header with
// `toyllm info`; training and generation join it as they land.
#include "args.h"
#include "commands.h"

#include "toyllm/model_init.h"

#include <cstdio>
#include <filesystem>

namespace toyllm::cli {

int cmd_demo(const std::vector<std::string> & argv) {
    Args args("toyllm demo [-o DIR] [--seed S]",
              "Writes DIR/demo.gguf, a tiny Llama-shaped model with random weights, then prints its\n"
              "metadata and tensor table as `toyllm info` does.",
              {
                  {"-o", "DIR", "output directory (default: toyllm-demo)"},
                  {"--seed", "S", "random seed for the weights (default 42)"},
              });
    if (!args.parse(argv, 0, 0)) return 0;
    const std::filesystem::path dir = args.get("-o").value_or("toyllm-demo");
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "demo.gguf").string();

    ModelConfig c;  // byte-level vocabulary, 2 blocks of width 64
    c.n_vocab = 256;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 176;
    c.n_ctx_train = 256;
    c.rope.n_rot = 16;
    c.tied_embeddings = true;
    write_random_model(c, {.type = DType::F32, .seed = static_cast<uint64_t>(args.get_int("--seed", 42))}, path);
    std::printf("wrote %s\n\n", path.c_str());
    return cmd_info({path});
}

}  // namespace toyllm::cli
