// Op builders. Each records a node (nothing is computed until a Graph runs) after
// checking shapes and types; a bad combination throws ShapeError naming the op and the
// shapes. Definitions, shape rules and gradient rules live in src/ops/<family>.cpp.
#pragma once

#include "toyllm/tensor.h"

namespace toyllm {

class ShapeError : public Error {
  public:
    using Error::Error;
};

// ---- views (no copy) --------------------------------------------------------------

// Same elements, new shape; a must be contiguous.
Tensor * reshape(Context & ctx, Tensor * a, std::span<const int64_t> ne);
inline Tensor * reshape(Context & ctx, Tensor * a, std::initializer_list<int64_t> ne) {
    return reshape(ctx, a, std::span<const int64_t>(ne.begin(), ne.size()));
}
// Dimension i of a becomes dimension axes[i] of the result (ggml_permute's convention).
Tensor * permute(Context & ctx, Tensor * a, std::array<int, 4> axes);
Tensor * transpose(Context & ctx, Tensor * a);  // swaps dims 0 and 1
// A window of a: shape ne, starting `offset` elements of dims (offset per dim).
Tensor * slice(Context & ctx, Tensor * a, std::array<int64_t, 4> begin, std::array<int64_t, 4> ne);
// Contiguous copy (F32).
Tensor * cont(Context & ctx, Tensor * a);

// ---- math -------------------------------------------------------------------------

// table [n_embd, n_vocab] (any dtype), ids I32 [T, B] -> F32 [n_embd, T, B]
Tensor * get_rows(Context & ctx, Tensor * table, Tensor * ids);

// a [K, N, B2, B3] of any dtype (weights), b F32 [K, M, B2', B3'] with B2' a multiple
// of B2 (a is broadcast over the batch) -> F32 [N, M, B2', B3']:
//   out[n, m] = sum_k a[k, n] * b[k, m]
Tensor * matmul(Context & ctx, Tensor * a, Tensor * b);

Tensor * add(Context & ctx, Tensor * a, Tensor * b);  // b broadcast over a: a.ne[i] % b.ne[i] == 0
Tensor * mul(Context & ctx, Tensor * a, Tensor * b);
Tensor * scale(Context & ctx, Tensor * a, float s);
Tensor * sum(Context & ctx, Tensor * a);   // -> [1]
Tensor * mean(Context & ctx, Tensor * a);  // -> [1]
// Sums a over the dims where `shape_like` is 1 (the inverse of broadcasting).
Tensor * sum_to(Context & ctx, Tensor * a, const Tensor * shape_like);
// Broadcasts a to the shape of `shape_like`.
Tensor * repeat(Context & ctx, Tensor * a, const Tensor * shape_like);

Tensor * silu(Context & ctx, Tensor * x);
Tensor * swiglu(Context & ctx, Tensor * gate, Tensor * up);  // silu(gate) * up
Tensor * softmax(Context & ctx, Tensor * x);                 // over ne[0]

// x / sqrt(mean(x^2) + eps) over ne[0], times weight [ne[0]] when weight != nullptr.
Tensor * rms_norm(Context & ctx, Tensor * x, Tensor * weight, float eps);

enum class RopeMode : int32_t {
    NORMAL = 0,  // rotates adjacent pairs (2i, 2i+1): llama.cpp's llama, llama2.c
    NEOX = 2,    // rotates (i, i + n_rot/2): Qwen2, Hugging Face's rotate_half
};

struct RopeConfig {
    RopeMode mode = RopeMode::NORMAL;
    int32_t n_rot = 0;          // dims rotated per head, even, <= head_dim (rope.dimension_count)
    float freq_base = 10000.0f; // theta: pair i turns by pos * freq_base^(-2i / n_rot)
    float freq_scale = 1.0f;    // positions are multiplied by this (linear scaling; 1 = off)
};

// x [head_dim, n_head, T, B], positions I32 [T] (shared by the batch),
// freq_factors F32 [n_rot / 2] or nullptr (Llama 3's rope_freqs: divide each frequency).
Tensor * rope(Context & ctx, Tensor * x, Tensor * positions, const RopeConfig & cfg,
              Tensor * freq_factors = nullptr);

struct AttentionConfig {
    float scale = 0.0f;  // on q.k; 0 means 1 / sqrt(head_dim)
    bool causal = true;  // query t sees keys 0 .. (S - T) + t (S - T tokens are cached)
};

// Fused softmax(q.k * scale, causal) . v without a T x S matrix per head.
// q [D, H, T, B], k and v [D, H_kv, S, B] with H % H_kv == 0 (query head h uses kv head
// h / (H / H_kv)) -> [D, H, T, B].
Tensor * attention(Context & ctx, Tensor * q, Tensor * k, Tensor * v, const AttentionConfig & cfg);

// scores [S, T, ...]: entries with s > n_past + t become -inf (the composed attention's mask).
Tensor * causal_mask(Context & ctx, Tensor * scores, int64_t n_past);

// logits [V, T, B], targets I32 [T, B] -> [1]: the mean over targets != ignore_index of
// -log softmax(logits)[target]; 0 when every target is ignored.
Tensor * cross_entropy(Context & ctx, Tensor * logits, Tensor * targets, int32_t ignore_index = -1);

// a and b equal except along `dim`.
Tensor * concat(Context & ctx, Tensor * a, Tensor * b, int dim);

// Copies src into the window of dst starting at `begin` (elements per dim), IN PLACE,
// and returns a node that stands for dst after the write (it shares dst's memory).
// Later reads of dst must go through the returned tensor so that they run after the
// write: this is how a KV cache is appended to. dst must be contiguous f32.
Tensor * write_window(Context & ctx, Tensor * dst, Tensor * src, std::array<int64_t, 4> begin);

}  // namespace toyllm
