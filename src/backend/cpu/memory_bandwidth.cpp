// triad_gbps: the memory bandwidth behind `toyllm bench`'s decode bound; read_gbps: what
// a read-only stream gets.
#include "toyllm/memory_bandwidth.h"

#include "backend/cpu/thread_pool.h"
#include "backend/cpu/vec_math.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace toyllm {

namespace {

// `bytes` over the best of three timed runs of `pass` on the pool, after an untimed one
// (which faults pages in), in GB/s.
double best_rate(cpu::ThreadPool & pool, double bytes, const std::function<void(int, int)> & pass) {
    double best = 0.0;
    for (int rep = 0; rep < 4; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.run(pass);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (rep > 0) best = std::max(best, bytes / s / 1e9);
    }
    return best;
}

}  // namespace

double triad_gbps(int n_threads) {
    constexpr int64_t n = (int64_t{128} << 20) / sizeof(float);
    const std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
    cpu::ThreadPool pool(n_threads);
    pool.run([&](int ith, int nth) {
        const cpu::RowRange r = cpu::split_rows(n, ith, nth);
        std::fill(a.get() + r.begin, a.get() + r.end, 0.0f);
        std::fill(b.get() + r.begin, b.get() + r.end, 1.0f);
        std::fill(c.get() + r.begin, c.get() + r.end, 2.0f);
    });
    return best_rate(pool, 12.0 * static_cast<double>(n), [&](int ith, int nth) {
        const cpu::RowRange r = cpu::split_rows(n, ith, nth);
        cpu::triad(a.get() + r.begin, b.get() + r.begin, c.get() + r.begin, 3.0f, r.end - r.begin);
    });
}

double read_gbps(std::span<const std::span<const uint8_t>> regions, int n_threads) {
    double bytes = 0.0;
    for (const auto & r : regions) bytes += static_cast<double>(r.size());
    if (bytes == 0.0) return 0.0;
    cpu::ThreadPool pool(n_threads);
    std::vector<uint64_t> sums(static_cast<size_t>(n_threads));  // the reads' results, kept
    return best_rate(pool, bytes, [&](int ith, int nth) {
        uint64_t s = 0;
        for (const auto & region : regions) {
            // Whole words only (regions start 8-byte aligned: GGUF aligns tensors to 32).
            const auto * words = reinterpret_cast<const uint64_t *>(region.data());
            const cpu::RowRange r = cpu::split_rows(static_cast<int64_t>(region.size() / 8), ith, nth);
            s += cpu::sum_words(words + r.begin, r.end - r.begin);
        }
        sums[static_cast<size_t>(ith)] = s;
    });
}

}  // namespace toyllm
