// toyllm convert: llama2.c checkpoints and Hugging Face directories to GGUF.
//
// - stories260K.bin + tok512.bin converted by us behaves as llama2.c's run.c (logits,
//   greedy ids, printed text) and holds llama.cpp's tensors byte for byte;
// - tiny Llama and Qwen2 models written here in Hugging Face format convert, load and run,
//   with logits equal to a plain double-precision forward pass over the Hugging Face
//   weights (rotate-half RoPE), and their GGUF tokenizer tokenizes as tokenizer.json does;
// - the same weights through the llama2c and the hf path give identical files and logits;
// - bad inputs fail with one line naming the file and the problem.
#include "model_testing.h"

#include "convert/safetensors.h"
#include "toyllm/convert.h"
#include "toyllm/gguf.h"
#include "toyllm/half.h"
#include "toyllm/tokenizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

namespace {

using namespace toyllm;
using namespace toyllm::testing;
using nlohmann::json;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// stories260K through the llama2c path

class ConvertLlama2c : public ::testing::Test {
  protected:
    // One conversion for the suite (the CLI, as a user runs it).
    static void SetUpTestSuite() {
        const fs::path models = shared_dir() / "models/stories260K";
        if (!fs::exists(models / "stories260K.bin") || !fs::exists(models / "tok512.bin")) return;
        tmp_ = new TempDir;
        converted_ = *tmp_ / "stories260K.gguf";
        const CliRun r = run_toyllm("convert --from llama2c " + (models / "stories260K.bin").string() + " --tokenizer " +
                                    (models / "tok512.bin").string() + " -o " + converted_.string());
        convert_status_ = r.status;
        convert_err_ = r.err;
    }
    static void TearDownTestSuite() {
        delete tmp_;
        tmp_ = nullptr;
    }
    // Skips (fails under CI=true) without the references; a failed conversion fails the test.
    void SetUp() override {
        TOYLLM_REQUIRE_SHARED(bin, "models/stories260K/stories260K.bin");
        TOYLLM_REQUIRE_SHARED(tok, "models/stories260K/tok512.bin");
        ASSERT_EQ(convert_status_, 0) << convert_err_;
    }

    static inline TempDir * tmp_ = nullptr;
    static inline fs::path converted_;
    static inline int convert_status_ = -1;
    static inline std::string convert_err_;
};

TEST_F(ConvertLlama2c, Stories260KLogitsAndGreedyIdsMatchRunC) {
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    const json ref = read_json(ref_path);
    auto m = Model::load(converted_.string());
    EXPECT_EQ(m->config().n_ctx_train, 512);  // the checkpoint's seq_len (llama.cpp's file says 128)
    EXPECT_TRUE(m->config().tied_embeddings);
    const double err = llama2c_logit_error(*m, ref, 2);
    std::printf("converted stories260K: max |logit - run.c| over the first 3 positions = %.3g\n", err);
    EXPECT_LT(err, 1e-4);
    expect_llama2c_greedy(*m, ref);
    // The prompts tokenize to run.c's ids with the converted vocabulary.
    const auto tok = Tokenizer::from_gguf(m->file());
    for (const auto & [name, c] : ref["cases"].items()) {
        EXPECT_EQ(tok->encode(c["prompt"].get<std::string>()), c["prompt_ids"].get<std::vector<TokenId>>()) << "case " << name;
    }
}

TEST_F(ConvertLlama2c, Stories260KGenerateTextMatchesRunC) {
    TOYLLM_REQUIRE_SHARED(ref_path, "testdata/stories260K/greedy_reference.json");
    for (const CliRun & r : expect_llama2c_cli_generate(converted_, read_json(ref_path))) {
        EXPECT_EQ(r.err.find("longer than the model's context_length"), std::string::npos) << r.err;
    }
}

// llama.cpp's convert-llama2c-to-ggml wrote stories260K.gguf: the same keys in the same
// order except context_length (its default 128, ours the checkpoint's seq_len 512), the
// same tensors byte for byte, plus output.weight, which it writes as a copy of
// token_embd.weight for a checkpoint with a shared classifier.
TEST_F(ConvertLlama2c, TensorsAndKeysMatchLlamaCpp) {
    TOYLLM_REQUIRE_SHARED(ref, "models/stories260K/stories260K.gguf");
    const GgufFile ours = GgufFile::open(converted_.string()), theirs = GgufFile::open(ref.string());
    ASSERT_EQ(ours.kvs().size(), theirs.kvs().size());
    for (size_t i = 0; i < theirs.kvs().size(); ++i) {
        const GgufKv & a = ours.kvs()[i], & b = theirs.kvs()[i];
        EXPECT_EQ(a.key, b.key);
        EXPECT_EQ(a.value.type, b.value.type) << b.key;
        if (b.key == "llama.context_length") {
            EXPECT_EQ(a.value.as_int(), 512);
            EXPECT_EQ(b.value.as_int(), 128);
        } else if (b.value.type == GgufType::ARRAY && b.value.elem_type == GgufType::STRING) {
            EXPECT_EQ(a.value.strs, b.value.strs) << b.key;
        } else if (b.value.type == GgufType::ARRAY) {
            EXPECT_TRUE(std::ranges::equal(a.value.raw, b.value.raw)) << b.key;
        } else if (b.value.type == GgufType::STRING) {
            EXPECT_EQ(a.value.str, b.value.str) << b.key;
        } else {
            EXPECT_EQ(a.value.scalar, b.value.scalar) << b.key;
        }
    }
    size_t n_identical = 0;
    for (const GgufTensorInfo & t : ours.tensors()) {
        const GgufTensorInfo * o = theirs.find_tensor(t.name);
        ASSERT_NE(o, nullptr) << t.name;
        EXPECT_EQ(t.type, o->type) << t.name;
        EXPECT_EQ(t.ne, o->ne) << t.name;
        const bool same = std::ranges::equal(ours.tensor_data(t), theirs.tensor_data(*o));
        EXPECT_TRUE(same) << t.name;
        n_identical += same;
    }
    EXPECT_EQ(ours.tensors().size() + 1, theirs.tensors().size());
    EXPECT_EQ(ours.find_tensor("output.weight"), nullptr);
    EXPECT_TRUE(std::ranges::equal(theirs.tensor_data(theirs.get_tensor("output.weight")),
                                   ours.tensor_data(ours.get_tensor("token_embd.weight"))));
    std::printf("converted stories260K: %zu of %zu tensors byte-identical to llama.cpp's; its output.weight equals our token_embd\n",
                n_identical, theirs.tensors().size());
}

// --type q8_0 gives llama.cpp's own Q8_0 file, tensor for tensor.
TEST_F(ConvertLlama2c, TypeQ8_0MatchesLlamaCppQuantization) {
    TOYLLM_REQUIRE_SHARED(ref, "models/stories260K/stories260K-q8_0.gguf");
    const fs::path models = shared_dir() / "models/stories260K";
    const fs::path out = *tmp_ / "q8.gguf";
    const CliRun r = run_toyllm("convert --from llama2c " + (models / "stories260K.bin").string() + " --tokenizer " +
                                (models / "tok512.bin").string() + " -o " + out.string() + " --type q8_0");
    ASSERT_EQ(r.status, 0) << r.err;
    const GgufFile ours = GgufFile::open(out.string()), theirs = GgufFile::open(ref.string());
    for (const GgufTensorInfo & t : ours.tensors()) {
        const GgufTensorInfo & o = theirs.get_tensor(t.name);
        EXPECT_EQ(t.type, o.type) << t.name;
        EXPECT_TRUE(std::ranges::equal(ours.tensor_data(t), theirs.tensor_data(o))) << t.name;
    }
    EXPECT_EQ(ours.get_u32("general.file_type"), theirs.get_u32("general.file_type"));
}

// ---------------------------------------------------------------------------------------
// Tiny models written here, in llama2.c and Hugging Face formats

// splitmix64: the same weights on every platform.
class Rng {
  public:
    explicit Rng(uint64_t seed) : s_(seed) {}
    float uniform(float lo, float hi) {
        uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        return lo + (hi - lo) * static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-53);
    }

