// The transformer block (SYSTEM.md): pre-norm attention and SwiGLU FFN with residuals.
#include "toyllm/model.h"

namespace toyllm {

Tensor * TransformerBlock::forward(Context & ctx, Tensor * x, const ForwardInputs & in) const {
    Tensor * h = name(rms_norm(ctx, x, w_.attn_norm, cfg_.rms_eps), "attn_norm", in);
    x = name(add(ctx, x, attention(ctx, h, in)), "attn_resid", in);
    Tensor * h2 = name(rms_norm(ctx, x, w_.ffn_norm, cfg_.rms_eps), "ffn_norm", in);
    Tensor * f = name(ffn(ctx, h2), "ffn_out", in);
    return name(add(ctx, x, f), "resid_post", in);
}

Tensor * BlockWeights::matrix(LoraTarget t) const {
    switch (t) {
        case LoraTarget::Q: return wq;
        case LoraTarget::K: return wk;
        case LoraTarget::V: return wv;
        case LoraTarget::O: return wo;
        case LoraTarget::GATE: return w_gate;
        case LoraTarget::UP: return w_up;
        case LoraTarget::DOWN: return w_down;
        case LoraTarget::COUNT: break;
    }
    return nullptr;
}

Tensor * TransformerBlock::linear(Context & ctx, LoraTarget t, Tensor * x) const {
    Tensor * y = matmul(ctx, w_.matrix(t), x);  // [n_out, T, B]
    const LoraAdapter & l = w_.lora[static_cast<size_t>(t)];
    if (l.a == nullptr) return y;
    Tensor * ax = matmul(ctx, l.a, x);  // [r * n_groups, T, B]
    Tensor * bax;
    if (l.n_groups == 1) {
        bax = matmul(ctx, l.b, ax);
    } else {
        // Group g's rank-r slice of ax meets B[:, :, g]: a batched matmul over the groups.
        const int64_t r = l.b->ne[0], n_tok = x->ne[1] * x->ne[2];
        Tensor * per_group = cont(ctx, permute(ctx, reshape(ctx, ax, {r, l.n_groups, n_tok}), {0, 2, 1, 3}));  // [r, n_tok, G]
        Tensor * out = matmul(ctx, l.b, per_group);                                                        // [n_out/G, n_tok, G]
        bax = reshape(ctx, cont(ctx, permute(ctx, out, {0, 2, 1, 3})), {y->ne[0], x->ne[1], x->ne[2]});
    }
    return add(ctx, y, scale(ctx, bax, l.scale));
}

Tensor * TransformerBlock::project_heads(Context & ctx, Tensor * h, LoraTarget t, Tensor * b, int64_t n_heads) const {
    Tensor * y = linear(ctx, t, h);  // [n_heads * head_dim, T, B]
    if (b != nullptr) y = add(ctx, y, b);
    return reshape(ctx, y, {cfg_.head_dim, n_heads, h->ne[1], h->ne[2]});
}

Tensor * TransformerBlock::attention(Context & ctx, Tensor * h, const ForwardInputs & in) const {
    const int64_t T = h->ne[1], B = h->ne[2];
    Tensor * q = rope(ctx, project_heads(ctx, h, LoraTarget::Q, w_.bq, cfg_.n_head), in.positions, cfg_.rope, w_.rope_freqs);
    Tensor * k = rope(ctx, project_heads(ctx, h, LoraTarget::K, w_.bk, cfg_.n_head_kv), in.positions, cfg_.rope, w_.rope_freqs);
    Tensor * v = project_heads(ctx, h, LoraTarget::V, w_.bv, cfg_.n_head_kv);
    name(q, "q", in);
    name(k, "k", in);
    name(v, "v", in);
    if (in.cache != nullptr) {
        // Append this batch's keys and values at n_past and attend over everything stored.
        const int64_t n_past = in.cache->n_past;
        const std::array<int64_t, 4> at{0, 0, n_past, 0};
        const std::array<int64_t, 4> all{cfg_.head_dim, cfg_.n_head_kv, n_past + T, B};
        k = slice(ctx, write_window(ctx, in.cache->k[static_cast<size_t>(il_)], k, at), {0, 0, 0, 0}, all);
        v = slice(ctx, write_window(ctx, in.cache->v[static_cast<size_t>(il_)], v, at), {0, 0, 0, 0}, all);
    }
    Tensor * o = toyllm::attention(ctx, q, k, v, {.causal = true});  // [head_dim, n_head, T, B]
    o = reshape(ctx, o, {cfg_.head_dim * cfg_.n_head, T, B});
    return name(linear(ctx, LoraTarget::O, o), "attn_out", in);
}

Tensor * TransformerBlock::ffn(Context & ctx, Tensor * h) const {
    return linear(ctx, LoraTarget::DOWN, swiglu(ctx, linear(ctx, LoraTarget::GATE, h), linear(ctx, LoraTarget::UP, h)));
}

Tensor * TransformerBlock::name(Tensor * t, const char * what, const ForwardInputs & in) const {
    t->name = "blk." + std::to_string(il_) + "." + what;
    if (in.taps != nullptr && in.taps->wants(t->name)) set_output(t);
    return t;
}

}  // namespace toyllm
