// keel: EtcdPolicy, the contract methods of the cluster backend
// (contract.hpp states the contract; <keel/etcd.hpp> is the front and says
// how each operation maps onto etcd). Each method checks that the store is
// open and forwards to the part that does the work:
//   codec.hpp          key encoding under the prefix, base64 and JSON fields
//   transport.hpp      libcurl pool, deadlines, failover, error mapping
//   paging.hpp         range reads; scans paged at one revision, both ways
//   transactions.hpp   batches as one txn, cluster-validated commits,
//                      read-only txns (multi_get)
//   keyspaces.hpp      the list of keyspaces, generations, guards
//   leases.hpp         keys with a ttl: one lease per deadline second
//   watch.hpp          watches: etcd's own watch through the gateway
//
// Thread safety: every member may be called concurrently, close() included.
// A cursor is used by one thread at a time; snapshots may be shared.
// Ownership: cursors and snapshots hold the policy (shared_ptr) and the
// revision they read (a pin); after close() they give errc::closed.
// Errors: as listed in <keel/etcd.hpp>; nothing throws except std::bad_alloc.
//
// Lock order: these mutexes are never held together, nor around a request.
//   pins_mutex_             guards pins_ (the revisions live views of this
//                           process read): taken when a view pins or unpins
//                           a revision and by compact() to read the oldest;
//   etcd_transport::mutex_  guards the idle CURL handles and the transport's
//                           closed flag: taken to take or give back a handle
//                           and by close();
//   watch registry, watch buffers (etcd/watch.hpp), the lease cache
//   (etcd/leases.hpp): leaves.
// open_ and the transport's preferred endpoint are atomics.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../store.hpp"
#include "codec.hpp"
#include "keyspaces.hpp"
#include "leases.hpp"
#include "options.hpp"
#include "paging.hpp"
#include "transactions.hpp"
#include "transport.hpp"
#include "watch.hpp"

namespace keel {

class EtcdPolicy : public std::enable_shared_from_this<EtcdPolicy> {
  // A revision some live view of this process still reads (compact() never
  // goes past it). Shared by copies of a snapshot; unregisters on destruction.
  class pin {
   public:
    pin(std::shared_ptr<const EtcdPolicy> owner, std::int64_t rev) : owner_(std::move(owner)), rev_(rev) {
      std::lock_guard lock(owner_->pins_mutex_);
      owner_->pins_.insert(rev_);
    }
    pin(const pin&) = delete;
    pin& operator=(const pin&) = delete;
    ~pin() {
      std::lock_guard lock(owner_->pins_mutex_);
      owner_->pins_.erase(owner_->pins_.find(rev_));
    }

   private:
    std::shared_ptr<const EtcdPolicy> owner_;
    std::int64_t rev_;
  };

 public:
  using options = etcd_options;
  static constexpr keel::backend backend_kind = keel::backend::etcd;

  // A handle to one keyspace (keyspaces.hpp): its name, its generation (the
  // create_revision of its list entry; 0 for "") and its key mapping (null
  // for ""). Cheap to copy; holds no connection.
  struct keyspace_type {
    std::string name;
    std::int64_t generation = 0;
    std::shared_ptr<const detail::etcd_keyspace> keys;
  };

  // ---- cursor -------------------------------------------------------------
  // Reads its range page by page at one revision (the first page's; a
  // snapshot's cursor reads the snapshot's), pinned while the cursor lives.
  // One cursor is used by one thread at a time.
  class cursor_type {
   public:
    bool valid() const noexcept { return scan_.valid() && !deadlines_.error(); }
    std::string_view key() const noexcept { return scan_.key(); }
    std::string_view value() const noexcept { return scan_.value(); }
    const std::optional<keel::error>& error() const noexcept {
      return deadlines_.error() ? deadlines_.error() : scan_.error();
    }
    // The deadline_cursor members (contract.hpp; export and copy read them):
    // each key's deadline from its lease, a lookup per distinct lease of the
    // scan, not per key (leases.hpp, etcd_scan_deadlines).
    bool holds_deadlines() const { return owner_ && deadlines_.holds(owner_->transport_, scan_); }
    std::optional<deadline_ms> deadline() const {
      return holds_deadlines() ? deadlines_.deadline(scan_.lease()) : std::nullopt;
    }

    void next() {
      if (!valid()) return;
      if (!owner_->is_open()) return scan_.fail(closed_error());
      if (scan_.step()) {
        fetch();
        deadlines_.on_page(owner_->transport_, scan_);
      }
    }

