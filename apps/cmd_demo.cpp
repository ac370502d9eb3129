// toyllm demo [-o DIR]: the README's main job. For now it writes a small Llama-shaped
// GGUF with random F32 weights (no download needed) and prints its header with
// `toyllm info`; training and generation join it as they land.
#include "args.h"
#include "commands.h"

#include "toyllm/gguf.h"

#include <cstdio>
#include <filesystem>
#include <random>

namespace toyllm::cli {

namespace {

struct DemoShape {
    uint32_t n_vocab = 256;  // byte-level
    uint32_t n_embd = 64;
    uint32_t n_layer = 2;
    uint32_t n_head = 4;
    uint32_t n_head_kv = 2;
    uint32_t n_ff = 176;
    uint32_t n_ctx = 256;
};

}  // namespace

int cmd_demo(const std::vector<std::string> & argv) {
    Args args("toyllm demo [-o DIR] [--seed S]",
              "Writes DIR/demo.gguf, a tiny Llama-shaped model with random weights, then prints its\n"
              "metadata and tensor table as `toyllm info` does.",
              {
                  {"-o", "DIR", "output directory (default: toyllm-demo)"},
                  {"--seed", "S", "random seed for the weights (default 42)"},
              });
    if (!args.parse(argv, 0, 0)) return 0;
    const std::filesystem::path dir = args.get("-o").value_or("toyllm-demo");
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "demo.gguf").string();

    const DemoShape s;
    const uint32_t head_dim = s.n_embd / s.n_head;
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "toyllm demo (random weights)");
    w.set_u32("general.alignment", 32);
    w.set_u32("llama.context_length", s.n_ctx);
    w.set_u32("llama.embedding_length", s.n_embd);
    w.set_u32("llama.block_count", s.n_layer);
    w.set_u32("llama.feed_forward_length", s.n_ff);
    w.set_u32("llama.attention.head_count", s.n_head);
    w.set_u32("llama.attention.head_count_kv", s.n_head_kv);
    w.set_u32("llama.rope.dimension_count", head_dim);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);

    // Every tensor's floats live in `storage` until write() streams them out.
    std::vector<std::vector<float>> storage;
    std::mt19937 rng(static_cast<uint32_t>(args.get_int("--seed", 42)));
    auto add = [&](const std::string & name, std::vector<int64_t> ne, float stddev) {
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        std::normal_distribution<float> dist(0.0f, stddev);
        auto & v = storage.emplace_back(static_cast<size_t>(n));
        for (float & x : v) x = stddev == 0.0f ? 1.0f : dist(rng);
        w.add_tensor(name, DType::F32, ne, {reinterpret_cast<const uint8_t *>(v.data()), v.size() * sizeof(float)});
    };
    const int64_t e = s.n_embd, kv = s.n_head_kv * head_dim, ff = s.n_ff;
    add("token_embd.weight", {e, s.n_vocab}, 0.02f);
    for (uint32_t l = 0; l < s.n_layer; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        add(b + "attn_norm.weight", {e}, 0.0f);
        add(b + "attn_q.weight", {e, e}, 0.02f);
        add(b + "attn_k.weight", {e, kv}, 0.02f);
        add(b + "attn_v.weight", {e, kv}, 0.02f);
        add(b + "attn_output.weight", {e, e}, 0.02f);
        add(b + "ffn_norm.weight", {e}, 0.0f);
        add(b + "ffn_gate.weight", {e, ff}, 0.02f);
        add(b + "ffn_up.weight", {e, ff}, 0.02f);
        add(b + "ffn_down.weight", {ff, e}, 0.02f);
    }
    add("output_norm.weight", {e}, 0.0f);
    w.write(path);
    std::printf("wrote %s\n\n", path.c_str());
    return cmd_info({path});
}

}  // namespace toyllm::cli
