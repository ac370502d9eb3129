// toyllm convert --from llama2c|hf SOURCE -o OUT.gguf: writes a GGUF model from another
// checkpoint format (see include/toyllm/convert.h for what each source holds).
#include "commands.h"
#include "common.h"

#include "toyllm/convert.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_convert(const std::vector<std::string> & argv) {
    Args args("toyllm convert --from llama2c|hf SOURCE [--tokenizer tok.bin] -o OUT.gguf [--type T]",
              "  toyllm convert --from llama2c MODEL.bin --tokenizer tok.bin -o OUT.gguf\n"
              "  toyllm convert --from hf DIR -o OUT.gguf\n\n"
              "Writes a GGUF model that toyllm and llama.cpp load. llama2c: a llama2.c checkpoint\n"
              "(run.c's legacy format) and its tokenizer file. hf: a Hugging Face directory of a\n"
              "LlamaForCausalLM or Qwen2ForCausalLM (config.json, model.safetensors or its shards,\n"
              "tokenizer.json). Weight matrices keep their type unless --type says otherwise;\n"
              "norms and biases are written as f32.",
              {
                  {"--from", "FORMAT", "llama2c or hf"},
                  {"--tokenizer", "FILE", "llama2c: the tokenizer (tok.bin) that goes with the checkpoint"},
                  {"-o", "OUT.gguf", "the file to write"},
                  {"--type", "T", "weight matrices as f32, f16, bf16, q8_0 or q4_0 (default: as in the source)"},
              });
    if (!args.parse(argv, 1, 1)) return 0;
    const std::string from = args.get("--from").value_or("");
    if (from != "llama2c" && from != "hf") throw UsageError("--from must be llama2c or hf" + (from.empty() ? "" : ", not '" + from + "'"));
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o OUT.gguf is required");
    ConvertOptions opts;
    if (const auto t = args.get("--type")) opts.type = parse_weight_type("--type", *t);
    const std::string & source = args.positional()[0];

    ConvertReport report;
    if (from == "llama2c") {
        const auto tok = args.get("--tokenizer");
        if (!tok) throw UsageError("--from llama2c needs --tokenizer tok.bin (llama2.c checkpoints hold no vocabulary)");
        report = convert_llama2c({.checkpoint = source, .tokenizer = *tok}, *out, opts);
    } else {
        if (args.has("--tokenizer")) throw UsageError("--tokenizer is for --from llama2c (hf reads DIR/tokenizer.json)");
        report = convert_hf(source, *out, opts);
    }
    std::fprintf(stderr, "wrote %s: %s, %zu tensors, %lld tokens, %s output\n", out->c_str(), report.arch.c_str(), report.n_tensors,
                 static_cast<long long>(report.n_vocab), report.tied_output ? "tied" : "separate");
    return 0;
}

}  // namespace toyllm::cli
