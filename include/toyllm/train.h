// Training: one optimizer step at a time over a Dataset, with gradient accumulation,
// AdamW, warmup + cosine learning rate and checkpoints that resume bit for bit.
//
//   auto model = Model::load("base.gguf");
//   Trainer tr(*model, model->make_trainable(), data, opts);   // or add_lora(...)
//   for (int i = 0; i < opts.steps; ++i) StepStats s = tr.step();
//
// The forward/backward graph is built once for [n_ctx, micro_batch] token batches and
// reused every micro-step; gradients accumulate in the params' persistent grads.
#pragma once

#include "toyllm/adamw.h"
#include "toyllm/dataset.h"
#include "toyllm/graph.h"
#include "toyllm/lora.h"
#include "toyllm/model.h"

#include <memory>
#include <string>
#include <vector>

namespace toyllm {

enum class TrainMode { SCRATCH, FULL, LORA };
const char * train_mode_name(TrainMode m);  // "scratch", "full", "lora"

struct TrainOptions {
    int64_t steps = 100;         // optimizer steps of the whole run (the schedule's length)
    int64_t batch = 8;           // sequences per optimizer step
    int64_t micro_batch = 0;     // sequences per forward/backward; 0 = batch; must divide batch
    int64_t warmup = 10;         // linear warmup steps
    float lr = 1e-3f;            // peak learning rate
    float min_lr_ratio = 0.1f;   // the cosine ends at lr * min_lr_ratio
    float weight_decay = 0.0f;
    float grad_clip = 1.0f;      // global-norm clipping; 0 = off
    int n_threads = 2;
    std::string device = "cpu";  // backend of the forward/backward ("cpu" or "cuda"); not saved
                                 // with the run: a resumed run may use another
};

// The learning rate of optimizer step `step` (0-based): linear warmup to lr over
// `warmup` steps, then cosine decay to lr * min_lr_ratio at step steps - 1.
float learning_rate(const TrainOptions & o, int64_t step);

struct StepStats {
    int64_t step = 0;        // 1-based number of the step just taken
    double loss = 0.0;       // mean over its micro-batches
    float lr = 0.0f;
    float grad_norm = 0.0f;  // before clipping
    int64_t tokens = 0;      // tokens with a target in this step
    double seconds = 0.0;
};

// Bytes a run holds, for reports: the floor is weights + gradients + AdamW moments.
struct TrainMemory {
    size_t trainable = 0;     // params (f32)
    size_t frozen = 0;        // weights that are not trained (mmap'd or not)
    size_t activations = 0;   // planned peak of the training graph
    size_t floor() const { return 4 * trainable + frozen; }  // weights, grads, m, v
    size_t total() const { return floor() + activations; }
};

class Trainer {
  public:
    // `params` are the model's trainable tensors (Model::make_trainable or add_lora).
    Trainer(Model & model, std::vector<Tensor *> params, const Dataset & data, const TrainOptions & opts);
    ~Trainer();

    StepStats step();
    // Mean loss over every target of the validation sequences; NaN when there are none.
    double evaluate();

    int64_t steps_done() const { return optimizer_->steps_done(); }
    const std::vector<Tensor *> & params() const { return params_; }
    AdamW & optimizer() { return *optimizer_; }
    const TrainOptions & options() const { return opts_; }
    TrainMemory memory() const;

    // Writes weights (or adapters) with their AdamW moments and the step; restores them.
    // `extra` kvs (run config, mode) are the caller's.
    void save(GgufWriter & w) const;
    void restore(const GgufFile & f);

  private:
    struct Graphs;
    Model & model_;
    std::vector<Tensor *> params_;
    const Dataset & data_;
    TrainOptions opts_;
    Context pctx_;  // grads and moments
    std::unique_ptr<Graphs> g_;
    std::unique_ptr<AdamW> optimizer_;
    std::unique_ptr<Backend> backend_;
};

}  // namespace toyllm
