// Decode is a chain of matrix-vector products whose weights come from DRAM once per
// token, so the figure of merit is weight bytes read per second, next to what the
// memory system can deliver:
//
//   triad/tN    STREAM triad a[i] = b[i] + s * c[i] on float arrays of 256 MiB each,
//               counted as STREAM does: 12 bytes per element (two reads, one write),
//               through vec_math's triad, in the widest stores the CPU has (16-byte
//               stores probably read each line before writing it: the triad read
//               about 30% less here).
//   read/tN     a read-only sum over 768 MiB through vec_math's sum_words, in the
//               widest loads the CPU has: what a matvec, which only reads, can hope
//               for on this memory (4 KiB pages: with huge pages both it and the triad
//               read more, as `toyllm bench`'s pass over a --no-mmap model's weights
//               does). A sum of 8-byte words read 39 GB/s with 2 threads on the
//               development VM where 64-byte loads read 64-71.
//   matvec/<type>/<rows>x<cols>/tN
//               y = W x with W in <type>, activation conversion (from_float) included,
//               rows split with split_rows over a ThreadPool of N threads. Many copies
//               of W (>= 256 MiB in all) are cycled so that every product reads DRAM.
//               GB/s counts the weight bytes; vs_triad and vs_read divide it by the
//               triad and read bandwidth with the same thread count (measured first).
//   matvec/<type>_packed/<rows>x<cols>/tN
//               the same for weights packed in bands of 16 rows (backend/cpu/repack.h),
//               as the CPU backend runs a model's weights, for the types the current
//               level has packed kernels for (AVX-512 VNNI: all; AVX2: Q8_0, Q4_0).
//               Conversion of x included; GB/s of the packed bytes.
//   matvec_hot/<type>/<rows>x<cols>/t1
//               one copy of W, warm in the caches (when it fits in L3).
//   matvec_l2/<type>/<rows>x2048/t1
//               about 256 KiB of W, which stays in L2: the kernel's arithmetic ceiling.
//   pool_run/tN  an empty ThreadPool::run, the fixed cost added to every matvec.
//
// Run: build/<dir>/bin/bench_matvec [--benchmark_filter=...]
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_dot.h"
#include "backend/cpu/vec_math.h"
#include "toyllm/quant.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using toyllm::DType;
using toyllm::cpu::ThreadPool;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kTriadArrayBytes = 256 * kMiB;
constexpr size_t kColdWeightBytes = 256 * kMiB;  // at least this much weight data is cycled

ThreadPool & pool(int n_threads) {
    static std::map<int, std::unique_ptr<ThreadPool>> pools;
    auto & p = pools[n_threads];
    if (!p) p = std::make_unique<ThreadPool>(n_threads);
    return *p;
}

// Bandwidth of the memory-bound references, per thread count, for the ratios.
std::map<int, double> g_triad_gbs, g_read_gbs;

// Runs the timing loop, returns seconds of wall time for `state.iterations()` calls.
template <class Body>
double timed_loop(benchmark::State & state, const Body & body) {
    const auto t0 = std::chrono::steady_clock::now();
    for (auto _ : state) body();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double>(t1 - t0).count();
}

void set_gbs(benchmark::State & state, double bytes_per_iter, double seconds) {
    const double gbs = bytes_per_iter * static_cast<double>(state.iterations()) / seconds / 1e9;
    state.counters["GB/s"] = gbs;
}

// Big buffers are first touched by the threads that will use them (one NUMA node here,
// but it keeps the page faults out of the timing on any machine).
struct FloatArray {
    std::unique_ptr<float[]> p;
    explicit FloatArray(size_t n) : p(new float[n]) {}
};

