// F32 GEMM throughput, C[m, n] = A[m, k] B[n, k]^T, for the shapes of prefill and
// training of small Llamas (m = tokens, n = output features, k = input features):
//   gemm/<variant>/<m>x<n>x<k>/threads:<t>    every kernel variant this CPU can run;
//                                             "default" is what gemm_f32 uses
//   fma_peak/threads:<t>                      the FMA throughput limit, measured
// Counters: GFLOP/s (2 m n k per call, wall time) and peak% = GFLOP/s / (t * per-core
// peak). The per-core peak is measured at start-up with an FMA loop at the current SIMD
// level (best of many short runs; TOYLLM_PEAK_GFLOPS=<per core> overrides it) and printed.
// cpu_GFLOP/s and cpu_peak% use instead, per call, the largest CPU time of the t threads
// (CLOCK_THREAD_CPUTIME_ID): what the call would take if no other process took turns on
// the cores. On a shared machine that is the number to compare; on a quiet one the two
// agree.
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/thread_pool.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using namespace toyllm::cpu;

// ---- the FMA limit ----

// The fma_loop_* functions run `iters` rounds of kChains independent FMA chains and
// return the flops done. kChains covers FMA latency x issue width on current cores
// (4 cycles x 2 pipes = 8) with margin.
constexpr int kChains = 20;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) double fma_loop_avx512(int64_t iters) {
    __m512 acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 20
        for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    }
    __m512 s = acc[0];
    for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
    benchmark::DoNotOptimize(s);
    return double(iters) * kChains * 16 * 2;
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
    constexpr int kChains2 = 12;  // 16 ymm registers
    __m256 acc[kChains2];
    for (int i = 0; i < kChains2; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int i = 0; i < kChains2; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    }
    __m256 s = acc[0];
    for (int i = 1; i < kChains2; ++i) s = _mm256_add_ps(s, acc[i]);
    benchmark::DoNotOptimize(s);
    return double(iters) * kChains2 * 8 * 2;
}
#endif

double fma_loop_scalar(int64_t iters) {
    float acc[kChains];
    for (int i = 0; i < kChains; ++i) acc[i] = float(i) * 1e-3f;
    for (int64_t it = 0; it < iters; ++it) {
        for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
        benchmark::ClobberMemory();
    }
    benchmark::DoNotOptimize(acc);
    return double(iters) * kChains * 2;
}

double fma_loop(int64_t iters) {
#if defined(__x86_64__)
    switch (cpu_features().level) {
        case SimdLevel::AVX512: return fma_loop_avx512(iters);
        case SimdLevel::AVX2: return fma_loop_avx2(iters);
        case SimdLevel::SCALAR: break;
    }
#endif
    return fma_loop_scalar(iters);
}

// GFLOP/s of one core: the best of 50 runs of about 1 ms. Short runs fit between the
// scheduler's preemptions, so the best one sees the core to itself even on a busy
// machine (it still sees the clock that the load allows).
double per_core_peak_gflops() {
    static const double peak = [] {
        if (const char * env = std::getenv("TOYLLM_PEAK_GFLOPS")) return std::atof(env);
        const int64_t iters = 300'000 * (cpu_features().level == SimdLevel::AVX512 ? 1 : 2);
        fma_loop(iters);  // warm-up: clock ramp, AVX-512 license
        double best = 0;
        for (int rep = 0; rep < 50; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            const double flops = fma_loop(iters);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            best = std::max(best, flops / s / 1e9);
        }
        std::fprintf(stderr, "bench_gemm: SIMD level %s, per-core peak %.1f GFLOP/s (measured FMA loop)\n",
                     simd_level_name(cpu_features().level), best);
        return best;
    }();
    return peak;
}

ThreadPool & pool(int n_threads) {
    static std::unique_ptr<ThreadPool> pools[8];
    if (!pools[n_threads]) pools[n_threads] = std::make_unique<ThreadPool>(n_threads);
    return *pools[n_threads];
}

