// keel: expiry (issue 29; keel/expiry.hpp has the semantics, docs/expiry.md
// "Hybrid" the design) on the hybrid store. Needs no backend headers.
//
// Both tiers set and check deadlines by one clock, hybrid_options::clock
// (given to memory_options::clock and rocks_options::clock), so a deadline
// means the same before and after the move. Reads, puts with a ttl and
// expiry(key) are the tier's. What the hybrid store adds:
//   - the move carries deadlines (hybrid/move.hpp): each entry is copied with
//     the deadline it has in the memory tier's view it is read from; an entry
//     expired at that view's time is not in it, so it is not carried (its
//     absence is the same either way). RocksDB sets a deadline as its clock's
//     time + ttl, so the copy is opened with hybrid_copy_clock: while the move
//     writes a batch read from a view taken at time T, the copy's clock reads
//     T and each entry is put with ttl = deadline - T (> 0: the view hid the
//     rest), which RocksDB stores as the deadline itself.
//   - transactions (hybrid_tx_expiry): the hybrid store validates them itself
//     (detail::conflict_tracker), while the tier knows deadlines and what it
//     reclaimed. A transaction begun in the memory tier while it holds
//     deadlines is a transaction of the memory tier as well (the tier's
//     registration is kept with the store's), and its commit is the tier's
//     commit_transaction with the tier's start: the tier's check (a key read
//     live at the view's time that expired by the commit, or was swept
//     meanwhile) decides as in a memory store. In the RocksDB tier a commit
//     that read something is the tier's commit_transaction with a start taken
//     at the commit (RocksDB's check reads the keys again; its compactions
//     keep what a live view may still read). A transaction begun in the memory
//     tier that commits after the move conflicts if it read anything (the
//     switch records every keyspace as written while one is live): keys
//     expired before the move are not in RocksDB to check.
//
// Thread safety: hybrid_copy_clock's source is called from any thread; pin
// is used by the thread running the move. hybrid_tx_expiry: begin and commit
// under the store's write gate held exclusively; its registry has its own
// mutex (registrations end from any thread).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "../contract.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../error.hpp"
#include "../expiry.hpp"

namespace keel::detail {

// Tiers with expiry that the hybrid store can carry deadlines across: both
// expiry_policy with a clock in their options; the memory tier's cursors
// tell each entry's deadline, and both tiers' snapshots their time.
template <class Small, class Large>
concept hybrid_tiers_expire =
    expiry_policy<Small> && expiry_policy<Large> &&
    requires(typename Small::options& so, typename Large::options& lo, const typename Small::cursor_type& c,
             const typename Small::snapshot_type& ss, const typename Large::snapshot_type& ls) {
      so.clock = clock_source();
      lo.clock = clock_source();
      { c.deadline() } -> std::same_as<std::optional<deadline_ms>>;
      { ss.view_time() } -> std::same_as<deadline_ms>;
      { ls.view_time() } -> std::same_as<deadline_ms>;
    };

// A view time that hides nothing (a memory tier that held no deadline).
inline constexpr deadline_ms hybrid_no_view_time = std::numeric_limits<deadline_ms>::min();

// The clock of the move's RocksDB copy (see the top of this file): the
// store's clock, or, while a pin lives, the time it pinned.
class hybrid_copy_clock {
  static constexpr deadline_ms unpinned = std::numeric_limits<deadline_ms>::min();
  struct state {
    explicit state(clock_source b) : base(std::move(b)) {}
    clock_source base;
    std::atomic<deadline_ms> pinned{unpinned};
  };

 public:
  explicit hybrid_copy_clock(clock_source base) : state_(std::make_shared<state>(std::move(base))) {}
  // The clock_source to open the copy with (shares the pin; outlives this).
  clock_source source() const {
    return [s = state_] {
      const deadline_ms p = s->pinned.load(std::memory_order_acquire);
      if (p == unpinned) return read_clock(s->base);
      return std::chrono::system_clock::time_point(std::chrono::milliseconds(p));
    };
  }
  // The copy's clock reads `at` until the pin goes.
  class pin {
   public:
    pin(const hybrid_copy_clock& c, deadline_ms at) : s_(c.state_.get()) { s_->pinned.store(at, std::memory_order_release); }
    ~pin() { s_->pinned.store(unpinned, std::memory_order_release); }
    pin(const pin&) = delete;
    pin& operator=(const pin&) = delete;

   private:
    state* s_;
  };

