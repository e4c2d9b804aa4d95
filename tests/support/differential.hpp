// tests/support/differential.hpp - differential testing of keel's backends.
//
// One harness, two drivers: tests/differential_test.cpp feeds it from a
// seeded PRNG (deterministic, runs in CI), fuzz/differential_fuzz.cpp feeds it
// the bytes libFuzzer hands over. The harness applies one sequence of
// operations to a memory_store, a RocksDB store and a std::map model, and
// compares every observable result. It does not depend on doctest: a mismatch
// is returned as a text that names the operation and the recent history.
//
// Operations: put, erase, write_batch (puts, erases and erase_ranges),
// store.erase_range, get/contains, multi_get, scans of every kind (forward,
// reversed, bounded, prefix, empty), snapshots and reads through them, a
// cursor held across writes, compact, close + reopen; and transactions: up to
// config::max_live_transactions open at once, each a memory transaction and a
// RocksDB transaction driven in lockstep, with get, contains, scans (forward,
// reversed, bounded; run to the end, stopped after a few entries, or held open
// across writes), put, erase, erase_range, commit, rollback and the
// destructor, interleaved with each other and with the plain writes above.
//
// What is checked, besides "both backends return what the model says":
// - A transaction reads its view (the model when it began) merged with its
//   own writes; a cursor sees the writes made before it was opened.
// - Commit outcomes are predicted from a model of the documented semantics
//   (transaction.hpp): a transaction that wrote something conflicts iff a
//   commit after it began (a plain write, a batch, an erase_range, another
//   transaction) wrote a key it read from its view or into a part of a range
//   its scans passed over (the whole range when the scan ended, up to the
//   entry it stopped at otherwise). Every write counts, whether it changed
//   anything or not (conservative, as documented); a transaction that wrote
//   nothing always commits. Both backends must give the predicted outcome: a
//   conflict nobody caused is reported as unjustified, a commit that should
//   have conflicted as a missed conflict.
// - Serializability, checked independently of that prediction: when a
//   transaction that wrote commits, its operations are replayed alone on the
//   model as it is just before the commit (the serial run in commit order);
//   every read must return what it returned in the interleaved run, and the
//   store must then equal the model.
// - stats() counts the transactions begun, committed, conflicted and rolled
//   back; a close makes live transactions report errc::closed (reads and
//   commit) and write nothing.
//
// Keyspaces (issue 27; config::keyspace_per_mille of the operations): a few
// names besides "" (keyspace_names(): NUL and 0xFF bytes, one a prefix of
// another), each with its own std::map model: keyspace() (new or existing),
// drop_keyspace (existing, missing: not_found, "": invalid_argument), put,
// erase, erase_range, get/contains, multi_get, scans and compact through the
// handles, batches across "" and several keyspaces (one naming a missing
// keyspace: not_found, nothing written anywhere), reads through snapshots
// taken before a keyspace was created or dropped (memory reads on after a
// drop, RocksDB gives snapshot_expired, as docs/keyspaces.md says), calls
// through handles of dropped keyspaces (not_found), cursors opened before a
// drop (read on), keyspaces() after each create and drop, and every keyspace
// compared in full at the end and after each reopen. Transactions read and
// write "" only, so the conflict model counts the "" part of a batch.
//
// Expiry (issue 29; config::ttl_per_mille of the operations; docs/expiry.md):
// both stores read one fake clock (tests/support/fake_clock.hpp) that only
// the harness moves. Operations: put with a ttl (a few ms) in "" and in
// keyspaces, bad ttls (zero, negative, past what the clock can hold:
// invalid_argument, nothing written), batches mixing puts with and without
// ttl across keyspaces (one bad ttl: nothing written), a transaction's put
// with a ttl (counted from its commit), clock advances (now and then exactly
// to a deadline, or to one ms before it), expiry(key) on the store and
// through keyspace handles, and the sweep (compact). The model keeps each
// key's deadline: a key leaves it the moment the clock reads at or past its
// deadline, a put without ttl makes it permanent, erase of an expired key
// is that of an absent key. Snapshots, cursors and transactions keep the
// model of the moment they were made; a key that expires while a
// transaction is live counts as a write for the conflict model (a
// transaction that read it, or scanned over it, conflicts). The memory
// store's background sweep is off (expiry_interval 0: runs stay
// deterministic); compact sweeps.
//
// Close + reopen: RocksDB keeps its data, the memory store starts empty
// (config::memory_kind::persisted: keeps its data too). The harness checks
// that, then loads the memory store from the model (with the deadlines) so
// that both backends hold the same data again (then every later result,
// commit outcomes included, must agree).
//
// The hybrid store (hybrid_harness, issue 29): the same operations with a
// hybrid_store in the memory store's place (texts still say "memory"; run()
// names the store in a mismatch). Its data moves to RocksDB once its memory
// tier holds config::hybrid_spill_bytes: by its background mover, at a
// moment the run does not choose (operations overlap the move's copy and
// catch-up), or in a compact(). It keeps its data at a reopen, in either
// tier; config::hybrid_move_by moves it by move_to_large() at that
// operation if no background move committed before. What depends on the
// tier: a snapshot of the RocksDB tier gives
// snapshot_expired for a keyspace dropped after it (one of the memory tier
// reads on; snap::mem_reads_dropped), and a transaction begun in the memory
// tier that commits after the move may conflict for the move alone
// (tx_commit; docs/expiry.md, "Hybrid"). Runs are not exactly repeatable
// (the move's moment is not), but every result must agree whenever it comes.
#pragma once

#include <keel/keel.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "fake_clock.hpp"

namespace keel::test::differential {

using model = std::map<std::string, std::string>;
// Deadlines (ms since the epoch, by the fake clock) of the keys of a model
// put with a ttl. An entry whose key is not in the model is stale (the key
// was erased) and means nothing; every put sets or clears its key's entry.
using deadline_map = std::map<std::string, deadline_ms>;
using entries = std::vector<std::pair<std::string, std::string>>;

// Where the operations come from: a seeded PRNG or fuzzer bytes.
class prng_source {
 public:
  explicit prng_source(std::uint64_t seed) : rng_(seed) {}
  bool exhausted() const noexcept { return false; }
  // A number in [0, bound). bound > 0.
  std::uint32_t pick(std::uint32_t bound) { return static_cast<std::uint32_t>(rng_() % bound); }

 private:
  std::mt19937_64 rng_;
};

// Reads choices from a byte string; exhausted once every byte is used (then
// picks return 0, and the driver stops at the next operation).
class byte_source {
 public:
  byte_source(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool exhausted() const noexcept { return pos_ >= size_; }
  std::uint32_t pick(std::uint32_t bound) {
    if (bound <= 1) return 0;
    std::uint32_t v = 0;
    // One byte for small bounds, two for larger ones.
    int bytes = bound <= 256 ? 1 : 2;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | (pos_ < size_ ? data_[pos_++] : 0);
    return v % bound;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// Draws from a seeded PRNG and records the bytes that make a byte_source
// repeat the same choices: how the fuzzer's seed inputs are made from seeded
// runs (tests/differential_test.cpp, KEEL_DIFF_WRITE_SEEDS).
class recording_source {
 public:
  explicit recording_source(std::uint64_t seed) : rng_(seed) {}
  bool exhausted() const noexcept { return false; }
  std::uint32_t pick(std::uint32_t bound) {
    if (bound <= 1) return 0;
    const std::uint32_t v = rng_.pick(bound);
    if (bound > 256) bytes_.push_back(static_cast<std::uint8_t>(v >> 8));
    bytes_.push_back(static_cast<std::uint8_t>(v & 0xff));
    return v;
  }
  const std::vector<std::uint8_t>& bytes() const noexcept { return bytes_; }

 private:
  prng_source rng_;
  std::vector<std::uint8_t> bytes_;
};

struct config {
  std::filesystem::path rocks_path;     // the RocksDB directory (created)
  rocksdb::Env* rocks_env = nullptr;    // e.g. rocksdb::NewMemEnv for the fuzzer; nullptr: disk
  std::size_t max_live_snapshots = 4;
  std::size_t max_live_transactions = 3;
  // Small memtables so that data is spread over memtables and SST files.
  std::size_t write_buffer_size = 64 << 10;
  // Weight of close + reopen among the operations (out of 1000).
  std::uint32_t reopen_per_mille = 5;
  // Weight of compact (out of 1000).
  std::uint32_t compact_per_mille = 2;
  // Weight of the keyspace operations (out of 1000); 0 decodes inputs as
  // before keyspaces (the same choices from the same bytes).
  std::uint32_t keyspace_per_mille = 200;
  // Weight of the expiry operations (out of 1000; taken from the main
  // operations; see step()); 0 decodes inputs as before expiry (and so does
  // any other value, for inputs recorded before expiry).
  std::uint32_t ttl_per_mille = 60;
  // The memory store under test: plain, persisted (memory_options::
  // persist_path = memory_path, or memory.keeldump beside rocks_path) or
  // compressed (zstd, else lz4).
  // The hybrid store (hybrid_harness) compresses its memory tier with
  // compressed; plain and persisted are the same to it (its memory tier is
  // persisted, it keeps its data at a reopen in either tier).
  enum class memory_kind { plain, persisted, compressed };
  memory_kind memory = memory_kind::plain;
  std::filesystem::path memory_path;  // hybrid_harness: its directory (default: hybrid/ beside rocks_path)
  // hybrid_harness: hybrid_options::spill_bytes, the bytes its memory tier
  // holds past which the data moves to RocksDB (once per store: it never
  // moves back).
  std::size_t hybrid_spill_bytes = std::size_t{16} << 10;
  // hybrid_harness: after this many operations (0: never), a store whose
  // data is still in memory is moved by policy().move_to_large(), the API
  // for callers that know the data will grow: so that a run moves by then
  // even when its background moves did not commit (each reopen stops a move
  // in progress, and a move's fsyncs can take longer than the operations
  // between two reopens on a loaded machine).
  std::uint64_t hybrid_move_by = 0;
};

// Counts of what a run did, for reports.
struct stats {
  std::uint64_t ops = 0, puts = 0, erases = 0, batches = 0, range_erases = 0, point_reads = 0, multi_gets = 0,
                scans = 0, snapshots = 0, snapshot_reads = 0, held_cursors = 0, compacts = 0, reopens = 0;
  std::uint64_t tx_begun = 0, tx_reads = 0, tx_scans = 0, tx_held_scans = 0, tx_writes = 0, tx_committed = 0,
                tx_committed_read_only = 0, tx_committed_after_reads = 0, tx_conflicts = 0, tx_rolled_back = 0, tx_closed = 0;
  std::uint64_t ks_creates = 0, ks_drops = 0, ks_bad_drops = 0, ks_writes = 0, ks_reads = 0, ks_scans = 0,
                ks_batches = 0, ks_refused_batches = 0, ks_snapshot_reads = 0, ks_snapshot_after_drop = 0,
                ks_stale_calls = 0, ks_cursors_across_drop = 0;
  std::uint64_t ttl_puts = 0, ttl_bad = 0, ttl_batches = 0, ttl_tx_puts = 0, clock_advances = 0, expired = 0,
                expired_in_live_tx = 0, expiry_reads = 0, sweeps = 0;
  // hybrid_harness: moves to RocksDB seen (after the operation that made or
  // overlapped them), transactions live across one, and of those the ones
  // that conflicted for it alone (docs/expiry.md, "Hybrid"); moves made by
  // config::hybrid_move_by.
  std::uint64_t moves = 0, tx_across_move = 0, tx_move_conflicts = 0, moves_by_call = 0;
  stats& operator+=(const stats& o) {
    ops += o.ops, puts += o.puts, erases += o.erases, batches += o.batches, range_erases += o.range_erases;
    point_reads += o.point_reads, multi_gets += o.multi_gets, scans += o.scans, snapshots += o.snapshots;
    snapshot_reads += o.snapshot_reads, held_cursors += o.held_cursors, compacts += o.compacts;
    reopens += o.reopens;
    tx_begun += o.tx_begun, tx_reads += o.tx_reads, tx_scans += o.tx_scans, tx_held_scans += o.tx_held_scans;
    tx_writes += o.tx_writes, tx_committed += o.tx_committed, tx_committed_read_only += o.tx_committed_read_only;
    tx_committed_after_reads += o.tx_committed_after_reads;
    tx_conflicts += o.tx_conflicts, tx_rolled_back += o.tx_rolled_back, tx_closed += o.tx_closed;
    ks_creates += o.ks_creates, ks_drops += o.ks_drops, ks_bad_drops += o.ks_bad_drops, ks_writes += o.ks_writes;
    ks_reads += o.ks_reads, ks_scans += o.ks_scans, ks_batches += o.ks_batches;
    ks_refused_batches += o.ks_refused_batches, ks_snapshot_reads += o.ks_snapshot_reads;
    ks_snapshot_after_drop += o.ks_snapshot_after_drop, ks_stale_calls += o.ks_stale_calls;
    ks_cursors_across_drop += o.ks_cursors_across_drop;
    ttl_puts += o.ttl_puts, ttl_bad += o.ttl_bad, ttl_batches += o.ttl_batches, ttl_tx_puts += o.ttl_tx_puts;
    clock_advances += o.clock_advances, expired += o.expired, expired_in_live_tx += o.expired_in_live_tx;
    expiry_reads += o.expiry_reads, sweeps += o.sweeps;
    moves += o.moves, tx_across_move += o.tx_across_move, tx_move_conflicts += o.tx_move_conflicts;
    moves_by_call += o.moves_by_call;
    return *this;
  }
};

inline std::string printable(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 48)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 48) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out + "\"";
}

// The keyspaces operations name besides "": NUL and 0xFF in names, and a
// name that is a prefix of another.
inline const std::vector<std::string>& keyspace_names() {
  static const std::vector<std::string> names = {"a", "ab", std::string("\0", 1), "\xff", std::string("\0\xff", 2)};
  return names;
}

inline std::string printable_value(const std::optional<std::string>& v) { return v ? printable(*v) : "(absent)"; }

inline std::string describe(const key_range& r) {
  std::string s = "[";
  s += r.lower() ? printable(*r.lower()) : "-inf";
  s += ", ";
  s += r.upper() ? printable(*r.upper()) : "+inf";
  s += ")";
  if (r.is_reversed()) s += " reversed";
  return s;
}

inline entries expected_scan(const model& m, const key_range& r) {
  entries out;
  for (const auto& [k, v] : m)
    if (r.contains(k)) out.emplace_back(k, v);
  if (r.is_reversed()) std::reverse(out.begin(), out.end());
  return out;
}

inline void erase_range_in(model& m, const key_range& r) {
  for (auto it = m.begin(); it != m.end();) {
    if (r.contains(it->first))
      it = m.erase(it);
    else
      ++it;
  }
}

// A whole pass of a cursor, or the error that stopped it.
template <class Cursor>
result<entries> drain(Cursor&& c) {
  entries out;
  for (const auto& e : c) out.emplace_back(std::string(e.key), std::string(e.value));
  if (c.error()) return *c.error();
  return out;
}

// Up to `limit` entries of a cursor. The cursor is left on the last entry
// taken (not moved past it), so a pass stopped early has "seen" exactly the
// entries returned. `ended`: the pass reached the end of its range.
template <class Cursor>
std::optional<keel::error> take(Cursor& c, std::size_t limit, entries& out, bool& ended) {
  while (c.valid()) {
    out.emplace_back(std::string(c.current().key), std::string(c.current().value));
    if (out.size() >= limit) break;
    c.advance();
  }
  ended = !c.valid();
  return c.error();
}

// ---------------------------------------------------------------------------
// The serial model of transactions (written independently of keel's
// conflict_tracker; only the documented semantics are shared).
// ---------------------------------------------------------------------------

// The keys one commit wrote (put or erase) and the ranges it erased.
struct write_set {
  std::vector<std::string> keys;
  std::vector<key_range> ranges;
  std::string what;  // for reports
};

// What a transaction read from its view: keys (get, contains) and the parts
// of ranges its scans passed over (forward direction).
struct read_set {
  std::set<std::string> keys;
  std::vector<key_range> ranges;
};

// Whether two ranges share a key: the larger lower bound ("" when missing,
// the smallest key) is below the smaller upper bound (none: no limit).
inline bool share_a_key(const key_range& a, const key_range& b) {
  std::string_view lo;
  if (a.lower()) lo = *a.lower();
  if (b.lower() && std::string_view(*b.lower()) > lo) lo = *b.lower();
  std::optional<std::string_view> hi;
  if (a.upper()) hi = std::string_view(*a.upper());
  if (b.upper() && (!hi || std::string_view(*b.upper()) < *hi)) hi = std::string_view(*b.upper());
  return !hi || lo < *hi;
}

// Whether a commit's writes touch what a transaction read.
inline bool touches(const write_set& w, const read_set& r) {
  for (const auto& k : w.keys) {
    if (r.keys.count(k)) return true;
    for (const auto& rr : r.ranges)
      if (rr.contains(k)) return true;
  }
  for (const auto& wr : w.ranges) {
    for (const auto& k : r.keys)
      if (wr.contains(k)) return true;
    for (const auto& rr : r.ranges)
      if (share_a_key(wr, rr)) return true;
  }
  return false;
}

// The part of a range a scan passed over: all of it when the pass ended,
// else up to the entry it stopped at (included).
inline key_range scanned_part(const key_range& r, bool ended, const std::string& last) {
  key_range f = r.is_reversed() ? r.reversed() : r;
  if (ended) return f;
  if (!r.is_reversed()) {
    std::string above = last + std::string(1, '\0');  // the smallest key above `last`
    return f.lower() ? key_range::between(*f.lower(), above) : key_range::until(above);
  }
  return f.upper() ? key_range::between(last, *f.upper()) : key_range::from(last);
}

// One operation of a transaction as it ran: reads with what they returned.
struct tx_op {
  enum class kind { get, contains, scan, put, erase, erase_range };
  kind what = kind::get;
  std::string key, value;
  std::optional<std::string> got;      // get: what it returned
  bool found = false;                  // contains: what it returned
  key_range range = key_range::all();  // scan, erase_range
  std::size_t limit = 0;               // scan: entries taken at most
  entries seen;                        // scan: the entries taken
  bool ended = false;                  // scan: the pass reached the end
  std::optional<std::chrono::milliseconds> ttl;  // put: its ttl (counted from the commit)

