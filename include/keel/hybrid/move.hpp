// keel: the hybrid store's move from its memory tier to RocksDB, and its
// commit point (the replacement of TIER). HybridPolicy (hybrid/policy.hpp)
// runs the steps and holds the locks; this file does the copying:
//
//   (1) the store, with writers held off for an instant, takes a snapshot of
//       the memory tier with the handle of each of its keyspaces
//       (hybrid_small_view) and starts recording, per keyspace, the keys and
//       ranges written from then on and the keyspaces created or dropped
//       (hybrid_delta);
//   (2) hybrid_move::start opens RocksDB in rocksdb/, copy_snapshot copies
//       every keyspace of the snapshot into a column family of it (the
//       same name: rocksdb/keyspaces.hpp) in batches, while readers and
//       writers go on in memory;
//   (3) catch_up copies what the recorded keys and ranges hold now, in
//       rounds, until little is left (a keyspace created or dropped
//       meanwhile is copied again whole, or dropped from the copy);
//   (4) with readers and writers held off by the store: finish copies the
//       rest and syncs RocksDB's WAL, commit replaces TIER (the commit
//       point), and the store routes every later call to RocksDB;
//   (5) the store releases the memory tier: its files are removed, its data
//       is freed once the snapshots and cursors that read it are gone.
// With tiers that expire keys (hybrid/expiry.hpp), every copy carries each
// entry's deadline as the view it is read from has it; entries expired at
// that view's time are not carried.
// A move that fails or is stopped before (4) is abandoned: the copy is closed
// and removed, the data stays in memory, nothing is lost.
//
// Thread safety: a hybrid_move is used by one thread (the one running the
// move; the store runs one move at a time). hybrid_delta is safe to use from
// many threads (its own mutex). Errors: every step returns the tier's error
// as it is; abandon() and moving_error() turn it into the move's error
// ("moving the data to RocksDB failed (it stays in memory): ...").
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <string_view>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
#include "expiry.hpp"
#include "layout.hpp"

namespace keel::detail {

// The steps of a move, in order, for tests: a hook set here is called at
// each (from the thread running the move); a crash test makes it end the
// process there.
enum class hybrid_move_step {
  copied,     // the snapshot taken at the start is in RocksDB
  caught_up,  // the rounds outside the gate are done
  synced,     // the last round copied, RocksDB's WAL synced; TIER not replaced yet (readers and writers held)
  committed,  // TIER names rocksdb; the memory tier's files not removed yet
  released,   // the memory tier released, its files removed
};
inline std::atomic<void (*)(hybrid_move_step)>& hybrid_move_hook() {
  static std::atomic<void (*)(hybrid_move_step)> hook{nullptr};
  return hook;
}
inline void hybrid_move_reached(hybrid_move_step step) {
  if (auto hook = hybrid_move_hook().load()) hook(step);
}

// Whether a write's result says it wrote nothing, so that neither the
// move's record nor transaction validation need its keys: refused whole as
// invalid (invalid_argument), naming a missing or dropped keyspace
// (not_found), by the tier's commit check (conflict: a key read expired), or
// on a closed store. Other errors may come after the write was applied (a
// failed sync): such a write is recorded.
inline bool hybrid_write_refused(const result<void>& r) {
  if (r) return false;
  const errc c = r.error().code();
  return c == errc::invalid_argument || c == errc::not_found || c == errc::conflict || c == errc::closed;
}

// The keys and ranges written since a move began (what the copy must catch
// up on), per keyspace (by name; "" is the default keyspace), and the
// keyspaces created or dropped meanwhile (`whole`: the copy takes that
// keyspace again from scratch, or drops it). Thread-safe: writers add, the
// move takes.
class hybrid_delta {
 public:
  struct keyspace_part {
    std::set<std::string> keys;
    std::vector<key_range> ranges;
    bool whole = false;  // created or dropped during the move
  };
  struct taken {
    std::map<std::string, keyspace_part, std::less<>> keyspaces;
    std::size_t size() const {
      std::size_t n = 0;
      for (const auto& [name, part] : keyspaces) n += part.keys.size() + part.ranges.size() + (part.whole ? 1 : 0);
      return n;
    }
  };

