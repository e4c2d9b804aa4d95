// keel: HybridPolicy<Small, Large>, the hybrid store's policy: the contract
// methods (contract.hpp), each forwarded to the tier that holds the data,
// over the parts that do one job each:
//   hybrid/options.hpp   hybrid_options; what the policy asks of its tiers
//   hybrid/layout.hpp    PATH/{keel.lock, TIER, memory/, rocksdb/}, TIER read and replaced
//   hybrid/move.hpp      the move to RocksDB and its commit point
//   hybrid/keyspaces.hpp what a keyspace handle points to, in either tier
//   hybrid/snapshot.hpp  the snapshot of the tier it was taken from
//   hybrid/watch.hpp     watch: the tier's, one seq across the move
//   hybrid/expiry.hpp    expiry: one clock, the move carries deadlines
//   detail/any_cursor.hpp  the cursor of whichever tier a scan was taken from
//   detail/conflict_tracker.hpp  transaction validation that spans a move
//   hybrid/writer_preferring_gate.hpp  the gates below
//
// Lock order (a thread takes them in this order, never the other way round;
// none is taken twice by one thread, not even shared):
//   close_mutex_   one close() at a time.
//   move_mutex_    one move at a time (move_to_large(), the background mover);
//                  guards last_move_error_.
//   tier_gate_     writer-preferring (detail::writer_preferring_gate): once the
//                  move or close() asks for it exclusively, new calls wait for
//                  it, so writers that overlap without a gap cannot starve the
//                  move. Shared: every call that uses a tier, for its duration.
//                  Exclusive: the move's start (snapshot, moving_ set) and its
//                  switch (last round, TIER, tier_ and large_ set), close().
//                  Guards tier_, moving_ and large_; close() closes the tiers under it.
//   write_gate_    writer-preferring too (synced writers that never pause
//                  would otherwise keep a transaction's begin or commit
//                  waiting for ever). Shared: plain writes; exclusive:
//                  transaction begin and commit. Taken inside tier_gate_.
//   keyspaces_.mutex  the registry of live keyspaces (hybrid/keyspaces.hpp):
//                  held to create or drop a keyspace (inside both gates,
//                  shared) and to take the move's views of the memory tier
//                  (a snapshot plus every keyspace's handle, consistent).
//   delta_         the keyspaces, keys and ranges written during a move (its
//                  own mutex, detail::hybrid_delta); added to under both gates.
//   then the conflict tracker's, the tiers' and mover_'s own locks.
// open_, stopping_, written_since_check_ and check_at_ are atomics.
//
// Thread safety: every member may be called concurrently, close() included.
// Transactions are validated by the hybrid store itself
// (detail::conflict_tracker), so a transaction begun before the move commits
// after it with the same rules. During a move, writers also note the keys
// they wrote (one set insert).
// Errors: open() gives the tiers' errors (lock_held_by_other_process with the
// holder's PID, whichever tier the data is in, since keel.lock is taken
// first; already_open_in_process), errc::corruption when TIER names no tier
// or names rocksdb and rocksdb/ is missing, invalid_argument without a path.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../detail/any_cursor.hpp"
#include "../detail/background_worker.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../detail/file_lock.hpp"
#include "../detail/platform_file.hpp"
#include "../memory.hpp"
#include "../rocksdb.hpp"
#include "../store.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "layout.hpp"
#include "move.hpp"
#include "options.hpp"
#include "snapshot.hpp"
#include "watch.hpp"
#include "writer_preferring_gate.hpp"

namespace keel {

template <class Small, class Large>
class HybridPolicy : public std::enable_shared_from_this<HybridPolicy<Small, Large>> {
  static_assert(hybrid_small_tier<Small>, "Small does not meet keel::hybrid_small_tier");
  static_assert(hybrid_large_tier<Large>, "Large does not meet keel::hybrid_large_tier");
  struct private_tag {};

 public:
  using options = hybrid_options;
  static constexpr keel::backend backend_kind = keel::backend::hybrid;
  enum class tier { small, large };

  // The cursor of the tier it was taken from; a run_cursor, walked a run at
  // a time like any_store's (detail/any_cursor.hpp).
  using cursor_type = detail::any_cursor<typename Small::cursor_type, typename Large::cursor_type>;

  // ---- keyspace handle: valid in either tier, across the move --------------
  // A share of the keyspace's entry (hybrid/keyspaces.hpp), which holds the
  // tier's handle of it in each tier it has been in. Cheap to copy; usable
  // from many threads.
  class keyspace_type {
   public:
    const std::string& name() const noexcept { return entry_->name; }

