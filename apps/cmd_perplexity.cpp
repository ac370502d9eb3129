// toyllm perplexity -m FILE -f TEXT: the perplexity of a text as llama.cpp's
// llama-perplexity computes it. The text is tokenized once (BOS first when the model adds
// one), cut into non-overlapping chunks of n_ctx tokens, and each chunk is evaluated on
// its own with its first token set to BOS. Only the second half of each chunk is scored
// (positions n_ctx/2 .. n_ctx-2 predicting the next token), so that every scored token
// has at least n_ctx/2 tokens of context. Prints the running perplexity after each chunk
// and the final estimate exp(mean NLL) +/- its standard error, exp(mean) * sd / sqrt(n - 1).
#include "commands.h"
#include "common.h"

#include "toyllm/tokenizer.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace toyllm::cli {

namespace {

// -log softmax(logits)[target], in double.
double negative_log_prob(const float * logits, int64_t n_vocab, int32_t target) {
    double max = logits[0];
    for (int64_t i = 1; i < n_vocab; ++i) max = std::max(max, static_cast<double>(logits[i]));
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(logits[i] - max);
    return -(logits[target] - max - std::log(sum));
}

std::string read_text(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("cannot open " + path + ": " + std::strerror(errno));
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int cmd_perplexity(const std::vector<std::string> & argv) {
    Args args("toyllm perplexity -m FILE.gguf -f TEXT [--ctx N] [--batch N] [--chunks N] [--threads N]",
              "Prints the perplexity of the text after each chunk of --ctx tokens (\"[1]12.3456,[2]...\")\n"
              "and the final estimate \"PPL = X +/- Y\", computed as llama.cpp's llama-perplexity does:\n"
              "non-overlapping chunks, each starting with BOS, the second half of each scored. The text\n"
              "must hold at least 2 x --ctx tokens.",
              with_common_options({
                  {"-m", "FILE", "model GGUF file (its tokenizer is used)"},
                  {"-f", "TEXT", "the text file"},
                  {"--batch", "N", "tokens per forward pass (default 256)"},
                  {"--chunks", "N", "score at most N chunks (default: all)"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    const auto model_path = args.get("-m");
    if (!model_path) throw UsageError("-m FILE is required");
    const auto text_path = args.get("-f");
    if (!text_path) throw UsageError("-f TEXT is required");
    const int max_chunks = args.get_int("--chunks", -1);

    auto model = load_model(args, *model_path);
    SessionConfig sc = session_config(args, *model);
    if (sc.n_ctx == 0) sc.n_ctx = model->config().n_ctx_train;
    sc.n_batch = args.get_int("--batch", static_cast<int>(sc.n_batch));
    if (sc.n_batch < 1) throw UsageError("--batch must be >= 1");
    const int64_t n_ctx = sc.n_ctx;
    if (n_ctx < 4) throw UsageError("--ctx must be at least 4");
    const auto tok = Tokenizer::from_gguf(model->file());
    const bool add_bos = tok->vocab().add_bos;
    std::vector<TokenId> tokens = tok->encode(read_text(*text_path));
    const auto n_tokens = static_cast<int64_t>(tokens.size());
    if (n_tokens < 2 * n_ctx) {
        throw Error(*text_path + " tokenizes to " + std::to_string(n_tokens) + " tokens; perplexity with a context of " + std::to_string(n_ctx) +
                    " needs at least " + std::to_string(2 * n_ctx) + " (a longer text or a smaller --ctx)");
    }
    int64_t n_chunk = n_tokens / n_ctx;
    if (max_chunks >= 0) n_chunk = std::min<int64_t>(n_chunk, max_chunks);
    const int64_t first = n_ctx / 2, n_vocab = model->config().n_vocab;
    std::fprintf(stderr, "perplexity: %lld tokens, %lld chunks of %lld, scoring the last %lld tokens of each\n",
                 static_cast<long long>(n_tokens), static_cast<long long>(n_chunk), static_cast<long long>(n_ctx),
                 static_cast<long long>(n_ctx - 1 - first));

    Session session(*model, sc);
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_chunk; ++i) {
        std::vector<TokenId> chunk(tokens.begin() + i * n_ctx, tokens.begin() + (i + 1) * n_ctx);
        if (add_bos) chunk[0] = tok->vocab().bos;
        session.reset();
        const std::vector<float> logits = session.eval(chunk, true);
        for (int64_t j = first; j < n_ctx - 1; ++j) {
            const double v = negative_log_prob(logits.data() + j * n_vocab, n_vocab, chunk[static_cast<size_t>(j + 1)]);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - 1 - first;
        std::printf("[%lld]%.4f,", static_cast<long long>(i + 1), std::exp(nll / static_cast<double>(count)));
        std::fflush(stdout);
    }
    std::printf("\n");
    const double mean = nll / static_cast<double>(count), ppl = std::exp(mean);
    const double var = nll2 / static_cast<double>(count) - mean * mean;
    if (var > 0 && count > 1) {
        std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, std::sqrt(var / static_cast<double>(count - 1)) * ppl);
    } else {
        std::printf("Final estimate: PPL = %.4f\n", ppl);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[%lld tokens scored, %.1f tokens/s evaluated]\n", static_cast<long long>(count),
                 static_cast<double>(n_chunk * n_ctx) / secs);
    return 0;
}

}  // namespace toyllm::cli
