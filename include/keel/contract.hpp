// keel: the policy contract, what a backend must provide to be a store:
// written once in prose and once as concepts (store_policy, store_cursor,
// store_snapshot, run_cursor), with the types a policy takes and returns
// (tx_start, tx_record, cursor_entry, backend). Public names only: a backend
// author needs nothing from detail/. Needs no backend headers.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "error.hpp"
#include "expiry.hpp"
#include "fwd.hpp"
#include "key_range.hpp"
#include "watch.hpp"
#include "write_batch.hpp"

namespace keel {

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

// What a transaction read from one keyspace other than the default one
// (tx_record::keyspace_reads).
struct tx_keyspace_reads {
  std::string keyspace;                 // its name (never "")
  std::vector<std::string> read_keys;   // keys read from the view (sorted, unique)
  std::vector<key_range> read_ranges;   // ranges scanned from the view (forward direction)
};

// What a transaction hands its backend at commit. read_keys and read_ranges
// are the default keyspace's; keyspace_reads holds the other keyspaces the
// transaction read (sorted by name, each once; empty when it read only "").
// The writes name their keyspace in each op (write_batch::op::keyspace). A
// backend without keyspaces never sees either filled in (basic_store has no
// keyspace overloads for it).
struct tx_record {
  std::uint64_t start = 0;              // the commit position its view reflects
  std::vector<std::string> read_keys;   // keys read from the view (sorted, unique)
  std::vector<key_range> read_ranges;   // ranges scanned from the view (forward direction)
  std::vector<tx_keyspace_reads> keyspace_reads;
  write_batch writes;                   // the buffered writes, in the order to apply them
  // Expiry backends (expiry_policy) whose view has view_time(): the time
  // (ms since the epoch, by the store's clock) its reads left expired keys
  // out at; a key read live then and expired by the commit is a conflict.
  // nullopt for other backends.
  std::optional<deadline_ms> view_time;
};

// What a backend's begin_transaction() gives: a view, the position it
// reflects, and a registration that keeps the backend's conflict history
// (or, for etcd, the revision) alive until the transaction ends.
template <class Snapshot>
struct tx_start {
  Snapshot view;
  std::uint64_t start = 0;
  std::shared_ptr<void> registration;
};

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
//   result<tx_start<snapshot_type>> begin_transaction() const
//                                                 a view plus the commit position it reflects
//                                                 and a registration held until the
//                                                 transaction ends (transaction.hpp)
//   result<void> commit_transaction(const tx_record&)
//                                                 applies record.writes atomically iff no
//                                                 commit after record.start wrote a key of
//                                                 record.read_keys or into a range of
//                                                 record.read_ranges; else errc::conflict and
//                                                 nothing written. Backends whose writers are
//                                                 all in this process use the
//                                                 in-process tracker (conflict_tracker); a
//                                                 cluster backend
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
      { cp.begin_transaction() } -> std::same_as<result<tx_start<typename P::snapshot_type>>>;
      { p.commit_transaction(std::declval<const tx_record&>()) } -> std::same_as<result<void>>;
    };

// ---------------------------------------------------------------------------
// Keyspaces (issue 27): named, separately ordered key sets of one store. A
// backend has them when it provides (keyspace_policy below; optional while
// the backends gain them, then part of store_policy):
//
//   typename P::keyspace_type   a cheap, copyable handle to one keyspace;
//                               every call through it after the keyspace was
//                               dropped gives errc::not_found, after close
//                               errc::closed
//   result<keyspace_type> open_keyspace(std::string_view name, bool create) const
//                               the keyspace `name` ("" is the default one);
//                               missing: created when `create` (one atomic
//                               step), else errc::not_found; a read-only
//                               store never creates (not_found)
//   result<std::vector<std::string>> keyspaces() const   every name, sorted, "" included
//   result<void> drop_keyspace(std::string_view name)     atomic; "" is
//                               invalid_argument, a missing name not_found
//   the keyed operations again with a leading const keyspace_type&: put, get,
//   contains, erase, erase_range, multi_get, scan, compact
//   write(batch) applies the ops of every keyspace the batch names
//   (write_batch::op::keyspace) atomically; a name that does not exist is
//   errc::not_found and nothing is written
//   snapshot_type: get, contains and scan with a leading keyspace_type too
//                               (one snapshot covers every keyspace)
//   commit_transaction: tx_record's reads and writes carry their keyspace.
// A backend without keyspaces refuses a batch that names one
// (basic_store::write: errc::not_supported), never writing it elsewhere.
// ---------------------------------------------------------------------------

// Why `name` cannot name a keyspace (nullopt when it can): 0-255 bytes of
// any value, "" being the default keyspace.
inline std::optional<keel::error> keyspace_name_error(std::string_view name) {
  if (name.size() > 255) {
    return keel::error(errc::invalid_argument,
                       "a keyspace name is at most 255 bytes; this one has " + std::to_string(name.size()));
  }
  return std::nullopt;
}

