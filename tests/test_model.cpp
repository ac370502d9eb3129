// The Llama forward pass against llama2.c's run.c and llama.cpp on stories260K:
// logits to 1e-4 (f32), greedy generations token for token.
#include "backend/cpu/repack.h"
#include "model_testing.h"

#include "toyllm/model.h"
#include "toyllm/session.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

namespace {

using namespace toyllm;
using namespace toyllm::testing;
using nlohmann::json;

TEST(Model, ConfigOfStories260K) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    const auto m = Model::load(path.string());
    const ModelConfig & c = m->config();
    // The checkpoint's header, as greedy_reference.json describes it.
    EXPECT_EQ(c.n_embd, 64);
    EXPECT_EQ(c.n_layer, 5);
    EXPECT_EQ(c.n_head, 8);
    EXPECT_EQ(c.n_head_kv, 4);
    EXPECT_EQ(c.n_vocab, 512);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.rope.mode, RopeMode::NORMAL);
    EXPECT_FALSE(c.qkv_bias);
}

TEST(Model, PromptLogitsMatchLlama2c) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    const json ref = read_json(ref_path);
    const auto m = Model::load(path.string());
    for (int n_threads : {1, 2}) EXPECT_LT(llama2c_logit_error(*m, ref, n_threads), 1e-4) << "threads " << n_threads;
}

TEST(Model, GreedyGenerationMatchesLlama2c) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    auto m = Model::load(path.string());
    expect_llama2c_greedy(*m, read_json(ref_path));
}

// Softmax of logits in double.
std::vector<double> probs(const float * l, int64_t n) {
    std::vector<double> p(static_cast<size_t>(n));
    double m = l[0], s = 0;
    for (int64_t i = 1; i < n; ++i) m = std::max(m, static_cast<double>(l[i]));
    for (int64_t i = 0; i < n; ++i) s += p[static_cast<size_t>(i)] = std::exp(l[i] - m);
    for (double & x : p) x /= s;
    return p;
}

// How closely our logits follow llama.cpp's reference run over its prompt positions.
struct Tracking {
    double mean_kl = 0;       // mean KL(llama.cpp || toyllm)
    double max_abs_diff = 0;  // largest |logit difference|
    int n_pos = 0, n_disagree = 0;  // positions, and those whose top-1 tokens differ
};

// Files written by llama.cpp against its reference logits, with our KV cache in f32 (our
// own attention order) or f16 (llama.cpp's cache type and attention order).
// Skips the test (r untouched) when a reference is missing.
void track_llama_cpp(const char * model_file, const char * ref_file, DType cache_type, Tracking & r) {
    TOYLLM_REQUIRE_SHARED(path, std::string("models/stories260K/") + model_file);
    TOYLLM_REQUIRE_SHARED(ref_path, std::string("testdata/stories260K/") + ref_file);
    const json ref = read_json(ref_path);
    auto m = Model::load(path.string());
    const int64_t V = m->config().n_vocab;
    double kl_sum = 0;
    for (const auto & c : ref["cases"]) {
        const auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
        Session s(*m, {.n_ctx = 64, .n_threads = 2, .cache_type = cache_type});
        const auto logits = s.eval(ids, true);
        for (size_t t = 0; t < ids.size(); ++t) {
            const auto want = c["prompt_logits"][t].get<std::vector<float>>();
            const auto p = probs(want.data(), V), q = probs(&logits[t * V], V);
            for (int64_t i = 0; i < V; ++i) {
                kl_sum += p[static_cast<size_t>(i)] * std::log(p[static_cast<size_t>(i)] / q[static_cast<size_t>(i)]);
                r.max_abs_diff = std::max(r.max_abs_diff, static_cast<double>(std::fabs(logits[t * V + static_cast<size_t>(i)] - want[static_cast<size_t>(i)])));
            }
            ++r.n_pos;
            r.n_disagree += argmax(&logits[t * V], V) != argmax(want.data(), V);
        }
    }
    r.mean_kl = kl_sum / r.n_pos;
    std::printf("%s, %s cache: mean KL(llama.cpp || toyllm) = %.3g, max |dlogit| %.3g over %d positions, top-1 agreement %d/%d\n",
                model_file, std::string(dtype_name(cache_type)).c_str(), r.mean_kl, r.max_abs_diff, r.n_pos, r.n_pos - r.n_disagree, r.n_pos);
}

// The inference issue asks for mean KL < 5e-4 (Q8_0) and < 1e-3 (Q4_0) with the top-1
// tokens equal. With the f16 cache, as llama.cpp runs, Q8_0 logits equal llama.cpp's to the
// printed digits (measured KL 4e-16 to 7e-14) and Q4_0's track them (1.1e-4: llama.cpp
// repacks Q4_0 weights for its own kernel order). Where our Q4_0 weights run packed
// (AVX-512 VNNI or AVX2, backend/cpu/repack.h) each block dot is summed as llama.cpp's
// repacked kernel sums it, and Q4_0 equals llama.cpp's to the printed digits too (KL 1e-13).
TEST(Model, Q8_0WithF16CacheMatchesLlamaCpp) {
    Tracking r;
    track_llama_cpp("stories260K-q8_0.gguf", "llamacpp_reference_q8_0.json", DType::F16, r);
    if (::testing::Test::IsSkipped()) return;
    EXPECT_LT(r.mean_kl, 5e-4);
    EXPECT_LT(r.max_abs_diff, 1e-4);
    EXPECT_EQ(r.n_disagree, 0);
}

