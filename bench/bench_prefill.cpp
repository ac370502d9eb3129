// Prefill's matrix products: y = W x for M activation rows at once, through the matmul
// op on the CPU backend (activation conversion, cache blocking, thread split and the
// tile kernels all included), for the weight types whose matmul is a dot product per
// output (F16, BF16 and the quantized types; F32 weights go through the GEMM, see
// bench_gemm).
//
//   matmul/<type>/<K>x<N>/m<M>/tT   W: N rows of K values in <type>; x: M f32 rows of K.
//                                   GFLOP/s counts 2 K N M; GB/s the weight bytes once.
//
// The shapes are those of the b135m (576 / 1536) and b1b (2048 / 5632) benchmark models;
// every matrix fits in L3 here, so what is measured is the kernels, not DRAM.
//
// Run: build/<dir>/bin/bench_prefill [--benchmark_filter=...]
#include "backend/cpu/cpu_features.h"
#include "toyllm/graph.h"
#include "toyllm/ops.h"
#include "toyllm/quant.h"
#include "toyllm/tensor.h"

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using toyllm::DType;

struct Case {
    DType type;
    int64_t k, n, m;
    int n_threads;
};

void bm_matmul(benchmark::State & state, Case c) {
    toyllm::Context ctx;
    toyllm::Tensor * w = ctx.new_tensor(c.type, {c.k, c.n}, "w");  // [K, N]
    toyllm::Tensor * x = ctx.new_tensor(DType::F32, {c.k, c.m}, "x");  // [K, M]
    ctx.alloc(w);
    ctx.alloc(x);
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> f(static_cast<size_t>(c.k * c.n));
    for (auto & v : f) v = 0.02f * nd(rng);
    toyllm::quantize_row(c.type, f.data(), w->data, c.k * c.n);
    for (int64_t i = 0; i < c.k * c.m; ++i) x->data_as<float>()[i] = nd(rng);
    toyllm::Tensor * y = toyllm::matmul(ctx, w, x);  // [N, M]
    toyllm::Graph g;
    g.build_forward(y);
    auto be = toyllm::make_backend("cpu", {.n_threads = c.n_threads});
    be->compute(g);  // plans memory, warms the caches
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) {
        be->compute(g);
        benchmark::DoNotOptimize(y->data);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double iters = static_cast<double>(state.iterations());
    state.counters["GFLOP/s"] = 2.0 * static_cast<double>(c.k * c.n * c.m) * iters / sec / 1e9;
    state.counters["GB/s"] = static_cast<double>(toyllm::dtype_row_bytes(c.type, c.k * c.n)) * iters / sec / 1e9;
}

}  // namespace

int main(int argc, char ** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    std::printf("toyllm simd level: %s\n", toyllm::cpu::simd_level_name(toyllm::cpu::cpu_features().level));
    const DType types[] = {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
    // {K, N}: b135m q / ffn up / ffn down, b1b q / ffn up / ffn down.
    const std::pair<int64_t, int64_t> shapes[] = {{576, 576}, {576, 1536}, {1536, 576},
                                                  {2048, 2048}, {2048, 5632}, {5632, 2048}};
    for (DType type : types) {
        for (const auto & [k, n] : shapes) {
            if (k % toyllm::dtype_info(type).block_size != 0) continue;
            for (int64_t m : {128}) {
                for (int t : {1, 2}) {
                    const std::string name = "matmul/" + std::string(toyllm::dtype_name(type)) + "/" + std::to_string(k) +
                                             "x" + std::to_string(n) + "/m" + std::to_string(m) + "/t" + std::to_string(t);
                    benchmark::RegisterBenchmark(name.c_str(), bm_matmul, Case{type, k, n, m, t})
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
            }
        }
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
