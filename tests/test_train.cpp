// Training: whole-model gradients against finite differences (llama and qwen2), the LoRA
// identities (B = 0 leaves the model unchanged; adapter gradients follow from the
// full-weight gradient; exported and merged adapters give the training-time logits), the
// base staying untouched, overfitting one batch, the schedule and the data order.
#include "testing.h"

#include "toyllm/dataset.h"
#include "toyllm/gguf_tensors.h"
#include "toyllm/lora.h"
#include "toyllm/model_init.h"
#include "toyllm/rng.h"
#include "toyllm/train.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace toyllm {
namespace {

using testing::TempDir;

ModelConfig tiny_config(Arch arch) {
    ModelConfig c;
    c.arch = arch;
    c.arch_name = arch == Arch::LLAMA ? "llama" : "qwen2";
    c.n_vocab = kByteVocabSize;
    c.n_embd = 16;
    c.n_ff = 24;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 4;
    c.n_ctx_train = 64;
    c.rope.mode = arch == Arch::LLAMA ? RopeMode::NORMAL : RopeMode::NEOX;
    c.rope.n_rot = 4;
    c.rope.freq_base = 10000.0f;
    c.qkv_bias = arch == Arch::QWEN2;
    c.tied_embeddings = arch == Arch::QWEN2;  // one of each
    return c;
}

std::string write_tiny(const TempDir & dir, Arch arch, DType type = DType::F32, float init_std = 0.2f) {
    const std::string path = (dir / (std::string(arch == Arch::LLAMA ? "llama" : "qwen2") + "-" + std::string(dtype_name(type)) + ".gguf")).string();
    write_random_model(tiny_config(arch), {.type = type, .seed = 7, .init_std = init_std, .byte_tokenizer = true}, path);
    return path;
}

// The mean cross-entropy of fixed random tokens through a model, with its backward.
struct LossProbe {
    Context ctx;
    Tensor * logits = nullptr;
    Tensor * loss = nullptr;
    Graph graph;
    std::unique_ptr<Backend> backend = make_backend("cpu", {.n_threads = 2});

    LossProbe(const Model & m, int64_t T, int64_t B, bool backward, uint64_t seed = 3) {
        Tensor * tokens = ctx.new_tensor(DType::I32, {T, B});
        Tensor * targets = ctx.new_tensor(DType::I32, {T, B});
        Tensor * pos = ctx.new_tensor(DType::I32, {T});
        for (Tensor * t : {tokens, targets, pos}) ctx.alloc(t);
        Rng rng(seed);
        for (int64_t i = 0; i < T * B; ++i) {
            tokens->data_as<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(m.config().n_vocab)));
            targets->data_as<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(m.config().n_vocab)));
        }
        for (int64_t t = 0; t < T; ++t) pos->data_as<int32_t>()[t] = static_cast<int32_t>(t);
        logits = m.forward(ctx, {.tokens = tokens, .positions = pos});
        loss = cross_entropy(ctx, logits, targets);
        set_output(loss);
        graph.build_forward(loss);
        if (backward) graph.build_backward(ctx, loss);
    }
    double run() {
        backend->compute(graph);
        return loss->data_as<float>()[0];
    }
    std::vector<float> logits_values() const { return {logits->data_as<float>(), logits->data_as<float>() + logits->n_elements()}; }
};

std::vector<float> values(const Tensor * t) { return {t->data_as<float>(), t->data_as<float>() + t->n_elements()}; }