  static tx_op write(kind what, std::string key, std::string value = {},
                     std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    tx_op o;
    o.what = what;
    o.key = std::move(key);
    o.value = std::move(value);
    o.ttl = ttl;
    return o;
  }
};

// Runs `ops` alone on `state` (the model just before the commit): the serial
// run. Returns the first read that returns something else than it did, or
// nullopt; applies the writes to `state`.
inline std::optional<std::string> replay(const std::vector<tx_op>& ops, model& state) {
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const tx_op& op = ops[i];
    const std::string where = "operation " + std::to_string(i + 1) + " of " + std::to_string(ops.size()) + ", ";
    switch (op.what) {
      case tx_op::kind::get:
      case tx_op::kind::contains: {
        auto it = state.find(op.key);
        std::optional<std::string> now;
        if (it != state.end()) now = it->second;
        if (op.what == tx_op::kind::get && now != op.got)
          return where + "get " + printable(op.key) + " returned " + printable_value(op.got) + ", the serial run " +
                 printable_value(now);
        if (op.what == tx_op::kind::contains && now.has_value() != op.found)
          return where + "contains " + printable(op.key) + " returned " + (op.found ? "true" : "false") +
                 ", the serial run " + (now ? "true" : "false");
        break;
      }
      case tx_op::kind::scan: {
        entries now = expected_scan(state, op.range);
        const bool ends = now.size() < op.limit;
        if (now.size() > op.limit) now.resize(op.limit);
        if (now != op.seen || ends != op.ended)
          return where + "scan " + describe(op.range) + " saw " + std::to_string(op.seen.size()) + " entries" +
                 (op.ended ? " to the end" : "") + ", the serial run " + std::to_string(now.size()) +
                 (ends ? " to the end" : "");
        break;
      }
      case tx_op::kind::put: state[op.key] = op.value; break;
      case tx_op::kind::erase: state.erase(op.key); break;
      case tx_op::kind::erase_range: erase_range_in(state, op.range); break;
    }
  }
  return std::nullopt;
}

// Primary: the store compared with RocksDB and the model, memory_store
// (harness) or hybrid_store (hybrid_harness). Texts call it "memory" either
// way; run() says which it is in a mismatch.
template <class Primary>
class basic_harness {
  static constexpr bool is_hybrid = std::is_same_v<Primary, hybrid_store>;
  using mem_tx = basic_transaction<typename Primary::policy_type>;
  using rocks_tx = basic_transaction<rocks_store::policy_type>;
  using mem_ks = basic_keyspace<typename Primary::policy_type>;
  using rocks_ks = basic_keyspace<rocks_store::policy_type>;

 public:
  explicit basic_harness(config cfg) : cfg_(std::move(cfg)) {}
  ~basic_harness() { close_all(); }

  // Opens both stores. Returns a failure text, or nullopt.
  std::optional<std::string> start() {
    if (auto e = open_rocks()) return e;
    return open_memory();
  }

  // Runs operations from `src` until it is exhausted or `max_ops` are done.
  // Returns the first mismatch (with the recent history), or nullopt.
  template <class Source>
  std::optional<std::string> run(Source& src, std::uint64_t max_ops) {
    for (std::uint64_t i = 0; i < max_ops && !src.exhausted(); ++i) {
      if (auto e = step(src)) return which() + *e + "\nrecent operations (oldest first):\n" + history();
      if (is_hybrid && !in_rocksdb_ && stats_.ops == cfg_.hybrid_move_by && !primary_in_rocksdb()) {
        ++stats_.moves_by_call;
        note("move_to_large()");
        if (auto e = move_to_large()) return which() + *e + "\nrecent operations (oldest first):\n" + history();
      }
      if (is_hybrid && !in_rocksdb_ && memory_ && memory_->is_open() && primary_in_rocksdb()) {
        in_rocksdb_ = true;
        ++stats_.moves;
        move_op_ = stats_.ops;
        note("(the hybrid store's data is in RocksDB now)");
      }
    }
    // A final full comparison.
    if (auto e = compare_scan(key_range::all())) return which() + *e + "\nrecent operations:\n" + history();
    if (auto e = compare_keyspaces()) return which() + *e + "\nrecent operations:\n" + history();
    if (auto e = check_tx_stats()) return which() + *e + "\nrecent operations:\n" + history();
    return std::nullopt;
  }

  const stats& counts() const noexcept { return stats_; }
  // hybrid_harness: the operation (stats().ops) after which the move to
  // RocksDB was seen; 0 if it was not.
  std::uint64_t move_op() const noexcept { return move_op_; }
  // hybrid_harness: what the hybrid store says of its data's size and its
  // last failed move (for a run that did not move).
  std::string move_state() const {
    if constexpr (is_hybrid) {
      if (!memory_ || !memory_->is_open()) return "closed";
      auto st = memory_->stats();
      auto err = memory_->policy().last_move_error();
      return "size_bytes " + (st ? std::to_string(st->size_bytes) : st.error().message()) + ", tier " +
             (st ? st->tier : std::string("?")) + ", last move error: " + (err ? err->message() : "none");
    } else {
      return {};
    }
  }

  // For the harness's own test: a write the model does not see.
  bool sneak_put_rocks(std::string_view k, std::string_view v) { return rocks_ && rocks_->put(k, v).has_value(); }
  std::size_t model_size() const noexcept { return model_.size(); }
  // The same in keyspace `name` of the RocksDB store (created if missing).
  bool sneak_put_rocks(std::string_view name, std::string_view k, std::string_view v) {
    if (!rocks_) return false;
    auto ks = rocks_->keyspace(name);
    return ks && ks->put(k, v).has_value();
  }

  // Closes both stores (live transactions, snapshots and cursors first).
  void close_all() {
    txs_.clear();
    snaps_.clear();
    handles_.clear();
    stale_.clear();
    if (rocks_) (void)rocks_->close();
    if (memory_) (void)memory_->close();
    rocks_.reset();
    memory_.reset();
  }

 private:
  // Handles to one keyspace on each backend; `id` tells a keyspace from a
  // later one of the same name.
  struct ks_handles {
    std::uint64_t id;
    mem_ks mem;
    rocks_ks rocks;
  };

  struct snap {
    typename Primary::snapshot_type mem;
    rocks_store::snapshot_type rocks;
    model state;
    std::map<std::string, model> ks_state;          // every keyspace but "" when it was taken
    std::map<std::string, ks_handles> ks_at;  // and their handles
    // Whether mem reads a keyspace dropped after it was taken as it was
    // (a memory store's snapshot, a hybrid store's of its memory tier) or
    // gives snapshot_expired (RocksDB's rule: a hybrid store's snapshot of
    // its RocksDB tier); nullopt: the hybrid store moved while it was taken.
    std::optional<bool> mem_reads_dropped = true;
  };

  // A transaction on each backend, driven in lockstep, and its model.
  struct tx_slot {
    std::uint64_t id;
    mem_tx mem;
    rocks_tx rocks;
    std::size_t begin_log;  // log_.size() when it began: later entries are concurrent commits
    model view;             // the model when it began, with its own writes applied
    std::vector<tx_op> ops;
    read_set reads;
    write_set writes;               // keys put or erased, non-empty ranges erased
    std::set<std::string> own_keys;  // keys put or erased
    bool begun_in_memory_tier = false;  // hybrid_harness: the store's data was in memory when it began

    // A read of `k` is answered from the transaction's own writes.
    bool own(const std::string& k) const {
      if (own_keys.count(k)) return true;
      for (const auto& r : writes.ranges)
        if (r.contains(k)) return true;
      return false;
    }
    std::string name() const { return "tx" + std::to_string(id); }
  };

  // Transactions counted by stats() since the stores were opened.
  struct tx_counts {
    std::uint64_t begun = 0, committed = 0, conflicts = 0, rolled_back = 0;
    std::uint64_t move_conflicts = 0;  // of committed: conflicts on the hybrid store alone (tx_commit)
  };