void bm_triad(benchmark::State & state) {
    const int n_threads = static_cast<int>(state.range(0));
    const int64_t n = static_cast<int64_t>(kTriadArrayBytes / sizeof(float));
    FloatArray a(static_cast<size_t>(n)), b(static_cast<size_t>(n)), c(static_cast<size_t>(n));
    ThreadPool & tp = pool(n_threads);
    tp.run([&](int ith, int nth) {
        const auto r = toyllm::cpu::split_rows(n, ith, nth);
        for (int64_t i = r.begin; i < r.end; ++i) {
            a.p[i] = 0.0f;
            b.p[i] = 1.0f;
            c.p[i] = 2.0f;
        }
    });
    const float s = 3.0f;
    float * __restrict pa = a.p.get();
    const float * __restrict pb = b.p.get();
    const float * __restrict pc = c.p.get();
    const double sec = timed_loop(state, [&] {
        tp.run([&](int ith, int nth) {
            const auto r = toyllm::cpu::split_rows(n, ith, nth);
            toyllm::cpu::triad(pa + r.begin, pb + r.begin, pc + r.begin, s, r.end - r.begin);
        });
        benchmark::ClobberMemory();
    });
    set_gbs(state, 12.0 * static_cast<double>(n), sec);
    g_triad_gbs[n_threads] = state.counters["GB/s"];
}

void bm_read(benchmark::State & state) {
    const int n_threads = static_cast<int>(state.range(0));
    const int64_t n = static_cast<int64_t>(3 * kTriadArrayBytes / sizeof(uint64_t));
    std::unique_ptr<uint64_t[]> a(new uint64_t[static_cast<size_t>(n)]);
    ThreadPool & tp = pool(n_threads);
    tp.run([&](int ith, int nth) {
        const auto r = toyllm::cpu::split_rows(n, ith, nth);
        for (int64_t i = r.begin; i < r.end; ++i) a[i] = static_cast<uint64_t>(i);
    });
    std::vector<uint64_t> sums(static_cast<size_t>(n_threads));
    const double sec = timed_loop(state, [&] {
        tp.run([&](int ith, int nth) {
            const auto r = toyllm::cpu::split_rows(n, ith, nth);
            sums[static_cast<size_t>(ith)] = toyllm::cpu::sum_words(a.get() + r.begin, r.end - r.begin);
        });
        benchmark::DoNotOptimize(sums.data());
    });
    set_gbs(state, 8.0 * static_cast<double>(n), sec);
    g_read_gbs[n_threads] = state.counters["GB/s"];
}

void bm_pool_run(benchmark::State & state) {
    ThreadPool & tp = pool(static_cast<int>(state.range(0)));
    std::atomic<int> sink{0};
    for (auto _ : state) {
        tp.run([&](int ith, int) { sink.fetch_add(ith, std::memory_order_relaxed); });
    }
    benchmark::DoNotOptimize(sink.load());
}

// Copies of one random quantized matrix (>= kColdWeightBytes in all), kept between the
// benchmarks of one type and shape.
struct Weights {
    DType type;
    int64_t rows = 0, cols = 0;
    size_t matrix_bytes = 0;
    int64_t copies = 0;
    std::vector<uint8_t> data;
    std::vector<uint8_t> packed;  // the copies packed (repack.h), made on first use
};

const Weights & weights(DType t, int64_t rows, int64_t cols) {
    static Weights cache;
    if (cache.type == t && cache.rows == rows && cache.cols == cols && !cache.data.empty()) return cache;
    const size_t matrix_bytes = toyllm::dtype_row_bytes(t, rows * cols);
    cache = Weights{};
    cache.type = t;
    cache.rows = rows;
    cache.cols = cols;
    cache.matrix_bytes = matrix_bytes;
    cache.copies = static_cast<int64_t>((kColdWeightBytes + matrix_bytes - 1) / matrix_bytes);
    std::vector<float> f(static_cast<size_t>(rows * cols));
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto & v : f) v = u(rng);
    cache.data.resize(cache.matrix_bytes * static_cast<size_t>(cache.copies));
    toyllm::quantize_row(t, f.data(), cache.data.data(), rows * cols);
    for (int64_t c = 1; c < cache.copies; ++c) {
        std::memcpy(cache.data.data() + cache.matrix_bytes * static_cast<size_t>(c), cache.data.data(),
                    cache.matrix_bytes);
    }
    return cache;
}

