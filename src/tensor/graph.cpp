#include "toyllm/graph.h"

#include "ops/op_table.h"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace toyllm {

void Graph::visit(Tensor * t) {
    if (t == nullptr || seen_.count(t)) return;
    seen_.insert(t);
    for (Tensor * s : t->src) visit(s);
    if (t->view_src != nullptr) visit(t->view_src);
    if (t->op == Op::NONE) {
        if (t->data == nullptr) throw Error("graph: leaf '" + t->name + "' " + shape_str(*t) + " has no data (allocate it first)");
        leafs_.push_back(t);
    } else {
        // Unnamed nodes get a stable name from their op and position: "matmul#12".
        if (t->name.empty()) t->name = std::string(ops::op_info(t->op).name) + "#" + std::to_string(nodes_.size());
        nodes_.push_back(t);
    }
}

void Graph::build_forward(Tensor * t) {
    if (memory_) throw Error("graph: cannot add nodes after the graph was computed");
    visit(t);
    group_shared_products();
}

// A product moves up to just after the products of its group that precede it: it reads
// only a leaf weight and the group's activation, which is computed before the first of
// them (and not written in place since), and whatever reads it still comes after it.
void Graph::group_shared_products() {
    const auto groupable = [](const Tensor * t) {
        return t->op == Op::MATMUL && t->params.i[0] == 0 && t->params.i[1] == 0 && t->src[0]->op == Op::NONE &&
               (t->src[0]->flags & TENSOR_CONSTANT) != 0;
    };
    std::vector<Tensor *> out;
    out.reserve(nodes_.size());
    std::unordered_map<const Tensor *, size_t> end;  // activation -> index after its group's last product in out
    const auto base = [](const Tensor * t) {
        while (t->view_src != nullptr) t = t->view_src;
        return t;
    };
    for (Tensor * t : nodes_) {
        if (t->op != Op::VIEW && t->view_src != nullptr) {
            // Writes in place (write_window, add_inplace): products after it must not
            // move above it if it writes their activation's memory.
            std::erase_if(end, [&](const auto & g) { return base(g.first) == base(t); });
        }
        if (!groupable(t)) {
            out.push_back(t);
            continue;
        }
        const auto it = end.find(t->src[1]);
        if (it == end.end()) {
            out.push_back(t);
            end[t->src[1]] = out.size();
            continue;
        }
        const size_t at = it->second;
        out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), t);
        for (auto & [x, e] : end) {
            if (e >= at && x != t->src[1]) ++e;
        }
        ++it->second;
    }
    nodes_ = std::move(out);
}

void Graph::build_backward(Context & ctx, Tensor * loss) {
    if (loss->n_elements() != 1 || loss->type != DType::F32) throw Error("build_backward: the loss must be f32 [1], not " + shape_str(*loss));
    build_forward(loss);
    ops::Backward b(ctx);
    // A node needs a gradient when a param is among its (transitive) sources.
    for (Tensor * t : leafs_) {
        if (t->is_param()) b.needs_.insert(t);
    }
    for (Tensor * t : nodes_) {
        for (const Tensor * s : t->src) {
            if (b.needs_grad(s)) b.needs_.insert(t);
        }
    }
    if (!b.needs_grad(loss)) throw Error("build_backward: the loss depends on no parameter");

    Tensor * one = ctx.new_tensor(DType::F32, {1}, "dloss");
    ctx.alloc(one);
    *one->data_as<float>() = 1.0f;
    b.grads_[loss] = one;
    const std::vector<Tensor *> forward = nodes_;
    for (auto it = forward.rbegin(); it != forward.rend(); ++it) {
        Tensor * node = *it;
        Tensor * grad = b.grad_of(node);
        if (grad == nullptr || !b.needs_grad(node)) continue;
        const ops::OpInfo & info = ops::op_info(node->op);
        if (info.backward == nullptr) throw Error(std::string("build_backward: op ") + info.name + " has no gradient");
        info.backward(b, node, grad);
    }
    for (Tensor * p : std::vector<Tensor *>(leafs_)) {
        if (!p->is_param()) continue;
        Tensor * g = b.grad_of(p);
        if (g == nullptr) continue;
        if (p->grad == nullptr) {
            p->grad = ctx.new_tensor(DType::F32, p->ne, p->name + ".grad");
            ctx.alloc(p->grad);
            p->grad->flags |= TENSOR_INPUT;  // zero_grads() rewrites it on the host
        }
        Tensor * acc = ops::accumulate_grad(ctx, p->grad, g);
        acc->name = p->name + ".grad_acc";
        acc->flags |= TENSOR_OUTPUT;
        visit(acc);
    }
}

