// keel::detail::conflict_tracker: optimistic validation of transactions for
// backends whose writers all live in this process (memory; RocksDB, whose
// LOCK keeps every other process out).
//
// How it works (backward validation, as in Silo or FoundationDB's resolver):
// every store has a commit sequence. A transaction remembers the sequence
// when it begins (its "start"). While at least one transaction is live, every
// write to the store (put, erase, batch, erase_range, transaction commit) is
// recorded with the next sequence number and its write set (keys, erased
// ranges) per keyspace. A commit is valid iff no entry recorded after its
// start wrote a key it read or into a range it scanned, in the same keyspace
// (a write to keyspace A never conflicts with a read of keyspace B), and no
// keyspace it read or wrote was dropped since (that is errc::not_found, not
// a conflict: running it again cannot help, its handles are stale); it is
// then applied and recorded in the same critical section. Entries older than the oldest live transaction
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
#include <utility>
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

// Whether writing these keys and erasing these ranges touches what was read
// as `read_keys` (sorted) and `read_ranges` (of one keyspace).
inline bool touches(const std::vector<std::string>& read_keys, const std::vector<key_range>& read_ranges,
                    const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
  for (const auto& k : keys) {
    if (std::binary_search(read_keys.begin(), read_keys.end(), k)) return true;
    for (const auto& r : read_ranges) {
      if (r.contains(k)) return true;
    }
  }
  for (const auto& erased : ranges) {
    if (any_key_in(read_keys, erased)) return true;
    for (const auto& r : read_ranges) {
      if (ranges_overlap(erased, r)) return true;
    }
  }
  return false;
}
// The same for what `tx` read from the default keyspace.
inline bool touches(const tx_record& tx, const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
  return touches(tx.read_keys, tx.read_ranges, keys, ranges);
}

// What `tx` read from keyspace `name` (not ""), or nullptr when nothing.
inline const tx_keyspace_reads* reads_of(const tx_record& tx, std::string_view name) {
  auto it = std::lower_bound(tx.keyspace_reads.begin(), tx.keyspace_reads.end(), name,
                             [](const tx_keyspace_reads& r, std::string_view n) { return r.keyspace < n; });
  return it != tx.keyspace_reads.end() && it->keyspace == name ? &*it : nullptr;
}

// Whether `tx` read or wrote keyspace `name` (not "").
inline bool uses_keyspace(const tx_record& tx, std::string_view name) {
  if (reads_of(tx, name)) return true;
  for (const auto& op : tx.writes) {
    if (op.keyspace == name) return true;
  }
  return false;
}

