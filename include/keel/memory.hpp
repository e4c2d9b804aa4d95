// keel: the in-memory backend, MemoryPolicy. Needs no RocksDB headers.
//
//   auto store = keel::memory_store::open({});
//
// The data lives in a persistent (copy-on-write) B+tree: every write publishes
// a new version of the tree that shares all untouched nodes with the previous
// one. Hence:
// - snapshot() and scan() cost O(1): they hold a reference to the current
//   version, never a copy of the map;
// - readers never block writers and never block each other. A point read
//   (get, contains) announces itself in a per-thread slot, loads the current
//   version's root pointer and reads it: no lock, no shared reference count,
//   no write to memory another thread reads (epoch-based reclamation, below).
//   scan() and snapshot() take a counted reference to the version instead,
//   since they outlive the call;
// - writers are serialised among themselves; a write costs O(log n) node
//   copies (fan-out 32), and a batch is published as one version, so readers
//   see it whole or not at all. A replaced version is freed once no point
//   read that may still use it is in flight (at the next write, or at close).
// Nothing is persisted unless memory_options::persist_path is set: then the
// store loads that file at open and saves it on flush() and close(), each save
// atomic (see memory_options).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "detail/persistent_btree.hpp"
#include "detail/thread_exit.hpp"
#include "dump.hpp"
#include "store.hpp"

namespace keel {

struct memory_options {
  // Persistence (empty: none, closing the store drops its data). When set:
  // open() loads the file if it exists (a damaged or truncated file fails
  // the open with errc::corruption: never a silently empty or partial store;
  // a missing file gives an empty store); flush() and close() save the whole
  // store to it in the dump format (docs/dump-format.md): written to
  // "<file>.tmp-<pid>", fsynced, renamed over the file, directory fsynced.
  // A crash at any moment leaves the old file or the new one, never a broken
  // one. Writes made after the last flush() are lost on a crash. One process
  // at a time per file (nothing locks it). A temporary file left by a crashed
  // save is removed by the next open, once its process is gone.
  std::filesystem::path persist_path{};
};

namespace detail {

// Epoch-based reclamation, for the memory backend's point reads.
//
// A reader stores the global epoch in its own slot (its own cache line) for
// the duration of one lookup; a writer that replaces a version tags it with
// the epoch it closes (advance()) and frees it only when every active slot
// holds a later epoch (min_active()). Why that is safe: a reader that can
// still hold the old root loaded it before the writer swapped it, so it read
// the epoch (then announced it) before the writer advanced it; the writer's
// scan, which follows the advance, sees that slot's value (all accesses are
// seq_cst) unless the reader has finished. Slot 0 means "not reading".
//
// One domain serves the whole process; each thread gets a slot on its first
// read, returned when the thread exits. Never destroyed (threads may exit
// after static destructors ran).
class epoch_domain {
 public:
  struct alignas(64) slot {
    std::atomic<std::uint64_t> epoch{0};
  };

  static epoch_domain& instance() {
    static epoch_domain* d = new epoch_domain;
    return *d;
  }

  // Marks the calling thread as reading until the guard goes. Not reentrant
  // (keel never nests lookups).
  class guard {
   public:
    explicit guard(slot& s) noexcept : s_(s) {}
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard() { s_.epoch.store(0, std::memory_order_release); }

   private:
    slot& s_;
  };
  guard enter() {
    slot& s = my_slot();
    s.epoch.store(epoch_.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
    return guard(s);
  }

  // Closes the current epoch and returns it: a version unlinked before this
  // call may be freed once min_active() > the returned value.
  std::uint64_t advance() noexcept { return epoch_.fetch_add(1, std::memory_order_seq_cst); }

  // The oldest epoch a reader announced, or UINT64_MAX when none is reading.
  std::uint64_t min_active() {
    std::lock_guard lock(mutex_);
    std::uint64_t m = std::numeric_limits<std::uint64_t>::max();
    for (const slot* s : slots_) {
      std::uint64_t e = s->epoch.load(std::memory_order_seq_cst);
      if (e != 0 && e < m) m = e;
    }
    return m;
  }

 private:
  // A thread's slot, returned when the thread exits (detail/thread_exit.hpp:
  // not a thread_local destructor, which mingw-w64 runs after freeing TLS).
  static void release(void* s) noexcept { epoch_domain::instance().remove(static_cast<slot*>(s)); }
  using my_slot_ptr = thread_exit_pointer<&epoch_domain::release>;
  slot& my_slot() {
    void* mine = my_slot_ptr::get();
    if (!mine) {
      mine = add();
      my_slot_ptr::set(mine);
    }
    return *static_cast<slot*>(mine);
  }
  slot* add() {
    auto* s = new slot;
    std::lock_guard lock(mutex_);
    slots_.push_back(s);
    return s;
  }
  void remove(slot* s) {
    {
      std::lock_guard lock(mutex_);
      slots_.erase(std::find(slots_.begin(), slots_.end(), s));
    }
    delete s;
  }

  std::atomic<std::uint64_t> epoch_{1};
  std::mutex mutex_;
  std::vector<slot*> slots_;
};

}  // namespace detail

// ---------------------------------------------------------------------------
// MemoryPolicy: the in-memory backend. See store.hpp for the contract.
// Thread safety: every member may be called concurrently, close() included.
// Keys and values up to 4 GiB - 1 bytes each (larger: invalid_argument).
// ---------------------------------------------------------------------------
class MemoryPolicy : public std::enable_shared_from_this<MemoryPolicy> {
  using tree = detail::persistent_btree;