std::vector<Tensor *> Graph::params() const {
    std::vector<Tensor *> out;
    for (Tensor * t : leafs_) {
        if (t->is_param()) out.push_back(t);
    }
    return out;
}

Tensor * Graph::find(std::string_view name) const {
    for (Tensor * t : nodes_) {
        if (t->name == name) return t;
    }
    for (Tensor * t : leafs_) {
        if (t->name == name) return t;
    }
    return nullptr;
}

void Graph::zero_grads() {
    for (Tensor * p : params()) {
        if (p->grad != nullptr) std::fill_n(p->grad->data_as<float>(), p->grad->n_elements(), 0.0f);
    }
}

namespace {

const Tensor * base_of(const Tensor * t) {
    while (t->view_src != nullptr) t = t->view_src;
    return t;
}

// Free blocks of the arena by offset; allocation is best fit, else the top grows.
class Arena {
  public:
    explicit Arena(size_t align) : align_(align) {}

    size_t alloc(size_t bytes) {
        bytes = round_up(bytes);
        auto best = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it) {
            if (it->second >= bytes && (best == free_.end() || it->second < best->second)) best = it;
        }
        if (best != free_.end()) {
            const size_t off = best->first;
            const size_t left = best->second - bytes;
            free_.erase(best);
            if (left > 0) free_[off + bytes] = left;
            return off;
        }
        // Grow, absorbing a free block that ends at the top.
        size_t off = top_;
        if (!free_.empty()) {
            auto last = std::prev(free_.end());
            if (last->first + last->second == top_) {
                off = last->first;
                free_.erase(last);
            }
        }
        top_ = off + bytes;
        peak_ = std::max(peak_, top_);
        return off;
    }

    void release(size_t off, size_t bytes) {
        bytes = round_up(bytes);
        auto it = free_.emplace(off, bytes).first;
        if (auto next = std::next(it); next != free_.end() && it->first + it->second == next->first) {
            it->second += next->second;
            free_.erase(next);
        }
        if (it != free_.begin()) {
            auto prev = std::prev(it);
            if (prev->first + prev->second == it->first) {
                prev->second += it->second;
                free_.erase(it);
            }
        }
    }

    size_t peak() const { return peak_; }

  private:
    size_t round_up(size_t n) const { return (n + align_ - 1) / align_ * align_; }

    size_t align_;
    size_t top_ = 0;
    size_t peak_ = 0;
    std::map<size_t, size_t> free_;  // offset -> bytes
};

}  // namespace

MemoryPlan plan_memory(const Graph & g, size_t alignment) {
    const auto & nodes = g.nodes();
    const int64_t n = static_cast<int64_t>(nodes.size());
    constexpr int64_t kForever = INT64_MAX;
    std::unordered_map<const Tensor *, int64_t> last_use;
    std::unordered_map<const Tensor *, int64_t> index;
    for (int64_t i = 0; i < n; ++i) index[nodes[i]] = i;
    for (int64_t i = 0; i < n; ++i) {
        const Tensor * t = nodes[i];
        if (t->flags & TENSOR_OUTPUT) last_use[base_of(t)] = kForever;
        for (const Tensor * s : t->src) {
            if (s == nullptr) continue;
            int64_t & lu = last_use[base_of(s)];
            if (lu != kForever) lu = std::max(lu, i);
        }
        if (t->view_src != nullptr) {
            int64_t & lu = last_use[base_of(t)];
            if (lu != kForever) lu = std::max(lu, i);
        }
    }
    MemoryPlan plan;
    plan.offsets.assign(nodes.size(), -1);
    Arena arena(alignment);
    for (int64_t i = 0; i < n; ++i) {
        const Tensor * t = nodes[i];
        if (t->view_src == nullptr) plan.offsets[i] = static_cast<int64_t>(arena.alloc(t->n_bytes()));
        // Free what this node was the last to read (after allocating its output, so
        // that an op never writes over its own inputs).
        auto release_if_done = [&](const Tensor * s) {
            const Tensor * b = base_of(s);
            const auto it = index.find(b);
            if (it == index.end()) return;  // a leaf
            const auto lu = last_use.find(b);
            const int64_t last = lu == last_use.end() ? it->second : lu->second;
            if (last == i) {
                arena.release(static_cast<size_t>(plan.offsets[it->second]), b->n_bytes());
                last_use[b] = -1;  // released once
            }
        };
        for (const Tensor * s : t->src) {
            if (s != nullptr) release_if_done(s);
        }
        if (t->view_src == nullptr && !last_use.count(t)) release_if_done(t);  // never read
        else if (t->view_src != nullptr) release_if_done(t);
    }
    plan.peak_bytes = arena.peak();
    return plan;
}

}  // namespace toyllm
