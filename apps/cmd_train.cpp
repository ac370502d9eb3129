// toyllm train / toyllm finetune [--lora]: a training run in a directory (train_run.h),
// with a progress line on stderr.
#include "commands.h"
#include "common.h"

#include "toyllm/model_init.h"
#include "toyllm/train_run.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <thread>

namespace toyllm::cli {

namespace {

std::vector<OptionSpec> training_options(std::vector<OptionSpec> specific) {
    const unsigned hw = std::thread::hardware_concurrency();
    std::vector<OptionSpec> common = {
        {"--data", "PATH", "a text file or a directory of them (each file one document)"},
        {"-o", "RUN_DIR", "run directory: config.json, metrics.jsonl, checkpoint-STEP.gguf"},
        {"--resume", "RUN_DIR", "continue the run in RUN_DIR from its latest checkpoint (other options come from its config.json)"},
        {"--steps", "N", "optimizer steps (default 100)"},
        {"--lr", "X", "peak learning rate (default: 1e-3 from scratch and LoRA, 1e-4 full fine-tune)"},
        {"--warmup", "N", "linear warmup steps, then cosine decay to lr/10 (default: steps/10, at most 100)"},
        {"--ctx", "N", "tokens per training sequence (default 128)"},
        {"--batch", "N", "sequences per optimizer step (default 8)"},
        {"--micro-batch", "N", "sequences per forward/backward; gradients accumulate (default: --batch)"},
        {"--seed", "S", "seed of the initialization, the LoRA A matrices and the data order (default 0)"},
        {"--eval-every", "N", "validation loss every N steps and before the first (default: at the end only)"},
        {"--save-every", "N", "checkpoint every N steps (default: at the end only)"},
        {"--val-fraction", "F", "share of the sequences held out for validation (default 0.1)"},
        {"--weight-decay", "W", "AdamW decoupled weight decay (default 0)"},
        {"--grad-clip", "G", "clip gradients to this global norm; 0 = off (default 1)"},
        {"--stop-at", "N", "stop after step N with a checkpoint, as if interrupted (Ctrl-C does the same)"},
        {"--threads", "N", "CPU threads (default: " + std::to_string(hw == 0 ? 1 : hw) + ", the cores available)"},
        {"--device", "D", "cpu or cuda (default cpu; AdamW runs on the host either way)"},
    };
    specific.insert(specific.end(), common.begin(), common.end());
    return specific;
}

int64_t positive(const Args & args, const std::string & name, int64_t fallback) {
    const int v = args.get_int(name, static_cast<int>(fallback));
    if (v < 1) throw UsageError(name + " must be >= 1");
    return v;
}

// Fills spec's training fields from the options shared by train and finetune.
void read_training_options(const Args & args, RunSpec & s, float default_lr) {
    const auto data = args.get("--data");
    if (!data) throw UsageError("--data PATH is required");
    const auto out = args.get("-o");
    if (!out) throw UsageError("-o RUN_DIR is required");
    s.data = *data;
    s.run_dir = *out;
    TrainOptions & t = s.train;
    t.steps = positive(args, "--steps", 100);
    t.lr = args.get_float("--lr", default_lr);
    if (!(t.lr > 0.0f)) throw UsageError("--lr must be > 0");
    t.warmup = args.get_int("--warmup", static_cast<int>(std::min<int64_t>(100, t.steps / 10)));
    if (t.warmup < 0) throw UsageError("--warmup must be >= 0");
    s.n_ctx = positive(args, "--ctx", 128);
    t.batch = positive(args, "--batch", 8);
    t.micro_batch = positive(args, "--micro-batch", t.batch);
    if (t.batch % t.micro_batch != 0) throw UsageError("--micro-batch must divide --batch");
    s.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
    s.eval_every = args.get_int("--eval-every", 0);
    s.save_every = args.get_int("--save-every", 0);
    s.val_fraction = args.get_float("--val-fraction", 0.1f);
    t.weight_decay = args.get_float("--weight-decay", 0.0f);
    t.grad_clip = args.get_float("--grad-clip", 1.0f);
    const unsigned hw = std::thread::hardware_concurrency();
    t.n_threads = static_cast<int>(positive(args, "--threads", hw == 0 ? 1 : hw));
}

std::string duration(double s) {
    char buf[32];
    const long v = std::lround(s);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    return buf;
}

int run(const Args & args, RunSpec s) {
    const bool resume = args.has("--resume");
    if (resume) s.run_dir = *args.get("--resume");
    s.train.device = args.get("--device").value_or("cpu");
    s.stop_at = args.get_int("--stop-at", 0);
    const bool tty = isatty(STDERR_FILENO) != 0;
    double elapsed = 0.0;
    int64_t first = -1;
    const RunResult r = run_training(s, resume, [&](const StepStats & st, const Trainer & tr) {
        if (first < 0) first = st.step - 1;
        elapsed += st.seconds;
        const int64_t total = tr.options().steps, done = st.step - first;
        const double eta = elapsed / static_cast<double>(done) * static_cast<double>(total - st.step);
        const int64_t every = std::max<int64_t>(1, total / 20);
        if (!tty && st.step % every != 0 && st.step != total) return;
        std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s%s", tty ? "\r" : "",
                     static_cast<long long>(st.step), static_cast<long long>(total), st.loss, st.lr, st.grad_norm,
                     static_cast<double>(st.tokens) / st.seconds, duration(eta).c_str(), tty ? "   " : "\n");
    });
    if (tty) std::fputs("\n", stderr);
    if (r.interrupted) std::fprintf(stderr, "stopped after step %lld; continue with --resume %s\n", static_cast<long long>(r.steps_done), s.run_dir.c_str());
    if (!std::isnan(r.val_loss)) std::fprintf(stderr, "validation loss %.4f\n", r.val_loss);
    std::fprintf(stderr, "saved %s\n", r.checkpoint.c_str());
    return 0;
}

}  // namespace

