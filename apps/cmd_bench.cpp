// toyllm bench -m FILE [-p 128] [-n 64]: prefill and decode speed like llama-bench's
// pp and tg tests, with the decode bound memory bandwidth / bytes read per token.
#include "commands.h"
#include "common.h"

#include "toyllm/memory_bandwidth.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

namespace toyllm::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The weights one decoded token reads in full, in the order it reads them: every matrix
// and norm once (and one embedding row, left out here).
std::vector<const Tensor *> decode_weights(const Model & m) {
    std::vector<const Tensor *> out;
    const ModelWeights & w = m.weights();
    auto add = [&](const Tensor * t) {
        if (t != nullptr) out.push_back(t);
    };
    for (const BlockWeights & b : w.blocks) {
        for (const Tensor * t : {b.attn_norm, b.wq, b.wk, b.wv, b.wo, b.bq, b.bk, b.bv, b.ffn_norm, b.w_gate, b.w_up, b.w_down}) add(t);
    }
    add(w.output_norm);
    add(w.output);
    return out;
}

// Bytes of weights one decoded token reads: every matrix once, one embedding row.
double bytes_per_token(const Model & m) {
    double bytes = 0.0;
    for (const Tensor * t : decode_weights(m)) bytes += static_cast<double>(t->n_bytes());
    return bytes + static_cast<double>(m.weights().tok_embd->n_bytes()) / static_cast<double>(m.config().n_vocab);
}

// A read-only pass over those weights where they are (the file's mapping, or the
// memory they were read into) with n_threads threads: GB/s.
double weights_read_gbps(const Model & m, int n_threads) {
    std::vector<std::span<const uint8_t>> regions;
    for (const Tensor * t : decode_weights(m)) regions.emplace_back(static_cast<const uint8_t *>(t->data), t->n_bytes());
    return read_gbps(regions, n_threads);
}

struct Result {
    double mean = 0, stddev = 0;
};

Result stats(const std::vector<double> & v) {
    Result r;
    for (double x : v) r.mean += x;
    r.mean /= static_cast<double>(v.size());
    for (double x : v) r.stddev += (x - r.mean) * (x - r.mean);
    r.stddev = v.size() > 1 ? std::sqrt(r.stddev / static_cast<double>(v.size() - 1)) : 0.0;
    return r;
}

}  // namespace