  // Both stores read clock_; the memory store sweeps only in compact()
  // (expiry_interval 0), so that runs are deterministic. The hybrid store
  // (hybrid_harness) moves to RocksDB past config::hybrid_spill_bytes, by
  // its background mover (at a moment the run does not choose) or in a
  // compact(); its memory tier sweeps in the background too (hybrid_options
  // has no expiry_interval; a sweep removes only what reads hide already).
  std::optional<std::string> open_memory() {
    if constexpr (is_hybrid) {
      hybrid_options o;
      o.path = cfg_.memory_path.empty() ? cfg_.rocks_path.parent_path() / "hybrid" : cfg_.memory_path;
      o.clock = clock_.source();
      o.spill_bytes = cfg_.hybrid_spill_bytes;
#if KEEL_HAVE_ZSTD
      if (cfg_.memory == config::memory_kind::compressed) o.compression = compression::zstd;
#elif KEEL_HAVE_LZ4
      if (cfg_.memory == config::memory_kind::compressed) o.compression = compression::lz4;
#endif
      auto h = hybrid_store::open(o);
      if (!h) return "hybrid open failed: " + h.error().message();
      memory_.emplace(std::move(*h));  // a move that commits in a reopen is seen by run() after it
      return std::nullopt;
    } else {
      memory_options o;
      o.clock = clock_.source();
      o.expiry_interval = std::chrono::milliseconds(0);
      if (cfg_.memory == config::memory_kind::persisted)
        o.persist_path =
            cfg_.memory_path.empty() ? cfg_.rocks_path.parent_path() / "memory.keeldump" : cfg_.memory_path;
#if KEEL_HAVE_ZSTD
      if (cfg_.memory == config::memory_kind::compressed) o.compression = compression::zstd;
#elif KEEL_HAVE_LZ4
      if (cfg_.memory == config::memory_kind::compressed) o.compression = compression::lz4;
#endif
      auto m = memory_store::open(o);
      if (!m) return "memory open failed: " + m.error().message();
      memory_.emplace(std::move(*m));
      return std::nullopt;
    }
  }

  // hybrid_harness: the move now (config::hybrid_move_by).
  std::optional<std::string> move_to_large() {
    if constexpr (is_hybrid) {
      if (auto r = memory_->policy().move_to_large(); !r) return "hybrid move_to_large() failed: " + r.error().message();
      if (!primary_in_rocksdb()) return std::string("hybrid move_to_large() returned with the data in memory");
    }
    return std::nullopt;
  }

  // Whether the primary store holds its data in RocksDB (a hybrid store
  // after its move; never a memory store).
  bool primary_in_rocksdb() const {
    if constexpr (is_hybrid) {
      return memory_->policy().current_tier() == Primary::policy_type::tier::large;
    } else {
      return false;
    }
  }

  std::optional<std::string> open_rocks() {
    rocks_options o;
    o.path = cfg_.rocks_path;
    o.env = cfg_.rocks_env;
    o.clock = clock_.source();
    o.sync_on_close = false;  // semantics, not durability: the crash test covers that
    std::size_t wbs = cfg_.write_buffer_size;
    o.customize = [wbs](rocksdb::Options& ro) {
      ro.write_buffer_size = wbs;
      ro.max_write_buffer_number = 2;
      ro.level0_file_num_compaction_trigger = 2;
      ro.target_file_size_base = 64 << 10;
      ro.max_bytes_for_level_base = 256 << 10;
      ro.max_background_jobs = 1;
      // No periodic stats threads: each open would start them and each close wait for them.
      ro.stats_dump_period_sec = 0;
      ro.stats_persist_period_sec = 0;
    };
    auto r = rocks_store::open(o);
    if (!r) return "rocksdb open failed: " + r.error().message();
    rocks_.emplace(std::move(*r));
    return std::nullopt;
  }

  // Keys drawn to hit edge cases: the empty key, NUL, 0xFF runs, shared
  // prefixes, high-bit bytes, and now and then a long one.
  template <class Source>
  std::string key(Source& src) {
    static const std::string_view parts[] = {
        std::string_view("", 0), std::string_view("\0", 1), std::string_view("\xff", 1),
        std::string_view("\xff\xff", 2), std::string_view("\xff\xff\xff\xff", 4), "a", "ab", "abc", "b",
        std::string_view("a\0", 2), "\x80", "\x7f", "\x01", "k", "key/", "key/1", "key/10", "\xfe"};
    constexpr std::uint32_t n = sizeof(parts) / sizeof(parts[0]);
    std::string k;
    std::uint32_t len = src.pick(4);
    for (std::uint32_t i = 0; i < len; ++i) k += parts[src.pick(n)];
    if (src.pick(64) == 0) k += std::string(200 + src.pick(800), static_cast<char>(src.pick(256)));
    return k;
  }
  // A key, half the time one present in `m`.
  template <class Source>
  std::string key_in(Source& src, const model& m) {
    std::string k = key(src);
    if (!m.empty() && src.pick(2)) {
      auto it = m.begin();
      std::advance(it, src.pick(static_cast<std::uint32_t>(std::min<std::size_t>(m.size(), 1 << 16))));
      k = it->first;
    }
    return k;
  }
  template <class Source>
  std::string value(Source& src) {
    switch (src.pick(8)) {
      case 0: return {};
      case 1: return std::string("\0\xff\0", 3);
      case 2: return std::string(100 + src.pick(4000), static_cast<char>('a' + src.pick(26)));
      default: return "v" + std::to_string(counter_++);
    }
  }
  // A range of any kind; now and then (between with lo > hi) one whose lower
  // bound is above its upper bound: an empty scan, an invalid erase_range.
  template <class Source>
  key_range range(Source& src) {
    key_range r = key_range::all();
    switch (src.pick(6)) {
      case 0: break;
      case 1: r = key_range::prefix(key(src)); break;
      case 2: {
        std::string lo = key(src), hi = key(src);
        if (src.pick(4) != 0 && hi < lo) std::swap(lo, hi);  // mostly non-empty
        r = key_range::between(lo, hi);
        break;
      }
      case 3: r = key_range::from(key(src)); break;
      case 4: r = key_range::until(key(src)); break;
      case 5: {
        static const std::string_view ps[] = {std::string_view("\xff", 1), std::string_view("\xff\xff", 2),
                                              std::string_view("\0", 1), "a", "key/", std::string_view("", 0)};
        r = key_range::prefix(ps[src.pick(6)]);
        break;
      }
    }
    if (src.pick(2)) r = r.reversed();
    return r;
  }

  // What a mismatch text calls "memory".
  std::string which() const {
    if constexpr (is_hybrid) {
      return std::string("(\"memory\" is the hybrid store, spill_bytes ") + std::to_string(cfg_.hybrid_spill_bytes) +
             ", its data in " + (memory_ && memory_->is_open() && primary_in_rocksdb() ? "RocksDB" : "memory") +
             (move_op_ ? " since operation " + std::to_string(move_op_) : std::string()) + ") ";
    } else {
      return {};
    }
  }

  void note(std::string s) {
    recent_.push_back(std::to_string(stats_.ops) + ": " + std::move(s));
    if (recent_.size() > 32) recent_.pop_front();
  }
  std::string history() const {
    std::string out;
    for (const auto& s : recent_) out += "  " + s + "\n";
    return out;
  }

  static std::optional<std::string> expect_ok(const result<void>& r, const char* backend, std::string_view what) {
    if (r) return std::nullopt;
    return std::string(backend) + " " + std::string(what) + " failed: " + r.error().message();
  }
  static std::optional<std::string> expect_error(const result<void>& r, errc code, const char* backend,
                                                 std::string_view what) {
    if (!r && r.error() == code) return std::nullopt;
    return std::string(backend) + " " + std::string(what) + " should fail with " + std::string(to_string(code)) +
           (r ? std::string(", it succeeded") : ", it gave: " + r.error().message());
  }

  // Records a commit (plain write or transaction) for the conflict model.
  void log_write(write_set w) {
    if (txs_.empty()) {  // no live transaction can be in conflict with it
      log_.clear();
      return;
    }
    log_.push_back(std::move(w));
  }

  // get and contains on the store, a snapshot (ms/rs) or a transaction (mt/rt).
  template <class M, class R>
  std::optional<std::string> compare_point_on(M& m, R& r, std::string_view k, const model& expected,
                                              const char* where) {
    std::optional<std::string> want;
    if (auto it = expected.find(std::string(k)); it != expected.end()) want = it->second;
    auto mg = m.get(k);
    auto rg = r.get(k);
    auto mc = m.contains(k);
    auto rc = r.contains(k);
    if (!mg || !mc) return std::string("memory get/contains") + where + " failed: " +
                           (!mg ? mg.error().message() : mc.error().message());
    if (!rg || !rc) return std::string("rocksdb get/contains") + where + " failed: " +
                           (!rg ? rg.error().message() : rc.error().message());
    if (*mg != want)
      return std::string("memory get") + where + " of " + printable(k) + " gave " + printable_value(*mg) + ", the model " +
             printable_value(want);
    if (*rg != want)
      return std::string("rocksdb get") + where + " of " + printable(k) + " gave " + printable_value(*rg) +
             ", the model " + printable_value(want);
    if (*mc != want.has_value()) return std::string("memory contains disagrees with the model") + where;
    if (*rc != want.has_value()) return std::string("rocksdb contains disagrees with the model") + where;
    return std::nullopt;
  }

  template <class M, class R>
  std::optional<std::string> compare_cursors(M&& mcur, R&& rcur, const key_range& r, const model& expected,
                                             const char* where) {
    auto got_m = drain(mcur);
    auto got_r = drain(rcur);
    if (!got_m) return std::string("memory scan") + where + " failed: " + got_m.error().message();
    if (!got_r) return std::string("rocksdb scan") + where + " failed: " + got_r.error().message();
    auto want = expected_scan(expected, r);
    if (*got_m != want)
      return std::string("memory scan") + where + " of " + describe(r) + " gave " + std::to_string(got_m->size()) +
             " entries, the model " + std::to_string(want.size());
    if (*got_r != want)
      return std::string("rocksdb scan") + where + " of " + describe(r) + " gave " + std::to_string(got_r->size()) +
             " entries, the model " + std::to_string(want.size());
    return std::nullopt;
  }

  std::optional<std::string> compare_scan(const key_range& r) {
    return compare_cursors(memory_->scan(r), rocks_->scan(r), r, model_, "");
  }

  // stats() of both stores against the transactions this harness ran on them.
  std::optional<std::string> check_tx_stats() {
    auto ms = memory_->stats();
    auto rs = rocks_->stats();
    if (!ms || !rs) return std::string("stats() failed on an open store");
    auto check = [&](const store_stats& s, const char* backend) -> std::optional<std::string> {
      if (s.tx_begun == open_counts_.begun && s.tx_committed == open_counts_.committed &&
          s.tx_conflicts == open_counts_.conflicts && s.tx_rolled_back == open_counts_.rolled_back)
        return std::nullopt;
      return std::string(backend) + " stats(): transactions begun/committed/conflicts/rolled back " +
             std::to_string(s.tx_begun) + "/" + std::to_string(s.tx_committed) + "/" +
             std::to_string(s.tx_conflicts) + "/" + std::to_string(s.tx_rolled_back) + ", expected " +
             std::to_string(open_counts_.begun) + "/" + std::to_string(open_counts_.committed) + "/" +
             std::to_string(open_counts_.conflicts) + "/" + std::to_string(open_counts_.rolled_back);
    };
    store_stats primary = *ms;  // its move conflicts were commits on RocksDB
    primary.tx_committed += open_counts_.move_conflicts;
    primary.tx_conflicts -= std::min(primary.tx_conflicts, open_counts_.move_conflicts);
    if (auto e = check(primary, "memory")) return e;
    return check(*rs, "rocksdb");
  }

