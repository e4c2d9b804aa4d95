// keel: basic_transaction<Policy>, optimistic serializable transactions over
// any backend. Needs no backend headers; basic_store::transaction() makes one.
//
//   auto tx = store.transaction();
//   auto balance = tx.get("alice");            // read from the view, recorded
//   tx.put("alice", "90"); tx.put("bob", "110");
//   if (auto r = tx.commit(); !r && r.error() == keel::errc::conflict) { /* run it again */ }
//
// Semantics (the same on every backend):
// - A transaction reads one consistent view of the store, taken when it
//   began, merged with its own buffered writes (read your writes; an erase or
//   erase_range hides keys). Nobody else sees its writes before commit().
// - commit() applies every buffered write atomically, or nothing. It fails
//   with errc::conflict, writing nothing, when another commit since the
//   transaction began wrote a key it read (get, contains) or wrote into a
//   range it scanned (as far as the scan went). Writes count whether they
//   changed anything or not (a put of the same value, an erase of an absent
//   key): that is conservative, never wrong.
// - Isolation is serializable: committed transactions behave as if each ran
//   alone, at its commit, in commit order. Lost updates, write skew and
//   phantoms are conflicts. Blind writes (keys written but not read) never
//   conflict: the last commit wins, as in the serial order.
// - A transaction that wrote nothing commits successfully without validation
//   (it read one consistent view, which is a state of the serial order).
// - rollback() and the destructor drop the buffer.
// - Keyspaces (backends with keyspace_policy): the same calls with a
//   keyspace handle first read and write that keyspace; one transaction may
//   span several, atomically, with conflicts per (keyspace, key) and per
//   scanned range of a keyspace (the "keyspaces" part of the class below).
//
// Thread safety: a transaction, and the cursors it hands out, are used by one
// thread at a time; different transactions may be used from different
// threads. A transaction may outlive its store: after close() its reads and
// commit() give errc::closed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "contract.hpp"
#include "cursor.hpp"
#include "detail/conflict_tracker.hpp"  // ranges_overlap
#include "keyspace.hpp"
#include "stats.hpp"

namespace keel {

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


// A transaction's private state in one keyspace.
struct tx_keyspace_state {
  std::map<std::string, std::optional<std::string>, std::less<>> writes;  // nullopt: erased
  std::vector<key_range> erased;                                          // erase_range calls, forward
  std::set<std::string, std::less<>> read_keys;
  std::vector<key_range> read_ranges;
  std::map<std::string, std::chrono::milliseconds, std::less<>> ttls;  // keys of `writes` put with a ttl

  bool erased_by_range(std::string_view key) const {
    for (const auto& r : erased) {
      if (r.contains(key)) return true;
    }
    return false;
  }
  bool wrote() const noexcept { return !writes.empty() || !erased.empty(); }
};

// A transaction's private state, shared with the cursors it hands out (they
// report how far they scanned): the default keyspace's (the base), and that
// of each other keyspace it used, by name (std::map: an entry's address is
// stable, the cursors point to it).
struct tx_state : tx_keyspace_state {
  std::map<std::string, tx_keyspace_state, std::less<>> keyspaces;
  bool active = true;
};

// The key just above `key` in bytewise order: key + '\0'.
inline std::string key_successor(std::string_view key) {
  std::string s(key);
  s.push_back('\0');
  return s;
}

// A cursor over a transaction's view merged with its buffered writes.
// Satisfies store_cursor. Reads the buffer as it was when the scan began.
template <class Base>
class tx_cursor {
 public:
  // `part`: the state of the keyspace scanned (tx itself for the default
  // keyspace, else one of tx->keyspaces); null with tx.
  tx_cursor(Base base, const key_range& range, std::shared_ptr<tx_state> tx, std::size_t read_index,
            tx_keyspace_state* part = nullptr)
      : base_(std::move(base)), tx_(std::move(tx)), part_(part ? part : tx_.get()), read_index_(read_index),
        reversed_(range.is_reversed()) {
    if (tx_ && !range.is_empty()) {
      auto first = range.lower() ? part_->writes.lower_bound(*range.lower()) : part_->writes.begin();
      auto last = range.upper() ? part_->writes.lower_bound(*range.upper()) : part_->writes.end();
      overlay_.assign(first, last);
      if (reversed_) std::reverse(overlay_.begin(), overlay_.end());
      for (const auto& r : part_->erased) {
        if (ranges_overlap(r, range)) erased_.push_back(r);
      }
    }
    settle();
  }
  tx_cursor(tx_cursor&&) noexcept = default;
  tx_cursor& operator=(tx_cursor&& other) noexcept {
    if (this != &other) {
      finish();
      base_ = std::move(other.base_);
      overlay_ = std::move(other.overlay_);
      erased_ = std::move(other.erased_);
      pos_ = other.pos_;
      from_overlay_ = other.from_overlay_;
      valid_ = other.valid_;
      tx_ = std::move(other.tx_);
      part_ = other.part_;
      read_index_ = other.read_index_;
      reversed_ = other.reversed_;
    }
    return *this;
  }
  ~tx_cursor() { finish(); }

