// keel: the hybrid store's move from its memory tier to RocksDB, and its
// commit point (the replacement of TIER). HybridPolicy (hybrid/policy.hpp)
// runs the steps and holds the locks; this file does the copying:
//
//   (1) the store, with writers held off for an instant, takes a snapshot of
//       the memory tier and starts recording the keys and ranges written
//       from then on (hybrid_delta);
//   (2) hybrid_move::start opens RocksDB in rocksdb/, copy_snapshot copies
//       the snapshot into it in batches, while readers and writers go on in
//       memory;
//   (3) catch_up copies what the recorded keys and ranges hold now, in
//       rounds, until little is left;
//   (4) with readers and writers held off by the store: finish copies the
//       rest and syncs RocksDB's WAL, commit replaces TIER (the commit
//       point), and the store routes every later call to RocksDB;
//   (5) the store releases the memory tier: its files are removed, its data
//       is freed once the snapshots and cursors that read it are gone.
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
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
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

// The keys and ranges written since a move began (what the copy must catch
// up on). Thread-safe: writers add, the move takes.
class hybrid_delta {
 public:
  struct taken {
    std::set<std::string> keys;
    std::vector<key_range> ranges;
    std::size_t size() const { return keys.size() + ranges.size(); }
  };

  void add(const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
    std::lock_guard d(mutex_);
    for (const auto& k : keys) keys_.insert(k);
    ranges_.insert(ranges_.end(), ranges.begin(), ranges.end());
  }
  // What was added since the last take(); empties the record.
  taken take() {
    std::lock_guard d(mutex_);
    taken out;
    out.keys.swap(keys_);
    out.ranges.swap(ranges_);
    return out;
  }

 private:
  std::mutex mutex_;
  std::set<std::string> keys_;     // guarded by mutex_
  std::vector<key_range> ranges_;  // guarded by mutex_
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

// One move in progress: the RocksDB copy being filled (Large: options::path,
// options::sync_writes, write(), erase_range(), flush(), close()).
// `stopping` is the store's close flag: a copy stops between batches once it
// is set (errc::closed).
template <class Small, class Large>
class hybrid_move {
 public:
  // Opens the copy in layout.rocksdb_dir(), after removing what a failed
  // earlier move left there. Errors: the tier's, as moving_error().
  static result<hybrid_move> start(const hybrid_layout& layout, bool sync_writes, const std::atomic<bool>& stopping) {
    std::error_code ec;
    std::filesystem::remove_all(layout.rocksdb_dir(), ec);  // a failed earlier move's
    typename Large::options lo;
    lo.path = layout.rocksdb_dir();
    lo.sync_writes = sync_writes;
    auto opened = Large::open(lo);
    if (!opened) return moving_error(opened.error());
    return hybrid_move(layout, std::move(*opened), stopping);
  }

  // (2) Copies `base`, the memory tier's snapshot taken at the start.
  result<void> copy_snapshot(const typename Small::snapshot_type& base) {
    if (auto c = copy_range(base, key_range::all()); !c) return c;
    hybrid_move_reached(hybrid_move_step::copied);
    return {};
  }

  // (3) Catches up on what was written meanwhile, outside the store's gate,
  // while the recorded writes are many (at most 16 rounds).
  result<void> catch_up(const Small& small, hybrid_delta& delta) {
    for (int round = 0; round < 16; ++round) {
      auto d = delta.take();
      if (d.size() == 0) break;
      auto view = small.snapshot();
      if (!view) return view.error();
      if (auto a = apply_delta(d, *view); !a) return a;
      if (d.size() < 256) break;
    }
    hybrid_move_reached(hybrid_move_step::caught_up);
    return {};
  }

  // (4) With readers and writers held off: copies the rest and makes the
  // copy durable (RocksDB's WAL synced).
  result<void> finish(const Small& small, hybrid_delta& delta) {
    auto d = delta.take();
    auto view = small.snapshot();
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
    (void)large_->close();
    std::error_code rm;
    std::filesystem::remove_all(layout_.rocksdb_dir(), rm);
    return moving_error(e);
  }

  // The copy, for the store to serve from once committed.
  std::shared_ptr<Large> copy() && { return std::move(large_); }

 private:
  hybrid_move(const hybrid_layout& layout, std::shared_ptr<Large> large, const std::atomic<bool>& stopping)
      : layout_(layout), large_(std::move(large)), stopping_(&stopping) {}

  // Copies what `view` holds in `range` into the copy, in batches.
  template <class View>
  result<void> copy_range(const View& view, const key_range& range) {
    constexpr std::size_t batch_entries = 1000, batch_bytes = std::size_t{4} << 20;
    write_batch batch;
    std::size_t bytes = 0;
    auto flush_batch = [&]() -> result<void> {
      if (batch.size() == 0) return {};
      if (stopping_->load()) return closed_error();
      auto w = large_->write(batch);
      batch.clear();
      bytes = 0;
      return w;
    };
    auto c = view.scan(range.forward());
    for (; c.valid(); c.next()) {
      batch.put(c.key(), c.value());
      bytes += c.key().size() + c.value().size();
      if (batch.size() >= batch_entries || bytes >= batch_bytes) {
        if (auto w = flush_batch(); !w) return w;
      }
    }
    if (c.error()) return *c.error();
    return flush_batch();
  }
  // Makes the copy hold what `view` holds for the keys and ranges of `d`.
  template <class View>
  result<void> apply_delta(const hybrid_delta::taken& d, const View& view) {
    for (const auto& r : d.ranges) {
      if (auto e = large_->erase_range(r); !e) return e;
      if (auto c = copy_range(view, r); !c) return c;
    }
    write_batch batch;
    for (const auto& k : d.keys) {
      auto v = view.get(k);
      if (!v) return v.error();
      if (*v)
        batch.put(k, **v);
      else
        batch.erase(k);
      if (batch.size() >= 1000) {
        if (auto w = large_->write(batch); !w) return w;
        batch.clear();
      }
    }
    if (batch.size() != 0) return large_->write(batch);
    return {};
  }

  hybrid_layout layout_;
  std::shared_ptr<Large> large_;
  const std::atomic<bool>* stopping_;
};

}  // namespace keel::detail
