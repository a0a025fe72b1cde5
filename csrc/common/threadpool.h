// Parallel execution of kernel tasks.
//
// Kernels never start threads themselves: an op calls parallel_for with the thread count it was given
// (the Python layer passes slimnn.get_num_threads()), and the calling thread takes part in the work, so
// `nthreads` is the total, never exceeded.
//
// Built with OpenMP (the default), regions run on the OpenMP runtime torch already loaded, so torch's ops
// and ours share one team of threads instead of two teams spinning against each other on the same cores.
// A call from inside a parallel region runs inline. Without OpenMP, a process-wide pool serves one op at a
// time and a call that finds it busy runs inline instead of waiting (no deadlock, no oversubscription).
// After fork() the child runs kernels single-threaded (the parent's threads do not exist there).
#pragma once
#include <cstdint>
#include <vector>

namespace slimnn {

using TaskFn = void (*)(void* ctx, int64_t task);

// Runs fn(ctx, t) for every t in [0, n_tasks) on at most `nthreads` threads, the caller included.
// Returns when all tasks are done. Tasks are handed out dynamically (an atomic counter).
void parallel_for(int64_t n_tasks, int nthreads, TaskFn fn, void* ctx);

template <typename F>
void parallel_for(int64_t n_tasks, int nthreads, F& f) {
  parallel_for(
      n_tasks, nthreads, [](void* c, int64_t t) { (*static_cast<F*>(c))(t); }, &f);
}

// The sparse drivers' task grid, tiles of activation rows x chunks of weight units: split(want) returns the
// unit bounds of about `want` chunks (want: some 4 tasks per thread over all tiles; 1 when single-threaded);
// run(tile, u0, u1) then runs once per tile and non-empty chunk, on at most `nthreads` threads.
template <typename Split, typename Run>
void parallel_tile_chunks(int64_t tiles, int nthreads, Split&& split, Run&& run) {
  const int64_t want = nthreads == 1 ? 1 : (4 * int64_t(nthreads) + tiles - 1) / tiles;
  const std::vector<int64_t> bounds = split(want);
  const int64_t chunks = static_cast<int64_t>(bounds.size()) - 1;
  auto task = [&](int64_t t) {
    const int64_t tile = t / chunks, c = t % chunks;
    if (bounds[c] == bounds[c + 1]) return;
    run(tile, bounds[c], bounds[c + 1]);
  };
  parallel_for(tiles * chunks, nthreads, task);
}

// Number of worker threads alive now (for tests: the pool never grows past the largest request - 1).
int pool_worker_count();

// True in a child process created by fork() after slimnn was used: kernels then run single-threaded.
bool parallel_disabled_after_fork();

}  // namespace slimnn
