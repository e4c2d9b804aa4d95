// keel: the hybrid store, HybridPolicy<Small, Large> and hybrid_store:
// memory while the data is small, RocksDB once it is large, one path.
//
//   auto store = keel::hybrid_store::open({.path = "data/app"});
//
// The store starts as a persisted memory store (every write in a log before
// it is acknowledged, like memory_options::persist_path). Once the memory
// tier holds more than hybrid_options::spill_bytes, a background thread of
// the store moves the data to RocksDB, online: readers and writers keep
// working, snapshots and cursors taken before keep reading their version. It
// never moves back (docs/hybrid.md says why).
//
// On-disk layout under hybrid_options::path (docs/hybrid.md):
//   keel.lock        fcntl lock (LockFileEx on Windows) held while the store is
//                    open, whatever the tier: one process per path. Never deleted.
//   TIER             "memory" or "rocksdb": which tier holds the data. Replaced
//                    atomically (written aside, synced, renamed, directory
//                    synced): its rename is the commit point of the move.
//   memory/store     the memory tier (memory_options::persist_path), with its
//                    logs store.wal-<gen> and its lock store.lock
//   rocksdb/         the RocksDB tier
// Open reads TIER. "memory" (or no TIER: a new store): a rocksdb/ directory is
// what a move that did not commit left (a crash, a failed move); it is
// removed, the memory tier has every write. "rocksdb": memory files are what
// a committed move had not removed yet; they are removed. Either way one
// complete store is opened, and nothing is seen twice or missing.
//
// The move: (1) with writers held off for an instant, take a snapshot of the
// memory tier and start recording the keys and ranges written from then on;
// (2) open RocksDB in rocksdb/ and copy the snapshot into it in batches,
// while readers and writers go on in memory; (3) copy what the recorded keys
// and ranges hold now, in rounds, until little is left; (4) with readers and
// writers held off: copy the rest, sync RocksDB's WAL, replace TIER
// (commit), route every later call to RocksDB; (5) release the memory tier:
// its files are removed, its data is freed once the snapshots and cursors
// that read it are gone.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "detail/background_worker.hpp"
#include "detail/conflict_tracker.hpp"
#include "detail/file_lock.hpp"
#include "detail/platform_file.hpp"
#include "detail/writer_preferring_gate.hpp"
#include "memory.hpp"
#include "rocksdb.hpp"
#include "store.hpp"

namespace keel {

struct hybrid_options {
  // The store's directory (created with missing parents). Required.
  std::filesystem::path path{};
  // Bytes held by the memory tier (what store_stats::size_bytes of a memory
  // store counts: keys, values as held, per-entry header) past which the data
  // moves to RocksDB. Default 64 MiB: a memory store folds its log into a
  // snapshot file that it rewrites whole, so the cost of a fold (and the RAM
  // the data takes) grows with the store, while RocksDB writes only what
  // changed; at 64 MiB a fold takes well under a second and the data still
  // fits any machine keel runs on (docs/hybrid.md has the measurements).
  // 0: move at the first check (mostly for tests).
  std::size_t spill_bytes = std::size_t{64} << 20;
  // Every write is synced before it is acknowledged, in either tier (memory:
  // fdatasync of its log with group commit; RocksDB: WriteOptions::sync), so
  // a power loss loses nothing acknowledged. Default false: a process crash
  // loses nothing acknowledged, a machine crash may lose the latest writes.
  bool sync_writes = false;
  // Compression of the memory tier's values (memory_options::compression).
  keel::compression compression = keel::compression::none;
};

// What HybridPolicy asks of its tiers, besides store_policy:
//   Small (the tier the store starts in; MemoryPolicy):
//     options::persist_path, options::sync_writes, options::compression
//     result<void> release_persistence()   seal and unlock its files, keep
//                                          serving the snapshots taken before
//     std::size_t memory_bytes() const     bytes held (may be O(n))
//     result<void> flush()
//   Large (the tier it moves to; RocksPolicy):
//     options::path, options::sync_writes
//     result<void> flush()                 make every acknowledged write durable
template <class S>
concept hybrid_small_tier = store_policy<S> && requires(S& s, const S& cs, typename S::options& o) {
  o.persist_path = std::filesystem::path();
  o.sync_writes = true;
  o.compression = compression::none;
  { s.release_persistence() } -> std::same_as<result<void>>;
  { cs.memory_bytes() } -> std::convertible_to<std::size_t>;
  { s.flush() } -> std::same_as<result<void>>;
};
template <class L>
concept hybrid_large_tier = store_policy<L> && requires(L& l, typename L::options& o) {
  o.path = std::filesystem::path();
  o.sync_writes = true;
  { l.flush() } -> std::same_as<result<void>>;
};

namespace detail {

// The steps of a move, in order, for tests: a hook set here is called at
// each (from the thread running the move); a crash test makes it end the
// process there.
enum class hybrid_move_step {
  copied,     // the snapshot taken at the start is in RocksDB
  caught_up,  // the rounds outside the gate are done
  synced,     // the last round copied, RocksDB's WAL synced; TIER not replaced yet (readers and writers held)
  committed,  // TIER names rocksdb; the memory tier's files not removed yet
  released,   // the memory tier released, its files removed
};
inline std::atomic<void (*)(hybrid_move_step)>& hybrid_move_hook() {
  static std::atomic<void (*)(hybrid_move_step)> hook{nullptr};
  return hook;
}
inline void hybrid_move_reached(hybrid_move_step step) {
  if (auto hook = hybrid_move_hook().load()) hook(step);
}

// The files of a hybrid store under its path.
struct hybrid_layout {
  std::filesystem::path root;
  std::filesystem::path lock() const { return root / "keel.lock"; }
  std::filesystem::path tier() const { return root / "TIER"; }
  std::filesystem::path memory_dir() const { return root / "memory"; }
  std::filesystem::path memory_file() const { return memory_dir() / "store"; }
  std::filesystem::path rocksdb_dir() const { return root / "rocksdb"; }

