// keel: basic_store<Policy>, an ordered key-value store over a backend
// policy (contract.hpp).
//
// basic_store is a thin handle: every call forwards to the backend policy. It
// needs no backend headers itself; include <keel/memory.hpp>,
// <keel/rocksdb.hpp> or the umbrella <keel/keel.hpp> for the backends.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "contract.hpp"
#include "cursor.hpp"
#include "error.hpp"
#include "fwd.hpp"
#include "key_range.hpp"
#include "keyspace.hpp"
#include "snapshot.hpp"
#include "stats.hpp"
#include "transaction.hpp"
#include "watch.hpp"
#include "write_batch.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// basic_store: an ordered key-value store over the backend Policy.
//
// Thread safety: every member function may be called from many threads at
// once, close() included; a call that races with close() either completes or
// returns errc::closed. Moving or assigning a store while other threads use it
// is a data race (as for any object).
//
// Ownership: the store owns its backend. Cursors and snapshots hold a share of
// it so that they can report errc::closed safely, but close() (or the
// destructor) releases the backend's resources (for RocksDB: the DB, its LOCK,
// its file descriptors) at once, whatever cursors and snapshots are alive.
// ---------------------------------------------------------------------------
template <class Policy>
class basic_store {
  static_assert(store_policy<Policy>, "Policy does not meet keel::store_policy");

 public:
  using policy_type = Policy;
  using options = typename Policy::options;
  using cursor = basic_cursor<typename Policy::cursor_type>;
  using snapshot_type = basic_snapshot<Policy>;

  // Opens (and by default creates) the store. Fails with a precise errc and an
  // actionable message; see each policy for its errors.
  static result<basic_store> open(const options& opts) {
    auto backend = Policy::open(opts);
    if (!backend) return std::move(backend).error();
    return basic_store(std::move(*backend));
  }

  basic_store(basic_store&&) noexcept = default;
  basic_store& operator=(basic_store&& other) noexcept {
    if (this != &other) {
      reset();
      backend_ = std::move(other.backend_);
      counters_ = std::move(other.counters_);
    }
    return *this;
  }
  basic_store(const basic_store&) = delete;
  basic_store& operator=(const basic_store&) = delete;
  // Closes the store (errors are dropped: call close() to see them).
  ~basic_store() { reset(); }

