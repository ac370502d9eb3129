// toyllm init: a randomly initialized model file of a preset or explicit shape.
#include "commands.h"
#include "common.h"

#include "toyllm/model_init.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_init(const std::vector<std::string> & argv) {
    std::string presets;
    for (const std::string & n : model_preset_names()) presets += (presets.empty() ? "" : ", ") + n;
    Args args("toyllm init (--preset NAME | --arch llama|qwen2 --n-embd N ...) -o OUT.gguf [--type T] [--seed S]",
              "Writes a model with random weights (N(0, 0.02) matrices, unit norms, zero biases).\n"
              "Presets: " + presets + ".\nExplicit sizes override the preset's.",
              {
                  {"--preset", "NAME", "start from a preset shape"},
                  {"--arch", "A", "llama or qwen2 (default llama, or the preset's)"},
                  {"--n-embd", "N", "embedding width"},
                  {"--n-layer", "N", "blocks"},
                  {"--n-head", "N", "query heads"},
                  {"--n-head-kv", "N", "key/value heads (default n-head)"},
                  {"--n-ff", "N", "FFN hidden width"},
                  {"--n-vocab", "N", "vocabulary size (default: the tokenizer's)"},
                  {"--n-ctx", "N", "context_length to record (default 2048)"},
                  {"--tied", "", "tie the output to the embedding"},
                  {"--tokenizer-from", "FILE", "copy the tokenizer of this GGUF"},
                  {"--type", "T", "f32, f16, bf16, q8_0, q4_0, q4_k or q6_k (default f32)"},
                  {"--seed", "S", "random seed (default 0)"},
                  {"-o", "OUT", "output file"},
                  {"--ctx", "N", "accepted for uniformity; ignored"},
                  {"--threads", "N", "accepted for uniformity; ignored"},
              });
    if (!args.parse(argv, 0, 0)) return 0;
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o OUT.gguf is required");
    ModelConfig c;
    if (const auto p = args.get("--preset")) {
        const auto preset = model_preset(*p);
        if (!preset) throw UsageError("unknown preset '" + *p + "' (" + presets + ")");
        c = *preset;
    } else {
        c.n_ctx_train = 2048;
    }
    if (const auto a = args.get("--arch")) {
        if (*a != "llama" && *a != "qwen2") throw UsageError("--arch must be llama or qwen2, not '" + *a + "'");
        c.arch = *a == "llama" ? Arch::LLAMA : Arch::QWEN2;
        c.arch_name = *a;
        c.rope.mode = c.arch == Arch::LLAMA ? RopeMode::NORMAL : RopeMode::NEOX;
        c.qkv_bias = c.arch == Arch::QWEN2;
    }
    c.n_embd = args.get_int("--n-embd", static_cast<int>(c.n_embd));
    c.n_layer = args.get_int("--n-layer", static_cast<int>(c.n_layer));
    c.n_head = args.get_int("--n-head", static_cast<int>(c.n_head));
    c.n_head_kv = args.get_int("--n-head-kv", static_cast<int>(c.n_head_kv > 0 ? c.n_head_kv : c.n_head));
    c.n_ff = args.get_int("--n-ff", static_cast<int>(c.n_ff));
    c.n_ctx_train = args.get_int("--n-ctx", static_cast<int>(c.n_ctx_train));
    if (args.has("--tied")) c.tied_embeddings = true;
    if (c.n_head > 0 && (args.has("--n-embd") || args.has("--n-head") || c.head_dim == 0)) c.head_dim = c.n_embd / c.n_head;
    if (c.rope.n_rot == 0 || args.has("--n-embd") || args.has("--n-head")) c.rope.n_rot = static_cast<int32_t>(c.head_dim);

    InitOptions opts;
    const std::string type = args.get("--type").value_or("f32");
    const auto t = dtype_from_name(type);
    if (!t) throw UsageError("unknown --type '" + type + "'");
    opts.type = *t;
    opts.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
    std::unique_ptr<GgufFile> tok;
    if (const auto f = args.get("--tokenizer-from")) {
        tok = std::make_unique<GgufFile>(GgufFile::open(*f));
        opts.tokenizer_from = tok.get();
        if (!args.has("--n-vocab") && tok->find("tokenizer.ggml.tokens")) c.n_vocab = static_cast<int64_t>(tok->get_array("tokenizer.ggml.tokens", GgufType::STRING).count);
    }
    c.n_vocab = args.get_int("--n-vocab", static_cast<int>(c.n_vocab));
    write_random_model(c, opts, *out);
    std::fprintf(stderr, "wrote %s: %s, %lld layers, n_embd %lld, n_ff %lld, heads %lld/%lld, vocab %lld, %s\n", out->c_str(),
                 c.arch_name.c_str(), static_cast<long long>(c.n_layer), static_cast<long long>(c.n_embd), static_cast<long long>(c.n_ff),
                 static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv), static_cast<long long>(c.n_vocab), type.c_str());
    return 0;
}

}  // namespace toyllm::cli
