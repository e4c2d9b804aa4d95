// Test support: a clock the test moves (keel::clock_source for the stores
// of the expiry cases), so that deadlines pass without sleeping. Copies
// share one time; atomic, so background threads of a store may read it
// while the test moves it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include <keel/expiry.hpp>

namespace keel::test {

class fake_clock {
 public:
  // Starts at 2026-01-01T00:00:00Z.
  static constexpr std::int64_t start_ms = 1767225600000;

  // The clock_source reading this clock (shares its time).
  keel::clock_source source() const {
    auto t = ms_;
    return [t] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(t->load())); };
  }
  // Now, in ms since the epoch (what deadlines are stored as).
  keel::deadline_ms now() const { return ms_->load(); }
  void advance(std::chrono::milliseconds d) { ms_->fetch_add(d.count()); }
  void set(keel::deadline_ms ms) { ms_->store(ms); }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> ms_ = std::make_shared<std::atomic<std::int64_t>>(start_ms);
};

}  // namespace keel::test