// Every param's gradient at sampled elements against central differences (Richardson-
// extrapolated, so the step's truncation error is O(h^4)). Sampled: the 3 elements with
// the largest gradient of each tensor, checked by relative error, and 3 random ones,
// whose gradient may sit at f32 noise level, checked against 1e-3 x the tensor's largest.
// A tensor whose largest gradient is itself tiny (Qwen2's K bias: RoPE turns it into a
// nearly constant shift of the scores) is checked by the absolute bound only.
void check_model_gradients(Arch arch) {
    TempDir dir;
    auto model = Model::load(write_tiny(dir, arch));
    const std::vector<Tensor *> params = model->make_trainable();
    LossProbe probe(*model, 6, 2, true);
    probe.graph.zero_grads();
    probe.run();
    std::vector<std::vector<float>> grads;  // before the finite differences add to them
    for (Tensor * p : params) {
        ASSERT_NE(p->grad, nullptr) << p->name;
        grads.push_back(values(p->grad));
    }
    size_t n_checked = 0;
    double worst = 0.0;
    Rng rng(11);
    for (size_t pi = 0; pi < params.size(); ++pi) {
        Tensor * p = params[pi];
        const std::vector<float> & g = grads[pi];
        std::vector<size_t> order(g.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::partial_sort(order.begin(), order.begin() + 3, order.end(), [&](size_t a, size_t b) { return std::fabs(g[a]) > std::fabs(g[b]); });
        const double gmax = std::fabs(g[order[0]]);
        ASSERT_GT(gmax, 1e-6) << p->name << ": no gradient";
        std::vector<size_t> sample(order.begin(), order.begin() + 3);
        for (int k = 0; k < 3; ++k) sample.push_back(static_cast<size_t>(rng.below(g.size())));
        for (size_t si = 0; si < sample.size(); ++si) {
            const size_t i = sample[si];
            float * w = p->data_as<float>() + i;
            const float w0 = *w;
            auto diff = [&](float h) {
                *w = w0 + h;
                const double lp = probe.run();
                *w = w0 - h;
                const double lm = probe.run();
                *w = w0;
                return (lp - lm) / (2.0 * static_cast<double>(h));
            };
            const float h = 2e-2f;
            const double fd = (4.0 * diff(h / 2) - diff(h)) / 3.0;
            const double err = std::fabs(fd - g[i]);
            // Below 1e-2 a gradient nears the noise of f32 differences (about 1e-5 here):
            // such elements are held to an absolute bound instead.
            const double mag = std::max(std::fabs(fd), std::fabs(static_cast<double>(g[i])));
            if (si < 3 && mag >= 1e-2) {
                const double rel = err / mag;
                worst = std::max(worst, rel);
                EXPECT_LT(rel, 1e-3) << p->name << "[" << i << "]: analytic " << g[i] << ", numeric " << fd;
            } else {
                EXPECT_LT(err, std::max(1e-3 * gmax, 5e-5)) << p->name << "[" << i << "]: analytic " << g[i] << ", numeric " << fd;
            }
            ++n_checked;
        }
    }
    std::printf("%s: %zu params, %zu elements checked, worst relative error of the largest gradients %.2e\n",
                arch == Arch::LLAMA ? "llama" : "qwen2", params.size(), n_checked, worst);
}

TEST(TrainGradients, WholeLlamaModelMatchesFiniteDifferences) { check_model_gradients(Arch::LLAMA); }
TEST(TrainGradients, WholeQwen2ModelMatchesFiniteDifferences) { check_model_gradients(Arch::QWEN2); }

TEST(Lora, ZeroBLeavesLogitsBitIdentical) {
    TempDir dir;
    for (DType type : {DType::F32, DType::Q8_0}) {
        const std::string path = write_tiny(dir, Arch::LLAMA, type);
        auto base = Model::load(path);
        LossProbe p0(*base, 5, 2, false);
        p0.run();
        auto adapted = Model::load(path);
        add_lora(*adapted, {.rank = 4, .alpha = 8.0f}, 1);
        LossProbe p1(*adapted, 5, 2, false);
        p1.run();
        const std::vector<float> a = p0.logits_values(), b = p1.logits_values();
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << dtype_name(type);
    }
}

// Fills the adapters' B with random values so that gradients and exports are not trivial.
void randomize_b(const std::vector<Tensor *> & params, uint64_t seed) {
    Rng rng(seed);
    for (Tensor * t : params) {
        if (!t->name.ends_with(".lora_b")) continue;
        for (int64_t i = 0; i < t->n_elements(); ++i) t->data_as<float>()[i] = static_cast<float>(rng.uniform() - 0.5) * 0.2f;
    }
}

// dL/dA = s B^T dL/dW and dL/dB = s dL/dW A^T, with dL/dW the gradient of the merged
// weight W + s B A (GGUF layout: W[k + n_in o], A[k + n_in j], B[j + r o]).
TEST(Lora, AdapterGradientsFollowFromTheFullWeightGradient) {
    TempDir dir;
    const std::string path = write_tiny(dir, Arch::LLAMA);
    const LoraConfig cfg{.rank = 3, .alpha = 6.0f, .targets = {LoraTarget::Q, LoraTarget::UP, LoraTarget::DOWN}};
    auto adapted = Model::load(path);
    const std::vector<Tensor *> lp = add_lora(*adapted, cfg, 5);
    randomize_b(lp, 6);
    LossProbe pa(*adapted, 6, 2, true);
    pa.graph.zero_grads();
    pa.run();

    const std::string merged_path = (dir / "merged.gguf").string();
    merge_lora(*adapted, merged_path);
    auto merged = Model::load(merged_path);
    merged->make_trainable();
    LossProbe pm(*merged, 6, 2, true);
    pm.graph.zero_grads();
    pm.run();

    const float s = cfg.alpha / static_cast<float>(cfg.rank);
    double worst = 0.0;
    for (int64_t il = 0; il < 2; ++il) {
        for (LoraTarget t : cfg.targets) {
            const LoraAdapter & l = adapted->weights().blocks[static_cast<size_t>(il)].lora[static_cast<size_t>(t)];
            const Tensor * w = merged->weights().blocks[static_cast<size_t>(il)].matrix(t);
            const int64_t n_in = w->ne[0], n_out = w->ne[1], r = cfg.rank;
            const std::vector<float> gw = values(w->grad), A = values(l.a), B = values(l.b), ga = values(l.a->grad), gb = values(l.b->grad);
            double scale_a = 0.0, scale_b = 0.0;
            for (float v : ga) scale_a = std::max(scale_a, static_cast<double>(std::fabs(v)));
            for (float v : gb) scale_b = std::max(scale_b, static_cast<double>(std::fabs(v)));
            for (int64_t k = 0; k < n_in; ++k) {
                for (int64_t j = 0; j < r; ++j) {
                    double want = 0.0;
                    for (int64_t o = 0; o < n_out; ++o) want += s * B[static_cast<size_t>(j + r * o)] * gw[static_cast<size_t>(k + n_in * o)];
                    const double err = std::fabs(want - ga[static_cast<size_t>(k + n_in * j)]) / scale_a;
                    worst = std::max(worst, err);
                    ASSERT_LT(err, 1e-4) << lora_base_name(il, t) << " dA[" << k << "," << j << "]";
                }
            }
            for (int64_t j = 0; j < r; ++j) {
                for (int64_t o = 0; o < n_out; ++o) {
                    double want = 0.0;
                    for (int64_t k = 0; k < n_in; ++k) want += s * A[static_cast<size_t>(k + n_in * j)] * gw[static_cast<size_t>(k + n_in * o)];
                    const double err = std::fabs(want - gb[static_cast<size_t>(j + r * o)]) / scale_b;
                    worst = std::max(worst, err);
                    ASSERT_LT(err, 1e-4) << lora_base_name(il, t) << " dB[" << j << "," << o << "]";
                }
            }
        }
    }
    std::printf("worst error of dL/dA, dL/dB against the full-weight identity: %.2e of the largest entry\n", worst);
}

// One document of n_tokens random byte tokens between BOS and EOS, no validation split.
Dataset random_dataset(int64_t n_ctx, int64_t n_tokens, uint64_t seed) {
    std::vector<TokenId> doc;
    Rng rng(seed);
    for (int64_t i = 0; i < n_tokens; ++i) doc.push_back(static_cast<TokenId>(3 + rng.below(256)));
    return Dataset::from_documents({doc}, 1, 2, {.n_ctx = n_ctx, .val_fraction = 0.0, .seed = seed});
}

TEST(Lora, TrainingLeavesTheBaseFileBytesUntouchedAndExportsMatch) {
    TempDir dir;
    const std::string path = write_tiny(dir, Arch::LLAMA, DType::Q8_0);
    const std::vector<uint8_t> before = testing::read_file_bytes(path);
    const LoraConfig cfg{.rank = 2, .alpha = 4.0f, .per_head_q = true};
    auto model = Model::load(path);
    const std::vector<Tensor *> params = add_lora(*model, cfg, 9);
    const Dataset data = random_dataset(16, 32, 1);
    Trainer tr(*model, params, data, {.steps = 5, .batch = 3, .warmup = 0, .lr = 1e-2f});
    for (int i = 0; i < 5; ++i) tr.step();
    // The weights the model computes with are still the file's bytes, and so is the file.
    for (const GgufTensorInfo & ti : model->file().tensors()) {
        const std::string name(ti.name);
        const Tensor * w = nullptr;
        for (const BlockWeights & b : model->weights().blocks) {
            for (size_t t = 0; t < kLoraTargets; ++t) {
                if (b.matrix(static_cast<LoraTarget>(t))->name == name) w = b.matrix(static_cast<LoraTarget>(t));
            }
        }
        if (w == nullptr) continue;
        EXPECT_EQ(w->type, ti.type);
        EXPECT_EQ(std::memcmp(w->data, model->file().tensor_data(ti).data(), ti.n_bytes), 0) << name;
    }
    EXPECT_EQ(testing::read_file_bytes(path), before);

    // The exported per-head adapter (one of rank n_head * r) gives the training-time logits.
    LossProbe trained(*model, 7, 2, false);
    trained.run();
    const std::string adapter = (dir / "adapter.gguf").string();
    write_lora_gguf(*model, cfg, adapter);
    auto reloaded = Model::load(path);
    load_lora(*reloaded, adapter);
    EXPECT_EQ(reloaded->weights().blocks[0].lora[0].a->ne[1], cfg.rank * tiny_config(Arch::LLAMA).n_head);
    LossProbe exported(*reloaded, 7, 2, false);
    exported.run();
    auto base = Model::load(path);
    LossProbe untrained(*base, 7, 2, false);
    untrained.run();
    EXPECT_NE(untrained.logits_values(), trained.logits_values()) << "the adapters did not train";
    const std::vector<float> a = trained.logits_values(), b = exported.logits_values();
    double max_diff = 0.0;
    for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
    std::printf("per-head training logits vs exported adapter: max |diff| %.3g\n", max_diff);
    EXPECT_LT(max_diff, 1e-5);
}

TEST(Lora, MergedExportMatchesUnmergedAdapter) {
    TempDir dir;
    const std::string path = write_tiny(dir, Arch::QWEN2);
    auto model = Model::load(path);
    randomize_b(add_lora(*model, {.rank = 4, .alpha = 8.0f}, 3), 4);
    const std::string adapter = (dir / "adapter.gguf").string(), merged = (dir / "merged.gguf").string();
    write_lora_gguf(*model, {.rank = 4, .alpha = 8.0f}, adapter);
    auto unmerged = Model::load(path);
    load_lora(*unmerged, adapter);
    merge_lora(*unmerged, merged);
    auto m = Model::load(merged);
    LossProbe pu(*unmerged, 7, 2, false), pm(*m, 7, 2, false);
    pu.run();
    pm.run();
    const std::vector<float> a = pu.logits_values(), b = pm.logits_values();
    double max_diff = 0.0;
    for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
    std::printf("unmerged vs merged logits: max |diff| %.3g\n", max_diff);
    EXPECT_LT(max_diff, 1e-5);
}

TEST(Lora, BadAdaptersAreClearErrors) {
    TempDir dir;
    const std::string llama = write_tiny(dir, Arch::LLAMA), qwen = write_tiny(dir, Arch::QWEN2);
    auto m = Model::load(llama);
    EXPECT_THROW(load_lora(*m, llama), Error);  // a model, not an adapter
    auto q = Model::load(qwen);
    add_lora(*q, {.rank = 2}, 1);
    const std::string adapter = (dir / "qwen-adapter.gguf").string();
    write_lora_gguf(*q, {.rank = 2}, adapter);
    try {
        load_lora(*m, adapter);
        FAIL() << "a qwen2 adapter loaded onto a llama model";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("qwen2"), std::string::npos) << e.what();
    }
    EXPECT_THROW(parse_lora_targets("q,x"), Error);
    EXPECT_EQ(parse_lora_targets("down,q,q").size(), 2u);
}