  private:
    uint64_t s_;
};

struct TinyShape {
    bool qwen2 = false;
    int64_t n_embd = 16, n_ff = 24, n_layer = 2, n_head = 4, n_head_kv = 2, head_dim = 4, n_vocab = 264;
    bool tied = false;
    float theta = 10000.0f, eps = 1e-5f;
    std::vector<double> rope_factors = {};  // Llama 3 rope_freqs (divisors), empty for none
};

// Weights by Hugging Face name, torch shapes, row-major.
using Weights = std::map<std::string, std::vector<float>>;

Weights random_weights(const TinyShape & s, uint64_t seed, bool bf16_exact) {
    Rng rng(seed);
    Weights w;
    auto fill = [&](const std::string & name, int64_t n, float center, float spread) {
        auto & v = w[name];
        for (int64_t i = 0; i < n; ++i) {
            float x = center + rng.uniform(-spread, spread);
            if (bf16_exact) x = bf16_to_fp32(fp32_to_bf16(x));  // values a BF16 file holds exactly
            v.push_back(x);
        }
    };
    const int64_t e = s.n_embd, q = s.n_head * s.head_dim, kv = s.n_head_kv * s.head_dim;
    fill("model.embed_tokens.weight", s.n_vocab * e, 0.0f, 1.0f);
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        fill(p + "input_layernorm.weight", e, 1.0f, 0.3f);
        fill(p + "self_attn.q_proj.weight", q * e, 0.0f, 0.5f);
        fill(p + "self_attn.k_proj.weight", kv * e, 0.0f, 0.5f);
        fill(p + "self_attn.v_proj.weight", kv * e, 0.0f, 0.5f);
        if (s.qwen2) {
            fill(p + "self_attn.q_proj.bias", q, 0.0f, 0.5f);
            fill(p + "self_attn.k_proj.bias", kv, 0.0f, 0.5f);
            fill(p + "self_attn.v_proj.bias", kv, 0.0f, 0.5f);
        }
        fill(p + "self_attn.o_proj.weight", e * q, 0.0f, 0.5f);
        fill(p + "post_attention_layernorm.weight", e, 1.0f, 0.3f);
        fill(p + "mlp.gate_proj.weight", s.n_ff * e, 0.0f, 0.5f);
        fill(p + "mlp.up_proj.weight", s.n_ff * e, 0.0f, 0.5f);
        fill(p + "mlp.down_proj.weight", e * s.n_ff, 0.0f, 0.5f);
    }
    fill("model.norm.weight", e, 1.0f, 0.3f);
    if (!s.tied) fill("lm_head.weight", s.n_vocab * e, 0.0f, 0.5f);
    return w;
}

