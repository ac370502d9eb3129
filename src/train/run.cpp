#include "toyllm/train_run.h"

#include "toyllm/convert.h"
#include "toyllm/model_init.h"
#include "toyllm/quant.h"
#include "toyllm/tokenizer.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace toyllm {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TrainMode mode_from_name(const std::string & s) {
    for (TrainMode m : {TrainMode::SCRATCH, TrainMode::FULL, TrainMode::LORA}) {
        if (s == train_mode_name(m)) return m;
    }
    throw Error("run config: unknown mode '" + s + "'");
}

json spec_to_json(const RunSpec & s) {
    const TrainOptions & t = s.train;
    return json{
        {"mode", train_mode_name(s.mode)}, {"preset", s.preset}, {"config_file", s.config_file},
        {"base_model", s.base_model}, {"tokenizer_from", s.tokenizer_from}, {"data", s.data},
        {"n_ctx", s.n_ctx}, {"val_fraction", s.val_fraction}, {"seed", s.seed},
        {"eval_every", s.eval_every}, {"save_every", s.save_every},
        {"steps", t.steps}, {"batch", t.batch}, {"micro_batch", t.micro_batch}, {"warmup", t.warmup},
        {"lr", t.lr}, {"min_lr_ratio", t.min_lr_ratio}, {"weight_decay", t.weight_decay},
        {"grad_clip", t.grad_clip}, {"threads", t.n_threads},
        {"lora_rank", s.lora.rank}, {"lora_alpha", s.lora.alpha}, {"lora_targets", lora_targets_str(s.lora.targets)},
        {"lora_per_head_q", s.lora.per_head_q},
    };
}

RunSpec spec_from_json(const json & j) {
    RunSpec s;
    s.mode = mode_from_name(j.at("mode").get<std::string>());
    s.preset = j.at("preset");
    s.config_file = j.at("config_file");
    s.base_model = j.at("base_model");
    s.tokenizer_from = j.at("tokenizer_from");
    s.data = j.at("data");
    s.n_ctx = j.at("n_ctx");
    s.val_fraction = j.at("val_fraction");
    s.seed = j.at("seed");
    s.eval_every = j.at("eval_every");
    s.save_every = j.at("save_every");
    TrainOptions & t = s.train;
    t.steps = j.at("steps");
    t.batch = j.at("batch");
    t.micro_batch = j.at("micro_batch");
    t.warmup = j.at("warmup");
    t.lr = j.at("lr");
    t.min_lr_ratio = j.at("min_lr_ratio");
    t.weight_decay = j.at("weight_decay");
    t.grad_clip = j.at("grad_clip");
    t.n_threads = j.at("threads");
    s.lora.rank = j.at("lora_rank");
    s.lora.alpha = j.at("lora_alpha");
    s.lora.targets = parse_lora_targets(j.at("lora_targets").get<std::string>());
    s.lora.per_head_q = j.at("lora_per_head_q");
    return s;
}

json read_json(const std::string & path) {
    std::ifstream in(path);
    if (!in) throw Error("cannot read " + path);
    try {
        return json::parse(in);
    } catch (const json::exception & e) {
        throw Error(path + ": " + e.what());
    }
}

// The model a run trains, with its params: a fresh one, or one restored from `ckpt`.
struct Prepared {
    std::unique_ptr<Model> model;
    std::vector<Tensor *> params;
};

Prepared prepare(const RunSpec & s, const std::string & ckpt) {
    Prepared p;
    if (s.mode == TrainMode::LORA) {
        p.model = Model::load(s.base_model);
        p.params = add_lora(*p.model, s.lora, s.seed);
        return p;
    }
    std::string path = ckpt.empty() ? s.base_model : ckpt;
    if (s.mode == TrainMode::SCRATCH && ckpt.empty()) {
        ModelConfig c;
        if (!s.config_file.empty()) {
            c = model_config_from_json(s.config_file);
        } else if (auto pc = model_preset(s.preset)) {
            c = *pc;
        } else {
            throw Error("train: unknown preset '" + s.preset + "'");
        }
        InitOptions io{.type = DType::F32, .seed = s.seed};
        std::unique_ptr<GgufFile> tok;
        if (s.tokenizer_from.empty()) {
            io.byte_tokenizer = true;
            c.n_vocab = kByteVocabSize;
        } else {
            tok = std::make_unique<GgufFile>(GgufFile::open(s.tokenizer_from));
            io.tokenizer_from = tok.get();
            c.n_vocab = static_cast<int64_t>(tok->get_array("tokenizer.ggml.tokens", GgufType::STRING).count);
        }
        if (c.n_ctx_train < s.n_ctx) c.n_ctx_train = s.n_ctx;
        path = (fs::path(s.run_dir) / "init.gguf").string();
        write_random_model(c, io, path);
    }
    p.model = Model::load(path);
    p.params = p.model->make_trainable();
    return p;
}

