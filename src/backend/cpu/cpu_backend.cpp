// The CPU backend: plans a graph's memory into one host arena, then runs each node's
// kernel on the thread pool, phase by phase. TOYLLM_PROFILE=1 in the environment prints,
// when the backend is destroyed, the time spent per op (matmul split by its form).
#include "backend/cpu/kernels.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/thread_pool.h"

#include "backend/op_profile.h"
#include "toyllm/graph.h"

#ifdef TOYLLM_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace toyllm {

namespace {

constexpr size_t kAlign = 64;

struct Free {
    void operator()(void * p) const { std::free(p); }
};

struct HostMemory : Graph::Memory {
    std::unique_ptr<uint8_t, Free> arena;
};

uint8_t * aligned_bytes(size_t n) {
    n = (n + kAlign - 1) / kAlign * kAlign;
    void * p = std::aligned_alloc(kAlign, n == 0 ? kAlign : n);
    if (p == nullptr) throw Error("cpu backend: out of memory allocating " + std::to_string(n) + " bytes");
    return static_cast<uint8_t *>(p);
}

class CpuBackend : public Backend {
  public:
    explicit CpuBackend(const BackendConfig & cfg) : pool_(cfg.n_threads < 1 ? 1 : cfg.n_threads) {
        if (OpProfile::requested()) profile_ = std::make_unique<OpProfile>("cpu backend profile (" + std::to_string(pool_.size()) + " threads)");
    }

    const char * name() const override { return "cpu"; }

    bool supports(const Tensor & node) const override { return node.op < Op::COUNT; }

    size_t derived_weight_bytes() const override { return packed_weights_.bytes(); }