std::vector<int64_t> torch_shape(const TinyShape & s, const std::string & name) {
    const int64_t e = s.n_embd, q = s.n_head * s.head_dim, kv = s.n_head_kv * s.head_dim;
    auto ends = [&](const char * x) { return name.ends_with(x); };
    if (ends("embed_tokens.weight") || ends("lm_head.weight")) return {s.n_vocab, e};
    if (ends("layernorm.weight") || name == "model.norm.weight") return {e};
    if (ends("q_proj.weight")) return {q, e};
    if (ends("k_proj.weight") || ends("v_proj.weight")) return {kv, e};
    if (ends("q_proj.bias")) return {q};
    if (ends("k_proj.bias") || ends("v_proj.bias")) return {kv};
    if (ends("o_proj.weight")) return {e, q};
    if (ends("o_proj.bias")) return {e};
    if (ends("gate_proj.weight") || ends("up_proj.weight")) return {s.n_ff, e};
    if (ends("down_proj.weight")) return {e, s.n_ff};
    ADD_FAILURE() << "no shape for " << name;
    return {};
}

struct StEntry {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

// Safetensors as the Python library writes it: u64 header length, JSON header, data.
void write_safetensors(const fs::path & path, const std::vector<StEntry> & entries) {
    json header = json::object();
    uint64_t at = 0;
    for (const StEntry & e : entries) {
        header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {at, at + e.bytes.size()}}};
        at += e.bytes.size();
    }
    header["__metadata__"] = {{"format", "pt"}};
    const std::string text = header.dump();
    const uint64_t n = text.size();
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char *>(&n), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const StEntry & e : entries) out.write(reinterpret_cast<const char *>(e.bytes.data()), static_cast<std::streamsize>(e.bytes.size()));
}

StEntry st_entry(const TinyShape & s, const std::string & name, const std::vector<float> & v, bool bf16) {
    StEntry e{name, bf16 ? "BF16" : "F32", torch_shape(s, name), {}};
    if (bf16) {
        for (float x : v) {
            const uint16_t h = fp32_to_bf16(x);
            e.bytes.push_back(static_cast<uint8_t>(h & 0xFF));
            e.bytes.push_back(static_cast<uint8_t>(h >> 8));
        }
    } else {
        e.bytes.resize(v.size() * 4);
        std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
    }
    return e;
}