  template <class Source>
  std::optional<std::string> step(Source& src) {
    ++stats_.ops;
    // Reopen and compact at the top of the range: runs of zero bytes (common
    // in fuzzer input) then mean puts, not a costly reopen per operation.
    //
    // Expiry takes the choices 1000 to 1999, which inputs recorded before it
    // (choices below 1000) never make: they decode exactly as they did. Of
    // those, the first 2 * ttl_per_mille are the expiry operations, the rest
    // choose as 0 to 999 do (the main operations lose that weight).
    std::uint32_t op = src.pick(cfg_.ttl_per_mille ? 2000 : 1000);
    if (op >= 1000) {
      if (op - 1000 < 2 * cfg_.ttl_per_mille) return ttl_step(src);
      op -= 1000;
    }
    if (op >= 1000 - cfg_.reopen_per_mille) return reopen();
    if (op >= 1000 - cfg_.reopen_per_mille - cfg_.compact_per_mille) return compact(src);
    if (op >= 1000 - cfg_.reopen_per_mille - cfg_.compact_per_mille - cfg_.keyspace_per_mille)
      return keyspace_step(src);
    op = src.pick(100);
    if (op < 18) {  // put
      ++stats_.puts;
      std::string k = key(src), v = value(src);
      note("put " + printable(k) + " = " + printable(v));
      if (auto e = expect_ok(memory_->put(k, v), "memory", "put")) return e;
      if (auto e = expect_ok(rocks_->put(k, v), "rocksdb", "put")) return e;
      model_[k] = v;
      deadlines_.erase(k);  // permanent (again)
      log_write(write_set{{k}, {}, "put " + printable(k)});
      return std::nullopt;
    }
    if (op < 24) {  // erase, half the time of a key that exists
      ++stats_.erases;
      std::string k = key_in(src, model_);
      note("erase " + printable(k));
      if (auto e = expect_ok(memory_->erase(k), "memory", "erase")) return e;
      if (auto e = expect_ok(rocks_->erase(k), "rocksdb", "erase")) return e;
      model_.erase(k);
      log_write(write_set{{k}, {}, "erase " + printable(k)});
      return std::nullopt;
    }
    if (op < 31) return batch(src);
    if (op < 34) {  // store.erase_range
      ++stats_.range_erases;
      key_range r = range(src);
      note("erase_range " + describe(r));
      auto mr = memory_->erase_range(r);
      auto rr = rocks_->erase_range(r);
      if (!erase_range_is_valid(r)) {
        if (auto e = expect_error(mr, errc::invalid_argument, "memory", "erase_range (lower > upper)")) return e;
        return expect_error(rr, errc::invalid_argument, "rocksdb", "erase_range (lower > upper)");
      }
      if (auto e = expect_ok(mr, "memory", "erase_range")) return e;
      if (auto e = expect_ok(rr, "rocksdb", "erase_range")) return e;
      erase_range_in(model_, r);
      log_write(write_set{{}, {r}, "erase_range " + describe(r)});
      return compare_scan(r);
    }
    if (op < 43) {  // get + contains, of an existing key half the time
      ++stats_.point_reads;
      std::string k = key_in(src, model_);
      note("get " + printable(k));
      return compare_point_on(*memory_, *rocks_, k, model_, "");
    }
    if (op < 46) {  // multi_get: existing and absent keys, duplicates
      ++stats_.multi_gets;
      std::vector<std::string> keys(src.pick(8));
      for (auto& k : keys) k = key_in(src, model_);
      if (keys.size() > 1 && src.pick(2)) keys.back() = keys.front();
      note("multi_get of " + std::to_string(keys.size()) + " keys");
      return compare_multi_get(keys, "multi_get");
    }
    if (op < 54) {  // scan
      ++stats_.scans;
      key_range r = range(src);
      note("scan " + describe(r));
      return compare_scan(r);
    }
    if (op < 57) {  // take a snapshot
      ++stats_.snapshots;
      if (snaps_.size() >= cfg_.max_live_snapshots) snaps_.erase(snaps_.begin() + src.pick(static_cast<std::uint32_t>(snaps_.size())));
      note("snapshot");
      const bool rocksdb_before = primary_in_rocksdb();
      auto ms = memory_->snapshot();
      auto rs = rocks_->snapshot();
      if (!ms.valid() || !rs.valid()) return std::string("snapshot of an open store is not valid");
      snaps_.push_back(snap{std::move(ms), std::move(rs), model_, ks_models_, handles_});
      if (primary_in_rocksdb() != rocksdb_before)
        snaps_.back().mem_reads_dropped.reset();
      else
        snaps_.back().mem_reads_dropped = !rocksdb_before;
      return std::nullopt;
    }
    if (op < 62) {  // read through a snapshot
      if (snaps_.empty()) return std::nullopt;
      ++stats_.snapshot_reads;
      snap& s = snaps_[src.pick(static_cast<std::uint32_t>(snaps_.size()))];
      if (src.pick(2)) {
        std::string k = key(src);
        if (!s.state.empty() && src.pick(2)) k = s.state.begin()->first;
        note("snapshot get " + printable(k));
        return compare_point_on(s.mem, s.rocks, k, s.state, " (snapshot)");
      }
      key_range r = range(src);
      note("snapshot scan " + describe(r));
      return compare_cursors(s.mem.scan(r), s.rocks.scan(r), r, s.state, " (snapshot)");
    }
    if (op < 65) return held_cursor(src);
    return tx_step(src);
  }