  bool valid() const noexcept { return valid_; }
  std::string_view key() const { return from_overlay_ ? std::string_view(overlay_[pos_].first) : base_.key(); }
  std::string_view value() const { return from_overlay_ ? std::string_view(*overlay_[pos_].second) : base_.value(); }
  const std::optional<keel::error>& error() const { return base_.error(); }

  void next() {
    if (!valid_) return;
    if (from_overlay_)
      ++pos_;
    else
      base_.next();
    settle();
  }

 private:
  bool before(std::string_view a, std::string_view b) const { return reversed_ ? a > b : a < b; }
  bool hidden(std::string_view key) const {
    for (const auto& r : erased_) {
      if (r.contains(key)) return true;
    }
    auto it = std::lower_bound(overlay_.begin(), overlay_.end(), key, [&](const auto& e, std::string_view k) {
      return before(e.first, k);
    });
    return it != overlay_.end() && it->first == key;
  }
  // Positions on the next visible entry of either source.
  void settle() {
    if (!erased_.empty() || !overlay_.empty()) {
      while (base_.valid() && hidden(base_.key())) base_.next();
    }
    while (pos_ < overlay_.size() && !overlay_[pos_].second) ++pos_;
    const bool have_overlay = pos_ < overlay_.size();
    if (base_.error()) {  // the pass stopped early: stop here too
      valid_ = false;
      return;
    }
    if (!base_.valid()) {
      from_overlay_ = have_overlay;
    } else {
      from_overlay_ = have_overlay && before(overlay_[pos_].first, base_.key());
    }
    valid_ = from_overlay_ || base_.valid();
    if (!valid_) finish();
  }
  // Narrows the range recorded for validation to what this pass exposed: up
  // to the current entry if it stopped early, the whole range if it ended.
  void finish() noexcept {
    if (!tx_) return;
    if (tx_->active && read_index_ < part_->read_ranges.size() && valid_) {
      key_range& r = part_->read_ranges[read_index_];
      const std::string last(key());
      if (!reversed_) {
        r = r.lower() ? key_range::between(*r.lower(), key_successor(last)) : key_range::until(key_successor(last));
      } else {
        r = r.upper() ? key_range::between(last, *r.upper()) : key_range::from(last);
      }
    }
    tx_.reset();
  }

  Base base_;
  std::vector<std::pair<std::string, std::optional<std::string>>> overlay_;  // buffered writes in range, in order
  std::vector<key_range> erased_;
  std::size_t pos_ = 0;
  bool from_overlay_ = false;
  bool valid_ = false;
  std::shared_ptr<tx_state> tx_;  // null once the pass ended (or for a failed cursor)
  tx_keyspace_state* part_ = nullptr;  // in *tx_: the scanned keyspace's state
  std::size_t read_index_ = 0;
  bool reversed_ = false;
};

}  // namespace detail

// ---------------------------------------------------------------------------
// basic_transaction: see the top of this file. Made by basic_store::transaction().
// Move-only.
// ---------------------------------------------------------------------------
template <class Policy>
class basic_transaction {
  using view_type = typename Policy::snapshot_type;

 public:
  using cursor = basic_cursor<detail::tx_cursor<typename Policy::cursor_type>>;

  basic_transaction(basic_transaction&&) noexcept = default;
  basic_transaction& operator=(basic_transaction&& other) noexcept {
    if (this != &other) {
      rollback();
      backend_ = std::move(other.backend_);
      counters_ = std::move(other.counters_);
      begun_ = std::move(other.begun_);
      begin_error_ = std::move(other.begin_error_);
      state_ = std::move(other.state_);
    }
    return *this;
  }
  basic_transaction(const basic_transaction&) = delete;
  basic_transaction& operator=(const basic_transaction&) = delete;
  ~basic_transaction() { rollback(); }