   private:
    friend class HybridPolicy;
    template <class, class, class>
    friend class detail::hybrid_snapshot;
    using entry = detail::hybrid_keyspace<typename Small::keyspace_type, typename Large::keyspace_type>;
    explicit keyspace_type(std::shared_ptr<entry> e) : entry_(std::move(e)) {}
    std::shared_ptr<entry> entry_;
  };

  // ---- snapshot: the snapshot of the tier it was taken from (hybrid/snapshot.hpp)
  using snapshot_type = detail::hybrid_snapshot<Small, Large, keyspace_type>;

  // ---- store ----------------------------------------------------------------
  static result<std::shared_ptr<HybridPolicy>> open(const options& opts) {
    if (opts.path.empty()) return keel::error(errc::invalid_argument, "hybrid store: hybrid_options::path is empty");
    const hybrid_layout layout{opts.path};
    std::error_code ec;
    std::filesystem::create_directories(opts.path, ec);
    if (ec) {
      return keel::error(ec == std::errc::permission_denied ? errc::permission_denied : errc::io_error,
                         "hybrid store: cannot create '" + detail::path_text(opts.path) + "': " + ec.message());
    }
    auto lock = detail::file_lock::acquire(layout.lock(), opts.path);
    if (!lock) return lock.error();
    auto p = std::make_shared<HybridPolicy>(private_tag{}, opts);
    p->lock_ = std::move(*lock);
    auto named = layout.read_tier();
    if (!named) return named.error();
    if (named->has_value() && **named == hybrid_layout::rocksdb_tier) {
      if (auto r = p->open_large(); !r) return r.error();
    } else {
      if (auto r = p->open_small(!named->has_value()); !r) return r.error();
    }
    return p;
  }

  HybridPolicy(private_tag, const options& opts) : opts_(opts), layout_{opts.path} {}
  HybridPolicy(const HybridPolicy&) = delete;
  HybridPolicy& operator=(const HybridPolicy&) = delete;
  ~HybridPolicy() { (void)close(); }