    // One pool run for the whole graph: every thread walks the nodes and the threads
    // meet at a barrier after each phase (waking the pool per phase cost about 1.5 us,
    // against 0.1-0.3 us for a barrier, and a decode step has about 600 phases). A kernel
    // that throws stops every thread at the next barrier; compute() rethrows.
    void compute(Graph & g) override {
        if (g.memory() == nullptr) allocate(g);
        uint8_t * scratch = scratch_for(g);
        const std::vector<const void *> & packed = packed_for(g);
        cpu::SpinBarrier barrier(pool_.size());
        std::atomic<bool> failed{false};
        std::mutex error_mu;
        std::exception_ptr error;
        pool_.run([&](int ith, int nth) {
            const auto & nodes = g.nodes();
            for (size_t i = 0; i < nodes.size(); ++i) {
                Tensor * node = nodes[i];
                const cpu::CpuKernel & kern = cpu::cpu_kernel(node->op);
                const int run = runs_[i];
                if (kern.n_phases == 0 || run == 0) continue;
                const bool timed = profile_ != nullptr && ith == 0;
                const auto t0 = timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
                for (int phase = 0; phase < kern.n_phases; ++phase) {
                    try {
                        const cpu::KernelCtx k{ith, nth, phase, scratch, packed[i]};
                        if (run > 1 && phase == 1) cpu::kernel_matmul_packed_run(k, &nodes[i], &packed[i], run);
                        else kern.run(k, node);
                    } catch (...) {
                        const std::lock_guard<std::mutex> lock(error_mu);
                        if (!error) error = std::current_exception();
                        failed.store(true, std::memory_order_relaxed);
                    }
                    barrier.wait();
                    if (failed.load(std::memory_order_relaxed)) return;
                }
                if (timed) record_run(&nodes[i], run, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
        });
        if (error) std::rethrow_exception(error);
    }

  private:
    void allocate(Graph & g) {
        const MemoryPlan plan = plan_memory(g, kAlign);
        auto mem = std::make_unique<HostMemory>();
        mem->peak_bytes = plan.peak_bytes;
        mem->arena.reset(aligned_bytes(plan.peak_bytes));
        const auto & nodes = g.nodes();
        for (size_t i = 0; i < nodes.size(); ++i) {
            Tensor * t = nodes[i];
            if (t->view_src != nullptr) {
                t->data = static_cast<uint8_t *>(t->view_src->data) + t->view_offs;
            } else {
                t->data = mem->arena.get() + plan.offsets[i];
            }
        }
        g.set_memory(std::move(mem));
    }

    // Scratch depends on this pool's size, not only on the graph (a graph planned by a
    // backend with fewer threads may run here), so the backend owns it and grows it.
    uint8_t * scratch_for(const Graph & g) {
        size_t need = 0;
        for (const Tensor * t : g.nodes()) {
            const cpu::CpuKernel & kern = cpu::cpu_kernel(t->op);
            if (kern.scratch_bytes) need = std::max(need, kern.scratch_bytes(t, pool_.size()));
        }
        if (scratch_ == nullptr || need > scratch_bytes_) {
            scratch_.reset(aligned_bytes(need));
            scratch_bytes_ = need;
        }
        return scratch_.get();
    }

    // A run's time shared between its products by their weight bytes.
    void record_run(Tensor * const * nodes, int run, double seconds) {
        double total = 0.0;
        for (int j = 0; j < run; ++j) total += static_cast<double>(nodes[j]->src[0]->n_bytes());
        for (int j = 0; j < run; ++j) {
            profile_->record(nodes[j], run == 1 ? seconds : seconds * static_cast<double>(nodes[j]->src[0]->n_bytes()) / total);
        }
    }

    // The packed weights (repack.h) of the graph's matmuls, by node, and the runs of
    // them that read the same activation (runs_: a run's length at its first node, 0 at
    // the others, 1 for every other node); packs those new to this backend first. The
    // original of a new one is released unless another node of the graph reads it (tied
    // embeddings: get_rows would fault its rows back in from the file, 0.1-0.7 ms a
    // token here).
    const std::vector<const void *> & packed_for(const Graph & g) {
        const auto & nodes = g.nodes();
        packed_.assign(nodes.size(), nullptr);
        std::unordered_set<const Tensor *> read_plainly;
        bool scanned = false;
        for (size_t i = 0; i < nodes.size(); ++i) {
            if (!cpu::matmul_uses_packed(nodes[i])) continue;
            const Tensor * w = nodes[i]->src[0];
            packed_[i] = packed_weights_.find(w);
            if (packed_[i] != nullptr) continue;
            if (!scanned) {
                for (const Tensor * n : nodes) {
                    const bool packed = cpu::matmul_uses_packed(n);
                    for (const Tensor * src : n->src) {
                        if (src != nullptr && !(packed && src == n->src[0])) read_plainly.insert(src);
                    }
                }
                scanned = true;
            }
            packed_[i] = packed_weights_.get(w, pool_, !read_plainly.contains(w));
        }
        runs_.assign(nodes.size(), 1);
        for (size_t i = 0; i < nodes.size();) {
            size_t j = i + 1;
            while (packed_[i] != nullptr && j < nodes.size() && packed_[j] != nullptr && cpu::matmul_packed_joins(nodes[i], nodes[j])) {
                runs_[j++] = 0;
            }
            runs_[i] = static_cast<int>(j - i);
            i = j;
        }
        return packed_;
    }

    cpu::ThreadPool pool_;
    cpu::PackedWeights packed_weights_;
    std::vector<const void *> packed_;
    std::vector<int> runs_;
    std::unique_ptr<OpProfile> profile_;  // TOYLLM_PROFILE=1
    std::unique_ptr<uint8_t, Free> scratch_;
    size_t scratch_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_backend(std::string_view device, const BackendConfig & cfg) {
    if (device == "cpu") return std::make_unique<CpuBackend>(cfg);
    if (device == "cuda") {
#ifdef TOYLLM_HAVE_CUDA
        return cuda::make_cuda_backend(cfg);
#else
        throw Error("device cuda: this build of toyllm has no CUDA backend (configure with -DTOYLLM_CUDA=ON)");
#endif
    }
    throw Error("unknown device '" + std::string(device) + "' (expected cpu or cuda)");
}

}  // namespace toyllm
