// toyllm merge -m BASE.gguf --lora ADAPTER.gguf -o OUT.gguf: folds an adapter into the
// base weights.
#include "commands.h"
#include "common.h"

#include "toyllm/lora.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_merge(const std::vector<std::string> & argv) {
    Args args("toyllm merge -m BASE.gguf --lora ADAPTER.gguf -o OUT.gguf [--lora-scale S]",
              "Writes BASE with the adapter folded into its weights: W + S * alpha/r * B A, in f32 for\n"
              "the adapted matrices; every other tensor and all metadata are copied.",
              {{"-m", "FILE", "the base model"},
               {"--lora", "FILE", "a LoRA adapter GGUF (llama.cpp's format)"},
               {"--lora-scale", "S", "strength of the adapter (default 1)"},
               {"-o", "FILE", "the merged model to write"}});
    if (!args.parse(argv, 0, 0)) return 0;
    const auto base = args.get("-m"), lora = args.get("--lora"), out = args.get("-o");
    if (!base || !lora || !out) throw UsageError("-m, --lora and -o are required");
    auto model = Model::load(*base);
    load_lora(*model, *lora, args.get_float("--lora-scale", 1.0f));
    merge_lora(*model, *out);
    std::fprintf(stderr, "wrote %s\n", out->c_str());
    return 0;
}

}  // namespace toyllm::cli
