// keel::detail::writer_preferring_gate: a shared mutex whose exclusive
// requests are not starved by shared holders. The hybrid store's tier and
// transaction gates (hybrid/policy.hpp); its only user, hence in hybrid/.
//
// std::shared_mutex on glibc (pthread_rwlock, PREFER_READER) lets new shared
// holders in while an exclusive request waits, so threads that take it shared
// back to back (writers that wait for fdatasync while holding it) keep an
// exclusive request waiting for as long as they overlap: seconds, or forever.
// This gate closes to new shared holders as soon as an exclusive request is
// made: the request waits only for the shared holders already inside.
//
// Contract:
//   - Meets the standard SharedMutex requirements used here: lock/unlock,
//     try_lock, lock_shared/unlock_shared, try_lock_shared (so std::unique_lock
//     and std::shared_lock work with it).
//   - Writer-preferring: from the moment lock() is called until the matching
//     unlock(), lock_shared() and try_lock_shared() by other threads wait /
//     fail. Exclusive requests are served one at a time, in no particular
//     order (an internal std::mutex); shared holders may starve only while
//     exclusive requests come back to back, which its users must not do (the
//     hybrid store takes it exclusively twice per move, and at close).
//   - Not recursive: a thread holding it shared must not take it shared again
//     (with an exclusive request between the two, that deadlocks), nor
//     exclusively.
//   - Shared acquisition costs one compare-and-swap while no exclusive request
//     is pending, like std::shared_mutex; waiting uses a mutex and condition
//     variables (no spinning).
//   - At most 2^31 - 1 shared holders at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace keel::detail {

class writer_preferring_gate {
 public:
  writer_preferring_gate() = default;
  writer_preferring_gate(const writer_preferring_gate&) = delete;
  writer_preferring_gate& operator=(const writer_preferring_gate&) = delete;

  void lock() {
    exclusive_.lock();  // one exclusive request at a time
    state_.fetch_or(exclusive_bit, std::memory_order_acq_rel);  // no new shared holder from here
    if ((state_.load(std::memory_order_acquire) & holders_mask) == 0) return;
    std::unique_lock l(wait_mutex_);
    drained_.wait(l, [&] { return (state_.load(std::memory_order_acquire) & holders_mask) == 0; });
  }
  bool try_lock() {
    if (!exclusive_.try_lock()) return false;
    std::uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, exclusive_bit, std::memory_order_acquire, std::memory_order_relaxed))
      return true;
    exclusive_.unlock();
    return false;
  }
  void unlock() {
    {
      // Cleared under wait_mutex_: a shared waiter checks the bit under it,
      // so it either sees the bit clear or is waiting when notified.
      std::lock_guard l(wait_mutex_);
      state_.fetch_and(~exclusive_bit, std::memory_order_release);
    }
    opened_.notify_all();
    exclusive_.unlock();
  }

  void lock_shared() {
    if (try_lock_shared()) return;
    std::unique_lock l(wait_mutex_);
    opened_.wait(l, [&] { return try_lock_shared(); });
  }
  bool try_lock_shared() {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & exclusive_bit) == 0) {
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    }
    return false;
  }
  void unlock_shared() {
    const std::uint32_t before = state_.fetch_sub(1, std::memory_order_release);
    if (before == (exclusive_bit | 1)) {
      // The last shared holder leaves while an exclusive request waits. Taking
      // wait_mutex_ orders this after the request's check of the count.
      std::lock_guard l(wait_mutex_);
      drained_.notify_all();
    }
  }

 private:
  static constexpr std::uint32_t exclusive_bit = std::uint32_t{1} << 31;
  static constexpr std::uint32_t holders_mask = exclusive_bit - 1;

  // Bit 31: an exclusive request is pending or holds the gate; bits 0-30: shared holders.
  std::atomic<std::uint32_t> state_{0};
  std::mutex exclusive_;    // held from lock() to unlock(): one exclusive request at a time
  std::mutex wait_mutex_;   // guards the waits below (the state itself is atomic)
  std::condition_variable drained_;  // the exclusive request waits here for the shared holders to leave
  std::condition_variable opened_;   // shared requests wait here for the exclusive holder to leave
};

}  // namespace keel::detail