  // Keys and ranges written in keyspace `keyspace`.
  void add(std::string_view keyspace, const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
    std::lock_guard d(mutex_);
    keyspace_part& part = part_of(keyspace);
    for (const auto& k : keys) part.keys.insert(k);
    part.ranges.insert(part.ranges.end(), ranges.begin(), ranges.end());
  }
  // What `batch` wrote, each op in the keyspace it names.
  void add(const write_batch& batch) {
    std::lock_guard d(mutex_);
    for (const auto& op : batch) {
      keyspace_part& part = part_of(op.keyspace);
      if (op.kind == write_batch::op_kind::erase_range)
        part.ranges.push_back(op.range());
      else
        part.keys.emplace(op.key);
    }
  }
  // Keyspace `keyspace` was created or dropped.
  void add_whole(std::string_view keyspace) {
    std::lock_guard d(mutex_);
    part_of(keyspace).whole = true;
  }
  // What was added since the last take(); empties the record.
  taken take() {
    std::lock_guard d(mutex_);
    taken out;
    out.keyspaces.swap(keyspaces_);
    return out;
  }

 private:
  keyspace_part& part_of(std::string_view keyspace) {  // mutex_ held
    auto it = keyspaces_.find(keyspace);
    if (it == keyspaces_.end()) it = keyspaces_.emplace(std::string(keyspace), keyspace_part{}).first;
    return it->second;
  }
  std::mutex mutex_;
  std::map<std::string, keyspace_part, std::less<>> keyspaces_;  // guarded by mutex_
};

// The error of a move that failed: the data stays in memory.
inline keel::error moving_error(const keel::error& e) {
  std::string why = e.message();
  if (e.code() == errc::no_space) {
    // RocksDB's advice (reopen, or its 64 MiB reserve and Resume()) is about
    // a RocksDB store that stays open; the moving copy is dropped instead.
    if (const std::size_t advice = why.find(". The disk is full"); advice != std::string::npos) why.resize(advice);
    why += ". The disk is full: the partial copy was removed, the memory tier keeps taking writes; free space "
           "(the copy needs about the data's size plus 4 MiB, RocksDB's preallocated MANIFEST) and the next "
           "size check, or move_to_large(), tries again";
  }
  return keel::error(e.code(), "hybrid store: moving the data to RocksDB failed (it stays in memory): " + why);
}

// What the move reads the memory tier through: a snapshot and the handle of
// every keyspace in it ("" included, sorted by name), taken while no
// keyspace was created or dropped, so that each handle reads its keyspace in
// the snapshot. The store makes one (HybridPolicy::small_view).
template <class Small>
struct hybrid_small_view {
  typename Small::snapshot_type snapshot;
  std::vector<std::pair<std::string, typename Small::keyspace_type>> keyspaces;

  const typename Small::keyspace_type* find(std::string_view name) const {
    for (const auto& [n, h] : keyspaces)
      if (n == name) return &h;
    return nullptr;
  }
};

// One move in progress: the RocksDB copy being filled (Large: options::path,
// options::sync_writes, write(), flush(), close(), and keyspaces: every
// keyspace of the memory tier becomes one of the copy, under the same name).
// `stopping` is the store's close flag: a copy stops between batches once it
// is set (errc::closed).
template <class Small, class Large>
class hybrid_move {
  static constexpr bool carries_deadlines = hybrid_tiers_expire<Small, Large>;

 public:
  using view_type = hybrid_small_view<Small>;

  // Opens the copy in layout.rocksdb_dir(), after removing what a failed
  // earlier move left there; its clock is `clock` (hybrid_copy_clock over
  // it, when the move carries deadlines). Errors: the tier's, as moving_error().
  static result<hybrid_move> start(const hybrid_layout& layout, bool sync_writes, const std::atomic<bool>& stopping,
                                   const clock_source& clock = {}) {
    std::error_code ec;
    std::filesystem::remove_all(layout.rocksdb_dir(), ec);  // a failed earlier move's
    typename Large::options lo;
    lo.path = layout.rocksdb_dir();
    lo.sync_writes = sync_writes;
    hybrid_copy_clock copy_clock(clock);
    if constexpr (carries_deadlines) lo.clock = copy_clock.source();
    auto opened = Large::open(lo);
    if (!opened) return moving_error(opened.error());
    return hybrid_move(layout, std::move(*opened), stopping, std::move(copy_clock));
  }

