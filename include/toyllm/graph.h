// A computation graph: the nodes needed for some outputs, in execution order, and
// optionally the backward pass of a scalar loss. A backend plans its memory (nodes
// whose lifetimes do not overlap share bytes), then computes it.
//
//   Graph g;
//   g.build_forward(loss);
//   g.build_backward(ctx, loss);       // p->grad for every param p the loss depends on
//   auto be = make_backend("cpu", {.n_threads = 2});
//   be->compute(g);                    // again after changing inputs: same plan
#pragma once

#include "toyllm/tensor.h"

#include <memory>
#include <string_view>
#include <unordered_set>

namespace toyllm {

class Graph {
  public:
    // Appends t and every node it depends on that is not in the graph yet, sources first.
    // Products of constant weights (TENSOR_CONSTANT) with the same activation follow one
    // another (Q, K and V; gate and up): each is moved up behind the first of them, so
    // that a backend can take them in one pass.
    void build_forward(Tensor * t);

    // Appends the backward pass of `loss` (f32 [1]). Every param p that the loss depends
    // on gets p->grad: a persistent f32 tensor shaped like p, allocated (zeroed) in ctx,
    // to which each compute ADDS dloss/dp; zero_grads() clears them (gradient
    // accumulation over micro-batches is computing several times before zeroing).
    void build_backward(Context & ctx, Tensor * loss);

    const std::vector<Tensor *> & nodes() const { return nodes_; }
    std::vector<Tensor *> params() const;
    Tensor * find(std::string_view name) const;  // a node or leaf by name; nullptr if absent
    void zero_grads();

    // Memory for the nodes, owned by the graph once a backend has planned it.
    struct Memory {
        virtual ~Memory() = default;
        size_t peak_bytes = 0;  // activation bytes of the plan
    };
    const Memory * memory() const { return memory_.get(); }
    void set_memory(std::unique_ptr<Memory> m) { memory_ = std::move(m); }

  private:
    void visit(Tensor * t);
    void group_shared_products();

    std::vector<Tensor *> nodes_;  // ops and views, in execution order
    std::vector<Tensor *> leafs_;  // inputs, weights, params
    std::unordered_set<const Tensor *> seen_;
    std::unique_ptr<Memory> memory_;
};

// Where each node of a graph lives in one activation arena: offsets[i] for nodes()[i]
// (-1 for leaves and views, which have memory already or share it).
struct MemoryPlan {
    std::vector<int64_t> offsets;
    size_t peak_bytes = 0;
};
MemoryPlan plan_memory(const Graph & g, size_t alignment);

struct BackendConfig {
    int n_threads = 1;  // CPU worker threads (the caller's thread included)
};

class Backend {
  public:
    virtual ~Backend() = default;
    virtual const char * name() const = 0;
    virtual bool supports(const Tensor & node) const = 0;
    // Plans and allocates the graph's memory on the first call, then runs every node.
    virtual void compute(Graph & g) = 0;
    // The memory bandwidth this backend's device measures now, in GB/s of bytes read plus
    // bytes written (a device-to-device copy on a GPU); 0 where the backend does not
    // measure it (the CPU's bound comes from the triad in memory_bandwidth.h).
    virtual double memory_gbps() { return 0.0; }
    // Bytes of weight copies the backend keeps in a layout of its own (the CPU's packed
    // matrices), made so far.
    virtual size_t derived_weight_bytes() const { return 0; }
};

// "cpu" (always) or "cuda" (when built with TOYLLM_CUDA; else an Error that says so, and
// "no CUDA device found (cudaGetDeviceCount: ...)" on a machine without a GPU). The CUDA
// backend uploads a leaf once and treats it as constant unless it is flagged TENSOR_INPUT
// or TENSOR_PARAM: flag every leaf the host rewrites between computes.
std::unique_ptr<Backend> make_backend(std::string_view device, const BackendConfig & cfg);

}  // namespace toyllm