json hf_config(const TinyShape & s) {
    json c = {
        {"architectures", {s.qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
        {"model_type", s.qwen2 ? "qwen2" : "llama"},
        {"hidden_size", s.n_embd},
        {"intermediate_size", s.n_ff},
        {"num_hidden_layers", s.n_layer},
        {"num_attention_heads", s.n_head},
        {"num_key_value_heads", s.n_head_kv},
        {"head_dim", s.head_dim},
        {"rms_norm_eps", s.eps},
        {"rope_theta", s.theta},
        {"max_position_embeddings", 256},
        {"vocab_size", s.n_vocab},
        {"tie_word_embeddings", s.tied},
        {"hidden_act", "silu"},
        {"torch_dtype", "float32"},
    };
    if (s.qwen2) c["use_sliding_window"] = false, c["bos_token_id"] = 151643, c["eos_token_id"] = 151645;
    return c;
}

void write_text(const fs::path & p, const std::string & text) { std::ofstream(p, std::ios::binary) << text; }

struct HfFiles {
    fs::path tokenizer_from = {};  // directory whose tokenizer.json and tokenizer_config.json are copied
    bool bf16 = false;        // weights stored as BF16 (else F32)
    int n_shards = 1;         // more than one: model-0000N-of-0000M.safetensors and an index
};

// A Hugging Face directory: config.json, the weights and the tokenizer files.
void write_hf_dir(const fs::path & dir, const TinyShape & s, const Weights & w, const HfFiles & files) {
    fs::create_directories(dir);
    write_text(dir / "config.json", hf_config(s).dump(2));
    const int n_shards = files.n_shards;
    std::vector<std::vector<StEntry>> shards(static_cast<size_t>(n_shards));
    size_t i = 0;
    for (const auto & [name, v] : w) shards[i++ % shards.size()].push_back(st_entry(s, name, v, files.bf16));
    if (n_shards == 1) {
        write_safetensors(dir / "model.safetensors", shards[0]);
    } else {
        json map = json::object();
        for (size_t k = 0; k < shards.size(); ++k) {
            const std::string file = "model-0000" + std::to_string(k + 1) + "-of-0000" + std::to_string(n_shards) + ".safetensors";
            write_safetensors(dir / file, shards[k]);
            for (const StEntry & e : shards[k]) map[e.name] = file;
        }
        write_text(dir / "model.safetensors.index.json", json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump(2));
    }
    for (const char * f : {"tokenizer.json", "tokenizer_config.json"}) {
        if (fs::exists(files.tokenizer_from / f)) fs::copy_file(files.tokenizer_from / f, dir / f);
    }
}

// GPT-2's printable characters for bytes (bytes_to_unicode), as UTF-8.
std::string byte_char(int b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    int cp = b;
    if (!printable) {
        int n = 0;
        for (int x = 0; x < b; ++x) n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
        cp = 256 + n;
    }
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// A byte-level BPE tokenizer.json with the 256 byte tokens, two merges and two special
// tokens: 260 tokens, fewer than the tiny models' 264 (the converter pads).
void write_byte_tokenizer(const fs::path & dir) {
    fs::create_directories(dir);
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
    vocab["Ġt"] = 256;
    vocab["he"] = 257;
    const json j = {
        {"version", "1.0"},
        {"added_tokens", {{{"id", 258}, {"content", "<s>"}, {"special", true}}, {{"id", 259}, {"content", "</s>"}, {"special", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
        {"post_processor", nullptr},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"Ġ t", "h e"}}}},
    };
    write_text(dir / "tokenizer.json", j.dump());
    write_text(dir / "tokenizer_config.json", json{{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}}.dump());
}

// export.py's permute_original: llama2.c's interleaved Q/K rows to Hugging Face's
// rotate-half order, the inverse of llama.cpp's permutation (row h*hd + 2i + s of
// llama2.c goes to row h*hd + s*hd/2 + i).
std::vector<float> to_rotate_half(const std::vector<float> & w, int64_t n_heads, int64_t row_len) {
    const int64_t head_dim = static_cast<int64_t>(w.size()) / row_len / n_heads, half = head_dim / 2;
    std::vector<float> out(w.size());
    for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t i = 0; i < half; ++i) {
            for (int64_t s = 0; s < 2; ++s) {
                std::copy_n(w.begin() + (h * head_dim + 2 * i + s) * row_len, row_len, out.begin() + (h * head_dim + s * half + i) * row_len);
            }
        }
    }
    return out;
}

// A llama2.c checkpoint of weights in llama2.c's (interleaved) layout; untied models store
// vocab_size negated and wcls at the end.
void write_llama2c(const fs::path & path, const TinyShape & s, const Weights & w) {
    std::ofstream out(path, std::ios::binary);
    const int32_t header[7] = {static_cast<int32_t>(s.n_embd), static_cast<int32_t>(s.n_ff), static_cast<int32_t>(s.n_layer),
                               static_cast<int32_t>(s.n_head), static_cast<int32_t>(s.n_head_kv),
                               static_cast<int32_t>(s.tied ? s.n_vocab : -s.n_vocab), 32};
    out.write(reinterpret_cast<const char *>(header), sizeof(header));
    auto put = [&](const std::vector<float> & v) { out.write(reinterpret_cast<const char *>(v.data()), static_cast<std::streamsize>(v.size() * 4)); };
    auto each_layer = [&](const char * what) {
        for (int64_t il = 0; il < s.n_layer; ++il) put(w.at("model.layers." + std::to_string(il) + "." + what));
    };
    put(w.at("model.embed_tokens.weight"));
    each_layer("input_layernorm.weight");
    each_layer("self_attn.q_proj.weight");
    each_layer("self_attn.k_proj.weight");
    each_layer("self_attn.v_proj.weight");
    each_layer("self_attn.o_proj.weight");
    each_layer("post_attention_layernorm.weight");
    each_layer("mlp.gate_proj.weight");
    each_layer("mlp.down_proj.weight");
    each_layer("mlp.up_proj.weight");
    put(w.at("model.norm.weight"));
    put(std::vector<float>(static_cast<size_t>(32 * s.head_dim), 0.0f));  // freq_cis_real and _imag (unused)
    if (!s.tied) put(w.at("lm_head.weight"));
}

// tok.bin with n tokens: <unk>, <s>, </s>, the 256 byte tokens, then filler pieces.
void write_tok_bin(const fs::path & path, int64_t n) {
    std::ofstream out(path, std::ios::binary);
    const int32_t max_len = 8;
    out.write(reinterpret_cast<const char *>(&max_len), 4);
    for (int64_t id = 0; id < n; ++id) {
        char buf[16];
        if (id < 3) std::snprintf(buf, sizeof(buf), "%s", id == 0 ? "<unk>" : id == 1 ? "\n<s>\n" : "\n</s>\n");
        else if (id < 259) std::snprintf(buf, sizeof(buf), "<0x%02X>", static_cast<int>(id - 3));
        else std::snprintf(buf, sizeof(buf), " x%d", static_cast<int>(id));
        const float score = -static_cast<float>(id);
        const auto len = static_cast<int32_t>(std::strlen(buf));
        out.write(reinterpret_cast<const char *>(&score), 4);
        out.write(reinterpret_cast<const char *>(&len), 4);
        out.write(buf, len);
    }
}

// The Hugging Face forward pass written out plainly in double: RMSNorm, rotate-half RoPE
// (pairs i, i + head_dim/2; frequencies divided by rope_factors), causal GQA attention,
// SwiGLU. Returns logits [T * n_vocab].
std::vector<double> reference_logits(const TinyShape & s, const Weights & w, const std::vector<int32_t> & ids) {
    const int64_t e = s.n_embd, hd = s.head_dim, T = static_cast<int64_t>(ids.size());
    auto matvec = [](const std::vector<float> & m, const std::vector<double> & x, int64_t rows) {
        const int64_t cols = static_cast<int64_t>(x.size());
        std::vector<double> y(static_cast<size_t>(rows), 0.0);
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < cols; ++c) y[r] += m[r * cols + c] * x[c];
        }
        return y;
    };
    auto rmsnorm = [&](const std::vector<double> & x, const std::vector<float> & g) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double k = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + s.eps);
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * k * g[i];
        return y;
    };
    auto rope = [&](std::vector<double> & v, int64_t n_heads, int64_t pos) {
        for (int64_t h = 0; h < n_heads; ++h) {
            for (int64_t i = 0; i < hd / 2; ++i) {
                double freq = std::pow(static_cast<double>(s.theta), -2.0 * static_cast<double>(i) / static_cast<double>(hd));
                if (!s.rope_factors.empty()) freq /= s.rope_factors[static_cast<size_t>(i)];
                const double c = std::cos(pos * freq), sn = std::sin(pos * freq);
                double & a = v[h * hd + i];
                double & b = v[h * hd + i + hd / 2];
                const double a0 = a, b0 = b;
                a = a0 * c - b0 * sn;
                b = a0 * sn + b0 * c;
            }
        }
    };
    auto add_bias = [&](std::vector<double> & v, const std::string & name) {
        if (!w.count(name)) return;
        for (size_t i = 0; i < v.size(); ++i) v[i] += w.at(name)[i];
    };
    std::vector<std::vector<double>> x(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
        const auto & emb = w.at("model.embed_tokens.weight");
        x[t].assign(emb.begin() + ids[t] * e, emb.begin() + (ids[t] + 1) * e);
    }
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        std::vector<std::vector<double>> k(T), v(T);
        for (int64_t t = 0; t < T; ++t) {
            const auto h = rmsnorm(x[t], w.at(p + "input_layernorm.weight"));
            k[t] = matvec(w.at(p + "self_attn.k_proj.weight"), h, s.n_head_kv * hd);
            add_bias(k[t], p + "self_attn.k_proj.bias");
            rope(k[t], s.n_head_kv, t);
            v[t] = matvec(w.at(p + "self_attn.v_proj.weight"), h, s.n_head_kv * hd);
            add_bias(v[t], p + "self_attn.v_proj.bias");
        }
        for (int64_t t = 0; t < T; ++t) {
            const auto h = rmsnorm(x[t], w.at(p + "input_layernorm.weight"));
            auto q = matvec(w.at(p + "self_attn.q_proj.weight"), h, s.n_head * hd);
            add_bias(q, p + "self_attn.q_proj.bias");
            rope(q, s.n_head, t);
            std::vector<double> heads(static_cast<size_t>(s.n_head * hd), 0.0);
            for (int64_t hh = 0; hh < s.n_head; ++hh) {
                const int64_t kvh = hh / (s.n_head / s.n_head_kv);
                std::vector<double> score(static_cast<size_t>(t + 1));
                double mx = -INFINITY, sum = 0;
                for (int64_t u = 0; u <= t; ++u) {
                    double d = 0;
                    for (int64_t i = 0; i < hd; ++i) d += q[hh * hd + i] * k[u][kvh * hd + i];
                    score[u] = d / std::sqrt(static_cast<double>(hd));
                    mx = std::max(mx, score[u]);
                }
                for (double & sc : score) sum += sc = std::exp(sc - mx);
                for (int64_t u = 0; u <= t; ++u) {
                    for (int64_t i = 0; i < hd; ++i) heads[hh * hd + i] += score[u] / sum * v[u][kvh * hd + i];
                }
            }
            const auto o = matvec(w.at(p + "self_attn.o_proj.weight"), heads, e);
            for (int64_t i = 0; i < e; ++i) x[t][i] += o[i];
            const auto h2 = rmsnorm(x[t], w.at(p + "post_attention_layernorm.weight"));
            const auto g = matvec(w.at(p + "mlp.gate_proj.weight"), h2, s.n_ff), up = matvec(w.at(p + "mlp.up_proj.weight"), h2, s.n_ff);
            std::vector<double> act(static_cast<size_t>(s.n_ff));
            for (int64_t i = 0; i < s.n_ff; ++i) act[i] = g[i] / (1.0 + std::exp(-g[i])) * up[i];
            const auto down = matvec(w.at(p + "mlp.down_proj.weight"), act, e);
            for (int64_t i = 0; i < e; ++i) x[t][i] += down[i];
        }
    }
    std::vector<double> logits;
    const auto & out = w.at(w.count("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight");
    for (int64_t t = 0; t < T; ++t) {
        const auto l = matvec(out, rmsnorm(x[t], w.at("model.norm.weight")), s.n_vocab);
        logits.insert(logits.end(), l.begin(), l.end());
    }
    return logits;
}