  // Sets key to value, replacing any previous value.
  result<void> put(std::string_view key, std::string_view value) {
    if (!backend_) return closed_error();
    counters_->add(op_counters::puts, op_counters::bytes_written, key.size() + value.size());
    return backend_->put(key, value);
  }
  // The same with options (expiry.hpp): put_options::ttl makes the key
  // expire that long from now by the store's clock. A ttl of zero or less is
  // errc::invalid_argument, and nothing is written.
  result<void> put(std::string_view key, std::string_view value, const put_options& options)
    requires expiry_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (options.ttl) {
      if (auto bad = ttl_error(*options.ttl)) return *bad;
    }
    counters_->add(op_counters::puts, op_counters::bytes_written, key.size() + value.size());
    return backend_->put(key, value, options);
  }
  // Whether key is present now and, if it has a ttl, its deadline
  // (expiry.hpp: key_expiry).
  result<key_expiry> expiry(std::string_view key) const
    requires expiry_policy<Policy>
  {
    if (!backend_) return closed_error();
    return backend_->expiry(key);
  }
  // Whether some key may have a deadline now (false: every key is
  // permanent). Export and copy ask it of a backend whose cursors do not
  // report deadlines, before asking expiry(key) of every key, so that a
  // store that never used ttl costs no request per key and exports the dump
  // format of before. The backend's may_hold_deadlines() where it has one
  // (etcd: a lease exists; PostgreSQL: the table has its deadline column),
  // else true.
  result<bool> may_hold_deadlines() const
    requires expiry_policy<Policy>
  {
    if (!backend_) return closed_error();
    if constexpr (requires { backend_->may_hold_deadlines(); }) return backend_->may_hold_deadlines();
    else return true;
  }
  // The value of key; nullopt (not an error) when the key is absent.
  result<std::optional<std::string>> get(std::string_view key) const {
    // One named result on every path, so that it is constructed in place.
    result<std::optional<std::string>> r = backend_ ? backend_->get(key) : closed_error();
    if (backend_) counters_->add(op_counters::gets, op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(std::string_view key) const {
    if (!backend_) return closed_error();
    count(op_counters::contains);
    return backend_->contains(key);
  }
  // Removes key; removing an absent key succeeds.
  result<void> erase(std::string_view key) {
    if (!backend_) return closed_error();
    counters_->add(op_counters::erases, op_counters::bytes_written, key.size());
    return backend_->erase(key);
  }
  // Applies the batch atomically: readers see all of it or none of it.
  // A batch may span keyspaces (write_batch::put(ks, k, v)); a backend
  // without keyspaces refuses one that names any (errc::not_supported).
  result<void> write(const write_batch& batch) {
    if (!backend_) return closed_error();
    if constexpr (!keyspace_policy<Policy>) {
      if (batch.names_keyspaces()) {
        return keel::error(errc::not_supported, std::string("the ") + std::string(to_string(Policy::backend_kind)) +
                                                    " backend has no keyspaces yet; nothing was written");
      }
    }
    if constexpr (!expiry_policy<Policy>) {
      if (batch.has_ttl()) {
        return keel::error(errc::not_supported, std::string("the ") + std::string(to_string(Policy::backend_kind)) +
                                                    " backend has no expiry (ttl) yet; nothing was written");
      }
    }
    count(op_counters::writes);
    count(op_counters::batch_ops, batch.size());
    count(op_counters::bytes_written, batch.payload_bytes());
    return backend_->write(batch);
  }

  // Keyspaces (keyspace.hpp): the keyspace `name` ("" is the default one),
  // created if missing (a read-only store: errc::not_found); a name over 255
  // bytes is errc::invalid_argument.
  result<basic_keyspace<Policy>> keyspace(std::string_view name)
    requires keyspace_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (auto bad = keyspace_name_error(name)) return *bad;
    auto ks = backend_->open_keyspace(name, true);
    if (!ks) return std::move(ks).error();
    return basic_keyspace<Policy>(backend_, std::move(*ks), std::string(name), counters_);
  }
  // Every keyspace's name, sorted, "" included.
  result<std::vector<std::string>> keyspaces() const
    requires keyspace_policy<Policy>
  {
    if (!backend_) return closed_error();
    return backend_->keyspaces();
  }
  // Drops the keyspace `name` and every key in it, atomically: readers that
  // start after it see nothing of it; handles to it give errc::not_found.
  // "" (the default keyspace) is errc::invalid_argument; a missing name
  // errc::not_found.
  result<void> drop_keyspace(std::string_view name)
    requires keyspace_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
    if (auto bad = keyspace_name_error(name)) return *bad;
    return backend_->drop_keyspace(name);
  }
  // An ordered pass over range (bytewise order, or reversed).
  cursor scan(const key_range& range = key_range::all()) const { return cursor(scan_impl(range), counters_); }
  // The backend's own cursor, for adapters (basic_any_store).
  typename Policy::cursor_type scan_impl(const key_range& range) const {
    if (!backend_) return Policy::failed_cursor(closed_error());
    count(op_counters::scans);
    return backend_->scan(range);
  }
  // Erases every key in range (its direction is ignored), atomically.
  // invalid_argument when the lower bound is above the upper bound.
  result<void> erase_range(const key_range& range) {
    if (!backend_) return closed_error();
    count(op_counters::writes);
    return backend_->erase_range(range);
  }
  // The values of keys (nullopt where absent), read from one consistent
  // view, in the order of keys. Accepts any range of things convertible to
  // std::string_view (std::vector<std::string>, an initializer list, ...).
  template <std::ranges::input_range Keys>
    requires std::convertible_to<std::ranges::range_reference_t<Keys>, std::string_view>
  result<std::vector<std::optional<std::string>>> multi_get(const Keys& keys) const {
    if (!backend_) return closed_error();
    std::vector<std::string_view> views;
    if constexpr (std::ranges::sized_range<Keys>) views.reserve(std::ranges::size(keys));
    for (auto&& k : keys) views.emplace_back(k);
    auto r = backend_->multi_get(std::span<const std::string_view>(views));
    if (r) {
      std::uint64_t bytes = 0;
      for (const auto& v : *r) bytes += v ? v->size() : 0;
      counters_->add(op_counters::gets, op_counters::bytes_read, views.size(), bytes);
    }
    return r;
  }
  result<std::vector<std::optional<std::string>>> multi_get(std::initializer_list<std::string_view> keys) const {
    return multi_get(std::span<const std::string_view>(keys.begin(), keys.size()));
  }
  // Reclaims space held by overwritten and erased data in range (RocksDB:
  // CompactRange). The memory backend has nothing to do and succeeds.
  result<void> compact(const key_range& range = key_range::all()) {
    if (!backend_) return closed_error();
    return backend_->compact(range);
  }
  // Writes a consistent copy of the store, taken while it is in use, to
  // `path`, which must not exist; it opens as a store of the same backend
  // (RocksDB: a directory, hard-linked where the filesystem allows; memory:
  // the file memory_options::persist_path opens). On failure nothing is left
  // at `path`.
  result<void> checkpoint(const std::filesystem::path& path) const {
    if (!backend_) return closed_error();
    return backend_->checkpoint(path);
  }

  // A transaction: a view as of now plus a private write buffer; see
  // transaction.hpp for the semantics (optimistic, serializable).
  basic_transaction<Policy> transaction() {
    if (!backend_) return basic_transaction<Policy>(nullptr, counters_, closed_error());
    count(op_counters::tx_begun);
    return basic_transaction<Policy>(backend_, counters_, backend_->begin_transaction());
  }
  // Runs fn(tx) in a new transaction and commits it; on errc::conflict runs
  // it again, up to max_attempts times in all. fn takes a
  // basic_transaction<Policy>& and returns a result<T>; an error from fn
  // rolls the transaction back and is returned as is (not retried), except
  // errc::conflict (a read of a server-validated backend, PostgreSQL, can
  // report one), which runs it again like a conflict at commit. Returns
  // fn's value from the attempt that committed, or the last conflict.
  // Back-off between attempts: none before the second, then a random pause of
  // up to 2^attempt microseconds (at most about 16 ms), so that transactions
  // that keep colliding spread out.
  template <class F>
  auto run_transaction(F&& fn, int max_attempts = 16)
      -> detail::transaction_fn_result_t<F, basic_transaction<Policy>> {
    return detail::run_transaction([this] { return transaction(); }, fn, max_attempts);
  }

  // Watch (watch.hpp): every committed change to a key in `range` of the
  // default keyspace, in commit order, from now or after options.after.
  // Errors: invalid_argument (bad options, or after > last_seq()), closed,
  // and the backend's own (RocksDB opened read-only: not_supported).
  result<basic_watch<Policy>> watch(const key_range& range = key_range::all(), const watch_options& options = {}) const
    requires watch_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (auto bad = watch_options_error(options)) return *bad;
    auto w = backend_->watch(range, options);
    if (!w) return std::move(w).error();
    return basic_watch<Policy>(std::move(*w));
  }
  // The seq of the latest commit this store has seen (0 before any, and
  // once closed).
  std::uint64_t last_seq() const noexcept
    requires watch_policy<Policy>
  {
    return backend_ ? backend_->last_seq() : 0;
  }

  // A point-in-time view; cheap on every backend.
  snapshot_type snapshot() const {
    if (!backend_) return snapshot_type(closed_error());
    count(op_counters::snapshots);
    return snapshot_type(backend_->snapshot(), counters_);
  }
  // Closes the store. On success the same path can be opened again at once,
  // here or in another process. Idempotent: closing a closed store succeeds.
  // Whatever it returns, the store is closed afterwards.
  result<void> close() {
    if (!backend_) return {};
    return backend_->close();
  }
  bool is_open() const noexcept { return backend_ && backend_->is_open(); }

  // The backend, for backend-specific calls (e.g. RocksPolicy::with_db()).
  Policy& policy() noexcept { return *backend_; }
  // The operation counters behind stats(), for adapters (basic_any_store).
  const std::shared_ptr<op_counters>& counters() const noexcept { return counters_; }
  const Policy& policy() const noexcept { return *backend_; }

  // Makes the data durable where the backend needs a step for it: a memory
  // store with memory_options::persist_path folds its log into its file;
  // RocksDB syncs its WAL (so writes made without sync_writes survive a power
  // loss too); a hybrid store does what its current tier does. Other
  // backends: nothing to do.
  result<void> flush() {
    if (!backend_) return closed_error();
    if constexpr (requires(Policy& p) { { p.flush() } -> std::same_as<result<void>>; }) {
      return backend_->flush();
    } else {
      return backend_->is_open() ? result<void>() : result<void>(closed_error());
    }
  }

  // Operation counters of this store object plus what the backend knows (key
  // count, size, properties): see store_stats. errc::closed once closed.
  result<store_stats> stats() const {
    if (!backend_ || !backend_->is_open()) return closed_error();
    store_stats s;
    s.backend = Policy::backend_kind;
    counters_->fill(s);
    if constexpr (requires(const Policy& p, store_stats& st) {
                    { backend_stats(p, st) } -> std::same_as<result<void>>;
                  }) {
      if (auto r = backend_stats(*backend_, s); !r) return r.error();
    }
    return s;
  }

 private:
  explicit basic_store(std::shared_ptr<Policy> backend) : backend_(std::move(backend)) {}
  void reset() noexcept {
    if (backend_) (void)backend_->close();
    backend_.reset();
  }
  void count(op_counters::field f, std::uint64_t n = 1) const noexcept { counters_->add(f, n); }

  std::shared_ptr<Policy> backend_;
  // Shared with the store's cursors and snapshots, which count into it.
  std::shared_ptr<op_counters> counters_ = std::make_shared<op_counters>();
};

}  // namespace keel
