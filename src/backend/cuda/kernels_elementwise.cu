// Element-wise kernels, copies and reductions: one thread per output element, operands
// strided in every dim (dim 0 included), b broadcast by tiling as on the CPU.
#include "backend/cuda/common.cuh"

namespace toyllm::cuda {

namespace {

// out[i] = f(index of i) for every element of out.
template <class F> __global__ void map_kernel(View out, int64_t n, F f) {
    for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n; x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const Idx4 j = unravel(x, out.ne);
        out.f(j.i[0], j.i[1], j.i[2], j.i[3]) = f(j);
    }
}

// f(index) for every index of shape ne (f writes what it needs).
template <class F> __global__ void each_kernel(View shape, int64_t n, F f) {
    for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < n; x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        f(unravel(x, shape.ne));
    }
}

template <class F> void launch_map(const Exec & e, const NodeArgs & a, F f, const char * what) {
    const View out = view_of(a.node, a.out);
    const int64_t n = a.node->n_elements();
    map_kernel<<<grid_for(n, kBlock), kBlock, 0, e.stream>>>(out, n, f);
    check_launch(what);
}

template <class Op> void binary(const Exec & e, const NodeArgs & a, Op op, const char * what) {
    const View x = view_of(a.node->src[0], a.src[0]);
    const View y = view_of(a.node->src[1], a.src[1]);
    launch_map(e, a, [=] __device__(const Idx4 & j) {
        return op(x.f(j.i[0], j.i[1], j.i[2], j.i[3]), y.f(j.i[0] % y.ne[0], j.i[1] % y.ne[1], j.i[2] % y.ne[2], j.i[3] % y.ne[3]));
    }, what);
}

template <class Op> void unary(const Exec & e, const NodeArgs & a, Op op, const char * what) {
    const View x = view_of(a.node->src[0], a.src[0]);
    launch_map(e, a, [=] __device__(const Idx4 & j) { return op(x.f(j.i[0], j.i[1], j.i[2], j.i[3])); }, what);
}

// One block: each thread sums a strided share in double, then a fixed-order tree.
__global__ void sum_kernel(View x, float * out) {
    __shared__ double shared[32];
    const int64_t n = x.n_elements();
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const Idx4 j = unravel(i, x.ne);
        s += x.f(j.i[0], j.i[1], j.i[2], j.i[3]);
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *out = static_cast<float>(s);
}

}  // namespace

void kernel_cont(const Exec & e, const NodeArgs & a) {
    unary(e, a, [] __device__(float v) { return v; }, "cont");
}

void kernel_add(const Exec & e, const NodeArgs & a) {
    binary(e, a, [] __device__(float x, float y) { return x + y; }, "add");
}

void kernel_mul(const Exec & e, const NodeArgs & a) {
    binary(e, a, [] __device__(float x, float y) { return x * y; }, "mul");
}

void kernel_swiglu(const Exec & e, const NodeArgs & a) {
    binary(e, a, [] __device__(float g, float u) { return silu_f(g) * u; }, "swiglu");
}

void kernel_silu_back(const Exec & e, const NodeArgs & a) {
    binary(e, a, [] __device__(float x, float dy) {
        const float s = 1.0f / (1.0f + expf(-x));
        return dy * s * (1.0f + x * (1.0f - s));
    }, "silu_back");
}

void kernel_scale(const Exec & e, const NodeArgs & a) {
    const float s = a.node->params.f[0];
    unary(e, a, [s] __device__(float v) { return v * s; }, "scale");
}

void kernel_silu(const Exec & e, const NodeArgs & a) {
    unary(e, a, [] __device__(float v) { return silu_f(v); }, "silu");
}

void kernel_sum(const Exec & e, const NodeArgs & a) {
    sum_kernel<<<1, 1024, 0, e.stream>>>(view_of(a.node->src[0], a.src[0]), static_cast<float *>(a.out));
    check_launch("sum");
}