// Largest |ours - reference| relative to the largest |reference| logit.
double relative_logit_error(const std::vector<float> & ours, const std::vector<double> & ref) {
    double max_err = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        max_err = std::max(max_err, std::abs(ours[i] - ref[i]));
        max_ref = std::max(max_ref, std::abs(ref[i]));
    }
    return max_err / max_ref;
}

// Texts both tokenizers must cut identically.
const char * const kTokenizerTexts[] = {
    "Hello world",
    " leading space and  two spaces",
    "numbers 7 42 1234567 3.14159 and 2024-01-01",
    "I'M sure it's THEY'LL we'Ve",
    "lines\n\nand\ttabs \r\n  end  ",
    "Unicode: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\xa6\x99 caf\xc3\xa9",
    "code: for (int i = 0; i < n; ++i) { x += y[i]; }",
};

void expect_same_tokenization(const fs::path & tokenizer_json, const GgufFile & gguf, const std::vector<std::string> & specials) {
    const auto a = Tokenizer::load(tokenizer_json.string());
    const auto b = Tokenizer::from_gguf(gguf);
    std::vector<std::string> texts(std::begin(kTokenizerTexts), std::end(kTokenizerTexts));
    for (const std::string & sp : specials) texts.push_back(sp + "text between" + sp);
    size_t n_ids = 0;
    for (const std::string & t : texts) {
        const auto ids = a->encode(t);
        EXPECT_EQ(b->encode(t), ids) << t;
        EXPECT_EQ(b->encode(t, {.add_bos = false, .parse_special = false}), a->encode(t, {.add_bos = false, .parse_special = false})) << t;
        EXPECT_EQ(b->decode(ids), a->decode(ids)) << t;
        n_ids += ids.size();
    }
    if (a->vocab().bos != kNoToken) {
        EXPECT_EQ(b->vocab().bos, a->vocab().bos);
    }
    EXPECT_EQ(b->vocab().eos, a->vocab().eos);
    EXPECT_EQ(b->vocab().add_bos, a->vocab().add_bos);
    std::printf("%s: %zu texts, %zu ids, identical through tokenizer.json and the GGUF\n", tokenizer_json.parent_path().filename().c_str(),
                texts.size(), n_ids);
}

