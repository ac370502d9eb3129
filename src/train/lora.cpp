#include "toyllm/lora.h"

#include "toyllm/gguf_tensors.h"
#include "toyllm/quant.h"
#include "toyllm/rng.h"

#include <cmath>

namespace toyllm {

namespace {

struct TargetName {
    LoraTarget target;
    const char * flag;    // --lora-targets entry
    const char * tensor;  // GGUF tensor in the block
};
constexpr TargetName kTargets[] = {
    {LoraTarget::Q, "q", "attn_q"},        {LoraTarget::K, "k", "attn_k"},     {LoraTarget::V, "v", "attn_v"},
    {LoraTarget::O, "o", "attn_output"},   {LoraTarget::GATE, "gate", "ffn_gate"}, {LoraTarget::UP, "up", "ffn_up"},
    {LoraTarget::DOWN, "down", "ffn_down"},
};

const TargetName & target_name(LoraTarget t) { return kTargets[static_cast<size_t>(t)]; }

// The values of a (possibly f16 or quantized) contiguous tensor as floats.
std::vector<float> to_f32(const Tensor * t) {
    std::vector<float> out(static_cast<size_t>(t->n_elements()));
    const size_t row_bytes = dtype_row_bytes(t->type, t->ne[0]);
    for (int64_t r = 0; r < t->n_rows(); ++r) {
        dequantize_row(t->type, static_cast<const uint8_t *>(t->data) + static_cast<size_t>(r) * row_bytes,
                       out.data() + r * t->ne[0], t->ne[0]);
    }
    return out;
}

// The adapter as one plain pair: A [n_in, R] and B [R, n_out] with R = r * n_groups, the
// per-group B placed block-diagonally; B is multiplied by n_groups so that alpha / R
// (llama.cpp's scale) times it equals alpha / r times the groups' B.
struct PlainPair {
    std::vector<float> a, b;
    int64_t rank = 0;
};

PlainPair plain_pair(const LoraAdapter & l, int64_t n_out) {
    PlainPair p;
    p.a = to_f32(l.a);
    const std::vector<float> b = to_f32(l.b);
    const int64_t r = l.b->ne[0], G = l.n_groups, per = n_out / G;
    p.rank = r * G;
    if (G == 1) {
        p.b = b;
        return p;
    }
    p.b.assign(static_cast<size_t>(p.rank * n_out), 0.0f);
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t d = 0; d < per; ++d) {
            for (int64_t i = 0; i < r; ++i) {
                p.b[static_cast<size_t>(g * r + i + p.rank * (g * per + d))] = static_cast<float>(G) * b[static_cast<size_t>(i + r * (d + per * g))];
            }
        }
    }
    return p;
}

}  // namespace

std::vector<LoraTarget> parse_lora_targets(std::string_view list) {
    std::vector<LoraTarget> out;
    size_t pos = 0;
    while (pos <= list.size()) {
        const size_t end = std::min(list.find(',', pos), list.size());
        const std::string_view item = list.substr(pos, end - pos);
        bool found = false;
        for (const TargetName & t : kTargets) {
            if (item != t.flag) continue;
            found = true;
            bool dup = false;
            for (LoraTarget o : out) dup = dup || o == t.target;
            if (!dup) out.push_back(t.target);
        }
        if (!found) throw Error("lora: unknown target '" + std::string(item) + "' (known: q, k, v, o, gate, up, down)");
        pos = end + 1;
    }
    return out;
}

std::string lora_targets_str(const std::vector<LoraTarget> & targets) {
    std::string s;
    for (LoraTarget t : targets) s += (s.empty() ? "" : ",") + std::string(target_name(t).flag);
    return s;
}

std::string lora_base_name(int64_t il, LoraTarget t) {
    return "blk." + std::to_string(il) + "." + target_name(t).tensor + ".weight";
}

