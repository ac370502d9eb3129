// Hugging Face model directories to GGUF, following llama.cpp's convert_hf_to_gguf.py:
//
//   config.json                    architectures, hidden_size, intermediate_size,
//                                  num_hidden_layers, num_attention_heads, num_key_value_heads,
//                                  head_dim, rms_norm_eps, rope_theta, rope_scaling,
//                                  max_position_embeddings, vocab_size, tie_word_embeddings
//   model.safetensors              the weights, or shards named by the "weight_map" of
//   model.safetensors.index.json   ({"tensor name": "model-00001-of-00002.safetensors"})
//   tokenizer.json (+ tokenizer_config.json)
//
// Tensor names (N = layer):
//   model.embed_tokens.weight                     token_embd.weight
//   model.layers.N.input_layernorm.weight         blk.N.attn_norm.weight
//   model.layers.N.self_attn.{q,k,v}_proj.weight  blk.N.attn_{q,k,v}.weight (+ .bias, qwen2)
//   model.layers.N.self_attn.o_proj.weight        blk.N.attn_output.weight
//   model.layers.N.post_attention_layernorm.weight blk.N.ffn_norm.weight
//   model.layers.N.mlp.{gate,up,down}_proj.weight blk.N.ffn_{gate,up,down}.weight
//   model.norm.weight                             output_norm.weight
//   lm_head.weight                                output.weight (absent when tied)
//
// Hugging Face's Llama applies RoPE to the pairs (i, i + head_dim/2) of each head
// ("rotate half"); llama.cpp's llama arch rotates (2i, 2i+1). The converter therefore
// reorders the rows of Q and K within each head so that both give the same attention
// scores. Qwen2 keeps Hugging Face's order and runs NeoX-style RoPE.
#include "toyllm/convert.h"
#include "toyllm/gguf.h"
#include "toyllm/model.h"
#include "toyllm/tokenizer.h"

#include "convert/hf_vocab.h"
#include "convert/safetensors.h"
#include "convert/tensor_sink.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace toyllm {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path & p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw IoError("cannot open " + p.string() + ": " + std::strerror(errno));
    try {
        return json::parse(in);
    } catch (const json::exception & e) {
        throw Error(p.string() + ": not valid JSON: " + e.what());
    }
}

// Llama 3.1's "llama3" RoPE scaling: per-frequency divisors, stored as rope_freqs.weight.
struct Llama3Rope {
    float factor = 8.0f;
    float low_freq_factor = 1.0f;
    float high_freq_factor = 4.0f;
    float original_context = 8192.0f;  // original_max_position_embeddings
};

struct HfConfig {
    Arch arch = Arch::LLAMA;
    std::string arch_name;  // "llama", "qwen2"
    std::string hf_name;    // "LlamaForCausalLM"
    int64_t n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0, n_ctx = 0;
    float rms_eps = 1e-6f;
    float rope_theta = 10000.0f;
    bool tied = false;
    std::optional<Llama3Rope> llama3_rope;
    HfSpecialIds special;
};

class ConfigReader {
  public:
    ConfigReader(const json & j, std::string path) : j_(j), path_(std::move(path)) {}

    [[noreturn]] void fail(const std::string & msg) const { throw Error(path_ + ": " + msg); }

    int64_t positive(const char * key) const {
        if (!j_.contains(key)) fail(std::string("missing key '") + key + "'");
        return positive_value(key, j_[key]);
    }
    int64_t positive_or(const char * key, int64_t fallback) const {
        return j_.contains(key) && !j_[key].is_null() ? positive_value(key, j_[key]) : fallback;
    }
    double number_or(const char * key, double fallback) const {
        if (!j_.contains(key) || j_[key].is_null()) return fallback;
        if (!j_[key].is_number()) fail(std::string("'") + key + "' is not a number");
        return j_[key].get<double>();
    }
    bool bool_or(const char * key, bool fallback) const {
        if (!j_.contains(key) || j_[key].is_null()) return fallback;
        if (!j_[key].is_boolean()) fail(std::string("'") + key + "' is not true or false");
        return j_[key].get<bool>();
    }
    // An id, or the first of a list of ids (Llama 3.1's eos_token_id is a list).
    std::optional<int64_t> token_id(const char * key) const {
        if (!j_.contains(key)) return std::nullopt;
        const json & v = j_[key].is_array() && !j_[key].empty() ? j_[key][0] : j_[key];
        return v.is_number_integer() ? std::optional<int64_t>(v.get<int64_t>()) : std::nullopt;
    }

  private:
    int64_t positive_value(const char * key, const json & v) const {
        if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 40)) {
            fail(std::string("'") + key + "' = " + v.dump() + " is not a positive integer");
        }
        return v.get<int64_t>();
    }

    const json & j_;
    std::string path_;
};

