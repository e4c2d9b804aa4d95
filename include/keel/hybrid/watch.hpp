// keel: watch on the hybrid store (issue 28; watch.hpp has the semantics):
// HybridPolicy's watch_type and the part of the store that makes watches and
// hands them over to RocksDB at the move. Needs no backend headers.
//
// Design: a hybrid watch is a watch of the tier that holds the data; the
// tiers already order commits, group a batch under one seq, expand an
// erase_range into the keys it removed and keep the history, so the hybrid
// store adds nothing to its write path. What it adds is one seq across both
// tiers:
//   - in the memory tier the store's seq is the memory tier's;
//   - the move's switch (readers and writers held off) notes M, the memory
//     tier's last seq, and R, RocksDB's after the copy, and writes them to
//     PATH/SEQ_BASE before its commit point (hybrid/layout.hpp); in the
//     RocksDB tier the store's seq is RocksDB's - R + M. The copy's own
//     writes are at or below R, so they are never delivered; the first write
//     after the switch is above M: no gap, no repeat, and after a reopen the
//     same (SEQ_BASE is read again).
//   - a watch made in the memory tier is registered; the switch gives each
//     registered watch a RocksDB watch of the same keyspace and range after R
//     (from the switch on). The watch reads its memory watch to the end (the
//     memory tier takes no write after the switch), then the RocksDB one.
//   - a watch made in the RocksDB tier with after = S >= M reads RocksDB
//     after S - M + R. With S < M it needs the memory tier's history: kept
//     while this process has the memory tier (the store moved since it
//     opened), so it reads the memory watch after S, then RocksDB after R;
//     once the store was reopened in RocksDB, that history is gone
//     (errc::snapshot_expired, resume with after >= M).
// While a watch reads the memory tier and no switch has happened, next()
// waits in slices of at most hybrid_watch_slice, so that it notices a switch
// (a write to RocksDB then comes without waking the memory watch).
//
// Thread safety: as basic_watch (one thread at a time per watch). The hub
// (hybrid_watch_hub) is used under the store's tier gate: make() and
// last_seq() with it held shared, set_map() and switched() exclusively; its
// own mutex guards the registry, and each link's mutex what the switch hands
// over (taken after the hub's; a watch takes only its link's).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../watch.hpp"
#include "keyspaces.hpp"
#include "layout.hpp"

namespace keel::detail {

// The longest a watch of the memory tier waits at once before it looks
// whether the move's switch happened (see the top of this file).
inline constexpr std::chrono::milliseconds hybrid_watch_slice{20};

// What the switch hands to a watch made in the memory tier.
template <class LargeWatch, class Entry>
struct hybrid_watch_link {
  key_range range = key_range::all();
  std::size_t buffer = 0;
  std::shared_ptr<Entry> keyspace;  // null: the default keyspace
  std::mutex mutex;                 // guards what follows
  bool switched = false;            // the store is in RocksDB: the memory watch gets nothing more
  std::optional<LargeWatch> large;  // its RocksDB watch, after R
  std::optional<keel::error> error; // or why there is none
  hybrid_seq_map map;
};

// The hybrid store's watch_type (see the top of this file). Movable.
template <class SmallWatch, class LargeWatch, class Entry>
class hybrid_watch {
 public:
  using link = hybrid_watch_link<LargeWatch, Entry>;

  // A watch that reads `small`, then what the switch puts in `l`.
  hybrid_watch(SmallWatch small, std::shared_ptr<link> l) : small_(std::move(small)), link_(std::move(l)) {}
  // A watch of the RocksDB tier, its seqs mapped by `map`.
  hybrid_watch(LargeWatch large, hybrid_seq_map map) : large_(std::move(large)), map_(map) {}

