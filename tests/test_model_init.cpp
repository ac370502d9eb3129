// Randomly initialized models: presets, the qwen2 path (biases, NeoX RoPE), and the
// determinism of the forward pass (runs, thread counts, batch neighbours).
#include "backend/cpu/repack.h"
#include "testing.h"

#include "toyllm/graph.h"
#include "toyllm/model_init.h"
#include "toyllm/session.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace {

using namespace toyllm;

ModelConfig tiny(Arch arch) {
    ModelConfig c;
    c.arch = arch;
    c.arch_name = arch == Arch::LLAMA ? "llama" : "qwen2";
    c.n_vocab = 97;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 96;
    c.n_ctx_train = 64;
    c.rope.mode = arch == Arch::LLAMA ? RopeMode::NORMAL : RopeMode::NEOX;
    c.rope.n_rot = 16;
    c.qkv_bias = arch == Arch::QWEN2;
    return c;
}

// Logits [n_vocab, T, B] of token rows `seqs` (B sequences of T tokens).
std::vector<float> logits_of(const Model & m, const std::vector<std::vector<int32_t>> & seqs, int n_threads) {
    Context ctx;
    const int64_t T = static_cast<int64_t>(seqs[0].size()), B = static_cast<int64_t>(seqs.size());
    Tensor * tokens = ctx.new_tensor(DType::I32, {T, B}, "tokens");
    Tensor * pos = ctx.new_tensor(DType::I32, {T}, "pos");
    ctx.alloc(tokens);
    ctx.alloc(pos);
    for (int64_t b = 0; b < B; ++b) std::copy(seqs[b].begin(), seqs[b].end(), tokens->data_as<int32_t>() + b * T);
    for (int64_t t = 0; t < T; ++t) pos->data_as<int32_t>()[t] = static_cast<int32_t>(t);
    Tensor * logits = m.forward(ctx, {.tokens = tokens, .positions = pos});
    Graph g;
    g.build_forward(logits);
    make_backend("cpu", {.n_threads = n_threads})->compute(g);
    return {logits->data_as<float>(), logits->data_as<float>() + logits->n_elements()};
}

TEST(ModelInit, PresetsHaveTheDocumentedShapes) {
    const auto b1b = model_preset("b1b");
    ASSERT_TRUE(b1b.has_value());
    EXPECT_EQ(b1b->n_embd, 2048);
    EXPECT_EQ(b1b->n_ff, 5632);
    EXPECT_EQ(b1b->n_layer, 22);
    EXPECT_EQ(b1b->n_head, 32);
    EXPECT_EQ(b1b->n_head_kv, 4);
    EXPECT_EQ(b1b->n_vocab, 32000);
    EXPECT_FALSE(b1b->tied_embeddings);
    const auto b135m = model_preset("b135m");
    ASSERT_TRUE(b135m.has_value());
    EXPECT_EQ(b135m->n_embd, 576);
    EXPECT_EQ(b135m->n_head_kv, 3);
    EXPECT_TRUE(b135m->tied_embeddings);
    EXPECT_FALSE(model_preset("gpt-5").has_value());
}

TEST(ModelInit, Qwen2RoundTripsAndIsDeterministic) {
    toyllm::testing::TempDir tmp;
    const std::string a = (tmp / "a.gguf").string(), b = (tmp / "b.gguf").string(), c = (tmp / "c.gguf").string();
    write_random_model(tiny(Arch::QWEN2), {.type = DType::F32, .seed = 5}, a);
    write_random_model(tiny(Arch::QWEN2), {.type = DType::F32, .seed = 5}, b);
    write_random_model(tiny(Arch::QWEN2), {.type = DType::F32, .seed = 6}, c);
    EXPECT_EQ(toyllm::testing::read_file_bytes(a), toyllm::testing::read_file_bytes(b));
    EXPECT_NE(toyllm::testing::read_file_bytes(a), toyllm::testing::read_file_bytes(c));

    const auto m = Model::load(a);
    EXPECT_EQ(m->config().arch, Arch::QWEN2);
    EXPECT_EQ(m->config().rope.mode, RopeMode::NEOX);
    EXPECT_TRUE(m->config().qkv_bias);
    EXPECT_NE(m->weights().blocks[1].bq, nullptr);

    const std::vector<std::vector<int32_t>> seq = {{1, 5, 9, 96, 0, 33, 7}};
    const auto l1 = logits_of(*m, seq, 1), l1b = logits_of(*m, seq, 1), l2 = logits_of(*m, seq, 2);
    ASSERT_EQ(l1.size(), 97u * 7);
    for (float x : l1) ASSERT_TRUE(std::isfinite(x));
    EXPECT_EQ(std::memcmp(l1.data(), l1b.data(), l1.size() * 4), 0);  // run to run
    EXPECT_EQ(std::memcmp(l1.data(), l2.data(), l1.size() * 4), 0);   // 1 and 2 threads
}

