// keel: basic_store<Policy>, its cursors and snapshots, and the policy contract.
//
// basic_store is a thin handle: every call forwards to the backend policy. It
// needs no backend headers itself; include <keel/memory.hpp>,
// <keel/rocksdb.hpp> or the umbrella <keel/keel.hpp> for the backends.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/conflict_tracker.hpp"
#include "error.hpp"
#include "fwd.hpp"
#include "key_range.hpp"
#include "stats.hpp"
#include "write_batch.hpp"

namespace keel {

template <class Policy>
class basic_transaction;

// ---------------------------------------------------------------------------
// The policy contract.
//
// A store policy P is a backend. basic_store<P> owns a std::shared_ptr<P> (the
// open backend) and forwards each call to it. P provides:
//
//   typename P::options         what open() takes (memory_options, rocks_options)
//   static constexpr keel::backend backend_kind   which kind of backend this is
//   typename P::cursor_type     one ordered pass over a consistent view of a key_range;
//                               satisfies store_cursor (below)
//   typename P::snapshot_type   a point-in-time view, copyable; provides get, contains
//                               and scan with the same signatures as P
//   static result<std::shared_ptr<P>> open(const options&)
//   result<void> put(std::string_view key, std::string_view value)
//   result<std::optional<std::string>> get(std::string_view key) const
//   result<bool> contains(std::string_view key) const
//   result<void> erase(std::string_view key)
//   result<void> write(const write_batch&)       atomic: all or nothing, seen whole
//   cursor_type scan(const key_range&) const      never fails; a failed cursor is empty
//                                                 and reports the reason in error()
//   static cursor_type failed_cursor(error)       an empty cursor reporting that error
//   result<snapshot_type> snapshot() const
//   result<void> close()                          idempotent; afterwards every call on P,
//                                                 its cursors and snapshots gives errc::closed
//   bool is_open() const noexcept
//   result<void> erase_range(const key_range&)    atomic; invalid_argument when lower > upper
//                                                 (erase_range_is_valid); write() applies a
//                                                 batch's erase_range ops in order with the rest
//   result<std::vector<std::optional<std::string>>>
//     multi_get(std::span<const std::string_view>) const
//                                                 one consistent view; results in input order
//   result<void> compact(const key_range&)        reclaim space; nothing to do is success
//   result<void> checkpoint(const std::filesystem::path&) const
//                                                 a consistent copy, taken while the store is
//                                                 in use, that opens as a store of the same
//                                                 backend; the path must not exist
//                                                 (invalid_argument), nothing is left behind
//                                                 on failure
//   result<detail::tx_start<snapshot_type>> begin_transaction() const
//                                                 a view plus the commit position it reflects
//                                                 and a registration held until the
//                                                 transaction ends (transaction.hpp)
//   result<void> commit_transaction(const detail::tx_record&)
//                                                 applies record.writes atomically iff no
//                                                 commit after record.start wrote a key of
//                                                 record.read_keys or into a range of
//                                                 record.read_ranges; else errc::conflict and
//                                                 nothing written. Backends whose writers are
//                                                 all in this process use
//                                                 detail::conflict_tracker; a cluster backend
//                                                 validates where its data lives.
//   Writes on a store opened read-only give errc::read_only (commit included).
//
// Optional, found when present: result<void> flush() (basic_store::flush())
// and a free function result<void> backend_stats(const P&, store_stats&)
// (basic_store::stats()).
//
// Every member except open() must be safe to call from many threads at once,
// close() included. Keys and values are arbitrary bytes ordered by memcmp.
//
// A cursor C provides: bool valid() const; std::string_view key() const;
// std::string_view value() const (both precondition valid(), valid until the
// next call to next()); void next(); const std::optional<error>& error() const
// (set when the pass stopped early). A new cursor is positioned on the first
// entry of its range, in the range's direction.
//
// Optional on a cursor, found when present (basic_any_store uses them to walk
// a run of entries without a dispatch per step; see run_cursor below):
//   std::size_t fill(std::span<cursor_entry> out)
//       the current entry and those after it, up to out.size(), moving the
//       cursor past them as that many next() would; returns how many (0 at the
//       end of the pass, or when it stopped: see error()). The views stay
//       valid until the next fill() or next() or the cursor's destruction.
//   const std::atomic<bool>& open_flag() const noexcept
//       false once the store is closed: whoever walks a filled run checks it
//       at each step, so the pass still stops at its next step after close().
// ---------------------------------------------------------------------------

template <class C>
concept store_cursor = std::movable<C> && requires(C& c, const C& cc) {
  { cc.valid() } -> std::same_as<bool>;
  { cc.key() } -> std::convertible_to<std::string_view>;
  { cc.value() } -> std::convertible_to<std::string_view>;
  { c.next() };
  { cc.error() } -> std::convertible_to<const std::optional<keel::error>&>;
};

// One entry a cursor hands out: views valid as its cursor's contract says.
struct cursor_entry {
  std::string_view key;
  std::string_view value;
};

// A cursor that can also hand out runs of entries (the optional members above).
template <class C>
concept run_cursor = store_cursor<C> && requires(C& c, const C& cc, std::span<cursor_entry> out) {
  { c.fill(out) } -> std::same_as<std::size_t>;
  { cc.open_flag() } noexcept -> std::same_as<const std::atomic<bool>&>;
};

template <class S, class Cursor>
concept store_snapshot = std::copyable<S> && requires(const S& s, std::string_view k, const key_range& r) {
  { s.get(k) } -> std::same_as<result<std::optional<std::string>>>;
  { s.contains(k) } -> std::same_as<result<bool>>;
  { s.scan(r) } -> std::same_as<Cursor>;
};

template <class P>
concept store_policy =
    store_cursor<typename P::cursor_type> &&
    store_snapshot<typename P::snapshot_type, typename P::cursor_type> &&
    std::same_as<std::remove_cv_t<decltype(P::backend_kind)>, backend> &&
    requires(P& p, const P& cp, const typename P::options& o, std::string_view k, const write_batch& b,
             const key_range& r, keel::error e) {
      { P::open(o) } -> std::same_as<result<std::shared_ptr<P>>>;
      { p.put(k, k) } -> std::same_as<result<void>>;
      { cp.get(k) } -> std::same_as<result<std::optional<std::string>>>;
      { cp.contains(k) } -> std::same_as<result<bool>>;
      { p.erase(k) } -> std::same_as<result<void>>;
      { p.write(b) } -> std::same_as<result<void>>;
      { cp.scan(r) } -> std::same_as<typename P::cursor_type>;
      { P::failed_cursor(e) } -> std::same_as<typename P::cursor_type>;
      { cp.snapshot() } -> std::same_as<result<typename P::snapshot_type>>;
      { p.close() } -> std::same_as<result<void>>;
      { cp.is_open() } noexcept -> std::same_as<bool>;
      { p.erase_range(r) } -> std::same_as<result<void>>;
      { cp.multi_get(std::span<const std::string_view>()) } -> std::same_as<result<std::vector<std::optional<std::string>>>>;
      { p.compact(r) } -> std::same_as<result<void>>;
      { cp.checkpoint(std::filesystem::path()) } -> std::same_as<result<void>>;
      { cp.begin_transaction() } -> std::same_as<result<detail::tx_start<typename P::snapshot_type>>>;
      { p.commit_transaction(std::declval<const detail::tx_record&>()) } -> std::same_as<result<void>>;
    };

// Which kind of backend a store is (basic_any_store::backend()).
enum class backend { rocksdb, memory, etcd, hybrid, postgres };

constexpr std::string_view to_string(backend b) noexcept {
  switch (b) {
    case backend::rocksdb: return "rocksdb";
    case backend::memory: return "memory";
    case backend::etcd: return "etcd";
    case backend::hybrid: return "hybrid";
    case backend::postgres: return "postgres";
  }
  return "unknown";
}

// The error every operation on a closed store, cursor or snapshot returns.
inline keel::error closed_error(std::string_view what = "store") {
  return keel::error(errc::closed, std::string(what) + " is closed");
}

// ---------------------------------------------------------------------------
// basic_cursor: a cursor as a range.
//
//   auto cursor = store.scan(key_range::prefix("user/"));
//   for (const auto& e : cursor) use(e.key, e.value);
//   if (cursor.error()) report(*cursor.error());
//
// An entry's views are valid until the next step. A cursor reads one
// consistent view as of its creation: later writes are not seen, a batch is
// seen whole or not at all. One cursor is used by one thread at a time;
// different cursors may be used from different threads. A cursor may outlive
// its store: after close() it stops and error() is errc::closed.
// The entries it hands out are added to its store's stats() (cursor_entries,
// bytes_read) when the pass ends or the cursor is destroyed.
// ---------------------------------------------------------------------------
template <class CursorImpl>
class basic_cursor {
  // A run_cursor is walked a run at a time (fill()): a step is then an index
  // increment and a load of the store's open flag, with no call into the
  // backend's cursor until the run is used up.
  static constexpr bool walks_runs = run_cursor<CursorImpl>;
  static constexpr std::size_t run_size = 32;

