#include "toyllm/session.h"

#include <algorithm>
#include <numeric>

namespace toyllm {

Session::Session(Model & model, const SessionConfig & cfg) : model_(model), cfg_(cfg) {
    if (cfg_.n_ctx <= 0) cfg_.n_ctx = model.config().n_ctx_train;
    if (cfg_.n_batch <= 0) throw Error("session: n_batch must be > 0");
    if (cfg_.cache_type != DType::F32 && cfg_.device != "cpu") throw Error("session: an f16 KV cache runs on the cpu device only");
    cache_ = model.make_cache(cfg_.n_ctx, 1, cfg_.cache_type);
    backend_ = make_backend(cfg_.device, {.n_threads = cfg_.n_threads});
}

std::vector<float> Session::eval(std::span<const int32_t> tokens, bool all_logits) {
    if (tokens.empty()) throw Error("eval: no tokens");
    if (cache_.n_past + static_cast<int64_t>(tokens.size()) > cache_.n_ctx) {
        throw Error("eval: " + std::to_string(tokens.size()) + " tokens after " + std::to_string(cache_.n_past) +
                    " exceed the context of " + std::to_string(cache_.n_ctx) + " (use --ctx)");
    }
    const int64_t n_vocab = model_.config().n_vocab;
    std::vector<float> out;
    if (tokens.size() == 1 && reuse_step(tokens[0], all_logits)) {
        backend_->compute(*last_graph_);
        cache_.n_past += 1;
        const float * l = step_.logits->data_as<float>();
        return {l, l + n_vocab};
    }
    for (size_t at = 0; at < tokens.size(); at += static_cast<size_t>(cfg_.n_batch)) {
        const size_t n = std::min(tokens.size() - at, static_cast<size_t>(cfg_.n_batch));
        const bool last_chunk = at + n == tokens.size();
        auto ctx = std::make_unique<Context>();
        Tensor * ids = ctx->new_tensor(DType::I32, {static_cast<int64_t>(n)}, "tokens");
        Tensor * pos = ctx->new_tensor(DType::I32, {static_cast<int64_t>(n)}, "positions");
        ctx->alloc(ids);
        ctx->alloc(pos);
        // Set by the host before each compute: a device backend uploads them every time.
        ids->flags |= TENSOR_INPUT;
        pos->flags |= TENSOR_INPUT;
        std::copy_n(tokens.data() + at, n, ids->data_as<int32_t>());
        std::iota(pos->data_as<int32_t>(), pos->data_as<int32_t>() + n, static_cast<int32_t>(cache_.n_past));
        const ForwardInputs in{.tokens = ids, .positions = pos, .cache = &cache_, .taps = cfg_.taps,
                               .logits_last_only = !all_logits};
        Tensor * logits = model_.forward(*ctx, in);
        auto graph = std::make_unique<Graph>();
        graph->build_forward(logits);
        ++n_graphs_built_;
        backend_->compute(*graph);
        cache_.n_past += static_cast<int64_t>(n);
        if (all_logits) {
            out.insert(out.end(), logits->data_as<float>(), logits->data_as<float>() + n * static_cast<size_t>(n_vocab));
        } else if (last_chunk) {
            out.assign(logits->data_as<float>(), logits->data_as<float>() + n_vocab);
        }
        last_ctx_ = std::move(ctx);
        last_graph_ = std::move(graph);
        step_ = {};
        if (n == 1) keep_step(ids, pos, logits, all_logits);
    }
    return out;
}

// The cache writes of a one-token graph and the views that read them, found by
// structure: an in-place write into a cache tensor at n_past, and a view of it that
// starts at 0 and spans n_past + 1 positions. Any other shape: not kept.
void Session::keep_step(Tensor * ids, Tensor * pos, Tensor * logits, bool all_logits) {
    const int64_t n_past = cache_.n_past - 1;  // the position this graph wrote
    Step st;
    st.ids = ids;
    st.pos = pos;
    st.logits = logits;
    st.all_logits = all_logits;
    std::vector<const Tensor *> caches(cache_.k.begin(), cache_.k.end());
    caches.insert(caches.end(), cache_.v.begin(), cache_.v.end());
    for (Tensor * t : last_graph_->nodes()) {
        if (t->op == Op::ACC && std::find(caches.begin(), caches.end(), t->view_src) != caches.end()) {
            if (t->params.i[0] != 0 || t->params.i[1] != 0 || t->params.i[2] != n_past || t->params.i[3] != 0) return;
            st.writes.push_back(t);
        }
    }
    for (Tensor * t : last_graph_->nodes()) {
        if (t->op == Op::VIEW && std::find(st.writes.begin(), st.writes.end(), t->view_src) != st.writes.end()) {
            if (t->view_offs != 0 || t->ne[2] != n_past + 1) return;
            st.reads.push_back(t);
        }
    }
    // Only attention may read those views (its output does not depend on their length),
    // and nothing else may read a cache or a write.
    for (const Tensor * t : last_graph_->nodes()) {
        for (const Tensor * src : t->src) {
            if (src == nullptr) continue;
            const bool read = std::find(st.reads.begin(), st.reads.end(), src) != st.reads.end();
            if (read && t->op != Op::ATTENTION) return;
            const bool raw = std::find(caches.begin(), caches.end(), src) != caches.end() ||
                             std::find(st.writes.begin(), st.writes.end(), src) != st.writes.end();
            if (raw && t->op != Op::ACC && t->op != Op::VIEW) return;
        }
    }
    if (st.writes.size() != caches.size() || st.reads.size() != caches.size()) return;
    step_ = std::move(st);
}

bool Session::reuse_step(int32_t token, bool all_logits) {
    if (step_.logits == nullptr || step_.all_logits != all_logits) return false;
    const int64_t n_past = cache_.n_past;
    step_.ids->data_as<int32_t>()[0] = token;
    step_.pos->data_as<int32_t>()[0] = static_cast<int32_t>(n_past);
    for (Tensor * w : step_.writes) w->params.i[2] = static_cast<int32_t>(n_past);
    for (Tensor * r : step_.reads) r->ne[2] = n_past + 1;
    return true;
}

std::vector<float> Session::tap(std::string_view name) const {
    if (!last_graph_) return {};
    const Tensor * t = last_graph_->find(name);
    if (t == nullptr || !(t->flags & TENSOR_OUTPUT) || !t->is_contiguous()) return {};
    return {t->data_as<float>(), t->data_as<float>() + t->n_elements()};
}

}  // namespace toyllm