std::vector<Tensor *> add_lora(Model & m, const LoraConfig & cfg, uint64_t seed) {
    if (cfg.rank < 1) throw Error("lora: the rank must be >= 1");
    if (cfg.targets.empty()) throw Error("lora: no target matrices");
    const ModelConfig & c = m.config();
    Context & ctx = m.weights_context();
    Rng rng(seed);
    std::vector<Tensor *> params;
    for (int64_t il = 0; il < c.n_layer; ++il) {
        BlockWeights & bw = m.mutable_weights().blocks[static_cast<size_t>(il)];
        for (LoraTarget t : cfg.targets) {
            LoraAdapter & l = bw.lora[static_cast<size_t>(t)];
            if (l.a != nullptr) throw Error("lora: " + lora_base_name(il, t) + " already has an adapter");
            const Tensor * w = bw.matrix(t);
            const int64_t n_in = w->ne[0], n_out = w->ne[1];
            const int64_t G = t == LoraTarget::Q && cfg.per_head_q ? c.n_head : 1;
            const std::string base = lora_base_name(il, t);
            l.a = ctx.new_tensor(DType::F32, {n_in, cfg.rank * G}, base + ".lora_a");
            l.b = G == 1 ? ctx.new_tensor(DType::F32, {cfg.rank, n_out}, base + ".lora_b")
                         : ctx.new_tensor(DType::F32, {cfg.rank, n_out / G, G}, base + ".lora_b");
            l.scale = cfg.alpha / static_cast<float>(cfg.rank);
            l.n_groups = G;
            ctx.alloc(l.a);
            ctx.alloc(l.b);  // zero
            const double bound = 1.0 / std::sqrt(static_cast<double>(n_in));
            float * a = l.a->data_as<float>();
            for (int64_t i = 0; i < l.a->n_elements(); ++i) a[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
            ctx.set_param(l.a);
            ctx.set_param(l.b);
            params.push_back(l.a);
            params.push_back(l.b);
        }
    }
    return params;
}

void write_lora_gguf(const Model & m, const LoraConfig & cfg, const std::string & path) {
    GgufWriter w;
    w.set_string("general.architecture", m.config().arch_name);
    w.set_string("general.type", "adapter");
    w.set_string("general.name", "toyllm lora");
    w.set_string("adapter.type", "lora");
    w.set_f32("adapter.lora.alpha", cfg.alpha);
    std::vector<std::vector<float>> storage;  // tensor data until write()
    const auto & blocks = m.weights().blocks;
    for (size_t il = 0; il < blocks.size(); ++il) {
        for (size_t ti = 0; ti < kLoraTargets; ++ti) {
            const LoraAdapter & l = blocks[il].lora[ti];
            if (l.a == nullptr) continue;
            const LoraTarget t = static_cast<LoraTarget>(ti);
            const int64_t n_in = l.a->ne[0], n_out = blocks[il].matrix(t)->ne[1];
            PlainPair p = plain_pair(l, n_out);
            const std::string base = lora_base_name(static_cast<int64_t>(il), t);
            const int64_t ne_a[] = {n_in, p.rank}, ne_b[] = {p.rank, n_out};
            auto bytes = [](const std::vector<float> & v) { return std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(v.data()), v.size() * 4); };
            w.add_tensor(base + ".lora_a", DType::F32, ne_a, bytes(storage.emplace_back(std::move(p.a))));
            w.add_tensor(base + ".lora_b", DType::F32, ne_b, bytes(storage.emplace_back(std::move(p.b))));
        }
    }
    w.write(path);
}