// A sequence gives the same logits, to the bit, alone and in a batch of four.
TEST(ModelInit, BatchNeighboursDoNotChangeASequence) {
    toyllm::testing::TempDir tmp;
    for (DType type : {DType::F32, DType::Q8_0}) {
        const std::string path = (tmp / "m.gguf").string();
        ModelConfig c = tiny(Arch::LLAMA);
        write_random_model(c, {.type = type, .seed = 1}, path);
        const auto m = Model::load(path);
        const std::vector<int32_t> s = {1, 2, 3, 4, 5, 6};
        const auto alone = logits_of(*m, {s}, 2);
        const auto batch = logits_of(*m, {{9, 8, 7, 6, 5, 4}, s, {1, 1, 1, 1, 1, 1}, {50, 60, 70, 80, 90, 96}}, 2);
        ASSERT_EQ(batch.size(), 4 * alone.size());
        EXPECT_EQ(std::memcmp(alone.data(), batch.data() + alone.size(), alone.size() * 4), 0) << dtype_name(type);
    }
}

// Every weight type runs packed on AVX-512 VNNI: a prompt's logits are the same bits fed
// at once and one token at a time (decode's matrix-vector products against prefill's
// several-row ones). Elsewhere F16, BF16 and the quantized types run the plain dot and
// tile kernels, which agree too; unpacked F32 prefill runs gemm, whose bits differ from
// decode's dot products, so F32 is checked only where it is packed.
TEST(ModelInit, DecodeAndPrefillAgreeForEveryWeightType) {
    toyllm::testing::TempDir tmp;
    std::vector<DType> types = {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
    if (toyllm::cpu::packed_kernel_available(DType::F32)) types.push_back(DType::F32);
    for (DType type : types) {
        const std::string path = (tmp / "m.gguf").string();
        ModelConfig c = tiny(Arch::LLAMA);
        c.n_embd = 256;  // Q4_K rows are multiples of 256
        c.head_dim = 64;
        c.n_ff = 512;
        write_random_model(c, {.type = type, .seed = 3}, path);
        const auto m = Model::load(path);
        const std::vector<int32_t> ids = {1, 5, 9, 33, 2, 96, 40};
        Session whole(*m, {.n_ctx = 16, .n_threads = 2});
        const auto want = whole.eval(ids, true);
        Session one(*m, {.n_ctx = 16, .n_threads = 2});
        std::vector<float> got;
        for (int32_t id : ids) {
            const auto l = one.eval(std::span<const int32_t>(&id, 1), true);
            got.insert(got.end(), l.begin(), l.end());
        }
        ASSERT_EQ(got.size(), want.size());
        for (float x : want) ASSERT_TRUE(std::isfinite(x)) << dtype_name(type);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0) << dtype_name(type);
    }
}

TEST(ModelInit, RejectsInconsistentShapes) {
    toyllm::testing::TempDir tmp;
    ModelConfig c = tiny(Arch::LLAMA);
    c.n_head_kv = 3;
    EXPECT_THROW(write_random_model(c, {}, (tmp / "x.gguf").string()), Error);
}

}  // namespace
