// keel: RocksPolicy<Tuning>, the RocksDB backend's policy: the contract
// methods (contract.hpp), each forwarding to the part that does the job:
//   rocksdb/open.hpp        opening (path checks, registry claim, lock
//                           diagnosis, options), the shared handle, closing
//   rocksdb/write_gate.hpp  the write gate (group commit kept, commits
//                           serialised) and the WAL-failure guard
//   rocksdb/cursor.hpp      the read-ahead cursor
//   rocksdb/keyspaces.hpp   keyspaces as column families: names, entries,
//                           the registry
//   rocksdb/errors.hpp      rocksdb::Status -> keel::error
//   rocksdb/expiry.hpp      expiry: value encoding, compaction filter, a
//                           watched store's sweep (deletes a watch sees)
//   rocksdb/snapshot.hpp    snapshot_type (detail::rocks_snapshot)
//   rocksdb/tunings.hpp     the tunings (the Tuning parameter)
//   rocksdb/watch.hpp       watch (read from the WAL), last_seq
//   rocksdb/reads.hpp       the point read; rocksdb/stats.hpp backend_stats
//
// LOCK ORDER (every mutex of a store, in the order they are taken):
//   1. h_.lifecycle    (shared_mutex, rocks_handle) guards h_.db and every
//                      iterator and snapshot pointer: shared for each call,
//                      exclusive for close(). Not taken at all once close()
//                      has begun (h_.closing): such calls fail at once.
//   1a. keyspaces_.mutex (mutex, rocks_keyspace_registry) guards the name ->
//                      keyspace map and the dropped keyspaces' list; held
//                      while a column family is created or dropped.
//   1b. a keyspace's rocks_keyspace::mutex (shared_mutex) guards its column
//                      family handle: shared for each operation in that
//                      keyspace (a batch takes those of every keyspace it
//                      names, in address order), exclusive to drop or destroy
//                      it. Not taken by default-keyspace operations through
//                      the store (put, get, ...), nor by close(), which holds
//                      1 exclusively. A cursor in a keyspace takes it again
//                      when it goes (under 1 shared, after releasing 3 and 4).
//   2. gate_           (shared_mutex, rocks_write_gate): shared for plain
//                      writes, exclusive for transaction begin/commit, an
//                      open-ended or listed erase_range (needs_exclusive),
//                      the first watch (turns listing on: watch.hpp) and
//                      the expiry sweep's deletes (taken under 1 and 1b).
//   3. h_.live_mutex   (mutex) guards h_.live_cursors and h_.live_snapshots.
//   4. a cursor's rocks_cursor_state::mutex guards its iterator (a step takes
//                      it alone, without lifecycle; close() takes it under 1
//                      and 3 to delete the iterator).
//   Expiry's commit check only tries 1a under 2 (rocksdb/expiry.hpp).
//   Leaves (nothing else is taken while they are held): the write gate's WAL
//   failure mutex (under 1, and under 2 on writes), the conflict tracker's
//   mutex (under 2; under 1a when drop_keyspace records the drop), the watch
//   hub's live_mutex (under 1, 1a and 1b) and its wait mutex (watch.hpp).
//
// Thread safety: all members may be called concurrently. Point operations
// share the lifecycle lock with each other; close() takes it exclusively, so
// it waits for operations in flight and later ones see errc::closed. Each
// cursor has its own mutex, taken once per read-ahead chunk (not per step),
// so close() can delete its iterator safely; a step after close() begins
// reports closed.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../detail/platform_file.hpp"
#include "../stats.hpp"
#include "../store.hpp"
#include "cursor.hpp"
#include "errors.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "options.hpp"
#include "reads.hpp"
#include "snapshot.hpp"
#include "stats.hpp"
#include "tunings.hpp"
#include "watch.hpp"
#include "write_gate.hpp"

namespace keel {

// RocksPolicy<Tuning>: the RocksDB backend. See contract.hpp for the
// contract, the file comment for the lock order.
template <class Tuning>
class RocksPolicy : public std::enable_shared_from_this<RocksPolicy<Tuning>> {
  static_assert(rocks_tuning<Tuning>);
  struct private_tag {};

 public:
  using options = rocks_options;
  static constexpr keel::backend backend_kind = keel::backend::rocksdb;
  class cursor_type;
  using snapshot_type = detail::rocks_snapshot<RocksPolicy>;  // rocksdb/snapshot.hpp
  class keyspace_type;
  using watch_type = detail::rocks_watch;  // rocksdb/watch.hpp