struct MatvecCase {
    DType type;
    int64_t rows, cols;
    int n_threads;
    bool cold;
    bool packed = false;
};

// The copies of w packed, one after the other (a Q8_0 / Q4_0 matrix of whole bands has
// the plain one's size, a Q4_K one 2368 / 2304 of it).
const std::vector<uint8_t> & packed_copies(const Weights & w) {
    auto & out = const_cast<Weights &>(w).packed;
    if (!out.empty()) return out;
    const size_t bytes = toyllm::cpu::packed_bytes(w.type, w.rows, w.cols);
    out.resize(bytes * static_cast<size_t>(w.copies));
    const int64_t row_bytes = static_cast<int64_t>(toyllm::dtype_row_bytes(w.type, w.cols));
    for (int64_t c = 0; c < w.copies; ++c) {
        toyllm::cpu::pack_bands(w.type, w.data.data() + w.matrix_bytes * static_cast<size_t>(c), row_bytes, w.rows,
                                w.cols, 0, toyllm::cpu::packed_bands(w.rows), out.data() + bytes * static_cast<size_t>(c));
    }
    return out;
}

void report_matvec(benchmark::State & state, const MatvecCase & mc, size_t matrix_bytes, double sec);

void bm_matvec(benchmark::State & state, MatvecCase mc) {
    const Weights & w = weights(mc.type, mc.rows, mc.cols);
    const int64_t n_copies = mc.cold ? w.copies : 1;
    const auto & vd = toyllm::cpu::vec_dot_for(mc.type);
    const int64_t row_bytes = static_cast<int64_t>(toyllm::dtype_row_bytes(mc.type, mc.cols));
    std::vector<float> x(static_cast<size_t>(mc.cols));
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto & v : x) v = nd(rng);
    // Large enough for any vec_dot_type (F32 is the largest: 4 bytes per value).
    std::vector<uint8_t> x_conv(static_cast<size_t>(mc.cols) * sizeof(float));
    std::vector<float> y(static_cast<size_t>(mc.rows));
    ThreadPool & tp = pool(mc.n_threads);
    int64_t copy = 0;
    if (mc.packed) {
        const std::vector<uint8_t> & packed = packed_copies(w);
        const size_t packed_bytes = toyllm::cpu::packed_bytes(mc.type, mc.rows, mc.cols);
        const int64_t n_bands = toyllm::cpu::packed_bands(mc.rows);
        const double sec = timed_loop(state, [&] {
            toyllm::cpu::packed_x_from_float(mc.type, x.data(), x_conv.data(), mc.cols);
            const toyllm::cpu::PackedMatArgs args{.w_type = mc.type,
                                                  .w = packed.data() + packed_bytes * static_cast<size_t>(copy),
                                                  .n_rows = mc.rows,
                                                  .n = mc.cols,
                                                  .x = x_conv.data(),
                                                  .x_row_bytes = toyllm::cpu::packed_x_row_bytes(mc.type, mc.cols),
                                                  .n_cols = 1,
                                                  .y = y.data(),
                                                  .ldy = mc.rows};
            tp.run([&](int ith, int nth) {
                const auto r = toyllm::cpu::split_rows(n_bands, ith, nth);
                toyllm::cpu::packed_matmul(args, r.begin, r.end);
            });
            copy = copy + 1 == n_copies ? 0 : copy + 1;
            benchmark::DoNotOptimize(y.data());
        });
        report_matvec(state, mc, packed_bytes, sec);
        return;
    }
    const double sec = timed_loop(state, [&] {
        vd.from_float(x.data(), x_conv.data(), mc.cols);
        const toyllm::cpu::MatVecArgs args{.w_type = mc.type,
                                           .w = w.data.data() + w.matrix_bytes * static_cast<size_t>(copy),
                                           .w_row_bytes = row_bytes,
                                           .n = mc.cols,
                                           .x_conv = x_conv.data(),
                                           .y = y.data()};
        tp.run([&](int ith, int nth) {
            const auto r = toyllm::cpu::split_rows(mc.rows, ith, nth);
            toyllm::cpu::matvec_rows(args, r.begin, r.end);
        });
        copy = copy + 1 == n_copies ? 0 : copy + 1;
        benchmark::DoNotOptimize(y.data());
    });
    report_matvec(state, mc, w.matrix_bytes, sec);
}