std::string checkpoint_path(const std::string & dir, int64_t step) {
    char name[64];
    std::snprintf(name, sizeof name, "checkpoint-%06lld.gguf", static_cast<long long>(step));
    return (fs::path(dir) / name).string();
}

void write_checkpoint(const RunSpec & s, const Model & m, const Trainer & tr, const std::string & path) {
    GgufWriter w;
    if (s.mode == TrainMode::LORA) {
        w.set_string("general.architecture", m.config().arch_name);
        w.set_string("general.type", "adapter");
        w.set_string("adapter.type", "lora");
        w.set_f32("adapter.lora.alpha", s.lora.alpha);
    } else {
        // The model's metadata and the tensors that are not trained (rope_freqs).
        for (const GgufKv & kv : m.file().kvs()) {
            if (kv.key.rfind("training.", 0) != 0) w.set(kv.key, kv.value);
        }
        for (const GgufTensorInfo & ti : m.file().tensors()) {
            const std::string name(ti.name);
            bool trained = false;
            for (const Tensor * p : tr.params()) trained = trained || p->name == name;
            const bool moment = name.ends_with(".adam_m") || name.ends_with(".adam_v");
            if (!trained && !moment) w.add_tensor(name, ti.type, std::span<const int64_t>(ti.ne.data(), ti.n_dims), m.file().tensor_data(ti));
        }
    }
    w.set_string("training.mode", train_mode_name(s.mode));
    w.set_string("training.config", spec_to_json(s).dump());
    // The data order and the LoRA initialization are functions of the seed, and the
    // learning rate of the step: these keys are for readers, resuming needs only the step.
    w.set_u64("training.data_position", static_cast<uint64_t>(tr.steps_done() * s.train.batch));
    w.set_u64("training.seed", s.seed);
    w.set_f32("training.lr", learning_rate(s.train, std::max<int64_t>(tr.steps_done() - 1, 0)));
    tr.save(w);
    w.write(path);
}

// Keeps the lines of metrics.jsonl up to `step`: a resumed run redoes the steps after
// its checkpoint and must not list them twice.
void truncate_metrics(const std::string & path, int64_t step) {
    std::ifstream in(path);
    std::string kept, line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        const json j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.value("step", int64_t{0}) <= step) kept += line + "\n";
    }
    in.close();
    std::ofstream(path, std::ios::trunc) << kept;
}

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

// Restores the previous SIGINT handler when the run ends.
struct SigintGuard {
    void (*prev)(int);
    SigintGuard() : prev(std::signal(SIGINT, on_sigint)) { g_interrupted = false; }
    ~SigintGuard() { std::signal(SIGINT, prev); }
};

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string fmt(double v) {  // round-trip exact, so that reruns can be compared bit for bit
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

}  // namespace

ModelConfig model_config_from_json(const std::string & path) {
    const json j = read_json(path);
    try {
        const std::string arch = j.value("arch", "llama");
        if (arch != "llama" && arch != "qwen2") throw Error(path + ": arch must be llama or qwen2, not '" + arch + "'");
        ModelConfig c;
        c.arch = arch == "llama" ? Arch::LLAMA : Arch::QWEN2;
        c.arch_name = arch;
        c.n_embd = j.at("n_embd");
        c.n_ff = j.at("n_ff");
        c.n_layer = j.at("n_layer");
        c.n_head = j.at("n_head");
        c.n_head_kv = j.value("n_head_kv", c.n_head);
        if (c.n_head <= 0) throw Error(path + ": n_head must be > 0");
        c.head_dim = j.value("head_dim", c.n_embd / c.n_head);
        c.n_vocab = j.value("n_vocab", int64_t{0});
        c.n_ctx_train = j.value("n_ctx_train", int64_t{2048});
        c.rope.mode = c.arch == Arch::LLAMA ? RopeMode::NORMAL : RopeMode::NEOX;
        c.rope.n_rot = static_cast<int32_t>(c.head_dim);
        c.rope.freq_base = j.value("rope_theta", 10000.0f);
        c.rms_eps = j.value("rms_eps", 1e-5f);
        c.tied_embeddings = j.value("tied_embeddings", true);
        c.qkv_bias = c.arch == Arch::QWEN2;
        return c;
    } catch (const json::exception & e) {
        throw Error(path + ": " + e.what());
    }
}