  // The tier named by TIER; nullopt when there is no TIER.
  result<std::optional<std::string>> read_tier() const {
    std::error_code ec;
    if (!std::filesystem::exists(tier(), ec)) {
      if (ec) return keel::error(errc::io_error, "hybrid store: cannot stat '" + path_text(tier()) + "': " + ec.message());
      return std::optional<std::string>();
    }
    auto text = log_io::read_all(tier());
    if (!text) return text.error();
    std::string t = std::move(*text);
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    if (t != "memory" && t != "rocksdb") {
      return keel::error(errc::corruption, "hybrid store: '" + path_text(tier()) + "' names no tier (\"" + t.substr(0, 40) +
                                               "\"; expected \"memory\" or \"rocksdb\"); nothing was changed");
    }
    return std::optional<std::string>(std::move(t));
  }

  // Replaces TIER atomically and durably. Returns the error and whether the
  // rename happened (after it, TIER may name the new tier even though the
  // call failed: the directory sync did not succeed).
  result<void> write_tier(std::string_view name, bool& renamed) const {
    renamed = false;
    const auto aside = root / ("TIER.tmp-" + std::to_string(current_process_id()));
    {
      file f;
      if (auto e = f.create(aside)) return os_error(e, "hybrid store: cannot create '" + path_text(aside) + "'");
      const std::string text = std::string(name) + "\n";
      if (auto e = f.write_all(text.data(), text.size())) {
        remove_file(aside);
        return os_error(e, "hybrid store: cannot write '" + path_text(aside) + "'");
      }
      if (auto e = f.sync()) {
        remove_file(aside);
        return os_error(e, "hybrid store: cannot sync '" + path_text(aside) + "'");
      }
    }
    if (auto e = replace_file(aside, tier())) {
      remove_file(aside);
      return os_error(e, "hybrid store: cannot rename '" + path_text(aside) + "' to '" + path_text(tier()) + "'");
    }
    renamed = true;
    return sync_directory(root);
  }