int cmd_bench(const std::vector<std::string> & argv) {
    Args args("toyllm bench -m FILE.gguf [-p 128] [-n 64] [-d 0] [-r 3] [--threads N] [--json]",
              "Measures prefill (pp: P prompt tokens in one batch) and decode (tg: N tokens one at a\n"
              "time) in tokens/s, as llama-bench does, on random token ids; with -d D both run after\n"
              "D tokens already in the context (evaluated first, not timed). Also prints the decode\n"
              "bound: this machine's memory bandwidth (a STREAM-like triad in the CPU's widest\n"
              "stores, best of 3 passes, measured after the runs) divided by the bytes of weights\n"
              "read per token; and the same for a read-only pass over those weights where they\n"
              "are (a sum in the CPU's widest loads): what a decode step, which only reads them,\n"
              "can hope for on this memory, its pages (mapped or --no-mmap) included. The bound\n"
              "counts the weights only, not the KV cache that -d adds.",
              with_common_options({
                  {"-m", "FILE", "model GGUF file"},
                  {"-p", "P", "prompt tokens for pp (default 128; 0 skips)"},
                  {"-n", "N", "generated tokens for tg (default 64; 0 skips)"},
                  {"-d", "D", "context depth: tokens in the cache before pp and tg (default 0)"},
                  {"-r", "R", "repetitions (default 3)"},
                  {"--json", "", "print one JSON object"},
              }));
    if (!args.parse(argv, 0, 0)) return 0;
    const auto model_path = args.get("-m");
    if (!model_path) throw UsageError("-m FILE is required");
    const int n_prompt = args.get_int("-p", 128), n_gen = args.get_int("-n", 64), reps = args.get_int("-r", 3);
    const int depth = args.get_int("-d", 0);
    if (n_prompt < 0 || n_gen < 0 || depth < 0 || reps < 1) throw UsageError("-p, -n and -d must be >= 0, -r >= 1");
    auto model = load_model(args, *model_path);
    SessionConfig sc = session_config(args, *model);
    sc.n_ctx = std::max<int64_t>(sc.n_ctx == 0 ? 0 : sc.n_ctx, depth + std::max(n_prompt, n_gen) + 1);
    sc.n_batch = std::max({n_prompt, depth, 1});

    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(model->config().n_vocab - 1));
    std::vector<double> pp, tg;
    // One session for every round: a device backend uploads the weights once (in the
    // warm-up round), not inside a timed prefill.
    Session s(*model, sc);
    const auto fill = [&] {  // the context of -d
        s.reset();
        if (depth == 0) return;
        std::vector<int32_t> ctx(static_cast<size_t>(depth));
        for (auto & t : ctx) t = token(rng);
        s.eval(ctx);
    };
    for (int r = 0; r < reps + 1; ++r) {  // the first round warms up (page faults, caches)
        if (n_prompt > 0) {
            fill();
            std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
            for (auto & t : prompt) t = token(rng);
            const auto t0 = Clock::now();
            s.eval(prompt);
            if (r > 0) pp.push_back(n_prompt / seconds_since(t0));
        }
        if (n_gen > 0) {
            fill();
            const auto t0 = Clock::now();
            for (int i = 0; i < n_gen; ++i) {
                const int32_t id = token(rng);
                s.eval(std::span<const int32_t>(&id, 1));
            }
            if (r > 0) tg.push_back(n_gen / seconds_since(t0));
        }
    }
    // The decode bound: the CPU's triad, or the device's own copy bandwidth.
    const bool cpu = sc.device == "cpu";
    const double gbps = cpu ? triad_gbps(sc.n_threads) : s.backend().memory_gbps();
    const double read = cpu ? weights_read_gbps(*model, sc.n_threads) : 0.0;
    const double bpt = bytes_per_token(*model);
    const double bound = gbps * 1e9 / bpt;
    const double read_bound = cpu ? read * 1e9 / bpt : 0.0;
    const std::string name = model->file().find("general.name") ? std::string(model->file().get_string("general.name")) : *model_path;
    if (args.has("--json")) {
        nlohmann::ordered_json j;
        j["model"] = name;
        j["device"] = sc.device;
        j["threads"] = sc.n_threads;
        j["depth"] = depth;
        if (!pp.empty()) j["pp"] = {{"tokens", n_prompt}, {"tokens_per_s", stats(pp).mean}, {"stddev", stats(pp).stddev}};
        if (!tg.empty()) j["tg"] = {{"tokens", n_gen}, {"tokens_per_s", stats(tg).mean}, {"stddev", stats(tg).stddev}};
        j["bytes_per_token"] = bpt;
        if (gbps > 0) {
            j["memory_bandwidth_gbps"] = gbps;
            j["tg_bound_tokens_per_s"] = bound;
        }
        if (cpu) j["weights_read_gbps"] = read;
        j["packed_weight_bytes"] = s.backend().derived_weight_bytes();
        std::puts(j.dump(2).c_str());
        return 0;
    }
    const std::string where = cpu ? std::to_string(sc.n_threads) + " threads" : sc.device;
    std::printf("| model | device | test | t/s |\n|---|---|---|---:|\n");
    const std::string at = depth > 0 ? " @ d" + std::to_string(depth) : "";  // llama-bench's notation
    if (!pp.empty()) {
        std::printf("| %s | %s | pp%d%s | %.2f ± %.2f |\n", name.c_str(), where.c_str(), n_prompt, at.c_str(), stats(pp).mean, stats(pp).stddev);
    }
    if (!tg.empty()) {
        std::printf("| %s | %s | tg%d%s | %.2f ± %.2f |\n", name.c_str(), where.c_str(), n_gen, at.c_str(), stats(tg).mean, stats(tg).stddev);
    }
    if (gbps <= 0) return 0;
    const std::string source = cpu ? "triad, " + std::to_string(sc.n_threads) + " threads"
                                   : sc.device + " device-to-device copy, bytes read + written";
    std::printf("\ndecode bound: %.1f GB/s (%s) / %.3f MB per token = %.1f t/s", gbps, source.c_str(), bpt / 1e6, bound);
    if (!tg.empty()) std::printf("; tg reaches %.0f%% of it", 100.0 * stats(tg).mean / bound);
    if (cpu) {
        std::printf("\nweights read-only (a sum over them in place, %d threads): %.1f GB/s = %.1f t/s", sc.n_threads, read,
                    read_bound);
        if (!tg.empty()) std::printf("; tg reaches %.0f%% of it", 100.0 * stats(tg).mean / read_bound);
    }
    if (const size_t packed = s.backend().derived_weight_bytes()) {
        std::printf("\npacked weights: %.1f MB, a copy in 16-row bands for the CPU kernels (TOYLLM_REPACK=0: none)",
                    static_cast<double>(packed) / 1e6);
    }
    std::printf("\n");
    return 0;
}

}  // namespace toyllm::cli
