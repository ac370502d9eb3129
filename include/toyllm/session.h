// Running a model: a KV cache, a backend and the current position. eval() feeds tokens
// (a long prompt in chunks of n_batch) and returns logits.
#pragma once

#include "toyllm/graph.h"
#include "toyllm/model.h"

#include <span>
#include <vector>

namespace toyllm {

struct SessionConfig {
    int64_t n_ctx = 0;        // positions the cache holds; 0 = the model's context_length
    int64_t n_batch = 256;    // prompt tokens per forward (chunked prefill)
    int n_threads = 2;        // CPU threads
    std::string device = "cpu";
    DType cache_type = DType::F32;  // F32, or F16: half the memory, llama.cpp's attention order (cpu only)
    const Taps * taps = nullptr;  // nodes to keep on every eval (read with tap())
};

class Session {
  public:
    Session(Model & model, const SessionConfig & cfg);

    // Feeds tokens after those already seen. Returns the logits of the last token
    // [n_vocab], or of every token [T * n_vocab] when all_logits.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);

    int64_t n_past() const { return cache_.n_past; }
    int64_t n_ctx() const { return cache_.n_ctx; }
    void reset() { cache_.n_past = 0; }
    const Model & model() const { return model_; }
    Backend & backend() { return *backend_; }

    // Graphs built so far: one per prompt chunk, and one for the first of a run of
    // one-token evals (the next ones rerun it).
    int64_t n_graphs_built() const { return n_graphs_built_; }

    // A tapped node of the last forward, as floats (empty if it was not tapped).
    std::vector<float> tap(std::string_view name) const;

  private:
    Model & model_;
    SessionConfig cfg_;
    KvCache cache_;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Context> last_ctx_;  // the last forward's nodes (taps are read from it)
    std::unique_ptr<Graph> last_graph_;

    // The last one-token graph, kept to run the next token: its ids and positions are
    // rewritten, its cache writes moved to the new position and the views that read the
    // cache lengthened by one (a built graph costs 0.2-0.4 ms of building and planning).
    struct Step {
        Tensor * ids = nullptr;
        Tensor * pos = nullptr;
        Tensor * logits = nullptr;
        bool all_logits = false;
        std::vector<Tensor *> writes;  // write_window into the cache: begin dim 2 = n_past
        std::vector<Tensor *> reads;   // views of those: ne[2] = n_past + 1
    };
    Step step_;
    int64_t n_graphs_built_ = 0;
    bool reuse_step(int32_t token, bool all_logits);
    void keep_step(Tensor * ids, Tensor * pos, Tensor * logits, bool all_logits);
};

}  // namespace toyllm
