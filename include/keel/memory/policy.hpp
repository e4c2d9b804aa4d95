// keel/memory/policy.hpp - MemoryPolicy, the memory backend's policy: the
// contract methods (contract.hpp), each forwarding to the part that does the
// job:
//   versions.hpp     the current version, its publication and reclamation
//                    (memory_versions, epoch_domain)
//   btree.hpp        the persistent B+tree the versions are made of
//   persistence.hpp  the persisted form: load, log appends and syncs, folds,
//                    checkpoints, the saved dictionary (memory_persistence)
//   log.hpp          the write-ahead log itself (memory_log)
//   compression.hpp  value codecs and the background compression pass
//                    (value_compression)
//   checks.hpp       what a write may ask for (sizes, ranges)
//   keyspaces.hpp    the table of non-default keyspaces and batches across
//                    keyspaces (the version layout is in versions.hpp)
//   watch.hpp        seqs, the change history and what each commit delivers
//                    (memory_watch; issue 28)
//   expiry.hpp       deadlines: the clock, read times, the sweep that
//                    reclaims expired entries (memory_expiry)
// Needs no RocksDB headers.
//
// Lock order (a thread holding one may take only those after it):
//   1. close_mutex_                    (here) serialises close() and
//                                      release_persistence(), which stop the
//                                      background threads first
//   2. persistence_.save_mutex()       serialises folds and saves (flush, the
//      or value_compression's mutex    background fold, close); the
//                                      compression pass's mutex serialises
//                                      passes and guards the codec table.
//                                      The two are never held together.
//   3. versions_.writers()             the writers' mutex: serialises writes
//                                      and transaction begins; guards the
//                                      retired versions and node pool
//                                      (versions), the log encoder and
//                                      released() (persistence), the raw-byte
//                                      counts (compression), and orders log
//                                      frames as versions are published
//   4. inside the parts, never calling out: memory_log's sync mutex (group
//      commit; wait_synced() takes it without the writers' mutex), the
//      conflict tracker's mutex, epoch_domain's slot list, the background
//      workers' own mutexes.
// Point reads (get, contains, multi_get) take no lock (an epoch slot);
// scans and snapshots take a counted handle to the current version.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../compression.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../detail/platform_file.hpp"
#include "../store.hpp"
#include "btree.hpp"
#include "checks.hpp"
#include "compression.hpp"
#include "cursor.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "options.hpp"
#include "persistence.hpp"
#include "versions.hpp"
#include "watch.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// MemoryPolicy: the in-memory backend. See contract.hpp for the contract.
// Thread safety: every member may be called concurrently, close() included.
// Keys and values up to 4 GiB - 1 bytes each (larger: invalid_argument).
// ---------------------------------------------------------------------------
class MemoryPolicy : public std::enable_shared_from_this<MemoryPolicy> {
  using tree = detail::persistent_btree;

 public:
  using options = memory_options;
  static constexpr keel::backend backend_kind = keel::backend::memory;

  // ---- cursor (memory/cursor.hpp) ----------------------------------------
  using cursor_type = detail::memory_cursor;
  using watch_type = detail::feed_watch;  // memory/watch.hpp, memory/change_feed.hpp

  // ---- keyspace handle ----------------------------------------------------
  // A keyspace's name and the id it was given when created (0: the default
  // keyspace). Copying it copies the name (at most 255 bytes).
  class keyspace_type {
   public:
    const std::string& name() const noexcept { return name_; }

   private:
    friend class MemoryPolicy;
    keyspace_type(std::string name, std::uint64_t id) : name_(std::move(name)), id_(id) {}
    std::string name_;
    std::uint64_t id_ = 0;
  };