HfConfig read_config(const fs::path & path) {
    const json j = read_json(path);
    const ConfigReader r(j, path.string());
    if (!j.is_object()) r.fail("not a JSON object");
    HfConfig c;
    if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].size() != 1 || !j["architectures"][0].is_string()) {
        r.fail("'architectures' is not a list of one name");
    }
    c.hf_name = j["architectures"][0].get<std::string>();
    if (c.hf_name == "LlamaForCausalLM") {
        c.arch = Arch::LLAMA, c.arch_name = "llama";
    } else if (c.hf_name == "Qwen2ForCausalLM") {
        c.arch = Arch::QWEN2, c.arch_name = "qwen2";
    } else {
        r.fail("architecture '" + c.hf_name + "' is not supported (LlamaForCausalLM, Qwen2ForCausalLM)");
    }
    c.n_embd = r.positive("hidden_size");
    c.n_ff = r.positive("intermediate_size");
    c.n_layer = r.positive("num_hidden_layers");
    c.n_head = r.positive("num_attention_heads");
    c.n_head_kv = r.positive_or("num_key_value_heads", c.n_head);
    c.head_dim = r.positive_or("head_dim", c.n_embd / c.n_head);
    c.n_vocab = r.positive("vocab_size");
    // Defaults are transformers' (LlamaConfig, Qwen2Config) for keys a config may omit.
    c.n_ctx = r.positive_or("max_position_embeddings", c.arch == Arch::LLAMA ? 2048 : 32768);
    c.rms_eps = static_cast<float>(r.number_or("rms_norm_eps", 1e-6));
    c.rope_theta = static_cast<float>(r.number_or("rope_theta", 10000.0));
    c.tied = r.bool_or("tie_word_embeddings", false);
    if (c.n_head % c.n_head_kv != 0) {
        r.fail("num_attention_heads " + std::to_string(c.n_head) + " is not a multiple of num_key_value_heads " + std::to_string(c.n_head_kv));
    }
    if (c.head_dim % 2 != 0) r.fail("head_dim " + std::to_string(c.head_dim) + " is odd: RoPE needs pairs");
    if (j.value("hidden_act", std::string("silu")) != "silu") r.fail("hidden_act '" + j["hidden_act"].dump() + "' is not supported (silu)");
    if (r.bool_or("mlp_bias", false)) r.fail("mlp_bias = true is not supported");
    if (c.arch == Arch::LLAMA && r.bool_or("attention_bias", false)) r.fail("attention_bias = true is not supported for llama");
    if (r.bool_or("use_sliding_window", false)) r.fail("use_sliding_window = true (sliding-window attention) is not supported");

    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
        const json & rs = j["rope_scaling"];
        if (!rs.is_object()) r.fail("rope_scaling is not an object");
        const ConfigReader sr(rs, path.string() + ": rope_scaling");
        const std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
        if (type == "llama3") {
            Llama3Rope l;
            l.factor = static_cast<float>(sr.number_or("factor", l.factor));
            l.low_freq_factor = static_cast<float>(sr.number_or("low_freq_factor", l.low_freq_factor));
            l.high_freq_factor = static_cast<float>(sr.number_or("high_freq_factor", l.high_freq_factor));
            l.original_context = static_cast<float>(sr.number_or("original_max_position_embeddings", l.original_context));
            if (!(l.high_freq_factor > l.low_freq_factor) || !(l.factor > 0)) r.fail("rope_scaling llama3 needs high_freq_factor > low_freq_factor and factor > 0");
            c.llama3_rope = l;
        } else if (type != "default") {
            r.fail("rope_scaling type '" + type + "' is not supported (llama3)");
        }
    }
    c.special = {.bos = r.token_id("bos_token_id"), .eos = r.token_id("eos_token_id")};
    return c;
}

// rope_freqs.weight [head_dim / 2] of Llama 3.1: RoPE frequency i is divided by factor i.
// Wavelengths shorter than original_context / high_freq_factor keep their frequency,
// longer than original_context / low_freq_factor are slowed by `factor`, and the band in
// between is interpolated (transformers' _compute_llama3_parameters; llama.cpp's
// convert_hf_to_gguf.py stores the same divisors).
std::vector<float> llama3_rope_factors(const Llama3Rope & l, float theta, int64_t head_dim) {
    const float low_wavelen = l.original_context / l.low_freq_factor;
    const float high_wavelen = l.original_context / l.high_freq_factor;
    std::vector<float> out;
    for (int64_t i = 0; i < head_dim; i += 2) {
        const float freq = 1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_dim));
        const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back(l.factor);
        } else {
            const float smooth = (l.original_context / wavelen - l.low_freq_factor) / (l.high_freq_factor - l.low_freq_factor);
            out.push_back(1.0f / ((1.0f - smooth) / l.factor + smooth));
        }
    }
    return out;
}

