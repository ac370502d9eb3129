// get_rows (embedding lookup from a table in any loadable storage type) and its
// scatter-add gradient. Token ids are checked on the host when it holds them (a leaf);
// an id computed on the device and out of range gives a NaN row.
#include "backend/cuda/dequant.cuh"

#include "toyllm/error.h"

#include <string>

namespace toyllm::cuda {

namespace {

__device__ int32_t id_at(const View & ids, int64_t t) {
    const int64_t i0 = t % ids.ne[0], i1 = t / ids.ne[0];
    return *reinterpret_cast<const int32_t *>(ids.p + i0 * ids.nb[0] + i1 * ids.nb[1]);
}

__global__ void get_rows_kernel(View table, DType type, View ids, View out) {
    const int64_t n = out.n_elements();
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n; e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t i0 = e % out.ne[0], t = e / out.ne[0];
        const int32_t id = id_at(ids, t);
        float * y = out.frow(t);
        if (id < 0 || id >= table.ne[1]) {
            y[i0] = __int_as_float(0x7fc00000);
            continue;
        }
        y[i0] = load_value(type, reinterpret_cast<const uint8_t *>(table.p + id * table.nb[1]), i0);
    }
}

// One thread per column adds the tokens' rows in token order: repeated ids accumulate
// in the same order as on the CPU, with no atomics.
__global__ void get_rows_back_kernel(View grad, View ids, View out, int64_t n_tokens) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < out.ne[0]; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        for (int64_t t = 0; t < n_tokens; ++t) {
            const int32_t id = id_at(ids, t);
            if (id < 0 || id >= out.ne[1]) continue;
            out.frow(id)[i] += grad.frow(t)[i];
        }
    }
}

// Host check of the ids when they are a leaf (their host memory is current).
void check_ids(const Tensor * ids, int64_t n_rows) {
    if (ids->op != Op::NONE || ids->data == nullptr) return;
    for (int64_t t = 0; t < ids->n_elements(); ++t) {
        const int64_t i0 = t % ids->ne[0], i1 = t / ids->ne[0];
        const int32_t id = *reinterpret_cast<const int32_t *>(static_cast<const uint8_t *>(ids->data) + i0 * ids->nb[0] + i1 * ids->nb[1]);
        if (id < 0 || id >= n_rows) {
            throw Error("get_rows: token id " + std::to_string(id) + " is outside the table's " + std::to_string(n_rows) + " rows");
        }
    }
}

}  // namespace

void kernel_get_rows(const Exec & e, const NodeArgs & a) {
    const Tensor * table = a.node->src[0];
    if (!device_can_load(table->type)) throw Error("cuda get_rows: no device conversion from " + std::string(dtype_name(table->type)));
    check_ids(a.node->src[1], table->ne[1]);
    const int64_t n = a.node->n_elements();
    get_rows_kernel<<<grid_for(n, kBlock), kBlock, 0, e.stream>>>(view_of(table, a.src[0]), table->type, view_of(a.node->src[1], a.src[1]),
                                                                  view_of(a.node, a.out));
    check_launch("get_rows");
}

void kernel_get_rows_back(const Exec & e, const NodeArgs & a) {
    const Tensor * ids = a.node->src[1];
    check_ids(ids, a.node->ne[1]);
    if (a.node->params.i[0] == 0) check(cudaMemsetAsync(a.out, 0, a.node->n_bytes(), e.stream), "get_rows_back (zero)");
    get_rows_back_kernel<<<grid_for(a.node->ne[0], 128), 128, 0, e.stream>>>(view_of(a.node->src[0], a.src[0]), view_of(ids, a.src[1]),
                                                                            view_of(a.node, a.out), ids->n_elements());
    check_launch("get_rows_back");
}

}  // namespace toyllm::cuda