  // ---- snapshot -----------------------------------------------------------
  // Holds one version of every keyspace: a keyspace dropped after the
  // snapshot was taken stays readable through it.
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->lookup(version_.main, key, at_);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return present(version_.main.find(key));
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return owner_->make_cursor(version_.main, range, at_);
    }
    // The time its reads leave expired keys out at (ms since the epoch, the
    // store's clock when it was taken): keys live then stay readable here.
    deadline_ms view_time() const { return at_.at(); }
    // The same in keyspace `ks`: errc::not_found when the snapshot has no
    // such keyspace (it was created after the snapshot, or the handle is to
    // an earlier keyspace of that name).
    result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      const tree* t = version_.find(ks.name_, ks.id_);
      if (!t) return detail::keyspace_dropped(ks.name_);
      return owner_->lookup(*t, key, at_);
    }
    result<bool> contains(const keyspace_type& ks, std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      const tree* t = version_.find(ks.name_, ks.id_);
      if (!t) return detail::keyspace_dropped(ks.name_);
      return present(t->find(key));
    }
    cursor_type scan(const keyspace_type& ks, const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      const tree* t = version_.find(ks.name_, ks.id_);
      if (!t) return cursor_type(detail::keyspace_dropped(ks.name_));
      return owner_->make_cursor(*t, range, at_);
    }

   private:
    friend class MemoryPolicy;
    // The version is taken before the time is read: a deadline it holds was
    // noted (expiry used) before it was published.
    snapshot_type(std::shared_ptr<const MemoryPolicy> owner, detail::store_version version)
        : owner_(std::move(owner)), version_(std::move(version)), at_(owner_->expiry_.fixed_now()) {}
    bool present(const detail::pb_entry* e) const { return e && !at_.hides(*e); }
    std::shared_ptr<const MemoryPolicy> owner_;
    detail::store_version version_;
    detail::read_time at_;
  };

  // ---- store --------------------------------------------------------------
  static result<std::shared_ptr<MemoryPolicy>> open(const options& opts) {
    if (auto missing = detail::compression_missing(opts.compression)) return *missing;
    auto p = std::make_shared<MemoryPolicy>(opts.watch_history);
    p->compression_.enable(opts.compression);
    p->expiry_.enable(opts.clock, opts.expiry_interval, p->conflicts_);
    p->persistence_.set_expiry(p->expiry_);
    p->watch_.attach(p->expiry_, p->persistence_);  // a sweep's erases: a commit (memory/watch.hpp)
    if (!opts.persist_path.empty()) {
      auto history = p->watch_.history();
      auto replayed = [&](const detail::log_op& op, std::uint64_t seq) { history.op(op, seq); };
      if (auto loaded = p->persistence_.load(opts.persist_path, opts.sync_writes, opts.fold_log_bytes, replayed); !loaded)
        return loaded.error();
      history.finish(*p->persistence_.last_logged());
      if (auto r = p->watch_.reclaimed_at_load(p->persistence_, p->versions_.writers()); !r) return r.error();
      if (const auto& others = p->versions_.current_others()) p->last_keyspace_id_ = others->size();  // ids 1..n
    }
    p->compression_.start();
    if (p->expiry_.used()) p->expiry_.request();  // loaded deadlines: sweep the expired ones
    return p;
  }

  // ---- expiry (contract.hpp's expiry part; memory/expiry.hpp) -------------
  // A put with a ttl: the entry carries its deadline (store clock + ttl).
  result<void> put(std::string_view key, std::string_view value, const put_options& o) {
    if (!o.ttl) return put(key, value);
    write_batch one;
    one.put(key, value, o);
    return write(one);
  }
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value, const put_options& o) {
    if (!o.ttl) return put(ks, key, value);
    write_batch one;
    one.put(keyspace_name(ks.name_), key, value, o);
    return write(one);
  }
  const clock_source& clock() const noexcept { return expiry_.clock(); }  // the store's (dump.hpp: imports)
  result<key_expiry> expiry(std::string_view key) const { return expiry(keyspace_type(std::string(), 0), key); }
  result<key_expiry> expiry(const keyspace_type& ks, std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const detail::store_version* version = versions_.current_version();
    if (!is_open()) return closed_error();
    const tree* t = version->find(ks.name_, ks.id_);
    if (!t) return detail::keyspace_dropped(ks.name_);
    const detail::pb_entry* e = t->find(key);
    if (!e || expiry_.live().hides(*e)) return key_expiry{};
    return key_expiry{true, e->has_deadline() ? std::optional<deadline_ms>(e->deadline()) : std::nullopt};
  }

  // Writes: validate; log the frame (persisted stores); apply; then, with
  // sync_writes, wait for the frame's sync outside the writers' mutex.
  result<void> put(std::string_view key, std::string_view value) {
    if (auto bad = detail::memory_check_sizes(key, value)) return *bad;
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    auto logged = persistence_.log_write([&](detail::log_encoder& e) { e.put(key, value); });
    if (!logged) return logged.error();
    {
      tree::transient edit = versions_.edit_current();
      edit.insert_or_assign(key, value);
      versions_.publish(std::move(edit));
    }
    watch_.committed_one(*logged, "", key, value);
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    compression_.note_raw_bytes(value.size());
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  // Reads check is_open() after loading the version: close() clears the open flag before it
  // publishes the empty tree, so a read that raced with close() reports closed, not "no such key".
  result<std::optional<std::string>> get(std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = versions_.current_root();
    if (!is_open()) return closed_error();
    return lookup(*version, key, expiry_.live());
  }

  result<bool> contains(std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = versions_.current_root();
    if (!is_open()) return closed_error();
    const detail::pb_entry* e = version->find(key);
    return e && !expiry_.live().hides(*e);
  }

  result<void> erase(std::string_view key) {
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    tree now = versions_.current();
    auto logged = now.find(key) ? persistence_.log_write([&](detail::log_encoder& e) { e.erase(key); })
                                : persistence_.last_logged();
    if (!logged) return logged.error();
    if (now.find(key)) versions_.publish(now.without(key));
    if (now.find(key)) watch_.committed_one(*logged, "", key, std::nullopt);
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  // A batch with ttls: their deadlines count from one reading of the clock.
  result<void> write(const write_batch& batch) {
    if (auto bad = detail::memory_check_batch(batch)) return *bad;
    if (batch.names_keyspaces()) return write_across_keyspaces(batch);
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    auto at = expiry_.batch_time(batch);
    if (!at) return at.error();
    auto changes = watch_.batch_changes(batch, versions_);
    auto logged = watch_.log_batch(persistence_, batch, changes, *at);
    if (!logged) return logged.error();
    apply(batch, *at);
    watch_.committed(*logged, std::move(changes));
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  result<void> erase_range(const key_range& range) {
    if (!erase_range_is_valid(range)) return detail::memory_bad_range();
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    if (range.is_empty()) return {};
    std::vector<change> changes;
    if (watch_.recording()) detail::append_range_erases(changes, "", versions_.current(), range);
    auto logged = persistence_.log_write([&](detail::log_encoder& e) {
      watch_.logs_changes() ? detail::log_changes(e, changes) : e.erase_range(range);
    });
    if (!logged) return logged.error();
    versions_.publish(detail::without_range(versions_.current(), range));
    watch_.committed(*logged, std::move(changes));
    if (conflicts_->recording()) conflicts_->record({}, {range});
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = versions_.current_root();
    if (!is_open()) return closed_error();
    return lookup_many(*version, keys);
  }

  // Removes the expired entries (every keyspace, whatever the range; a
  // replaced version is freed as soon as no reader uses it). With
  // compression: then compresses the values not compressed yet (the whole
  // store), training a dictionary first when there is none or the values
  // have grown 8-fold since it was trained, and returns when they are
  // compressed.
  result<void> compact(const key_range& range) {
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    if (!is_open()) return closed_error();
    expiry_.sweep(false);
    if (compression_.kind() != compression::none) compression_.pass(false);
    return {};
  }

  // Saves the current version to `path` in the persisted form (the file a
  // store with memory_options::persist_path = path opens), atomically.
  result<void> checkpoint(const std::filesystem::path& path) const {
    if (!is_open()) return closed_error();
    if (auto bad = detail::checkpoint_path_error(path)) return *bad;
    detail::store_version version = versions_.current_all();
    if (!is_open()) return closed_error();
    return persistence_.checkpoint(path, std::move(version));
  }

  result<tx_start<snapshot_type>> begin_transaction() const {
    std::lock_guard writer(versions_.writers());
    if (!is_open()) return closed_error();
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{snapshot_type(shared_from_this(), versions_.current_all()), start,
                                   std::move(registration)};
  }

  // Validates the reads of every keyspace (conflict_tracker); writes naming
  // keyspaces other than "" are applied as one version with the rest
  // (write_across_keyspaces: a missing keyspace is not_found, nothing written).
  result<void> commit_transaction(const tx_record& tx) {
    if (auto bad = detail::memory_check_batch(tx.writes)) return *bad;
    if (tx.writes.names_keyspaces()) return write_across_keyspaces(tx.writes, &tx);
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    if (auto valid = expiry_.check_reads(tx); !valid) return valid;
    auto at = expiry_.batch_time(tx.writes);
    if (!at) return at.error();
    auto changes = watch_.batch_changes(tx.writes, versions_);
    auto logged = watch_.log_batch(persistence_, tx.writes, changes, *at);
    if (!logged) return logged.error();
    apply(tx.writes, *at);
    watch_.committed(*logged, std::move(changes));
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  cursor_type scan(const key_range& range) const {
    tree version = versions_.current();
    if (!is_open()) return cursor_type(closed_error());
    return make_cursor(std::move(version), range, expiry_.fixed_now());
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    detail::store_version version = versions_.current_all();
    if (!is_open()) return closed_error();
    return snapshot_type(shared_from_this(), std::move(version));
  }

  // ---- keyspaces (contract.hpp's keyspace part) ---------------------------
  // Reads through a handle take no lock (an epoch slot, then the hot keyspace's id or a binary search of the
  // table by name); a put to the hot keyspace publishes only its slot, other writes a new table (versions.hpp).
  // Creations, drops and writes are logged first (persisted stores). A released store creates nothing: a
  // missing name is not_found.
  result<keyspace_type> open_keyspace(std::string_view name, bool create) const {
    if (auto bad = keyspace_name_error(name)) return *bad;
    {
      auto reading = detail::epoch_domain::instance().enter();
      const detail::store_version* version = versions_.current_version();
      if (!is_open()) return closed_error();
      if (name.empty()) return keyspace_type(std::string(), 0);
      if (const auto* r = detail::store_version::find_root(version->table.get(), name))
        return keyspace_type(r->name, r->id);
    }
    if (!create) return detail::keyspace_missing(name);
    // The policy is always a heap object owned by a shared_ptr to non-const
    // (open()), so creating through a const member is defined.
    return const_cast<MemoryPolicy&>(*this).create_keyspace(name);
  }

  result<std::vector<std::string>> keyspaces() const {
    auto reading = detail::epoch_domain::instance().enter();
    const detail::store_version* version = versions_.current_version();
    if (!is_open()) return closed_error();
    std::vector<std::string> names{std::string()};
    if (version->table) {
      names.reserve(version->table->size() + 1);
      for (const auto& r : *version->table) names.push_back(r->name);
    }
    return names;
  }

  result<void> drop_keyspace(std::string_view name) {
    if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
    if (auto bad = keyspace_name_error(name)) return *bad;
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    const auto& others = versions_.current_others();
    const detail::keyspace_root* dropped = detail::store_version::find_root(others.get(), name);
    if (!dropped) return detail::keyspace_missing(name);
    auto logged = persistence_.log_write([&](detail::log_encoder& e) { e.drop_keyspace(name); });
    if (!logged) return logged.error();
    watch_.dropped(*logged, name, dropped->id);  // before the publish: `dropped` is the current table's
    versions_.publish(versions_.current(), detail::without_keyspace(*others, name));
    conflicts_->record_drop(name);  // live transactions that used it fail to commit
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }

  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value) {
    if (ks.id_ == 0) return put(key, value);
    if (auto bad = detail::memory_check_sizes(key, value)) return *bad;
    return write_keyspace(
        ks, [&](detail::log_encoder& e) { e.put(key, value); },
        [&](const tree& t) {
          tree::transient edit(t);
          edit.insert_or_assign(key, value);
          return std::optional<tree>(std::move(edit).persist());
        },
        [&] { conflicts_->record_key(ks.name_, key); }, [&](const tree&) { return detail::one_change(ks.name_, key, value); },
        value.size(), [&](tree::transient& edit) { edit.insert_or_assign(key, value); });
  }

  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const detail::store_version* version = versions_.current_version();
    if (!is_open()) return closed_error();
    const tree* t = version->find(ks.name_, ks.id_);
    if (!t) return detail::keyspace_dropped(ks.name_);
    return lookup(*t, key, expiry_.live());
  }

  result<bool> contains(const keyspace_type& ks, std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const detail::store_version* version = versions_.current_version();
    if (!is_open()) return closed_error();
    const tree* t = version->find(ks.name_, ks.id_);
    if (!t) return detail::keyspace_dropped(ks.name_);
    const detail::pb_entry* e = t->find(key);
    return e && !expiry_.live().hides(*e);
  }

  result<void> erase(const keyspace_type& ks, std::string_view key) {
    if (ks.id_ == 0) return erase(key);
    return write_keyspace(ks, [&](detail::log_encoder& e) { e.erase(key); }, [&](const tree& t) {
      return t.find(key) ? std::optional<tree>(t.without(key)) : std::nullopt;
    }, [&] { conflicts_->record_key(ks.name_, key); }, [&](const tree&) { return detail::one_change(ks.name_, key); });
  }

  result<void> erase_range(const keyspace_type& ks, const key_range& range) {
    if (ks.id_ == 0) return erase_range(range);
    if (!erase_range_is_valid(range)) return detail::memory_bad_range();
    return write_keyspace(ks, [&](detail::log_encoder& e) { e.erase_range(range); }, [&](const tree& t) {
      return range.is_empty() ? std::nullopt : std::optional<tree>(detail::without_range(t, range));
    }, [&] { conflicts_->record(ks.name_, {}, {range}); }, [&](const tree& t) {
      std::vector<change> out;
      detail::append_range_erases(out, ks.name_, t, range);
      return out;
    });
  }

  result<std::vector<std::optional<std::string>>> multi_get(const keyspace_type& ks,
                                                            std::span<const std::string_view> keys) const {
    auto reading = detail::epoch_domain::instance().enter();
    const detail::store_version* version = versions_.current_version();
    if (!is_open()) return closed_error();
    const tree* t = version->find(ks.name_, ks.id_);
    if (!t) return detail::keyspace_dropped(ks.name_);
    return lookup_many(*t, keys);
  }

  cursor_type scan(const keyspace_type& ks, const key_range& range) const {
    if (ks.id_ == 0) return scan(range);
    detail::store_version version = versions_.current_all();
    if (!is_open()) return cursor_type(closed_error());
    const tree* t = version.find(ks.name_, ks.id_);
    if (!t) return cursor_type(detail::keyspace_dropped(ks.name_));
    return make_cursor(*t, range, expiry_.fixed_now());
  }

  // As compact(range) (a compression pass covers every keyspace), once the
  // keyspace is known to exist.
  result<void> compact(const keyspace_type& ks, const key_range& range) {
    if (ks.id_ != 0) {
      auto reading = detail::epoch_domain::instance().enter();
      const detail::store_version* version = versions_.current_version();
      if (is_open() && !version->find(ks.name_, ks.id_)) return detail::keyspace_dropped(ks.name_);
    }
    return compact(range);
  }

  // Drops the data (after folding the log into the snapshot, with
  // persist_path), waiting for point reads in flight to finish with it.
  // Snapshots and cursors still alive give errc::closed. Whatever it returns,
  // the store is closed and its file unlocked; a failed save is reported and
  // the files keep every acknowledged write (the next open replays the log).
  result<void> close() {
    std::lock_guard closing(close_mutex_);
    persistence_.stop();
    compression_.stop();
    expiry_.stop();
    std::lock_guard saving(persistence_.save_mutex());
    std::lock_guard writer(versions_.writers());
    if (!is_open()) return {};
    result<void> saved = persistence_.save_at_close(watch_.history_from());
    versions_.close();
    watch_.close();
    return saved;
  }

  explicit MemoryPolicy(std::size_t watch_history = detail::default_watch_history) : watch_(watch_history) {}
  MemoryPolicy(const MemoryPolicy&) = delete;
  MemoryPolicy& operator=(const MemoryPolicy&) = delete;
  // No point read can be in flight: callers hold the store (or a share of it).
  // The background threads stop before any part goes.
  ~MemoryPolicy() {
    persistence_.stop();
    compression_.stop();
    expiry_.stop();
    watch_.close();
  }
  bool is_open() const noexcept { return versions_.is_open(); }

  // Number of keys, exact, in every keyspace (O(number of keyspaces)).
  std::size_t size() const {
    return versions_.current_all().sum([](const tree& t) { return t.size(); });
  }
  // Bytes held by the entries of every keyspace (keys, values as held,
  // per-entry header); O(n).
  std::size_t memory_bytes() const {
    return versions_.current_all().sum([](const tree& t) { return t.memory_bytes(); });
  }
  // memory_bytes() if every value were held uncompressed; O(n).
  std::size_t uncompressed_memory_bytes() const {
    return versions_.current_all().sum([](const tree& t) { return t.uncompressed_memory_bytes(); });
  }
  keel::compression compression() const noexcept { return compression_.kind(); }
  // Codecs (dictionaries) in use: loaded at open plus trained since; 0
  // without compression.
  std::size_t dictionaries() const { return compression_.dictionaries(); }
  // Whether open() installed the dictionary saved beside the persisted file
  // ("<file>.dict"); false when there was none or it was ignored.
  bool dictionary_loaded() const noexcept { return compression_.dictionary_loaded(); }

  // With persist_path: folds the log into a new snapshot of the store as it
  // is now (writers are blocked only while the log is switched), atomically,
  // then removes the folded logs. Without: does nothing.
  result<void> flush() {
    if (!is_open()) return closed_error();
    return persistence_.flush();
  }
  const std::filesystem::path& persist_path() const noexcept { return persistence_.path(); }

  // For a store whose data has been handed over to another store (the
  // hybrid store's move to RocksDB): stops the background fold and
  // compression, syncs and seals the log, releases the file lock and drops
  // the current version. The files are left as they are, for the caller to
  // remove; close() saves nothing afterwards. Snapshots and cursors taken
  // before keep reading their versions until close(); reads see an empty
  // store; writes are refused (errc::read_only). Idempotent.
  result<void> release_persistence() {
    std::lock_guard closing(close_mutex_);
    persistence_.stop();
    compression_.stop();
    expiry_.stop();
    std::lock_guard saving(persistence_.save_mutex());
    std::lock_guard writer(versions_.writers());
    if (!is_open()) return closed_error();
    if (persistence_.released()) return {};
    result<void> sealed = persistence_.release();
    versions_.publish(tree(), nullptr);
    return sealed;
  }

  // ---- watch (memory/watch.hpp) --------------------------------------------
  result<watch_type> watch(const key_range& range, const watch_options& options) const {
    return watch(keyspace_type(std::string(), 0), range, options);
  }
  result<watch_type> watch(const keyspace_type& ks, const key_range& range, const watch_options& options) const {
    std::lock_guard writer(versions_.writers());
    if (!is_open()) return closed_error();
    if (!versions_.writer_version().find(ks.name_, ks.id_)) return detail::keyspace_dropped(ks.name_);
    return const_cast<detail::memory_watch&>(watch_).watch(detail::feed_filter{{ks.name_, ks.id_}, range}, options);
  }
  std::uint64_t last_seq() const noexcept { return watch_.last_seq(); }

 private:
  // Why a write cannot proceed now, if it cannot; writers' mutex held.
  std::optional<keel::error> refuse_write() const {
    if (!is_open()) return closed_error();
    if (persistence_.released()) {
      return keel::error(errc::read_only, "memory store: its data was handed over to another store "
                                          "(release_persistence); it takes no more writes");
    }
    return std::nullopt;
  }
  // The keyspaces part of write(): a batch naming keyspaces other than "",
  // applied as one new version; not_found (nothing written) when one of
  // them does not exist. With `tx`: a commit, validated first.
  result<void> write_across_keyspaces(const write_batch& batch, const tx_record* tx = nullptr) {
    auto named = detail::batch_keyspaces(batch);
    if (!named) return std::move(named).error();
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    if (auto valid = tx ? conflicts_->validate(*tx) : result<void>(); !valid) return valid;
    if (auto valid = tx ? expiry_.check_reads(*tx) : result<void>(); !valid) return valid;
    auto at = expiry_.batch_time(batch);
    if (!at) return at.error();
    // A missing keyspace fails here, before anything is logged; the batch is
    // then one log frame (whole or absent after a crash) and one publish.
    auto table = detail::apply_to_keyspaces(versions_.current_others(), batch, named->names, *at);
    if (!table) return std::move(table).error();
    tree main =
        named->default_ops ? detail::apply_keyspace_ops(versions_.current(), batch, "", *at) : versions_.current();
    auto changes = watch_.batch_changes(batch, versions_);
    auto logged = watch_.log_batch(persistence_, batch, changes, *at);
    if (!logged) return logged.error();
    expiry_.note_batch(batch, *at);
    versions_.publish(std::move(main), std::move(*table));
    watch_.committed(*logged, std::move(changes));
    conflicts_->record(batch);  // every keyspace's ops
    compression_.note_batch(batch);
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }
  // A write to keyspace `ks` (not ""): `change(tree)` gives its new tree (nullopt: nothing to do or log), `log`
  // fills the frame, the version is published (`ks` becomes the hot keyspace), `record()` is called while
  // transactions are live (it records the write for them), `raw_bytes` counted for compression. `changes(tree
  // before)` gives what a watch sees (called while recording). `hot_edit(transient)` (if given) makes the change
  // when `ks` is the hot keyspace already (always a change): a reuse-mode edit, like put(key, value)'s.
  template <class Log, class Change, class Record, class Changes, class HotEdit = std::nullptr_t>
  result<void> write_keyspace(const keyspace_type& ks, Log&& log, Change&& change, Record&& record,
                              Changes&& changes, std::size_t raw_bytes = 0, HotEdit&& hot_edit = nullptr) {
    std::unique_lock writer(versions_.writers());
    if (auto refused = refuse_write()) return *refused;
    const detail::store_version& now = versions_.writer_version();
    std::vector<keel::change> delivered;  // filled while recording
    if constexpr (!std::is_same_v<std::remove_cvref_t<HotEdit>, std::nullptr_t>) {
      if (now.hot_id == ks.id_) {
        if (watch_.recording()) delivered = changes(now.hot);
        auto logged = persistence_.log_write([&](detail::log_encoder& e) {
          e.select_keyspace(ks.name_);
          watch_.logs_changes() ? detail::log_changes(e, delivered) : log(e);
        });
        if (!logged) return logged.error();
        versions_.edit_hot(hot_edit);
        watch_.committed(*logged, std::move(delivered));
        if (conflicts_->recording()) record();
        compression_.note_raw_bytes(raw_bytes);
        writer.unlock();
        return persistence_.wait_synced(*logged);
      }
    }
    const tree* t = now.find(ks.name_, ks.id_);
    if (!t) return detail::keyspace_dropped(ks.name_);
    std::optional<tree> next = change(*t);
    if (!next) return {};
    if (watch_.recording()) delivered = changes(*t);
    auto logged = persistence_.log_write([&](detail::log_encoder& e) {
      e.select_keyspace(ks.name_);
      watch_.logs_changes() ? detail::log_changes(e, delivered) : log(e);
    });
    if (!logged) return logged.error();
    detail::publish_keyspace(versions_, ks.name_, ks.id_, std::move(*next));
    watch_.committed(*logged, std::move(delivered));
    if (conflicts_->recording()) record();
    compression_.note_raw_bytes(raw_bytes);
    writer.unlock();
    return persistence_.wait_synced(*logged);
  }
  cursor_type make_cursor(tree version, const key_range& range, detail::read_time at) const {
    return cursor_type(shared_from_this(), versions_, compression_, std::move(version), range, at);
  }
  // Creates keyspace `name` unless it exists (then its handle).
  result<keyspace_type> create_keyspace(std::string_view name) {
    std::unique_lock writer(versions_.writers());
    if (!is_open()) return closed_error();
    const auto& others = versions_.current_others();
    if (const auto* r = detail::store_version::find_root(others.get(), name)) return keyspace_type(r->name, r->id);
    if (persistence_.released()) return detail::keyspace_missing(name);  // read-only now: nothing created
    auto logged = persistence_.log_write([&](detail::log_encoder& e) { e.create_keyspace(name); });
    if (!logged) return logged.error();
    auto root = std::make_shared<const detail::keyspace_root>(
        detail::keyspace_root{std::string(name), ++last_keyspace_id_, tree()});
    versions_.publish(versions_.current(), detail::with_keyspace(others.get(), root));
    watch_.logged_only(*logged);
    writer.unlock();
    if (auto synced = persistence_.wait_synced(*logged); !synced) return synced.error();
    return keyspace_type(root->name, root->id);
  }

  // Applies the batch as one new version and records it for transactions.
  // Writers' mutex held, the batch checked; `at`: the time its ttls count
  // from (expiry_.batch_time()).
  void apply(const write_batch& batch, deadline_ms at) {
    const bool ranges = std::any_of(batch.begin(), batch.end(), [](const auto& op) {
      return op.kind == write_batch::op_kind::erase_range;
    });
    expiry_.note_batch(batch, at);
    if (!ranges) {   // the common case: one transient that reuses the current version's path nodes
      tree::transient edit = versions_.edit_current();
      for (const auto& op : batch) {
        if (op.kind == write_batch::op_kind::put)
          edit.insert_or_assign(op.key, op.value, 0, detail::memory_expiry::deadline_of(op, at));
        else
          edit.erase(op.key);
      }
      versions_.publish(std::move(edit));
      record_applied(batch);
      return;
    }
    std::optional<tree::transient> edit(std::in_place, versions_.current());
    for (const auto& op : batch) {
      switch (op.kind) {
        case write_batch::op_kind::put:
          edit->insert_or_assign(op.key, op.value, 0, detail::memory_expiry::deadline_of(op, at));
          break;
        case write_batch::op_kind::erase: edit->erase(op.key); break;
        case write_batch::op_kind::erase_range: {
          tree so_far = std::move(*edit).persist();
          edit.reset();
          edit.emplace(detail::without_range(std::move(so_far), op.range()));
          break;
        }
      }
    }
    versions_.publish(std::move(*edit).persist());
    record_applied(batch);
  }
  // After `batch` was published: records it for transactions' validation
  // and counts its raw value bytes for compression. Writers' mutex held.
  void record_applied(const write_batch& batch) {
    conflicts_->record(batch);
    compression_.note_batch(batch);
  }
  result<std::vector<std::optional<std::string>>> lookup_many(const tree& version,
                                                              std::span<const std::string_view> keys) const {
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    const detail::read_time now = expiry_.live();  // the clock read once, at the first deadline met
    for (std::string_view k : keys) {
      if (const auto* e = version.find(k); e && !now.hides(*e)) {
        out.emplace_back(std::in_place);
        if (!compression_.decode(*e, *out.back())) return detail::value_compression::decode_error(k);
      } else {
        out.emplace_back();
      }
    }
    return out;
  }
  // The value of `key` in `version` unless it has expired at `now`.
  result<std::optional<std::string>> lookup(const tree& version, std::string_view key,
                                            const detail::read_time& now) const {
    if (const auto* e = version.find(key); e && !now.hides(*e)) {
      std::optional<std::string> v(std::in_place);
      if (!compression_.decode(*e, *v)) return detail::value_compression::decode_error(key);
      return v;
    }
    return std::optional<std::string>();
  }

  // The parts (constructed in this order; each holds references only to
  // the ones before it). Lock order and what each mutex guards: the top of
  // this file.
  detail::memory_versions versions_;
  detail::value_compression compression_{versions_};
  detail::memory_persistence persistence_{versions_, compression_};
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  detail::memory_expiry expiry_{versions_};
  std::mutex close_mutex_;  // serialises close() and release_persistence()
  std::uint64_t last_keyspace_id_ = 0;  // the id of the last keyspace created; writers' mutex
  detail::memory_watch watch_;          // seqs and change history; its writer side under the writers' mutex
};

static_assert(store_policy<MemoryPolicy>);
static_assert(keyspace_policy<MemoryPolicy>);
static_assert(expiry_policy<MemoryPolicy>);
static_assert(run_cursor<MemoryPolicy::cursor_type>);
static_assert(watch_policy<MemoryPolicy>);

// What basic_store::stats() asks of the backend: exact key count and bytes.
inline result<void> backend_stats(const MemoryPolicy& p, store_stats& s) {
  s.keys = p.size();
  s.keys_exact = true;
  s.size_bytes = p.memory_bytes();
  s.uncompressed_bytes = p.compression() == compression::none ? s.size_bytes : p.uncompressed_memory_bytes();
  return {};
}

}  // namespace keel