int cmd_train(const std::vector<std::string> & argv) {
    Args args("toyllm train (--preset NAME | --config FILE.json) --data PATH -o RUN_DIR [options]",
              "Trains a model from random initialization (f32 weights, AdamW). The tokenizer is copied\n"
              "from --tokenizer-from, or is the built-in byte-level one (260 tokens). Presets: " +
                  [] {
                      std::string s;
                      for (const std::string & n : model_preset_names()) s += (s.empty() ? "" : ", ") + n;
                      return s;
                  }() +
                  ".\nA config file holds {\"arch\", \"n_embd\", \"n_ff\", \"n_layer\", \"n_head\", \"n_head_kv\", ...}.",
              training_options({
                  {"--preset", "NAME", "model shape of a preset (its vocabulary size follows the tokenizer)"},
                  {"--config", "FILE", "model shape from a JSON file"},
                  {"--tokenizer-from", "FILE", "GGUF whose tokenizer to use (default: byte-level)"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    RunSpec s;
    s.mode = TrainMode::SCRATCH;
    if (!args.has("--resume")) {
        if (args.has("--preset") == args.has("--config")) throw UsageError("give one of --preset NAME and --config FILE");
        s.preset = args.get("--preset").value_or("");
        s.config_file = args.get("--config").value_or("");
        if (!s.preset.empty() && !model_preset(s.preset)) throw UsageError("unknown preset '" + s.preset + "'");
        s.tokenizer_from = args.get("--tokenizer-from").value_or("");
        read_training_options(args, s, 1e-3f);
    }
    return run(args, s);
}

int cmd_finetune(const std::vector<std::string> & argv) {
    Args args("toyllm finetune -m BASE.gguf --data PATH -o RUN_DIR [--lora [--lora-rank R] ...] [options]",
              "Fine-tunes a model: all weights as f32 copies (biases included), or with --lora\n"
              "low-rank adapters beside the frozen base, which stays in its file's dtype (Q8_0,\n"
              "Q4_0, ... bases work). `toyllm export RUN_DIR` writes the result for generate and llama.cpp.",
              training_options({
                  {"-m", "FILE", "the base model GGUF"},
                  {"--lora", "", "train LoRA adapters instead of all weights"},
                  {"--lora-rank", "R", "adapter rank (default 8)"},
                  {"--lora-alpha", "A", "adapter scale numerator: output += alpha/r B A x (default 16)"},
                  {"--lora-targets", "LIST", "matrices with adapters, from q,k,v,o,gate,up,down (default: all)"},
                  {"--lora-per-head-q", "", "the Q adapter is one rank-R pair per query head"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    RunSpec s;
    s.mode = args.has("--lora") ? TrainMode::LORA : TrainMode::FULL;
    if (!args.has("--resume")) {
        const auto base = args.get("-m");
        if (!base) throw UsageError("-m BASE.gguf is required");
        s.base_model = *base;
        if (s.mode == TrainMode::LORA) {
            s.lora.rank = positive(args, "--lora-rank", 8);
            s.lora.alpha = args.get_float("--lora-alpha", 16.0f);
            if (const auto t = args.get("--lora-targets")) s.lora.targets = parse_lora_targets(*t);
            s.lora.per_head_q = args.has("--lora-per-head-q");
        } else {
            for (const char * o : {"--lora-rank", "--lora-alpha", "--lora-targets", "--lora-per-head-q"}) {
                if (args.has(o)) throw UsageError(std::string(o) + " needs --lora");
            }
        }
        read_training_options(args, s, s.mode == TrainMode::LORA ? 1e-3f : 1e-4f);
    }
    return run(args, s);
}

}  // namespace toyllm::cli
