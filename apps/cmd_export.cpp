// toyllm export RUN_DIR -o OUT.gguf: a training run's latest weights as a model GGUF, or
// its adapters as a llama.cpp LoRA adapter GGUF.
#include "commands.h"
#include "common.h"

#include "toyllm/train_run.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_export(const std::vector<std::string> & argv) {
    Args args("toyllm export RUN_DIR -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0]",
              "Writes the latest checkpoint of a run: a model GGUF after `train` or `finetune`, which\n"
              "`toyllm generate` and llama.cpp load, or a LoRA\n"
              "adapter GGUF in llama.cpp's format after `finetune --lora` (per-head Q adapters as one\n"
              "adapter of rank n_head * r), for `generate --lora` and `merge`.",
              {{"-o", "FILE", "the GGUF to write"}, {"--type", "T", "storage of the weight matrices of a model (default f32)"}});
    if (!args.parse(argv, 1, 1)) return 0;
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o OUT.gguf is required");
    const DType type = args.has("--type") ? parse_weight_type("--type", *args.get("--type")) : DType::F32;
    const std::string ckpt = export_run(args.positional()[0], *out, type);
    std::fprintf(stderr, "wrote %s from %s\n", out->c_str(), ckpt.c_str());
    return 0;
}

}  // namespace toyllm::cli