// out[j] = sum of a over every tile position that maps to j, in a fixed order.
void kernel_sum_to(const Exec & e, const NodeArgs & a) {
    const View x = view_of(a.node->src[0], a.src[0]);
    const Tensor * n = a.node;
    const int64_t r0 = x.ne[0] / n->ne[0], r1 = x.ne[1] / n->ne[1], r2 = x.ne[2] / n->ne[2], r3 = x.ne[3] / n->ne[3];
    const int64_t n0 = n->ne[0], n1 = n->ne[1], n2 = n->ne[2], n3 = n->ne[3];
    launch_map(e, a, [=] __device__(const Idx4 & j) {
        double s = 0.0;
        for (int64_t t3 = 0; t3 < r3; ++t3)
            for (int64_t t2 = 0; t2 < r2; ++t2)
                for (int64_t t1 = 0; t1 < r1; ++t1)
                    for (int64_t t0 = 0; t0 < r0; ++t0)
                        s += x.f(j.i[0] + t0 * n0, j.i[1] + t1 * n1, j.i[2] + t2 * n2, j.i[3] + t3 * n3);
        return static_cast<float>(s);
    }, "sum_to");
}

void kernel_repeat(const Exec & e, const NodeArgs & a) {
    const View x = view_of(a.node->src[0], a.src[0]);
    launch_map(e, a, [=] __device__(const Idx4 & j) {
        return x.f(j.i[0] % x.ne[0], j.i[1] % x.ne[1], j.i[2] % x.ne[2], j.i[3] % x.ne[3]);
    }, "repeat");
}

// out = zeros (or src[0]) with src[1] added (params.i[4] == 0) or written (== 1) into
// the window starting at params.i[0..3]. In place (the node has view_src: it shares
// src[0]'s memory) only the window is touched: one thread per element of src[1].
void kernel_acc(const Exec & e, const NodeArgs & a) {
    const Tensor * node = a.node;
    if (node->type != DType::F32) throw Error("cuda write_window: an f16 destination (an f16 KV cache) runs on the cpu device only");
    const View g = view_of(node->src[1], a.src[1]);
    const int64_t b0 = node->params.i[0], b1 = node->params.i[1], b2 = node->params.i[2], b3 = node->params.i[3];
    const bool set = node->params.i[4] != 0;
    if (node->view_src != nullptr) {
        const View out = view_of(node, a.out);
        const int64_t n = node->src[1]->n_elements();
        each_kernel<<<grid_for(n, kBlock), kBlock, 0, e.stream>>>(g, n, [=] __device__(const Idx4 & j) {
            float & y = out.f(j.i[0] + b0, j.i[1] + b1, j.i[2] + b2, j.i[3] + b3);
            const float v = g.f(j.i[0], j.i[1], j.i[2], j.i[3]);
            y = set ? v : y + v;
        });
        check_launch("acc (in place)");
        return;
    }
    const bool has_base = node->src[0] != nullptr;
    const View base = has_base ? view_of(node->src[0], a.src[0]) : View{};
    launch_map(e, a, [=] __device__(const Idx4 & j) {
        float y = has_base ? base.f(j.i[0], j.i[1], j.i[2], j.i[3]) : 0.0f;
        const int64_t j0 = j.i[0] - b0, j1 = j.i[1] - b1, j2 = j.i[2] - b2, j3 = j.i[3] - b3;
        if (j0 >= 0 && j1 >= 0 && j2 >= 0 && j3 >= 0 && j0 < g.ne[0] && j1 < g.ne[1] && j2 < g.ne[2] && j3 < g.ne[3]) {
            const float v = g.f(j0, j1, j2, j3);
            y = set ? v : y + v;
        }
        return y;
    }, "acc");
}

void kernel_concat(const Exec & e, const NodeArgs & a) {
    const View x = view_of(a.node->src[0], a.src[0]);
    const View y = view_of(a.node->src[1], a.src[1]);
    const int dim = a.node->params.i[0];
    launch_map(e, a, [=] __device__(const Idx4 & j) {
        Idx4 k = j;
        if (k.i[dim] >= x.ne[dim]) {
            k.i[dim] -= x.ne[dim];
            return y.f(k.i[0], k.i[1], k.i[2], k.i[3]);
        }
        return x.f(k.i[0], k.i[1], k.i[2], k.i[3]);
    }, "concat");
}

}  // namespace toyllm::cuda