 public:
  using options = memory_options;
  static constexpr keel::backend backend_kind = keel::backend::memory;

  // ---- cursor -------------------------------------------------------------
  class cursor_type {
   public:
    bool valid() const noexcept { return valid_; }
    std::string_view key() const noexcept { return it_->key(); }
    std::string_view value() const noexcept { return it_->value(); }
    const std::optional<keel::error>& error() const noexcept { return error_; }

    void next() {
      if (!valid_) return;
      if (!owner_->is_open()) {
        valid_ = false;
        error_ = closed_error();
        return;
      }
      if (reversed_)
        it_->prev();
      else
        it_->next();
      settle();
    }

   private:
    friend class MemoryPolicy;
    explicit cursor_type(keel::error e) : error_(std::move(e)) {}
    cursor_type(std::shared_ptr<const MemoryPolicy> owner, tree version, const key_range& range)
        : owner_(std::move(owner)), reversed_(range.is_reversed()) {
      if (range.is_empty()) return;
      it_.emplace(std::move(version));
      if (!reversed_) {
        if (range.lower())
          it_->seek(*range.lower());
        else
          it_->seek_first();
        if (range.upper()) bound_ = *range.upper();
      } else {
        if (range.upper())
          it_->seek_before(*range.upper());
        else
          it_->seek_last();
        if (range.lower()) bound_ = *range.lower();
      }
      settle();
    }
    // valid_ = the iterator is on an entry inside the range.
    void settle() {
      valid_ = it_->valid() && (!bound_ || (reversed_ ? it_->key() >= std::string_view(*bound_)
                                                      : it_->key() < std::string_view(*bound_)));
    }

    std::shared_ptr<const MemoryPolicy> owner_;
    std::optional<tree::cursor> it_;
    std::optional<std::string> bound_;  // the range's far end: upper (forward) or lower (reversed)
    bool reversed_ = false;
    bool valid_ = false;
    std::optional<keel::error> error_;
  };

  // ---- snapshot -----------------------------------------------------------
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return lookup(version_, key);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return version_.find(key) != nullptr;
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, version_, range);
    }

