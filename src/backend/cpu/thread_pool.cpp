// Persistent workers woken once per run(). Decode calls run() hundreds of times per
// token (one per matmul), each lasting tens of microseconds, so waking through the
// condition variable alone (a futex wake, often 10-50 us) would cost as much as the
// work. Workers and the caller therefore spin for a short while on the atomics first and
// only then block; the condition variables are the fallback for longer pauses.
//
// Protocol: run() publishes job_, resets pending_ and bumps generation_ (all under mu_,
// the bump with release order). A worker that sees a new generation (acquire) runs the
// job, then decrements pending_; the one that brings it to 0 notifies done_cv_ under mu_
// if the caller has gone to sleep. Predicates of both waits are re-checked under mu_,
// so no wake-up can be lost.
#include "backend/cpu/thread_pool.h"

#include "toyllm/error.h"

#include <chrono>

namespace toyllm::cpu {

namespace {

// How long a thread polls before it sleeps: long enough to bridge the gap between two
// decode steps (the host builds and plans the next token's graph: 150-220 us for b1b;
// with 200 us here the first node of a step waited 60-80 us for a sleeping worker, 20
// with 1 ms), short enough not to burn a core for long when the engine is idle.
constexpr auto kSpinTime = std::chrono::microseconds(1000);
// After this much polling the thread also yields its core at each clock check: when
// there are more runnable threads than cores (a busy machine), the thread we wait for
// may be queued behind us on this core. On the 2-vCPU development VM under load, 200 us
// of pure spinning cost 0.8 ms per run() and yielding from the start 14 us; unloaded,
// an empty run() takes about 1 us either way.
constexpr auto kPureSpinTime = std::chrono::microseconds(5);

// Between polls. Deliberately not x86 PAUSE: under a hypervisor, a loop of PAUSEs trips
// pause-loop exiting and the vCPU is descheduled; an empty run() then took 2 to 48 us
// instead of 1 us on the development VM.
void cpu_relax() {
#if defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

// Polls `done` until it returns true (-> true) or kSpinTime has passed (-> false).
template <class Done>
bool spin_until(const Done & done) {
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t i = 1;; ++i) {
        if (done()) return true;
        cpu_relax();
        // Reading the clock costs more than a poll; look at it every 64 polls.
        if (i % 64 == 0) {
            const auto waited = std::chrono::steady_clock::now() - start;
            if (waited > kSpinTime) return false;
            if (waited > kPureSpinTime) std::this_thread::yield();
        }
    }
}

}  // namespace

// The last thread to arrive resets the count, then bumps the generation (release); the
// others wait for the bump (acquire). A fast thread cannot enter the next use before the
// reset: it leaves only after the bump, which follows the reset.
void SpinBarrier::wait() {
    if (n_ == 1) return;
    const uint32_t gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
        arrived_.store(0, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
        return;
    }
    const auto moved = [&] { return generation_.load(std::memory_order_acquire) != gen; };
    while (!spin_until(moved)) {
    }
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
    if (n_threads < 1) throw Error("thread pool: n_threads must be >= 1, got " + std::to_string(n_threads));
    threads_.reserve(static_cast<size_t>(n_threads - 1));
    try {
        for (int ith = 1; ith < n_threads; ++ith) threads_.emplace_back([this, ith] { worker(ith); });
    } catch (...) {
        stop_workers();  // the destructor will not run; joinable threads would terminate()
        throw;
    }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    start_cv_.notify_all();
    for (auto & t : threads_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)> & fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        error_ = nullptr;
        pending_.store(n_threads_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    // Cheap when every worker is still spinning: glibc makes no system call without waiters.
    start_cv_.notify_all();

    try {
        fn(0, n_threads_);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
    }

    const auto all_done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(all_done)) {
        std::unique_lock<std::mutex> lock(mu_);
        // Dekker with the last worker (both sides seq_cst): either it sees this flag and
        // notifies under mu_, or this thread's predicate check sees pending_ == 0.
        caller_waiting_.store(true);
        done_cv_.wait(lock, [this] { return pending_.load() == 0; });
        caller_waiting_.store(false, std::memory_order_relaxed);
    }
    // Every worker wrote error_ (under mu_) before its acq_rel decrement of pending_, and
    // none touches it until the next run, so it can be read without the lock.
    if (error_) {
        std::exception_ptr e = error_;
        error_ = nullptr;
        std::rethrow_exception(e);
    }
}

void ThreadPool::worker(int ith) {
    uint64_t seen = 0;
    for (;;) {
        const auto new_job = [this, &seen] { return generation_.load(std::memory_order_acquire) != seen; };
        if (!spin_until(new_job)) {
            std::unique_lock<std::mutex> lock(mu_);
            start_cv_.wait(lock, new_job);
        }
        seen = generation_.load(std::memory_order_acquire);
        // stop_ and job_ were written before the bump we just acquired; the next writes to
        // them come only after this worker has decremented pending_ (end of run()).
        if (stop_) return;
        try {
            (*job_)(ith, n_threads_);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu_);
            if (!error_) error_ = std::current_exception();
        }
        // The mutex only when the caller sleeps: taking it after every job made the
        // caller's next run() block on it (a futex round trip, tens of microseconds here).
        if (pending_.fetch_sub(1) == 1 && caller_waiting_.load()) {
            std::lock_guard<std::mutex> lock(mu_);
            done_cv_.notify_one();
        }
    }
}

}  // namespace toyllm::cpu
