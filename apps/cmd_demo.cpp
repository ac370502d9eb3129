// toyllm demo: the README's main job. Trains a small Llama from scratch on text every
// Debian machine has (/usr/share/common-licenses) for about a minute, saves it as GGUF,
// writes a sample with it, and prints what the taps see in each block.
#include "commands.h"
#include "common.h"

#include "toyllm/sampler.h"
#include "toyllm/tokenizer.h"
#include "toyllm/train_run.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace toyllm::cli {

namespace {

namespace fs = std::filesystem;

// mean, standard deviation and largest magnitude of a tapped activation.
void print_tap_stats(const Session & s, int64_t n_layer) {
    std::printf("\nresidual stream after each block (blk.N.resid_post) over the sample:\n");
    std::printf("  %-18s %10s %10s %10s\n", "tap", "mean", "std", "max |x|");
    for (int64_t il = 0; il < n_layer; ++il) {
        const std::string name = "blk." + std::to_string(il) + ".resid_post";
        const std::vector<float> v = s.tap(name);
        double sum = 0.0, sq = 0.0, mx = 0.0;
        for (float x : v) {
            sum += x;
            sq += static_cast<double>(x) * x;
            mx = std::max(mx, static_cast<double>(std::fabs(x)));
        }
        const double n = static_cast<double>(std::max<size_t>(v.size(), 1)), mean = sum / n;
        std::printf("  %-18s %10.4f %10.4f %10.4f\n", name.c_str(), mean, std::sqrt(std::max(0.0, sq / n - mean * mean)), mx);
    }
}

}  // namespace

int cmd_demo(const std::vector<std::string> & argv) {
    const unsigned hw = std::thread::hardware_concurrency();
    Args args("toyllm demo [-o DIR] [--data PATH] [--steps N] [--seed S] [--threads N]",
              "Trains a 4-block Llama (0.8M parameters, byte-level tokenizer) from scratch on the\n"
              "licence texts in /usr/share/common-licenses for about a minute on 2 cores, saves it as\n"
              "DIR/demo.gguf (llama.cpp loads it too), generates a sample and prints per-block tap\n"
              "statistics. DIR/run holds the run (metrics.jsonl, checkpoint); `toyllm plot DIR/run`.",
              {
                  {"-o", "DIR", "output directory (default: toyllm-demo); its run/ is replaced"},
                  {"--data", "PATH", "text to train on (default: /usr/share/common-licenses)"},
                  {"--steps", "N", "optimizer steps of 8 x 128 tokens (default 600)"},
                  {"--seed", "S", "seed of the weights, data order and sampling (default 42)"},
                  {"--threads", "N", "CPU threads (default: " + std::to_string(hw == 0 ? 1 : hw) + ")"},
              });
    if (!args.parse(argv, 0, 0)) return 0;
    const fs::path dir = args.get("-o").value_or("toyllm-demo");
    const std::string data = args.get("--data").value_or("/usr/share/common-licenses");
    if (!fs::exists(data)) throw Error("no training text at " + data + " (give one with --data PATH)");
    const int steps = args.get_int("--steps", 600);
    if (steps < 1) throw UsageError("--steps must be >= 1");
    const int threads = args.get_int("--threads", hw == 0 ? 1 : static_cast<int>(hw));
    if (threads < 1) throw UsageError("--threads must be >= 1");
    const uint64_t seed = static_cast<uint64_t>(args.get_int("--seed", 42));

    fs::create_directories(dir);
    const fs::path config = dir / "model.json";
    std::ofstream(config) << R"({"arch": "llama", "n_embd": 128, "n_ff": 352, "n_layer": 4, "n_head": 4, "n_head_kv": 2, "n_ctx_train": 512})"
                          << "\n";
    RunSpec s;
    s.mode = TrainMode::SCRATCH;
    s.config_file = config.string();
    s.data = data;
    s.run_dir = (dir / "run").string();
    s.n_ctx = 128;
    s.seed = seed;
    s.val_fraction = 0.05;
    s.train = {.steps = steps, .batch = 8, .warmup = 20, .lr = 2e-3f, .n_threads = threads};
    if (fs::exists(fs::path(s.run_dir) / "config.json")) fs::remove_all(s.run_dir);  // the previous demo's

    std::printf("training a 4-block Llama from scratch on %s (%d steps of 8 x 128 tokens, %d threads)\n", data.c_str(), steps, threads);
    double elapsed = 0.0;
    const RunResult r = run_training(s, false, [&](const StepStats & st, const Trainer &) {
        elapsed += st.seconds;
        if (st.step % 50 == 0 || st.step == 1 || st.step == steps) {
            std::printf("  step %4lld  loss %.3f  %6.0f tok/s  %5.1f s\n", static_cast<long long>(st.step), st.loss,
                        static_cast<double>(st.tokens) / st.seconds, elapsed);
            std::fflush(stdout);
        }
    });
    std::printf("validation loss %.3f (%.2f bits per byte)\n", r.val_loss, r.val_loss / std::log(2.0));
    const std::string model_path = (dir / "demo.gguf").string();
    export_run(s.run_dir, model_path);
    std::printf("saved %s\n\nsample (temperature 0.8):\n", model_path.c_str());

    auto model = Model::load(model_path);
    const auto tok = Tokenizer::from_gguf(model->file());
    const Taps taps({"*.resid_post"});
    Session session(*model, {.n_ctx = 256, .n_batch = 256, .n_threads = threads});
    Sampler sampler({.temperature = 0.8f, .seed = seed});
    std::vector<TokenId> ids = tok->encode("The ");
    StreamDecoder out(*tok, {.render_special = false});
    for (TokenId id : ids) std::fputs(out.push(id).c_str(), stdout);
    std::vector<float> logits = session.eval(ids);
    for (int i = 0; i < 200; ++i) {
        const TokenId id = sampler.sample(logits);
        if (id == tok->vocab().eos) break;
        sampler.accept(id);
        ids.push_back(id);
        std::fputs(out.push(id).c_str(), stdout);
        logits = session.eval(std::span<const TokenId>(&id, 1));
    }
    std::printf("%s\n", out.flush().c_str());

    // One forward over the whole sample with the taps on.
    Session probe(*model, {.n_ctx = 256, .n_batch = 256, .n_threads = threads, .taps = &taps});
    probe.eval(ids);
    print_tap_stats(probe, model->config().n_layer);
    return 0;
}

}  // namespace toyllm::cli