TEST(Train, OverfitsOneSmallBatch) {
    TempDir dir;
    auto model = Model::load(write_tiny(dir, Arch::LLAMA, DType::F32, 0.05f));
    const Dataset data = random_dataset(16, 32, 2);  // 34 tokens, 3 sequences: the whole corpus is one batch
    ASSERT_EQ(data.n_train(), 3);
    Trainer tr(*model, model->make_trainable(), data, {.steps = 150, .batch = 3, .warmup = 5, .lr = 1e-2f, .min_lr_ratio = 1.0f});
    double loss = 0.0;
    for (int i = 0; i < 150; ++i) loss = tr.step().loss;
    std::printf("loss after 150 steps on one batch: %.4f\n", loss);
    EXPECT_LT(loss, 0.05);
}

TEST(Train, LearningRateWarmsUpThenDecaysByCosine) {
    const TrainOptions o{.steps = 110, .warmup = 10, .lr = 1.0f, .min_lr_ratio = 0.1f};
    EXPECT_FLOAT_EQ(learning_rate(o, 0), 0.1f);
    EXPECT_FLOAT_EQ(learning_rate(o, 9), 1.0f);
    EXPECT_FLOAT_EQ(learning_rate(o, 10), 1.0f);
    EXPECT_NEAR(learning_rate(o, 10 + 99 / 2), 0.55f + 0.45f * std::cos(M_PI * 49.0 / 99.0), 1e-6);
    EXPECT_FLOAT_EQ(learning_rate(o, 109), 0.1f);
}

