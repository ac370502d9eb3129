// Weights as zero-copy views of an mmap'd GGUF file, used by ops in their stored dtype.
#include "testing.h"

#include "toyllm/gguf_tensors.h"
#include "toyllm/graph.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"

#include <gtest/gtest.h>

namespace {

using namespace toyllm;

TEST(GgufTensors, EmbeddingRowsOfAQ8FileAreItsDequantizedBytes) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K-q8_0.gguf");
    const GgufFile file = GgufFile::open(path.string());
    Context ctx;
    Tensor * emb = map_gguf_tensor(ctx, file, "token_embd.weight");
    ASSERT_EQ(emb->type, DType::Q8_0);
    EXPECT_EQ(emb->ne[0], 64);
    EXPECT_EQ(emb->ne[1], 512);
    const auto & info = file.get_tensor("token_embd.weight");
    EXPECT_EQ(emb->data, file.tensor_data(info).data());  // no copy

    Tensor * ids = ctx.new_tensor(DType::I32, {3}, "ids");
    ctx.alloc(ids);
    const int32_t want_ids[3] = {1, 300, 511};
    std::copy(want_ids, want_ids + 3, ids->data_as<int32_t>());
    Tensor * rows = get_rows(ctx, emb, ids);
    set_output(rows);
    Graph g;
    g.build_forward(rows);
    make_backend("cpu", {.n_threads = 2})->compute(g);

    std::vector<float> want(64);
    for (int i = 0; i < 3; ++i) {
        dequantize_row(DType::Q8_0, file.tensor_data(info).data() + static_cast<size_t>(want_ids[i]) * 68, want.data(), 64);
        for (int j = 0; j < 64; ++j) ASSERT_EQ(rows->data_as<float>()[i * 64 + j], want[static_cast<size_t>(j)]) << i << " " << j;
    }
}

TEST(GgufTensors, MissingTensorIsAnError) {
    TOYLLM_REQUIRE_SHARED(path, "models/stories260K/stories260K.gguf");
    const GgufFile file = GgufFile::open(path.string());
    Context ctx;
    EXPECT_THROW(map_gguf_tensor(ctx, file, "blk.9.attn_q.weight"), GgufError);
}

}  // namespace
