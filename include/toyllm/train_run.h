// A training run in a directory: config.json (everything needed to resume), metrics.jsonl
// (one JSON object per step and per evaluation) and checkpoint-STEP.gguf files, each
// written atomically. `toyllm train`, `finetune`, `export` and `demo` are thin layers
// over these functions.
//
// A checkpoint of a full or from-scratch run is a model GGUF (toyllm loads it as a
// model) plus "<param>.adam_m"/".adam_v" moments and training.* keys; one of a LoRA run
// holds the adapters (per-head Q kept per head) with their moments.
#pragma once

#include "toyllm/model.h"
#include "toyllm/train.h"

#include <functional>
#include <string>

namespace toyllm {

struct RunSpec {
    TrainMode mode = TrainMode::FULL;
    std::string preset;          // SCRATCH: a model_preset() name, or
    std::string config_file;     // SCRATCH: a JSON model config (see model_config_from_json)
    std::string base_model;      // FULL, LORA: the GGUF to start from
    std::string tokenizer_from;  // SCRATCH: copy this GGUF's tokenizer; empty = byte-level
    std::string data;            // a text file or a directory of them
    std::string run_dir;
    int64_t n_ctx = 128;
    double val_fraction = 0.1;
    uint64_t seed = 0;
    int64_t eval_every = 0;      // also evaluates before the first step; 0 = only at the end
    int64_t save_every = 0;      // 0 = only at the end (and when interrupted)
    int64_t stop_at = 0;         // stop after this step with a checkpoint, as if interrupted
    TrainOptions train;
    LoraConfig lora;
};

// {"arch": "llama"|"qwen2", "n_embd", "n_ff", "n_layer", "n_head", "n_head_kv",
//  optional "head_dim", "n_ctx_train", "rope_theta", "rms_eps", "tied_embeddings"}.
ModelConfig model_config_from_json(const std::string & path);

struct RunResult {
    int64_t steps_done = 0;
    double last_loss = 0.0;
    double val_loss = 0.0;          // NaN without a validation split
    std::string checkpoint;         // the last one written
    bool interrupted = false;
};

// Starts a run in spec.run_dir (which must not hold a run already) or, with resume,
// continues the one there from its latest checkpoint; spec's values are then read from
// the run's config.json except stop_at. `on_step` sees every step (progress display).
RunResult run_training(const RunSpec & spec, bool resume, const std::function<void(const StepStats &, const Trainer &)> & on_step = {});

RunSpec load_run_spec(const std::string & run_dir);
// The checkpoint with the highest step; throws Error when there is none.
std::string latest_checkpoint(const std::string & run_dir);

// Writes the run's latest weights as a model GGUF (SCRATCH, FULL) with the weight
// matrices stored as `type` (f32, f16, bf16, q8_0, q4_0; norms stay f32), or its adapters
// as a llama.cpp adapter GGUF in f32 (LORA). Returns the checkpoint it read.
std::string export_run(const std::string & run_dir, const std::string & out_path, DType type = DType::F32);

}  // namespace toyllm
