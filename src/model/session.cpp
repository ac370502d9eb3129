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
        backend_->compute(*graph);
        cache_.n_past += static_cast<int64_t>(n);
        if (all_logits) {
            out.insert(out.end(), logits->data_as<float>(), logits->data_as<float>() + n * static_cast<size_t>(n_vocab));
        } else if (last_chunk) {
            out.assign(logits->data_as<float>(), logits->data_as<float>() + n_vocab);
        }
        last_ctx_ = std::move(ctx);
        last_graph_ = std::move(graph);
    }
    return out;
}

std::vector<float> Session::tap(std::string_view name) const {
    if (!last_graph_) return {};
    const Tensor * t = last_graph_->find(name);
    if (t == nullptr || !(t->flags & TENSOR_OUTPUT) || !t->is_contiguous()) return {};
    return {t->data_as<float>(), t->data_as<float>() + t->n_elements()};
}

}  // namespace toyllm
