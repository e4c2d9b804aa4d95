// Test support: a reusable barrier for N threads (what std::barrier does),
// built on a mutex and a condition variable. Not std::barrier: under wine,
// two threads of a mingw-w64 build (Debian's GCC 12.2 libstdc++, which on
// Windows waits on atomics through its fallback for platforms without
// futexes) meeting at a std::barrier hang for good now and then (tried on
// 2026-12-07: two threads meeting 100 times at a std::barrier(2) hung in 3
// runs of 7; this class, 0 of 20, and 3 runs of 100000 meetings passed).
// Whether the lost wake-up is libstdc++'s or wine's was not established.
// Same contract: arrive_and_wait() returns once all `count` threads have
// arrived in the current phase; it can be reused.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace keel::test {

class rendezvous {
 public:
  explicit rendezvous(int count) : count_(count), waiting_(count) {}
  rendezvous(const rendezvous&) = delete;
  rendezvous& operator=(const rendezvous&) = delete;

  void arrive_and_wait() {
    std::unique_lock l(m_);
    const std::uint64_t phase = phase_;
    if (--waiting_ == 0) {
      waiting_ = count_;
      ++phase_;
      l.unlock();
      cv_.notify_all();
      return;
    }
    cv_.wait(l, [&] { return phase_ != phase; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  const int count_;
  int waiting_;
  std::uint64_t phase_ = 0;
};

}  // namespace keel::test
