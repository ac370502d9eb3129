// The CUDA backend. Tensor::data stays the host's pointer; the backend keeps device
// copies of its own:
//
// - Leaves (weights, inputs, params, KV caches, grads) get one device buffer each, kept
//   across graphs and keyed by the Tensor (and its host pointer, size and type).
//   Quantized weights are copied as they are stored ("Q8 stays Q8"). A leaf is uploaded
//   when first seen, and again before every compute when it is flagged TENSOR_INPUT or
//   TENSOR_PARAM (the host rewrites those: token ids, zeroed grads, optimizer steps).
//   Any other leaf is taken to be constant, except through the graph itself.
// - Nodes live in one device arena per graph, planned by plan_memory; views point into
//   their base's memory at view_offs, as on the CPU. A host arena of the same plan backs
//   Tensor::data of the nodes, so that the host reads outputs where it always does.
// - After a compute, nodes flagged TENSOR_OUTPUT are copied to the host; so is what an
//   in-place node (view_src set: write_window into a KV cache, add_inplace into a grad)
//   wrote into a leaf: its window only, so that a KV-cache append copies back T rows and
//   not the cache. The device copy of such a leaf stays valid (it is the one written),
//   and the host copy equals it after every compute, except for leaves flagged
//   TENSOR_DEVICE_STATE (Session's KV cache), which are never copied back.
//
// One stream; kernels run in node order; scratch blocks come from the caching allocator
// and go back to it after each node. TOYLLM_PROFILE=1 times every node with CUDA events
// and prints the time per op when the backend is destroyed (as the CPU backend does).
#include "backend/cuda/cuda_backend.h"

#include "backend/cuda/device_allocator.h"
#include "backend/cuda/kernels.h"

#include "backend/op_profile.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace toyllm::cuda {