std::vector<float> model_logits(const fs::path & gguf, const std::vector<int32_t> & ids) {
    const auto m = Model::load(gguf.string());
    return prompt_logits(*m, ids, 2);
}

TEST(ConvertHf, TinyLlamaMatchesTheHuggingFaceForwardPass) {
    TOYLLM_REQUIRE_SHARED(tok_dir, "testdata/hf-tokenizers/llama3/tokenizer.json");
    TempDir tmp;
    // head_dim 8 with n_embd 16 and 4 heads: Q is wider than the residual stream; Llama 3.1's
    // rope_scaling gives per-frequency factors 1, 1, 2.69, 8 at this head_dim.
    const TinyShape s{.n_embd = 16, .n_ff = 24, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 8, .n_vocab = 128256,
                      .theta = 500000.0f, .eps = 1e-5f, .rope_factors = {1.0, 1.0, 2.6945296878947333, 8.0}};
    const Weights w = random_weights(s, 1, false);
    write_hf_dir(tmp / "llama", s, w, {.tokenizer_from = tok_dir.parent_path()});
    json c = hf_config(s);
    c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
    write_text(tmp / "llama/config.json", c.dump());

    const fs::path out = tmp / "llama.gguf";
    const CliRun r = run_toyllm("convert --from hf " + (tmp / "llama").string() + " -o " + out.string());
    ASSERT_EQ(r.status, 0) << r.err;
    const GgufFile f = GgufFile::open(out.string());
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "llama-bpe");
    EXPECT_EQ(f.get_u32("llama.attention.key_length"), 8u);
    const auto & rf = f.get_tensor("rope_freqs.weight");
    ASSERT_EQ(rf.n_elements(), 4);
    for (size_t i = 0; i < 4; ++i) {
        float v;
        std::memcpy(&v, f.tensor_data(rf).data() + 4 * i, 4);
        EXPECT_NEAR(v, s.rope_factors[i], 1e-5) << "rope factor " << i;
    }

    const std::vector<int32_t> ids = {128000, 9906, 1917, 0, 128255, 42};
    const double err = relative_logit_error(model_logits(out, ids), reference_logits(s, w, ids));
    std::printf("tiny llama (hf): max |logit - reference| / max |reference| = %.3g\n", err);
    EXPECT_LT(err, 1e-5);
    expect_same_tokenization(tok_dir, f, {"<|begin_of_text|>", "<|eot_id|>"});

    const CliRun gen = run_toyllm("generate -m " + out.string() + " -p 'Hello world' -n 6 --temp 0 --threads 1");
    EXPECT_EQ(gen.status, 0) << gen.err;
    EXPECT_EQ(gen.out.rfind("Hello world", 0), 0u) << gen.out;
}

TEST(ConvertHf, TinyQwen2MatchesTheHuggingFaceForwardPass) {
    TOYLLM_REQUIRE_SHARED(tok_dir, "testdata/hf-tokenizers/qwen3/tokenizer.json");
    TempDir tmp;
    // Tied, Q/K/V biases, BF16 weights in two shards, a vocab_size above the tokenizer's
    // 151,669 tokens (the converter pads, as llama.cpp's does).
    const TinyShape s{.qwen2 = true, .n_embd = 16, .n_ff = 32, .n_layer = 1, .n_head = 2, .n_head_kv = 1, .head_dim = 8,
                      .n_vocab = 151936, .tied = true, .theta = 1000000.0f, .eps = 1e-6f};
    const Weights w = random_weights(s, 2, true);
    write_hf_dir(tmp / "qwen", s, w, {.tokenizer_from = tok_dir.parent_path(), .bf16 = true, .n_shards = 2});

    const fs::path out = tmp / "qwen.gguf";
    const CliRun r = run_toyllm("convert --from hf " + (tmp / "qwen").string() + " -o " + out.string() + " --type f32");
    ASSERT_EQ(r.status, 0) << r.err;
    const GgufFile f = GgufFile::open(out.string());
    EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
    EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
    EXPECT_EQ(f.get_tensor("blk.0.attn_q.weight").type, DType::F32);
    EXPECT_EQ(f.get_array("tokenizer.ggml.tokens", GgufType::STRING).count, 151936u);
    EXPECT_EQ(f.get_u32("tokenizer.ggml.bos_token_id"), 151643u);  // from config.json: tokenizer_config's bos_token is null

    const std::vector<int32_t> ids = {151644, 872, 198, 9707, 151645, 151935};
    const double err = relative_logit_error(model_logits(out, ids), reference_logits(s, w, ids));
    std::printf("tiny qwen2 (hf, bf16 shards): max |logit - reference| / max |reference| = %.3g\n", err);
    EXPECT_LT(err, 1e-5);
    expect_same_tokenization(tok_dir, f, {"<|im_start|>", "<|endoftext|>"});

    const CliRun gen = run_toyllm("generate -m " + out.string() + " -p 'Hello world' -n 6 --temp 0 --threads 1");
    EXPECT_EQ(gen.status, 0) << gen.err;
    EXPECT_EQ(gen.out.rfind("Hello world", 0), 0u) << gen.out;
}