  static result<std::shared_ptr<RocksPolicy>> open(const options& opts) {
    auto expiry = std::make_unique<detail::rocks_expiry>(opts.clock);
    auto opened = detail::rocks_open(opts, &Tuning::apply, expiry->filters);
    if (!opened) return std::move(opened).error();
    auto p = std::make_shared<RocksPolicy>(private_tag{}, opts, std::move(*opened), std::move(expiry));
    auto find = [&k = p->keyspaces_](std::string_view name) -> const detail::rocks_keyspace* {
      if (name.empty()) return k.default_keyspace.get();
      auto it = k.by_name.find(name);
      return it == k.by_name.end() ? nullptr : it->second.get();
    };
    if (auto loaded = p->expiry_->load(*p->h_.db, find, opts.path); !loaded) return std::move(loaded).error();
    if (!opts.read_only) p->expiry_->set_sweeper([raw = p.get()] { raw->sweep_in_background(); }, opts.expiry_interval);
    return p;
  }

  RocksPolicy(private_tag, options opts, detail::rocks_opened opened, std::unique_ptr<detail::rocks_expiry> expiry)
      : opts_(std::move(opts)),
        cf_options_(std::move(opened.cf_options)),
        h_(opts_.path, std::move(opened.claim), opened.db),
        expiry_(std::move(expiry)) {
    write_options_.sync = opts_.sync_writes;
    watches_ = std::make_shared<detail::rocks_watch_hub>(h_.db->GetLatestSequenceNumber(), opts_.watch_list_erased_keys);
    keyspaces_.default_keyspace =
        std::make_shared<detail::rocks_keyspace>(&h_, std::string(), h_.db->DefaultColumnFamily(), false);
    for (auto& [cf_name, cf] : opened.families) {
      if (auto name = detail::rocks_keyspace_name(cf_name))
        keyspaces_.by_name.emplace(*name, std::make_shared<detail::rocks_keyspace>(&h_, *name, cf, true));
      else if (cf_name == detail::rocks_expiry_family)
        expiry_->family = cf;
      else
        keyspaces_.foreign.push_back(cf);
    }
  }
  RocksPolicy(const RocksPolicy&) = delete;
  RocksPolicy& operator=(const RocksPolicy&) = delete;
  ~RocksPolicy() { (void)close(); }

