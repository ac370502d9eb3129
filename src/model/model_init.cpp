#include "toyllm/model_init.h"

#include "toyllm/quant.h"
#include "toyllm/rng.h"

#include <cmath>
#include <cstdio>

namespace toyllm {

namespace {

struct Preset {
    const char * name;
    ModelConfig cfg;
};

ModelConfig shape(Arch arch, int64_t n_embd, int64_t n_ff, int64_t n_layer, int64_t n_head, int64_t n_head_kv) {
    ModelConfig c;
    c.arch = arch;
    c.arch_name = arch == Arch::LLAMA ? "llama" : "qwen2";
    c.n_embd = n_embd;
    c.n_ff = n_ff;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_head_kv = n_head_kv;
    c.head_dim = n_embd / n_head;
    c.rope.mode = arch == Arch::LLAMA ? RopeMode::NORMAL : RopeMode::NEOX;
    c.rope.n_rot = static_cast<int32_t>(c.head_dim);
    c.qkv_bias = arch == Arch::QWEN2;
    return c;
}

std::vector<Preset> presets() {
    std::vector<Preset> p;
    auto add = [&](const char * name, ModelConfig c, int64_t n_vocab, int64_t n_ctx, bool tied, float theta, float eps) {
        c.n_vocab = n_vocab;
        c.n_ctx_train = n_ctx;
        c.tied_embeddings = tied;
        c.rope.freq_base = theta;
        c.rms_eps = eps;
        p.push_back({name, c});
    };
    add("smollm2-135m", shape(Arch::LLAMA, 576, 1536, 30, 9, 3), 49152, 8192, true, 100000.0f, 1e-5f);
    add("tinyllama-1.1b", shape(Arch::LLAMA, 2048, 5632, 22, 32, 4), 32000, 2048, false, 10000.0f, 1e-5f);
    add("qwen2-0.5b", shape(Arch::QWEN2, 896, 4864, 24, 14, 2), 151936, 32768, true, 1000000.0f, 1e-6f);
    add("b135m", shape(Arch::LLAMA, 576, 1536, 30, 9, 3), 32000, 2048, true, 10000.0f, 1e-5f);
    add("b1b", shape(Arch::LLAMA, 2048, 5632, 22, 32, 4), 32000, 2048, false, 10000.0f, 1e-5f);
    return p;
}

// Box-Muller over splitmix64: the same numbers on every platform for a seed.
class Normal {
  public:
    explicit Normal(uint64_t seed) : rng_(seed) {}
    float next(float std) {
        if (has_spare_) {
            has_spare_ = false;
            return spare_ * std;
        }
        double u1 = rng_.uniform(), u2 = rng_.uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
        has_spare_ = true;
        return static_cast<float>(r * std::cos(2.0 * M_PI * u2)) * std;
    }

  private:
    Rng rng_;
    float spare_ = 0.0f;
    bool has_spare_ = false;
};

void check(const ModelConfig & c) {
    auto fail = [](const std::string & m) { throw Error("init: " + m); };
    if (c.n_embd <= 0 || c.n_ff <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_vocab <= 0) fail("every dimension must be > 0");
    if (c.n_head % c.n_head_kv != 0) fail("n_head " + std::to_string(c.n_head) + " is not a multiple of n_head_kv " + std::to_string(c.n_head_kv));
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail("head_dim " + std::to_string(c.head_dim) + " must be even and > 0");
    if (c.rope.n_rot <= 0 || c.rope.n_rot > c.head_dim || c.rope.n_rot % 2 != 0) fail("n_rot must be even and in (0, head_dim]");
}

}  // namespace

std::optional<ModelConfig> model_preset(std::string_view name) {
    for (const Preset & p : presets()) {
        if (p.name == name) return p.cfg;
    }
    return std::nullopt;
}

std::vector<std::string> model_preset_names() {
    std::vector<std::string> names;
    for (const Preset & p : presets()) names.emplace_back(p.name);
    return names;
}

void set_byte_level_tokenizer(GgufWriter & w) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};  // llama_token_type: UNKNOWN, CONTROL
    char hex[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(hex, sizeof hex, "<0x%02X>", b);
        tokens.emplace_back(hex);
        types.push_back(6);  // BYTE
    }
    tokens.emplace_back("\u2581");
    types.push_back(1);  // NORMAL
    const std::vector<float> scores(tokens.size(), 0.0f);
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_strings("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.scores", GgufType::FLOAT32, scores.data(), scores.size());
    w.set_array("tokenizer.ggml.token_type", GgufType::INT32, types.data(), types.size());
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
    w.set_bool("tokenizer.ggml.add_space_prefix", false);
}

