// Loading a model from GGUF (weights as views of the mapped file) and its forward pass.
#include "toyllm/model.h"

#include "toyllm/gguf_tensors.h"
#include "toyllm/quant.h"


#include <fnmatch.h>

namespace toyllm {

bool Taps::wants(std::string_view name) const {
    const std::string n(name);
    for (const std::string & p : patterns_) {
        if (fnmatch(p.c_str(), n.c_str(), 0) == 0) return true;
    }
    return false;
}

namespace {

// Maps `name` and checks its shape; `ne` innermost first.
Tensor * weight(Context & ctx, const GgufFile & f, const std::string & name, std::initializer_list<int64_t> ne) {
    Tensor * t = map_gguf_tensor(ctx, f, name);
    size_t d = 0;
    bool ok = true;
    for (int64_t n : ne) ok = ok && t->ne[d++] == n;
    for (; d < 4; ++d) ok = ok && t->ne[d] == 1;
    if (!ok) {
        std::string want = "[";
        for (int64_t n : ne) want += (want.size() > 1 ? ", " : "") + std::to_string(n);
        throw Error("model " + f.path() + ": tensor '" + name + "' has shape " + shape_str(*t) + ", expected " + want + "]");
    }
    return t;
}

Tensor * optional_weight(Context & ctx, const GgufFile & f, const std::string & name, std::initializer_list<int64_t> ne) {
    return f.find_tensor(name) != nullptr ? weight(ctx, f, name, ne) : nullptr;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string & path, bool mmap) {
    std::unique_ptr<Model> m(new Model());
    m->file_ = std::make_unique<GgufFile>(GgufFile::open(path, !mmap));
    const GgufFile & f = *m->file_;
    ModelConfig & c = m->cfg_;
    c = ModelConfig::from_gguf(f);
    Context & ctx = m->wctx_;
    ModelWeights & w = m->w_;
    const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_head_kv * c.head_dim;
    w.tok_embd = weight(ctx, f, "token_embd.weight", {c.n_embd, c.n_vocab});
    w.output_norm = weight(ctx, f, "output_norm.weight", {c.n_embd});
    w.output = c.tied_embeddings ? w.tok_embd : weight(ctx, f, "output.weight", {c.n_embd, c.n_vocab});
    w.rope_freqs = optional_weight(ctx, f, "rope_freqs.weight", {c.rope.n_rot / 2});
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        BlockWeights b;
        b.attn_norm = weight(ctx, f, p + "attn_norm.weight", {c.n_embd});
        b.wq = weight(ctx, f, p + "attn_q.weight", {c.n_embd, q_dim});
        b.wk = weight(ctx, f, p + "attn_k.weight", {c.n_embd, kv_dim});
        b.wv = weight(ctx, f, p + "attn_v.weight", {c.n_embd, kv_dim});
        b.wo = weight(ctx, f, p + "attn_output.weight", {q_dim, c.n_embd});
        if (c.qkv_bias) {
            b.bq = weight(ctx, f, p + "attn_q.bias", {q_dim});
            b.bk = weight(ctx, f, p + "attn_k.bias", {kv_dim});
            b.bv = weight(ctx, f, p + "attn_v.bias", {kv_dim});
        }
        b.ffn_norm = weight(ctx, f, p + "ffn_norm.weight", {c.n_embd});
        b.w_gate = weight(ctx, f, p + "ffn_gate.weight", {c.n_embd, c.n_ff});
        b.w_up = weight(ctx, f, p + "ffn_up.weight", {c.n_embd, c.n_ff});
        b.w_down = weight(ctx, f, p + "ffn_down.weight", {c.n_ff, c.n_embd});
        b.rope_freqs = w.rope_freqs;
        w.blocks.push_back(b);
    }
    return m;
}

Tensor * Model::forward(Context & ctx, const ForwardInputs & in) const {
    if (in.tokens == nullptr || in.positions == nullptr) throw Error("forward: tokens and positions are required");
    const int64_t T = in.tokens->ne[0], B = in.tokens->ne[1];
    if (in.cache != nullptr && (in.cache->n_past + T > in.cache->n_ctx || in.cache->n_batch != B)) {
        throw Error("forward: " + std::to_string(T) + " tokens after " + std::to_string(in.cache->n_past) +
                    " do not fit the KV cache of " + std::to_string(in.cache->n_ctx) + " positions");
    }
    Tensor * x = get_rows(ctx, w_.tok_embd, in.tokens);  // [n_embd, T, B]
    x->name = "token_embd";
    for (int64_t il = 0; il < cfg_.n_layer; ++il) {
        x = TransformerBlock(cfg_, w_.blocks[static_cast<size_t>(il)], static_cast<int>(il)).forward(ctx, x, in);
    }
    if (in.logits_last_only && T > 1) x = slice(ctx, x, {0, T - 1, 0, 0}, {cfg_.n_embd, 1, B, 1});
    x = rms_norm(ctx, x, w_.output_norm, cfg_.rms_eps);
    x->name = "output_norm";
    Tensor * logits = matmul(ctx, w_.output, x);  // [n_vocab, T, B]
    logits->name = "logits";
    set_output(logits);
    return logits;
}

std::vector<Tensor *> Model::make_trainable() {
    std::vector<Tensor *> params;
    auto copy = [&](Tensor *& t) {
        if (t == nullptr || t->is_param()) return;  // already trainable
        Tensor * p = wctx_.new_tensor(DType::F32, t->ne, t->name);
        wctx_.alloc(p);
        if (!t->is_contiguous()) throw Error("make_trainable: weight '" + t->name + "' is not contiguous");
        const size_t row_bytes = dtype_row_bytes(t->type, t->ne[0]);
        for (int64_t r = 0; r < t->n_rows(); ++r) {
            dequantize_row(t->type, static_cast<const uint8_t *>(t->data) + static_cast<size_t>(r) * row_bytes,
                           p->data_as<float>() + r * t->ne[0], t->ne[0]);
        }
        wctx_.set_param(p);
        params.push_back(p);
        t = p;
    };
    const bool tied = w_.output == w_.tok_embd;
    copy(w_.tok_embd);
    for (BlockWeights & b : w_.blocks) {
        for (Tensor ** t : {&b.attn_norm, &b.wq, &b.bq, &b.wk, &b.bk, &b.wv, &b.bv, &b.wo, &b.ffn_norm, &b.w_gate, &b.w_up, &b.w_down}) {
            copy(*t);
        }
    }
    copy(w_.output_norm);
    if (tied) w_.output = w_.tok_embd;
    else copy(w_.output);
    return params;
}

KvCache Model::make_cache(int64_t n_ctx, int64_t n_batch, DType type) {
    if (type != DType::F32 && type != DType::F16) throw Error("KV cache type must be f32 or f16, not " + std::string(dtype_name(type)));
    KvCache c;
    c.n_ctx = n_ctx;
    c.n_batch = n_batch;
    for (int64_t il = 0; il < cfg_.n_layer; ++il) {
        for (auto * list : {&c.k, &c.v}) {
            Tensor * t = wctx_.new_tensor(type, {cfg_.head_dim, cfg_.n_head_kv, n_ctx, n_batch},
                                          std::string(list == &c.k ? "cache_k." : "cache_v.") + std::to_string(il));
            wctx_.alloc(t);
            t->flags |= TENSOR_DEVICE_STATE;
            list->push_back(t);
        }
    }
    return c;
}

}  // namespace toyllm