  // A batch of puts, erases and erase_ranges, applied in order.
  template <class Source>
  std::optional<std::string> batch(Source& src) {
    ++stats_.batches;
    write_batch b;
    model after = model_;
    write_set w;
    bool valid = true;
    std::vector<std::string> put_keys;  // made permanent if the batch is written
    std::uint32_t n = src.pick(9);
    std::string text = "batch{";
    for (std::uint32_t i = 0; i < n; ++i) {
      std::uint32_t kind = src.pick(8);
      if (kind == 0) {
        key_range r = range(src);
        b.erase_range(r);
        valid = valid && erase_range_is_valid(r);
        if (erase_range_is_valid(r)) erase_range_in(after, r);
        w.ranges.push_back(r);
        text += " erase_range " + describe(r);
      } else if (kind < 3) {
        std::string k = key_in(src, after);
        b.erase(k);
        after.erase(k);
        text += " erase " + printable(k);
        w.keys.push_back(std::move(k));
      } else {
        std::string k = key(src), v = value(src);
        b.put(k, v);
        after[k] = v;
        text += " put " + printable(k);
        put_keys.push_back(k);
        w.keys.push_back(std::move(k));
      }
    }
    note(text + " }");
    auto mr = memory_->write(b);
    auto rr = rocks_->write(b);
    if (!valid) {  // one range with lower > upper: the whole batch is refused
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "write (erase_range lower > upper)")) return e;
      if (auto e = expect_error(rr, errc::invalid_argument, "rocksdb", "write (erase_range lower > upper)")) return e;
      return std::nullopt;
    }
    if (auto e = expect_ok(mr, "memory", "write")) return e;
    if (auto e = expect_ok(rr, "rocksdb", "write")) return e;
    model_ = std::move(after);
    for (const auto& k : put_keys) deadlines_.erase(k);
    w.what = "batch";
    log_write(std::move(w));
    return std::nullopt;
  }

  // A cursor opened, then writes, then read: it sees the view of its creation.
  template <class Source>
  std::optional<std::string> held_cursor(Source& src) {
    ++stats_.held_cursors;
    key_range r = range(src);
    auto mcur = memory_->scan(r);
    auto rcur = rocks_->scan(r);
    model before = model_;
    std::string k = key(src), v = value(src);
    note("held cursor over " + describe(r) + " across put " + printable(k) + " and erase of the first key");
    if (auto e = expect_ok(memory_->put(k, v), "memory", "put")) return e;
    if (auto e = expect_ok(rocks_->put(k, v), "rocksdb", "put")) return e;
    model_[k] = v;
    deadlines_.erase(k);
    log_write(write_set{{k}, {}, "put " + printable(k)});
    std::string first = model_.begin()->first;
    if (auto e = expect_ok(memory_->erase(first), "memory", "erase")) return e;
    if (auto e = expect_ok(rocks_->erase(first), "rocksdb", "erase")) return e;
    model_.erase(first);
    log_write(write_set{{first}, {}, "erase " + printable(first)});
    return compare_cursors(std::move(mcur), std::move(rcur), r, before, " (held cursor)");
  }

  // compact: nothing observable changes; a range with lower > upper is refused.
  template <class Source>
  std::optional<std::string> compact(Source& src) {
    ++stats_.compacts;
    key_range r = range(src);
    note("compact " + describe(r));
    auto mr = memory_->compact(r);
    auto rr = rocks_->compact(r);
    if (!erase_range_is_valid(r)) {
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "compact (lower > upper)")) return e;
      return expect_error(rr, errc::invalid_argument, "rocksdb", "compact (lower > upper)");
    }
    if (auto e = expect_ok(mr, "memory", "compact")) return e;
    if (auto e = expect_ok(rr, "rocksdb", "compact")) return e;
    return compare_scan(key_range::all());
  }

  // ---- keyspaces ----

  // Opens (creating if missing) keyspace `name` on both stores and keeps the
  // handles under a new id.
  std::optional<std::string> open_handles(const std::string& name) {
    auto m = memory_->keyspace(name);
    auto r = rocks_->keyspace(name);
    if (!m) return "memory keyspace(" + printable(name) + ") failed: " + m.error().message();
    if (!r) return "rocksdb keyspace(" + printable(name) + ") failed: " + r.error().message();
    if (m->name() != name || r->name() != name) return "keyspace(" + printable(name) + "): a handle with another name";
    handles_.insert_or_assign(name, ks_handles{++ks_ids_, std::move(*m), std::move(*r)});
    return std::nullopt;
  }

  // keyspaces() of both stores against the model ("" and every name of
  // ks_models_, sorted). `memory_too`: false right after a reopen (the
  // memory store has only "" then).
  std::optional<std::string> compare_keyspace_names(bool memory_too = true) {
    std::vector<std::string> want = {""};
    for (const auto& [name, m] : ks_models_) want.push_back(name);
    auto r = rocks_->keyspaces();
    if (!r) return "rocksdb keyspaces() failed: " + r.error().message();
    auto describe_names = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& n : v) out += " " + printable(n);
      return out;
    };
    if (*r != want) return "rocksdb keyspaces():" + describe_names(*r) + "; the model:" + describe_names(want);
    if (!memory_too) return std::nullopt;
    auto m = memory_->keyspaces();
    if (!m) return "memory keyspaces() failed: " + m.error().message();
    if (*m != want) return "memory keyspaces():" + describe_names(*m) + "; the model:" + describe_names(want);
    return std::nullopt;
  }

  // A full scan of every keyspace on both stores against the model.
  std::optional<std::string> compare_keyspaces() {
    if (auto e = compare_keyspace_names()) return e;
    for (auto& [name, h] : handles_) {
      const std::string where = " (keyspace " + printable(name) + ")";
      if (auto e = compare_cursors(h.mem.scan(), h.rocks.scan(), key_range::all(), ks_models_.at(name), where.c_str()))
        return e;
    }
    return std::nullopt;
  }

  // An existing keyspace's name, picked by `src` (precondition: one exists).
  template <class Source>
  const std::string& existing_keyspace(Source& src) {
    auto it = handles_.begin();
    std::advance(it, src.pick(static_cast<std::uint32_t>(handles_.size())));
    return it->first;
  }

  template <class Source>
  std::optional<std::string> keyspace_step(Source& src) {
    const std::uint32_t op = src.pick(100);
    // Creates and drops are rare: each is a MANIFEST write (and fsync) on RocksDB.
    if (handles_.empty() || op < 2) return keyspace_create(src);
    if (op < 4) return keyspace_drop(src);
    const std::string name = existing_keyspace(src);
    ks_handles& h = handles_.at(name);
    model& m = ks_models_.at(name);
    const std::string in = " in keyspace " + printable(name);
    const std::string where = " (keyspace " + printable(name) + ")";
    if (op < 30) {  // put
      ++stats_.ks_writes;
      std::string k = key(src), v = value(src);
      note("put " + printable(k) + " = " + printable(v) + in);
      if (auto e = expect_ok(h.mem.put(k, v), "memory", "put" + in)) return e;
      if (auto e = expect_ok(h.rocks.put(k, v), "rocksdb", "put" + in)) return e;
      m[k] = v;
      ks_deadlines_[name].erase(k);
      return std::nullopt;
    }
    if (op < 37) {  // erase
      ++stats_.ks_writes;
      std::string k = key_in(src, m);
      note("erase " + printable(k) + in);
      if (auto e = expect_ok(h.mem.erase(k), "memory", "erase" + in)) return e;
      if (auto e = expect_ok(h.rocks.erase(k), "rocksdb", "erase" + in)) return e;
      m.erase(k);
      return std::nullopt;
    }
    if (op < 41) {  // erase_range
      ++stats_.ks_writes;
      key_range r = range(src);
      note("erase_range " + describe(r) + in);
      auto mr = h.mem.erase_range(r);
      auto rr = h.rocks.erase_range(r);
      if (!erase_range_is_valid(r)) {
        if (auto e = expect_error(mr, errc::invalid_argument, "memory", "erase_range (lower > upper)" + in)) return e;
        return expect_error(rr, errc::invalid_argument, "rocksdb", "erase_range (lower > upper)" + in);
      }
      if (auto e = expect_ok(mr, "memory", "erase_range" + in)) return e;
      if (auto e = expect_ok(rr, "rocksdb", "erase_range" + in)) return e;
      erase_range_in(m, r);
      return compare_cursors(h.mem.scan(), h.rocks.scan(), key_range::all(), m, where.c_str());
    }
    if (op < 53) {  // get + contains
      ++stats_.ks_reads;
      std::string k = key_in(src, m);
      note("get " + printable(k) + in);
      return compare_point_on(h.mem, h.rocks, k, m, where.c_str());
    }
    if (op < 57) {  // multi_get
      ++stats_.ks_reads;
      std::vector<std::string> keys(src.pick(6));
      for (auto& k : keys) k = key_in(src, m);
      note("multi_get of " + std::to_string(keys.size()) + " keys" + in);
      auto mg = h.mem.multi_get(keys);
      auto rg = h.rocks.multi_get(keys);
      if (!mg) return "memory multi_get" + in + " failed: " + mg.error().message();
      if (!rg) return "rocksdb multi_get" + in + " failed: " + rg.error().message();
      if (mg->size() != keys.size() || rg->size() != keys.size()) return "multi_get" + in + ": wrong result count";
      for (std::size_t i = 0; i < keys.size(); ++i) {
        std::optional<std::string> want;
        if (auto it = m.find(keys[i]); it != m.end()) want = it->second;
        if ((*mg)[i] != want || (*rg)[i] != want)
          return "multi_get" + in + ": key " + printable(keys[i]) + " gave memory " + printable_value((*mg)[i]) +
                 ", rocksdb " + printable_value((*rg)[i]) + ", the model " + printable_value(want);
      }
      return std::nullopt;
    }
    if (op < 67) {  // scan
      ++stats_.ks_scans;
      key_range r = range(src);
      note("scan " + describe(r) + in);
      return compare_cursors(h.mem.scan(r), h.rocks.scan(r), r, m, where.c_str());
    }
    if (op < 81) return keyspace_batch(src);
    if (op < 86) return keyspace_snapshot_read(src);
    if (op < 92) return keyspace_stale_call(src);
    if (op < 94) return src.pick(3) == 0 ? keyspace_cursor_across_drop(src, name) : keyspace_stale_call(src);
    if (op < 99 || src.pick(4) != 0) {  // compact is slow on RocksDB: rare
      ++stats_.ks_reads;
      std::string k = key_in(src, m);
      note("get " + printable(k) + in);
      return compare_point_on(h.mem, h.rocks, k, m, where.c_str());
    }
    key_range r = range(src);
    note("compact " + describe(r) + in);
    auto mr = h.mem.compact(r);
    auto rr = h.rocks.compact(r);
    if (!erase_range_is_valid(r)) {
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "compact (lower > upper)" + in)) return e;
      return expect_error(rr, errc::invalid_argument, "rocksdb", "compact (lower > upper)" + in);
    }
    if (auto e = expect_ok(mr, "memory", "compact" + in)) return e;
    if (auto e = expect_ok(rr, "rocksdb", "compact" + in)) return e;
    return compare_cursors(h.mem.scan(), h.rocks.scan(), key_range::all(), m, where.c_str());
  }

  // keyspace(name) of a name that may exist (then the same keyspace, data kept).
  template <class Source>
  std::optional<std::string> keyspace_create(Source& src) {
    ++stats_.ks_creates;
    const auto& names = keyspace_names();
    const std::string name = names[src.pick(static_cast<std::uint32_t>(names.size()))];
    const bool existed = ks_models_.count(name) != 0;
    note("keyspace(" + printable(name) + ")" + (existed ? " (exists)" : ""));
    if (existed) {
      // A second handle reaches the same keyspace: keep the first, check both.
      auto m = memory_->keyspace(name);
      auto r = rocks_->keyspace(name);
      if (!m || !r) return "keyspace(" + printable(name) + ") of an existing keyspace failed";
      const std::string where = " (keyspace " + printable(name) + ", second handle)";
      return compare_cursors(m->scan(), r->scan(), key_range::all(), ks_models_.at(name), where.c_str());
    }
    if (auto e = open_handles(name)) return e;
    ks_models_[name];
    return compare_keyspace_names();
  }

  // drop_keyspace of an existing name, a missing one, or "".
  template <class Source>
  std::optional<std::string> keyspace_drop(Source& src) {
    const std::uint32_t which = src.pick(8);
    if (which == 0 || handles_.empty()) {  // "" or a missing name
      ++stats_.ks_bad_drops;
      std::string name;
      if (which != 0 || src.pick(2)) {
        for (const auto& n : keyspace_names())
          if (!ks_models_.count(n)) name = n;
        if (name.empty()) name = "never";
      }
      note("drop_keyspace(" + printable(name) + ")" + (name.empty() ? " (the default)" : " (missing)"));
      const errc want = name.empty() ? errc::invalid_argument : errc::not_found;
      if (auto e = expect_error(memory_->drop_keyspace(name), want, "memory", "drop_keyspace")) return e;
      if (auto e = expect_error(rocks_->drop_keyspace(name), want, "rocksdb", "drop_keyspace")) return e;
      return compare_keyspace_names();
    }
    ++stats_.ks_drops;
    const std::string name = existing_keyspace(src);
    note("drop_keyspace(" + printable(name) + ")");
    if (auto e = expect_ok(memory_->drop_keyspace(name), "memory", "drop_keyspace")) return e;
    if (auto e = expect_ok(rocks_->drop_keyspace(name), "rocksdb", "drop_keyspace")) return e;
    stale_.push_back(std::move(handles_.at(name)));
    if (stale_.size() > 4) stale_.erase(stale_.begin());
    handles_.erase(name);
    ks_models_.erase(name);
    ks_deadlines_.erase(name);
    return compare_keyspace_names();
  }

  // A batch across "" and several keyspaces; now and then one that names a
  // missing keyspace: not_found, nothing written anywhere.
  template <class Source>
  std::optional<std::string> keyspace_batch(Source& src) {
    ++stats_.ks_batches;
    write_batch b;
    model after = model_;
    std::map<std::string, model> ks_after = ks_models_;
    write_set w;  // of "" (transactions read only "")
    std::string missing;
    if (src.pick(6) == 0) {
      for (const auto& n : keyspace_names())
        if (!ks_models_.count(n)) missing = n;
    }
    const std::uint32_t n = 1 + src.pick(10);
    const std::uint32_t missing_at = missing.empty() ? n : src.pick(n);
    std::vector<std::pair<std::string, std::string>> put_keys;  // (keyspace, key): permanent if written
    std::string text = "batch across keyspaces{";
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string name;
      if (i == missing_at) {
        name = missing;
      } else if (src.pick(3) != 0) {
        name = existing_keyspace(src);
      }
      model& target = name.empty() ? after : (i == missing_at ? after : ks_after.at(name));
      const bool counts = i != missing_at;
      const keyspace_name ks(name);
      const std::string in = name.empty() ? std::string() : "@" + printable(name);
      const std::uint32_t kind = src.pick(8);
      if (kind == 0) {
        key_range r = range(src);
        if (!erase_range_is_valid(r)) r = key_range::all();  // refused batches are the other batch op's subject
        b.erase_range(ks, r);
        if (counts) erase_range_in(target, r);
        if (counts && name.empty()) w.ranges.push_back(r);
        text += " erase_range" + in + " " + describe(r);
      } else if (kind < 3) {
        std::string k = key_in(src, target);
        b.erase(ks, k);
        if (counts) target.erase(k);
        if (counts && name.empty()) w.keys.push_back(k);
        text += " erase" + in + " " + printable(k);
      } else {
        std::string k = key(src), v = value(src);
        b.put(ks, k, v);
        if (counts) target[k] = v;
        if (counts) put_keys.emplace_back(name, k);
        if (counts && name.empty()) w.keys.push_back(k);
        text += " put" + in + " " + printable(k);
      }
    }
    note(text + " }");
    auto mr = memory_->write(b);
    auto rr = rocks_->write(b);
    if (!missing.empty()) {
      ++stats_.ks_refused_batches;
      if (auto e = expect_error(mr, errc::not_found, "memory", "write naming missing keyspace " + printable(missing)))
        return e;
      if (auto e = expect_error(rr, errc::not_found, "rocksdb", "write naming missing keyspace " + printable(missing)))
        return e;
      if (auto e = compare_keyspaces()) return e;
      return compare_scan(key_range::all());
    }
    if (auto e = expect_ok(mr, "memory", "write across keyspaces")) return e;
    if (auto e = expect_ok(rr, "rocksdb", "write across keyspaces")) return e;
    model_ = std::move(after);
    ks_models_ = std::move(ks_after);
    for (const auto& [name, k] : put_keys) deadlines_of(name).erase(k);
    w.what = "batch across keyspaces";
    log_write(std::move(w));
    return std::nullopt;
  }

  // A read of a keyspace through a snapshot: a keyspace that existed when it
  // was taken reads as it was then (memory, also after a drop; RocksDB gives
  // snapshot_expired once it was dropped, docs/keyspaces.md); one created
  // since, through the snapshot: not_found.
  template <class Source>
  std::optional<std::string> keyspace_snapshot_read(Source& src) {
    if (snaps_.empty()) return std::nullopt;
    snap& s = snaps_[src.pick(static_cast<std::uint32_t>(snaps_.size()))];
    const auto& names = keyspace_names();
    const std::string name = names[src.pick(static_cast<std::uint32_t>(names.size()))];
    auto then = s.ks_at.find(name);
    auto now = handles_.find(name);
    const std::string k = key_in(src, then != s.ks_at.end() ? s.ks_state.at(name) : model_);
    const std::string in = " in keyspace " + printable(name);
    if (then != s.ks_at.end()) {
      ++stats_.ks_snapshot_reads;
      const bool dropped = now == handles_.end() || now->second.id != then->second.id;
      const model& state = s.ks_state.at(name);
      note("snapshot get " + printable(k) + in + (dropped ? " (dropped since)" : ""));
      std::optional<std::string> want;
      if (auto it = state.find(k); it != state.end()) want = it->second;
      auto mg = s.mem.get(then->second.mem, k);
      // After a drop: read as it was, or snapshot_expired (snap::mem_reads_dropped).
      const std::optional<bool> reads_on = dropped ? s.mem_reads_dropped : std::optional<bool>(true);
      if (!mg && mg.error() == errc::snapshot_expired && reads_on != true) {
        // RocksDB's rule, as expected (or allowed: the hybrid store moved while the snapshot was taken)
      } else if (reads_on == false) {
        return "memory snapshot get" + in + " after its drop should give snapshot_expired (a snapshot of the " +
               "hybrid store's RocksDB tier), it gave " + (mg ? printable_value(*mg) : mg.error().message());
      } else {
        if (!mg) return "memory snapshot get" + in + " failed: " + mg.error().message();
        if (*mg != want)
          return "memory snapshot get" + in + " of " + printable(k) + " gave " + printable_value(*mg) + ", the model " +
                 printable_value(want);
      }
      auto rg = s.rocks.get(then->second.rocks, k);
      if (dropped) {
        ++stats_.ks_snapshot_after_drop;
        if (rg || rg.error() != errc::snapshot_expired)
          return "rocksdb snapshot get" + in + " after its drop should give snapshot_expired, it gave " +
                 (rg ? printable_value(*rg) : rg.error().message());
        return std::nullopt;
      }
      if (!rg) return "rocksdb snapshot get" + in + " failed: " + rg.error().message();
      if (*rg != want)
        return "rocksdb snapshot get" + in + " of " + printable(k) + " gave " + printable_value(*rg) +
               ", the model " + printable_value(want);
      if (src.pick(2)) {
        key_range r = range(src);
        const std::string where = " (snapshot, keyspace " + printable(name) + ")";
        return compare_cursors(s.mem.scan(then->second.mem, r), s.rocks.scan(then->second.rocks, r), r, state,
                               where.c_str());
      }
      return std::nullopt;
    }
    if (now == handles_.end()) return std::nullopt;
    ++stats_.ks_snapshot_reads;
    note("snapshot get " + printable(k) + in + " (created after the snapshot)");
    auto mg = s.mem.get(now->second.mem, k);
    auto rg = s.rocks.get(now->second.rocks, k);
    if (mg || mg.error() != errc::not_found)
      return "memory snapshot get" + in + " (created after the snapshot) should give not_found, it gave " +
             (mg ? printable_value(*mg) : mg.error().message());
    if (rg || rg.error() != errc::not_found)
      return "rocksdb snapshot get" + in + " (created after the snapshot) should give not_found, it gave " +
             (rg ? printable_value(*rg) : rg.error().message());
    return std::nullopt;
  }

  // A call through a handle to a dropped keyspace: not_found, nothing written.
  template <class Source>
  std::optional<std::string> keyspace_stale_call(Source& src) {
    if (stale_.empty()) return std::nullopt;
    ++stats_.ks_stale_calls;
    ks_handles& h = stale_[src.pick(static_cast<std::uint32_t>(stale_.size()))];
    const std::string k = key(src);
    note("calls through a handle to dropped keyspace " + printable(h.mem.name()));
    if (auto e = expect_error(h.mem.put(k, "stale"), errc::not_found, "memory", "put through a dropped keyspace's handle"))
      return e;
    if (auto e = expect_error(h.rocks.put(k, "stale"), errc::not_found, "rocksdb",
                              "put through a dropped keyspace's handle"))
      return e;
    auto mg = h.mem.get(k);
    auto rg = h.rocks.get(k);
    if (mg || mg.error() != errc::not_found || rg || rg.error() != errc::not_found)
      return "get through a dropped keyspace's handle did not give not_found";
    auto mc = h.mem.scan();
    auto rc = h.rocks.scan();
    if (!mc.error() || mc.error()->code() != errc::not_found || !rc.error() || rc.error()->code() != errc::not_found)
      return "scan through a dropped keyspace's handle did not give not_found";
    // The name may exist again: the stale handle wrote nothing into it.
    return compare_keyspaces();
  }

  // A cursor of keyspace `name` opened, the keyspace dropped, the cursor
  // read: it reads the keyspace as it was when opened (both backends).
  template <class Source>
  std::optional<std::string> keyspace_cursor_across_drop(Source& src, const std::string& name) {
    ++stats_.ks_cursors_across_drop;
    key_range r = range(src);
    note("cursor over " + describe(r) + " in keyspace " + printable(name) + " across its drop");
    ks_handles h = handles_.at(name);
    const model before = ks_models_.at(name);
    auto mcur = h.mem.scan(r);
    auto rcur = h.rocks.scan(r);
    ++stats_.ks_drops;
    if (auto e = expect_ok(memory_->drop_keyspace(name), "memory", "drop_keyspace")) return e;
    if (auto e = expect_ok(rocks_->drop_keyspace(name), "rocksdb", "drop_keyspace")) return e;
    stale_.push_back(std::move(handles_.at(name)));
    if (stale_.size() > 4) stale_.erase(stale_.begin());
    handles_.erase(name);
    ks_models_.erase(name);
    ks_deadlines_.erase(name);
    const std::string where = " (cursor across the drop of keyspace " + printable(name) + ")";
    if (auto e = compare_cursors(std::move(mcur), std::move(rcur), r, before, where.c_str())) return e;
    return compare_keyspace_names();
  }

  // ---- expiry ----

  deadline_map& deadlines_of(const std::string& keyspace) {
    return keyspace.empty() ? deadlines_ : ks_deadlines_[keyspace];
  }

  // A ttl of a few ms; with `bad`, one that must be refused (zero, negative,
  // or, with `huge`, a deadline past what the clock can represent).
  template <class Source>
  std::chrono::milliseconds ttl(Source& src, bool bad, bool huge = true) {
    if (!bad) return std::chrono::milliseconds(1 + src.pick(40));
    switch (src.pick(huge ? 3 : 2)) {
      case 0: return std::chrono::milliseconds(0);
      case 1: return std::chrono::milliseconds(-1 - static_cast<std::int64_t>(src.pick(1000)));
      default: return std::chrono::milliseconds::max();
    }
  }

  // The model after the clock moved: keys whose deadline it reached leave
  // the models of "" and every keyspace. Those of "" count as a write for
  // the conflict model (a live transaction that read one conflicts).
  void expire_due(std::vector<std::string>& expired_keys) {
    const deadline_ms now = clock_.now();
    auto sweep = [&](model& m, deadline_map& d, std::vector<std::string>* keys) {
      for (auto it = d.begin(); it != d.end();) {
        auto found = m.find(it->first);
        if (found == m.end()) {  // stale: erased since
          it = d.erase(it);
          continue;
        }
        if (it->second <= now) {
          ++stats_.expired;
          if (keys) keys->push_back(it->first);
          m.erase(found);
          it = d.erase(it);
          continue;
        }
        ++it;
      }
    };
    sweep(model_, deadlines_, &expired_keys);
    for (auto& [name, d] : ks_deadlines_)
      if (auto m = ks_models_.find(name); m != ks_models_.end()) sweep(m->second, d, nullptr);
    if (expired_keys.empty()) return;
    if (!txs_.empty()) stats_.expired_in_live_tx += expired_keys.size();
    log_write(write_set{expired_keys, {}, "expiry of " + std::to_string(expired_keys.size()) + " keys"});
  }

  // expiry(k) of the store (or the handles of keyspace `keyspace`) on both
  // backends against the model.
  // multi_get of `keys` on both stores against the model; `what` names the
  // check in a failure.
  std::optional<std::string> compare_multi_get(const std::vector<std::string>& keys, const std::string& what) {
    auto mg = memory_->multi_get(keys);
    auto rg = rocks_->multi_get(keys);
    if (!mg) return "memory " + what + " failed: " + mg.error().message();
    if (!rg) return "rocksdb " + what + " failed: " + rg.error().message();
    if (mg->size() != keys.size() || rg->size() != keys.size()) return what + ": wrong result count";
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::optional<std::string> want;
      if (auto it = model_.find(keys[i]); it != model_.end()) want = it->second;
      if ((*mg)[i] != want || (*rg)[i] != want)
        return what + ": key " + std::to_string(i) + " " + printable(keys[i]) + " gave memory " +
               printable_value((*mg)[i]) + ", rocksdb " + printable_value((*rg)[i]) + ", the model " +
               printable_value(want);
    }
    return std::nullopt;
  }

  std::optional<std::string> compare_expiry(const std::string& keyspace, const std::string& k) {
    ++stats_.expiry_reads;
    const model& m = keyspace.empty() ? model_ : ks_models_.at(keyspace);
    const deadline_map& d = deadlines_of(keyspace);
    key_expiry want;
    if (m.count(k)) {
      want.present = true;
      if (auto it = d.find(k); it != d.end()) want.deadline = it->second;
    }
    result<key_expiry> me = keyspace.empty() ? memory_->expiry(k) : handles_.at(keyspace).mem.expiry(k);
    result<key_expiry> re = keyspace.empty() ? rocks_->expiry(k) : handles_.at(keyspace).rocks.expiry(k);
    const std::string in = keyspace.empty() ? std::string() : " in keyspace " + printable(keyspace);
    auto text = [](const key_expiry& e) {
      if (!e.present) return std::string("absent");
      return e.deadline ? "deadline " + std::to_string(*e.deadline) : std::string("permanent");
    };
    if (!me) return "memory expiry" + in + " failed: " + me.error().message();
    if (!re) return "rocksdb expiry" + in + " failed: " + re.error().message();
    const std::string now = " (the clock reads " + std::to_string(clock_.now()) + ")";
    if (*me != want)
      return "memory expiry" + in + " of " + printable(k) + " gave " + text(*me) + ", the model " + text(want) + now;
    if (*re != want)
      return "rocksdb expiry" + in + " of " + printable(k) + " gave " + text(*re) + ", the model " + text(want) + now;
    return std::nullopt;
  }

  // The next deadline of the models after now, if any.
  std::optional<deadline_ms> next_deadline() {
    std::optional<deadline_ms> next;
    auto consider = [&](const model& m, const deadline_map& d) {
      for (const auto& [k, dl] : d)
        if (dl > clock_.now() && m.count(k) && (!next || dl < *next)) next = dl;
    };
    consider(model_, deadlines_);
    for (const auto& [name, d] : ks_deadlines_)
      if (auto m = ks_models_.find(name); m != ks_models_.end()) consider(m->second, d);
    return next;
  }

  template <class Source>
  std::optional<std::string> ttl_step(Source& src) {
    const std::uint32_t op = src.pick(100);
    if (op < 30) return ttl_put(src);
    if (op < 44) return ttl_batch(src);
    if (op < 56) return ttl_tx_put(src);
    if (op < 82) return advance_clock(src);
    if (op < 97) {  // expiry(k), of a key with a deadline half the time
      std::string name;
      if (!handles_.empty() && src.pick(4) == 0) name = existing_keyspace(src);
      const model& m = name.empty() ? model_ : ks_models_.at(name);
      std::string k = key_in(src, m);
      const deadline_map& d = deadlines_of(name);
      if (!d.empty() && src.pick(2)) {
        auto it = d.begin();
        std::advance(it, src.pick(static_cast<std::uint32_t>(std::min<std::size_t>(d.size(), 1 << 16))));
        k = it->first;
      }
      note("expiry " + printable(k) + (name.empty() ? std::string() : " in keyspace " + printable(name)));
      return compare_expiry(name, k);
    }
    // The memory store's sweep: compact() removes the expired entries (on
    // RocksDB, compact() runs the compaction filter: the compact operation
    // of step() does that, with the same weight as before expiry).
    ++stats_.sweeps;
    note("sweep: compact of memory");
    if (auto e = expect_ok(memory_->compact(), "memory", "compact (sweep)")) return e;
    return compare_scan(key_range::all());
  }

  // store.put (or a keyspace's put) with a ttl; now and then a bad ttl.
  template <class Source>
  std::optional<std::string> ttl_put(Source& src) {
    std::string name;
    if (!handles_.empty() && src.pick(4) == 0) name = existing_keyspace(src);
    model& m = name.empty() ? model_ : ks_models_.at(name);
    const std::string k = key_in(src, m), v = value(src);
    const bool bad = src.pick(16) == 0;
    const std::chrono::milliseconds t = ttl(src, bad);
    const std::string in = name.empty() ? std::string() : " in keyspace " + printable(name);
    const std::string where = name.empty() ? std::string() : " (keyspace " + printable(name) + ")";
    note("put " + printable(k) + " = " + printable(v) + " ttl " + std::to_string(t.count()) + " ms" + in);
    const put_options o{t};
    auto mr = name.empty() ? memory_->put(k, v, o) : handles_.at(name).mem.put(k, v, o);
    auto rr = name.empty() ? rocks_->put(k, v, o) : handles_.at(name).rocks.put(k, v, o);
    if (bad) {
      ++stats_.ttl_bad;
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "put with a bad ttl" + in)) return e;
      if (auto e = expect_error(rr, errc::invalid_argument, "rocksdb", "put with a bad ttl" + in)) return e;
      if (auto e = compare_expiry(name, k)) return e;  // nothing written
      return name.empty() ? compare_point_on(*memory_, *rocks_, k, m, where.c_str())
                          : compare_point_on(handles_.at(name).mem, handles_.at(name).rocks, k, m, where.c_str());
    }
    ++stats_.ttl_puts;
    if (auto e = expect_ok(mr, "memory", "put with a ttl" + in)) return e;
    if (auto e = expect_ok(rr, "rocksdb", "put with a ttl" + in)) return e;
    m[k] = v;
    deadlines_of(name)[k] = clock_.now() + t.count();
    if (name.empty()) log_write(write_set{{k}, {}, "put " + printable(k) + " with a ttl"});
    if (src.pick(4) == 0) return compare_expiry(name, k);
    return std::nullopt;
  }

  // A batch across "" and keyspaces of puts with and without ttl, erases
  // and erase_ranges; now and then one bad ttl: nothing written.
  template <class Source>
  std::optional<std::string> ttl_batch(Source& src) {
    ++stats_.ttl_batches;
    write_batch b;
    model after = model_;
    std::map<std::string, model> ks_after = ks_models_;
    std::map<std::string, deadline_map> d_after = ks_deadlines_;
    d_after[""] = deadlines_;
    write_set w;
    const std::uint32_t n = 1 + src.pick(8);
    const std::uint32_t bad_at = src.pick(12) == 0 ? src.pick(n) : n;
    const deadline_ms now = clock_.now();
    std::string text = "batch with ttls{";
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string name;
      if (!handles_.empty() && src.pick(3) == 0) name = existing_keyspace(src);
      model& target = name.empty() ? after : ks_after.at(name);
      deadline_map& d = d_after[name];
      const keyspace_name ks(name);
      const std::string in = name.empty() ? std::string() : "@" + printable(name);
      const std::uint32_t kind = i == bad_at ? 7 : src.pick(8);
      if (kind == 0) {
        key_range r = range(src);
        if (!erase_range_is_valid(r)) r = key_range::all();
        b.erase_range(ks, r);
        erase_range_in(target, r);
        if (name.empty()) w.ranges.push_back(r);
        text += " erase_range" + in + " " + describe(r);
      } else if (kind < 2) {
        std::string k = key_in(src, target);
        b.erase(ks, k);
        target.erase(k);
        if (name.empty()) w.keys.push_back(k);
        text += " erase" + in + " " + printable(k);
      } else {
        std::string k = key_in(src, target), v = value(src);
        if (kind < 4) {
          b.put(ks, k, v);
          d.erase(k);
          text += " put" + in + " " + printable(k);
        } else {
          const std::chrono::milliseconds t = ttl(src, i == bad_at);
          b.put(ks, k, v, put_options{t});
          // A bad ttl (milliseconds::max()) must not overflow here: the
          // batch is refused whole, this deadline is never used.
          d[k] = t.count() > std::numeric_limits<std::int64_t>::max() - now ? std::numeric_limits<std::int64_t>::max()
                                                                             : now + t.count();
          text += " put" + in + " " + printable(k) + " ttl " + std::to_string(t.count());
        }
        target[k] = v;
        if (name.empty()) w.keys.push_back(k);
      }
    }
    note(text + " }");
    auto mr = memory_->write(b);
    auto rr = rocks_->write(b);
    if (bad_at < n) {
      ++stats_.ttl_bad;
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "write with a bad ttl")) return e;
      if (auto e = expect_error(rr, errc::invalid_argument, "rocksdb", "write with a bad ttl")) return e;
      if (auto e = compare_keyspaces()) return e;
      return compare_scan(key_range::all());
    }
    if (auto e = expect_ok(mr, "memory", "write with ttls")) return e;
    if (auto e = expect_ok(rr, "rocksdb", "write with ttls")) return e;
    model_ = std::move(after);
    ks_models_ = std::move(ks_after);
    deadlines_ = std::move(d_after[""]);
    d_after.erase("");
    ks_deadlines_ = std::move(d_after);
    w.what = "batch with ttls";
    log_write(std::move(w));
    return std::nullopt;
  }

  // A live transaction's put with a ttl (counted from its commit); now and
  // then a bad one (zero or negative: refused at once, nothing buffered; a
  // deadline past what the clock holds is found only at commit, so none
  // here).
  template <class Source>
  std::optional<std::string> ttl_tx_put(Source& src) {
    if (txs_.empty()) return tx_begin();
    tx_slot& t = *txs_[src.pick(static_cast<std::uint32_t>(txs_.size()))];
    const std::string k = key_in(src, t.view), v = value(src);
    const bool bad = src.pick(16) == 0;
    const std::chrono::milliseconds ttl_ms = ttl(src, bad, false);
    note(t.name() + " put " + printable(k) + " = " + printable(v) + " ttl " + std::to_string(ttl_ms.count()) + " ms");
    auto mr = t.mem.put(k, v, put_options{ttl_ms});
    auto rr = t.rocks.put(k, v, put_options{ttl_ms});
    if (bad) {
      ++stats_.ttl_bad;
      if (auto e = expect_error(mr, errc::invalid_argument, "memory", "transaction put with a bad ttl")) return e;
      return expect_error(rr, errc::invalid_argument, "rocksdb", "transaction put with a bad ttl");
    }
    ++stats_.ttl_tx_puts;
    if (auto e = expect_ok(mr, "memory", "transaction put with a ttl")) return e;
    if (auto e = expect_ok(rr, "rocksdb", "transaction put with a ttl")) return e;
    t.view[k] = v;
    t.ops.push_back(tx_op::write(tx_op::kind::put, k, v, ttl_ms));
    t.own_keys.insert(k);
    t.writes.keys.push_back(k);
    return std::nullopt;
  }

  // The clock moves: a few ms, exactly to the next deadline, to one ms
  // before it, or past every deadline; then the keys that expired are
  // read on both backends (absent) and, now and then, everything.
  template <class Source>
  std::optional<std::string> advance_clock(Source& src) {
    ++stats_.clock_advances;
    const std::uint32_t how = src.pick(8);
    const auto next = next_deadline();
    deadline_ms to = clock_.now() + 1 + src.pick(16);
    if (how == 0 && next) to = *next;
    if (how == 1 && next && *next - 1 > clock_.now()) to = *next - 1;
    if (how == 2) to = clock_.now() + 1000;
    note("clock +" + std::to_string(to - clock_.now()) + " ms");
    clock_.set(to);
    std::vector<std::string> expired;
    expire_due(expired);
    for (std::size_t i = 0; i < expired.size() && i < 2; ++i) {
      if (auto e = compare_point_on(*memory_, *rocks_, expired[i], model_, " (just expired)")) return e;
      if (auto e = compare_expiry("", expired[i])) return e;
    }
    if (!expired.empty()) {  // multi_get of them (absent) and a live key
      std::vector<std::string> keys(expired.begin(), expired.begin() + std::min<std::ptrdiff_t>(4, std::ssize(expired)));
      if (!model_.empty()) keys.push_back(model_.begin()->first);
      if (auto e = compare_multi_get(keys, "multi_get (just expired)")) return e;
    }
    if (src.pick(8) == 0) {
      if (auto e = compare_keyspaces()) return e;
      return compare_scan(src.pick(2) ? key_range::all() : key_range::all().reversed());
    }
    return std::nullopt;
  }

  // ---- transactions ----

  template <class Source>
  std::optional<std::string> tx_step(Source& src) {
    if (txs_.empty() || (txs_.size() < cfg_.max_live_transactions && src.pick(4) == 0)) return tx_begin();
    const std::size_t index = src.pick(static_cast<std::uint32_t>(txs_.size()));
    tx_slot& t = *txs_[index];
    const std::uint32_t op = src.pick(100);
    if (op < 22) return tx_point_read(src, t);
    if (op < 38) return src.pick(5) == 0 ? tx_held_scan(src, t) : tx_scan(src, t);
    if (op < 58) {  // put
      ++stats_.tx_writes;
      std::string k = key_in(src, t.view), v = value(src);
      note(t.name() + " put " + printable(k) + " = " + printable(v));
      return tx_put(t, k, v);
    }
    if (op < 66) {  // erase
      ++stats_.tx_writes;
      std::string k = key_in(src, t.view);
      note(t.name() + " erase " + printable(k));
      if (auto e = expect_ok(t.mem.erase(k), "memory", "transaction erase")) return e;
      if (auto e = expect_ok(t.rocks.erase(k), "rocksdb", "transaction erase")) return e;
      t.view.erase(k);
      t.ops.push_back(tx_op::write(tx_op::kind::erase, k));
      t.own_keys.insert(k);
      t.writes.keys.push_back(std::move(k));
      return std::nullopt;
    }
    if (op < 72) {  // erase_range
      ++stats_.tx_writes;
      key_range r = range(src);
      note(t.name() + " erase_range " + describe(r));
      auto mr = t.mem.erase_range(r);
      auto rr = t.rocks.erase_range(r);
      if (!erase_range_is_valid(r)) {
        if (auto e = expect_error(mr, errc::invalid_argument, "memory", "transaction erase_range (lower > upper)"))
          return e;
        return expect_error(rr, errc::invalid_argument, "rocksdb", "transaction erase_range (lower > upper)");
      }
      if (auto e = expect_ok(mr, "memory", "transaction erase_range")) return e;
      if (auto e = expect_ok(rr, "rocksdb", "transaction erase_range")) return e;
      if (r.is_empty()) return std::nullopt;  // erases nothing: not a write
      erase_range_in(t.view, r);
      tx_op o;
      o.what = tx_op::kind::erase_range;
      o.range = r;
      t.ops.push_back(std::move(o));
      t.writes.ranges.push_back(r.is_reversed() ? r.reversed() : r);
      return std::nullopt;
    }
    if (op < 92) return tx_commit(index);
    // rollback(), or the destructor
    ++stats_.tx_rolled_back;
    ++open_counts_.rolled_back;
    const bool explicit_rollback = src.pick(2) != 0;
    note(t.name() + (explicit_rollback ? " rollback" : " destroyed"));
    if (explicit_rollback) {
      t.mem.rollback();
      t.rocks.rollback();
      if (t.mem.is_active() || t.rocks.is_active()) return std::string("a transaction is active after rollback()");
      if (auto e = expect_finished(t)) return e;
    }
    txs_.erase(txs_.begin() + static_cast<std::ptrdiff_t>(index));
    return std::nullopt;
  }

  std::optional<std::string> tx_begin() {
    ++stats_.tx_begun;
    ++open_counts_.begun;
    const bool in_memory_tier = is_hybrid && !primary_in_rocksdb();  // before it begins: a move may come between
    auto slot = std::unique_ptr<tx_slot>(
        new tx_slot{++tx_ids_, memory_->transaction(), rocks_->transaction(), log_.size(), model_, {}, {}, {}, {}});
    slot->begun_in_memory_tier = in_memory_tier;
    note(slot->name() + " begin");
    if (!slot->mem.is_active()) return std::string("memory transaction() on an open store is not active");
    if (!slot->rocks.is_active()) return std::string("rocksdb transaction() on an open store is not active");
    txs_.push_back(std::move(slot));
    return std::nullopt;
  }

  std::optional<std::string> tx_put(tx_slot& t, const std::string& k, const std::string& v) {
    if (auto e = expect_ok(t.mem.put(k, v), "memory", "transaction put")) return e;
    if (auto e = expect_ok(t.rocks.put(k, v), "rocksdb", "transaction put")) return e;
    t.view[k] = v;
    t.ops.push_back(tx_op::write(tx_op::kind::put, k, v));
    t.own_keys.insert(k);
    t.writes.keys.push_back(k);
    return std::nullopt;
  }

  template <class Source>
  std::optional<std::string> tx_point_read(Source& src, tx_slot& t) {
    ++stats_.tx_reads;
    std::string k = key_in(src, t.view);
    const bool use_get = src.pick(2) != 0;
    note(t.name() + (use_get ? " get " : " contains ") + printable(k));
    std::optional<std::string> want;
    if (auto it = t.view.find(k); it != t.view.end()) want = it->second;
    tx_op o;
    o.key = k;
    if (use_get) {
      auto mg = t.mem.get(k);
      auto rg = t.rocks.get(k);
      if (!mg) return "memory transaction get failed: " + mg.error().message();
      if (!rg) return "rocksdb transaction get failed: " + rg.error().message();
      if (*mg != want)
        return "memory transaction get of " + printable(k) + " gave " + printable_value(*mg) + ", the model " +
               printable_value(want);
      if (*rg != want)
        return "rocksdb transaction get of " + printable(k) + " gave " + printable_value(*rg) + ", the model " +
               printable_value(want);
      o.what = tx_op::kind::get;
      o.got = want;
    } else {
      auto mc = t.mem.contains(k);
      auto rc = t.rocks.contains(k);
      if (!mc) return "memory transaction contains failed: " + mc.error().message();
      if (!rc) return "rocksdb transaction contains failed: " + rc.error().message();
      if (*mc != want.has_value() || *rc != want.has_value())
        return "transaction contains of " + printable(k) + " gave memory " + (*mc ? "true" : "false") +
               ", rocksdb " + (*rc ? "true" : "false") + ", the model " + (want ? "true" : "false");
      o.what = tx_op::kind::contains;
      o.found = want.has_value();
    }
    if (!t.own(k)) t.reads.keys.insert(k);
    t.ops.push_back(std::move(o));
    return std::nullopt;
  }

  // A scan run to the end or stopped after a few entries.
  template <class Source>
  std::optional<std::string> tx_scan(Source& src, tx_slot& t) {
    ++stats_.tx_scans;
    static const std::size_t limits[] = {1, 2, 3, 8, std::numeric_limits<std::size_t>::max()};
    const key_range r = range(src);
    const std::size_t limit = limits[src.pick(5)];
    note(t.name() + " scan " + describe(r) +
         (limit == std::numeric_limits<std::size_t>::max() ? std::string() : " (at most " + std::to_string(limit) + ")"));
    entries got_m, got_r;
    bool ended_m = false, ended_r = false;
    {
      auto mc = t.mem.scan(r);
      auto rc = t.rocks.scan(r);
      if (auto e = take(mc, limit, got_m, ended_m)) return "memory transaction scan failed: " + e->message();
      if (auto e = take(rc, limit, got_r, ended_r)) return "rocksdb transaction scan failed: " + e->message();
    }  // the cursors go: a pass stopped early records how far it went
    return tx_check_scan(t, r, limit, got_m, ended_m, got_r, ended_r, t.view);
  }

  // A scan opened, read partly, then this transaction and the store written,
  // then read to the end: the cursor sees the transaction's view and writes
  // as they were when it was opened.
  template <class Source>
  std::optional<std::string> tx_held_scan(Source& src, tx_slot& t) {
    ++stats_.tx_held_scans;
    const key_range r = range(src);
    const std::size_t first_part = 1 + src.pick(3);
    std::string tk = key_in(src, t.view), tv = value(src), sk = key(src), sv = value(src);
    note(t.name() + " held scan " + describe(r) + " across " + t.name() + " put " + printable(tk) +
         " and a store put " + printable(sk));
    const model as_opened = t.view;
    const std::size_t op_index = t.ops.size();
    t.ops.emplace_back();  // the scan comes before the put in the serial run
    entries got_m, got_r;
    bool ended_m = false, ended_r = false;
    {
      auto mc = t.mem.scan(r);
      auto rc = t.rocks.scan(r);
      if (auto e = take(mc, first_part, got_m, ended_m)) return "memory transaction scan failed: " + e->message();
      if (auto e = take(rc, first_part, got_r, ended_r)) return "rocksdb transaction scan failed: " + e->message();
      if (auto e = tx_put(t, tk, tv)) return e;
      if (auto e = expect_ok(memory_->put(sk, sv), "memory", "put")) return e;
      if (auto e = expect_ok(rocks_->put(sk, sv), "rocksdb", "put")) return e;
      model_[sk] = sv;
      deadlines_.erase(sk);
      log_write(write_set{{sk}, {}, "put " + printable(sk)});
      if (!ended_m) mc.advance();
      if (!ended_r) rc.advance();
      constexpr std::size_t all = std::numeric_limits<std::size_t>::max();
      if (auto e = take(mc, all, got_m, ended_m)) return "memory transaction scan failed: " + e->message();
      if (auto e = take(rc, all, got_r, ended_r)) return "rocksdb transaction scan failed: " + e->message();
    }
    // Checked as one pass over the view as opened, to the end.
    return tx_check_scan(t, r, std::numeric_limits<std::size_t>::max(), got_m, ended_m, got_r, ended_r, as_opened,
                         op_index);
  }

  std::optional<std::string> tx_check_scan(tx_slot& t, const key_range& r, std::size_t limit, entries& got_m,
                                           bool ended_m, const entries& got_r, bool ended_r, const model& seen_from,
                                           std::optional<std::size_t> op_index = std::nullopt) {
    entries want = expected_scan(seen_from, r);
    const bool want_ended = want.size() < limit;
    if (want.size() > limit) want.resize(limit);
    if (got_m != want || ended_m != want_ended)
      return "memory transaction scan of " + describe(r) + " gave " + std::to_string(got_m.size()) + " entries" +
             (ended_m ? " to the end" : "") + ", the model " + std::to_string(want.size()) +
             (want_ended ? " to the end" : "");
    if (got_r != want || ended_r != want_ended)
      return "rocksdb transaction scan of " + describe(r) + " gave " + std::to_string(got_r.size()) + " entries" +
             (ended_r ? " to the end" : "") + ", the model " + std::to_string(want.size()) +
             (want_ended ? " to the end" : "");
    if (!r.is_empty()) t.reads.ranges.push_back(scanned_part(r, want_ended, want.empty() ? "" : want.back().first));
    tx_op o;
    o.what = tx_op::kind::scan;
    o.range = r;
    o.limit = limit;
    o.seen = std::move(got_m);
    o.ended = want_ended;
    if (op_index)
      t.ops[*op_index] = std::move(o);
    else
      t.ops.push_back(std::move(o));
    return std::nullopt;
  }

  // After commit or rollback: inactive, and its calls report errc::closed.
  std::optional<std::string> expect_finished(tx_slot& t) {
    if (t.mem.is_active() || t.rocks.is_active()) return t.name() + " is still active";
    if (auto e = expect_error(t.mem.put("x", "y"), errc::closed, "memory", "put on a finished transaction")) return e;
    if (auto e = expect_error(t.rocks.put("x", "y"), errc::closed, "rocksdb", "put on a finished transaction"))
      return e;
    auto mg = t.mem.get("x");
    auto rg = t.rocks.get("x");
    if (mg || mg.error() != errc::closed || rg || rg.error() != errc::closed)
      return "get on a finished transaction " + t.name() + " did not report closed";
    return std::nullopt;
  }

  std::optional<std::string> tx_commit(std::size_t index) {
    tx_slot& t = *txs_[index];
    const bool wrote = !t.writes.keys.empty() || !t.writes.ranges.empty();
    // The model's prediction: the first later commit that touches its reads.
    std::optional<std::size_t> culprit;
    if (wrote) {
      for (std::size_t i = t.begin_log; i < log_.size() && !culprit; ++i)
        if (touches(log_[i], t.reads)) culprit = i;
    }
    auto mr = t.mem.commit();
    auto rr = t.rocks.commit();
    auto outcome = [](const result<void>& r) -> std::string {
      if (r) return "committed";
      if (r.error() == errc::conflict) return "conflict";
      return "error: " + r.error().message();
    };
    std::string mo = outcome(mr);
    const std::string ro = outcome(rr);
    note(t.name() + " commit (" + std::to_string(t.ops.size()) + " operations, " + std::to_string(t.reads.keys.size()) +
         " keys and " + std::to_string(t.reads.ranges.size()) + " ranges read" + (wrote ? "" : ", read only") +
         "): " + mo);
    // A hybrid store's transaction begun in its memory tier that commits
    // after the move conflicts if it read anything, when the memory tier
    // held deadlines (docs/expiry.md, "Hybrid": keys expired before the move
    // are not in RocksDB to check). The harness allows that conflict when
    // the model predicts a commit, and writes what RocksDB committed into the
    // hybrid store, so that the two hold the same data again.
    const bool across_move = t.begun_in_memory_tier && primary_in_rocksdb();  // the tier after the commit
    if (across_move) ++stats_.tx_across_move;
    if (across_move && wrote && mo == "conflict" && ro == "committed" && !culprit &&
        (!t.reads.keys.empty() || !t.reads.ranges.empty())) {
      ++stats_.tx_move_conflicts;
      ++open_counts_.move_conflicts;
      note(t.name() + ": conflict on the hybrid store for the move alone; its writes written there as a batch");
      if (auto e = expect_ok(memory_->write(tx_writes_as_batch(t)), "memory", t.name() + "'s writes as a batch"))
        return e;
      mo = "committed";
    }
    if (mo != "committed" && mo != "conflict") return "memory " + t.name() + " commit failed: " + mo;
    if (ro != "committed" && ro != "conflict") return "rocksdb " + t.name() + " commit failed: " + ro;
    if (mo != ro) return t.name() + " commit: memory " + mo + ", rocksdb " + ro + " (the backends disagree)";
    if (mo == "conflict" && !culprit)
      return t.name() + " commit: unjustified conflict: no commit since it began wrote a key it read or into a " +
             "part of a range it scanned (" + describe_reads(t.reads) + ")";
    if (mo == "committed" && culprit)
      return t.name() + " commit: committed, but a later commit, " + log_[*culprit].what + ", touched its reads (" +
             describe_reads(t.reads) + ")";
    if (auto e = expect_finished(t)) return e;
    if (mo == "conflict") {
      ++stats_.tx_conflicts;
      ++open_counts_.conflicts;
    } else {
      ++open_counts_.committed;
      if (wrote) {
        ++stats_.tx_committed;
        if (!t.reads.keys.empty() || !t.reads.ranges.empty()) ++stats_.tx_committed_after_reads;
        model serial = model_;
        if (auto e = replay(t.ops, serial))
          return t.name() + " committed, but it read something a serial run in commit order does not: " + *e;
        model_ = std::move(serial);
        // Its ttls count from the commit (the clock does not move meanwhile).
        for (const auto& o : t.ops) {
          if (o.what != tx_op::kind::put) continue;
          if (o.ttl)
            deadlines_[o.key] = clock_.now() + o.ttl->count();
          else
            deadlines_.erase(o.key);
        }
        t.writes.what = t.name() + "'s commit";
        write_set w = std::move(t.writes);
        txs_.erase(txs_.begin() + static_cast<std::ptrdiff_t>(index));
        log_write(std::move(w));
        return compare_scan(key_range::all());
      }
      ++stats_.tx_committed_read_only;
    }
    txs_.erase(txs_.begin() + static_cast<std::ptrdiff_t>(index));
    return std::nullopt;
  }

  // A transaction's writes, in order, as one batch (ttls count from its write).
  static write_batch tx_writes_as_batch(const tx_slot& t) {
    write_batch b;
    for (const auto& o : t.ops) {
      switch (o.what) {
        case tx_op::kind::put:
          if (o.ttl)
            b.put(o.key, o.value, put_options{*o.ttl});
          else
            b.put(o.key, o.value);
          break;
        case tx_op::kind::erase: b.erase(o.key); break;
        case tx_op::kind::erase_range: b.erase_range(o.range.is_reversed() ? o.range.reversed() : o.range); break;
        default: break;
      }
    }
    return b;
  }

  static std::string describe_reads(const read_set& r) {
    std::string s = "keys read:";
    std::size_t n = 0;
    for (const auto& k : r.keys) {
      if (++n > 6) {
        s += " ...";
        break;
      }
      s += " " + printable(k);
    }
    s += "; ranges scanned:";
    for (const auto& rr : r.ranges) s += " " + describe(rr);
    return s;
  }

  // Close both stores with live transactions, snapshots and cursors, check
  // that everything then reports closed, and reopen: RocksDB keeps its data,
  // memory does not (then it is loaded from the model).
  std::optional<std::string> reopen() {
    ++stats_.reopens;
    note("close + reopen (" + std::to_string(txs_.size()) + " live transactions)");
    if (auto e = check_tx_stats()) return e;
    auto mcur = memory_->scan();
    auto rcur = rocks_->scan();
    if (auto e = expect_ok(memory_->close(), "memory", "close")) return e;
    if (auto e = expect_ok(rocks_->close(), "rocksdb", "close")) return e;
    if (memory_->is_open() || rocks_->is_open()) return std::string("a store is open after close");
    if (memory_->get("a").error() != errc::closed || rocks_->get("a").error() != errc::closed)
      return std::string("get after close did not report closed");
    for (auto& s : snaps_) {
      auto mg = s.mem.get("a");
      auto rg = s.rocks.get("a");
      if (mg || mg.error() != errc::closed || rg || rg.error() != errc::closed)
        return std::string("a snapshot read after close did not report closed");
    }
    for (const auto& e : mcur) (void)e;
    for (const auto& e : rcur) (void)e;
    if (!mcur.error() || mcur.error()->code() != errc::closed) {
      // An empty store gives a cursor that is done at once: no error then.
      if (!model_.empty()) return std::string("memory cursor after close did not report closed");
    }
    if (!rcur.error() || rcur.error()->code() != errc::closed) {
      if (!model_.empty()) return std::string("rocksdb cursor after close did not report closed");
    }
    // Live transactions: reads and commit report closed, nothing is written.
    for (auto& t : txs_) {
      ++stats_.tx_closed;
      auto mg = t->mem.get("a");
      auto rg = t->rocks.get("a");
      if (mg || mg.error() != errc::closed || rg || rg.error() != errc::closed)
        return t->name() + ": a transaction read after close did not report closed";
      if (auto e = expect_error(t->mem.commit(), errc::closed, "memory", t->name() + " commit after close")) return e;
      if (auto e = expect_error(t->rocks.commit(), errc::closed, "rocksdb", t->name() + " commit after close"))
        return e;
    }
    // Keyspace handles, current and stale: closed.
    for (auto& [name, h] : handles_) {
      auto mg = h.mem.get("a");
      auto rg = h.rocks.get("a");
      if (mg || mg.error() != errc::closed || rg || rg.error() != errc::closed)
        return "a read through a handle to keyspace " + printable(name) + " after close did not report closed";
    }
    for (auto& h : stale_) {
      if (auto e = expect_error(h.mem.put("a", "b"), errc::closed, "memory", "put through a stale handle after close"))
        return e;
      if (auto e = expect_error(h.rocks.put("a", "b"), errc::closed, "rocksdb", "put through a stale handle after close"))
        return e;
    }
    txs_.clear();
    log_.clear();
    snaps_.clear();
    handles_.clear();
    stale_.clear();
    rocks_.reset();
    memory_.reset();
    open_counts_ = {};
    if (auto e = open_rocks()) return e;
    if (auto e = open_memory()) return "reopen: " + *e;
    if (is_hybrid || cfg_.memory == config::memory_kind::persisted) {  // it kept its data, deadlines and keyspaces
      for (const auto& [name, m] : ks_models_)
        if (auto e = open_handles(name)) return e;
      if (auto e = compare_keyspaces()) return e;
      if (!deadlines_.empty())
        if (auto e = compare_expiry("", deadlines_.begin()->first)) return e;
      return compare_scan(key_range::all());
    }
    auto fresh = drain(memory_->scan());
    if (!fresh || !fresh->empty()) return std::string("the memory store is not empty after reopen");
    // RocksDB keeps its keyspaces (column families); the memory store starts
    // with "" alone and is loaded, every keyspace in one batch.
    auto names_m = memory_->keyspaces();
    if (!names_m || *names_m != std::vector<std::string>{""})
      return std::string("the memory store has keyspaces besides \"\" after reopen");
    if (auto e = compare_keyspace_names(false)) return e;
    // Keys with a deadline are loaded with what is left of their ttl (more
    // than 0: the model holds no key whose deadline has passed).
    write_batch load;
    auto load_one = [&](const std::string& name, const std::string& k, const std::string& v) {
      const deadline_map& d = deadlines_of(name);
      if (auto it = d.find(k); it != d.end())
        load.put(keyspace_name(name), k, v, put_options{std::chrono::milliseconds(it->second - clock_.now())});
      else
        load.put(keyspace_name(name), k, v);
    };
    for (const auto& [k, v] : model_) load_one("", k, v);
    for (const auto& [name, m] : ks_models_) {
      if (auto e = open_handles(name)) return e;
      for (const auto& [k, v] : m) load_one(name, k, v);
    }
    if (auto e = expect_ok(memory_->write(load), "memory", "load after reopen")) return e;
    if (auto e = compare_keyspaces()) return e;
    return compare_scan(key_range::all());
  }

  config cfg_;
  fake_clock clock_;                             // what both stores read; only the harness moves it
  deadline_map deadlines_;                       // of model_
  std::map<std::string, deadline_map> ks_deadlines_;  // of ks_models_, by keyspace name
  std::map<std::string, model> ks_models_;       // every keyspace but "" that exists, by name
  std::map<std::string, ks_handles> handles_;    // their handles
  std::vector<ks_handles> stale_;                // handles of dropped keyspaces (the latest few)
  std::uint64_t ks_ids_ = 0;
  std::optional<Primary> memory_;
  std::optional<rocks_store> rocks_;
  model model_;
  std::vector<snap> snaps_;
  std::vector<std::unique_ptr<tx_slot>> txs_;
  std::vector<write_set> log_;  // commits while transactions were live, in commit order
  tx_counts open_counts_;
  std::uint64_t tx_ids_ = 0;
  std::deque<std::string> recent_;
  stats stats_;
  std::uint64_t counter_ = 0;
  bool in_rocksdb_ = false;   // hybrid_harness: the move was seen
  std::uint64_t move_op_ = 0;
};

using harness = basic_harness<memory_store>;
using hybrid_harness = basic_harness<hybrid_store>;

}  // namespace keel::test::differential