  // The value of key in the view merged with this transaction's writes.
  // A key not written by this transaction is recorded for validation.
  result<std::optional<std::string>> get(std::string_view key) {
    if (auto bad = unusable()) return *bad;
    return read_in(*state_, key, [&] { return begun_->view.get(key); });
  }
  result<bool> contains(std::string_view key) {
    if (auto bad = unusable()) return *bad;
    return read_in(*state_, key, [&] { return begun_->view.contains(key); });
  }
  // An ordered pass over range: the view merged with this transaction's
  // writes as they are now (later writes are not seen by this cursor). The
  // part of the range the pass covered is recorded for validation.
  cursor scan(const key_range& range = key_range::all()) { return cursor(scan_impl(range), counters_); }
  // The cursor itself, for adapters (basic_any_transaction).
  detail::tx_cursor<typename Policy::cursor_type> scan_impl(const key_range& range) {
    using tx_cursor = detail::tx_cursor<typename Policy::cursor_type>;
    if (auto bad = unusable()) return tx_cursor(Policy::failed_cursor(*bad), range, nullptr, 0);
    if (counters_) counters_->add(op_counters::scans);
    const std::size_t index = state_->read_ranges.size();
    state_->read_ranges.push_back(range.forward());
    return tx_cursor(begun_->view.scan(range), range, state_, index);
  }
  // The store's counters, for adapters.
  const std::shared_ptr<op_counters>& counters() const noexcept { return counters_; }

  // Buffered until commit().
  result<void> put(std::string_view key, std::string_view value) {
    if (auto bad = unusable()) return *bad;
    put_in(*state_, key, value, std::nullopt);
    return {};
  }
  // With options (expiry.hpp): put_options::ttl makes the key expire that
  // long after the commit (the store's clock at commit; this transaction's
  // own reads see the key until then). A ttl of zero or less is
  // errc::invalid_argument at once, nothing buffered.
  result<void> put(std::string_view key, std::string_view value, const put_options& options)
    requires expiry_policy<Policy>
  {
    if (auto bad = unusable()) return *bad;
    if (options.ttl)
      if (auto bad = ttl_error(*options.ttl)) return *bad;
    put_in(*state_, key, value, options.ttl);
    return {};
  }
  result<void> erase(std::string_view key) {
    if (auto bad = unusable()) return *bad;
    state_->writes.insert_or_assign(std::string(key), std::nullopt);
    forget_ttl(*state_, key);
    return {};
  }
  // Erases every key of range present at commit (and hides them from this
  // transaction's reads now). invalid_argument for a range whose lower bound
  // is above its upper bound.
  result<void> erase_range(const key_range& range) {
    if (auto bad = unusable()) return *bad;
    return erase_range_in(*state_, range);
  }