  result<std::optional<change>> next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (small_) {
      bool switched = false;
      {
        std::lock_guard l(link_->mutex);
        switched = link_->switched;
      }
      if (!switched) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        auto c = small_->next(std::clamp(left, std::chrono::milliseconds(0), hybrid_watch_slice));
        if (!c || *c || std::chrono::steady_clock::now() >= deadline) return c;
        continue;
      }
      // After the switch the memory tier takes no write: nothing now is the end.
      auto c = small_->next(std::chrono::milliseconds(0));
      if (!c || *c) return c;
      small_.reset();
      {
        std::lock_guard l(link_->mutex);
        if (link_->large) {
          large_.emplace(std::move(*link_->large));
          map_ = link_->map;
        } else {
          ended_ = link_->error.value_or(keel::error(errc::closed, "watch: the store is closed"));
        }
      }
      link_.reset();  // after the lock: this may be the link's last owner
    }
    if (ended_) return *ended_;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto c = large_->next(std::max(left, std::chrono::milliseconds(0)));
    if (!c) return large_error(std::move(c).error(), map_);
    if (*c) (*c)->seq = map_.from_large((*c)->seq);
    return c;
  }

  // An error of the RocksDB tier: its message names RocksDB's seqs.
  static keel::error large_error(keel::error e, const hybrid_seq_map& map) {
    if (map == hybrid_seq_map{} || (e != errc::snapshot_expired && e != errc::invalid_argument)) return e;
    return keel::error(e.code(), e.message() + " (seqs of the hybrid store's RocksDB tier: the store's seq is that - " +
                                     std::to_string(map.large_base) + " + " + std::to_string(map.small_last) + ")");
  }

 private:
  std::optional<SmallWatch> small_;
  std::shared_ptr<link> link_;  // while small_ is set
  std::optional<LargeWatch> large_;
  hybrid_seq_map map_;
  std::optional<keel::error> ended_;  // sticky: no RocksDB watch after the memory one
};

// The part of a HybridPolicy<Small, Large> that makes watches (see the top
// of this file); Entry is its keyspace entry (hybrid/keyspaces.hpp).
template <class Small, class Large, class Entry>
class hybrid_watch_hub {
 public:
  using small_watch = typename Small::watch_type;
  using large_watch = typename Large::watch_type;
  using link = hybrid_watch_link<large_watch, Entry>;
  using watch_type = hybrid_watch<small_watch, large_watch, Entry>;

  // Tier gate held exclusively (open, the switch).
  void set_map(const hybrid_seq_map& m) noexcept { map_ = m; }
  hybrid_seq_map map() const noexcept { return map_; }
  // M and R at the switch (tier gate held exclusively, the copy finished).
  static hybrid_seq_map map_at_switch(const Small& small, const Large& copy) noexcept {
    return {small.last_seq(), copy.last_seq()};
  }

  // The store's last seq (tier gate held).
  std::uint64_t last_seq(const Small* small, const Large* large, bool in_large) const noexcept {
    if (in_large) return large ? map_.from_large(large->last_seq()) : map_.small_last;
    return small ? small->last_seq() : 0;
  }

  // A watch of keyspace `ks` (null: the default one) in the tier that holds
  // the data (tier gate held shared; the store is open).
  result<watch_type> make(const std::shared_ptr<Small>& small, const std::shared_ptr<Large>& large, bool in_large,
                          const std::shared_ptr<Entry>& ks, const key_range& range, const watch_options& o) const {
    const std::uint64_t last = last_seq(small.get(), large.get(), in_large);
    if (o.after && *o.after > last) {
      return keel::error(errc::invalid_argument, "watch: after = " + std::to_string(*o.after) +
                                                     " is beyond the store's last seq " + std::to_string(last));
    }
    if (!in_large) {
      auto w = small_watch_of(*small, ks, range, o);
      if (!w) return w.error();
      auto l = std::make_shared<link>();
      l->range = range;
      l->buffer = o.buffer;
      l->keyspace = ks;
      {
        std::lock_guard lock(mutex_);
        std::erase_if(links_, [](const auto& weak) { return weak.expired(); });
        links_.push_back(l);
      }
      return watch_type(std::move(*w), std::move(l));
    }
    if (!o.after || *o.after >= map_.small_last) {
      watch_options lo = o;
      if (o.after) lo.after = map_.to_large(*o.after);
      auto w = large_watch_of(*large, ks, range, lo);
      if (!w) return watch_type::large_error(std::move(w).error(), map_);
      return watch_type(std::move(*w), map_);
    }
    // after < M: the memory tier's history, then RocksDB from the switch. A
    // keyspace made in RocksDB had no change in the memory tier.
    if (ks && !ks->small) {
      watch_options lo = o;
      lo.after = map_.large_base;
      auto w = large_watch_of(*large, ks, range, lo);
      if (!w) return watch_type::large_error(std::move(w).error(), map_);
      return watch_type(std::move(*w), map_);
    }
    if (!small) {
      return keel::error(errc::snapshot_expired,
                         "watch: the changes after seq " + std::to_string(*o.after) +
                             " were made in the hybrid store's memory tier, before its move to RocksDB, and are no "
                             "longer kept since the store was opened again; resume with after >= " +
                             std::to_string(map_.small_last));
    }
    auto w = small_watch_of(*small, ks, range, o);
    if (!w) return w.error();
    auto l = std::make_shared<link>();
    hand_over(*l, *large, ks, range, o.buffer, map_);
    return watch_type(std::move(*w), std::move(l));
  }