 private:
  std::shared_ptr<state> state_;
};

// The put_options that store `deadline` when the copy's clock reads
// `view_time` (nullopt deadline: permanent). False when the entry had
// expired at view_time (it is not carried).
inline bool hybrid_carried(std::optional<deadline_ms> deadline, deadline_ms view_time, put_options& out) {
  out = put_options{};
  if (!deadline) return true;
  if (view_time == hybrid_no_view_time || *deadline <= view_time) return false;
  out.ttl = std::chrono::milliseconds(*deadline - view_time);
  return true;
}

// Transactions of a hybrid store whose tiers expire keys (see the top of
// this file). Shared with the registrations it hands out.
class hybrid_tx_expiry : public std::enable_shared_from_this<hybrid_tx_expiry> {
 public:
  // Begins a transaction in `tier`, the tier that holds the data (write gate
  // held exclusively): the tier's view, the store's start from `conflicts`,
  // and a registration that also keeps the tier's transaction when
  // `memory_tier` and the tier holds deadlines. `make(view)` makes the
  // store's snapshot of the view.
  template <class Snapshot, class Tier, class Make>
  result<tx_start<Snapshot>> begin(const Tier& tier, conflict_tracker& conflicts, Make&& make, bool memory_tier) {
    auto t = tier.begin_transaction();
    if (!t) return std::move(t).error();
    auto begun = conflicts.begin();  // (no structured binding: the lambda below captures the start)
    const std::uint64_t start = begun.first;
    std::shared_ptr<void> registration = std::move(begun.second);
    const bool held = memory_tier && t->view.view_time() != hybrid_no_view_time;
    Snapshot view = make(std::move(t->view));
    if (!held) return tx_start<Snapshot>{std::move(view), start, std::move(registration)};
    {
      std::lock_guard lock(mutex_);
      auto [it, made] = tier_starts_.try_emplace(start, t->start, 0);
      it->second.first = std::min(it->second.first, t->start);
      ++it->second.second;
    }
    struct both {
      std::shared_ptr<void> store, tier;
    };
    auto self = shared_from_this();
    auto* b = new both{std::move(registration), std::move(t->registration)};
    return tx_start<Snapshot>{std::move(view), start, std::shared_ptr<void>(b, [self, start](void* p) {
                                delete static_cast<both*>(p);
                                self->end(start);
                              })};
  }
  // Whether a transaction begun by begin() in the memory tier is live.
  bool any_in_memory_tier() const {
    std::lock_guard lock(mutex_);
    return !tier_starts_.empty();
  }

  // The commit of `tx` (validated by the store) in the memory tier `small`:
  // the tier's commit_transaction with its own start when the transaction
  // was begun there while it held deadlines, else its writes.
  template <class Small>
  result<void> commit_in_memory_tier(Small& small, const tx_record& tx) const {
    if (checks(tx)) {
      std::optional<std::uint64_t> tier_start;
      {
        std::lock_guard lock(mutex_);
        if (auto it = tier_starts_.find(tx.start); it != tier_starts_.end()) tier_start = it->second.first;
      }
      if (tier_start) return small.commit_transaction(with_start(tx, *tier_start));
    }
    return small.write(tx.writes);
  }
  // The same in the RocksDB tier `large`: its commit_transaction with a
  // start taken now when the transaction read something, else its writes.
  template <class Large>
  static result<void> commit_in_rocksdb_tier(Large& large, const tx_record& tx) {
    if (!checks(tx)) return large.write(tx.writes);
    auto now = large.begin_transaction();
    if (!now) return std::move(now).error();
    return large.commit_transaction(with_start(tx, now->start));
  }

 private:
  // Whether the tier must look at `tx`'s reads: it read something at a view
  // time that could hide a key.
  static bool checks(const tx_record& tx) {
    if (!tx.view_time || *tx.view_time == hybrid_no_view_time) return false;
    return !tx.read_keys.empty() || !tx.read_ranges.empty() || !tx.keyspace_reads.empty();
  }
  static tx_record with_start(const tx_record& tx, std::uint64_t start) {
    tx_record t = tx;
    t.start = start;
    return t;
  }
  void end(std::uint64_t start) {
    std::lock_guard lock(mutex_);
    if (auto it = tier_starts_.find(start); it != tier_starts_.end() && --it->second.second == 0) tier_starts_.erase(it);
  }

  mutable std::mutex mutex_;
  // The store's start -> {the earliest tier start of the transactions begun
  // at it, how many are live}; guarded by mutex_.
  std::map<std::uint64_t, std::pair<std::uint64_t, std::size_t>> tier_starts_;
};

}  // namespace keel::detail
