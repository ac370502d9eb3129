// ModelConfig from GGUF metadata (llama.cpp's key names, prefixed by the architecture).
#include "toyllm/model.h"

namespace toyllm {

namespace {

struct Keys {
    const GgufFile & f;
    std::string prefix;

    std::string key(const char * k) const { return prefix + "." + k; }
    int64_t u32(const char * k) const {
        if (f.find(key(k)) == nullptr) throw Error("model " + f.path() + ": missing key '" + key(k) + "'");
        return f.get_u32(key(k));
    }
    int64_t u32_or(const char * k, int64_t fallback) const { return f.find(key(k)) ? f.get_u32(key(k)) : fallback; }
    float f32_or(const char * k, float fallback) const { return f.find(key(k)) ? f.get_f32(key(k)) : fallback; }
};

}  // namespace

ModelConfig ModelConfig::from_gguf(const GgufFile & f) {
    ModelConfig c;
    if (f.find("general.architecture") == nullptr) throw Error("model " + f.path() + ": missing key 'general.architecture'");
    c.arch_name = std::string(f.get_string("general.architecture"));
    if (c.arch_name == "llama") {
        c.arch = Arch::LLAMA;
        c.rope.mode = RopeMode::NORMAL;
    } else if (c.arch_name == "qwen2") {
        c.arch = Arch::QWEN2;
        c.rope.mode = RopeMode::NEOX;
    } else {
        throw Error("model " + f.path() + ": architecture '" + c.arch_name + "' is not supported (llama, qwen2)");
    }
    const Keys k{f, c.arch_name};
    c.n_embd = k.u32("embedding_length");
    c.n_layer = k.u32("block_count");
    c.n_ff = k.u32("feed_forward_length");
    c.n_head = k.u32("attention.head_count");
    c.n_head_kv = k.u32_or("attention.head_count_kv", c.n_head);
    c.n_ctx_train = k.u32("context_length");
    if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0) {
        throw Error("model " + f.path() + ": head_count " + std::to_string(c.n_head) + " is not a multiple of head_count_kv " +
                    std::to_string(c.n_head_kv));
    }
    c.head_dim = k.u32_or("attention.key_length", c.n_embd / c.n_head);
    c.rms_eps = k.f32_or("attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope.n_rot = static_cast<int32_t>(k.u32_or("rope.dimension_count", c.head_dim));
    c.rope.freq_base = k.f32_or("rope.freq_base", 10000.0f);
    const GgufTensorInfo & emb = f.get_tensor("token_embd.weight");
    c.n_vocab = emb.ne[1];
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    return c;
}

}  // namespace toyllm