// GB/s of the weight bytes one product reads (the packed copy's for packed cases).
void report_matvec(benchmark::State & state, const MatvecCase & mc, size_t matrix_bytes, double sec) {
    set_gbs(state, static_cast<double>(matrix_bytes), sec);
    const double gbs = state.counters["GB/s"];
    if (mc.cold && g_triad_gbs.count(mc.n_threads)) state.counters["vs_triad"] = gbs / g_triad_gbs[mc.n_threads];
    if (mc.cold && g_read_gbs.count(mc.n_threads)) state.counters["vs_read"] = gbs / g_read_gbs[mc.n_threads];
    state.counters["us/matvec"] = sec / static_cast<double>(state.iterations()) * 1e6;
}

}  // namespace

int main(int argc, char ** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    const auto & f = toyllm::cpu::cpu_features();
    std::printf("toyllm simd level: %s\n", toyllm::cpu::simd_level_name(f.level));

    for (int t : {1, 2}) {
        benchmark::RegisterBenchmark(("triad/t" + std::to_string(t)).c_str(), bm_triad)
            ->Arg(t)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("read/t" + std::to_string(t)).c_str(), bm_read)
            ->Arg(t)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("pool_run/t" + std::to_string(t)).c_str(), bm_pool_run)
            ->Arg(t)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
    const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};
    const std::pair<int64_t, int64_t> shapes[] = {{2048, 2048}, {5632, 2048}};
    for (DType type : types) {
        for (const auto & [rows, cols] : shapes) {
            const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
            const std::string tn(toyllm::dtype_name(type));
            for (int t : {1, 2}) {
                benchmark::RegisterBenchmark(("matvec/" + tn + "/" + shape + "/t" + std::to_string(t)).c_str(),
                                             bm_matvec, MatvecCase{type, rows, cols, t, true})
                    ->UseRealTime()->Unit(benchmark::kMicrosecond);
            }
            if (toyllm::cpu::packed_kernel_available(type)) {
                for (int t : {1, 2}) {
                    benchmark::RegisterBenchmark(("matvec/" + tn + "_packed/" + shape + "/t" + std::to_string(t)).c_str(),
                                                 bm_matvec, MatvecCase{type, rows, cols, t, true, true})
                        ->UseRealTime()->Unit(benchmark::kMicrosecond);
                }
            }
            benchmark::RegisterBenchmark(("matvec_hot/" + tn + "/" + shape + "/t1").c_str(), bm_matvec,
                                         MatvecCase{type, rows, cols, 1, false})
                ->UseRealTime()->Unit(benchmark::kMicrosecond);
        }
    }
    // About 256 KiB of weights, which stay in L2: the kernel's arithmetic speed alone.
    for (DType type : types) {
        const int64_t cols = 2048, rows = std::max<int64_t>(16, (256 << 10) / static_cast<int64_t>(toyllm::dtype_row_bytes(type, cols)));
        benchmark::RegisterBenchmark(("matvec_l2/" + std::string(toyllm::dtype_name(type)) + "/" + std::to_string(rows) + "x2048/t1").c_str(),
                                     bm_matvec, MatvecCase{type, rows, cols, 1, false})
            ->UseRealTime()->Unit(benchmark::kMicrosecond);
        if (toyllm::cpu::packed_kernel_available(type)) {
            const int64_t prow = (rows + 15) / 16 * 16;
            benchmark::RegisterBenchmark(("matvec_l2/" + std::string(toyllm::dtype_name(type)) + "_packed/" + std::to_string(prow) + "x2048/t1").c_str(),
                                         bm_matvec, MatvecCase{type, prow, cols, 1, false, true})
                ->UseRealTime()->Unit(benchmark::kMicrosecond);
        }
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