RunSpec load_run_spec(const std::string & run_dir) {
    const std::string path = (fs::path(run_dir) / "config.json").string();
    if (!fs::exists(path)) throw Error("'" + run_dir + "' is not a run directory (no config.json)");
    try {
        RunSpec s = spec_from_json(read_json(path));
        s.run_dir = run_dir;
        return s;
    } catch (const json::exception & e) {
        throw Error(path + ": " + e.what());
    }
}

std::string latest_checkpoint(const std::string & run_dir) {
    std::string best;
    std::error_code ec;
    for (const auto & e : fs::directory_iterator(run_dir, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("checkpoint-", 0) == 0 && n.ends_with(".gguf") && (best.empty() || n > fs::path(best).filename().string())) {
            best = e.path().string();
        }
    }
    if (best.empty()) throw Error("'" + run_dir + "' holds no checkpoint-*.gguf");
    return best;
}

RunResult run_training(const RunSpec & spec_in, bool resume, const std::function<void(const StepStats &, const Trainer &)> & on_step) {
    RunSpec s = spec_in;
    std::string ckpt;
    const std::string metrics_path = (fs::path(s.run_dir) / "metrics.jsonl").string();
    bool created = false;  // the directory is ours to remove if setting up fails
    if (resume) {
        s = load_run_spec(spec_in.run_dir);
        s.stop_at = spec_in.stop_at;
        s.train.device = spec_in.train.device;
        ckpt = latest_checkpoint(s.run_dir);
    } else {
        if (fs::exists(fs::path(s.run_dir) / "config.json")) {
            throw Error("'" + s.run_dir + "' already holds a run (use --resume to continue it, or another -o)");
        }
        if (s.data.empty()) throw Error("train: --data is required");
        created = !fs::exists(s.run_dir);
        fs::create_directories(s.run_dir);
    }

    Prepared p;
    std::unique_ptr<Dataset> data;
    std::unique_ptr<Trainer> trp;
    try {
        p = prepare(s, s.mode == TrainMode::LORA ? std::string() : ckpt);
        const auto tok = Tokenizer::from_gguf(p.model->file());
        data = std::make_unique<Dataset>(Dataset::from_path(s.data, *tok, {.n_ctx = s.n_ctx, .val_fraction = s.val_fraction, .seed = s.seed}));
        trp = std::make_unique<Trainer>(*p.model, p.params, *data, s.train);
    } catch (...) {
        if (created) fs::remove_all(s.run_dir);
        else if (!resume) fs::remove(fs::path(s.run_dir) / "init.gguf");
        throw;
    }
    Trainer & tr = *trp;
    if (!ckpt.empty()) {
        tr.restore(GgufFile::open(ckpt));
        truncate_metrics(metrics_path, tr.steps_done());
    } else {
        std::ofstream(fs::path(s.run_dir) / "config.json") << spec_to_json(s).dump(2) << "\n";
        std::ofstream(metrics_path, std::ios::trunc);
    }

    std::ofstream metrics(metrics_path, std::ios::app);
    auto log = [&](const json & j) { metrics << j.dump() << "\n" << std::flush; };
    RunResult r;
    r.val_loss = std::nan("");
    auto evaluate = [&] {
        r.val_loss = tr.evaluate();
        if (!std::isnan(r.val_loss)) log(json{{"step", tr.steps_done()}, {"val_loss", json::parse(fmt(r.val_loss))}});
    };
    auto save = [&] {
        r.checkpoint = checkpoint_path(s.run_dir, tr.steps_done());
        write_checkpoint(s, *p.model, tr, r.checkpoint);
    };
    if (tr.steps_done() == 0) {
        if (s.eval_every > 0) evaluate();
        const TrainMemory m = tr.memory();
        log(json{{"step", 0}, {"params", m.trainable / 4}, {"trainable_mb", m.trainable / 1048576.0}, {"frozen_mb", m.frozen / 1048576.0},
                 {"floor_mb", m.floor() / 1048576.0}, {"tokens_train", data->n_train() * data->n_ctx()}, {"tokens_val", data->n_val() * data->n_ctx()}});
    }

    SigintGuard sigint;
    while (tr.steps_done() < s.train.steps) {
        const StepStats st = tr.step();
        r.last_loss = st.loss;
        const TrainMemory m = tr.memory();
        log(json{{"step", st.step}, {"loss", json::parse(fmt(st.loss))}, {"lr", st.lr}, {"grad_norm", st.grad_norm},
                 {"tokens", st.tokens}, {"tokens_per_s", static_cast<double>(st.tokens) / st.seconds}, {"seconds", st.seconds},
                 {"mem_mb", m.total() / 1048576.0}, {"peak_rss_mb", peak_rss_mb()}});
        if (on_step) on_step(st, tr);
        const bool last = st.step == s.train.steps;
        if (s.eval_every > 0 && st.step % s.eval_every == 0 && !last) evaluate();
        if (last) break;
        if (g_interrupted || (s.stop_at > 0 && st.step >= s.stop_at)) {
            r.interrupted = true;
            break;
        }
        if (s.save_every > 0 && st.step % s.save_every == 0) save();
    }
    if (!r.interrupted) evaluate();
    save();
    r.steps_done = tr.steps_done();
    return r;
}

