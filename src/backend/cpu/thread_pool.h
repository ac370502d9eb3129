// The one thread pool of the CPU backend. run(fn) calls fn(ith, nth) on nth threads
// (the caller's thread is ith = 0) and returns when all have finished. Kernels split
// their rows by {ith, nth} themselves; results must not depend on nth (determinism).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace toyllm::cpu {

class ThreadPool {
  public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1; n - 1 workers are started
    ~ThreadPool();
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool & operator=(const ThreadPool &) = delete;

    int size() const { return n_threads_; }

    // Runs fn(ith, nth) for ith in [0, nth) with nth = size(); blocks until done.
    // Not reentrant: fn must not call run() on the same pool.
    void run(const std::function<void(int ith, int nth)> & fn);

  private:
    void worker(int ith);
    void stop_workers();

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable start_cv_;
    std::condition_variable done_cv_;
    const std::function<void(int, int)> * job_ = nullptr;  // written under mu_ before generation_
    // Bumped (under mu_) once per run() and at shutdown; workers spin on it, then sleep.
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};  // workers still inside the current job
    std::atomic<bool> caller_waiting_{false};  // run() sleeps on done_cv_
    bool stop_ = false;            // written under mu_ before the last generation_ bump
    std::exception_ptr error_;     // first exception of the current run, under mu_
};

// A barrier for the nth threads inside one ThreadPool::run: wait() returns once all of
// them have called it, and it can be reused right away. Threads poll (yielding their core
// after a few microseconds, as the pool's own waits do) and never sleep, so it suits the
// short gaps between the nodes of a graph, not long pauses. Everything written before a
// thread's wait() is visible to every thread after it.
class SpinBarrier {
  public:
    explicit SpinBarrier(int n_threads) : n_(n_threads) {}
    void wait();

  private:
    const int n_;
    std::atomic<int> arrived_{0};
    std::atomic<uint32_t> generation_{0};
};

// Rows [begin, end) of `n` for thread ith of nth: contiguous, balanced, independent of
// anything but (n, ith, nth).
struct RowRange {
    int64_t begin;
    int64_t end;
};
inline RowRange split_rows(int64_t n, int ith, int nth) {
    const int64_t per = (n + nth - 1) / nth;
    const int64_t b = per * ith < n ? per * ith : n;
    const int64_t e = b + per < n ? b + per : n;
    return {b, e};
}

}  // namespace toyllm::cpu
