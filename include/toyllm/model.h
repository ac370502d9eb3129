// Llama-family models: configuration from GGUF metadata, weights (zero-copy views of
// the file, or trainable f32 copies), and the forward pass as a graph with named taps.
//
//   auto model = Model::load("stories260K.gguf");
//   Context cctx;                                     // per forward: graph nodes
//   Tensor * logits = model->forward(cctx, {.tokens = ids, .positions = pos});
#pragma once

#include "toyllm/gguf.h"
#include "toyllm/ops.h"
#include "toyllm/tensor.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace toyllm {

enum class Arch { LLAMA, QWEN2 };

struct ModelConfig {
    Arch arch = Arch::LLAMA;
    std::string arch_name = "llama";  // general.architecture, the prefix of the keys
    int64_t n_vocab = 0;      // rows of token_embd (32000 for Llama 2)
    int64_t n_embd = 0;       // width of the residual stream (2048 for TinyLlama)
    int64_t n_layer = 0;      // transformer blocks (22)
    int64_t n_head = 0;       // query heads (32)
    int64_t n_head_kv = 0;    // key/value heads, GQA when < n_head (4)
    int64_t head_dim = 0;     // attention.key_length, else n_embd / n_head (64)
    int64_t n_ff = 0;         // hidden width of the SwiGLU FFN (5632)
    int64_t n_ctx_train = 0;  // context_length the model was trained with (2048)
    float rms_eps = 1e-5f;    // attention.layer_norm_rms_epsilon
    RopeConfig rope;          // NORMAL pairs for llama, NEOX for qwen2; n_rot, theta
    bool tied_embeddings = false;  // no output.weight: the output reuses token_embd
    bool qkv_bias = false;         // Q/K/V projections have biases (Qwen2)

    // Reads {arch}.* keys; throws Error naming a missing key or unsupported architecture.
    static ModelConfig from_gguf(const GgufFile & f);
};

// A low-rank adapter on a weight matrix W [n_in, n_out]: y = W x + scale * B (A x).
// With n_groups > 1 the output rows fall into groups (the Q heads) with one pair each:
// A [n_in, r * n_groups] holds the groups' A matrices side by side and B is
// [r, n_out / n_groups, n_groups].
struct LoraAdapter {
    Tensor * a = nullptr;  // [n_in, r * n_groups]
    Tensor * b = nullptr;  // [r, n_out] or [r, n_out / n_groups, n_groups]
    float scale = 0.0f;    // alpha / r, times a user's strength
    int64_t n_groups = 1;
};

// The matrices of a block an adapter can sit on, in llama.cpp's tensor-name order.
enum class LoraTarget { Q, K, V, O, GATE, UP, DOWN, COUNT };
inline constexpr size_t kLoraTargets = static_cast<size_t>(LoraTarget::COUNT);

// The weights of one block, as the graph sees them. Biases are nullptr when absent.
struct BlockWeights {
    Tensor * attn_norm = nullptr;  // [n_embd]
    Tensor * wq = nullptr;         // [n_embd, n_head * head_dim]
    Tensor * wk = nullptr;         // [n_embd, n_head_kv * head_dim]
    Tensor * wv = nullptr;         // [n_embd, n_head_kv * head_dim]
    Tensor * wo = nullptr;         // [n_head * head_dim, n_embd]
    Tensor * bq = nullptr, * bk = nullptr, * bv = nullptr;
    Tensor * ffn_norm = nullptr;   // [n_embd]
    Tensor * w_gate = nullptr;     // [n_embd, n_ff]
    Tensor * w_up = nullptr;       // [n_embd, n_ff]
    Tensor * w_down = nullptr;     // [n_ff, n_embd]
    Tensor * rope_freqs = nullptr; // shared by all blocks: [n_rot / 2] or nullptr
    std::array<LoraAdapter, kLoraTargets> lora{};  // absent adapters have a == nullptr

    Tensor * matrix(LoraTarget t) const;  // wq for Q, ..., w_down for DOWN
};