namespace {

constexpr size_t kAlign = 256;    // device arena alignment (cudaMalloc gives 256)
constexpr int64_t kEvictAfter = 8;  // computes a cached leaf may go unused before it is freed

const Tensor * base_of(const Tensor * t) {
    while (t->view_src != nullptr) t = t->view_src;
    return t;
}

// Byte offset of t inside its root base.
int64_t offset_in_base(const Tensor * t) {
    int64_t off = 0;
    for (; t->view_src != nullptr; t = t->view_src) off += t->view_offs;
    return off;
}

// The allocator outlives the backend while a graph planned by it holds device memory.
struct Device {
    DeviceAllocator alloc;
};

struct HostFree {
    void operator()(void * p) const { std::free(p); }
};

struct CudaMemory : Graph::Memory {
    std::shared_ptr<Device> device;
    void * arena = nullptr;
    std::unique_ptr<uint8_t, HostFree> host;
    std::unordered_map<const Tensor *, int64_t> offsets;  // arena offset of each node that owns memory
    ~CudaMemory() override {
        if (arena != nullptr) device->alloc.free(arena);
    }
};

struct LeafCopy {
    void * dev = nullptr;
    const void * host = nullptr;
    size_t bytes = 0;
    DType type = DType::F32;
    int64_t last_used = 0;
};

class CudaBackend : public Backend {
  public:
    explicit CudaBackend(const BackendConfig &) : device_(std::make_shared<Device>()) {
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating the stream");
        if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) throw Error("cuda: cublasCreate failed");
        cublasSetStream(cublas_, stream_);
        // Plain f32 GEMMs (no TF32) so that results track the CPU's.
        cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH);
        int dev = 0;
        check(cudaGetDevice(&dev), "cudaGetDevice");
        check(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, dev), "reading the SM count");
        if (OpProfile::requested()) {
            // TOYLLM_PROFILE=host: the host's phases and the device's time per compute only,
            // with no events between the nodes (those add a gap per node).
            const char * env = std::getenv("TOYLLM_PROFILE");
            node_events_ = std::string_view(env) != "host";
            profile_ = std::make_unique<OpProfile>(node_events_ ? "cuda backend profile (events around each node)" : "cuda backend profile");
            check(cudaEventCreate(&graph_begin_), "creating a profiling event");
            check(cudaEventCreate(&graph_end_), "creating a profiling event");
        }
        check(cudaHostAlloc(&staging_, kStagingBytes, cudaHostAllocDefault), "allocating pinned staging memory");
        // CUDA graphs are opt-in: recording a decode step costs the host about what
        // launching it does, and the device, not the host, bounds decode now (see
        // docs/PERFORMANCE.md).
        const char * graphs = std::getenv("TOYLLM_CUDA_GRAPHS");
        graphs_ = graphs != nullptr && std::string_view(graphs) == "1";
    }

    ~CudaBackend() override {
        cudaStreamSynchronize(stream_);
        if (profile_ && n_replayed_ > 0) {
            std::fprintf(stderr, "cuda backend: %ld computes as CUDA graphs, %ld of them made anew (the rest updated)%s\n", n_replayed_,
                         n_instantiated_, graphs_ ? "" : "; then off (a node that cannot be captured)");
        }
        profile_.reset();  // prints
        for (cudaEvent_t e : events_) cudaEventDestroy(e);
        if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
        if (graph_begin_ != nullptr) cudaEventDestroy(graph_begin_);
        if (graph_end_ != nullptr) cudaEventDestroy(graph_end_);
        cudaFreeHost(staging_);
        for (auto & [t, c] : leaves_) device_->alloc.free(c.dev);
        cublasDestroy(cublas_);
        cudaStreamDestroy(stream_);
    }

    const char * name() const override { return "cuda"; }

    // Device-to-device copies of 1 GiB, the best of 8 after one warm-up, counted as the
    // bytes read plus the bytes written.
    double memory_gbps() override {
        constexpr size_t n = size_t{1} << 30;
        void * a = device_->alloc.alloc(n);
        void * b = device_->alloc.alloc(n);
        cudaEvent_t t0, t1;
        check(cudaEventCreate(&t0), "cudaEventCreate");
        check(cudaEventCreate(&t1), "cudaEventCreate");
        check(cudaMemsetAsync(a, 1, n, stream_), "cudaMemsetAsync");
        float best = 0.0f;
        for (int i = 0; i < 9; ++i) {
            check(cudaEventRecord(t0, stream_), "cudaEventRecord");
            check(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, stream_), "the bandwidth copy");
            check(cudaEventRecord(t1, stream_), "cudaEventRecord");
            check(cudaEventSynchronize(t1), "cudaEventSynchronize");
            float ms = 0.0f;
            check(cudaEventElapsedTime(&ms, t0, t1), "cudaEventElapsedTime");
            if (i > 0 && (best == 0.0f || ms < best)) best = ms;
        }
        cudaEventDestroy(t0);
        cudaEventDestroy(t1);
        device_->alloc.free(a);
        device_->alloc.free(b);
        return 2.0 * static_cast<double>(n) / (best * 1e-3) / 1e9;
    }

    bool supports(const Tensor & node) const override {
        if (node.op >= Op::COUNT) return false;
        if (node.op == Op::MATMUL || node.op == Op::GET_ROWS) return device_type_supported(node.src[0]->type);
        return true;
    }

    void compute(Graph & g) override {
        using Clock = std::chrono::steady_clock;
        const auto t0 = Clock::now();
        if (g.memory() == nullptr) allocate(g);
        const auto * mem = dynamic_cast<const CudaMemory *>(g.memory());
        if (mem == nullptr) throw Error("cuda backend: this graph's memory was planned by another backend");
        ++n_computes_;
        staged_ = 0;
        pending_.clear();
        const auto t1 = Clock::now();
        upload_leaves(g);
        const auto t2 = Clock::now();
        if (profile_) check(cudaEventRecord(graph_begin_, stream_), "recording a profiling event");
        const size_t n_kernels = graphs_ && !node_events_ ? launch_as_graph(g, *mem) : launch_nodes(g, *mem, false);
        const auto t3 = Clock::now();
        if (profile_) {
            check(cudaEventRecord(graph_end_, stream_), "recording a profiling event");
            check(cudaStreamSynchronize(stream_), "running the graph");
        }
        const auto t4 = Clock::now();
        download(g, *mem);
        check(cudaStreamSynchronize(stream_), "running the graph");
        for (const Pending & p : pending_) std::memcpy(p.host, p.staged, p.bytes);
        if (profile_) {
            if (node_events_) collect_profile(timed_);
            const auto sec = [](auto d) { return std::chrono::duration<double>(d).count(); };
            float ms = 0.0f;
            check(cudaEventElapsedTime(&ms, graph_begin_, graph_end_), "reading a profiling event");
            profile_->record_phase("plan", sec(t1 - t0));
            profile_->record_phase("upload", sec(t2 - t1));
            profile_->record_phase("launch " + std::to_string(n_kernels) + " kernels" + (graphs_ && !node_events_ ? " (CUDA graph)" : ""), sec(t3 - t2));
            profile_->record_phase("wait for the device", sec(t4 - t3));
            profile_->record_phase("download", sec(Clock::now() - t4));
            profile_->record_phase("device, first kernel to last", ms * 1e-3);
        }
        evict_unused();
    }

  private:
    // Launches every node's kernel on the stream (recording them when capturing);
    // returns how many.
    size_t launch_nodes(const Graph & g, const CudaMemory & mem, bool capturing) {
        Exec exec{stream_, cublas_, &CudaBackend::scratch_thunk, this, sm_count_};
        exec.capturing = capturing;
        timed_.clear();
        for (Tensor * node : g.nodes()) {
            const CudaKernel kern = cuda_kernel(node->op);
            if (kern == nullptr) continue;
            if (node_events_) record_event(2 * timed_.size());
            timed_.push_back(node);
            if (!supports(*node)) {
                throw Error("cuda backend: node '" + node->name + "' reads " + std::string(dtype_name(node->src[0]->type)) +
                            ", which the device kernels do not convert");
            }
            NodeArgs args{node, device_ptr(mem, node), {}};
            for (int s = 0; s < kMaxSrc; ++s) {
                if (node->src[s] != nullptr) args.src[s] = device_ptr(mem, node->src[s]);
            }
            kern(exec, args);
            if (node_events_) record_event(2 * timed_.size() - 1);
            release_scratch();
        }
        return timed_.size();
    }

    // The launches recorded into a CUDA graph and replayed as one: the device runs the
    // kernels back to back instead of one host launch each. The executable graph is
    // kept and updated in place when the next graph has the same kernels (decode: the
    // same graph but for the KV length), else made again. A graph with a cuBLAS call, or
    // any failure of the graph API, turns this off for the backend: nodes one by one.
    size_t launch_as_graph(const Graph & g, const CudaMemory & mem) {
        check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "beginning a CUDA graph capture");
        size_t n = 0;
        bool ok = true;
        try {
            n = launch_nodes(g, mem, true);
        } catch (const NotCapturable &) {
            ok = false;
        } catch (...) {
            cudaGraph_t dropped = nullptr;
            cudaStreamEndCapture(stream_, &dropped);
            if (dropped != nullptr) cudaGraphDestroy(dropped);
            release_scratch();
            throw;
        }
        cudaGraph_t graph = nullptr;
        const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
        ok = ok && end == cudaSuccess && graph != nullptr;
        if (ok && exec_ != nullptr) {
            cudaGraphExecUpdateResultInfo info{};
            if (cudaGraphExecUpdate(exec_, graph, &info) != cudaSuccess) {
                (void)cudaGetLastError();
                cudaGraphExecDestroy(exec_);
                exec_ = nullptr;
            }
        }
        if (ok && exec_ == nullptr) {
            ok = cudaGraphInstantiate(&exec_, graph, 0) == cudaSuccess;
            ++n_instantiated_;
        }
        if (graph != nullptr) cudaGraphDestroy(graph);
        release_scratch();
        if (ok) {
            check(cudaGraphLaunch(exec_, stream_), "launching a CUDA graph");
            ++n_replayed_;
            return n;
        }
        (void)cudaGetLastError();
        if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
        exec_ = nullptr;
        graphs_ = false;
        return launch_nodes(g, mem, false);
    }

    void allocate(Graph & g) {
        const MemoryPlan plan = plan_memory(g, kAlign);
        auto mem = std::make_unique<CudaMemory>();
        mem->device = device_;
        mem->peak_bytes = plan.peak_bytes;
        mem->arena = device_->alloc.alloc(plan.peak_bytes == 0 ? kAlign : plan.peak_bytes);
        void * host = std::aligned_alloc(64, (plan.peak_bytes + 63) / 64 * 64 + 64);
        if (host == nullptr) throw Error("cuda backend: out of host memory for the graph's outputs");
        mem->host.reset(static_cast<uint8_t *>(host));
        const auto & nodes = g.nodes();
        for (size_t i = 0; i < nodes.size(); ++i) {
            Tensor * t = nodes[i];
            if (t->view_src != nullptr) {
                t->data = static_cast<uint8_t *>(t->view_src->data) + t->view_offs;
            } else {
                t->data = mem->host.get() + plan.offsets[i];
                mem->offsets[t] = plan.offsets[i];
            }
        }
        g.set_memory(std::move(mem));
    }

    // Device address of t: a leaf's copy, a node's arena slot, or its base's + offset.
    void * device_ptr(const CudaMemory & mem, const Tensor * t) {
        const Tensor * root = base_of(t);
        const int64_t off = offset_in_base(t);
        char * base = nullptr;
        if (root->op == Op::NONE) {
            const auto it = leaves_.find(root);
            TOYLLM_ASSERT(it != leaves_.end());
            base = static_cast<char *>(it->second.dev);
        } else {
            const auto it = mem.offsets.find(root);
            TOYLLM_ASSERT(it != mem.offsets.end());
            base = static_cast<char *>(mem.arena) + it->second;
        }
        return base + off;
    }

    // Every leaf the graph reads, each once.
    static std::vector<const Tensor *> leaves_of(const Graph & g) {
        std::vector<const Tensor *> out;
        std::unordered_set<const Tensor *> seen;
        auto visit = [&](const Tensor * t) {
            if (t == nullptr) return;
            const Tensor * r = base_of(t);
            if (r->op == Op::NONE && seen.insert(r).second) out.push_back(r);
        };
        for (const Tensor * n : g.nodes()) {
            for (const Tensor * s : n->src) visit(s);
            visit(n->view_src);
        }
        return out;
    }

    void upload_leaves(Graph & g) {
        for (const Tensor * t : leaves_of(g)) {
            const size_t bytes = t->n_bytes();
            LeafCopy & c = leaves_[t];
            const bool fresh = c.dev == nullptr || c.host != t->data || c.bytes != bytes || c.type != t->type;
            if (fresh) {
                if (c.dev != nullptr) device_->alloc.free(c.dev);
                c.dev = device_->alloc.alloc(bytes == 0 ? 1 : bytes);
                c.host = t->data;
                c.bytes = bytes;
                c.type = t->type;
            }
            if (fresh || (t->flags & (TENSOR_INPUT | TENSOR_PARAM))) {
                // Inputs (token ids, positions, batches) go through pinned memory when they
                // fit: an asynchronous copy, where one from pageable memory syncs the stream.
                const void * from = t->data;
                void * st = (t->flags & TENSOR_INPUT) ? stage(bytes) : nullptr;
                if (st != nullptr) from = std::memcpy(st, t->data, bytes);
                check(cudaMemcpyAsync(c.dev, from, bytes, cudaMemcpyHostToDevice, stream_), ("uploading '" + t->name + "'").c_str());
            }
            c.last_used = n_computes_;
        }
    }

    void copy_back(const CudaMemory & mem, const Tensor * t, int64_t begin, int64_t end) {
        const Tensor * root = base_of(t);
        const int64_t off = offset_in_base(t);
        char * host = static_cast<char *>(root->data) + off + begin;
        const char * dev = static_cast<const char *>(device_ptr(mem, t)) + begin;
        const auto bytes = static_cast<size_t>(end - begin);
        // Small outputs (logits) land in pinned memory and are copied after the sync.
        void * st = stage(bytes);
        if (st != nullptr) pending_.push_back({host, st, bytes});
        check(cudaMemcpyAsync(st != nullptr ? st : host, dev, bytes, cudaMemcpyDeviceToHost, stream_), ("copying back '" + t->name + "'").c_str());
    }

    void download(const Graph & g, const CudaMemory & mem) {
        for (const Tensor * t : g.nodes()) {
            const Tensor * root = base_of(t);
            if (t->view_src != nullptr && t->op != Op::VIEW && root->op == Op::NONE) {
                // An in-place write into a leaf: copy back the bytes it wrote, unless the
                // leaf is state only graphs read (a KV cache).
                if (root->flags & TENSOR_DEVICE_STATE) continue;
                int64_t begin = 0, end = static_cast<int64_t>(t->n_bytes());
                if (t->op == Op::ACC) {
                    const Tensor * w = t->src[1];
                    begin = 0;
                    end = 4;
                    for (int d = 0; d < 4; ++d) {
                        begin += t->params.i[d] * t->nb[d];
                        end += (t->params.i[d] + w->ne[d] - 1) * t->nb[d];
                    }
                }
                copy_back(mem, t, begin, end);
            } else if ((t->flags & TENSOR_OUTPUT) && root->op != Op::NONE) {
                copy_back(mem, t, 0, static_cast<int64_t>(t->n_bytes()));
            }
        }
    }

    void evict_unused() {
        for (auto it = leaves_.begin(); it != leaves_.end();) {
            if (n_computes_ - it->second.last_used > kEvictAfter) {
                device_->alloc.free(it->second.dev);
                it = leaves_.erase(it);
            } else {
                ++it;
            }
        }
    }

    // Event k of this compute (two per timed node: before and after).
    void record_event(size_t k) {
        while (events_.size() <= k) {
            cudaEvent_t e;
            check(cudaEventCreate(&e), "creating a profiling event");
            events_.push_back(e);
        }
        check(cudaEventRecord(events_[k], stream_), "recording a profiling event");
    }

    void collect_profile(const std::vector<const Tensor *> & timed) {
        for (size_t i = 0; i < timed.size(); ++i) {
            float ms = 0.0f;
            check(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]), "reading a profiling event");
            profile_->record(timed[i], ms * 1e-3);
        }
    }

    // `bytes` of this compute's pinned staging memory, or nullptr when it is full (the
    // caller then copies from or to pageable memory directly).
    void * stage(size_t bytes) {
        const size_t at = (staged_ + 255) / 256 * 256;
        if (bytes > kStagingBytes - std::min(at, kStagingBytes)) return nullptr;
        staged_ = at + bytes;
        return static_cast<char *>(staging_) + at;
    }

    // Scratch blocks go back to the allocator after each node (one stream: the next
    // kernel that gets them runs after this one).
    void release_scratch() {
        for (void * p : scratch_) device_->alloc.free(p);
        scratch_.clear();
    }

    static void * scratch_thunk(void * self, size_t bytes) {
        auto * b = static_cast<CudaBackend *>(self);
        void * p = b->device_->alloc.alloc(bytes == 0 ? 1 : bytes);
        b->scratch_.push_back(p);
        return p;
    }

    std::shared_ptr<Device> device_;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    int sm_count_ = 0;
    int64_t n_computes_ = 0;
    std::unordered_map<const Tensor *, LeafCopy> leaves_;
    std::vector<void *> scratch_;
    std::unique_ptr<OpProfile> profile_;  // TOYLLM_PROFILE=1 (or =host)
    bool node_events_ = false;
    std::vector<cudaEvent_t> events_;
    cudaEvent_t graph_begin_ = nullptr, graph_end_ = nullptr;
    // Pinned staging for the small copies of a compute (bump-allocated, reset per compute).
    static constexpr size_t kStagingBytes = size_t{4} << 20;
    void * staging_ = nullptr;
    size_t staged_ = 0;
    struct Pending {
        void * host;
        const void * staged;
        size_t bytes;
    };
    std::vector<Pending> pending_;  // staged downloads to copy to the host after the sync
    std::vector<const Tensor *> timed_;  // the nodes of the last launch, in order
    // CUDA graphs (TOYLLM_CUDA_GRAPHS=1 turns them on).
    bool graphs_ = false;
    cudaGraphExec_t exec_ = nullptr;
    long n_replayed_ = 0, n_instantiated_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendConfig & cfg) {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        const std::string why = err != cudaSuccess ? cudaGetErrorString(err) : "0 devices";
        (void)cudaGetLastError();
        throw Error("no CUDA device found (cudaGetDeviceCount: " + why + ")");
    }
    return std::make_unique<CudaBackend>(cfg);
}

}  // namespace toyllm::cuda