TEST(Model, Q4_0WithF16CacheTracksLlamaCpp) {
    Tracking r;
    track_llama_cpp("stories260K-q4_0.gguf", "llamacpp_reference_q4_0.json", DType::F16, r);
    if (::testing::Test::IsSkipped()) return;
    EXPECT_LT(r.mean_kl, 1e-3);
    EXPECT_EQ(r.n_disagree, 0);
    if (toyllm::cpu::packed_kernel_available(DType::Q4_0)) {
        EXPECT_LT(r.max_abs_diff, 1e-4) << "packed Q4_0 sums as llama.cpp's repacked kernel";
    }
}

TEST(Model, F32WithF16CacheTracksLlamaCpp) {
    Tracking r;
    track_llama_cpp("stories260K.gguf", "llamacpp_reference_f32.json", DType::F16, r);
    if (::testing::Test::IsSkipped()) return;
    EXPECT_LT(r.mean_kl, 1e-6);
    EXPECT_EQ(r.n_disagree, 0);
}

// A prompt's logits are the same bits fed at once, in chunks of 3 or token by token (one
// query per head: decode's own attention path), and with 1 or 2 threads.
std::vector<float> expect_logits_independent_of_chunks(Model & m, DType cache_type) {
    const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 26, 263, 1117 % 512, 42, 7};
    Session whole(m, {.n_ctx = 32, .n_threads = 2, .cache_type = cache_type});
    const auto want = whole.eval(ids, true);
    EXPECT_EQ(want.size(), ids.size() * static_cast<size_t>(m.config().n_vocab));
    for (const auto & [n_batch, n_threads] : {std::pair{3, 2}, std::pair{1, 1}, std::pair{1, 2}, std::pair{256, 1}}) {
        Session s(m, {.n_ctx = 32, .n_batch = n_batch, .n_threads = n_threads, .cache_type = cache_type});
        const auto got = s.eval(ids, true);
        EXPECT_EQ(got.size(), want.size());
        if (got.size() != want.size()) break;
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << dtype_name(cache_type) << " cache, n_batch " << n_batch << ", threads " << n_threads;
    }
    // One eval per token: the first builds the step's graph, the others rerun it (cache
    // writes moved, cache views lengthened); after a reset it starts again at position 0.
    Session one(m, {.n_ctx = 32, .n_threads = 2, .cache_type = cache_type});
    std::vector<float> got;
    for (int32_t id : ids) {
        const auto l = one.eval(std::span<const int32_t>(&id, 1), true);
        got.insert(got.end(), l.begin(), l.end());
    }
    EXPECT_EQ(one.n_graphs_built(), 1);
    EXPECT_EQ(got.size(), want.size());
    if (got.size() == want.size()) {
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << "one eval per token";
    }
    one.reset();
    const auto first = one.eval(std::span<const int32_t>(ids.data(), 1), true);
    EXPECT_EQ(one.n_graphs_built(), 1);
    EXPECT_EQ(std::memcmp(first.data(), want.data(), first.size() * sizeof(float)), 0) << "after reset";
    return want;
}

// The f32 cache: gemm's order per output element does not depend on how many query rows
// (heads or positions) go through it at once, and masked scores are exact zeros.
TEST(Model, F32CacheLogitsDoNotDependOnChunksOrThreads) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K-q8_0.gguf");
    auto m = Model::load(path.string());
    expect_logits_independent_of_chunks(*m, DType::F32);
}

// With the f16 cache each query row attends on its own.
TEST(Model, F16CacheLogitsDoNotDependOnChunksOrThreads) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K-q8_0.gguf");
    auto m = Model::load(path.string());
    const std::vector<int32_t> ids = {1, 403, 407, 261, 378, 26, 263, 1117 % 512, 42, 7};
    const int64_t V = m->config().n_vocab;
    const auto want = expect_logits_independent_of_chunks(*m, DType::F16);
    // The f16 cache changes the numbers a little, not the model: same argmax at every position.
    Session f32(*m, {.n_ctx = 32, .n_threads = 2});
    const auto ref = f32.eval(ids, true);
    for (size_t t = 0; t < ids.size(); ++t) EXPECT_EQ(argmax(&want[t * V], V), argmax(&ref[t * V], V)) << "position " << t;
    EXPECT_THROW(m->make_cache(8, 1, DType::Q8_0), Error);
    EXPECT_THROW(Session(*m, {.device = "cuda", .cache_type = DType::F16}), Error);
}

// With our f32 cache, attention is summed in our own order and rounds nothing to f16; the
// flipped 8-bit activation roundings that follow leave Q8_0 at 8.8e-4 and Q4_0 at 6.7e-4, each
// with one top-1 disagreement at a near tie ("The cat sat on the", position 2: llama.cpp's
// top-2 gap is 0.07). These bounds pin that.
TEST(Model, QuantizedWithF32CacheTrackLlamaCpp) {
    for (const auto & [file, ref] : {std::pair{"stories260K-q8_0.gguf", "llamacpp_reference_q8_0.json"},
                                     std::pair{"stories260K-q4_0.gguf", "llamacpp_reference_q4_0.json"}}) {
        Tracking r;
        track_llama_cpp(file, ref, DType::F32, r);
        if (::testing::Test::IsSkipped()) return;
        EXPECT_LT(r.mean_kl, 1e-3) << file;
        EXPECT_LE(r.n_disagree, 1) << file;
    }
}

TEST(Model, F32WithF32CacheTracksLlamaCpp) {
    Tracking r;
    track_llama_cpp("stories260K.gguf", "llamacpp_reference_f32.json", DType::F32, r);
    if (::testing::Test::IsSkipped()) return;
    EXPECT_LT(r.mean_kl, 1e-5);
    EXPECT_EQ(r.n_disagree, 0);
}

}  // namespace