void load_lora(Model & m, const std::string & path, float strength) {
    const GgufFile f = GgufFile::open(path);
    auto fail = [&](const std::string & msg) { throw Error("lora " + path + ": " + msg); };
    const GgufValue * type = f.find("general.type");
    if (type == nullptr || type->type != GgufType::STRING || type->str != "adapter" || f.get_string("adapter.type") != "lora") {
        fail("not a LoRA adapter (general.type must be \"adapter\" and adapter.type \"lora\")");
    }
    if (f.get_string("general.architecture") != m.config().arch_name) {
        fail("adapter for '" + std::string(f.get_string("general.architecture")) + "', the model is '" + m.config().arch_name + "'");
    }
    const GgufValue * alpha_v = f.find("adapter.lora.alpha");
    const float alpha = alpha_v != nullptr ? static_cast<float>(alpha_v->as_float()) : 0.0f;
    Context & ctx = m.weights_context();
    size_t n_pairs = 0;
    for (const GgufTensorInfo & ti : f.tensors()) {
        const std::string name(ti.name);
        const bool is_a = name.ends_with(".lora_a"), is_b = name.ends_with(".lora_b");
        if (!is_a && !is_b) fail("unexpected tensor '" + name + "'");
        if (is_b) continue;  // handled with its A
        const std::string base = name.substr(0, name.size() - 7);
        bool matched = false;
        for (int64_t il = 0; il < m.config().n_layer && !matched; ++il) {
            for (size_t t = 0; t < kLoraTargets && !matched; ++t) {
                if (lora_base_name(il, static_cast<LoraTarget>(t)) != base) continue;
                matched = true;
                BlockWeights & bw = m.mutable_weights().blocks[static_cast<size_t>(il)];
                LoraAdapter & l = bw.lora[t];
                if (l.a != nullptr) fail(base + " already has an adapter");
                if (f.find_tensor(base + ".lora_b") == nullptr) fail("'" + name + "' has no '" + base + ".lora_b'");
                Tensor * a = map_gguf_tensor(ctx, f, name);
                Tensor * b = map_gguf_tensor(ctx, f, base + ".lora_b");
                const Tensor * w = bw.matrix(static_cast<LoraTarget>(t));
                const int64_t r = a->ne[1];
                if (a->n_dims() > 2 || b->n_dims() > 2 || a->ne[0] != w->ne[0] || b->ne[0] != r || b->ne[1] != w->ne[1]) {
                    fail("shapes " + shape_str(*a) + " and " + shape_str(*b) + " do not fit " + base + " " + shape_str(*w));
                }
                for (const Tensor * x : {a, b}) {
                    if (!can_dequantize(x->type) || x->ne[0] % dtype_info(x->type).block_size != 0) {
                        fail("'" + x->name + "' is stored as " + std::string(dtype_name(x->type)) + ", which adapters cannot use here");
                    }
                }
                l = {a, b, alpha != 0.0f ? strength * alpha / static_cast<float>(r) : strength, 1};
                ++n_pairs;
            }
        }
        if (!matched) fail("'" + name + "' names no matrix of the model");
    }
    if (n_pairs == 0) fail("no adapter tensors");
}

void merge_lora(const Model & m, const std::string & path) {
    const GgufFile & f = m.file();
    GgufWriter w(f.version());
    for (const GgufKv & kv : f.kvs()) w.set(kv.key, kv.value);
    std::vector<std::vector<float>> storage;
    for (const GgufTensorInfo & ti : f.tensors()) {
        const std::string name(ti.name);
        const LoraAdapter * l = nullptr;
        const Tensor * wt = nullptr;
        for (size_t il = 0; il < m.weights().blocks.size() && l == nullptr; ++il) {
            for (size_t t = 0; t < kLoraTargets; ++t) {
                const BlockWeights & bw = m.weights().blocks[il];
                if (bw.lora[t].a != nullptr && lora_base_name(static_cast<int64_t>(il), static_cast<LoraTarget>(t)) == name) {
                    l = &bw.lora[t];
                    wt = bw.matrix(static_cast<LoraTarget>(t));
                }
            }
        }
        const auto ne = std::span<const int64_t>(ti.ne.data(), ti.n_dims);
        if (l == nullptr) {
            w.add_tensor(name, ti.type, ne, f.tensor_data(ti));
            continue;
        }
        const int64_t n_in = wt->ne[0], n_out = wt->ne[1];
        const PlainPair p = plain_pair(*l, n_out);
        const float s = l->scale / static_cast<float>(l->n_groups);  // plain_pair multiplied B by n_groups
        std::vector<float> & out = storage.emplace_back(to_f32(wt));
        for (int64_t o = 0; o < n_out; ++o) {
            for (int64_t j = 0; j < p.rank; ++j) {
                const float bj = p.b[static_cast<size_t>(j + p.rank * o)];
                if (bj == 0.0f) continue;
                const float * a = p.a.data() + j * n_in;
                float * row = out.data() + o * n_in;
                for (int64_t k = 0; k < n_in; ++k) row[k] += s * bj * a[k];
            }
        }
        w.add_tensor(name, DType::F32, ne, std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(out.data()), out.size() * 4));
    }
    w.remove("general.file_type");
    w.write(path);
}

}  // namespace toyllm
