// keel/memory/expiry.hpp - expiry (time to live) in the memory backend
// (issue 29; docs/expiry.md, "Memory"): the store's clock, the time a read
// leaves expired entries out at (read_time), the deadlines of a batch, the
// check that a transaction's reads did not expire before its commit, and the
// sweep that reclaims expired entries (memory_expiry). Needs no library.
//
// Where deadlines live: in the entries that have one (pb_entry: a flag bit
// and 8 bytes after the value; btree.hpp). A store in which no key ever had
// a ttl holds none, and its reads test one bit per entry found.
//
// Reclamation: a sweep removes the entries whose deadline has passed, in
// chunks of chunk_entries per published version, like any write (readers
// holding older versions keep them); an entry rewritten since the sweep saw
// it is left alone. Before a chunk is published, the sweep listener
// (set_sweep_listener: the store's watch, memory/watch.hpp) is told which
// keys it removes: it gives the chunk a seq, an erase change per key for the
// watches and, in a persisted store, a log frame of their erases (issue 28;
// docs/watch.md, "Expiry"); when it fails (the log), the chunk is not
// published and a later sweep tries again. While transactions are live, each chunk is recorded for
// their validation (a transaction that read a swept key conflicts). The
// sweep runs on a background thread of the store every
// memory_options::expiry_interval once the store holds a deadline (started
// at the first one: stores without ttl have no such thread), and at
// compact().
//
// Thread safety: now(), used(), read_time from any thread; note_deadline()
// and the writers' side with the store's writers' mutex held; sweep() takes
// the writers' mutex per chunk (never held when it is called); start/stop
// from the store's open and close.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/background_worker.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../expiry.hpp"
#include "../write_batch.hpp"
#include "btree.hpp"
#include "keyspaces.hpp"
#include "versions.hpp"

namespace keel::detail {

// The time a read leaves expired entries out at: a fixed one (scans,
// snapshots, transactions: the time they were made), or "now", read from
// the clock the first time an entry with a deadline is met (point reads: a
// store without ttl never reads its clock).
class read_time {
 public:
  // Never hides anything (a version that holds no deadline).
  static read_time never() noexcept { return read_time(nullptr, std::numeric_limits<deadline_ms>::min(), true); }
  static read_time fixed(deadline_ms at) noexcept { return read_time(nullptr, at, true); }
  static read_time live(const clock_source& clock) noexcept { return read_time(&clock, 0, false); }

  // Whether this is never(): the version read held no deadline.
  bool never_hides() const noexcept {
    return clock_ == nullptr && at_ == std::numeric_limits<deadline_ms>::min();
  }
  // Whether `e` has expired at this time.
  bool hides(const pb_entry& e) const {
    if (!e.has_deadline()) return false;
    return e.deadline() <= at();
  }
  deadline_ms at() const {
    if (!known_) {
      at_ = std::chrono::duration_cast<std::chrono::milliseconds>(read_clock(*clock_).time_since_epoch()).count();
      known_ = true;
    }
    return at_;
  }

 private:
  read_time(const clock_source* clock, deadline_ms at, bool known) noexcept : clock_(clock), at_(at), known_(known) {}
  const clock_source* clock_;
  mutable deadline_ms at_;
  mutable bool known_;
};

class memory_expiry {
 public:
  using tree = persistent_btree;
  static constexpr std::size_t chunk_entries = 4096;  // entries removed per published version

  explicit memory_expiry(memory_versions& versions) noexcept : versions_(versions) {}
  memory_expiry(const memory_expiry&) = delete;
  memory_expiry& operator=(const memory_expiry&) = delete;
  ~memory_expiry() { stop(); }