// What a commit gives when a keyspace it read or wrote was dropped after
// the transaction began (whether or not the name was created again since).
inline keel::error keyspace_dropped_during_transaction(std::string_view name) {
  std::string shown;
  for (unsigned char c : name) shown += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return keel::error(errc::not_found, "transaction: keyspace '" + shown +
                                          "', which it read or wrote, was dropped while it ran; nothing was written");
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

  // Records a write that has just been applied (to the default keyspace,
  // or to keyspace `keyspace`). Call while excluding begins and commits;
  // concurrent record()s are fine.
  void record(std::vector<std::string> keys, std::vector<key_range> ranges = {}) {
    std::lock_guard lock(mutex_);
    if (live_.empty()) return;
    log_.push_back({++seq_, std::move(keys), std::move(ranges)});
  }
  void record(std::string_view keyspace, std::vector<std::string> keys, std::vector<key_range> ranges = {}) {
    if (keyspace.empty()) return record(std::move(keys), std::move(ranges));
    std::lock_guard lock(mutex_);
    if (live_.empty()) return;
    keyspace_log_.push_back({{++seq_, std::move(keys), std::move(ranges)}, std::string(keyspace)});
  }
  // One key written in `keyspace`: record(keyspace, {key}) with the vector
  // built here, not at the call sites (writes whose fast path tests
  // recording() and calls this).
  void record_key(std::string_view keyspace, std::string_view key) { record(keyspace, {std::string(key)}); }
  // A batch: its ops in each keyspace it names, as one position.
  void record(const write_batch& batch) {
    if (!recording()) return;
    std::vector<std::string> keys;
    std::vector<key_range> ranges;
    split(batch, keys, ranges);
    if (!batch.names_keyspaces()) return record(std::move(keys), std::move(ranges));
    std::vector<keyspace_entry> parts;
    for (const auto& op : batch) {
      if (op.keyspace.empty()) continue;
      if (std::none_of(parts.begin(), parts.end(), [&](const auto& e) { return e.keyspace == op.keyspace; }))
        parts.push_back({{}, std::string(op.keyspace)});
    }
    for (auto& e : parts) split(batch, e.keys, e.ranges, e.keyspace);
    std::lock_guard lock(mutex_);
    if (live_.empty()) return;
    ++seq_;
    if (!keys.empty() || !ranges.empty()) log_.push_back({seq_, std::move(keys), std::move(ranges)});
    for (auto& e : parts) {
      e.seq = seq_;
      keyspace_log_.push_back(std::move(e));
    }
  }
  // Records that keyspace `keyspace` was dropped: a transaction live now
  // that read or wrote it fails to commit (not_found). Call where record()
  // may be called, and before the name can be created again.
  void record_drop(std::string_view keyspace) {
    std::lock_guard lock(mutex_);
    if (live_.empty()) return;
    keyspace_log_.push_back({{++seq_, {}, {}}, std::string(keyspace), true});
  }

  // errc::conflict when a write recorded after tx.start touches what tx read
  // in the same keyspace; errc::not_found (keyspace_dropped_during_transaction)
  // when a keyspace tx read or wrote was dropped after tx.start (that one
  // first). Call with every other writer excluded, then apply tx.writes and
  // record() them before releasing the exclusion.
  result<void> validate(const tx_record& tx) const {
    std::lock_guard lock(mutex_);
    bool conflict = false;
    for (auto it = keyspace_log_.rbegin(); it != keyspace_log_.rend() && it->seq > tx.start; ++it) {
      if (it->dropped) {
        if (uses_keyspace(tx, it->keyspace)) return keyspace_dropped_during_transaction(it->keyspace);
      } else if (!conflict) {
        const tx_keyspace_reads* read = reads_of(tx, it->keyspace);
        conflict = read && touches(read->read_keys, read->read_ranges, it->keys, it->ranges);
      }
    }
    for (auto it = log_.rbegin(); !conflict && it != log_.rend() && it->seq > tx.start; ++it) {
      conflict = touches(tx, it->keys, it->ranges);
    }
    if (conflict) {
      return keel::error(errc::conflict,
                         "transaction conflict: another commit changed a key this transaction read or a range it "
                         "scanned; nothing was written, run the transaction again");
    }
    return {};
  }

  // Entries kept (for tests and stats).
  std::size_t log_size() const {
    std::lock_guard lock(mutex_);
    return log_.size() + keyspace_log_.size();
  }

  // The keys and erased ranges of the ops of `batch` in the default keyspace.
  static void split(const write_batch& batch, std::vector<std::string>& keys, std::vector<key_range>& ranges) {
    keys.reserve(batch.size());
    for (const auto& op : batch) {
      if (!op.keyspace.empty()) continue;
      if (op.kind == write_batch::op_kind::erase_range)
        ranges.push_back(op.range());
      else
        keys.emplace_back(op.key);
    }
  }
  // The same in keyspace `keyspace`.
  static void split(const write_batch& batch, std::vector<std::string>& keys, std::vector<key_range>& ranges,
                    std::string_view keyspace) {
    for (const auto& op : batch) {
      if (op.keyspace != keyspace) continue;
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
  // A write to, or the drop of, a keyspace other than "".
  struct keyspace_entry : entry {
    std::string keyspace;
    bool dropped = false;  // keyspace `keyspace` was dropped (keys, ranges empty)
  };

  void end(std::uint64_t start) {
    std::lock_guard lock(mutex_);
    live_.erase(live_.find(start));
    live_count_.store(live_.size(), std::memory_order_seq_cst);
    // Entries at or below the oldest live start can no longer conflict.
    const std::uint64_t oldest = live_.empty() ? seq_ : *live_.begin();
    while (!log_.empty() && log_.front().seq <= oldest) log_.pop_front();
    while (!keyspace_log_.empty() && keyspace_log_.front().seq <= oldest) keyspace_log_.pop_front();
  }

  mutable std::mutex mutex_;
  std::uint64_t seq_ = 0;             // the last recorded position
  std::multiset<std::uint64_t> live_; // starts of live transactions
  std::atomic<std::size_t> live_count_{0};
  std::deque<entry> log_;             // the default keyspace's writes, ascending seq
  std::deque<keyspace_entry> keyspace_log_;  // other keyspaces' writes and drops, ascending seq
};

}  // namespace keel::detail