 public:
  using entry = cursor_entry;

  // `counters`: where the entries read are reported (none: not counted).
  explicit basic_cursor(CursorImpl impl, std::shared_ptr<detail::op_counters> counters = {})
      : impl_(std::move(impl)), counters_(std::move(counters)) {
    if constexpr (walks_runs) refill();
    load();
  }
  basic_cursor(basic_cursor&&) noexcept = default;
  basic_cursor& operator=(basic_cursor&& other) noexcept {
    if (this != &other) {
      report();
      impl_ = std::move(other.impl_);
      current_ = other.current_;
      run_ = other.run_;
      pos_ = other.pos_;
      count_ = other.count_;
      open_ = other.open_;
      stopped_ = std::move(other.stopped_);
      counters_ = std::move(other.counters_);
      entries_ = std::exchange(other.entries_, 0);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  ~basic_cursor() { report(); }

  class iterator {
   public:
    using value_type = entry;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    const entry& operator*() const noexcept { return cursor_->current(); }
    const entry* operator->() const noexcept { return &cursor_->current(); }
    iterator& operator++() {
      cursor_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cursor_->valid(); }

   private:
    friend class basic_cursor;
    explicit iterator(basic_cursor* c) : cursor_(c) {}
    basic_cursor* cursor_ = nullptr;
  };

  // Iteration continues from the cursor's current position: a cursor is a
  // single-pass range.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

  bool valid() const {
    if constexpr (walks_runs) return pos_ < count_;
    else return impl_.valid();
  }
  // Precondition valid().
  const entry& current() const noexcept {
    if constexpr (walks_runs) return run_[pos_];
    else return current_;
  }
  void advance() {
    if constexpr (walks_runs) {
      if (pos_ >= count_) return;
      ++pos_;
      if (!open_->load(std::memory_order_acquire)) {   // closed: this step stops, as next() would
        pos_ = count_ = 0;
        stopped_ = closed_error();
      } else if (pos_ == count_) {
        refill();
      }
    } else {
      impl_.next();
    }
    load();
  }
  // Set when the pass stopped before the end of its range (closed, I/O error).
  const std::optional<keel::error>& error() const {
    if (stopped_) return stopped_;
    return impl_.error();
  }

 private:
  void refill() {
    pos_ = count_ = 0;   // if fill() throws, the cursor is past its end
    count_ = impl_.fill(std::span<entry>(run_));
    if (count_ != 0) open_ = &impl_.open_flag();
  }
  void load() {
    if (valid()) {
      if constexpr (!walks_runs) current_ = {impl_.key(), impl_.value()};
      const entry& e = current();
      ++entries_;
      bytes_ += e.key.size() + e.value.size();
    } else {
      report();
    }
  }
  // Hands the counts so far to the store's counters (once per pass, not per step).
  void report() noexcept {
    if (counters_ && entries_ != 0) counters_->add(detail::op_counters::cursor_entries, detail::op_counters::bytes_read, entries_, bytes_);
    entries_ = bytes_ = 0;
  }
  CursorImpl impl_;
  entry current_{};                       // cursors walked step by step: the current entry
  std::array<entry, walks_runs ? run_size : 0> run_{};  // cursors walked by runs: the run
  std::size_t pos_ = 0, count_ = 0;       // the current entry in run_, and how many it holds
  const std::atomic<bool>* open_ = nullptr;
  std::optional<keel::error> stopped_;    // set when close() stopped the pass inside a run
  std::shared_ptr<detail::op_counters> counters_;
  std::uint64_t entries_ = 0, bytes_ = 0;
};

// ---------------------------------------------------------------------------
// basic_snapshot: a point-in-time view of a store. Reads through it see the
// store as it was when snapshot() was called, whatever is written later.
// Copies share one view. Thread-safe. After the store is closed every call
// gives errc::closed. A snapshot taken of a closed store is empty and all its
// calls give errc::closed.
// ---------------------------------------------------------------------------
template <class Policy>
class basic_snapshot {
 public:
  using cursor = basic_cursor<typename Policy::cursor_type>;

  // `counters`: the store's stats, where reads through the snapshot are counted.
  explicit basic_snapshot(result<typename Policy::snapshot_type> view,
                          std::shared_ptr<detail::op_counters> counters = {})
      : view_(std::move(view)), counters_(std::move(counters)) {}

  result<std::optional<std::string>> get(std::string_view key) const {
    result<std::optional<std::string>> r = view_ ? view_->get(key) : view_.error();
    if (counters_) counters_->add(detail::op_counters::gets, detail::op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(std::string_view key) const {
    if (counters_) counters_->add(detail::op_counters::contains);
    if (!view_) return view_.error();
    return view_->contains(key);
  }
  cursor scan(const key_range& range = key_range::all()) const { return cursor(scan_impl(range), counters_); }
  // The backend's own cursor, for adapters (basic_any_store).
  typename Policy::cursor_type scan_impl(const key_range& range) const {
    if (counters_) counters_->add(detail::op_counters::scans);
    if (!view_) return Policy::failed_cursor(view_.error());
    return view_->scan(range);
  }
  // Whether the snapshot was taken (false when the store was already closed).
  bool valid() const noexcept { return view_.has_value(); }
  // The store's counters, for adapters (basic_any_snapshot).
  const std::shared_ptr<detail::op_counters>& counters() const noexcept { return counters_; }

 private:
  result<typename Policy::snapshot_type> view_;
  std::shared_ptr<detail::op_counters> counters_;
};

namespace detail {
// run_transaction's pause before attempt `attempt` (>= 2): a random duration
// of up to 2^attempt microseconds, capped at 2^14 (about 16 ms). The cap is
// above a scheduler time slice (~4 ms): with more runnable threads than
// cores, a transaction descheduled between its reads and its commit loses to
// the others every time, and pauses shorter than a slice do not break that
// (seen: examples/transactions gave up after 16 attempts with a 1 ms cap on
// a loaded 2-core machine).
inline void transaction_backoff(int attempt) {
  thread_local std::uint64_t x = 0x9E3779B97F4A7C15ull ^ reinterpret_cast<std::uintptr_t>(&x);
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  const std::uint64_t cap = std::uint64_t(1) << std::min(attempt, 14);
  std::this_thread::sleep_for(std::chrono::microseconds(x % cap));
}
// Whether T is a keel::result<U> (what run_transaction's fn must return).
template <class T>
inline constexpr bool is_result_v = false;
template <class T>
inline constexpr bool is_result_v<result<T>> = true;
// run_transaction's return type: fn's, or result<void> when fn returns
// something else (the static_assert below is then the only error, not one
// more at the caller's `auto r = store.run_transaction(...)`).
template <class F, class Tx>
using transaction_fn_result_t =
    std::conditional_t<is_result_v<std::invoke_result_t<F&, Tx&>>, std::invoke_result_t<F&, Tx&>, result<void>>;

// run_transaction for every store type: begin() makes a transaction, fn
// fills it; commits, and runs again on conflict (see basic_store).
template <class Begin, class F>
auto run_transaction(Begin&& begin, F& fn, int max_attempts)
    -> transaction_fn_result_t<F, std::invoke_result_t<Begin&>> {
  using R = std::invoke_result_t<F&, std::invoke_result_t<Begin&>&>;
  // One clear error instead of several from the body below (which is then
  // not instantiated): fn decides whether the transaction commits, so it
  // must say so in its return type.
  if constexpr (!is_result_v<R>) {
    static_assert(is_result_v<R>,
                  "keel: the function given to run_transaction must return keel::result<T> "
                  "(e.g. keel::result<void>: `return {};` to commit, an error to roll back), "
                  "not void or a plain value");
    return result<void>();
  } else {
    std::optional<keel::error> last;
    for (int attempt = 0; attempt < std::max(max_attempts, 1); ++attempt) {
      if (attempt > 1) transaction_backoff(attempt);
      auto tx = begin();
      R r = fn(tx);
      if (!r) {
        // A backend validated by its server (PostgreSQL) may report a conflict
        // from a read, not only from commit: that attempt is run again too.
        if (r.error() != errc::conflict) return r;
        last = r.error();
        continue;
      }
      if (auto c = tx.commit(); !c) {
        if (c.error() != errc::conflict) return std::move(c).error();
        last = std::move(c).error();
        continue;
      }
      return r;
    }
    return keel::error(errc::conflict, "run_transaction: gave up after " + std::to_string(std::max(max_attempts, 1)) +
                                           " attempts, each in conflict with another commit (" +
                                           (last ? last->message() : std::string()) + ")");
  }
}
}  // namespace detail

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
    counters_->add(detail::op_counters::puts, detail::op_counters::bytes_written, key.size() + value.size());
    return backend_->put(key, value);
  }
  // The value of key; nullopt (not an error) when the key is absent.
  result<std::optional<std::string>> get(std::string_view key) const {
    // One named result on every path, so that it is constructed in place.
    result<std::optional<std::string>> r = backend_ ? backend_->get(key) : closed_error();
    if (backend_) counters_->add(detail::op_counters::gets, detail::op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(std::string_view key) const {
    if (!backend_) return closed_error();
    count(detail::op_counters::contains);
    return backend_->contains(key);
  }
  // Removes key; removing an absent key succeeds.
  result<void> erase(std::string_view key) {
    if (!backend_) return closed_error();
    counters_->add(detail::op_counters::erases, detail::op_counters::bytes_written, key.size());
    return backend_->erase(key);
  }
  // Applies the batch atomically: readers see all of it or none of it.
  result<void> write(const write_batch& batch) {
    if (!backend_) return closed_error();
    count(detail::op_counters::writes);
    count(detail::op_counters::batch_ops, batch.size());
    count(detail::op_counters::bytes_written, batch.payload_bytes());
    return backend_->write(batch);
  }
  // An ordered pass over range (bytewise order, or reversed).
  cursor scan(const key_range& range = key_range::all()) const { return cursor(scan_impl(range), counters_); }
  // The backend's own cursor, for adapters (basic_any_store).
  typename Policy::cursor_type scan_impl(const key_range& range) const {
    if (!backend_) return Policy::failed_cursor(closed_error());
    count(detail::op_counters::scans);
    return backend_->scan(range);
  }
  // Erases every key in range (its direction is ignored), atomically.
  // invalid_argument when the lower bound is above the upper bound.
  result<void> erase_range(const key_range& range) {
    if (!backend_) return closed_error();
    count(detail::op_counters::writes);
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
      counters_->add(detail::op_counters::gets, detail::op_counters::bytes_read, views.size(), bytes);
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
    count(detail::op_counters::tx_begun);
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

  // A point-in-time view; cheap on every backend.
  snapshot_type snapshot() const {
    if (!backend_) return snapshot_type(closed_error());
    count(detail::op_counters::snapshots);
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

  // The backend, for backend-specific calls (e.g. RocksPolicy::db()).
  Policy& policy() noexcept { return *backend_; }
  // The operation counters behind stats(), for adapters (basic_any_store).
  const std::shared_ptr<detail::op_counters>& counters() const noexcept { return counters_; }
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
  void count(detail::op_counters::field f, std::uint64_t n = 1) const noexcept { counters_->add(f, n); }

  std::shared_ptr<Policy> backend_;
  // Shared with the store's cursors and snapshots, which count into it.
  std::shared_ptr<detail::op_counters> counters_ = std::make_shared<detail::op_counters>();
};

}  // namespace keel

#include "transaction.hpp"