  // At open, before the store is shared.
  void enable(clock_source clock, std::chrono::milliseconds interval, std::shared_ptr<conflict_tracker> conflicts) {
    clock_ = std::move(clock);
    interval_ = interval;
    conflicts_ = std::move(conflicts);
  }
  const clock_source& clock() const noexcept { return clock_; }
  // At open, before the store is shared: told, with the writers' mutex held,
  // before each sweep publishes a version, the keyspace and the keys it
  // removes (nullptr when wants_keys() said false at the start of a rebuild:
  // only that something is removed); false: do not publish (nothing was
  // logged). wants_keys(): whether the listener needs the keys (writers'
  // mutex held, or read before a rebuild's scan and checked again under it).
  void set_sweep_listener(std::function<bool(std::string_view, const std::vector<std::string>*)> swept,
                          std::function<bool()> wants_keys) {
    swept_ = std::move(swept);
    wants_keys_ = std::move(wants_keys);
  }
  deadline_ms now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(read_clock(clock_).time_since_epoch()).count();
  }
  // Whether the store has held a deadline since it was opened (loaded or
  // written). Set before the first version holding one is published.
  bool used() const noexcept { return used_.load(std::memory_order_acquire); }
  // The time a scan, snapshot or transaction made now reads at.
  read_time fixed_now() const { return used() ? read_time::fixed(now()) : read_time::never(); }
  read_time live() const noexcept { return read_time::live(clock_); }