// llama.cpp's Q/K permutation (LlamaModel.permute): within each head, row s * head_dim/2 + i
// of Hugging Face's rotate-half order becomes row 2i + s. Works on weights (rows of
// row_len values) and biases (row_len 1) alike.
std::vector<float> permute_rows(const std::vector<float> & w, int64_t n_heads, int64_t row_len) {
    const int64_t rows = static_cast<int64_t>(w.size()) / row_len, head_dim = rows / n_heads, half = head_dim / 2;
    std::vector<float> out(w.size());
    for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t s = 0; s < 2; ++s) {
            for (int64_t i = 0; i < half; ++i) {
                const int64_t from = h * head_dim + s * half + i, to = h * head_dim + 2 * i + s;
                std::copy_n(w.begin() + from * row_len, row_len, out.begin() + to * row_len);
            }
        }
    }
    return out;
}

// The safetensors of a model directory: one file, or the shards of an index.
class HfWeights {
  public:
    explicit HfWeights(const fs::path & dir) : dir_(dir.string()) {
        const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
        if (fs::exists(index)) {
            const json j = read_json(index);
            if (!j.contains("weight_map") || !j["weight_map"].is_object()) throw Error(index.string() + ": no \"weight_map\" object");
            std::map<std::string, size_t> shard_of_file;
            for (const auto & [name, file] : j["weight_map"].items()) {
                if (!file.is_string()) throw Error(index.string() + ": the shard of '" + name + "' is not a file name");
                const std::string f = file.get<std::string>();
                if (f.find('/') != std::string::npos || f == "..") throw Error(index.string() + ": shard '" + f + "' is not a file in " + dir.string());
                if (!shard_of_file.count(f)) {
                    shard_of_file[f] = files_.size();
                    files_.push_back(SafetensorsFile::open((dir / f).string()));
                }
                const SafetensorsFile & shard = files_[shard_of_file[f]];
                const SafetensorsTensor * t = shard.find(name);
                if (t == nullptr) throw Error(index.string() + ": '" + name + "' is not in its shard " + shard.path());
                add(name, t, &shard);
            }
        } else if (fs::exists(single)) {
            files_.push_back(SafetensorsFile::open(single.string()));
            for (const SafetensorsTensor & t : files_[0].tensors()) add(t.name, &t, &files_[0]);
        } else {
            throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json (other weight formats are not supported)");
        }
    }

    bool has(const std::string & name) const { return by_name_.count(name) != 0; }
    void skip(const std::string & name) { used_.insert(name); }

    // The tensor's values as f32 and its source dtype; checks the torch shape.
    std::pair<std::vector<float>, DType> get(const std::string & name, std::vector<int64_t> shape) {
        const auto it = by_name_.find(name);
        if (it == by_name_.end()) throw Error(dir_ + ": tensor '" + name + "' is missing");
        const auto & [t, file] = it->second;
        if (t->shape != shape) {
            auto str = [](const std::vector<int64_t> & s) {
                std::string out = "[";
                for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
                return out + "]";
            };
            throw Error(file->path() + ": tensor '" + name + "' has shape " + str(t->shape) + ", the config says " + str(shape));
        }
        used_.insert(name);
        return {file->to_f32(*t), *t->type};
    }

    // Tensors no mapping took, other than buffers llama.cpp skips too.
    std::vector<std::string> unused() const {
        std::vector<std::string> out;
        for (const auto & [name, entry] : by_name_) {
            if (!used_.count(name) && !name.ends_with(".rotary_emb.inv_freq")) out.push_back(name);
        }
        return out;
    }

  private:
    void add(const std::string & name, const SafetensorsTensor * t, const SafetensorsFile * f) {
        if (!by_name_.emplace(name, std::make_pair(t, f)).second) throw Error(f->path() + ": tensor '" + name + "' appears twice");
    }

    std::string dir_;
    std::deque<SafetensorsFile> files_;  // a deque: by_name_ points into it while it grows
    std::map<std::string, std::pair<const SafetensorsTensor *, const SafetensorsFile *>> by_name_;
    std::set<std::string> used_;
};

}  // namespace