  result<void> put(std::string_view key, std::string_view value) {
    return write_key(key, key.size() + value.size(), [&](auto& t) { return t.put(key, value); });
  }
  result<void> erase(std::string_view key) {
    return write_key(key, key.size(), [&](auto& t) { return t.erase(key); });
  }
  result<void> write(const write_batch& batch) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->write(batch) : small_->write(batch);
    record_write(r, batch);
    return r;
  }
  result<void> erase_range(const key_range& range) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->erase_range(range) : small_->erase_range(range);
    if (!detail::hybrid_write_refused(r) && (moving_ || conflicts_->recording())) record_written("", {}, {range});
    return r;
  }

  result<std::optional<std::string>> get(std::string_view key) const {
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? large_->get(key) : small_->get(key);
  }
  result<bool> contains(std::string_view key) const {
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? large_->contains(key) : small_->contains(key);
  }
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? large_->multi_get(keys) : small_->multi_get(keys);
  }
  cursor_type scan(const key_range& range) const {
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? cursor_type(std::in_place_index<1>, large_->scan(range))
                                : cursor_type(std::in_place_index<0>, small_->scan(range));
  }
  static cursor_type failed_cursor(keel::error e) {
    return cursor_type(std::in_place_index<0>, Small::failed_cursor(std::move(e)));
  }
  result<snapshot_type> snapshot() const {
    std::shared_lock pin(tier_gate_);
    return snapshot_pinned();
  }

  // ---- expiry (hybrid/expiry.hpp): the tier's, by hybrid_options::clock ---
  result<void> put(std::string_view key, std::string_view value, const put_options& o)
    requires detail::hybrid_tiers_expire<Small, Large>
  {
    return write_key(key, key.size() + value.size(), [&](auto& t) { return t.put(key, value, o); });
  }
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value, const put_options& o)
    requires detail::hybrid_tiers_expire<Small, Large>
  {
    return write_key(ks, key, key.size() + value.size(), [&](auto& t, const auto& h) { return t.put(h, key, value, o); });
  }
  result<key_expiry> expiry(std::string_view key) const
    requires detail::hybrid_tiers_expire<Small, Large>
  {
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? large_->expiry(key) : small_->expiry(key);
  }
  result<key_expiry> expiry(const keyspace_type& ks, std::string_view key) const
    requires detail::hybrid_tiers_expire<Small, Large>
  {
    std::shared_lock pin(tier_gate_);
    return in_tier<result<key_expiry>>(ks, [&](auto& t, const auto& h) { return t.expiry(h, key); });
  }

  // ---- watch (hybrid/watch.hpp): the tier's watch, one seq across the move --
  using watch_type = typename detail::hybrid_watch_parts<Small, Large, typename keyspace_type::entry>::watch_type;
  result<watch_type> watch(const key_range& range, const watch_options& o) const
    requires detail::hybrid_tiers_watch<Small, Large>
  {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    return watches_.make(small_, large_, tier_ == tier::large, nullptr, range, o);
  }
  result<watch_type> watch(const keyspace_type& ks, const key_range& range, const watch_options& o) const
    requires detail::hybrid_tiers_watch<Small, Large>
  {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    return watches_.make(small_, large_, tier_ == tier::large, ks.entry_, range, o);
  }
  std::uint64_t last_seq() const noexcept
    requires detail::hybrid_tiers_watch<Small, Large>
  {
    std::shared_lock pin(tier_gate_);
    return watches_.last_seq(small_.get(), large_.get(), tier_ == tier::large);
  }

  // ---- keyspaces (contract.hpp's keyspace part) ---------------------------
  // Forwarded to the tier that holds the data. A keyspace created or dropped
  // during a move is marked in the move's record, which copies it whole (or
  // drops it from the copy) before the commit point; the move's switch gives
  // every live handle its RocksDB half, so handles taken before the move keep
  // working after it. Errors: the tier's; a handle whose keyspace was
  // dropped gives errc::not_found, after close errc::closed.
  result<keyspace_type> open_keyspace(std::string_view name, bool create) const {
    if (auto bad = keyspace_name_error(name)) return *bad;
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    {
      std::lock_guard registry(keyspaces_.mutex);
      if (auto e = keyspaces_.find(name)) return keyspace_type(std::move(e));
    }
    if (!create) return keel::error(errc::not_found, "hybrid store: no keyspace '" + std::string(name) + "'");
    std::shared_lock writing(write_gate_);
    std::lock_guard registry(keyspaces_.mutex);
    if (auto e = keyspaces_.find(name)) return keyspace_type(std::move(e));
    auto e = tier_ == tier::large ? keyspaces_.add(*large_, name, true, &keyspace_type::entry::large)
                                  : keyspaces_.add(*small_, name, true, &keyspace_type::entry::small);
    if (!e) return e.error();
    if (moving_) delta_.add_whole(name);
    return keyspace_type(std::move(*e));
  }
  result<std::vector<std::string>> keyspaces() const {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    return tier_ == tier::large ? large_->keyspaces() : small_->keyspaces();
  }
  result<void> drop_keyspace(std::string_view name) {
    if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
    if (auto bad = keyspace_name_error(name)) return *bad;
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    std::shared_lock writing(write_gate_);
    std::lock_guard registry(keyspaces_.mutex);
    auto it = keyspaces_.by_name.find(name);
    if (it == keyspaces_.by_name.end())
      return keel::error(errc::not_found, "drop_keyspace: hybrid store: no keyspace '" + std::string(name) + "'");
    auto r = tier_ == tier::large ? large_->drop_keyspace(name) : small_->drop_keyspace(name);
    if (!r) return r;
    keyspaces_.by_name.erase(it);
    conflicts_->record_drop(name);  // live transactions that used it fail to commit
    if (moving_) delta_.add_whole(name);
    return {};
  }

  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value) {
    return write_key(ks, key, key.size() + value.size(), [&](auto& t, const auto& h) { return t.put(h, key, value); });
  }
  result<void> erase(const keyspace_type& ks, std::string_view key) {
    return write_key(ks, key, key.size(), [&](auto& t, const auto& h) { return t.erase(h, key); });
  }
  result<void> erase_range(const keyspace_type& ks, const key_range& range) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = in_tier<result<void>>(ks, [&](auto& t, const auto& h) { return t.erase_range(h, range); });
    if (!detail::hybrid_write_refused(r) && (moving_ || conflicts_->recording()))
      record_written(ks.name(), {}, {range});
    return r;
  }
  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
    std::shared_lock pin(tier_gate_);
    return in_tier<result<std::optional<std::string>>>(ks, [&](auto& t, const auto& h) { return t.get(h, key); });
  }
  result<bool> contains(const keyspace_type& ks, std::string_view key) const {
    std::shared_lock pin(tier_gate_);
    return in_tier<result<bool>>(ks, [&](auto& t, const auto& h) { return t.contains(h, key); });
  }
  result<std::vector<std::optional<std::string>>> multi_get(const keyspace_type& ks,
                                                            std::span<const std::string_view> keys) const {
    std::shared_lock pin(tier_gate_);
    return in_tier<result<std::vector<std::optional<std::string>>>>(
        ks, [&](auto& t, const auto& h) { return t.multi_get(h, keys); });
  }
  cursor_type scan(const keyspace_type& ks, const key_range& range) const {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return failed_cursor(closed_error());
    if (tier_ == tier::large) {
      if (!ks.entry_->large) return failed_cursor(detail::hybrid_keyspace_gone(ks.name()));
      return cursor_type(std::in_place_index<1>, large_->scan(*ks.entry_->large, range));
    }
    if (!ks.entry_->small) return failed_cursor(detail::hybrid_keyspace_gone(ks.name()));
    return cursor_type(std::in_place_index<0>, small_->scan(*ks.entry_->small, range));
  }
  // As compact(range), in keyspace `ks` (a due move happens first).
  result<void> compact(const keyspace_type& ks, const key_range& range) {
    if (auto due = move_if_due(); !due) return due.error();
    std::shared_lock pin(tier_gate_);
    return in_tier<result<void>>(ks, [&](auto& t, const auto& h) { return t.compact(h, range); });
  }

  // Reclaims space in the current tier (RocksDB: CompactRange; memory:
  // compresses now, with compression). A move that is due (move_if_due())
  // happens first, so a short-lived program can compact to make it happen;
  // if that move fails, compact() returns its error (the data stays in the
  // memory tier, nothing lost) and compacts nothing.
  result<void> compact(const key_range& range) {
    if (auto due = move_if_due(); !due) return due.error();
    std::shared_lock pin(tier_gate_);
    return tier_ == tier::large ? large_->compact(range) : small_->compact(range);
  }

  // A consistent copy in the hybrid layout: `path` (a new directory) gets
  // TIER and the current tier's checkpoint (memory/store or rocksdb/), so it
  // opens as a hybrid store. Nothing is left at `path` on failure.
  result<void> checkpoint(const std::filesystem::path& path) const {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    if (auto bad = detail::checkpoint_path_error(path)) return *bad;
    if (tier_ == tier::large) {
      return detail::write_hybrid_checkpoint(path, hybrid_layout::rocksdb_tier, watches_.map(),
                                             [&](const hybrid_layout& copy) { return large_->checkpoint(copy.rocksdb_dir()); });
    }
    return detail::write_hybrid_checkpoint(path, hybrid_layout::memory_tier, {},
                                           [&](const hybrid_layout& copy) { return small_->checkpoint(copy.memory_file()); });
  }

  // Transactions: the view is the current tier's, the validation the hybrid
  // store's own (so it spans a move).
  // With expiry, a transaction of the memory tier too (hybrid/expiry.hpp).
  result<tx_start<snapshot_type>> begin_transaction() const {
    std::shared_lock pin(tier_gate_);
    std::unique_lock writing(write_gate_);
    if constexpr (detail::hybrid_tiers_expire<Small, Large>) {
      auto make = [](auto v) { return snapshot_type(std::move(v)); };
      if (tier_ == tier::large) return tx_expiry_->template begin<snapshot_type>(*large_, *conflicts_, make, false);
      return tx_expiry_->template begin<snapshot_type>(*small_, *conflicts_, make, true);
    } else {
      auto view = snapshot_pinned();
      if (!view) return view.error();
      auto [start, registration] = conflicts_->begin();
      return tx_start<snapshot_type>{std::move(*view), start, std::move(registration)};
    }
  }
  // Reads and writes in any keyspace: validated per (keyspace, key) and per
  // scanned range of a keyspace; a keyspace the transaction used that was
  // dropped meanwhile is errc::not_found (conflict_tracker).
  result<void> commit_transaction(const tx_record& tx) {
    std::shared_lock pin(tier_gate_);
    std::unique_lock writing(write_gate_);
    if (!is_open()) return closed_error();
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    result<void> r;
    if constexpr (detail::hybrid_tiers_expire<Small, Large>)  // the tier checks deadlines (hybrid/expiry.hpp)
      r = tier_ == tier::large ? tx_expiry_->commit_in_rocksdb_tier(*large_, tx) : tx_expiry_->commit_in_memory_tier(*small_, tx);
    else
      r = tier_ == tier::large ? large_->write(tx.writes) : small_->write(tx.writes);
    record_write(r, tx.writes);
    return r;
  }

  // Closes both tiers and unlocks the path. A move in progress stops (what it
  // had copied is removed by the next open; the memory tier has every write).
  result<void> close() {
    std::lock_guard closing(close_mutex_);
    stopping_.store(true);
    mover_.stop();
    std::lock_guard moving(move_mutex_);  // waits for a move_to_large() called by the user
    std::unique_lock pin(tier_gate_);
    if (!open_.load()) return {};
    open_.store(false);
    result<void> r;
    if (large_) r = large_->close();
    if (small_) {
      auto s = small_->close();
      if (r && !s) r = s;
    }
    lock_.release();
    return r;
  }
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  // Makes every acknowledged write durable in the current tier (memory: folds
  // its log into its snapshot file; RocksDB: syncs the WAL).
  result<void> flush() {
    std::shared_lock pin(tier_gate_);
    if (!is_open()) return closed_error();
    return tier_ == tier::large ? large_->flush() : small_->flush();
  }

  // Moves the data to the large tier now, if it is not there yet, and returns
  // once the move committed (or failed: the data stays in memory, nothing
  // lost). Readers and writers keep working meanwhile. The store does this
  // by itself past spill_bytes; this is for tests and for callers that know
  // the data will grow.
  result<void> move_to_large() {
    std::lock_guard one(move_mutex_);
    auto r = move_locked();
    if (!r) last_move_error_ = r.error();
    return r;
  }

  // Moves the data to the large tier now if the move is due (the memory tier
  // holds spill_bytes or more) and returns once it committed; returns whether
  // the data is in the large tier afterwards. The background move starts by
  // itself, but close() stops a move in progress (the next open starts it
  // again): a program that lives shorter than a move (keel's command-line
  // tool: one command per process) calls this, or compact(), before it
  // closes. Errors: those of move_to_large() (the data stays in memory).
  result<bool> move_if_due() {
    {
      std::shared_lock pin(tier_gate_);
      if (!is_open()) return closed_error();
      if (tier_ == tier::large) return true;
      if (small_->memory_bytes() < opts_.spill_bytes) return false;
    }
    if (auto r = move_to_large(); !r) return r.error();
    return true;
  }

  // Which tier holds the data now.
  tier current_tier() const {
    std::shared_lock pin(tier_gate_);
    return tier_;
  }
  // Whether close() has begun (a move in progress then stops before it
  // commits, and its copy is removed). For tests and monitoring.
  bool closing() const noexcept { return stopping_.load(); }
  // Why the last move failed, if it did (the store retries after another
  // spill_bytes / 16 bytes written).
  std::optional<keel::error> last_move_error() const {
    std::lock_guard one(move_mutex_);
    return last_move_error_;
  }
  const hybrid_options& options_used() const noexcept { return opts_; }

  // The current tier's backend_stats, plus the tier's name.
  friend result<void> backend_stats(const HybridPolicy& p, store_stats& s) {
    std::shared_lock pin(p.tier_gate_);
    if (!p.is_open()) return closed_error();
    s.tier = std::string(to_string(p.tier_ == tier::large ? Large::backend_kind : Small::backend_kind));
    s.properties.emplace_back("keel.hybrid.spill_bytes", p.opts_.spill_bytes);
    if (p.tier_ == tier::large) return tier_stats(*p.large_, s);
    return tier_stats(*p.small_, s);
  }

 private:
  using move_type = detail::hybrid_move<Small, Large>;

  template <class P>
  static result<void> tier_stats(const P& p, store_stats& s) {
    if constexpr (requires { { backend_stats(p, s) } -> std::same_as<result<void>>; }) {
      return backend_stats(p, s);
    } else {
      return {};
    }
  }

  // ---- open -----------------------------------------------------------------
  result<void> open_small(bool new_store) {
    std::error_code ec;
    // rocksdb/ without TIER = rocksdb: a move that did not commit. Nobody else
    // can have it open: keel.lock is held and every opener takes it first.
    if (std::filesystem::exists(layout_.rocksdb_dir(), ec)) {
      std::filesystem::remove_all(layout_.rocksdb_dir(), ec);
      if (ec) {
        return keel::error(errc::io_error, "hybrid store: cannot remove '" + detail::path_text(layout_.rocksdb_dir()) +
                                               "', left by a move to RocksDB that did not complete: " + ec.message());
      }
    }
    std::filesystem::create_directories(layout_.memory_dir(), ec);
    if (ec) {
      return keel::error(errc::io_error,
                         "hybrid store: cannot create '" + detail::path_text(layout_.memory_dir()) + "': " + ec.message());
    }
    typename Small::options so;
    so.persist_path = layout_.memory_file();
    so.sync_writes = opts_.sync_writes;
    so.compression = opts_.compression;
    if constexpr (detail::hybrid_tiers_expire<Small, Large>) so.clock = opts_.clock;
    auto s = Small::open(so);
    if (!s) return s.error();
    small_ = std::move(*s);
    if (new_store) {
      bool renamed = false;
      if (auto t = detail::write_tier(layout_, hybrid_layout::memory_tier, renamed); !t) {
        (void)small_->close();
        return t.error();
      }
    }
    tier_ = tier::small;
    if (auto k = load_keyspaces(); !k) {
      (void)small_->close();
      return k;
    }
    arm_size_check(small_->memory_bytes());
    mover_.start([this] { size_check(); });
    if (small_->memory_bytes() >= opts_.spill_bytes) mover_.request();
    return {};
  }

  result<void> open_large() {
    std::error_code ec;
    if (!std::filesystem::is_directory(layout_.rocksdb_dir(), ec)) {
      return keel::error(errc::corruption, "hybrid store: '" + detail::path_text(layout_.tier()) +
                                               "' says the data is in RocksDB, but '" +
                                               detail::path_text(layout_.rocksdb_dir()) + "' is missing; nothing was changed");
    }
    typename Large::options lo;
    lo.path = layout_.rocksdb_dir();
    lo.sync_writes = opts_.sync_writes;
    if constexpr (requires { lo.create_if_missing = false; }) lo.create_if_missing = false;
    if constexpr (detail::hybrid_tiers_expire<Small, Large>) lo.clock = opts_.clock;
    auto l = Large::open(lo);
    if (!l) return l.error();
    large_ = std::move(*l);
    tier_ = tier::large;
    auto seqs = detail::read_seq_map(layout_);
    if (seqs) watches_.set_map(*seqs);
    if (auto k = seqs ? load_keyspaces() : result<void>(seqs.error()); !k) {
      (void)large_->close();
      return k;
    }
    // Memory files left by a move that committed but had not removed them.
    if (layout_.has_memory_data()) detail::remove_memory_files(layout_);
    return {};
  }

  // The registry of the keyspaces of the tier just opened (before the mover
  // starts: a move's views read it).
  result<void> load_keyspaces() {
    if (tier_ == tier::large) return keyspaces_.load(*large_, &keyspace_type::entry::large);
    return keyspaces_.load(*small_, &keyspace_type::entry::small);
  }

  // Runs f(tier, its handle of ks) in the tier that holds the data (tier
  // gate held shared).
  template <class R, class F>
  R in_tier(const keyspace_type& ks, F&& f) const {
    if (!is_open()) return R(closed_error());
    if (tier_ == tier::large) {
      if (!ks.entry_->large) return R(detail::hybrid_keyspace_gone(ks.name()));
      return f(*large_, *ks.entry_->large);
    }
    if (!ks.entry_->small) return R(detail::hybrid_keyspace_gone(ks.name()));
    return f(*small_, *ks.entry_->small);
  }
  // A write of one key: f(tier) in the default keyspace, or f(tier, handle)
  // in `ks`, under both gates (shared), recorded (record_write).
  template <class F>
  result<void> write_key(std::string_view key, std::size_t bytes, F&& f) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? f(*large_) : f(*small_);
    record_write(r, key, bytes);
    return r;
  }
  template <class F>
  result<void> write_key(const keyspace_type& ks, std::string_view key, std::size_t bytes, F&& f) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = in_tier<result<void>>(ks, std::forward<F>(f));
    record_write(r, ks.name(), key, bytes);
    return r;
  }

  // ---- writes: conflict records, the move's delta, the size check -----------
  // record_write: called with the tier pinned, after the tier's write.
  // Records the keys written for transaction validation and, during a move,
  // for the move's catch-up; counts the bytes toward the next size check.
  // Recorded even when the write failed: it may have been applied (a failed
  // sync), and an extra record costs at most a spurious conflict or an extra
  // copy. Not recorded when it wrote nothing (detail::hybrid_write_refused).
  void record_write(const result<void>& r, std::string_view key, std::size_t bytes) {
    record_write(r, std::string_view(), key, bytes);
  }
  void record_write(const result<void>& r, std::string_view keyspace, std::string_view key, std::size_t bytes) {
    if (detail::hybrid_write_refused(r)) return;
    if (moving_ || conflicts_->recording()) {
      std::vector<std::string> keys;
      keys.emplace_back(key);
      record_written(keyspace, std::move(keys), {});
    }
    count_for_size_check(bytes);
  }
  void record_write(const result<void>& r, const write_batch& batch) {
    if (detail::hybrid_write_refused(r)) return;
    if (moving_) delta_.add(batch);
    conflicts_->record(batch);  // per keyspace; nothing while no transaction is live
    count_for_size_check(batch.payload_bytes());
  }
  void record_written(std::string_view keyspace, std::vector<std::string> keys, std::vector<key_range> ranges) {
    if (moving_) delta_.add(keyspace, keys, ranges);
    if (conflicts_->recording()) conflicts_->record(keyspace, std::move(keys), std::move(ranges));
  }
  // Counts bytes written in the memory tier; wakes the mover for a size check
  // when due.
  void count_for_size_check(std::size_t bytes) {
    if (tier_ != tier::small || moving_) return;
    if (written_since_check_.fetch_add(bytes, std::memory_order_relaxed) + bytes >= check_at_.load(std::memory_order_relaxed))
      mover_.request();
  }
  // The next size check comes after this many bytes written: enough to reach
  // spill_bytes from `held`, and at least 1/16 of it (a check is O(n)).
  void arm_size_check(std::size_t held) {
    const std::size_t to_spill = held < opts_.spill_bytes ? opts_.spill_bytes - held : 0;
    written_since_check_.store(0, std::memory_order_relaxed);
    check_at_.store(std::max<std::size_t>({to_spill, opts_.spill_bytes / 16, 1}), std::memory_order_relaxed);
  }
  // The background mover's job.
  void size_check() {
    if (stopping_.load()) return;
    {
      std::shared_lock pin(tier_gate_);
      if (!is_open() || tier_ != tier::small || moving_) return;
      const std::size_t held = small_->memory_bytes();
      arm_size_check(held);
      if (held < opts_.spill_bytes) return;
    }
    (void)move_to_large();  // on failure: last_move_error(); the next check tries again
  }

  // ---- the move (hybrid/move.hpp does the copying) ------------------------
  // Called with move_mutex_ held.
  result<void> move_locked() {
    std::optional<typename move_type::view_type> base;
    {
      std::unique_lock pin(tier_gate_);
      if (!is_open()) return closed_error();
      if (tier_ == tier::large) return {};
      auto v = small_view();
      if (!v) return v.error();
      base.emplace(std::move(*v));
      moving_ = true;
    }
    auto moved = copy_and_switch(*base);
    if (!moved) {
      std::unique_lock pin(tier_gate_);
      moving_ = false;
      (void)delta_.take();
      if (is_open()) arm_size_check(small_->memory_bytes());
    }
    return moved;
  }

  // Steps (2) to (5) of the move (hybrid/move.hpp): the copy and catch-up
  // outside the gate, the last round, the commit and the switch inside it.
  result<void> copy_and_switch(const typename move_type::view_type& base) {
    auto started = move_type::start(layout_, opts_.sync_writes, stopping_, opts_.clock);
    if (!started) return started.error();
    move_type& move = *started;
    if (auto c = move.copy_snapshot(base); !c) return move.abandon(c.error());
    auto view_now = [this] {
      std::shared_lock pin(tier_gate_);
      return small_view();
    };
    if (auto c = move.catch_up(view_now, delta_); !c) return move.abandon(c.error());
    std::unique_lock pin(tier_gate_);
    if (!is_open() || stopping_.load()) return move.abandon(closed_error());
    if (auto f = move.finish([this] { return small_view(); }, delta_); !f) return move.abandon(f.error());
    // Every live keyspace's handle in the copy, for the switch below.
    std::vector<std::pair<std::shared_ptr<typename keyspace_type::entry>, typename Large::keyspace_type>> handles;
    {
      std::lock_guard registry(keyspaces_.mutex);
      for (const auto& [name, e] : keyspaces_.by_name) {
        auto h = move.copy_store().open_keyspace(name, false);
        if (!h) return move.abandon(h.error());
        handles.emplace_back(e, std::move(*h));
      }
    }
    const auto seqs = watches_.map_at_switch(*small_, move.copy_store());  // before TIER: see hybrid/watch.hpp
    if (auto w = detail::write_seq_map(layout_, seqs); !w) return move.abandon(w.error());
    bool renamed = false;
    auto committed = move.commit(renamed);
    if (!committed && !renamed) return move.abandon(committed.error());
    // Committed (or, after a failed directory sync, as good as: TIER names
    // RocksDB and RocksDB has every write; the memory files stay, in case the
    // rename does not survive a power loss).
    large_ = std::move(move).copy();
    for (auto& [e, h] : handles) {
      e->large.emplace(std::move(h));
      if (tx_expiry_->any_in_memory_tier()) conflicts_->record(e->name, {}, {key_range::all()});  // hybrid/expiry.hpp
    }
    watches_.switched(*large_, seqs);
    tier_ = tier::large;
    moving_ = false;
    pin.unlock();
    detail::hybrid_move_reached(detail::hybrid_move_step::committed);
    (void)small_->release_persistence();
    if (!committed) return detail::moving_error(committed.error());
    detail::remove_memory_files(layout_);
    detail::hybrid_move_reached(detail::hybrid_move_step::released);
    return {};
  }

  // With the tier gate held (either way), in the memory tier: a snapshot of
  // it and every live keyspace's handle, consistent (no keyspace is created
  // or dropped meanwhile: the registry's mutex is held).
  result<typename move_type::view_type> small_view() const {
    std::lock_guard registry(keyspaces_.mutex);
    auto s = small_->snapshot();
    if (!s) return s.error();
    typename move_type::view_type v{std::move(*s), {}};
    v.keyspaces.reserve(keyspaces_.by_name.size());
    for (const auto& [name, e] : keyspaces_.by_name) v.keyspaces.emplace_back(name, *e->small);
    return v;
  }

  result<snapshot_type> snapshot_pinned() const {
    if (tier_ == tier::large) {
      auto s = large_->snapshot();
      if (!s) return s.error();
      return snapshot_type(std::move(*s));
    }
    auto s = small_->snapshot();
    if (!s) return s.error();
    return snapshot_type(std::move(*s));
  }

  hybrid_options opts_;
  hybrid_layout layout_;
  detail::file_lock lock_;  // keel.lock, held while open
  // Both kept until the store is destroyed (closed by close()): small_ keeps
  // serving the snapshots and cursors taken before a move.
  std::shared_ptr<Small> small_;
  std::shared_ptr<Large> large_;  // set by open_large() or the move's switch (tier_gate_ exclusive)
  // The locks and what they guard: see the lock order at the top of this file.
  mutable detail::writer_preferring_gate tier_gate_;
  mutable detail::writer_preferring_gate write_gate_;
  tier tier_ = tier::small;  // guarded by tier_gate_
  bool moving_ = false;      // guarded by tier_gate_ (set, cleared exclusively)
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  std::shared_ptr<detail::hybrid_tx_expiry> tx_expiry_ = std::make_shared<detail::hybrid_tx_expiry>();
  std::atomic<bool> open_{true};
  std::atomic<bool> stopping_{false};
  std::mutex close_mutex_;
  mutable std::mutex move_mutex_;
  std::optional<keel::error> last_move_error_;  // guarded by move_mutex_
  // The live keyspaces (hybrid/keyspaces.hpp); its mutex: see the lock order.
  mutable detail::hybrid_keyspace_registry<typename Small::keyspace_type, typename Large::keyspace_type> keyspaces_;
  mutable detail::hybrid_delta delta_;          // written during a move; its own mutex
  std::atomic<std::size_t> written_since_check_{0};
  std::atomic<std::size_t> check_at_{1};
  detail::background_worker mover_;  // size checks and background moves
  typename detail::hybrid_watch_parts<Small, Large, typename keyspace_type::entry>::hub watches_;  // tier_gate_
};

static_assert(store_policy<HybridPolicy<>>);
static_assert(keyspace_policy<HybridPolicy<>>);
static_assert(expiry_policy<HybridPolicy<>>);
// Scans are walked by runs (basic_cursor: one dispatch per run, not per step).
static_assert(run_cursor<HybridPolicy<>::cursor_type>);

}  // namespace keel
