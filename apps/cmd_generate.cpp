// toyllm generate -m FILE -p TEXT: streams a continuation of the prompt to stdout.
#include "commands.h"
#include "common.h"

#include "toyllm/lora.h"
#include "toyllm/sampler.h"
#include "toyllm/tokenizer.h"

#include <chrono>
#include <cstdio>

namespace toyllm::cli {

int cmd_generate(const std::vector<std::string> & argv) {
    Args args("toyllm generate -m FILE.gguf -p TEXT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]",
              "Prints the prompt and streams its continuation to stdout, stopping after N tokens, at\n"
              "the end-of-sequence token, at a --stop string or when the context is full. Sampling\n"
              "defaults follow llama.cpp's (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05);\n"
              "--temp 0 is greedy. Speed goes to stderr.",
              with_common_options({
                  {"-m", "FILE", "model GGUF file (its tokenizer is used)"},
                  {"-p", "TEXT", "the prompt"},
                  {"-n", "N", "tokens to generate (default 128)"},
                  {"--temp", "T", "temperature; 0 = greedy (default 0.8)"},
                  {"--top-k", "K", "keep the K most likely tokens; 0 = off (default 40)"},
                  {"--top-p", "P", "nucleus: keep tokens up to this probability mass (default 0.95)"},
                  {"--min-p", "P", "drop tokens below P x the best one's probability (default 0.05)"},
                  {"--repeat-penalty", "R", "penalize the last 64 tokens' logits by R (default 1 = off)"},
                  {"--frequency-penalty", "F", "subtract F x count of each recent token (default 0)"},
                  {"--presence-penalty", "P", "subtract P from each recent token (default 0)"},
                  {"--seed", "S", "random seed (default 0): the same seed gives the same text"},
                  {"--stop", "STR", "stop when the output ends with STR"},
                  {"--ids", "", "print the generated token ids instead of text"},
                  {"--no-bos", "", "do not prepend the BOS token"},
                  {"--lora", "FILE", "apply this LoRA adapter GGUF (llama.cpp's format) without merging"},
                  {"--lora-scale", "S", "strength of the adapter (default 1)"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    const auto model_path = args.get("-m");
    if (!model_path) throw UsageError("-m FILE is required");
    const auto prompt = args.get("-p");
    if (!prompt) throw UsageError("-p TEXT is required");
    const int n_predict = args.get_int("-n", 128);
    if (n_predict < 0) throw UsageError("-n must be >= 0");
    SamplerConfig scfg;
    scfg.temperature = args.get_float("--temp", scfg.temperature);
    scfg.top_k = args.get_int("--top-k", scfg.top_k);
    scfg.top_p = args.get_float("--top-p", scfg.top_p);
    scfg.min_p = args.get_float("--min-p", scfg.min_p);
    scfg.repeat_penalty = args.get_float("--repeat-penalty", scfg.repeat_penalty);
    scfg.frequency_penalty = args.get_float("--frequency-penalty", scfg.frequency_penalty);
    scfg.presence_penalty = args.get_float("--presence-penalty", scfg.presence_penalty);
    scfg.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
    const std::string stop = args.get("--stop").value_or("");

    auto model = load_model(args, *model_path);
    if (const auto lora = args.get("--lora")) load_lora(*model, *lora, args.get_float("--lora-scale", 1.0f));
    else if (args.has("--lora-scale")) throw UsageError("--lora-scale needs --lora FILE");
    const auto tok = Tokenizer::from_gguf(model->file());
    EncodeOptions eo;
    if (args.has("--no-bos")) eo.add_bos = false;
    const std::vector<TokenId> ids = tok->encode(*prompt, eo);
    if (ids.empty()) throw UsageError("the prompt is empty (and no BOS is added)");
    SessionConfig sc = session_config(args, *model);
    if (sc.n_ctx == 0) sc.n_ctx = model->config().n_ctx_train;
    if (static_cast<int64_t>(ids.size()) > sc.n_ctx) {
        throw UsageError("the prompt has " + std::to_string(ids.size()) + " tokens, more than the context of " + std::to_string(sc.n_ctx) + " (--ctx)");
    }
    Session session(*model, sc);
    Sampler sampler(scfg);
    for (TokenId id : ids) sampler.accept(id);

    const bool print_ids = args.has("--ids");
    StreamDecoder out(*tok, {.render_special = false});
    if (!print_ids) {
        std::string shown;
        for (TokenId id : ids) shown += out.push(id);
        std::fputs(shown.c_str(), stdout);
        std::fflush(stdout);
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> logits = session.eval(ids);
    const auto t1 = std::chrono::steady_clock::now();
    std::string tail;  // recent output, for --stop
    int n_gen = 0;
    while (n_gen < n_predict) {
        const TokenId id = sampler.sample(logits);
        if (id == tok->vocab().eos) break;
        sampler.accept(id);
        ++n_gen;
        if (print_ids) {
            std::printf(n_gen > 1 ? " %d" : "%d", id);
        } else {
            const std::string text = out.push(id);
            std::fputs(text.c_str(), stdout);
            tail += text;
            if (tail.size() > 4 * stop.size() + 64) tail.erase(0, tail.size() - 2 * stop.size() - 32);
        }
        std::fflush(stdout);
        if (!stop.empty() && tail.size() >= stop.size() && tail.compare(tail.size() - stop.size(), stop.size(), stop) == 0) break;
        if (session.n_past() >= session.n_ctx()) {
            std::fprintf(stderr, "\n[context of %lld tokens is full]\n", static_cast<long long>(session.n_ctx()));
            break;
        }
        logits = session.eval(std::span<const TokenId>(&id, 1));
    }
    if (!print_ids) std::fputs(out.flush().c_str(), stdout);
    std::fputs("\n", stdout);
    const auto t2 = std::chrono::steady_clock::now();
    const double pp_s = std::chrono::duration<double>(t1 - t0).count(), tg_s = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "[prompt %zu tokens %.1f t/s, generated %d tokens %.1f t/s]\n", ids.size(), ids.size() / pp_s, n_gen,
                 n_gen > 0 ? n_gen / tg_s : 0.0);
    return 0;
}

}  // namespace toyllm::cli