  result<void> put(std::string_view key, std::string_view value) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "put")) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("put")) return std::move(*refused);
    std::string escaped;
    const std::string_view stored = detail::rocks_expiry::plain_stored(*keyspaces_.default_keyspace, value, escaped);
    if (auto r = check_write(detail::rocks_write_one(*h_.db, write_options_, *watches_, nullptr, key, &stored), "put"); !r)
      return r;
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }
  // Expiry (contract.hpp, rocksdb/expiry.hpp): a put with a ttl, and what
  // expiry(key) reports.
  result<void> put(std::string_view key, std::string_view value, const put_options& o) {
    return o.ttl ? write(write_batch().put(key, value, o)) : put(key, value);
  }
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value, const put_options& o) {
    return o.ttl ? write_in(ks, write_batch().put(keyspace_name(ks.name()), key, value, o), "put") : put(ks, key, value);
  }
  const clock_source& clock() const noexcept { return expiry_->clock; }  // the store's (dump.hpp: imports)
  result<key_expiry> expiry(std::string_view key) const { return expiry_in(nullptr, key); }
  result<key_expiry> expiry(const keyspace_type& ks, std::string_view key) const { return expiry_in(&ks, key); }

  result<std::optional<std::string>> get(std::string_view key) const { return read_at<true>(key, nullptr); }
  result<bool> contains(std::string_view key) const { return read_at<false>(key, nullptr); }

  result<void> erase(std::string_view key) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "erase")) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("erase")) return std::move(*refused);
    if (auto r = check_write(detail::rocks_write_one(*h_.db, write_options_, *watches_, nullptr, key, nullptr), "erase"); !r)
      return r;
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  result<void> write(const write_batch& batch) {
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::erase_range && !erase_range_is_valid(op.range())) return bad_range();
    }
    if (auto bad = expiry_->bad_ttl(batch)) return std::move(*bad);
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "write")) return std::move(*refused);
    if (batch.names_keyspaces()) return write_keyspaces(batch);
    if (batch.has_ttl()) {
      if (auto tagged = ensure_tag(*keyspaces_.default_keyspace); !tagged) return tagged;
    }
    if (!needs_exclusive(batch)) {  // (listing turns on only under the exclusive gate)
      auto gate = gate_.shared();
      if (!needs_exclusive(batch)) return apply(batch, "write", default_cf{});
    }
    auto gate = gate_.exclusive();
    return apply(batch, "write", default_cf{});
  }

  result<void> erase_range(const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    write_batch b;
    b.erase_range(range);
    return write(b);
  }

  // Keyspaces (contract.hpp, rocksdb/keyspaces.hpp): column families.
  // The keyspace `name` ("" the default one); a missing one is created
  // (CreateColumnFamily with the tuning's column family options) when
  // `create` and the store is not read-only, else errc::not_found.
  result<keyspace_type> open_keyspace(std::string_view name, bool create) const {
    if (auto bad = keyspace_name_error(name)) return std::move(*bad);
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    if (name.empty()) return keyspace_type(keyspaces_.default_keyspace);
    std::lock_guard registry(keyspaces_.mutex);
    if (auto it = keyspaces_.by_name.find(name); it != keyspaces_.by_name.end()) return keyspace_type(it->second);
    if (!create || opts_.read_only) {
      return keel::error(errc::not_found, "keyspace '" + std::string(name) + "' does not exist" +
                                              (opts_.read_only ? " (a read-only store creates none)" : ""));
    }
    rocksdb::ColumnFamilyHandle* cf = nullptr;
    rocksdb::Status s = h_.db->CreateColumnFamily(cf_options_, detail::rocks_column_family_name(name), &cf);
    if (!s.ok()) return detail::rocks_op_error(s, "create keyspace", opts_.path);
    auto entry = std::make_shared<detail::rocks_keyspace>(&h_, std::string(name), cf, true);
    entry->created_epoch.store(keyspaces_.epoch.fetch_add(1, std::memory_order_acq_rel) + 1, std::memory_order_release);
    keyspaces_.by_name.emplace(std::string(name), entry);
    return keyspace_type(std::move(entry));
  }

  // Every keyspace's name, sorted bytewise, "" first. Column families that
  // are not keel's are not listed.
  result<std::vector<std::string>> keyspaces() const {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    std::vector<std::string> names{std::string()};
    std::lock_guard registry(keyspaces_.mutex);
    for (const auto& [name, entry] : keyspaces_.by_name) names.push_back(name);
    return names;
  }

  // DropColumnFamily: its keys are gone for every operation that starts
  // after it (one MANIFEST record, not a scan); handles to it then give
  // errc::not_found. Waits for operations in flight in that keyspace. The
  // column family handle is destroyed now, or by the last cursor reading it
  // (which reads on). While a drop waits, operations in that keyspace get
  // not_found (and again succeed if DropColumnFamily then fails).
  result<void> drop_keyspace(std::string_view name) {
    if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
    if (auto bad = keyspace_name_error(name)) return std::move(*bad);
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "drop_keyspace")) return std::move(*refused);
    bool found = false;
    rocksdb::Status s = keyspaces_.drop(*h_.db, name, found, [&](detail::rocks_keyspace& entry) {
      watches_->record_drop(entry.cf->GetID(), h_.db->GetLatestSequenceNumber());  // its watches end there
      conflicts_->record_drop(name);  // live transactions that used it fail to commit (registry held: no
                                      // commit can resolve the name to a keyspace made since first)
    });
    if (!found) return keel::error(errc::not_found, "drop_keyspace: keyspace '" + std::string(name) + "' does not exist");
    return check(s, "drop_keyspace");
  }

  // The keyed operations in keyspace ks (see contract.hpp).
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value) {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_keyspace(lock, entry, ks, "put", true)) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("put")) return std::move(*refused);
    std::string escaped;
    const std::string_view stored = detail::rocks_expiry::plain_stored(*ks.entry_, value, escaped);
    if (auto r = check_write(detail::rocks_write_one(*h_.db, write_options_, *watches_, ks.entry_->cf, key, &stored), "put");
        !r)
      return r;
    if (conflicts_->recording()) conflicts_->record_key(ks.name(), key);
    return {};
  }
  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
    return read_in<true>(ks, key, nullptr);
  }
  result<bool> contains(const keyspace_type& ks, std::string_view key) const {
    return read_in<false>(ks, key, nullptr);
  }
  result<void> erase(const keyspace_type& ks, std::string_view key) {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_keyspace(lock, entry, ks, "erase", true)) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("erase")) return std::move(*refused);
    if (auto r = check_write(detail::rocks_write_one(*h_.db, write_options_, *watches_, ks.entry_->cf, key, nullptr), "erase");
        !r)
      return r;
    if (conflicts_->recording()) conflicts_->record_key(ks.name(), key);
    return {};
  }
  // Through the handle, not the name: a handle to a dropped keyspace never
  // reaches one made since under the same name.
  result<void> erase_range(const keyspace_type& ks, const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    write_batch b;
    b.erase_range(keyspace_name(ks.name()), range);
    return write_in(ks, b, "erase_range");
  }
  cursor_type scan(const keyspace_type& ks, const key_range& range) const {
    if (ks.entry_->owner != &h_) {
      return failed_cursor(keel::error(errc::invalid_argument, "scan: the keyspace handle belongs to another store"));
    }
    return cursor_type(detail::rocks_cursor::open(handle(), range, nullptr, *ks.entry_, expiry_->clock, ks.entry_));
  }

  // RocksDB's batched MultiGet: one consistent view (an implicit snapshot
  // for the whole call), keys looked up together.
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    return multi_get_in(nullptr, keys);
  }
  result<std::vector<std::optional<std::string>>> multi_get(const keyspace_type& ks,
                                                            std::span<const std::string_view> keys) const {
    return multi_get_in(&ks, keys);
  }

 private:
  result<std::vector<std::optional<std::string>>> multi_get_in(const keyspace_type* ks,
                                                               std::span<const std::string_view> keys) const {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_in(lock, entry, ks, "multi_get", false)) return std::move(*refused);
    return detail::rocks_multi_get(*h_.db, ks ? *ks->entry_ : *keyspaces_.default_keyspace, keys, *expiry_, opts_.path);
  }

 public:
  // CompactRange over range (the whole key space when unbounded), down to
  // the bottommost level so that erased data and range tombstones go.
  result<void> compact(const key_range& range) { return compact_in(nullptr, range); }
  result<void> compact(const keyspace_type& ks, const key_range& range) { return compact_in(&ks, range); }

 private:
  result<void> compact_in(const keyspace_type* ks, const key_range& range) {
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_in(lock, entry, ks, "compact", true)) return std::move(*refused);
    if (auto swept = sweep_expired(ks ? *ks->entry_ : *keyspaces_.default_keyspace, range); !swept) return swept;
    return check(detail::rocks_compact(*h_.db, (ks ? *ks->entry_ : *keyspaces_.default_keyspace).cf, range), "compact");
  }

 public:
  // Syncs the WAL (as DB::FlushWAL(true) would): every write acknowledged
  // before the call survives a power loss, whatever sync_writes says
  // (basic_store::flush()). After a failed write (a full disk, an I/O error)
  // it returns that error (errc::no_space, errc::io_error) and touches no
  // file; see detail::rocks_sync_wal(). Nothing to do on a read-only store.
  result<void> flush() {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    if (opts_.read_only) return {};
    if (auto refused = refuse_after_wal_failure("flush")) return std::move(*refused);
    return check_write(detail::rocks_sync_wal(*h_.db), "flush");
  }

  // rocksdb::Checkpoint: SST files hard-linked where the filesystem allows
  // (copied otherwise), the memtable flushed first, so `dir` opens as a
  // database with everything written before the call. `dir` must not exist
  // and its parent must; RocksDB builds it in "<dir>.tmp" and renames it, and
  // removes that staging directory when it fails.
  result<void> checkpoint(const std::filesystem::path& dir) const {
    if (auto bad = detail::checkpoint_path_error(dir)) return fail(std::move(*bad));
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    return detail::rocks_checkpoint(*h_.db, dir, opts_.path);
  }

  // The view is taken with writers held off, so it reflects exactly the
  // writes recorded up to `start`.
  result<tx_start<snapshot_type>> begin_transaction() const {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    auto gate = gate_.exclusive();
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{snapshot_locked(), start, std::move(registration)};
  }

  // Also a conflict: a key the transaction read reached its deadline
  // between its view's time (tx.view_time) and now (rocksdb/expiry.hpp).
  result<void> commit_transaction(const tx_record& tx) {
    if (auto bad = expiry_->bad_ttl(tx.writes)) return std::move(*bad);
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "commit")) return std::move(*refused);
    // Writes naming keyspaces: one WriteBatch across their column families
    // (write_keyspaces: a missing keyspace is not_found, nothing written).
    if (tx.writes.names_keyspaces()) return write_keyspaces(tx.writes, &tx);
    if (tx.writes.has_ttl()) {
      if (auto tagged = ensure_tag(*keyspaces_.default_keyspace); !tagged) return tagged;
    }
    auto gate = gate_.exclusive();
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    if (auto expired = expiry_->expired_since_begin(*h_.db, tx, *keyspaces_.default_keyspace, keyspaces_))
      return std::move(*expired);
    return apply(tx.writes, "commit", default_cf{});
  }

  cursor_type scan(const key_range& range) const {
    return cursor_type(detail::rocks_cursor::open(handle(), range, nullptr, *keyspaces_.default_keyspace, expiry_->clock));
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(detail::rocks_cursor::failed(std::move(e))); }

  result<snapshot_type> snapshot() const {
    std::shared_lock<std::shared_mutex> lifecycle;
    if (!h_.enter(lifecycle)) return h_.closed();
    return snapshot_locked();
  }

  // Releases every cursor's iterator and every snapshot keel handed out,
  // syncs the WAL (sync_on_close or sync_writes; refused after a WAL failure,
  // see write_gate.hpp), closes and deletes the DB. Waits for calls in flight;
  // later calls get errc::closed. Idempotent.
  result<void> close() {
    h_.closing.store(true, std::memory_order_release);
    h_.open.store(false, std::memory_order_release);
    expiry_->stop();  // the background sweep (a watched store's) ends first
    std::unique_lock lifecycle(h_.lifecycle);
    if (!h_.db) return {};
    detail::rocks_release_live(h_);
    rocksdb::Status synced = rocksdb::Status::OK();
    std::optional<keel::error> closed_refusal;
    if ((opts_.sync_on_close || opts_.sync_writes) && !opts_.read_only) {
      if (auto refused = refuse_after_wal_failure("close (WAL sync)")) {
        closed_refusal = std::move(refused);  // no sync through a failed WAL writer
      } else {
        synced = detail::rocks_sync_wal(*h_.db);  // never FlushWAL: see rocks_sync_wal()
      }
    }
    if (expiry_->family) h_.db->DestroyColumnFamilyHandle(std::exchange(expiry_->family, nullptr));
    detail::rocks_close_watches(*watches_);  // their WAL iterators go before DB::Close()
    keyspaces_.destroy_all(*h_.db);  // every column family handle goes before DB::Close()
    return h_.shut(synced, std::move(closed_refusal));
  }

  // Watch (contract.hpp, rocksdb/watch.hpp): read from the WAL. Read-only
  // stores: not_supported (their view is as of the open).
  result<watch_type> watch(const key_range& range, const watch_options& o) const {
    return watch_in(keyspaces_.default_keyspace, range, o);
  }
  result<watch_type> watch(const keyspace_type& ks, const key_range& range, const watch_options& o) const {
    return watch_in(ks.entry_, range, o);
  }
  // The seq of the latest commit made through this store (at open: RocksDB's
  // latest sequence number); kept after close().
  std::uint64_t last_seq() const noexcept { return watches_->committed.load(std::memory_order_seq_cst); }

  bool is_open() const noexcept {
    std::shared_lock<std::shared_mutex> lock;
    return h_.enter(lock);
  }

  // Opened with rocks_options::read_only.
  bool read_only() const noexcept { return opts_.read_only; }

  const std::filesystem::path& path() const noexcept { return opts_.path; }

  // Runs f(rocksdb::DB&) under the reader lock, for RocksDB calls keel does
  // not wrap (properties, compaction, checkpoints). Do not keep the pointer,
  // do not close or delete the DB, and release iterators and snapshots you
  // create before returning. Gives errc::closed after close().
  template <class F>
  auto with_db(F&& f) const -> result<std::invoke_result_t<F, rocksdb::DB&>> {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    if constexpr (std::is_void_v<std::invoke_result_t<F, rocksdb::DB&>>) {
      std::forward<F>(f)(*h_.db);
      return {};
    } else {
      return std::forward<F>(f)(*h_.db);
    }
  }

 private:
  friend class detail::rocks_snapshot<RocksPolicy>;  // reads through read_at, read_in, handle()
  static rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }
  result<watch_type> watch_in(const std::shared_ptr<detail::rocks_keyspace>& e, const key_range& range,
                              const watch_options& o) const {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_keyspace(lock, entry, keyspace_type(e), "watch", false)) return std::move(*refused);
    if (auto refused = detail::rocks_watch_refusal(*h_.db, opts_.read_only, o, last_seq(), opts_.path)) return *refused;
    if (!watches_->list_erased.load(std::memory_order_acquire) || !expiry_->watched()) {
      auto gate = gate_.exclusive();  // erase_ranges in flight end before `after` is read
      watches_->list_erased.store(true, std::memory_order_release);
      if (auto marked = expiry_->mark_watched(*h_.db, write_options_, opts_.path); !marked) return marked.error();
    }
    return detail::rocks_make_watch(handle(), watches_, e, e->cf->GetID(), range, o);
  }

  // The handle, sharing ownership of this policy (cursors and snapshots keep
  // both alive).
  std::shared_ptr<const detail::rocks_handle> handle() const {
    return std::shared_ptr<const detail::rocks_handle>(this->shared_from_this(), &h_);
  }
  // Starts a write named `op`: takes the reader lock like enter(), then
  // refuses with errc::closed after close() began, or errc::read_only on a
  // read-only store. Every write path (put, erase, write, and any later one:
  // transaction commit, erase_range, compact, ...) starts here.
  std::optional<keel::error> enter_write(std::shared_lock<std::shared_mutex>& lock, std::string_view op) const {
    if (!h_.enter(lock)) return h_.closed();
    if (opts_.read_only) {
      return keel::error(errc::read_only, std::string(op) + " on '" + detail::path_text(opts_.path) +
                                              "' refused: the store was opened read-only (rocks_options::read_only)");
    }
    return std::nullopt;
  }
  // The write gate's WAL-failure guard for this DB (write_gate.hpp). Inside enter().
  std::optional<keel::error> refuse_after_wal_failure(std::string_view op) const {
    return gate_.refuse_after_wal_failure(*h_.db, op, opts_.path);
  }
  result<void> check_write(const rocksdb::Status& s, std::string_view op) const {
    return gate_.check_write(*h_.db, s, op, opts_.path);
  }
  result<void> check(const rocksdb::Status& s, std::string_view op) const {
    if (s.ok()) return {};
    return detail::rocks_op_error(s, op, opts_.path);
  }

  // Expiry's members (rocksdb/expiry.hpp does the work). ensure_tag gives
  // keyspace e its tag unless it has one (inside enter(), not under the
  // write gate: takes it exclusively when it must make the tag).
  result<void> ensure_tag(const detail::rocks_keyspace& e) {
    if (e.tag.load(std::memory_order_acquire) != 0) return {};
    auto gate = gate_.exclusive();
    if (auto refused = refuse_after_wal_failure("put")) return std::move(*refused);
    return expiry_->make_tag(*h_.db, cf_options_, write_options_, e, opts_.path);
  }
  // A watched store's sweep of keyspace e (rocksdb/expiry.hpp, rocks_sweep): its expired keys in `range` deleted
  // as commits a watch sees. Nothing in a store never watched (its compaction filter reclaims them). Inside
  // enter() and e's shared lock, not under the write gate.
  result<void> sweep_expired(const detail::rocks_keyspace& e, const key_range& range) {
    if (!expiry_->watched()) return {};
    const bool is_default = &e == keyspaces_.default_keyspace.get();
    auto entry_of = [&](const write_batch::op&) { return is_default ? nullptr : &e; };
    return detail::rocks_sweep(*h_.db, e, is_default, range, *expiry_, [&] { return gate_.exclusive(); },
                               [&](const write_batch& b) -> result<void> {
                                 if (auto refused = refuse_after_wal_failure("expiry sweep")) return std::move(*refused);
                                 return apply(b, "expiry sweep", entry_of);
                               }, opts_.path);
  }
  // The background sweep (rocks_expiry::set_sweeper): every keyspace, when a deadline it knows of has passed.
  void sweep_in_background() {
    std::shared_lock<std::shared_mutex> lock;
    if (!expiry_->sweep_due() || !h_.enter(lock)) return;
    std::vector<std::shared_ptr<detail::rocks_keyspace>> all{keyspaces_.default_keyspace};
    {
      std::lock_guard registry(keyspaces_.mutex);
      for (const auto& [name, e] : keyspaces_.by_name) all.push_back(e);
    }
    for (const auto& e : all) {
      std::shared_lock<std::shared_mutex> entry(e->mutex);
      if (e->cf && !e->refusing.load(std::memory_order_acquire) && !sweep_expired(*e, key_range::all()))
        expiry_->note_deadline(std::numeric_limits<deadline_ms>::min());  // failed: try again next time
    }
  }
  result<key_expiry> expiry_in(const keyspace_type* ks, std::string_view key) const {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_in(lock, entry, ks, "expiry", false)) return std::move(*refused);
    return expiry_->key(*h_.db, ks ? *ks->entry_ : *keyspaces_.default_keyspace, key, opts_.path);
  }
  // A batch all in keyspace ks, through its handle.
  result<void> write_in(const keyspace_type& ks, const write_batch& b, std::string_view what) {
    if (auto bad = expiry_->bad_ttl(b)) return std::move(*bad);
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_keyspace(lock, entry, ks, what, true)) return std::move(*refused);
    if (b.has_ttl()) {
      if (auto tagged = ensure_tag(*ks.entry_); !tagged) return tagged;
    }
    auto entry_of = [e = ks.entry_.get()](const write_batch::op&) -> const detail::rocks_keyspace* { return e; };
    if (!needs_exclusive(b)) {
      auto gate = gate_.shared();
      if (!needs_exclusive(b)) return apply(b, what, entry_of);
    }
    auto gate = gate_.exclusive();
    return apply(b, what, entry_of);
  }

  static keel::error bad_range() {
    return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
  }
  bool needs_exclusive(const write_batch& b) const { return detail::rocks_needs_exclusive(b, *watches_); }
  // Which keyspace apply() writes an op to: nullptr for the default one
  // (WriteBatch's calls without a handle), else the op's.
  struct default_cf {
    const detail::rocks_keyspace* operator()(const write_batch::op&) const noexcept { return nullptr; }
  };
  // Writes the batch and records it for transactions. Called inside enter()
  // with the write gate held: exclusively when needs_exclusive() or it is a
  // commit, shared otherwise; with the shared lock of
  // every keyspace entry_of gives. Values are stored as expiry.hpp says: a
  // put with a ttl gets its deadline (the keyspace has its tag: ensure_tag()).
  template <class EntryOf>
  result<void> apply(const write_batch& batch, std::string_view what, EntryOf entry_of) {
    rocksdb::WriteBatch wb(batch.payload_bytes() + 16 * batch.size() + 64);
    auto largest = [&](rocksdb::ColumnFamilyHandle* cf) { return detail::rocks_largest_key(*h_.db, cf, opts_.path); };
    auto stored = [&](rocksdb::ColumnFamilyHandle* cf, const rocksdb::Slice& lo, const rocksdb::Slice& hi) {
      return detail::rocks_stored_keys(*h_.db, cf, lo, hi, opts_.path);
    };
    auto cf_of = [&](const write_batch::op& op) {
      const detail::rocks_keyspace* e = entry_of(op);
      return e ? e->cf : nullptr;
    };
    const deadline_ms now = batch.has_ttl() ? expiry_->now() : 0;
    if (batch.has_ttl()) expiry_->note_batch(batch, now);  // for a watched store's background sweep
    auto encode = [&](const write_batch::op& op, std::string& scratch) {
      const detail::rocks_keyspace* e = entry_of(op);
      return detail::rocks_expiry::stored(op, e ? *e : *keyspaces_.default_keyspace, now, scratch);
    };
    const bool list = watches_->list_erased.load(std::memory_order_acquire);  // stable under the gate
    if (auto filled = detail::rocks_fill_batch(batch, wb, cf_of, largest, stored, list, what, opts_.path, encode); !filled)
      return filled;
    if (auto refused = refuse_after_wal_failure(what)) return std::move(*refused);
    if (auto r = check_write(detail::rocks_write_batch(*h_.db, write_options_, *watches_, wb), what); !r) return r;
    conflicts_->record(batch);  // per keyspace
    return {};
  }
  // A batch naming keyspaces (inside enter_write()): resolves each name it
  // names to its keyspace (a missing one: not_found, nothing written), takes
  // their shared locks in address order, then applies it as one WriteBatch.
  // With `tx`: a commit, validated first with the write gate held exclusively.
  result<void> write_keyspaces(const write_batch& batch, const tx_record* tx = nullptr) {
    std::vector<std::shared_ptr<detail::rocks_keyspace>> used;
    std::vector<std::shared_lock<std::shared_mutex>> locks;
    {
      std::lock_guard registry(keyspaces_.mutex);
      for (const auto& op : batch) {
        if (op.keyspace.empty()) continue;
        if (std::any_of(used.begin(), used.end(), [&](const auto& e) { return e->name == op.keyspace; })) continue;
        if (auto bad = keyspace_name_error(op.keyspace)) return std::move(*bad);
        auto it = keyspaces_.by_name.find(op.keyspace);
        if (it == keyspaces_.by_name.end()) {
          return keel::error(errc::not_found, "write: the batch names keyspace '" + std::string(op.keyspace) +
                                                  "', which does not exist; nothing was written");
        }
        used.push_back(it->second);
      }
      std::sort(used.begin(), used.end(), [](const auto& a, const auto& b) { return a.get() < b.get(); });
      for (const auto& e : used) locks.emplace_back(e->mutex);  // no drop can be between lookup and lock
    }
    auto entry_of = [&](const write_batch::op& op) -> const detail::rocks_keyspace* {
      if (op.keyspace.empty()) return nullptr;
      for (const auto& e : used) {
        if (e->name == op.keyspace) return e.get();
      }
      return nullptr;  // unreachable: every name was resolved above
    };
    for (const auto& op : batch) {  // the first ttl in a keyspace gives it its tag
      if (op.kind != write_batch::op_kind::put || op.ttl.count() <= 0) continue;
      const detail::rocks_keyspace* e = entry_of(op);
      if (auto tagged = ensure_tag(e ? *e : *keyspaces_.default_keyspace); !tagged) return tagged;
    }
    if (!tx && !needs_exclusive(batch)) {
      auto gate = gate_.shared();
      if (!needs_exclusive(batch)) return apply(batch, "write", entry_of);
    }
    auto gate = gate_.exclusive();
    if (tx) {
      if (auto valid = conflicts_->validate(*tx); !valid) return valid;
      if (auto expired = expiry_->expired_since_begin(*h_.db, *tx, *keyspaces_.default_keyspace, keyspaces_))
        return std::move(*expired);
    }
    return apply(batch, tx ? "commit" : "write", entry_of);
  }

  // enter_keyspace() for *ks, or for the default keyspace (ks null) enter()
  // (enter_write() when `write`).
  std::optional<keel::error> enter_in(std::shared_lock<std::shared_mutex>& lifecycle,
                                      std::shared_lock<std::shared_mutex>& entry, const keyspace_type* ks,
                                      std::string_view op, bool write) const {
    if (ks) return enter_keyspace(lifecycle, entry, *ks, op, write);
    if (write) return enter_write(lifecycle, op);
    if (!h_.enter(lifecycle)) return h_.closed();
    return std::nullopt;
  }
  // Takes the lifecycle lock as enter() does (as enter_write() when
  // `write`), then the shared lock of ks's keyspace: errc::closed after
  // close(), errc::not_found once it was dropped, invalid_argument for a
  // handle of another store.
  std::optional<keel::error> enter_keyspace(std::shared_lock<std::shared_mutex>& lifecycle,
                                            std::shared_lock<std::shared_mutex>& entry, const keyspace_type& ks,
                                            std::string_view op, bool write) const {
    if (write) {
      if (auto refused = enter_write(lifecycle, op)) return refused;
    } else if (!h_.enter(lifecycle)) {
      return h_.closed();
    }
    const detail::rocks_keyspace& e = *ks.entry_;
    if (e.owner != &h_) {
      return keel::error(errc::invalid_argument,
                         std::string(op) + ": the keyspace handle belongs to another store (or another open of it)");
    }
    if (e.refusing.load(std::memory_order_acquire)) return detail::rocks_keyspace_gone(e.name);
    entry = std::shared_lock(e.mutex);
    if (!e.cf || e.refusing.load(std::memory_order_acquire)) return detail::rocks_keyspace_gone(e.name);
    return std::nullopt;
  }

  // The point read of get (WithValue: the value, or nullopt when absent) and
  // contains (!WithValue: whether present; the value is only pinned, not
  // copied), of the store or, when `snap` is given, of that snapshot (closed
  // once close() released it).
  template <bool WithValue>
  auto read_at(std::string_view key, const detail::rocks_snapshot_view* snap) const
      -> result<std::conditional_t<WithValue, std::optional<std::string>, bool>> {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    return detail::rocks_point_read<WithValue>(*h_.db, *keyspaces_.default_keyspace, key, snap, *expiry_, h_, opts_.path);
  }
  // The same in keyspace ks (not_found once dropped; through a snapshot
  // taken before the drop: snapshot_expired, see keyspaces.hpp).
  template <bool WithValue>
  auto read_in(const keyspace_type& ks, std::string_view key, const detail::rocks_snapshot_view* snap) const
      -> result<std::conditional_t<WithValue, std::optional<std::string>, bool>> {
    std::shared_lock<std::shared_mutex> lock;
    std::shared_lock<std::shared_mutex> entry;
    if (auto refused = enter_keyspace(lock, entry, ks, WithValue ? "get" : "contains", false)) {
      if (snap && refused->code() == errc::not_found) return detail::rocks_keyspace_dropped_since_snapshot(ks.name());
      return std::move(*refused);
    }
    return detail::rocks_point_read<WithValue>(*h_.db, *ks.entry_, key, snap, *expiry_, h_, opts_.path);
  }
  // A new snapshot; inside enter().
  // (The keyspace epoch is read after GetSnapshot: a keyspace whose create
  // the snapshot counts may be empty in it, never missing a write.)
  snapshot_type snapshot_locked() const {
    auto view = detail::take_rocks_snapshot(handle(), expiry_->hold_view());
    return snapshot_type(this, std::move(view), keyspaces_.epoch.load(std::memory_order_acquire));
  }

  options opts_;
  rocksdb::ColumnFamilyOptions cf_options_;  // a new keyspace's column family options (the tuning's)
  rocksdb::WriteOptions write_options_;
  detail::rocks_handle h_;         // the DB, the lifecycle lock, live cursors and snapshots
  mutable detail::rocks_keyspace_registry keyspaces_;  // name -> keyspace (its mutex: 1a in the lock order)
  detail::rocks_write_gate gate_;  // mutable state only: usable from const members
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  std::unique_ptr<detail::rocks_expiry> expiry_;  // the clock, the tags' family, the filter (rocksdb/expiry.hpp)
  std::shared_ptr<detail::rocks_watch_hub> watches_;  // last_seq, waiting watches (rocksdb/watch.hpp)
};