   private:
    friend class EtcdPolicy;
    explicit cursor_type(keel::error e) { scan_.fail(std::move(e)); }
    cursor_type(std::shared_ptr<const EtcdPolicy> owner, const key_range& range, std::int64_t revision,
                std::shared_ptr<pin> held, std::shared_ptr<const detail::etcd_keyspace> mapping = nullptr)
        : owner_(std::move(owner)), pin_(std::move(held)), mapping_(std::move(mapping)) {
      auto bounds = keys().range(range);
      if (!bounds) return;  // empty range
      scan_ =
          detail::etcd_paged_scan(std::move(bounds->first), std::move(bounds->second), revision, range.is_reversed());
      fetch();
    }
    void fetch() {
      if (scan_.fetch(owner_->transport_, keys(), owner_->opts_.page_size))
        pin_ = std::make_shared<pin>(owner_, scan_.revision());
    }
    const detail::etcd_keyspace& keys() const { return mapping_ ? *mapping_ : owner_->keys_; }

    std::shared_ptr<const EtcdPolicy> owner_;
    std::shared_ptr<pin> pin_;
    std::shared_ptr<const detail::etcd_keyspace> mapping_;  // null: the default keyspace
    detail::etcd_paged_scan scan_;
    mutable detail::etcd_scan_deadlines deadlines_;  // used by the const deadline_cursor members
  };