  // ---- keyspaces ----------------------------------------------------------
  // The same operations in keyspace `ks`, a handle of this transaction's
  // store (basic_store::keyspace()): reads come from the transaction's view
  // (one view of every keyspace) merged with its own writes to `ks`;
  // conflicts are per (keyspace, key) and per scanned range of a keyspace;
  // commit() applies the writes of every keyspace atomically. The first use
  // of a keyspace checks `ks` against the view: errc::not_found when it was
  // dropped before (or, on memory, created after) the transaction began (on
  // RocksDB a read of a keyspace dropped since: errc::snapshot_expired, as
  // for a snapshot). A keyspace the transaction read or wrote that is dropped
  // before commit() makes commit() fail with errc::not_found, writing
  // nothing: running it again cannot help, its handle is stale (a function
  // given to run_transaction gets that error back; it may open the keyspace
  // again and retry itself).
  result<std::optional<std::string>> get(const basic_keyspace<Policy>& ks, std::string_view key)
    requires keyspace_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    return read_in(**part, key, [&] { return begun_->view.get(ks.handle(), key); });
  }
  result<bool> contains(const basic_keyspace<Policy>& ks, std::string_view key)
    requires keyspace_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    return read_in(**part, key, [&] { return begun_->view.contains(ks.handle(), key); });
  }
  cursor scan(const basic_keyspace<Policy>& ks, const key_range& range = key_range::all())
    requires keyspace_policy<Policy>
  {
    return cursor(scan_impl(ks, range), counters_);
  }
  detail::tx_cursor<typename Policy::cursor_type> scan_impl(const basic_keyspace<Policy>& ks, const key_range& range)
    requires keyspace_policy<Policy>
  {
    using tx_cursor = detail::tx_cursor<typename Policy::cursor_type>;
    auto part = keyspace_part(ks);
    if (!part) return tx_cursor(Policy::failed_cursor(std::move(part).error()), range, nullptr, 0);
    if (counters_) counters_->add(op_counters::scans);
    const std::size_t index = (*part)->read_ranges.size();
    (*part)->read_ranges.push_back(range.forward());
    return tx_cursor(begun_->view.scan(ks.handle(), range), range, state_, index, *part);
  }
  result<void> put(const basic_keyspace<Policy>& ks, std::string_view key, std::string_view value)
    requires keyspace_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    put_in(**part, key, value, std::nullopt);
    return {};
  }
  result<void> put(const basic_keyspace<Policy>& ks, std::string_view key, std::string_view value,
                   const put_options& options)
    requires keyspace_policy<Policy> && expiry_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    if (options.ttl)
      if (auto bad = ttl_error(*options.ttl)) return *bad;
    put_in(**part, key, value, options.ttl);
    return {};
  }
  result<void> erase(const basic_keyspace<Policy>& ks, std::string_view key)
    requires keyspace_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    (*part)->writes.insert_or_assign(std::string(key), std::nullopt);
    forget_ttl(**part, key);
    return {};
  }
  result<void> erase_range(const basic_keyspace<Policy>& ks, const key_range& range)
    requires keyspace_policy<Policy>
  {
    auto part = keyspace_part(ks);
    if (!part) return std::move(part).error();
    return erase_range_in(**part, range);
  }

  // Applies every buffered write atomically, or nothing: errc::conflict
  // (run the transaction again), errc::closed (the store was closed),
  // errc::read_only (the store was opened read-only), errc::not_found (a
  // keyspace it used was dropped), or the backend's error.
  // The transaction is finished afterwards, whatever it returns.
  result<void> commit() {
    if (auto bad = unusable()) return *bad;
    state_->active = false;
    if (!backend_->is_open()) return finish_with(closed_error());
    bool wrote = state_->wrote();
    for (const auto& [name, part] : state_->keyspaces) wrote = wrote || part.wrote();
    if (!wrote) {  // read only: nothing to validate
      counters_->add(op_counters::tx_committed);
      return finish_with({});
    }
    tx_record record;
    record.start = begun_->start;
    if constexpr (requires(const view_type& v) { { v.view_time() } -> std::same_as<deadline_ms>; })
      record.view_time = begun_->view.view_time();
    record.read_keys.assign(std::make_move_iterator(state_->read_keys.begin()),
                            std::make_move_iterator(state_->read_keys.end()));
    record.read_ranges = std::move(state_->read_ranges);
    for (const auto& r : state_->erased) record.writes.erase_range(r);
    for (const auto& [k, v] : state_->writes) {
      if (!v)
        record.writes.erase(k);
      else if (auto ttl = state_->ttls.find(k); ttl != state_->ttls.end())
        record.writes.put(k, *v, put_options{ttl->second});
      else
        record.writes.put(k, *v);
    }
    for (auto& [name, part] : state_->keyspaces) {  // by name: keyspace_reads comes out sorted
      if (!part.read_keys.empty() || !part.read_ranges.empty()) {
        tx_keyspace_reads& reads = record.keyspace_reads.emplace_back();
        reads.keyspace = name;
        reads.read_keys.assign(std::make_move_iterator(part.read_keys.begin()),
                               std::make_move_iterator(part.read_keys.end()));
        reads.read_ranges = std::move(part.read_ranges);
      }
      add_writes(record.writes, part, name);
    }
    result<void> r = backend_->commit_transaction(record);
    if (r)
      counters_->add(op_counters::tx_committed);
    else if (r.error() == errc::conflict)
      counters_->add(op_counters::tx_conflicts);
    return finish_with(std::move(r));
  }

  // Drops the buffered writes; the transaction is finished. Does nothing on
  // a finished transaction.
  void rollback() noexcept {
    if (state_ && state_->active) {
      state_->active = false;
      if (counters_) counters_->add(op_counters::tx_rolled_back);
    }
    (void)finish_with({});
  }

  // True until commit() or rollback().
  bool is_active() const noexcept { return state_ && state_->active && begun_.has_value(); }
  // Writes buffered (keys put or erased, ranges erased), in every keyspace.
  std::size_t pending_writes() const noexcept {
    if (!state_) return 0;
    std::size_t n = state_->writes.size() + state_->erased.size();
    for (const auto& [name, part] : state_->keyspaces) n += part.writes.size() + part.erased.size();
    return n;
  }

 private:
  friend class basic_store<Policy>;
  basic_transaction(std::shared_ptr<Policy> backend, std::shared_ptr<op_counters> counters,
                    result<tx_start<view_type>> begun)
      : backend_(std::move(backend)), counters_(std::move(counters)), state_(std::make_shared<detail::tx_state>()) {
    if (begun)
      begun_.emplace(std::move(*begun));
    else
      begin_error_ = std::move(begun).error();
  }

  static keel::error bad_range() {
    return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
  }
  std::optional<keel::error> unusable() const {
    if (!begun_) return begin_error_ ? *begin_error_ : closed_error("transaction");
    if (!state_ || !state_->active) return keel::error(errc::closed, "transaction is already committed or rolled back");
    if (!backend_->is_open()) return closed_error();
    return std::nullopt;
  }
  // A read of `key` in keyspace state `part`: its own writes first, else
  // fetch() from the view, the key then recorded for validation.
  template <class Fetch>
  static auto read_in(detail::tx_keyspace_state& part, std::string_view key, Fetch fetch) -> decltype(fetch()) {
    using value = typename decltype(fetch())::value_type;
    if (auto it = part.writes.find(key); it != part.writes.end()) {
      if constexpr (std::is_same_v<value, bool>)
        return it->second.has_value();
      else
        return it->second;
    }
    if (part.erased_by_range(key)) return value();
    auto r = fetch();
    if (r) part.read_keys.emplace(key);
    return r;
  }
  static void put_in(detail::tx_keyspace_state& part, std::string_view key, std::string_view value,
                     std::optional<std::chrono::milliseconds> ttl) {
    part.writes.insert_or_assign(std::string(key), std::optional<std::string>(value));
    if (ttl)
      part.ttls.insert_or_assign(std::string(key), *ttl);
    else
      forget_ttl(part, key);
  }
  static void forget_ttl(detail::tx_keyspace_state& part, std::string_view key) {
    if (part.ttls.empty()) return;
    if (auto it = part.ttls.find(key); it != part.ttls.end()) part.ttls.erase(it);
  }
  static result<void> erase_range_in(detail::tx_keyspace_state& part, const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    if (range.is_empty()) return {};
    auto first = range.lower() ? part.writes.lower_bound(*range.lower()) : part.writes.begin();
    auto last = range.upper() ? part.writes.lower_bound(*range.upper()) : part.writes.end();
    part.writes.erase(first, last);
    part.erased.push_back(range.forward());
    return {};
  }
  // Appends the writes of `part` (keyspace `name`, not "") to `out`: erased
  // ranges first, then the keys (the buffer already dropped keys erased
  // after). The default keyspace's: commit() itself.
  static void add_writes(write_batch& out, const detail::tx_keyspace_state& part, std::string_view name) {
    const keyspace_name ks(name);
    for (const auto& r : part.erased) out.erase_range(ks, r);
    for (const auto& [k, v] : part.writes) {
      if (!v)
        out.erase(ks, k);
      else if (auto ttl = part.ttls.find(k); ttl != part.ttls.end())
        out.put(ks, k, *v, put_options{ttl->second});
      else
        out.put(ks, k, *v);
    }
  }
  // The state of keyspace `ks` in this transaction (the default keyspace's
  // is *state_), made at its first use after checking `ks` against the view.
  result<detail::tx_keyspace_state*> keyspace_part(const basic_keyspace<Policy>& ks)
    requires keyspace_policy<Policy>
  {
    if (auto bad = unusable()) return *bad;
    if (ks.name().empty()) return static_cast<detail::tx_keyspace_state*>(state_.get());
    if (auto it = state_->keyspaces.find(ks.name()); it != state_->keyspaces.end()) return &it->second;
    if (auto known = begun_->view.contains(ks.handle(), std::string_view()); !known) {
      // A view that cannot read a dropped keyspace says snapshot_expired
      // (RocksDB); for a transaction the handle is stale either way.
      if (known.error() != errc::snapshot_expired) return std::move(known).error();
      return keel::error(errc::not_found, "transaction: the keyspace handle is stale (" + known.error().message() + ")");
    }
    return &state_->keyspaces.try_emplace(ks.name()).first->second;
  }
  result<void> finish_with(result<void> r) noexcept {
    if (state_) {
      state_->active = false;
      state_->writes.clear();
      state_->erased.clear();
      for (auto& [name, part] : state_->keyspaces) {  // cursors may still point to a part: keep the nodes
        part.writes.clear();
        part.erased.clear();
      }
    }
    if (begun_) begun_->registration.reset();  // ends it in the backend's conflict history
    return r;
  }

  std::shared_ptr<Policy> backend_;
  std::shared_ptr<op_counters> counters_;
  std::optional<tx_start<view_type>> begun_;  // empty when it could not begin
  std::optional<keel::error> begin_error_;
  std::shared_ptr<detail::tx_state> state_;
};

}  // namespace keel
