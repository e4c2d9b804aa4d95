// keel::detail: a thread that sleeps until woken (or an interval passes) and
// then runs its job, for the memory backend's background folds, compression
// passes and expiry sweeps.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

namespace keel::detail {

// Thread safety: request() and stopping() from any thread; start() from
// any thread (the first one starts it; requests before it are kept); stop()
// from one thread at a time (its owner's close or destructor). The job
// runs on the worker's thread only, one run at a time.
class background_worker {
 public:
  background_worker() = default;
  background_worker(const background_worker&) = delete;
  background_worker& operator=(const background_worker&) = delete;
  ~background_worker() { stop(); }

  // Starts the thread: it runs job() once per wake-up until stop(), and
  // with `every` > 0 also each time `every` passes without one. Does
  // nothing after stop() or a first start().
  template <class Job>
  void start(Job job, std::chrono::milliseconds every = std::chrono::milliseconds(0)) {
    std::lock_guard started(mutex_);
    if (stop_ || thread_.joinable()) return;
    thread_ = std::thread([this, every, job = std::move(job)]() mutable {
      std::unique_lock l(mutex_);
      for (;;) {
        auto woken = [&] { return stop_ || pending_.load(); };
        if (every.count() > 0)
          cv_.wait_for(l, every, woken);
        else
          cv_.wait(l, woken);
        if (stop_) return;
        l.unlock();
        pending_.store(false);  // a request from now on asks for one more run
        job();
        l.lock();
      }
    });
  }
  // Wakes the thread (one relaxed-cost exchange when a run is pending).
  void request() {
    if (pending_.exchange(true)) return;
    std::lock_guard l(mutex_);
    cv_.notify_one();
  }
  // Whether stop() was called: a long job may end early.
  bool stopping() const noexcept { return stopping_.load(); }
  // Lets the current run finish, ends the thread and joins it; later
  // requests do nothing. Idempotent.
  void stop() {
    {
      std::lock_guard l(mutex_);
      stop_ = true;
      stopping_.store(true);
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> pending_{false};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace keel::detail
