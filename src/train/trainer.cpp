#include "toyllm/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

namespace toyllm {

const char * train_mode_name(TrainMode m) {
    switch (m) {
        case TrainMode::SCRATCH: return "scratch";
        case TrainMode::FULL: return "full";
        case TrainMode::LORA: return "lora";
    }
    return "?";
}

float learning_rate(const TrainOptions & o, int64_t step) {
    if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<float>(step + 1) / static_cast<float>(o.warmup);
    const int64_t decay_steps = o.steps - o.warmup - 1;
    if (decay_steps <= 0) return o.lr;
    const double progress = std::min(1.0, static_cast<double>(step - o.warmup) / static_cast<double>(decay_steps));
    const double min_lr = static_cast<double>(o.lr) * o.min_lr_ratio;
    return static_cast<float>(min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

// One forward (+ backward) graph over a [n_ctx, n_seq] batch of token sequences.
struct LossGraph {
    Context ctx;
    Tensor * tokens = nullptr;     // i32 [T, B]
    Tensor * targets = nullptr;    // i32 [T, B]
    Tensor * positions = nullptr;  // i32 [T]
    Tensor * loss = nullptr;       // mean cross-entropy of this batch
    Graph graph;

    LossGraph(const Model & m, int64_t T, int64_t B, float loss_scale, bool backward) {
        tokens = ctx.new_tensor(DType::I32, {T, B}, "tokens");
        targets = ctx.new_tensor(DType::I32, {T, B}, "targets");
        positions = ctx.new_tensor(DType::I32, {T}, "positions");
        for (Tensor * t : {tokens, targets, positions}) {
            ctx.alloc(t);
            t->flags |= TENSOR_INPUT;
        }
        for (int64_t t = 0; t < T; ++t) positions->data_as<int32_t>()[t] = static_cast<int32_t>(t);
        Tensor * logits = m.forward(ctx, {.tokens = tokens, .positions = positions});
        logits->flags &= ~TENSOR_OUTPUT;  // only the loss is read back
        loss = cross_entropy(ctx, logits, targets, Dataset::kIgnore);
        loss->name = "loss";
        set_output(loss);
        Tensor * root = loss;
        if (loss_scale != 1.0f) root = scale(ctx, loss, loss_scale);
        graph.build_forward(root);
        if (backward) graph.build_backward(ctx, root);
    }

    int64_t count_targets() const {
        int64_t n = 0;
        const int32_t * t = targets->data_as<int32_t>();
        for (int64_t i = 0; i < targets->n_elements(); ++i) n += t[i] != Dataset::kIgnore;
        return n;
    }
};

struct Trainer::Graphs {
    std::unique_ptr<LossGraph> train, eval;
};

Trainer::Trainer(Model & model, std::vector<Tensor *> params, const Dataset & data, const TrainOptions & opts)
    : model_(model), params_(std::move(params)), data_(data), opts_(opts), g_(std::make_unique<Graphs>()) {
    if (opts_.micro_batch == 0) opts_.micro_batch = opts_.batch;
    if (opts_.batch < 1 || opts_.micro_batch < 1 || opts_.batch % opts_.micro_batch != 0) {
        throw Error("train: --micro-batch " + std::to_string(opts_.micro_batch) + " must divide --batch " + std::to_string(opts_.batch));
    }
    if (opts_.steps < 1) throw Error("train: --steps must be >= 1");
    if (params_.empty()) throw Error("train: nothing to train");
    for (Tensor * p : params_) {
        if (!p->is_param()) throw Error("train: '" + p->name + "' is not a trainable tensor");
    }
    const int64_t n_accum = opts_.batch / opts_.micro_batch;
    g_->train = std::make_unique<LossGraph>(model_, data_.n_ctx(), opts_.micro_batch, 1.0f / static_cast<float>(n_accum), true);
    for (Tensor * p : params_) {
        if (p->grad == nullptr) throw Error("train: the loss does not depend on '" + p->name + "'");
    }
    if (data_.n_val() > 0) {
        g_->eval = std::make_unique<LossGraph>(model_, data_.n_ctx(), std::min(opts_.micro_batch, data_.n_val()), 1.0f, false);
    }
    optimizer_ = std::make_unique<AdamW>(pctx_, params_,
                                         AdamWConfig{.lr = opts_.lr, .weight_decay = opts_.weight_decay, .grad_clip = opts_.grad_clip, .n_threads = opts_.n_threads});
    backend_ = make_backend(opts_.device, {.n_threads = opts_.n_threads});
}

Trainer::~Trainer() = default;

StepStats Trainer::step() {
    const auto t0 = std::chrono::steady_clock::now();
    LossGraph & lg = *g_->train;
    const int64_t T = data_.n_ctx(), mb = opts_.micro_batch, n_accum = opts_.batch / mb;
    const int64_t step = steps_done();
    g_->train->graph.zero_grads();
    StepStats s;
    for (int64_t a = 0; a < n_accum; ++a) {
        for (int64_t j = 0; j < mb; ++j) {
            const int64_t pos = step * opts_.batch + a * mb + j;
            data_.train_sequence(pos, lg.tokens->data_as<int32_t>() + j * T, lg.targets->data_as<int32_t>() + j * T);
        }
        backend_->compute(lg.graph);
        s.loss += static_cast<double>(lg.loss->data_as<float>()[0]);
        s.tokens += lg.count_targets();
    }
    s.loss /= static_cast<double>(n_accum);
    s.lr = learning_rate(opts_, step);
    s.grad_norm = optimizer_->step(s.lr);
    s.step = steps_done();
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
}

double Trainer::evaluate() {
    if (!g_->eval) return std::numeric_limits<double>::quiet_NaN();
    LossGraph & lg = *g_->eval;
    const int64_t T = data_.n_ctx(), B = lg.tokens->ne[1];
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < data_.n_val(); i += B) {
        for (int64_t j = 0; j < B; ++j) {
            int32_t * inp = lg.tokens->data_as<int32_t>() + j * T;
            int32_t * tgt = lg.targets->data_as<int32_t>() + j * T;
            if (i + j < data_.n_val()) {
                data_.val_sequence(i + j, inp, tgt);
            } else {  // past the end: a batch row without targets
                std::fill(inp, inp + T, 0);
                std::fill(tgt, tgt + T, Dataset::kIgnore);
            }
        }
        backend_->compute(lg.graph);
        const int64_t n = lg.count_targets();
        sum += static_cast<double>(lg.loss->data_as<float>()[0]) * static_cast<double>(n);
        count += n;
    }
    return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

TrainMemory Trainer::memory() const {
    TrainMemory m;
    for (const Tensor * p : params_) m.trainable += p->n_bytes();
    std::vector<const Tensor *> seen;
    auto frozen = [&](const Tensor * t) {
        if (t == nullptr || t->is_param() || std::find(seen.begin(), seen.end(), t) != seen.end()) return;
        seen.push_back(t);
        m.frozen += t->n_bytes();
    };
    const ModelWeights & w = model_.weights();
    for (const Tensor * t : {w.tok_embd, w.output_norm, w.output, w.rope_freqs}) frozen(t);
    for (const BlockWeights & b : w.blocks) {
        for (const Tensor * t : {b.attn_norm, b.wq, b.wk, b.wv, b.wo, b.bq, b.bk, b.bv, b.ffn_norm, b.w_gate, b.w_up, b.w_down}) frozen(t);
    }
    if (const Graph::Memory * gm = g_->train->graph.memory()) m.activations = gm->peak_bytes;
    return m;
}

void Trainer::save(GgufWriter & w) const {
    auto bytes = [](const Tensor * t) { return std::span<const uint8_t>(static_cast<const uint8_t *>(t->data), t->n_bytes()); };
    for (size_t i = 0; i < params_.size(); ++i) {
        for (const Tensor * t : {params_[i], optimizer_->m(i), optimizer_->v(i)}) {
            w.add_tensor(t->name, DType::F32, std::span<const int64_t>(t->ne.data(), static_cast<size_t>(t->n_dims())), bytes(t));
        }
    }
    w.set_u64("training.step", static_cast<uint64_t>(steps_done()));
}

void Trainer::restore(const GgufFile & f) {
    for (size_t i = 0; i < params_.size(); ++i) {
        for (Tensor * t : {params_[i], optimizer_->m(i), optimizer_->v(i)}) {
            const GgufTensorInfo * ti = f.find_tensor(t->name);
            if (ti == nullptr) throw Error("checkpoint " + f.path() + ": no tensor '" + t->name + "'");
            bool same = ti->type == DType::F32;
            for (int d = 0; d < 4; ++d) same = same && ti->ne[static_cast<size_t>(d)] == t->ne[static_cast<size_t>(d)];
            if (!same) throw Error("checkpoint " + f.path() + ": tensor '" + t->name + "' does not match the run's " + shape_str(*t) + " f32");
            std::memcpy(t->data, f.tensor_data(*ti).data(), t->n_bytes());
        }
    }
    const GgufValue * step = f.find("training.step");
    if (step == nullptr || !step->is_integer()) throw Error("checkpoint " + f.path() + ": no training.step");
    optimizer_->set_steps_done(step->as_int());
}

}  // namespace toyllm