// One tiny Llama, written as a llama2.c checkpoint and as a Hugging Face directory (Q/K in
// rotate-half order, as export.py writes them). Both vocabularies have the model's 264 ids
// (a tok.bin of 264 pieces; a byte-level tokenizer.json of 260, padded to 264): the
// tokenizers differ, the weights must not. Every tensor of the two GGUF files is
// byte-identical, so the logits of any ids are too.
TEST(ConvertHf, Llama2cAndHfPathsGiveIdenticalFiles) {
    TempDir tmp;
    const TinyShape s;  // n_embd 16, 2 layers, 4 heads of 4, 2 KV heads, 264 ids, untied
    const Weights l2c = random_weights(s, 3, false);
    write_llama2c(tmp / "tiny.bin", s, l2c);
    write_tok_bin(tmp / "tok.bin", s.n_vocab);
    Weights hf = l2c;
    for (int64_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".self_attn.";
        hf[p + "q_proj.weight"] = to_rotate_half(l2c.at(p + "q_proj.weight"), s.n_head, s.n_embd);
        hf[p + "k_proj.weight"] = to_rotate_half(l2c.at(p + "k_proj.weight"), s.n_head_kv, s.n_embd);
    }
    write_byte_tokenizer(tmp / "tok");
    write_hf_dir(tmp / "hf", s, hf, {.tokenizer_from = tmp / "tok"});

    ASSERT_EQ(run_toyllm("convert --from llama2c " + (tmp / "tiny.bin").string() + " --tokenizer " + (tmp / "tok.bin").string() + " -o " +
                         (tmp / "a.gguf").string()).status, 0);
    ASSERT_EQ(run_toyllm("convert --from hf " + (tmp / "hf").string() + " -o " + (tmp / "b.gguf").string()).status, 0);
    const GgufFile a = GgufFile::open((tmp / "a.gguf").string()), b = GgufFile::open((tmp / "b.gguf").string());
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    size_t n_identical = 0;
    for (const GgufTensorInfo & t : a.tensors()) {
        const GgufTensorInfo & u = b.get_tensor(t.name);
        EXPECT_EQ(t.ne, u.ne) << t.name;
        const bool same = std::ranges::equal(a.tensor_data(t), b.tensor_data(u));
        EXPECT_TRUE(same) << t.name;
        n_identical += same;
    }
    const std::vector<int32_t> ids = {1, 72, 101, 108, 263, 0, 150};
    const auto la = model_logits(tmp / "a.gguf", ids), lb = model_logits(tmp / "b.gguf", ids);
    EXPECT_EQ(la, lb);
    // And both are the Hugging Face model: the rotate-half forward pass over `hf`.
    const double err = relative_logit_error(la, reference_logits(s, hf, ids));
    std::printf("tiny llama via llama2c and hf: %zu of %zu tensors byte-identical, logits %s; llama2c's vs reference %.3g\n",
                n_identical, a.tensors().size(), la == lb ? "identical" : "different", err);
    EXPECT_LT(err, 1e-5);
    EXPECT_EQ(b.get_string("tokenizer.ggml.pre"), "gpt-2");
}

// ---------------------------------------------------------------------------------------
// Bad inputs