   private:
    friend class MemoryPolicy;
    snapshot_type(std::shared_ptr<const MemoryPolicy> owner, tree version)
        : owner_(std::move(owner)), version_(std::move(version)) {}
    std::shared_ptr<const MemoryPolicy> owner_;
    tree version_;
  };

  // ---- store --------------------------------------------------------------
  static result<std::shared_ptr<MemoryPolicy>> open(const options& opts) {
    auto p = std::make_shared<MemoryPolicy>();
    p->persist_path_ = opts.persist_path;
    if (!opts.persist_path.empty()) {
      if (auto loaded = p->load(); !loaded) return loaded.error();
    }
    return p;
  }

  result<void> put(std::string_view key, std::string_view value) {
    if (auto bad = check_sizes(key, value)) return *bad;
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    publish(current().with(key, value));
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  // Reads check is_open() after loading the version: close() clears open_
  // before it publishes the empty tree, so a read that raced with close()
  // and got that tree reports closed instead of "no such key".
  result<std::optional<std::string>> get(std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = root_.load(std::memory_order_seq_cst);
    if (!is_open()) return closed_error();
    return lookup(*version, key);
  }

  result<bool> contains(std::string_view key) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = root_.load(std::memory_order_seq_cst);
    if (!is_open()) return closed_error();
    return version->find(key) != nullptr;
  }

  result<void> erase(std::string_view key) {
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    tree now = current();
    if (now.find(key)) publish(now.without(key));
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  result<void> write(const write_batch& batch) {
    if (auto bad = check_batch(batch)) return *bad;
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    apply(batch);
    return {};
  }

  result<void> erase_range(const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    if (range.is_empty()) return {};
    publish(without_range(current(), range));
    if (conflicts_->recording()) conflicts_->record({}, {range});
    return {};
  }

  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = root_.load(std::memory_order_seq_cst);
    if (!is_open()) return closed_error();
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (std::string_view k : keys) {
      if (const auto* e = version->find(k))
        out.emplace_back(std::in_place, e->value());
      else
        out.emplace_back();
    }
    return out;
  }

  // Nothing to reclaim: a replaced version is freed as soon as no reader uses it.
  result<void> compact(const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    if (!is_open()) return closed_error();
    return {};
  }

  // Saves the current version to `path` in the persisted form (the file a
  // store with memory_options::persist_path = path opens), atomically.
  result<void> checkpoint(const std::filesystem::path& path) const {
    if (!is_open()) return closed_error();
    std::error_code ec;
    if (path.empty()) return keel::error(errc::invalid_argument, "checkpoint: the path is empty");
    // symlink_status sets ec for a path that does not exist too (ENOENT).
    if (const auto st = std::filesystem::symlink_status(path, ec);
        std::filesystem::exists(st) || (ec && st.type() != std::filesystem::file_type::not_found)) {
      return keel::error(errc::invalid_argument,
                         "checkpoint: '" + path.string() + "' already exists; a checkpoint needs a new path");
    }
    const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(parent, ec)) {
      return keel::error(errc::invalid_argument,
                         "checkpoint: the parent directory of '" + path.string() + "' does not exist");
    }
    tree version = current();
    if (!is_open()) return closed_error();
    return save_to(path, std::move(version));
  }

  result<detail::tx_start<snapshot_type>> begin_transaction() const {
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    auto [start, registration] = conflicts_->begin();
    return detail::tx_start<snapshot_type>{snapshot_type(shared_from_this(), current()), start, std::move(registration)};
  }

  result<void> commit_transaction(const detail::tx_record& tx) {
    if (auto bad = check_batch(tx.writes)) return *bad;
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    apply(tx.writes);
    return {};
  }

  cursor_type scan(const key_range& range) const {
    tree version = current();
    if (!is_open()) return cursor_type(closed_error());
    return cursor_type(shared_from_this(), std::move(version), range);
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    tree version = current();
    if (!is_open()) return closed_error();
    return snapshot_type(shared_from_this(), std::move(version));
  }

  // Drops the data (after saving it, with persist_path), waiting for point
  // reads in flight to finish with it. Snapshots and cursors still alive give
  // errc::closed. Whatever it returns, the store is closed; a failed save is
  // reported and the file keeps its old content.
  result<void> close() {
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return {};
    result<void> saved;
    if (!persist_path_.empty()) {
      std::lock_guard saving(save_mutex_);
      saved = save(current());
    }
    open_.store(false, std::memory_order_release);
    publish(tree());
    while (!retired_.empty()) {
      std::this_thread::yield();
      reclaim();
    }
    return saved;
  }

  MemoryPolicy() = default;
  MemoryPolicy(const MemoryPolicy&) = delete;
  MemoryPolicy& operator=(const MemoryPolicy&) = delete;
  // No point read can be in flight: callers hold the store (or a share of it).
  ~MemoryPolicy() {
    for (auto& r : retired_) delete r.second;
    delete root_.load();
  }

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  // Number of keys, exact.
  std::size_t size() const { return current().size(); }
  // Bytes held by the entries (keys, values, per-entry header); O(n).
  std::size_t memory_bytes() const { return current().memory_bytes(); }

  // With persist_path: saves the store as it is now (a snapshot: writers are
  // not blocked meanwhile) to the file, atomically. Without: does nothing.
  result<void> flush() {
    if (!is_open()) return closed_error();
    if (persist_path_.empty()) return {};
    std::lock_guard saving(save_mutex_);
    // Load the version before checking open_: close() clears open_ before it
    // publishes the empty tree, so a version seen while open is the data.
    tree version = current();
    if (!is_open()) return closed_error();
    return save(std::move(version));
  }
  const std::filesystem::path& persist_path() const noexcept { return persist_path_; }

 private:
  static std::optional<keel::error> check_sizes(std::string_view key, std::string_view value) {
    constexpr std::size_t limit = std::numeric_limits<std::uint32_t>::max();
    if (key.size() > limit || value.size() > limit) {
      return keel::error(errc::invalid_argument, "memory store: keys and values are limited to 4 GiB - 1 bytes");
    }
    return std::nullopt;
  }
  static std::optional<keel::error> check_batch(const write_batch& batch) {
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::erase_range) {
        if (!erase_range_is_valid(op.range())) return bad_range();
      } else if (auto bad = check_sizes(op.key, op.value)) {
        return bad;
      }
    }
    return std::nullopt;
  }
  static keel::error bad_range() {
    return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
  }
  // `version` without the keys in range.
  static tree without_range(tree version, const key_range& range) {
    std::vector<std::string> doomed;
    {
      tree::cursor it(version);
      if (range.lower())
        it.seek(*range.lower());
      else
        it.seek_first();
      for (; it.valid() && range.contains(it.key()); it.next()) doomed.emplace_back(it.key());
    }
    if (doomed.empty()) return version;
    tree::transient edit(version);
    for (const auto& k : doomed) edit.erase(k);
    return std::move(edit).persist();
  }
  // Applies the batch as one new version and records it for transactions.
  // Called with write_mutex_ held, the batch checked.
  void apply(const write_batch& batch) {
    std::optional<tree::transient> edit(std::in_place, current());
    for (const auto& op : batch) {
      switch (op.kind) {
        case write_batch::op_kind::put: edit->insert_or_assign(op.key, op.value); break;
        case write_batch::op_kind::erase: edit->erase(op.key); break;
        case write_batch::op_kind::erase_range: {
          tree so_far = std::move(*edit).persist();
          edit.reset();
          edit.emplace(without_range(std::move(so_far), op.range()));
          break;
        }
      }
    }
    publish(std::move(*edit).persist());
    conflicts_->record(batch);
  }
  static result<std::optional<std::string>> lookup(const tree& version, std::string_view key) {
    if (const auto* e = version.find(key)) return std::optional<std::string>(std::in_place, e->value());
    return std::optional<std::string>();
  }
  // A counted handle to the current version (for cursors and snapshots).
  tree current() const {
    auto reading = detail::epoch_domain::instance().enter();
    return *root_.load(std::memory_order_seq_cst);
  }
  // Called with write_mutex_ held: makes `next` the current version, retires
  // the old one and frees the retired versions no reader can still see.
  void publish(tree next) {
    const tree* old = root_.exchange(new tree(std::move(next)), std::memory_order_seq_cst);
    retired_.emplace_back(detail::epoch_domain::instance().advance(), old);
    reclaim();
  }
  // Called with write_mutex_ held.
  void reclaim() {
    const std::uint64_t oldest = detail::epoch_domain::instance().min_active();
    std::erase_if(retired_, [&](const auto& r) {
      if (r.first >= oldest) return false;
      delete r.second;
      return true;
    });
  }

  // Loads persist_path_ (called by open, before the store is shared).
  result<void> load() {
    remove_stale_temporaries();
    std::error_code ec;
    if (!std::filesystem::exists(persist_path_, ec) && !ec) return {};
    dump_reader r;
    if (auto o = r.open(persist_path_); !o) return o.error();
    tree::transient edit{tree()};
    for (;;) {
      auto more = r.next();
      if (!more) return std::move(more).error();
      if (!*more) break;
      edit.insert_or_assign(r.key(), r.value());
    }
    publish(std::move(edit).persist());
    return {};
  }
  // Removes "<file>.tmp-<pid>" files left by saves that a crash interrupted
  // (their process no longer exists). Errors are ignored.
  void remove_stale_temporaries() const noexcept {
    try {
      namespace fs = std::filesystem;
      const std::string prefix = persist_path_.filename().string() + ".tmp-";
      fs::path dir = persist_path_.parent_path().empty() ? fs::path(".") : persist_path_.parent_path();
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string digits = name.substr(prefix.size());
        if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
        const long pid = std::stol(digits);
        if (detail::process_gone(pid)) {
          std::error_code rm;
          fs::remove(it->path(), rm);
        }
      }
    } catch (...) {
    }
  }
  // Writes `version` to persist_path_; called with save_mutex_ held.
  result<void> save(tree version) const { return save_to(persist_path_, std::move(version)); }
  static result<void> save_to(const std::filesystem::path& path, tree version) {
    dump_writer w;
    if (auto o = w.open(path); !o) return o.error();
    tree::cursor it(std::move(version));
    for (it.seek_first(); it.valid(); it.next()) {
      if (auto a = w.add(it.key(), it.value()); !a) return a;
    }
    auto done = w.finish();
    if (!done) return done.error();
    return {};
  }

  std::filesystem::path persist_path_;
  std::mutex save_mutex_;   // serialises saves; taken after write_mutex_
  mutable std::mutex write_mutex_;  // serialises writers and transaction begins; guards retired_
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  std::atomic<const tree*> root_{new tree()};  // the current version
  std::vector<std::pair<std::uint64_t, const tree*>> retired_;  // (epoch it closed, version)
  std::atomic<bool> open_{true};
};

static_assert(store_policy<MemoryPolicy>);

// What basic_store::stats() asks of the backend: exact key count and bytes.
inline result<void> backend_stats(const MemoryPolicy& p, store_stats& s) {
  s.keys = p.size();
  s.keys_exact = true;
  s.size_bytes = p.memory_bytes();
  return {};
}

}  // namespace keel