double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Runs work(ith, nth) on the pool once per iteration, timed by hand (wall time, and the
// largest per-thread CPU time), and reports the counters described at the top.
template <class Work>
void run_timed(benchmark::State & state, double flops_per_iter, int n_threads, const Work & work) {
    ThreadPool & tp = pool(n_threads);
    double seconds = 0, cpu_seconds = 0;
    double cpu[8] = {};
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        tp.run([&](int ith, int nth) {
            const double c0 = thread_cpu_seconds();
            work(ith, nth);
            cpu[ith] = thread_cpu_seconds() - c0;
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        state.SetIterationTime(s);
        seconds += s;
        cpu_seconds += *std::max_element(cpu, cpu + n_threads);
    }
    const double gflop = flops_per_iter * double(state.iterations()) / 1e9;
    const double peak = n_threads * per_core_peak_gflops();
    state.counters["GFLOP/s"] = gflop / seconds;
    state.counters["peak%"] = 100.0 * gflop / seconds / peak;
    state.counters["cpu_GFLOP/s"] = gflop / cpu_seconds;
    state.counters["cpu_peak%"] = 100.0 * gflop / cpu_seconds / peak;
}

void bm_fma_peak(benchmark::State & state) {
    const int n_threads = int(state.range(0));
    constexpr int64_t kIters = 1'000'000;
    const double flops_per_thread = fma_loop(kIters);  // also a warm-up
    run_timed(state, flops_per_thread * n_threads, n_threads, [&](int, int) { fma_loop(kIters); });
}

// ---- GEMM ----

struct Shape {
    int64_t m, n, k;
    const char * what;
};

const Shape kShapes[] = {
    {128, 2048, 2048, "prefill chunk, 2048-wide projection"},
    {512, 5632, 2048, "TinyLlama FFN up/gate, 512 tokens"},
    {512, 2048, 5632, "TinyLlama FFN down, 512 tokens"},
    {1024, 1024, 1024, "square"},
    {2048, 2048, 2048, "square"},
};

void bm_gemm(benchmark::State & state, const gemm_detail::GemmConfig * cfg, Shape s, int n_threads) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.n * s.k)), c(size_t(s.m * s.n));
    for (float & x : a) x = dist(rng);
    for (float & x : b) x = dist(rng);
    const GemmArgs g = {.m = s.m, .n = s.n, .k = s.k, .a = a.data(), .lda = s.k, .b = b.data(),
                        .ldb = s.k, .c = c.data(), .ldc = s.n};
    run_timed(state, 2.0 * double(s.m) * double(s.n) * double(s.k), n_threads, [&](int ith, int nth) {
        if (cfg == nullptr) {
            gemm_f32(g, ith, nth);
        } else {
            gemm_detail::gemm_f32_with(*cfg, g, ith, nth);
        }
    });
    state.SetLabel(s.what);
}

std::string shape_name(const Shape & s) {
    return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

void register_all() {
    using namespace gemm_detail;
    benchmark::RegisterBenchmark("fma_peak", bm_fma_peak)->Arg(1)->Arg(2)->ArgName("threads")->UseManualTime();
    const SimdLevel level = cpu_features().level;
    for (int t : {1, 2}) {
        for (const Shape & s : kShapes) {
            const std::string suffix = "/" + shape_name(s) + "/threads:" + std::to_string(t);
            benchmark::RegisterBenchmark(("gemm/default" + suffix).c_str(), bm_gemm, nullptr, s, t)
                ->UseManualTime()
                ->Unit(benchmark::kMillisecond);
            for (int v = 0; v < gemm_variant_count(); ++v) {
                const GemmVariant & var = gemm_variant(v);
                if (var.level > level) continue;
                benchmark::RegisterBenchmark(("gemm/" + std::string(var.name) + suffix).c_str(), bm_gemm,
                                             &var.config, s, t)
                    ->UseManualTime()
                    ->Unit(benchmark::kMillisecond);
            }
        }
    }
}

}  // namespace

int main(int argc, char ** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    per_core_peak_gflops();
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
