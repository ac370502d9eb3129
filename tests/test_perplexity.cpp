// toyllm perplexity against a computation written here: the same chunks (non-overlapping,
// n_ctx tokens, BOS first), the same scored positions (the second half of each chunk),
// with the logits of one whole-chunk forward per chunk and log-softmax in double. The
// command evaluates through the KV cache in batches of --batch tokens.
#include "model_testing.h"

#include "toyllm/tokenizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>

namespace {

using namespace toyllm;
using namespace toyllm::testing;
namespace fs = std::filesystem;

struct Perplexity {
    std::vector<double> running;  // after each chunk
    double ppl = 0;
    double err = 0;               // the +/- of the final estimate
};

Perplexity reference_perplexity(const Model & m, const std::string & text, int64_t n_ctx) {
    const auto tok = Tokenizer::from_gguf(m.file());
    const std::vector<TokenId> tokens = tok->encode(text);
    const int64_t n_vocab = m.config().n_vocab, first = n_ctx / 2;
    Perplexity p;
    double nll = 0, nll2 = 0;
    int64_t count = 0;
    for (int64_t c = 0; c < static_cast<int64_t>(tokens.size()) / n_ctx; ++c) {
        std::vector<int32_t> ids(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
        ids[0] = tok->vocab().bos;
        const std::vector<float> logits = prompt_logits(m, ids, 1);
        for (int64_t j = first; j < n_ctx - 1; ++j) {
            const float * l = logits.data() + j * n_vocab;
            double max = l[0], sum = 0;
            for (int64_t i = 0; i < n_vocab; ++i) max = std::max(max, static_cast<double>(l[i]));
            for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(l[i] - max);
            const double v = std::log(sum) + max - l[ids[static_cast<size_t>(j + 1)]];
            nll += v;
            nll2 += v * v;
            ++count;
        }
        p.running.push_back(std::exp(nll / static_cast<double>(count)));
    }
    const double mean = nll / static_cast<double>(count);
    p.ppl = std::exp(mean);
    p.err = std::sqrt((nll2 / static_cast<double>(count) - mean * mean) / static_cast<double>(count - 1)) * p.ppl;
    return p;
}

Perplexity parse_output(const std::string & out) {
    Perplexity p;
    const std::regex chunk(R"(\[(\d+)\]([0-9.]+),)"), final(R"(Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+))");
    for (auto it = std::sregex_iterator(out.begin(), out.end(), chunk); it != std::sregex_iterator(); ++it) {
        p.running.push_back(std::stod((*it)[2]));
    }
    std::smatch m;
    if (std::regex_search(out, m, final)) p.ppl = std::stod(m[1]), p.err = std::stod(m[2]);
    return p;
}

// The four texts llama2.c printed for the greedy reference: about 800 tokens.
std::string reference_text(const fs::path & ref_path) {
    const nlohmann::json ref = read_json(ref_path);
    std::string text;
    for (const auto & [name, c] : ref["cases"].items()) text += c["stdout"].get<std::string>() + "\n";
    return text;
}

TEST(Perplexity, MatchesAnIndependentComputation) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    TempDir tmp;
    const std::string text = reference_text(ref_path);
    std::ofstream(tmp / "text.txt", std::ios::binary) << text;
    const auto m = Model::load(model.string());
    for (int n_ctx : {128, 64}) {
        const CliRun r = run_toyllm("perplexity -m " + model.string() + " -f " + (tmp / "text.txt").string() + " --ctx " +
                                    std::to_string(n_ctx) + " --batch 48 --threads 2");
        ASSERT_EQ(r.status, 0) << r.err;
        const Perplexity got = parse_output(r.out), want = reference_perplexity(*m, text, n_ctx);
        ASSERT_EQ(got.running.size(), want.running.size()) << r.out;
        ASSERT_GE(want.running.size(), 2u);
        for (size_t i = 0; i < want.running.size(); ++i) EXPECT_NEAR(got.running[i], want.running[i], 1e-4 * want.running[i]) << "chunk " << i + 1;
        // Printed with 4 and 5 decimals, as llama.cpp prints them.
        EXPECT_NEAR(got.ppl, want.ppl, 1e-4 * want.ppl);
        EXPECT_NEAR(got.err, want.err, std::max(1e-4 * want.err, 1e-5));
        // --chunks stops early; the chunks it scores are the same.
        const CliRun two = run_toyllm("perplexity -m " + model.string() + " -f " + (tmp / "text.txt").string() + " --ctx " +
                                      std::to_string(n_ctx) + " --chunks 2 --threads 1");
        ASSERT_EQ(two.status, 0) << two.err;
        const Perplexity first_two = parse_output(two.out);
        ASSERT_EQ(first_two.running.size(), 2u);
        EXPECT_NEAR(first_two.running[1], want.running[1], 1e-4 * want.running[1]);
        std::printf("stories260K, --ctx %d: %zu chunks, PPL = %.4f +/- %.5f (here: %.6f +/- %.6f)\n", n_ctx, got.running.size(), got.ppl,
                    got.err, want.ppl, want.err);
    }
}

// Each: a non-zero exit status and one line on stderr that contains `needle`.
void expect_error(const std::string & args, const std::string & needle) {
    const CliRun r = run_toyllm(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(Perplexity, BadInputsAreOneLineErrors) {
    TOYLLM_REQUIRE_SHARED(model, "models/stories260K/stories260K.gguf");
    TempDir tmp;
    const std::string m = "perplexity -m " + model.string();
    std::ofstream(tmp / "short.txt") << "Once upon a time there was a cat.";
    expect_error(m + " -f " + (tmp / "short.txt").string() + " --ctx 64", "tokenizes to 11 tokens; perplexity with a context of 64 needs at least 128");
    expect_error(m + " -f " + (tmp / "missing.txt").string(), "No such file or directory");
    expect_error(m, "-f TEXT is required");
    expect_error(m + " -f " + (tmp / "short.txt").string() + " --ctx 2", "--ctx must be at least 4");
    expect_error(m + " -f " + (tmp / "short.txt").string() + " --batch 0", "--batch must be >= 1");
}

}  // namespace