  // Removes what the memory tier wrote (snapshot, logs, temporaries); its
  // lock file stays (lock files are never deleted). Errors are ignored: the
  // next open removes what is left.
  void remove_memory_files() const noexcept {
    try {
      std::error_code ec;
      for (std::filesystem::directory_iterator it(memory_dir(), ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename() == "store.lock") continue;
        std::error_code rm;
        std::filesystem::remove(it->path(), rm);
      }
      (void)sync_directory(memory_dir());
    } catch (...) {
    }
  }
  bool has_memory_data() const {
    std::error_code ec;
    for (std::filesystem::directory_iterator it(memory_dir(), ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().filename() != "store.lock") return true;
    }
    return false;
  }
};

}  // namespace detail

// ---------------------------------------------------------------------------
// HybridPolicy<Small, Large>: see store.hpp for the contract and the top of
// this file for the tiers, the layout and the move.
//
// Thread safety: every member may be called concurrently, close() included.
// Calls hold a shared lock that pins the tier for their duration; the move
// takes it exclusively only for its last step (copying what was written
// during the move's final round, syncing, replacing TIER). Transactions are
// validated by the hybrid store itself (detail::conflict_tracker), so a
// transaction begun before the move commits after it with the same rules.
// During a move, writers also note the keys they wrote (one set insert).
// Errors: open() gives the tiers' errors (lock_held_by_other_process with the
// holder's PID, whichever tier the data is in, since keel.lock is taken
// first; already_open_in_process), errc::corruption when TIER names no tier
// or names rocksdb and rocksdb/ is missing, invalid_argument without a path.
// ---------------------------------------------------------------------------
template <class Small, class Large>
class HybridPolicy : public std::enable_shared_from_this<HybridPolicy<Small, Large>> {
  static_assert(hybrid_small_tier<Small>, "Small does not meet keel::hybrid_small_tier");
  static_assert(hybrid_large_tier<Large>, "Large does not meet keel::hybrid_large_tier");
  struct private_tag {};

 public:
  using options = hybrid_options;
  static constexpr keel::backend backend_kind = keel::backend::hybrid;
  enum class tier { small, large };

  // ---- cursor: the cursor of the tier it was taken from -------------------
  class cursor_type {
   public:
    bool valid() const {
      return std::visit([](const auto& c) { return c.valid(); }, c_);
    }
    std::string_view key() const {
      return std::visit([](const auto& c) { return std::string_view(c.key()); }, c_);
    }
    std::string_view value() const {
      return std::visit([](const auto& c) { return std::string_view(c.value()); }, c_);
    }
    void next() {
      std::visit([](auto& c) { c.next(); }, c_);
    }
    const std::optional<keel::error>& error() const {
      return std::visit([](const auto& c) -> const std::optional<keel::error>& { return c.error(); }, c_);
    }

   private:
    friend class HybridPolicy;
    explicit cursor_type(typename Small::cursor_type c) : c_(std::in_place_index<0>, std::move(c)) {}
    explicit cursor_type(typename Large::cursor_type c) : c_(std::in_place_index<1>, std::move(c)) {}
    std::variant<typename Small::cursor_type, typename Large::cursor_type> c_;
  };

  // ---- snapshot: the snapshot of the tier it was taken from ---------------
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      return std::visit([&](const auto& s) { return s.get(key); }, s_);
    }
    result<bool> contains(std::string_view key) const {
      return std::visit([&](const auto& s) { return s.contains(key); }, s_);
    }
    cursor_type scan(const key_range& range) const {
      return std::visit([&](const auto& s) { return cursor_type(s.scan(range)); }, s_);
    }

