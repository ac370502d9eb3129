// get_rows (embedding lookup in any storage type) and its scatter-add gradient.
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

#include "toyllm/quant.h"

#include <cstring>

namespace toyllm::cpu {

namespace {

int32_t checked_id(const Tensor * ids, int64_t t, int64_t n_rows) {
    const int32_t id = *at<int32_t>(ids, t % ids->ne[0], t / ids->ne[0], 0, 0);
    if (id < 0 || id >= n_rows) {
        throw Error("get_rows: token id " + std::to_string(id) + " is outside the table's " + std::to_string(n_rows) + " rows");
    }
    return id;
}

}  // namespace

void kernel_get_rows(const KernelCtx & k, Tensor * node) {
    const Tensor * table = node->src[0];
    const Tensor * ids = node->src[1];
    const RowRange rr = split_rows(ids->n_elements(), k.ith, k.nth);
    for (int64_t t = rr.begin; t < rr.end; ++t) {
        const int32_t id = checked_id(ids, t, table->ne[1]);
        dequantize_row(table->type, at<uint8_t>(table, 0, id, 0, 0), row<float>(node, t), table->ne[0]);
    }
}

// Threads own column ranges of the table gradient and add the tokens' rows in token
// order, so repeated ids accumulate in the same order for any thread count. The
// accumulating form (params.i[0] = 1) adds into the gradient buffer it views.
void kernel_get_rows_back(const KernelCtx & k, Tensor * node) {
    const Tensor * grad = node->src[0];
    const Tensor * ids = node->src[1];
    const RowRange cols = split_rows(node->ne[0], k.ith, k.nth);
    if (cols.begin >= cols.end) return;
    const size_t n = static_cast<size_t>(cols.end - cols.begin);
    const bool accumulate = node->params.i[0] != 0;  // add into what the memory holds
    if (!accumulate) {
        for (int64_t r = 0; r < node->ne[1]; ++r) std::memset(at<float>(node, cols.begin, r, 0, 0), 0, n * sizeof(float));
    }
    for (int64_t t = 0; t < ids->n_elements(); ++t) {
        const int32_t id = checked_id(ids, t, node->ne[1]);
        float * y = at<float>(node, 0, id, 0, 0);
        const float * g = row<float>(grad, t);
        for (int64_t i = cols.begin; i < cols.end; ++i) y[i] += g[i];
    }
}

}  // namespace toyllm::cpu
