// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments, optional
// clipping of the gradients by their global L2 norm. The moments are ordinary named
// tensors ("<param>.adam_m", "<param>.adam_v") so checkpoints save them like weights.
#pragma once

#include "toyllm/tensor.h"

#include <memory>
#include <vector>

namespace toyllm {

namespace cpu {
class ThreadPool;
}

struct AdamWConfig {
    float lr = 1e-3f;            // default learning rate (step() may override it)
    float beta1 = 0.9f;          // decay of the first moment
    float beta2 = 0.999f;        // decay of the second moment
    float eps = 1e-8f;           // added to sqrt(v_hat)
    float weight_decay = 0.0f;   // p -= lr * weight_decay * p before the Adam update
    float grad_clip = 0.0f;      // clip to this global L2 norm (as torch.nn.utils.clip_grad_norm_); 0 = off
    int n_threads = 1;           // threads for the update (the result does not depend on it)
};

class AdamW {
  public:
    // Allocates zeroed moments for every param (f32, each with its grad) in ctx.
    AdamW(Context & ctx, std::vector<Tensor *> params, const AdamWConfig & cfg);
    ~AdamW();

    // One update of every param from its grad; returns the global gradient norm before
    // clipping. lr < 0 uses cfg.lr (schedules pass theirs).
    float step(float lr = -1.0f);

    int64_t steps_done() const { return t_; }
    void set_steps_done(int64_t t) { t_ = t; }  // when resuming from a checkpoint
    const std::vector<Tensor *> & params() const { return params_; }
    Tensor * m(size_t i) const { return m_[i]; }
    Tensor * v(size_t i) const { return v_[i]; }

  private:
    // Elements [begin, end) of param j: the unit of work and of the norm's partial sums,
    // fixed at construction so that the summation order does not depend on n_threads.
    struct Chunk {
        size_t j;
        int64_t begin, end;
    };

    AdamWConfig cfg_;
    std::vector<Tensor *> params_, m_, v_;
    std::vector<Chunk> chunks_;
    std::vector<double> partial_;  // sum of squared gradients per chunk
    std::unique_ptr<cpu::ThreadPool> pool_;
    int64_t t_ = 0;
};

}  // namespace toyllm