struct ModelWeights {
    Tensor * tok_embd = nullptr;     // [n_embd, n_vocab]
    Tensor * output_norm = nullptr;  // [n_embd]
    Tensor * output = nullptr;       // [n_embd, n_vocab]; tok_embd when tied
    Tensor * rope_freqs = nullptr;   // [n_rot / 2] (Llama 3) or nullptr
    std::vector<BlockWeights> blocks;
};

// Which intermediate nodes the host wants after a forward: names like
// "blk.3.resid_post" or patterns "*.resid_post" (every block). Each block names
// attn_norm (after the attention RMSNorm), ffn_out (FFN output before the residual add)
// and resid_post (the residual stream after the block).
class Taps {
  public:
    Taps() = default;
    explicit Taps(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {}
    bool wants(std::string_view name) const;
    bool empty() const { return patterns_.empty(); }

  private:
    std::vector<std::string> patterns_;
};

// Keys and values of past positions, per layer [head_dim, n_head_kv, n_ctx, n_batch] f32.
struct KvCache {
    std::vector<Tensor *> k, v;
    int64_t n_ctx = 0;
    int64_t n_batch = 0;
    int64_t n_past = 0;  // positions already stored (the next token's position)
};

struct ForwardInputs {
    Tensor * tokens = nullptr;     // i32 [T, B]
    Tensor * positions = nullptr;  // i32 [T]: n_past .. n_past + T - 1
    KvCache * cache = nullptr;     // nullptr: attend within this batch only
    const Taps * taps = nullptr;   // nodes to keep for the host
    bool logits_last_only = false; // only the last position's logits (decoding)
};

class Model {
  public:
    // Maps the file (or, with mmap false, reads it into memory first; faster decode for
    // large models); weights are views of it in their stored dtypes.
    static std::unique_ptr<Model> load(const std::string & path, bool mmap = true);

    const ModelConfig & config() const { return cfg_; }
    const ModelWeights & weights() const { return w_; }
    const GgufFile & file() const { return *file_; }
    Context & weights_context() { return wctx_; }
    ModelWeights & mutable_weights() { return w_; }  // to attach adapters

    // Full fine-tuning: replaces every weight (norms, matrices, biases, embeddings; not
    // rope_freqs) by a trainable f32 copy with the same name, dequantizing as needed.
    // Returns the params in file order.
    std::vector<Tensor *> make_trainable();

    // Builds the forward graph nodes in ctx; returns logits [n_vocab, T, B] (or [n_vocab, 1, B]).
    Tensor * forward(Context & ctx, const ForwardInputs & in) const;

    // A cache for n_ctx positions of n_batch sequences, allocated in the weights context;
    // type F32 or F16 (half the memory; attention then runs in llama.cpp's order).
    KvCache make_cache(int64_t n_ctx, int64_t n_batch, DType type = DType::F32);

  private:
    Model() = default;

    std::unique_ptr<GgufFile> file_;
    Context wctx_;
    ModelConfig cfg_;
    ModelWeights w_;
};

// The transformer block of SYSTEM.md; block `il` names its nodes "blk.<il>.<what>".
class TransformerBlock {
  public:
    TransformerBlock(const ModelConfig & cfg, const BlockWeights & w, int il) : cfg_(cfg), w_(w), il_(il) {}

    // x [n_embd, T, B] -> [n_embd, T, B]
    Tensor * forward(Context & ctx, Tensor * x, const ForwardInputs & in) const;

  private:
    // W x (+ the adapter on W, if any).
    Tensor * linear(Context & ctx, LoraTarget t, Tensor * x) const;
    Tensor * attention(Context & ctx, Tensor * h, const ForwardInputs & in) const;
    Tensor * ffn(Context & ctx, Tensor * h) const;
    // Projects h with w (+ b) and splits heads: [head_dim, n_heads, T, B].
    Tensor * project_heads(Context & ctx, Tensor * h, LoraTarget t, Tensor * b, int64_t n_heads) const;
    Tensor * name(Tensor * t, const char * what, const ForwardInputs & in) const;

    const ModelConfig & cfg_;
    const BlockWeights & w_;
    int il_;
};

}  // namespace toyllm