  // The time the batch's ttls count from (now when it has one; nothing is
  // read otherwise), or invalid_argument when one is bad (zero or less, or
  // a deadline past what the clock holds): then nothing may be written.
  result<deadline_ms> batch_time(const write_batch& batch) const {
    if (!batch.has_ttl()) return deadline_ms{0};
    const auto at = read_clock(clock_);
    for (const auto& op : batch) {
      if (op.kind != write_batch::op_kind::put || op.ttl.count() == 0) continue;
      if (auto d = deadline_after(at, op.ttl); !d) return std::move(d).error();
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
  }
  // The deadline a batch op gets when the batch's time is `at`.
  static deadline_ms deadline_of(const write_batch::op& op, deadline_ms at) noexcept {
    return op.kind == write_batch::op_kind::put && op.ttl.count() > 0 ? at + op.ttl.count() : pb_entry::no_deadline;
  }

  // Writers' mutex held (or at open), before a version holding `deadline`
  // is published: the sweeps start.
  void note_deadline(deadline_ms deadline) {
    if (deadline == pb_entry::no_deadline) return;
    earliest_ = std::min(earliest_, deadline);
    if (!used_.load(std::memory_order_relaxed)) used_.store(true, std::memory_order_release);
    if (!started_) {
      started_ = true;
      if (interval_.count() > 0) worker_.start([this] { sweep(true); }, interval_);
    }
  }
  void note_batch(const write_batch& batch, deadline_ms at) {
    if (!batch.has_ttl()) return;
    for (const auto& op : batch) note_deadline(deadline_of(op, at));
  }
  // Ends the background sweeps (a running one stops early). Idempotent.
  void stop() { worker_.stop(); }
  // At open, after loading: sweep the loaded expired entries soon.
  void request() { worker_.request(); }

  // Removes every entry whose deadline has passed from the current version
  // of every keyspace, chunk_entries per published version. background: the
  // background thread's sweep, which stops early at close() and returns at
  // once when no deadline it knows of has passed (compact(): it looks).
  void sweep(bool background) {
    std::lock_guard sweeping(sweep_mutex_);
    store_version version;
    deadline_ms at = 0;
    {
      std::lock_guard writer(versions_.writers());
      if (!versions_.is_open() || !used()) return;
      at = now();
      if (background && at < earliest_) return;  // nothing due
      earliest_ = pb_entry::no_deadline;  // writers note theirs from here on
      version = versions_.current_all();
    }
    deadline_ms next = pb_entry::no_deadline;
    bool whole = sweep_tree(version.main, nullptr, at, next, background);
    if (whole && version.table)  // the hot keyspace's tree is the version's (tree_of)
      for (const auto& root : *version.table)
        if (!(whole = sweep_tree(version.tree_of(*root), root.get(), at, next, background))) break;
    std::lock_guard writer(versions_.writers());
    earliest_ = whole ? std::min(earliest_, next) : std::numeric_limits<deadline_ms>::min();
  }

  // Writers' mutex held, after the conflict tracker validated `tx`: a
  // conflict when a key it read, or a key in a range it scanned, was live
  // in its view (tx.view_time) and has expired since (by now).
  result<void> check_reads(const tx_record& tx) const {
    if (!tx.view_time || !used()) return {};
    const deadline_ms seen = *tx.view_time, at = now();
    auto expired_since = [&](const pb_entry* e) {
      return e && e->has_deadline() && e->deadline() > seen && e->deadline() <= at;
    };
    auto check = [&](const tree* t, const std::vector<std::string>& keys, const std::vector<key_range>& ranges) {
      if (!t) return false;
      for (const auto& k : keys)
        if (expired_since(t->find(k))) return true;
      for (const auto& r : ranges) {
        tree::cursor it(*t);
        if (r.lower()) it.seek(*r.lower()); else it.seek_first();
        for (; it.valid() && (!r.upper() || it.key() < *r.upper()); it.next())
          if (expired_since(it.entry())) return true;
      }
      return false;
    };
    bool conflict = check(versions_.current_root(), tx.read_keys, tx.read_ranges);
    for (const auto& part : tx.keyspace_reads) {
      if (conflict) break;
      const store_version& current = versions_.writer_version();
      const keyspace_root* r = store_version::find_root(current.table.get(), part.keyspace);
      conflict = check(r ? &current.tree_of(*r) : nullptr, part.read_keys, part.read_ranges);
    }
    if (!conflict) return {};
    return keel::error(errc::conflict,
                       "transaction conflict: a key this transaction read (or saw in a range it scanned) expired "
                       "before its commit; nothing was written, run the transaction again");
  }

 private:
  // sweep() for one keyspace's tree `version` (`keyspace`: its entry in the
  // sweep's table; nullptr: ""); `next` gets the earliest deadline left.
  // False when the sweep must stop (closed, or stopping). When most of the
  // tree has expired, it is rebuilt from the live entries (shared, not
  // copied) outside the writers' mutex and published at once if nothing
  // was written to it meanwhile and no transaction is live; otherwise, and
  // for fewer expired entries, they are erased chunk_entries at a time.
  bool sweep_tree(const tree& version, const keyspace_root* keyspace, deadline_ms at, deadline_ms& next,
                  bool background) {
    std::size_t due = 0;
    {
      tree::cursor it(version);
      for (it.seek_first(); it.valid(); it.next()) due += it.entry()->deadline() <= at;
    }
    if (due == 0) return true;
    if (due * 2 > version.size() && rebuild(version, keyspace, at)) {
      tree::cursor it(version);
      for (it.seek_first(); it.valid(); it.next())
        if (it.entry()->deadline() > at && it.entry()->has_deadline()) next = std::min(next, it.entry()->deadline());
      return versions_.is_open();
    }
    return erase_in_chunks(version, keyspace, at, next, background);
  }
  // Publishes `version` without its entries expired at `at`, if the
  // keyspace's tree is still `version` and no transaction is live; false
  // (nothing done) otherwise.
  bool rebuild(const tree& version, const keyspace_root* keyspace, deadline_ms at) {
    if (conflicts_ && conflicts_->recording()) return false;
    const bool keys = wants_keys_ && wants_keys_();
    std::vector<std::string> removed;  // when the listener wants them
    tree::transient fresh{tree()};
    {
      tree::cursor it(version);
      for (it.seek_first(); it.valid(); it.next()) {
        if (it.entry()->deadline() > at)
          fresh.insert_shared(it.entry());
        else if (keys)
          removed.emplace_back(it.key());
      }
    }
    tree live = std::move(fresh).persist();
    std::lock_guard writer(versions_.writers());
    if (!versions_.is_open() || (conflicts_ && conflicts_->recording())) return false;
    if (!keys && wants_keys_ && wants_keys_()) return false;  // a watch began meanwhile: the chunks list the keys
    const std::string_view name = keyspace ? std::string_view(keyspace->name) : std::string_view();
    if (!keyspace) {
      if (!versions_.current().same_version(version)) return false;
      if (swept_ && !swept_(name, keys ? &removed : nullptr)) return false;
      versions_.publish(std::move(live));
      return true;
    }
    const keyspace_root* now = store_version::find_root(versions_.current_others().get(), keyspace->name);
    if (!now || now->id != keyspace->id || !now->tree.same_version(version)) return false;
    if (swept_ && !swept_(name, keys ? &removed : nullptr)) return false;
    versions_.publish(versions_.current(),
                      with_keyspace(versions_.current_others().get(),
                                    std::make_shared<const keyspace_root>(
                                        keyspace_root{now->name, now->id, std::move(live)})));
    return true;
  }
  bool erase_in_chunks(const tree& version, const keyspace_root* keyspace, deadline_ms at, deadline_ms& next,
                       bool background) {
    std::vector<std::pair<std::string, const pb_entry*>> chunk;
    auto commit = [&] {
      if (chunk.empty()) return;
      std::lock_guard writer(versions_.writers());
      if (!versions_.is_open()) return chunk.clear();
      const keyspace_root* now = nullptr;
      if (keyspace) {
        now = store_version::find_root(versions_.current_others().get(), keyspace->name);
        if (!now || now->id != keyspace->id) return chunk.clear();  // dropped since
      }
      tree::transient edit(now ? now->tree : versions_.current());
      std::vector<std::string> removed;
      for (auto& [key, was] : chunk) {
        if (const pb_entry* is = edit.find(key); is != was) {  // written since (or recompressed)
          if (is) next = std::min(next, is->deadline());       // a later sweep looks again
          continue;
        }
        edit.erase(key);
        removed.push_back(std::move(key));
      }
      if (!removed.empty() && swept_ &&
          !swept_(keyspace ? std::string_view(keyspace->name) : std::string_view(), &removed)) {
        next = std::numeric_limits<deadline_ms>::min();  // not published (the log failed): a later sweep tries again
        return chunk.clear();
      }
      if (!removed.empty()) {
        if (now) {
          versions_.publish(versions_.current(),
                            with_keyspace(versions_.current_others().get(),
                                          std::make_shared<const keyspace_root>(
                                              keyspace_root{now->name, now->id, std::move(edit).persist()})));
        } else {
          versions_.publish(std::move(edit).persist());
        }
        if (conflicts_ && conflicts_->recording())
          conflicts_->record(keyspace ? std::string_view(keyspace->name) : std::string_view(), std::move(removed));
      }
      chunk.clear();
    };
    tree::cursor it(version);
    for (it.seek_first(); it.valid(); it.next()) {
      const pb_entry* e = it.entry();
      if (!e->has_deadline()) continue;
      if (e->deadline() > at) {
        next = std::min(next, e->deadline());
        continue;
      }
      chunk.emplace_back(std::string(e->key()), e);
      if (chunk.size() >= chunk_entries) {
        commit();
        if (!versions_.is_open() || (background && worker_.stopping())) return false;
      }
    }
    commit();
    return versions_.is_open();
  }

  memory_versions& versions_;
  clock_source clock_;
  std::chrono::milliseconds interval_{0};
  std::shared_ptr<conflict_tracker> conflicts_;
  std::function<bool(std::string_view, const std::vector<std::string>*)> swept_;  // set at open
  std::function<bool()> wants_keys_;
  std::atomic<bool> used_{false};
  bool started_ = false;                                   // writers' mutex
  deadline_ms earliest_ = pb_entry::no_deadline;           // writers' mutex: no deadline before it is left
  std::mutex sweep_mutex_;                                 // one sweep at a time
  background_worker worker_;                               // the background sweeps
};

}  // namespace keel::detail