  // ---- snapshot -----------------------------------------------------------
  // A revision. Copies share it; compact() of this process keeps it readable
  // while a copy lives (another process's compaction does not: reads then
  // give errc::snapshot_expired).
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->get_at(key, revision_, false);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->contains_at(key, revision_, false);
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, range, revision_, pin_);
    }
    // The same in keyspace `ks`, as of this revision: a keyspace dropped
    // since reads on (until a compaction passes the revision:
    // snapshot_expired); one created since, or a handle to another
    // generation of the name, gives errc::not_found.
    result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
      if (ks.name.empty()) return get(key);
      if (!owner_->is_open()) return closed_error();
      auto r = owner_->read_in(ks, key, revision_, false);
      if (!r) return std::move(r).error();
      if (const auto* kv = detail::etcd_txn_kv(*r, 1)) return std::optional<std::string>(detail::json_bytes(*kv, "value"));
      return std::optional<std::string>();
    }
    result<bool> contains(const keyspace_type& ks, std::string_view key) const {
      if (ks.name.empty()) return contains(key);
      if (!owner_->is_open()) return closed_error();
      auto r = owner_->read_in(ks, key, revision_, true);
      if (!r) return std::move(r).error();
      const auto* rr = detail::etcd_txn_range_response(*r, 1);
      return rr && detail::json_int(*rr, "count") > 0;
    }
    cursor_type scan(const keyspace_type& ks, const key_range& range) const {
      if (ks.name.empty()) return scan(range);
      if (!owner_->is_open()) return cursor_type(closed_error());
      auto at = detail::etcd_keyspace_at(owner_->transport_, owner_->keys_, ks.name, ks.generation, revision_);
      if (!at) return cursor_type(std::move(at).error());
      return cursor_type(owner_, range, revision_, pin_, ks.keys);
    }
    // The etcd revision this view reads.
    std::int64_t revision() const noexcept { return revision_; }

   private:
    friend class EtcdPolicy;
    snapshot_type(std::shared_ptr<const EtcdPolicy> owner, std::int64_t revision)
        : owner_(std::move(owner)), revision_(revision), pin_(std::make_shared<pin>(owner_, revision)) {}
    std::shared_ptr<const EtcdPolicy> owner_;
    std::int64_t revision_;
    std::shared_ptr<pin> pin_;
  };

  // ---- store --------------------------------------------------------------
  // Checks the options and that the cluster answers a linearizable read (so
  // a store that opens can serve; errc::unavailable otherwise).
  static result<std::shared_ptr<EtcdPolicy>> open(const options& opts) {
    if (opts.endpoints.empty()) return keel::error(errc::invalid_argument, "etcd: etcd_options::endpoints is empty");
    if (opts.prefix.empty()) {
      return keel::error(errc::invalid_argument,
                         "etcd: etcd_options::prefix is empty; every store needs its own non-empty key prefix "
                         "(e.g. \"myapp/\")");
    }
    for (const auto& e : opts.endpoints) {
      if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
        return keel::error(
            errc::invalid_argument,
            "etcd: endpoint '" + e + "' must start with http:// or https:// (e.g. http://127.0.0.1:2379)");
      }
    }
    if (opts.page_size == 0 || opts.max_txn_ops == 0 || opts.max_request_bytes == 0) {
      return keel::error(errc::invalid_argument, "etcd: page_size, max_txn_ops and max_request_bytes must be > 0");
    }
    auto p = std::make_shared<EtcdPolicy>(opts);
    auto probe = p->current_revision();
    if (!probe) return std::move(probe).error();
    return p;
  }

  explicit EtcdPolicy(const options& opts) : opts_(opts), keys_(opts.prefix), transport_(make_transport_config(opts)) {}
  EtcdPolicy(const EtcdPolicy&) = delete;
  EtcdPolicy& operator=(const EtcdPolicy&) = delete;

  result<void> put(std::string_view key, std::string_view value) {
    if (!is_open()) return closed_error();
    if (auto bad = detail::etcd_request_too_large(opts_.prefix.size() + key.size() + value.size() + 16, "put", opts_))
      return *bad;
    std::string body = detail::json_object().bytes("key", keys_.key(key)).bytes("value", value).str();
    auto r = transport_.call("kv/put", body, detail::call_kind::write, "put");
    if (!r) return std::move(r).error();
    return {};
  }

  // With a ttl: one txn putting the key with a lease (leases.hpp; docs/expiry.md
  // "etcd": etcd's time decides, in whole seconds). Without: put(key, value),
  // which also detaches the key from any lease (permanent again).
  result<void> put(std::string_view key, std::string_view value, const put_options& o) {
    if (!o.ttl) return put(key, value);
    if (!is_open()) return closed_error();
    auto c = detail::etcd_compile_batch(write_batch{}.put(key, value, o), keys_, opts_);
    if (!c) return std::move(c).error();
    auto r = send_compiled(*c, {}, {}, "put");
    if (!r) return std::move(r).error();
    return {};
  }
  // Whether some key may have a deadline: some lease exists in the cluster
  // (/v3/lease/leases; other clients' leases count too). (store.hpp,
  // may_hold_deadlines; export and copy read deadlines through the cursor.)
  result<bool> may_hold_deadlines() const {
    if (!is_open()) return closed_error();
    auto r = transport_.call("lease/leases", "{}", detail::call_kind::read, "list leases");
    if (!r) return std::move(r).error();
    auto it = r->find("leases");
    return it != r->end() && it->is_array() && !it->empty();
  }
  // Present, and its lease's remaining TTL (leases.hpp, etcd_key_expiry).
  result<key_expiry> expiry(std::string_view key) const {
    if (!is_open()) return closed_error();
    return detail::etcd_key_expiry(transport_, [&]() -> result<std::optional<std::int64_t>> {
      auto r = transport_.call("kv/range",
                               detail::etcd_range_body(keys_.key(key), {}, 0, 0, false, opts_.serializable_reads, true),
                               detail::call_kind::read, "expiry");
      if (!r) return std::move(r).error();
      auto kvs = r->find("kvs");
      return detail::etcd_kv_lease(kvs == r->end() || !kvs->is_array() || kvs->empty() ? nullptr : &(*kvs)[0]);
    });
  }

  result<std::optional<std::string>> get(std::string_view key) const {
    if (!is_open()) return closed_error();
    return get_at(key, 0, opts_.serializable_reads);
  }
  result<bool> contains(std::string_view key) const {
    if (!is_open()) return closed_error();
    return contains_at(key, 0, opts_.serializable_reads);
  }

  result<void> erase(std::string_view key) {
    if (!is_open()) return closed_error();
    std::string body = detail::json_object().bytes("key", keys_.key(key)).str();
    auto r = transport_.call("kv/deleterange", body, detail::call_kind::write, "erase");
    if (!r) return std::move(r).error();
    return {};
  }

  // One etcd txn; see <keel/etcd.hpp> for the limits. A batch naming
  // keyspaces other than "" carries a compare per keyspace (its list entry
  // exists): one that does not is errc::not_found, nothing written.
  result<void> write(const write_batch& batch) {
    if (!is_open()) return closed_error();
    if (batch.empty()) return {};
    auto c = detail::etcd_compile_batch(batch, keys_, opts_);
    if (!c) return std::move(c).error();
    if (c->keyspaces.empty()) {
      if (c->ops.empty()) return {};
      auto r = send_compiled(*c, {}, {}, "write");
      if (!r) return std::move(r).error();
      return {};
    }
    auto r = send_guarded(*c, "write");
    if (!r) return std::move(r).error();
    if (!r->value("succeeded", false)) return missing_or(*r, c->keyspaces, keel::error(errc::not_found, "etcd: a keyspace of the batch does not exist"));
    return {};
  }

  cursor_type scan(const key_range& range) const {
    if (!is_open()) return cursor_type(closed_error());
    return cursor_type(shared_from_this(), range, 0, nullptr);
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    if (!is_open()) return closed_error();
    auto rev = current_revision();
    if (!rev) return std::move(rev).error();
    return snapshot_type(shared_from_this(), *rev);
  }

  // One deleterange request (atomic); invalid_argument when the lower bound
  // is above the upper bound.
  result<void> erase_range(const key_range& range) {
    auto n = erase_range_counted(range);
    if (!n) return std::move(n).error();
    return {};
  }
  // erase_range, returning how many keys it erased: etcd's own count, from
  // the same request (exact and atomic; a counting transaction would need a
  // compare per key, past max_txn_ops).
  result<std::uint64_t> erase_range_counted(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range)) {
      return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
    }
    auto bounds = keys_.range(range);
    if (!bounds) return std::uint64_t{0};
    std::string body = detail::json_object().bytes("key", bounds->first).bytes("range_end", bounds->second).str();
    auto r = transport_.call("kv/deleterange", body, detail::call_kind::write, "erase_range");
    if (!r) return std::move(r).error();
    return static_cast<std::uint64_t>(detail::json_int(*r, "deleted"));
  }

  // Read-only txns of range requests: one when the keys fit max_txn_ops,
  // else several, all at the revision the first one read.
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    if (!is_open()) return closed_error();
    return detail::etcd_multi_get(transport_, keys_, opts_, keys);
  }

  // etcd compaction: drops the history older than the oldest revision a live
  // snapshot, cursor or transaction of this process reads (or than the
  // current revision when there is none), so the database stops growing with
  // overwrites. Compaction is cluster-wide: it also ends older snapshots of
  // other stores and processes (they get errc::snapshot_expired). The range
  // is checked (invalid_argument when lower > upper) but otherwise ignored:
  // etcd compacts every key. Nothing to compact: success.
  result<void> compact(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range)) {
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    }
    auto now = current_revision();
    if (!now) return std::move(now).error();
    std::int64_t target = *now;
    {
      std::lock_guard lock(pins_mutex_);
      if (!pins_.empty()) target = std::min(target, *pins_.begin());
    }
    if (target <= 1) return {};
    std::string body = detail::json_object().integer("revision", target).boolean("physical", true).str();
    auto r = transport_.call("kv/compaction", body, detail::call_kind::read, "compact");
    if (!r && r.error() == errc::snapshot_expired) return {};  // already compacted at or past target
    if (!r) return std::move(r).error();
    return {};
  }

  // Not supported: an etcd store has no local files to copy. Back up the
  // cluster with `etcdctl snapshot save`, or copy the prefix with
  // keel::export_dump (<keel/dump.hpp>; a dump read through one cursor, at one
  // revision).
  result<void> checkpoint(const std::filesystem::path&) const {
    if (!is_open()) return closed_error();
    return keel::error(errc::not_supported,
                       "etcd: checkpoint() is not supported by the cluster backend (its data lives in the etcd "
                       "cluster, not in local files): back up the cluster with 'etcdctl snapshot save', or copy "
                       "the store's prefix with keel::export_dump (a dump read at one revision)");
  }

  // A transaction reads a snapshot (revision R); start = R. The view's pin
  // keeps R out of this process's compactions while the transaction lives.
  result<tx_start<snapshot_type>> begin_transaction() const {
    auto snap = snapshot();
    if (!snap) return std::move(snap).error();
    const auto start = static_cast<std::uint64_t>(snap->revision());
    std::shared_ptr<void> registration = snap->pin_;
    return tx_start<snapshot_type>{std::move(*snap), start, std::move(registration)};
  }

  // Validated by the cluster, in the txn that applies the writes, so that
  // commits from other processes and machines are seen: the txn applies the
  // writes only if the compares of detail::etcd_validation_compares hold
  // (transactions.hpp: each key read and each range scanned unchanged since
  // the start revision R). The compares count against max_txn_ops: a read
  // set needing more is refused with invalid_argument before anything is
  // sent. Compares that fail: errc::conflict, nothing written.
  // Reads and writes in keyspaces other than "" (tx.keyspace_reads, the
  // writes' op::keyspace) are validated the same way, each in its keyspace's
  // keys. Each keyspace the transaction read or writes must still be the one
  // it began with (two compares on its list entry: it exists, created at or
  // before R): one dropped (or dropped and created again) since is
  // errc::not_found, nothing written.
  result<void> commit_transaction(const tx_record& tx) {
    if (!is_open()) return closed_error();
    auto c = detail::etcd_compile_batch(tx.writes, keys_, opts_);
    if (!c) return std::move(c).error();
    if (c->ops.empty() && c->keyspaces.empty()) return {};
    const auto start = static_cast<std::int64_t>(tx.start);
    std::vector<std::string> used = c->keyspaces;  // written or read, sorted, once each
    for (const auto& ks : tx.keyspace_reads)
      if (!ks.keyspace.empty()) used.push_back(ks.keyspace);
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    detail::etcd_txn_ops compares, failure;
    for (const auto& name : used) {
      for (auto& g : detail::etcd_keyspace_guard_since(keys_, name, start)) compares.push_back(std::move(g));
      failure.push_back(detail::etcd_keyspace_probe(keys_, name));
    }
    if (auto v = detail::etcd_transaction_compares(transport_, keys_, opts_, tx, compares); !v)
      return std::move(v).error();
    auto r = send_compiled(*c, compares, failure, "commit");
    if (!r) return std::move(r).error();
    if (!r->value("succeeded", false)) {
      if (auto gone = detail::etcd_missing_keyspace(*r, used, start)) {
        return keel::error(errc::not_found, "etcd: keyspace " + detail::keyspace_text(*gone) +
                                                " was dropped while the transaction ran; nothing was written");
      }
      return keel::error(errc::conflict,
                         "etcd: transaction conflict: a key it read or a range it scanned was changed by another "
                         "commit after revision " +
                             std::to_string(start) + "; nothing was written, run it again");
    }
    return {};
  }

  // ---- keyspaces (keyspaces.hpp; layout: codec.hpp, docs/cluster.md) ------
  // Opening reads (or, with `create`, creates) the keyspace's list entry in
  // etcd: one request. Every client of the store's prefix, on any machine,
  // sees the same keyspaces.
  result<keyspace_type> open_keyspace(std::string_view name, bool create) const {
    if (!is_open()) return closed_error();
    if (auto bad = keyspace_name_error(name)) return *bad;
    if (name.empty()) return keyspace_type{};
    auto generation = detail::etcd_open_keyspace(transport_, keys_, name, create);
    if (!generation) return std::move(generation).error();
    return keyspace_type{std::string(name), *generation,
                         std::make_shared<const detail::etcd_keyspace>(keys_.named(name))};
  }
  // The list entries, paged at one revision; "" first.
  result<std::vector<std::string>> keyspaces() const {
    if (!is_open()) return closed_error();
    auto names = detail::etcd_list_keyspaces(transport_, keys_, opts_.page_size);
    if (!names) return std::move(names).error();
    names->insert(names->begin(), std::string());
    return names;
  }
  // One txn: if the list entry exists, a DeleteRange of the keyspace's keys
  // and the delete of its entry. Snapshots and cursors taken before it read
  // on at their revision (until a compaction passes it).
  result<void> drop_keyspace(std::string_view name) {
    if (!is_open()) return closed_error();
    if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
    if (auto bad = keyspace_name_error(name)) return *bad;
    const auto data = keys_.named(name);
    auto ok = detail::etcd_send_txn(
        transport_, {detail::etcd_keyspace_guard(keys_, name)},
        {detail::etcd_delete_op(data.base(), data.prefix_end()), detail::etcd_delete_op(keys_.list_entry(name))},
        "drop keyspace");
    if (!ok) return std::move(ok).error();
    if (!*ok) return detail::etcd_keyspace_missing(name);
    return {};
  }

  // The keyed operations in keyspace `ks` ("" forwards to the store's own).
  // Writes and point reads are one txn guarded by the keyspace's generation;
  // a handle to a dropped keyspace gives errc::not_found. Point reads are
  // linearizable (serializable_reads applies to "" only).
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value) {
    if (ks.name.empty()) return put(key, value);
    if (!is_open()) return closed_error();
    const std::string k = ks.keys->key(key);
    if (auto bad = detail::etcd_request_too_large(k.size() + value.size() + 64, "put", opts_)) return *bad;
    return guarded_write(ks, {detail::etcd_put_op(k, value)}, "put");
  }
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value, const put_options& o) {
    if (ks.name.empty()) return put(key, value, o);
    if (!o.ttl) return put(ks, key, value);
    if (!is_open()) return closed_error();
    auto c = detail::etcd_compile_batch(write_batch{}.put(keyspace_name(ks.name), key, value, o), keys_, opts_);
    if (!c) return std::move(c).error();
    auto r = send_compiled(*c, {detail::etcd_keyspace_guard(keys_, ks.name, ks.generation)}, {}, "put");
    if (!r) return std::move(r).error();
    if (!r->value("succeeded", false)) return detail::etcd_keyspace_gone(ks.name);
    return {};
  }
  result<key_expiry> expiry(const keyspace_type& ks, std::string_view key) const {
    if (ks.name.empty()) return expiry(key);
    if (!is_open()) return closed_error();
    return detail::etcd_key_expiry(transport_, [&]() -> result<std::optional<std::int64_t>> {
      auto r = guarded_read(ks, detail::etcd_get_op(ks.keys->key(key)), "expiry");
      if (!r) return std::move(r).error();
      return detail::etcd_kv_lease(detail::etcd_txn_kv(*r, 0));
    });
  }
  result<void> erase(const keyspace_type& ks, std::string_view key) {
    if (ks.name.empty()) return erase(key);
    if (!is_open()) return closed_error();
    return guarded_write(ks, {detail::etcd_delete_op(ks.keys->key(key))}, "erase");
  }
  result<void> erase_range(const keyspace_type& ks, const key_range& range) {
    if (ks.name.empty()) return erase_range(range);
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range)) {
      return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
    }
    detail::etcd_txn_ops ops;
    if (auto bounds = ks.keys->range(range)) ops.push_back(detail::etcd_delete_op(bounds->first, bounds->second));
    return guarded_write(ks, std::move(ops), "erase_range");
  }
  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
    if (ks.name.empty()) return get(key);
    if (!is_open()) return closed_error();
    auto r = guarded_read(ks, detail::etcd_get_op(ks.keys->key(key)), "get");
    if (!r) return std::move(r).error();
    if (const auto* kv = detail::etcd_txn_kv(*r, 0)) return std::optional<std::string>(detail::json_bytes(*kv, "value"));
    return std::optional<std::string>();
  }
  result<bool> contains(const keyspace_type& ks, std::string_view key) const {
    if (ks.name.empty()) return contains(key);
    if (!is_open()) return closed_error();
    auto r = guarded_read(ks, detail::etcd_get_op(ks.keys->key(key), 0, true), "contains");
    if (!r) return std::move(r).error();
    const auto* rr = detail::etcd_txn_range_response(*r, 0);
    return rr && detail::json_int(*rr, "count") > 0;
  }
  result<std::vector<std::optional<std::string>>> multi_get(const keyspace_type& ks,
                                                            std::span<const std::string_view> keys) const {
    if (ks.name.empty()) return multi_get(keys);
    if (!is_open()) return closed_error();
    auto r = detail::etcd_multi_get(transport_, *ks.keys, opts_, keys,
                                    detail::etcd_keyspace_guard(keys_, ks.name, ks.generation));
    if (!r && r.error() == errc::not_found) return detail::etcd_keyspace_gone(ks.name);
    return r;
  }
  // Reads the list entry first (the keyspace exists at revision R), then
  // pages the keyspace's range at R.
  cursor_type scan(const keyspace_type& ks, const key_range& range) const {
    if (ks.name.empty()) return scan(range);
    if (!is_open()) return cursor_type(closed_error());
    auto at = detail::etcd_keyspace_at(transport_, keys_, ks.name, ks.generation, 0);
    if (!at) return cursor_type(std::move(at).error());
    auto self = shared_from_this();
    auto held = std::make_shared<pin>(self, *at);
    return cursor_type(std::move(self), range, *at, std::move(held), ks.keys);
  }
  // Compaction is cluster-wide (compact(range) below); checks the handle.
  result<void> compact(const keyspace_type& ks, const key_range& range) {
    if (ks.name.empty()) return compact(range);
    if (!is_open()) return closed_error();
    auto at = detail::etcd_keyspace_at(transport_, keys_, ks.name, ks.generation, 0);
    if (!at) return std::move(at).error();
    return compact(range);
  }

  // ---- watch (etcd/watch.hpp; docs/watch.md "etcd") ---------------------
  // seq is etcd's revision; a watch sees every client's changes.
  using watch_type = detail::etcd_watch;
  result<watch_type> watch(const key_range& range, const watch_options& o) const {
    if (!is_open()) return closed_error();
    return detail::etcd_open_watch(transport_, keys_, std::make_shared<const detail::etcd_keyspace>(keys_), {}, 0,
                                   range, o, watches_, shared_from_this(), [this] { return is_open(); });
  }
  result<watch_type> watch(const keyspace_type& ks, const key_range& range, const watch_options& o) const {
    if (ks.name.empty()) return watch(range, o);
    if (!is_open()) return closed_error();
    return detail::etcd_open_watch(transport_, keys_, ks.keys, ks.name, ks.generation, range, o, watches_,
                                   shared_from_this(), [this] { return is_open(); });
  }
  // The highest revision this client has seen (any answer's header, its own
  // writes' and its watches' included); 0 before any.
  std::uint64_t last_seq() const noexcept { return static_cast<std::uint64_t>(transport_.seen_revision()); }

  // Frees the connections and ends every watch (joining its thread).
  // Snapshots, cursors and watches still alive give errc::closed.
  // Idempotent; nothing to flush (etcd acknowledged every write). Leases
  // keel granted are not revoked: their keys must outlive the client, and
  // etcd revokes each lease (with its keys) at its deadline.
  result<void> close() {
    if (!open_.exchange(false)) return {};
    watches_.close_all();
    transport_.close();
    return {};
  }
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  const options& config() const noexcept { return opts_; }

  // The cluster's current revision (a linearizable read).
  result<std::int64_t> current_revision() const {
    std::string body = detail::json_object().bytes("key", opts_.prefix).boolean("count_only", true).str();
    auto r = transport_.call("kv/range", body, detail::call_kind::read, "read the current revision");
    if (!r) return std::move(r).error();
    return detail::etcd_header_revision(*r);
  }

  // What the member that answers reports (/v3/maintenance/status), plus the
  // member count and the number of keys of the default keyspace.
  struct cluster_status {
    std::int64_t revision = 0, raft_index = 0, raft_term = 0, db_size = 0, db_size_in_use = 0;
    std::uint64_t member_id = 0, leader = 0;
    std::size_t members = 0;
    std::uint64_t keys = 0;  // of the default keyspace ("")
    std::string version;
    std::vector<std::string> errors;  // e.g. alarms ("memberID:... alarm:NOSPACE")
  };
  result<cluster_status> status() const {
    if (!is_open()) return closed_error();
    cluster_status s;
    auto st = transport_.call("maintenance/status", "{}", detail::call_kind::read, "status");
    if (!st) return std::move(st).error();
    auto member = detail::parse_etcd_member_status(*st);
    s.raft_index = member.raft_index;
    s.raft_term = member.raft_term;
    s.db_size = member.db_size;
    s.db_size_in_use = member.db_size_in_use;
    s.leader = member.leader;
    s.member_id = member.member_id;
    s.version = std::move(member.version);
    s.errors = std::move(member.errors);
    auto ml = transport_.call("cluster/member/list", "{}", detail::call_kind::read, "member list");
    if (!ml) return std::move(ml).error();
    if (auto m = ml->find("members"); m != ml->end() && m->is_array()) s.members = m->size();
    std::string body = detail::json_object()
                           .bytes("key", opts_.prefix)
                           .bytes("range_end", keys_.prefix_end())
                           .boolean("count_only", true)
                           .str();
    auto c = transport_.call("kv/range", body, detail::call_kind::read, "count keys");
    if (!c) return std::move(c).error();
    s.keys = static_cast<std::uint64_t>(detail::json_int(*c, "count"));
    s.revision = detail::etcd_header_revision(*c);
    return s;
  }

  // The etcd range [lo, hi) of a user range of the default keyspace (inside
  // [prefix, prefix + eight 0xFF + 0x01): codec.hpp); nullopt when empty.
  // Public for tests of the key mapping.
  std::optional<std::pair<std::string, std::string>> etcd_range(const key_range& range) const {
    return keys_.range(range);
  }

 private:
  friend class cursor_type;
  friend class snapshot_type;

  static detail::etcd_transport_config make_transport_config(const options& o) {
    detail::etcd_transport_config c;
    for (auto e : o.endpoints) {
      while (!e.empty() && e.back() == '/') e.pop_back();
      c.endpoints.push_back(std::move(e));
    }
    c.connect_timeout = o.connect_timeout;
    c.request_timeout = o.request_timeout;
    c.operation_timeout = o.operation_timeout;
    return c;
  }

  // {compares, c's ops, failure} as one txn; c's puts with a ttl get their
  // leases first (granted before the txn, leases.hpp: a txn that fails
  // leaves them unused, and they expire by themselves).
  result<nlohmann::json> send_compiled(detail::etcd_compiled_batch& c, const detail::etcd_txn_ops& compares,
                                       const detail::etcd_txn_ops& failure, std::string_view what) {
    auto send = [&] { return detail::etcd_send_txn_answer(transport_, compares, c.ops, failure, what); };
    if (c.leased.empty()) return send();
    return detail::etcd_send_leased(transport_, leases_, c, send);
  }
  // A txn whose compares are one per keyspace the batch names (it exists),
  // whose failure branch probes each keyspace's list entry.
  result<nlohmann::json> send_guarded(detail::etcd_compiled_batch& c, std::string_view what) {
    detail::etcd_txn_ops compares, failure;
    for (const auto& name : c.keyspaces) {
      compares.push_back(detail::etcd_keyspace_guard(keys_, name));
      failure.push_back(detail::etcd_keyspace_probe(keys_, name));
    }
    return send_compiled(c, compares, failure, what);
  }
  // not_found naming the first keyspace the failure branch found missing;
  // else `otherwise`.
  static keel::error missing_or(const nlohmann::json& answer, const std::vector<std::string>& names,
                                keel::error otherwise) {
    if (auto gone = detail::etcd_missing_keyspace(answer, names)) {
      return keel::error(errc::not_found, "etcd: keyspace " + detail::keyspace_text(*gone) +
                                              " does not exist; nothing was written");
    }
    return otherwise;
  }
  // `ops` applied only while ks's list entry is of its generation.
  result<void> guarded_write(const keyspace_type& ks, detail::etcd_txn_ops ops, std::string_view what) {
    auto ok = detail::etcd_send_txn(transport_, {detail::etcd_keyspace_guard(keys_, ks.name, ks.generation)}, ops,
                                    what);
    if (!ok) return std::move(ok).error();
    if (!*ok) return detail::etcd_keyspace_gone(ks.name);
    return {};
  }
  // One range op read only while ks's list entry is of its generation.
  result<nlohmann::json> guarded_read(const keyspace_type& ks, std::string op, std::string_view what) const {
    auto r = detail::etcd_send_txn_answer(transport_, {detail::etcd_keyspace_guard(keys_, ks.name, ks.generation)},
                                          {std::move(op)}, {}, what, detail::call_kind::read);
    if (!r) return std::move(r).error();
    if (!r->value("succeeded", false)) return detail::etcd_keyspace_gone(ks.name);
    return r;
  }
  // One read-only txn at `revision`: ks's list entry (response 0) and `key`
  // in ks (response 1, count_only when asked); not_found when the entry is
  // not of ks's generation at that revision.
  result<nlohmann::json> read_in(const keyspace_type& ks, std::string_view key, std::int64_t revision,
                                 bool count_only) const {
    if (ks.generation > revision) return detail::etcd_keyspace_gone(ks.name);
    auto r = detail::etcd_read_txn(transport_,
                                   {detail::etcd_get_op(keys_.list_entry(ks.name), revision),
                                    detail::etcd_get_op(ks.keys->key(key), revision, count_only)},
                                   "snapshot read");
    if (!r) return std::move(r).error();
    const auto* entry = detail::etcd_txn_kv(*r, 0);
    if (!entry || detail::json_int(*entry, "create_revision") != ks.generation)
      return detail::etcd_keyspace_gone(ks.name);
    return r;
  }

  // A point read at `revision` (0: the current one).
  result<std::optional<std::string>> get_at(std::string_view key, std::int64_t revision, bool serializable) const {
    auto r = transport_.call("kv/range", detail::etcd_range_body(keys_.key(key), {}, revision, 0, false, serializable),
                             detail::call_kind::read, "get");
    if (!r) return std::move(r).error();
    auto kvs = r->find("kvs");
    if (kvs == r->end() || !kvs->is_array() || kvs->empty()) return std::optional<std::string>();
    return std::optional<std::string>(detail::json_bytes((*kvs)[0], "value"));
  }
  // A count_only read of one key at `revision` (0: the current one).
  result<bool> contains_at(std::string_view key, std::int64_t revision, bool serializable) const {
    detail::json_object o;
    o.bytes("key", keys_.key(key)).boolean("count_only", true);
    if (revision > 0) o.integer("revision", revision);
    if (serializable) o.boolean("serializable", true);
    auto r = transport_.call("kv/range", o.str(), detail::call_kind::read, "contains");
    if (!r) return std::move(r).error();
    return detail::json_int(*r, "count") > 0;
  }

  options opts_;
  detail::etcd_keyspace keys_;  // the default keyspace (opts_.prefix) and the layout of the others
  detail::etcd_transport transport_;
  std::atomic<bool> open_{true};
  mutable std::mutex pins_mutex_;
  mutable std::multiset<std::int64_t> pins_;  // revisions live views read; guarded by pins_mutex_
  mutable detail::etcd_watch_registry watches_;  // live watches, ended by close()
  detail::etcd_lease_cache leases_;              // a lease per deadline second (leases.hpp)
};

static_assert(keyspace_policy<EtcdPolicy>);
static_assert(watch_policy<EtcdPolicy>);
static_assert(expiry_policy<EtcdPolicy>);

}  // namespace keel