  // The move's switch (tier gate held exclusively, every live keyspace entry
  // has its RocksDB handle): every watch of the memory tier gets its RocksDB
  // watch, after R.
  void switched(Large& large, const hybrid_seq_map& m) {
    map_ = m;
    std::lock_guard lock(mutex_);
    for (const auto& weak : links_) {
      if (auto l = weak.lock()) hand_over(*l, large, l->keyspace, l->range, l->buffer, m);
    }
    links_.clear();
  }

 private:
  static void hand_over(link& l, Large& large, const std::shared_ptr<Entry>& ks, const key_range& range,
                        std::size_t buffer, const hybrid_seq_map& m) {
    std::lock_guard lock(l.mutex);
    l.switched = true;
    l.map = m;
    watch_options o;
    o.after = m.large_base;
    o.buffer = buffer;
    auto w = large_watch_of(large, ks, range, o);
    if (w) {
      l.large.emplace(std::move(*w));
    } else {
      l.error = watch_type::large_error(std::move(w).error(), m);
    }
  }
  static result<small_watch> small_watch_of(const Small& small, const std::shared_ptr<Entry>& ks, const key_range& range,
                                            const watch_options& o) {
    if (!ks) return small.watch(range, o);
    if (!ks->small) return hybrid_keyspace_gone(ks->name);
    return small.watch(*ks->small, range, o);
  }
  static result<large_watch> large_watch_of(const Large& large, const std::shared_ptr<Entry>& ks, const key_range& range,
                                            const watch_options& o) {
    if (!ks) return large.watch(range, o);
    if (!ks->large) return hybrid_keyspace_gone(ks->name);  // dropped before the switch
    return large.watch(*ks->large, range, o);
  }

  hybrid_seq_map map_;  // guarded by the tier gate
  mutable std::mutex mutex_;
  mutable std::vector<std::weak_ptr<link>> links_;  // watches made in the memory tier; guarded by mutex_
};

// What HybridPolicy<Small, Large> has when a tier has no watch: no
// watch_type, and a hub that does nothing.
struct hybrid_no_watch_hub {
  template <class S, class L>
  static hybrid_seq_map map_at_switch(const S&, const L&) noexcept {
    return {};
  }
  void set_map(const hybrid_seq_map&) noexcept {}
  hybrid_seq_map map() const noexcept { return {}; }
  template <class L>
  void switched(L&, const hybrid_seq_map&) noexcept {}
};
template <class Small, class Large>
concept hybrid_tiers_watch = watch_policy<Small> && watch_policy<Large>;
template <class Small, class Large, class Entry, bool = hybrid_tiers_watch<Small, Large>>
struct hybrid_watch_parts {
  using hub = hybrid_no_watch_hub;
  using watch_type = void;
};
template <class Small, class Large, class Entry>
struct hybrid_watch_parts<Small, Large, Entry, true> {
  using hub = hybrid_watch_hub<Small, Large, Entry>;
  using watch_type = typename hub::watch_type;
};

}  // namespace keel::detail
