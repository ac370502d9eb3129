// Training throughput of a model file: full fine-tune (all weights f32 trainable) or LoRA
// over the frozen base in its stored dtype, on random tokens (no text needed).
//
//   bench_train MODEL.gguf [--lora R] [--ctx 256] [--batch 1] [--steps 3] [--threads 2]
//
// Prints tokens/s of optimizer steps (after one warm-up step), the arithmetic done per
// second counted as llama.cpp and PyTorch people count it (6 N per token for a full
// fine-tune; 4 N_base + 6 N_lora for LoRA, whose base gets no weight gradient), and the
// memory: planned activations, weights + grads + AdamW moments (the floor) and peak RSS.
#include "toyllm/lora.h"
#include "toyllm/rng.h"
#include "toyllm/train.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using namespace toyllm;

int64_t arg(int argc, char ** argv, const char * name, int64_t fallback) {
    for (int i = 2; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
    }
    return fallback;
}

double mib(size_t b) { return static_cast<double>(b) / 1048576.0; }

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_train MODEL.gguf [--lora R] [--ctx 256] [--batch 1] [--steps 3] [--threads 2]\n");
        return 2;
    }
    try {
        const int64_t rank = arg(argc, argv, "--lora", 0), ctx = arg(argc, argv, "--ctx", 256), batch = arg(argc, argv, "--batch", 1);
        const int64_t steps = arg(argc, argv, "--steps", 3);
        const int threads = static_cast<int>(arg(argc, argv, "--threads", 2));
        auto model = Model::load(argv[1]);
        const ModelConfig & c = model->config();
        int64_t n_base = 0;  // weights the tokens pass through (the embedding table is a lookup)
        for (const BlockWeights & b : model->weights().blocks) {
            for (size_t t = 0; t < kLoraTargets; ++t) n_base += b.matrix(static_cast<LoraTarget>(t))->n_elements();
        }
        n_base += model->weights().output->n_elements();
        std::vector<Tensor *> params = rank > 0 ? add_lora(*model, {.rank = rank, .alpha = static_cast<float>(2 * rank)}, 1) : model->make_trainable();
        int64_t n_train = 0;
        for (const Tensor * p : params) n_train += p->n_elements();

        std::vector<TokenId> doc(static_cast<size_t>(ctx * batch * (steps + 2)));
        Rng rng(3);
        for (TokenId & t : doc) t = static_cast<TokenId>(rng.below(static_cast<uint64_t>(c.n_vocab)));
        const Dataset data = Dataset::from_documents({doc}, kNoToken, kNoToken, {.n_ctx = ctx, .val_fraction = 0.0});
        Trainer tr(*model, params, data, {.steps = steps + 1, .batch = batch, .warmup = 0, .lr = 1e-5f, .n_threads = threads});
        tr.step();  // warm-up: plans memory, touches every page
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < steps; ++i) tr.step();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double tokens = static_cast<double>(steps * batch * ctx);
        const double flop_per_token = rank > 0 ? 4.0 * static_cast<double>(n_base) + 6.0 * static_cast<double>(n_train)
                                               : 6.0 * static_cast<double>(n_base);
        const TrainMemory m = tr.memory();
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        std::printf("%s: %s, %lld trainable params, ctx %lld x batch %lld, %d threads\n", argv[1], rank > 0 ? "LoRA" : "full fine-tune",
                    static_cast<long long>(n_train), static_cast<long long>(ctx), static_cast<long long>(batch), threads);
        std::printf("  %.1f tokens/s  (%.2f s per step of %lld tokens, %d steps)\n", tokens / s, s / static_cast<double>(steps),
                    static_cast<long long>(batch * ctx), static_cast<int>(steps));
        std::printf("  %.1f GFLOP/s counted as %s per token\n", tokens * flop_per_token / s * 1e-9, rank > 0 ? "4 N_base + 6 N_lora" : "6 N");
        std::printf("  memory: activations %.0f MiB planned, weights+grads+AdamW floor %.0f MiB (trainable %.0f, frozen %.0f), total %.0f MiB, peak RSS %.0f MiB\n",
                    mib(m.activations), mib(m.floor()), mib(m.trainable), mib(m.frozen), mib(m.total()), static_cast<double>(ru.ru_maxrss) / 1024.0);
    } catch (const std::exception & e) {
        std::fprintf(stderr, "bench_train: %s\n", e.what());
        return 1;
    }
    return 0;
}