void write_random_model(const ModelConfig & c, const InitOptions & opts, const std::string & path) {
    check(c);
    const DTypeInfo & ti = dtype_info(opts.type);
    if (!can_quantize(opts.type)) throw Error("init: cannot store weights as " + std::string(ti.name));
    GgufWriter w;
    const std::string a = c.arch_name;
    w.set_string("general.architecture", a);
    w.set_string("general.name", "toyllm random init");
    w.set_u32("general.alignment", 32);
    w.set_u32(a + ".context_length", static_cast<uint32_t>(c.n_ctx_train));
    w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.n_embd));
    w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layer));
    w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.n_ff));
    w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_head));
    w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_head_kv));
    if (c.head_dim != c.n_embd / c.n_head) w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.rope.n_rot));
    w.set_f32(a + ".rope.freq_base", c.rope.freq_base);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
    if (opts.tokenizer_from == nullptr && opts.byte_tokenizer) {
        if (c.n_vocab != kByteVocabSize) {
            throw Error("init: the byte-level tokenizer has " + std::to_string(kByteVocabSize) + " tokens, the model " + std::to_string(c.n_vocab));
        }
        set_byte_level_tokenizer(w);
    }
    if (opts.tokenizer_from != nullptr) {
        for (const GgufKv & kv : opts.tokenizer_from->kvs()) {
            if (kv.key.rfind("tokenizer.", 0) == 0) w.set(kv.key, kv.value);
        }
        const GgufValue * toks = opts.tokenizer_from->find("tokenizer.ggml.tokens");
        if (toks != nullptr && static_cast<int64_t>(toks->count) != c.n_vocab) {
            throw Error("init: the tokenizer of " + opts.tokenizer_from->path() + " has " + std::to_string(toks->count) +
                        " tokens, the model " + std::to_string(c.n_vocab));
        }
    }

    Normal rng(opts.seed);
    std::vector<std::vector<uint8_t>> storage;  // tensor bytes until write()
    auto add = [&](const std::string & name, std::initializer_list<int64_t> ne, bool matrix, float fill) {
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        std::vector<float> v(static_cast<size_t>(n));
        for (float & x : v) x = matrix ? rng.next(opts.init_std) : fill;
        const DType t = matrix && *ne.begin() % ti.block_size == 0 ? opts.type : DType::F32;
        auto & bytes = storage.emplace_back(dtype_row_bytes(t, n));
        quantize_row(t, v.data(), bytes.data(), n);
        w.add_tensor(name, t, std::span<const int64_t>(ne.begin(), ne.size()), bytes);
    };
    const int64_t e = c.n_embd, q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    add("token_embd.weight", {e, c.n_vocab}, true, 0.0f);
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", {e}, false, 1.0f);
        add(p + "attn_q.weight", {e, q}, true, 0.0f);
        add(p + "attn_k.weight", {e, kv}, true, 0.0f);
        add(p + "attn_v.weight", {e, kv}, true, 0.0f);
        if (c.qkv_bias) {
            add(p + "attn_q.bias", {q}, false, 0.0f);
            add(p + "attn_k.bias", {kv}, false, 0.0f);
            add(p + "attn_v.bias", {kv}, false, 0.0f);
        }
        add(p + "attn_output.weight", {q, e}, true, 0.0f);
        add(p + "ffn_norm.weight", {e}, false, 1.0f);
        add(p + "ffn_gate.weight", {e, c.n_ff}, true, 0.0f);
        add(p + "ffn_up.weight", {e, c.n_ff}, true, 0.0f);
        add(p + "ffn_down.weight", {c.n_ff, e}, true, 0.0f);
    }
    add("output_norm.weight", {e}, false, 1.0f);
    if (!c.tied_embeddings) add("output.weight", {e, c.n_vocab}, true, 0.0f);
    w.write(path);
}

}  // namespace toyllm
