#include "common/threadpool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLIMNN_PAUSE() _mm_pause()
#else
#define SLIMNN_PAUSE() std::this_thread::yield()
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace slimnn {
namespace {

std::atomic<bool> g_forked{false};

#if defined(_OPENMP)

// With OpenMP, parallel regions run on the process's OpenMP runtime. slimnn/__init__ imports torch
// before loading _C, so the dynamic loader resolves our libgomp.so.1 to the copy torch already loaded:
// one thread team for torch ops and ours, no second set of spinning threads competing for the cores.
void run_parallel(int64_t n_tasks, int nthreads, TaskFn fn, void* ctx) {
  if (omp_in_parallel()) {  // nested inside someone's region: run inline rather than oversubscribe
    for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t);
    return;
  }
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nthreads)
  {
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      fn(ctx, t);
    }
  }
}

int worker_count() { return 0; }

#else  // no OpenMP: the package's own pool

// Workers spin this long after a job before sleeping: back-to-back op calls (a model's layers) then
// start without a futex wake-up, which costs tens of microseconds.
constexpr auto kSpin = std::chrono::microseconds(100);

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Returns false (did nothing) if another job holds the pool.
  bool try_run(int64_t n_tasks, int nthreads, TaskFn fn, void* ctx) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    const int workers = nthreads - 1;
    {
      std::lock_guard<std::mutex> g(mu_);
      while (static_cast<int>(threads_.size()) < workers) {
        // The worker must wait for the generation after this one, whenever it gets to run.
        const int id = static_cast<int>(threads_.size());
        const uint64_t gen = generation_.load(std::memory_order_relaxed);
        threads_.emplace_back([this, id, gen] { worker(id, gen); });
      }
      fn_ = fn;
      ctx_ = ctx;
      n_tasks_ = n_tasks;
      next_.store(0, std::memory_order_relaxed);
      active_ = workers;
      pending_.store(workers, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_tasks();
    // Wait for the workers: they may still be finishing their last task.
    const auto t0 = std::chrono::steady_clock::now();
    int spins = 0;
    while (pending_.load(std::memory_order_acquire) != 0) {
      SLIMNN_PAUSE();
      if (++spins % 256 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) {
        std::unique_lock<std::mutex> g(mu_);
        done_cv_.wait(g, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        break;
      }
    }
    return true;
  }

  int worker_count() {
    std::lock_guard<std::mutex> g(mu_);
    return static_cast<int>(threads_.size());
  }

 private:
  void run_tasks() {
    for (;;) {
      const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks_) break;
      fn_(ctx_, t);
    }
  }

  void worker(int id, uint64_t seen) {
    for (;;) {
      // Spin briefly for the next job, then sleep.
      const auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        SLIMNN_PAUSE();
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) {
          std::unique_lock<std::mutex> g(mu_);
          cv_.wait(g, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          break;
        }
      }
      int active;
      {
        // generation_ and active_ change together under mu_: read them as one pair.
        std::lock_guard<std::mutex> g(mu_);
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        active = active_;
      }
      if (id >= active) continue;
      run_tasks();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> g(mu_);
        done_cv_.notify_all();
      }
    }
  }

  std::mutex busy_;  // held by the one caller whose job the pool runs
  std::mutex mu_;    // guards threads_, stop_, active_ and the job fields' publication
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  int active_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int64_t> next_{0};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
};

std::atomic<Pool*> g_pool{nullptr};

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return p;
  Pool* fresh = new Pool();  // lives for the process: worker threads must outlive every caller
  if (g_pool.compare_exchange_strong(p, fresh)) return fresh;
  delete fresh;
  return p;
}

void run_parallel(int64_t n_tasks, int nthreads, TaskFn fn, void* ctx) {
  if (pool()->try_run(n_tasks, nthreads, fn, ctx)) return;
  for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t);
}

int worker_count() {
  Pool* p = g_pool.load();
  return p == nullptr ? 0 : p->worker_count();
}

#endif  // _OPENMP

// After fork() only the forking thread exists in the child; thread pools (ours, and libgomp's, which is
// known to hang in a forked child) would wait for threads that are gone. The child runs single-threaded.
void atfork_child() {
  g_forked.store(true);
#if !defined(_OPENMP)
  g_pool.store(nullptr);  // abandon (leak) the parent's pool: destroying it would join absent threads
#endif
}

// Registered when the library is loaded, not at the first parallel_for: a process whose torch ops already
// started libgomp's team and that forks before its first slimnn call must still mark the child, or the
// child's first slimnn region waits forever for the parent's OpenMP threads. Registering starts no thread.
const bool g_atfork_registered = pthread_atfork(nullptr, nullptr, atfork_child) == 0;

}  // namespace

void parallel_for(int64_t n_tasks, int nthreads, TaskFn fn, void* ctx) {
  (void)g_atfork_registered;
  if (n_tasks <= 0) return;
  if (nthreads > n_tasks) nthreads = static_cast<int>(n_tasks);
  if (nthreads > 1 && !g_forked.load(std::memory_order_relaxed)) {
    run_parallel(n_tasks, nthreads, fn, ctx);
    return;
  }
  for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t);
}

int pool_worker_count() { return worker_count(); }

bool parallel_disabled_after_fork() { return g_forked.load(); }

}  // namespace slimnn