   private:
    friend class HybridPolicy;
    explicit snapshot_type(typename Small::snapshot_type s) : s_(std::in_place_index<0>, std::move(s)) {}
    explicit snapshot_type(typename Large::snapshot_type s) : s_(std::in_place_index<1>, std::move(s)) {}
    std::variant<typename Small::snapshot_type, typename Large::snapshot_type> s_;
  };

  // ---- store ----------------------------------------------------------------
  static result<std::shared_ptr<HybridPolicy>> open(const options& opts) {
    if (opts.path.empty()) return keel::error(errc::invalid_argument, "hybrid store: hybrid_options::path is empty");
    const detail::hybrid_layout layout{opts.path};
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
    if (*named == std::optional<std::string>("rocksdb")) {
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
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->put(key, value) : small_->put(key, value);
    noted(r, key, key.size() + value.size());
    return r;
  }
  result<void> erase(std::string_view key) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->erase(key) : small_->erase(key);
    noted(r, key, key.size());
    return r;
  }
  result<void> write(const write_batch& batch) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->write(batch) : small_->write(batch);
    noted(r, batch);
    return r;
  }
  result<void> erase_range(const key_range& range) {
    std::shared_lock pin(tier_gate_);
    std::shared_lock writing(write_gate_);
    auto r = tier_ == tier::large ? large_->erase_range(range) : small_->erase_range(range);
    if (r || r.error() != errc::invalid_argument) {
      if (moving_ || conflicts_->recording()) record({}, {range});
    }
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
    return tier_ == tier::large ? cursor_type(large_->scan(range)) : cursor_type(small_->scan(range));
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(Small::failed_cursor(std::move(e))); }
  result<snapshot_type> snapshot() const {
    std::shared_lock pin(tier_gate_);
    return snapshot_pinned();
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
    std::error_code ec;
    const detail::hybrid_layout copy{path};
    auto fail = [&](keel::error e) {
      std::error_code rm;
      std::filesystem::remove_all(path, rm);
      return e;
    };
    if (!std::filesystem::create_directory(path, ec) || ec)
      return keel::error(errc::io_error, "checkpoint: cannot create '" + detail::path_text(path) + "': " + ec.message());
    result<void> r;
    if (tier_ == tier::large) {
      r = large_->checkpoint(copy.rocksdb_dir());
    } else {
      std::filesystem::create_directory(copy.memory_dir(), ec);
      r = ec ? result<void>(keel::error(errc::io_error, "checkpoint: cannot create '" +
                                                             detail::path_text(copy.memory_dir()) + "': " + ec.message()))
             : small_->checkpoint(copy.memory_file());
    }
    if (!r) return fail(r.error());
    bool renamed = false;
    if (auto t = copy.write_tier(tier_ == tier::large ? "rocksdb" : "memory", renamed); !t) return fail(t.error());
    return {};
  }

  // Transactions: the view is the current tier's, the validation the hybrid
  // store's own (so it spans a move).
  result<tx_start<snapshot_type>> begin_transaction() const {
    std::shared_lock pin(tier_gate_);
    std::unique_lock writing(write_gate_);
    auto view = snapshot_pinned();
    if (!view) return view.error();
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{std::move(*view), start, std::move(registration)};
  }
  result<void> commit_transaction(const tx_record& tx) {
    std::shared_lock pin(tier_gate_);
    std::unique_lock writing(write_gate_);
    if (!is_open()) return closed_error();
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    auto r = tier_ == tier::large ? large_->write(tx.writes) : small_->write(tx.writes);
    noted(r, tx.writes);
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
    auto s = Small::open(so);
    if (!s) return s.error();
    small_ = std::move(*s);
    if (new_store) {
      bool renamed = false;
      if (auto t = layout_.write_tier("memory", renamed); !t) {
        (void)small_->close();
        return t.error();
      }
    }
    tier_ = tier::small;
    arm_check(small_->memory_bytes());
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
    auto l = Large::open(lo);
    if (!l) return l.error();
    large_ = std::move(*l);
    tier_ = tier::large;
    // Memory files left by a move that committed but had not removed them.
    if (layout_.has_memory_data()) layout_.remove_memory_files();
    return {};
  }

  // ---- writes: conflict records, the move's delta, the size check -----------
  // Called with the tier pinned, after the tier's write. Recorded even when
  // the write failed: it may have been applied (a failed sync), and an extra
  // record costs at most a spurious conflict or an extra copy.
  void noted(const result<void>& r, std::string_view key, std::size_t bytes) {
    if (!r && r.error() == errc::invalid_argument) return;
    if (moving_ || conflicts_->recording()) {
      std::vector<std::string> keys;
      keys.emplace_back(key);
      record(std::move(keys), {});
    }
    account(bytes);
  }
  void noted(const result<void>& r, const write_batch& batch) {
    if (!r && r.error() == errc::invalid_argument) return;
    if (moving_ || conflicts_->recording()) {
      std::vector<std::string> keys;
      std::vector<key_range> ranges;
      detail::conflict_tracker::split(batch, keys, ranges);
      record(std::move(keys), std::move(ranges));
    }
    account(batch.payload_bytes());
  }
  void record(std::vector<std::string> keys, std::vector<key_range> ranges) {
    if (moving_) {
      std::lock_guard d(delta_mutex_);
      for (const auto& k : keys) delta_keys_.insert(k);
      delta_ranges_.insert(delta_ranges_.end(), ranges.begin(), ranges.end());
    }
    if (conflicts_->recording()) conflicts_->record(std::move(keys), std::move(ranges));
  }
  // Counts bytes written in the memory tier; wakes the mover for a size check
  // when due.
  void account(std::size_t bytes) {
    if (tier_ != tier::small || moving_) return;
    if (written_since_check_.fetch_add(bytes, std::memory_order_relaxed) + bytes >= check_at_.load(std::memory_order_relaxed))
      mover_.request();
  }
  // The next size check comes after this many bytes written: enough to reach
  // spill_bytes from `held`, and at least 1/16 of it (a check is O(n)).
  void arm_check(std::size_t held) {
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
      arm_check(held);
      if (held < opts_.spill_bytes) return;
    }
    (void)move_to_large();  // on failure: last_move_error(); the next check tries again
  }

  // ---- the move -----------------------------------------------------------
  struct delta {
    std::set<std::string> keys;
    std::vector<key_range> ranges;
    std::size_t size() const { return keys.size() + ranges.size(); }
  };
  delta take_delta() {
    std::lock_guard d(delta_mutex_);
    delta out;
    out.keys.swap(delta_keys_);
    out.ranges.swap(delta_ranges_);
    return out;
  }

  // Called with move_mutex_ held.
  result<void> move_locked() {
    std::optional<typename Small::snapshot_type> base;
    {
      std::unique_lock pin(tier_gate_);
      if (!is_open()) return closed_error();
      if (tier_ == tier::large) return {};
      auto s = small_->snapshot();
      if (!s) return s.error();
      base.emplace(std::move(*s));
      moving_ = true;
    }
    auto moved = copy_and_switch(*base);
    if (!moved) {
      std::unique_lock pin(tier_gate_);
      moving_ = false;
      (void)take_delta();
      if (is_open()) arm_check(small_->memory_bytes());
    }
    return moved;
  }

  result<void> copy_and_switch(const typename Small::snapshot_type& base) {
    std::error_code ec;
    std::filesystem::remove_all(layout_.rocksdb_dir(), ec);  // a failed earlier move's
    typename Large::options lo;
    lo.path = layout_.rocksdb_dir();
    lo.sync_writes = opts_.sync_writes;
    auto opened = Large::open(lo);
    if (!opened) return moving_error(opened.error());
    std::shared_ptr<Large> large = std::move(*opened);
    auto abandon = [&](const keel::error& e) {
      (void)large->close();
      std::error_code rm;
      std::filesystem::remove_all(layout_.rocksdb_dir(), rm);
      return moving_error(e);
    };
    if (auto c = copy_range(base, key_range::all(), *large); !c) return abandon(c.error());
    detail::hybrid_move_reached(detail::hybrid_move_step::copied);
    // Catch up outside the gate while the recorded writes are many.
    for (int round = 0; round < 16; ++round) {
      delta d = take_delta();
      if (d.size() == 0) break;
      auto view = small_->snapshot();
      if (!view) return abandon(view.error());
      if (auto a = apply_delta(d, *view, *large); !a) return abandon(a.error());
      if (d.size() < 256) break;
    }
    detail::hybrid_move_reached(detail::hybrid_move_step::caught_up);
    std::unique_lock pin(tier_gate_);
    if (!is_open() || stopping_.load()) return abandon(closed_error());
    delta d = take_delta();
    auto view = small_->snapshot();
    if (!view) return abandon(view.error());
    if (auto a = apply_delta(d, *view, *large); !a) return abandon(a.error());
    if (auto f = large->flush(); !f) return abandon(f.error());
    detail::hybrid_move_reached(detail::hybrid_move_step::synced);
    bool renamed = false;
    auto committed = layout_.write_tier("rocksdb", renamed);
    if (!committed && !renamed) return abandon(committed.error());
    // Committed (or, after a failed directory sync, as good as: TIER names
    // RocksDB and RocksDB has every write; the memory files stay, in case the
    // rename does not survive a power loss).
    large_ = std::move(large);
    tier_ = tier::large;
    moving_ = false;
    pin.unlock();
    detail::hybrid_move_reached(detail::hybrid_move_step::committed);
    (void)small_->release_persistence();
    if (!committed) return moving_error(committed.error());
    layout_.remove_memory_files();
    detail::hybrid_move_reached(detail::hybrid_move_step::released);
    return {};
  }

  static keel::error moving_error(const keel::error& e) {
    std::string why = e.message();
    if (e.code() == errc::no_space) {
      // RocksDB's advice (reopen, or its 64 MiB reserve and Resume()) is about
      // a RocksDB store that stays open; the moving copy is dropped instead.
      if (const std::size_t advice = why.find(". The disk is full"); advice != std::string::npos) why.resize(advice);
      why += ". The disk is full: the partial copy was removed, the memory tier keeps taking writes; free space "
             "(the copy needs about the data's size plus 4 MiB, RocksDB's preallocated MANIFEST) and the next "
             "size check, or move_to_large(), tries again";
    }
    return keel::error(e.code(), "hybrid store: moving the data to RocksDB failed (it stays in memory): " + why);
  }

  // Copies what `view` holds in `range` into `large`, in batches.
  template <class View>
  result<void> copy_range(const View& view, const key_range& range, Large& large) {
    constexpr std::size_t batch_entries = 1000, batch_bytes = std::size_t{4} << 20;
    write_batch batch;
    std::size_t bytes = 0;
    auto flush_batch = [&]() -> result<void> {
      if (batch.size() == 0) return {};
      if (stopping_.load()) return closed_error();
      auto w = large.write(batch);
      batch.clear();
      bytes = 0;
      return w;
    };
    auto c = view.scan(range.forward());
    for (; c.valid(); c.next()) {
      batch.put(c.key(), c.value());
      bytes += c.key().size() + c.value().size();
      if (batch.size() >= batch_entries || bytes >= batch_bytes) {
        if (auto w = flush_batch(); !w) return w;
      }
    }
    if (c.error()) return *c.error();
    return flush_batch();
  }
  // Makes `large` hold what `view` holds for the keys and ranges of `d`.
  template <class View>
  result<void> apply_delta(const delta& d, const View& view, Large& large) {
    for (const auto& r : d.ranges) {
      if (auto e = large.erase_range(r); !e) return e;
      if (auto c = copy_range(view, r, large); !c) return c;
    }
    write_batch batch;
    for (const auto& k : d.keys) {
      auto v = view.get(k);
      if (!v) return v.error();
      if (*v)
        batch.put(k, **v);
      else
        batch.erase(k);
      if (batch.size() >= 1000) {
        if (auto w = large.write(batch); !w) return w;
        batch.clear();
      }
    }
    if (batch.size() != 0) return large.write(batch);
    return {};
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
  detail::hybrid_layout layout_;
  detail::file_lock lock_;
  // Both kept until the store is destroyed (closed by close()): small_ keeps
  // serving the snapshots and cursors taken before a move.
  std::shared_ptr<Small> small_;
  std::shared_ptr<Large> large_;
  // Lock order: move_mutex_, then tier_gate_, then write_gate_, then delta_mutex_.
  // tier_gate_ is writer-preferring (detail::writer_preferring_gate): once the
  // move or close() asks for it exclusively, new calls wait for it, so writers
  // that overlap without a gap cannot starve the move. Never taken twice by one
  // thread (not even shared).
  mutable detail::writer_preferring_gate tier_gate_;  // shared: a call using a tier; exclusive: the move's start and switch, close
  // Writer-preferring too: synced writers that never pause would otherwise
  // keep a transaction's begin or commit waiting for ever.
  mutable detail::writer_preferring_gate write_gate_;  // shared: plain writes; exclusive: transaction begin and commit
  tier tier_ = tier::small;               // guarded by tier_gate_
  bool moving_ = false;                   // guarded by tier_gate_ (set, cleared exclusively)
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  std::atomic<bool> open_{true};
  std::atomic<bool> stopping_{false};
  std::mutex close_mutex_;
  mutable std::mutex move_mutex_;  // one move at a time; guards last_move_error_
  std::optional<keel::error> last_move_error_;
  std::mutex delta_mutex_;
  std::set<std::string> delta_keys_;     // guarded by delta_mutex_
  std::vector<key_range> delta_ranges_;  // guarded by delta_mutex_
  std::atomic<std::size_t> written_since_check_{0};
  std::atomic<std::size_t> check_at_{1};
  detail::background_worker mover_;  // size checks and background moves
};

static_assert(store_policy<HybridPolicy<>>);

}  // namespace keel
