// toyllm export RUN_DIR -o OUT.gguf: a training run's latest weights as a model GGUF, or
// its adapters as a llama.cpp LoRA adapter GGUF.
#include "commands.h"
#include "common.h"

#include "toyllm/train_run.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_export(const std::vector<std::string> & argv) {
    Args args("toyllm export RUN_DIR -o OUT.gguf",
              "Writes the latest checkpoint of a run: a model GGUF (f32) after `train` or `finetune`,\n"
              "which `toyllm generate` and llama.cpp load (`toyllm quantize` converts it), or a LoRA\n"
              "adapter GGUF in llama.cpp's format after `finetune --lora` (per-head Q adapters as one\n"
              "adapter of rank n_head * r), for `generate --lora` and `merge`.",
              {{"-o", "FILE", "the GGUF to write"}});
    if (!args.parse(argv, 1, 1)) return 0;
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o OUT.gguf is required");
    const std::string ckpt = export_run(args.positional()[0], *out);
    std::fprintf(stderr, "wrote %s from %s\n", out->c_str(), ckpt.c_str());
    return 0;
}

}  // namespace toyllm::cli