  // (2) Copies `base`, the memory tier's view taken at the start: every
  // keyspace in it.
  result<void> copy_snapshot(const view_type& base) {
    for (const auto& [name, handle] : base.keyspaces) {
      if (auto made = copy_keyspace(name); !made) return made.error();
      if (auto c = copy_range(base.snapshot.scan(handle, key_range::all()), name, time_of(base)); !c) return c;
    }
    hybrid_move_reached(hybrid_move_step::copied);
    return {};
  }

  // (3) Catches up on what was written meanwhile, outside the store's gate,
  // while the recorded writes are many and fewer than the round before (at
  // most 16 rounds): writers that outpace the copy would otherwise make
  // each round longer than the last. `view_now()` gives a hybrid_small_view
  // of the memory tier as it is now.
  template <class ViewNow>
  result<void> catch_up(ViewNow&& view_now, hybrid_delta& delta) {
    std::size_t before = static_cast<std::size_t>(-1);
    for (int round = 0; round < 16; ++round) {
      auto d = delta.take();
      const std::size_t n = d.size();
      if (n == 0) break;
      result<view_type> view = view_now();
      if (!view) return view.error();
      if (auto a = apply_delta(d, *view); !a) return a;
      if (n < 256 || n >= before) break;
      before = n;
    }
    hybrid_move_reached(hybrid_move_step::caught_up);
    return {};
  }

  // (4) With readers and writers held off: copies the rest and makes the
  // copy durable (RocksDB's WAL synced).
  template <class ViewNow>
  result<void> finish(ViewNow&& view_now, hybrid_delta& delta) {
    auto d = delta.take();
    result<view_type> view = view_now();
    if (!view) return view.error();
    if (auto a = apply_delta(d, *view); !a) return a;
    if (auto f = large_->flush(); !f) return f;
    hybrid_move_reached(hybrid_move_step::synced);
    return {};
  }

  // The commit point: TIER names rocksdb. `renamed`: whether the rename
  // happened (after it, the move counts as committed even when the call
  // failed: only the directory sync did).
  result<void> commit(bool& renamed) { return write_tier(layout_, hybrid_layout::rocksdb_tier, renamed); }

  // Closes the copy and removes it; returns `e` as the move's error.
  keel::error abandon(const keel::error& e) {
    copy_keyspaces_.clear();
    (void)large_->close();
    std::error_code rm;
    std::filesystem::remove_all(layout_.rocksdb_dir(), rm);
    return moving_error(e);
  }

  // The copy, while the move runs (the store resolves its keyspace handles
  // in it before the commit).
  Large& copy_store() noexcept { return *large_; }
  // The copy, for the store to serve from once committed.
  std::shared_ptr<Large> copy() && {
    copy_keyspaces_.clear();
    return std::move(large_);
  }

 private:
  hybrid_move(const hybrid_layout& layout, std::shared_ptr<Large> large, const std::atomic<bool>& stopping,
              hybrid_copy_clock clock)
      : layout_(layout), large_(std::move(large)), stopping_(&stopping), clock_(std::move(clock)) {}

  // The time `view` hides expired entries at (hybrid_no_view_time: none).
  static deadline_ms time_of(const view_type& view) {
    if constexpr (carries_deadlines) return view.snapshot.view_time();
    return hybrid_no_view_time;
  }
  // Adds the put of the cursor's entry (its deadline carried) to `batch`;
  // false when it had expired at `view_time` (nothing added).
  template <class Cursor>
  static bool add_put(write_batch& batch, std::string_view keyspace, const Cursor& c, deadline_ms view_time) {
    if constexpr (carries_deadlines) {
      put_options o;
      if (!hybrid_carried(c.deadline(), view_time, o)) return false;
      batch.put(keyspace_name(keyspace), c.key(), c.value(), o);
    } else {
      batch.put(keyspace_name(keyspace), c.key(), c.value());
    }
    return true;
  }
  // Writes a batch read from a view taken at `view_time` into the copy (its
  // clock pinned there while it has a ttl: hybrid/expiry.hpp).
  result<void> write_copied(const write_batch& batch, deadline_ms view_time) {
    if constexpr (carries_deadlines) {
      if (batch.has_ttl()) {
        hybrid_copy_clock::pin at(clock_, view_time);
        return large_->write(batch);
      }
    }
    return large_->write(batch);
  }