// A cursor over the RocksDB backend (detail::rocks_cursor, one type per
// tuning). Movable, single-threaded use.
template <class Tuning>
class RocksPolicy<Tuning>::cursor_type : public detail::rocks_cursor {
 private:
  friend class RocksPolicy;
  friend class detail::rocks_snapshot<RocksPolicy>;
  explicit cursor_type(detail::rocks_cursor c) : detail::rocks_cursor(std::move(c)) {}
};

// A handle to one keyspace of a RocksDB store: a share of its entry
// (rocksdb/keyspaces.hpp). Cheap to copy; usable from many threads.
template <class Tuning>
class RocksPolicy<Tuning>::keyspace_type {
 public:
  const std::string& name() const noexcept { return entry_->name; }

 private:
  friend class RocksPolicy;
  friend class detail::rocks_snapshot<RocksPolicy>;
  explicit keyspace_type(std::shared_ptr<detail::rocks_keyspace> e) : entry_(std::move(e)) {}
  std::shared_ptr<detail::rocks_keyspace> entry_;
};


static_assert(store_policy<RocksPolicy<DefaultTuning>>);
static_assert(store_policy<RocksPolicy<MacOSTuning>>);
static_assert(store_policy<RocksPolicy<RocksDefaultsTuning>>);
static_assert(keyspace_policy<RocksPolicy<DefaultTuning>>);
static_assert(keyspace_policy<RocksPolicy<MacOSTuning>>);
static_assert(keyspace_policy<RocksPolicy<RocksDefaultsTuning>>);
static_assert(run_cursor<RocksPolicy<DefaultTuning>::cursor_type>);
static_assert(expiry_policy<RocksPolicy<DefaultTuning>>);
static_assert(expiry_policy<RocksPolicy<MacOSTuning>>);
static_assert(expiry_policy<RocksPolicy<RocksDefaultsTuning>>);
static_assert(watch_policy<RocksPolicy<DefaultTuning>>);
static_assert(watch_policy<RocksPolicy<MacOSTuning>>);
static_assert(watch_policy<RocksPolicy<RocksDefaultsTuning>>);

}  // namespace keel
