// keel::detail::conflict_tracker: optimistic validation of transactions for
// backends whose writers all live in this process (memory; RocksDB, whose
// LOCK keeps every other process out).
//
// How it works (backward validation, as in Silo or FoundationDB's resolver):
// every store has a commit sequence. A transaction remembers the sequence
// when it begins (its "start"). While at least one transaction is live, every
// write to the store (put, erase, batch, erase_range, transaction commit) is
// recorded with the next sequence number and its write set (keys, erased
// ranges). A commit is valid iff no entry recorded after its start wrote a
// key it read or into a range it scanned; it is then applied and recorded in
// the same critical section. Entries older than the oldest live transaction
// are dropped, so with no live transaction nothing is recorded at all.
//
// The backend supplies the exclusion: a commit (validate, apply, record) and
// a begin (register) run with every other writer excluded; plain writes apply
// and record while excluding commits and begins (they may run in parallel with
// each other: record() takes the tracker's own mutex).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
#include "../contract.hpp"  // tx_record

namespace keel::detail {

// True when some key of `keys` (sorted) lies in `r`.
inline bool any_key_in(const std::vector<std::string>& keys, const key_range& r) {
  auto it = r.lower() ? std::lower_bound(keys.begin(), keys.end(), *r.lower()) : keys.begin();
  return it != keys.end() && r.contains(*it);
}

// True when the two ranges share at least one key.
inline bool ranges_overlap(const key_range& a, const key_range& b) {
  if (a.is_empty() || b.is_empty()) return false;
  // [a.lo, a.hi) and [b.lo, b.hi) overlap iff a.lo < b.hi and b.lo < a.hi.
  const bool a_below_b_end = !b.upper() || !a.lower() || *a.lower() < *b.upper();
  const bool b_below_a_end = !a.upper() || !b.lower() || *b.lower() < *a.upper();
  return a_below_b_end && b_below_a_end;
}

// Whether writing these keys and erasing these ranges touches what `tx` read.
inline bool touches(const tx_record& tx, const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
  for (const auto& k : keys) {
    if (std::binary_search(tx.read_keys.begin(), tx.read_keys.end(), k)) return true;
    for (const auto& r : tx.read_ranges) {
      if (r.contains(k)) return true;
    }
  }
  for (const auto& erased : ranges) {
    if (any_key_in(tx.read_keys, erased)) return true;
    for (const auto& r : tx.read_ranges) {
      if (ranges_overlap(erased, r)) return true;
    }
  }
  return false;
}

class conflict_tracker : public std::enable_shared_from_this<conflict_tracker> {
 public:
  // Registers a transaction beginning now and returns {start, registration};
  // the registration ends it when its last copy goes. Call with every writer
  // excluded (so that the view taken right after reflects at least `start`).
  std::pair<std::uint64_t, std::shared_ptr<void>> begin() {
    std::lock_guard lock(mutex_);
    const std::uint64_t start = seq_;
    live_.insert(start);
    live_count_.store(live_.size(), std::memory_order_seq_cst);
    auto self = shared_from_this();
    std::shared_ptr<void> reg(reinterpret_cast<void*>(1), [self, start](void*) { self->end(start); });
    return {start, std::move(reg)};
  }

  // Whether any transaction is live (then writers must record()).
  bool recording() const noexcept { return live_count_.load(std::memory_order_seq_cst) != 0; }

  // Records a write that has just been applied. Call while excluding begins
  // and commits; concurrent record()s are fine.
  void record(std::vector<std::string> keys, std::vector<key_range> ranges = {}) {
    std::lock_guard lock(mutex_);
    if (live_.empty()) return;
    log_.push_back({++seq_, std::move(keys), std::move(ranges)});
  }
  void record(const write_batch& batch) {
    if (!recording()) return;
    std::vector<std::string> keys;
    std::vector<key_range> ranges;
    split(batch, keys, ranges);
    record(std::move(keys), std::move(ranges));
  }

  // errc::conflict when a write recorded after tx.start touches what tx read.
  // Call with every other writer excluded, then apply tx.writes and record()
  // them before releasing the exclusion.
  result<void> validate(const tx_record& tx) const {
    std::lock_guard lock(mutex_);
    for (auto it = log_.rbegin(); it != log_.rend() && it->seq > tx.start; ++it) {
      if (touches(tx, it->keys, it->ranges)) {
        return keel::error(errc::conflict,
                           "transaction conflict: another commit changed a key this transaction read or a range it "
                           "scanned; nothing was written, run the transaction again");
      }
    }
    return {};
  }

  // Entries kept (for tests and stats).
  std::size_t log_size() const {
    std::lock_guard lock(mutex_);
    return log_.size();
  }

  static void split(const write_batch& batch, std::vector<std::string>& keys, std::vector<key_range>& ranges) {
    keys.reserve(batch.size());
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::erase_range)
        ranges.push_back(op.range());
      else
        keys.emplace_back(op.key);
    }
  }

 private:
  struct entry {
    std::uint64_t seq;
    std::vector<std::string> keys;
    std::vector<key_range> ranges;
  };

  void end(std::uint64_t start) {
    std::lock_guard lock(mutex_);
    live_.erase(live_.find(start));
    live_count_.store(live_.size(), std::memory_order_seq_cst);
    // Entries at or below the oldest live start can no longer conflict.
    const std::uint64_t oldest = live_.empty() ? seq_ : *live_.begin();
    while (!log_.empty() && log_.front().seq <= oldest) log_.pop_front();
  }

  mutable std::mutex mutex_;
  std::uint64_t seq_ = 0;             // the last recorded position
  std::multiset<std::uint64_t> live_; // starts of live transactions
  std::atomic<std::size_t> live_count_{0};
  std::deque<entry> log_;             // ascending seq
};

}  // namespace keel::detail