std::string export_run(const std::string & run_dir, const std::string & out_path, DType type) {
    if (!is_weight_storage_type(type)) throw Error("export: cannot store weights as " + std::string(dtype_name(type)));
    const RunSpec s = load_run_spec(run_dir);
    const std::string ckpt = latest_checkpoint(run_dir);
    const GgufFile f = GgufFile::open(ckpt);
    if (s.mode == TrainMode::LORA) {
        if (type != DType::F32) throw Error("export: adapters are written in f32 (--type applies to full and from-scratch runs)");
        auto model = Model::load(s.base_model);
        std::vector<Tensor *> params = add_lora(*model, s.lora, s.seed);
        for (Tensor * t : params) {
            const GgufTensorInfo & ti = f.get_tensor(t->name);
            if (ti.type != DType::F32 || ti.n_bytes != t->n_bytes()) throw Error("checkpoint " + ckpt + ": '" + t->name + "' does not match the run");
            std::memcpy(t->data, f.tensor_data(ti).data(), t->n_bytes());
        }
        write_lora_gguf(*model, s.lora, out_path);
        return ckpt;
    }
    GgufWriter w(f.version());
    for (const GgufKv & kv : f.kvs()) {
        if (kv.key.rfind("training.", 0) != 0) w.set(kv.key, kv.value);
    }
    w.set_u32("general.file_type", gguf_file_type(type));
    if (dtype_info(type).block_size > 1) w.set_u32("general.quantization_version", 2);
    std::vector<std::vector<uint8_t>> storage;  // converted tensors until write()
    for (const GgufTensorInfo & ti : f.tensors()) {
        const std::string name(ti.name);
        if (name.ends_with(".adam_m") || name.ends_with(".adam_v")) continue;
        const auto ne = std::span<const int64_t>(ti.ne.data(), ti.n_dims);
        if (ti.type != DType::F32 || !retypes_tensor(name, ne, type)) {
            w.add_tensor(name, ti.type, ne, f.tensor_data(ti));
            continue;
        }
        auto & bytes = storage.emplace_back(dtype_row_bytes(type, ti.ne[0]) * static_cast<size_t>(ti.n_elements() / ti.ne[0]));
        const size_t out_row = dtype_row_bytes(type, ti.ne[0]);
        const float * src = reinterpret_cast<const float *>(f.tensor_data(ti).data());
        for (int64_t r = 0; r < ti.n_elements() / ti.ne[0]; ++r) quantize_row(type, src + r * ti.ne[0], bytes.data() + static_cast<size_t>(r) * out_row, ti.ne[0]);
        w.add_tensor(name, type, ne, bytes);
    }
    w.write(out_path);
    return ckpt;
}

}  // namespace toyllm