  // The copy's keyspace `name`, created if missing.
  result<typename Large::keyspace_type> copy_keyspace(std::string_view name) {
    if (auto it = copy_keyspaces_.find(name); it != copy_keyspaces_.end()) return it->second;
    auto made = large_->open_keyspace(name, true);
    if (!made) return made.error();
    copy_keyspaces_.emplace(std::string(name), *made);
    return made;
  }
  // Drops the copy's keyspace `name` if it has one (dropped from the memory
  // tier during the move).
  result<void> drop_copy_keyspace(std::string_view name) {
    if (name.empty()) return {};
    if (auto it = copy_keyspaces_.find(name); it != copy_keyspaces_.end()) copy_keyspaces_.erase(it);
    auto d = large_->drop_keyspace(name);
    if (!d && d.error() != errc::not_found) return d;
    return {};
  }

  // Copies what cursor `c` reads into the copy's keyspace `keyspace`, in batches.
  template <class Cursor>
  result<void> copy_range(Cursor c, std::string_view keyspace, deadline_ms view_time) {
    constexpr std::size_t batch_entries = 1000, batch_bytes = std::size_t{4} << 20;
    write_batch batch;
    std::size_t bytes = 0;
    auto flush_batch = [&]() -> result<void> {
      if (batch.size() == 0) return {};
      if (stopping_->load()) return closed_error();
      auto w = write_copied(batch, view_time);
      batch.clear();
      bytes = 0;
      return w;
    };
    for (; c.valid(); c.next()) {
      if (!add_put(batch, keyspace, c, view_time)) continue;
      bytes += c.key().size() + c.value().size();
      if (batch.size() >= batch_entries || bytes >= batch_bytes) {
        if (auto w = flush_batch(); !w) return w;
      }
    }
    if (c.error()) return *c.error();
    return flush_batch();
  }
  // Makes the copy hold what `view` holds for the keyspaces, keys and
  // ranges of `d`: a keyspace the view lacks is dropped from the copy, one
  // created or dropped meanwhile (`whole`) is copied again entirely.
  result<void> apply_delta(const hybrid_delta::taken& d, const view_type& view) {
    const deadline_ms view_time = time_of(view);
    for (const auto& [name, part] : d.keyspaces) {
      const typename Small::keyspace_type* from = view.find(name);
      if (!from) {
        if (auto dropped = drop_copy_keyspace(name); !dropped) return dropped;
        continue;
      }
      auto to = copy_keyspace(name);
      if (!to) return to.error();
      if (part.whole) {
        if (auto e = large_->erase_range(*to, key_range::all()); !e) return e;
        if (auto c = copy_range(view.snapshot.scan(*from, key_range::all()), name, view_time); !c) return c;
        continue;
      }
      for (const auto& r : part.ranges) {
        if (auto e = large_->erase_range(*to, r); !e) return e;
        if (auto c = copy_range(view.snapshot.scan(*from, r.forward()), name, view_time); !c) return c;
      }
      write_batch batch;
      for (const auto& k : part.keys) {
        if constexpr (carries_deadlines) {  // the key with its deadline: a cursor over it alone
          auto c = view.snapshot.scan(*from, key_range::between(k, k + std::string(1, '\0')));
          if (c.error()) return *c.error();
          if (!c.valid() || !add_put(batch, name, c, view_time)) batch.erase(keyspace_name(name), k);
        } else {
          auto v = view.snapshot.get(*from, k);
          if (!v) return v.error();
          if (*v)
            batch.put(keyspace_name(name), k, **v);
          else
            batch.erase(keyspace_name(name), k);
        }
        if (batch.size() >= 1000) {
          if (auto w = write_copied(batch, view_time); !w) return w;
          batch.clear();
        }
      }
      if (batch.size() != 0) {
        if (auto w = write_copied(batch, view_time); !w) return w;
      }
    }
    return {};
  }

  hybrid_layout layout_;
  std::shared_ptr<Large> large_;
  const std::atomic<bool>* stopping_;
  hybrid_copy_clock clock_;  // the copy's (hybrid/expiry.hpp)
  std::map<std::string, typename Large::keyspace_type, std::less<>> copy_keyspaces_;  // handles into large_
};

}  // namespace keel::detail