template <class P>
concept keyspace_policy =
    store_policy<P> && std::copyable<typename P::keyspace_type> &&
    requires(P& p, const P& cp, const typename P::keyspace_type& ks, std::string_view k, const key_range& r,
             const typename P::snapshot_type& snap) {
      { cp.open_keyspace(k, true) } -> std::same_as<result<typename P::keyspace_type>>;
      { cp.keyspaces() } -> std::same_as<result<std::vector<std::string>>>;
      { p.drop_keyspace(k) } -> std::same_as<result<void>>;
      { p.put(ks, k, k) } -> std::same_as<result<void>>;
      { cp.get(ks, k) } -> std::same_as<result<std::optional<std::string>>>;
      { cp.contains(ks, k) } -> std::same_as<result<bool>>;
      { p.erase(ks, k) } -> std::same_as<result<void>>;
      { p.erase_range(ks, r) } -> std::same_as<result<void>>;
      { cp.multi_get(ks, std::span<const std::string_view>()) } -> std::same_as<result<std::vector<std::optional<std::string>>>>;
      { cp.scan(ks, r) } -> std::same_as<typename P::cursor_type>;
      { p.compact(ks, r) } -> std::same_as<result<void>>;
      { snap.get(ks, k) } -> std::same_as<result<std::optional<std::string>>>;
      { snap.contains(ks, k) } -> std::same_as<result<bool>>;
      { snap.scan(ks, r) } -> std::same_as<typename P::cursor_type>;
    };

// ---------------------------------------------------------------------------
// Watch (issue 28; watch.hpp has the semantics): every committed change in
// commit order. A backend has it when it provides (watch_policy below):
//
//   typename P::watch_type      one subscription, movable (store_watch):
//     result<std::optional<change>> next(std::chrono::milliseconds timeout)
//                               the next change, or nullopt when none came
//                               within about `timeout`; errc::closed after
//                               close; errc::snapshot_expired (sticky, naming
//                               the oldest seq still kept) when what it needs
//                               next is no longer kept; errc::not_found once
//                               its keyspace was dropped
//   result<watch_type> watch(const key_range&, const watch_options&) const
//                               a watch of the default keyspace; options
//                               checked by watch_options_error(), and `after`
//                               greater than last_seq() is invalid_argument
//   std::uint64_t last_seq() const noexcept
//                               the seq of the latest commit this store has
//                               seen (0 before any); only grows
//   with keyspaces (keyspace_policy) also
//   result<watch_type> watch(const keyspace_type&, const key_range&, const watch_options&) const
// Writers never wait for a watch: a commit appends its changes to the
// backend's history and wakes the watches; each watch copies what it needs.
// ---------------------------------------------------------------------------

template <class W>
concept store_watch = std::movable<W> && requires(W& w, std::chrono::milliseconds t) {
  { w.next(t) } -> std::same_as<result<std::optional<change>>>;
};

template <class P>
concept watch_policy =
    store_policy<P> && store_watch<typename P::watch_type> &&
    requires(const P& cp, const key_range& r, const watch_options& o) {
      { cp.watch(r, o) } -> std::same_as<result<typename P::watch_type>>;
      { cp.last_seq() } noexcept -> std::same_as<std::uint64_t>;
    } &&
    (!keyspace_policy<P> ||
     requires(const P& cp, const typename P::keyspace_type& ks, const key_range& r, const watch_options& o) {
       { cp.watch(ks, r, o) } -> std::same_as<result<typename P::watch_type>>;
     });

// ---------------------------------------------------------------------------
// Expiry (issue 29; expiry.hpp has the semantics): keys with a time to live.
// A backend has it when it provides (expiry_policy below):
//
//   result<void> put(std::string_view key, std::string_view value, const put_options&)
//                               put_options::ttl set: the key expires at the
//                               store's clock + ttl (deadline_after());
//                               unset: a plain put (permanent)
//   result<key_expiry> expiry(std::string_view key) const
//                               whether the key is present now, and its
//                               deadline if it has one (keel ttl KEY)
//   with keyspaces (keyspace_policy) also
//   result<void> put(const keyspace_type&, std::string_view, std::string_view, const put_options&)
//   result<key_expiry> expiry(const keyspace_type&, std::string_view key) const
//   write(batch) honours each put's write_batch::op::ttl (0: permanent; less
//   than 0: the batch is invalid_argument and nothing is written), and
//   commit_transaction() does the same for the record's writes.
//   Optional: snapshot_type::view_time() -> deadline_ms, the time its reads
//   leave expired keys out at; basic_transaction hands it to
//   commit_transaction() as tx_record::view_time, so that a key read live
//   and expired by the commit is a conflict (memory does this).
//   Optional, for export and copy (dump.hpp): cursor_type::holds_deadlines()
//   -> bool, false when no entry the cursor hands out can have a deadline
//   (its keyspace never held one: export keeps the format of before expiry),
//   and cursor_type::deadline() -> optional<deadline_ms>, the current entry's
//   deadline (a cursor walked by next()). Without them an export or copy
//   asks expiry(key) of the store for every key (a call per key) and
//   always writes a version-3 dump.
// Every read leaves out a key whose deadline has passed. A backend without
// expiry refuses a batch with a ttl (basic_store::write: errc::not_supported)
// rather than write the keys permanent.
// ---------------------------------------------------------------------------

template <class C>
concept deadline_cursor = requires(const C& c) {
  { c.holds_deadlines() } -> std::same_as<bool>;
  { c.deadline() } -> std::same_as<std::optional<deadline_ms>>;
};

template <class P>
concept expiry_policy =
    store_policy<P> &&
    requires(P& p, const P& cp, std::string_view k, const put_options& o) {
      { p.put(k, k, o) } -> std::same_as<result<void>>;
      { cp.expiry(k) } -> std::same_as<result<key_expiry>>;
    } &&
    (!keyspace_policy<P> ||
     requires(P& p, const P& cp, const typename P::keyspace_type& ks, std::string_view k, const put_options& o) {
       { p.put(ks, k, k, o) } -> std::same_as<result<void>>;
       { cp.expiry(ks, k) } -> std::same_as<result<key_expiry>>;
     });

}  // namespace keel