// Each: a non-zero exit status and one line on stderr that contains `needle`.
void expect_error(const std::string & args, const std::string & needle) {
    const CliRun r = run_toyllm(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(ConvertErrors, BadInputsAreOneLineErrors) {
    TempDir tmp;
    const TinyShape s;
    const Weights w = random_weights(s, 4, false);
    write_byte_tokenizer(tmp / "tok");
    const std::string out = " -o " + (tmp / "out.gguf").string();

    fs::create_directories(tmp / "empty");
    expect_error("convert --from hf " + (tmp / "empty").string() + out, "config.json: No such file or directory");

    write_hf_dir(tmp / "mistral", s, w, {.tokenizer_from = tmp / "tok"});
    json c = hf_config(s);
    c["architectures"] = {"MistralForCausalLM"};
    write_text(tmp / "mistral/config.json", c.dump());
    expect_error("convert --from hf " + (tmp / "mistral").string() + out, "architecture 'MistralForCausalLM' is not supported");

    write_hf_dir(tmp / "yarn", s, w, {.tokenizer_from = tmp / "tok"});
    c = hf_config(s);
    c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    write_text(tmp / "yarn/config.json", c.dump());
    expect_error("convert --from hf " + (tmp / "yarn").string() + out, "rope_scaling type 'yarn' is not supported");

    // A [4, 4] F32 tensor (64 bytes) whose data_offsets span 10 bytes.
    write_hf_dir(tmp / "lies", s, w, {.tokenizer_from = tmp / "tok"});
    write_safetensors(tmp / "lies/model.safetensors", {{"model.norm.weight", "F32", {4, 4}, std::vector<uint8_t>(10)}});
    expect_error("convert --from hf " + (tmp / "lies").string() + out, "tensor 'model.norm.weight': 10 bytes for shape [4,4] of F32 (expected 64)");

    write_hf_dir(tmp / "shape", s, w, {.tokenizer_from = tmp / "tok"});
    write_text(tmp / "shape/config.json", [&] { json k = hf_config(s); k["intermediate_size"] = 32; return k.dump(); }());
    expect_error("convert --from hf " + (tmp / "shape").string() + out, "has shape [24, 16], the config says [32, 16]");

    Weights partial = w;
    partial.erase("model.norm.weight");
    write_hf_dir(tmp / "missing", s, partial, {.tokenizer_from = tmp / "tok"});
    expect_error("convert --from hf " + (tmp / "missing").string() + out, "tensor 'model.norm.weight' is missing");

    Weights extra = w;
    extra["model.layers.0.self_attn.o_proj.bias"] = std::vector<float>(16);
    write_hf_dir(tmp / "extra", s, extra, {.tokenizer_from = tmp / "tok"});
    expect_error("convert --from hf " + (tmp / "extra").string() + out, "'model.layers.0.self_attn.o_proj.bias' is not part of a LlamaForCausalLM");

    TinyShape big = s;
    big.n_vocab = 200;  // fewer ids than the tokenizer's 260 tokens
    write_hf_dir(tmp / "small_vocab", big, random_weights(big, 5, false), {.tokenizer_from = tmp / "tok"});
    expect_error("convert --from hf " + (tmp / "small_vocab").string() + out, "has 260 tokens, more than the model's 200");

    write_llama2c(tmp / "tiny.bin", s, w);
    write_tok_bin(tmp / "tok.bin", s.n_vocab);
    const auto bytes = read_file_bytes(tmp / "tiny.bin");
    std::ofstream(tmp / "cut.bin", std::ios::binary).write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size() - 100));
    const std::string tok = " --tokenizer " + (tmp / "tok.bin").string();
    expect_error("convert --from llama2c " + (tmp / "cut.bin").string() + tok + out, "(truncated?)");

    write_tok_bin(tmp / "short_tok.bin", 100);
    expect_error("convert --from llama2c " + (tmp / "tiny.bin").string() + " --tokenizer " + (tmp / "short_tok.bin").string() + out,
                 "the file ends at byte");

    const uint32_t v1[] = {0x616b3432, 1, 16, 24};
    std::ofstream(tmp / "v1.bin", std::ios::binary).write(reinterpret_cast<const char *>(v1), sizeof(v1));
    expect_error("convert --from llama2c " + (tmp / "v1.bin").string() + tok + out, "llama2.c export of version 1");

    expect_error("convert --from llama2c " + (tmp / "tiny.bin").string() + out, "needs --tokenizer");
    expect_error("convert --from gguf " + (tmp / "tiny.bin").string() + out, "--from must be llama2c or hf");
    EXPECT_FALSE(fs::exists(tmp / "out.gguf"));
}

// The reader on its own: each broken header names the file and the problem.
TEST(ConvertErrors, SafetensorsHeaderIsValidated) {
    TempDir tmp;
    auto expect_open_error = [&](const std::string & bytes, const std::string & needle) {
        const fs::path p = tmp / "x.safetensors";
        write_text(p, bytes);
        try {
            SafetensorsFile::open(p.string());
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
        }
    };
    auto file = [](const std::string & header, size_t n_data) {
        std::string s(8, '\0');
        const uint64_t n = header.size();
        std::memcpy(s.data(), &n, 8);
        return s + header + std::string(n_data, '\0');
    };
    expect_open_error("abc", "less than the 8-byte header length");
    expect_open_error(std::string("\xff\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "past the end of the file");
    expect_open_error(file("{\"a\": ", 0), "not valid JSON");
    expect_open_error(file(R"({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", 1), "unknown dtype 'Q4'");
    expect_open_error(file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4), "past the end of the data");
    expect_open_error(file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8), "run backwards");
    expect_open_error(file(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8), "something other than a size");
    expect_open_error(file(R"({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},)"
                           R"( "b": {"dtype": "F16", "shape": [2], "data_offsets": [2, 6]}})", 6),
                      "overlap");
    const fs::path ok = tmp / "ok.safetensors";
    write_text(ok, file(R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "BF16", "shape": [2, 1], "data_offsets": [0, 4]}})", 4));
    const SafetensorsFile f = SafetensorsFile::open(ok.string());
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.tensors()[0].shape, (std::vector<int64_t>{2, 1}));
    EXPECT_EQ(f.to_f32(f.tensors()[0]), (std::vector<float>{0.0f, 0.0f}));
}

}  // namespace