ConvertReport convert_hf(const std::string & dir_name, const std::string & out_path, const ConvertOptions & opts) {
    const fs::path dir(dir_name);
    if (!fs::is_directory(dir)) throw IoError("cannot open " + dir_name + ": not a directory");
    const HfConfig c = read_config(dir / "config.json");
    const fs::path tok_path = dir / "tokenizer.json";
    if (!fs::exists(tok_path)) throw Error(dir_name + ": no tokenizer.json (tokenizer.model alone is not supported)");
    const Vocab vocab = Vocab::from_tokenizer_json(tok_path.string());
    std::string chat_template;
    if (fs::exists(dir / "tokenizer_config.json")) {
        const json tc = read_json(dir / "tokenizer_config.json");
        if (tc.contains("chat_template") && tc["chat_template"].is_string()) chat_template = tc["chat_template"].get<std::string>();
    }
    HfWeights weights(dir);

    const std::string a = c.arch_name;
    GgufWriter w;
    w.set_string("general.architecture", a);
    w.set_string("general.type", "model");
    fs::path dir_path = fs::absolute(dir).lexically_normal();
    if (dir_path.filename().empty()) dir_path = dir_path.parent_path();  // "model/" names "model"
    w.set_string("general.name", dir_path.filename().string());
    w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layer));
    w.set_u32(a + ".context_length", static_cast<uint32_t>(c.n_ctx));
    w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.n_embd));
    w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.n_ff));
    w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_head));
    w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_head_kv));
    w.set_f32(a + ".rope.freq_base", c.rope_theta);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
    if (c.head_dim != c.n_embd / c.n_head) {
        w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
        w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
    }
    if (opts.type) w.set_u32("general.file_type", gguf_file_type(*opts.type));
    w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.n_vocab));
    w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim));
    if (opts.type && dtype_info(*opts.type).block_size > 1) w.set_u32("general.quantization_version", 2);
    write_hf_vocab(w, vocab, c.n_vocab, c.special, chat_template);

    TensorSink sink(w, opts.type);
    const int64_t e = c.n_embd, q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
    // Adds HF tensor `from` (torch shape) as GGUF `to` (shape reversed), transformed by `edit`.
    auto take = [&](const std::string & from, const std::string & to, std::vector<int64_t> shape, auto edit) {
        auto [values, type] = weights.get(from, shape);
        values = edit(std::move(values));
        sink.add(to, std::vector<int64_t>(shape.rbegin(), shape.rend()), values, type);
    };
    auto as_is = [](std::vector<float> v) { return v; };
    const bool permute = c.arch == Arch::LLAMA;
    auto permuted = [permute](int64_t n_heads, int64_t row_len) {
        return [=](std::vector<float> v) { return permute ? permute_rows(v, n_heads, row_len) : v; };
    };

    if (c.llama3_rope) {
        const auto f = llama3_rope_factors(*c.llama3_rope, c.rope_theta, c.head_dim);
        sink.add("rope_freqs.weight", {static_cast<int64_t>(f.size())}, f, DType::F32);
    }
    take("model.embed_tokens.weight", "token_embd.weight", {c.n_vocab, e}, as_is);
    for (int64_t il = 0; il < c.n_layer; ++il) {
        const std::string hf = "model.layers." + std::to_string(il) + ".", gg = "blk." + std::to_string(il) + ".";
        take(hf + "input_layernorm.weight", gg + "attn_norm.weight", {e}, as_is);
        take(hf + "self_attn.q_proj.weight", gg + "attn_q.weight", {q, e}, permuted(c.n_head, e));
        take(hf + "self_attn.k_proj.weight", gg + "attn_k.weight", {kv, e}, permuted(c.n_head_kv, e));
        take(hf + "self_attn.v_proj.weight", gg + "attn_v.weight", {kv, e}, as_is);
        if (c.arch == Arch::QWEN2) {
            take(hf + "self_attn.q_proj.bias", gg + "attn_q.bias", {q}, as_is);
            take(hf + "self_attn.k_proj.bias", gg + "attn_k.bias", {kv}, as_is);
            take(hf + "self_attn.v_proj.bias", gg + "attn_v.bias", {kv}, as_is);
        }
        take(hf + "self_attn.o_proj.weight", gg + "attn_output.weight", {e, q}, as_is);
        take(hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", {e}, as_is);
        take(hf + "mlp.gate_proj.weight", gg + "ffn_gate.weight", {c.n_ff, e}, as_is);
        take(hf + "mlp.up_proj.weight", gg + "ffn_up.weight", {c.n_ff, e}, as_is);
        take(hf + "mlp.down_proj.weight", gg + "ffn_down.weight", {e, c.n_ff}, as_is);
    }
    take("model.norm.weight", "output_norm.weight", {e}, as_is);
    const bool tied = c.tied || !weights.has("lm_head.weight");
    if (!tied) take("lm_head.weight", "output.weight", {c.n_vocab, e}, as_is);
    if (tied) weights.skip("lm_head.weight");  // tie_word_embeddings: a copy of the embeddings
    if (const auto extra = weights.unused(); !extra.empty()) {
        throw Error(dir_name + ": tensor '" + extra.front() + "' is not part of a " + c.hf_name + " (" + std::to_string(extra.size()) +
                    " such tensors)");
    }
    w.write(out_path);
    return {.arch = a, .n_tensors = sink.n_tensors(), .n_vocab = c.n_vocab, .tied_output = tied};
}

}  // namespace toyllm