TEST(Train, MicroBatchesAccumulateToTheFullBatchGradient) {
    TempDir dir;
    const std::string path = write_tiny(dir, Arch::LLAMA);
    const Dataset data = random_dataset(8, 31, 3);  // 33 tokens: 4 full sequences, no padding
    std::vector<std::vector<float>> weights;
    for (int64_t mb : {4, 2, 1}) {
        auto model = Model::load(path);
        Trainer tr(*model, model->make_trainable(), data, {.steps = 2, .batch = 4, .micro_batch = mb, .warmup = 0, .lr = 1e-3f});
        tr.step();
        tr.step();
        weights.push_back(values(tr.params()[1]));
    }
    for (size_t k = 1; k < weights.size(); ++k) {
        for (size_t i = 0; i < weights[0].size(); ++i) ASSERT_NEAR(weights[k][i], weights[0][i], 1e-5) << i;
    }
}

TEST(Dataset, PacksDocumentsAndShufflesByEpoch) {
    std::vector<std::vector<TokenId>> docs = {{10, 11, 12}, {20, 21, 22, 23}};
    // Stream: 1 10 11 12 2 1 20 21 22 23 2 (11 tokens) -> sequences of 4 predicting 10 tokens: 3.
    const Dataset d = Dataset::from_documents(docs, 1, 2, {.n_ctx = 4, .val_fraction = 0.3, .seed = 5});
    EXPECT_EQ(d.n_tokens(), 11);
    EXPECT_EQ(d.n_train(), 2);
    EXPECT_EQ(d.n_val(), 1);
    int32_t in[4], tg[4];
    d.val_sequence(0, in, tg);  // tokens 8..10, then padding
    EXPECT_EQ(std::vector<int32_t>(in, in + 4), (std::vector<int32_t>{22, 23, 2, 2}));
    EXPECT_EQ(std::vector<int32_t>(tg, tg + 4), (std::vector<int32_t>{23, 2, Dataset::kIgnore, Dataset::kIgnore}));
    // Each epoch visits every training sequence once.
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
        std::vector<int32_t> firsts;
        for (int64_t i = 0; i < 2; ++i) {
            d.train_sequence(epoch * 2 + i, in, tg);
            firsts.push_back(in[0]);
        }
        std::sort(firsts.begin(), firsts.end());
        EXPECT_EQ(firsts, (std::vector<int32_t>{1, 2})) << "epoch " << epoch;
    }
    EXPECT_THROW(Dataset::from_documents({{5}}, kNoToken, kNoToken, {.n_ctx = 4}), Error);
}

}  // namespace
}  // namespace toyllm
