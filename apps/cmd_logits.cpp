// toyllm logits -m FILE --ids "1 2 3" [-o OUT.npy]: the logits at every position.
#include "commands.h"
#include "common.h"
#include "npy.h"

#include <cstdio>

namespace toyllm::cli {

int cmd_logits(const std::vector<std::string> & argv) {
    Args args("toyllm logits -m FILE.gguf --ids \"1 2 3\" [-o OUT.npy] [--ctx N] [--threads N]",
              "Runs the token ids through the model and writes the logits of every position as a\n"
              "float32 [T, n_vocab] .npy file (position i: after ids[0..i]). Without -o, prints the\n"
              "argmax and the largest logit of each position.",
              with_common_options({
                  {"-m", "FILE", "model GGUF file"},
                  {"--ids", "IDS", "token ids, separated by spaces or commas"},
                  {"-o", "OUT.npy", "where to write the logits"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    const auto model_path = args.get("-m");
    if (!model_path) throw UsageError("-m FILE is required");
    const auto ids_text = args.get("--ids");
    if (!ids_text) throw UsageError("--ids is required");
    const std::vector<int32_t> ids = parse_ids(*ids_text);
    auto model = load_model(args, *model_path);
    SessionConfig sc = session_config(args, *model);
    const auto n_ids = static_cast<int64_t>(ids.size());
    if (args.has("--ctx") && sc.n_ctx < n_ids) throw UsageError("--ctx " + std::to_string(sc.n_ctx) + " is shorter than the " + std::to_string(n_ids) + " ids");
    if (sc.n_ctx == 0) sc.n_ctx = std::max(n_ids, model->config().n_ctx_train);
    const int64_t n_vocab = model->config().n_vocab;
    for (int32_t id : ids) {
        if (id >= n_vocab) throw UsageError("--ids: " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n_vocab));
    }
    Session session(*model, sc);
    const std::vector<float> logits = session.eval(ids, true);
    if (const auto out = args.get("-o")) {
        write_npy_f32(*out, {static_cast<int64_t>(ids.size()), n_vocab}, logits);
        std::fprintf(stderr, "wrote %s: [%zu, %lld] float32\n", out->c_str(), ids.size(), static_cast<long long>(n_vocab));
        return 0;
    }
    for (size_t t = 0; t < ids.size(); ++t) {
        const float * row = logits.data() + t * static_cast<size_t>(n_vocab);
        int64_t best = 0;
        for (int64_t i = 1; i < n_vocab; ++i) best = row[i] > row[best] ? i : best;
        std::printf("%zu\tid %d\targmax %lld\tlogit %.6f\n", t, ids[t], static_cast<long long>(best), row[best]);
    }
    return 0;
}

}  // namespace toyllm::cli
