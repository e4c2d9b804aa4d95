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
// Nothing is persisted unless memory_options::persist_path is set: then every
// write is appended to a log before it is acknowledged, open() replays the
// saved snapshot and the log, and the log is folded into a new snapshot at
// flush(), close() and past a size threshold (see memory_options and
// detail/memory_log.hpp).
// Values may be held compressed (memory_options::compression,
// docs/compression.md): writes store them raw, a background pass compresses
// them later with a dictionary trained on the store's own values.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
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

#include "compression.hpp"
#include "detail/background_worker.hpp"
#include "detail/memory_log.hpp"
#include "detail/persistent_btree.hpp"
#include "detail/thread_exit.hpp"
#include "detail/value_codec.hpp"
#include "dump.hpp"
#include "store.hpp"

namespace keel {

struct memory_options {
  // Persistence (empty: none, closing the store drops its data). When set
  // (docs/durability.md):
  // - every put, erase and write is appended to the log "<file>.wal-<gen>"
  //   (one checksummed frame per write or batch) before it is acknowledged,
  //   so a process crash (SIGKILL) loses no acknowledged write and a batch is
  //   whole or absent after it;
  // - open() loads the snapshot <file> (a dump, docs/dump-format.md) and
  //   replays the logs. A lost tail (damage in the newest log past the last
  //   point it is known synced: a torn last frame, or unsynced pages that
  //   reached the disk out of order after a machine crash) is dropped, so
  //   the store always opens after a crash; damage of synced data (a later
  //   frame records that the damaged one was synced), damage in an older
  //   log, or a damaged snapshot fails the open with errc::corruption naming
  //   the file and offset: never a silently shorter store. A missing file
  //   and no log give an empty store;
  // - flush() and close() fold the log into a new snapshot: written to
  //   "<file>.tmp-<pid>", fsynced, renamed over the file, directory fsynced,
  //   then the older logs removed. So does a background thread once the log
  //   passes fold_log_bytes (or the size of the last snapshot, if larger);
  // - one process per file: open() takes an fcntl lock on "<file>.lock"
  //   (never deleted) and fails with errc::lock_held_by_other_process naming
  //   the holder's PID, or errc::already_open_in_process for a second open in
  //   this process (any spelling of the path).
  // A temporary file left by a crashed save is removed by the next open, once
  // its process is gone.
  std::filesystem::path persist_path{};
  // With persist_path: fdatasync the log before acknowledging a write, so a
  // machine crash or power loss loses nothing acknowledged either. Writers
  // waiting at the same time share one fdatasync (group commit). A write is
  // visible to readers as soon as it is in the log, before its sync. A failed
  // sync is reported and the store accepts no more writes (reads go on);
  // close and reopen it. Default false: a machine crash may lose the writes
  // the OS had not written back yet.
  bool sync_writes = false;
  // With persist_path: the log size (bytes) past which a background fold
  // starts; 0: fold only at flush() and close().
  std::size_t fold_log_bytes = std::size_t{64} << 20;
  // Value compression (docs/compression.md). Default none. With lz4 or zstd:
  // - put(), write() and transactions store values raw (compressing would
  //   double the cost of a put); a background thread of the store compresses
  //   them once about 1 MiB (or 1/8 of the values held, if more) has been
  //   written since its last pass, and compact() compresses at once;
  // - values are compressed with a dictionary of up to 64 KiB trained on a
  //   sample of the store's values (trained once they reach 64 KiB, retrained
  //   when they have grown 8-fold since); a value is kept raw where
  //   compression would save less than 1/8 of its bytes, or is over 16 MiB;
  // - compressing publishes new versions like a write: snapshots, cursors and
  //   readers keep reading the versions they hold; nothing is logged;
  // - reads decompress (get, multi_get, cursors, snapshots); the persisted
  //   form (snapshot file and log) holds values uncompressed, so it stays a
  //   plain dump and a reopened store compresses again in the background,
  //   with the newest dictionary, saved beside the snapshot as
  //   "<file>.dict" at each fold (no value depends on it: a missing or
  //   damaged one is ignored and a dictionary trained anew);
  // - store_stats::size_bytes counts the bytes held (compressed),
  //   uncompressed_bytes what they would be uncompressed.
  // A compression keel was built without (KEEL_HAVE_ZSTD / KEEL_HAVE_LZ4
  // undefined) fails open() with errc::not_supported.
  keel::compression compression = keel::compression::none;
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
    // Precondition valid(); a compressed value is decompressed into the
    // cursor, valid until its next step.
    std::string_view value() const {
      const detail::pb_entry* e = it_->entry();
      if (e->codec() == 0) return e->value();
      owner_->decode_or_throw(*e, value_buffer_);
      return value_buffer_;
    }
    const std::optional<keel::error>& error() const noexcept { return error_; }

    void next() {
      if (!valid_) return;
      if (!owner_->is_open()) {
        valid_ = false;
        error_ = closed_error();
        return;
      }
      step();
    }

    // The optional run_cursor members (store.hpp). A run is taken a leaf at
    // a time: the range's bound is compared once per leaf, not per entry.
    // Compressed values of a run are decompressed into the cursor, valid
    // until its next fill().
    std::size_t fill(std::span<cursor_entry> out) {
      if (!valid_ || out.empty()) return 0;
      if (!owner_->is_open()) {
        valid_ = false;
        error_ = closed_error();
        return 0;
      }
      std::size_t n = 0;
      while (n < out.size()) {
        const auto leaf = reversed_ ? it_->leaf_up_to_here() : it_->rest_of_leaf();
        auto at = [&](std::size_t i) { return reversed_ ? leaf[leaf.size() - 1 - i] : leaf[i]; };
        std::size_t take = std::min(leaf.size(), out.size() - n);
        bool ends_here = false;
        if (bound_ && !in_bound(at(take - 1)->key())) {
          std::size_t inside = 0;
          while (inside < take && in_bound(at(inside)->key())) ++inside;
          take = inside;
          ends_here = true;
        }
        for (std::size_t i = 0; i < take; ++i) {
          const detail::pb_entry* e = at(i);
          std::string_view v = e->value();
          if (e->codec() != 0) {
            if (run_values_.size() < out.size()) run_values_.resize(out.size());
            owner_->decode_or_throw(*e, run_values_[n]);
            v = run_values_[n];
          }
          out[n++] = {e->key(), v};
        }
        if (ends_here) {
          valid_ = false;
          return n;
        }
        if (reversed_)
          it_->skip_back(take);
        else
          it_->skip_forward(take);
        if (!it_->valid()) {
          valid_ = false;
          return n;
        }
      }
      settle();
      return n;
    }
    // Precondition: not a failed cursor (one that fill() gave entries).
    const std::atomic<bool>& open_flag() const noexcept { return owner_->open_; }

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
    void step() {
      if (reversed_)
        it_->prev();
      else
        it_->next();
      settle();
    }
    // valid_ = the iterator is on an entry inside the range.
    void settle() { valid_ = it_->valid() && (!bound_ || in_bound(it_->key())); }
    // Whether `key` is on the near side of the range's far end (bound_ set).
    bool in_bound(std::string_view key) const {
      return reversed_ ? key >= std::string_view(*bound_) : key < std::string_view(*bound_);
    }

    std::shared_ptr<const MemoryPolicy> owner_;
    std::optional<tree::cursor> it_;
    std::optional<std::string> bound_;  // the range's far end: upper (forward) or lower (reversed)
    bool reversed_ = false;
    bool valid_ = false;
    std::optional<keel::error> error_;
    mutable std::string value_buffer_;  // the current value, decompressed
    std::vector<std::string> run_values_;  // compressed values of the last fill(), decompressed
  };

  // ---- snapshot -----------------------------------------------------------
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->lookup(version_, key);
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
    if (auto missing = detail::compression_missing(opts.compression)) return *missing;
    auto p = std::make_shared<MemoryPolicy>();
    p->persist_path_ = opts.persist_path;
    p->compression_ = opts.compression;
    if (p->compression_ != compression::none) p->codecs_ = std::make_unique<std::atomic<const detail::value_codec*>[]>(max_codecs);
    if (!opts.persist_path.empty()) {
      if (auto loaded = p->load(opts); !loaded) return loaded.error();
    }
    if (p->compression_ != compression::none) {
      p->compressor_.start([raw = p.get()] {
        try {
          raw->compress_pass(true);
        } catch (const std::bad_alloc&) {
          // Values stay raw; the next pass tries again.
        }
      });
      if (p->raw_bytes_since_pass_ > 0) p->compressor_.request();
    }
    return p;
  }

  // Writes: validate; log the frame (persisted stores); apply; then, with
  // sync_writes, wait for the frame's sync outside the writers' mutex.
  result<void> put(std::string_view key, std::string_view value) {
    if (auto bad = check_sizes(key, value)) return *bad;
    std::unique_lock writer(write_mutex_);
    if (auto refused = refuse_write()) return *refused;
    auto logged = log_write([&](detail::log_encoder& e) { e.put(key, value); });
    if (!logged) return logged.error();
    {
      tree::transient edit = edit_current();
      edit.insert_or_assign(key, value);
      publish(std::move(edit));
    }
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    note_raw_bytes(value.size());
    writer.unlock();
    return durable(*logged);
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
    std::unique_lock writer(write_mutex_);
    if (auto refused = refuse_write()) return *refused;
    tree now = current();
    auto logged = now.find(key) ? log_write([&](detail::log_encoder& e) { e.erase(key); }) : last_logged();
    if (!logged) return logged.error();
    if (now.find(key)) publish(now.without(key));
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    writer.unlock();
    return durable(*logged);
  }

  result<void> write(const write_batch& batch) {
    if (auto bad = check_batch(batch)) return *bad;
    std::unique_lock writer(write_mutex_);
    if (auto refused = refuse_write()) return *refused;
    auto logged = log_batch(batch);
    if (!logged) return logged.error();
    apply(batch);
    writer.unlock();
    return durable(*logged);
  }

  result<void> erase_range(const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    std::unique_lock writer(write_mutex_);
    if (auto refused = refuse_write()) return *refused;
    if (range.is_empty()) return {};
    auto logged = log_write([&](detail::log_encoder& e) { e.erase_range(range); });
    if (!logged) return logged.error();
    publish(without_range(current(), range));
    if (conflicts_->recording()) conflicts_->record({}, {range});
    writer.unlock();
    return durable(*logged);
  }

  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    auto reading = detail::epoch_domain::instance().enter();
    const tree* version = root_.load(std::memory_order_seq_cst);
    if (!is_open()) return closed_error();
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    for (std::string_view k : keys) {
      if (const auto* e = version->find(k)) {
        out.emplace_back(std::in_place);
        if (!decode(*e, *out.back())) return decode_error(k);
      } else {
        out.emplace_back();
      }
    }
    return out;
  }

  // Nothing to reclaim: a replaced version is freed as soon as no reader
  // uses it. With compression: compresses the values not compressed yet
  // (the whole store, whatever the range), training a dictionary first when
  // there is none or the values have grown 8-fold since it was trained, and
  // returns when they are compressed.
  result<void> compact(const key_range& range) {
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    if (!is_open()) return closed_error();
    if (compression_ != compression::none) compress_pass(false);
    return {};
  }

  // Saves the current version to `path` in the persisted form (the file a
  // store with memory_options::persist_path = path opens), atomically.
  result<void> checkpoint(const std::filesystem::path& path) const {
    if (!is_open()) return closed_error();
    if (auto bad = detail::checkpoint_path_error(path)) return *bad;
    tree version = current();
    if (!is_open()) return closed_error();
    if (auto saved = save_to(path, std::move(version)); !saved) {
      std::error_code rm;
      std::filesystem::remove(path, rm);
      std::filesystem::remove(dictionary_path(path), rm);
      return saved.error();
    }
    return {};
  }

  result<tx_start<snapshot_type>> begin_transaction() const {
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{snapshot_type(shared_from_this(), current()), start, std::move(registration)};
  }

  result<void> commit_transaction(const tx_record& tx) {
    if (auto bad = check_batch(tx.writes)) return *bad;
    std::unique_lock writer(write_mutex_);
    if (auto refused = refuse_write()) return *refused;
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    auto logged = log_batch(tx.writes);
    if (!logged) return logged.error();
    apply(tx.writes);
    writer.unlock();
    return durable(*logged);
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

  // Drops the data (after folding the log into the snapshot, with
  // persist_path), waiting for point reads in flight to finish with it.
  // Snapshots and cursors still alive give errc::closed. Whatever it returns,
  // the store is closed and its file unlocked; a failed save is reported and
  // the files keep every acknowledged write (the next open replays the log).
  result<void> close() {
    std::lock_guard closing(close_mutex_);
    folder_.stop();
    compressor_.stop();
    std::lock_guard saving(save_mutex_);
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return {};
    result<void> saved;
    if (log_ && !released_) {
      saved = log_->seal();  // syncs what is in the log; appends end here
      if (saved) {
        if (auto s = save(current()); !s) saved = s.error();
      }
      if (saved) saved = log_->remove_before(std::numeric_limits<std::uint64_t>::max());
      log_->release_lock();
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
    folder_.stop();
    compressor_.stop();
    for (auto& r : retired_) {
      delete r.version;
      r.moved.finish();
    }
    delete root_.load();
    for (std::size_t i = 0; codecs_ && i < max_codecs; ++i) delete codecs_[i].load();
  }

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  // Number of keys, exact.
  std::size_t size() const { return current().size(); }
  // Bytes held by the entries (keys, values as held, per-entry header); O(n).
  std::size_t memory_bytes() const { return current().memory_bytes(); }
  // memory_bytes() if every value were held uncompressed; O(n).
  std::size_t uncompressed_memory_bytes() const { return current().uncompressed_memory_bytes(); }
  keel::compression compression() const noexcept { return compression_; }
  // Codecs (dictionaries) in use: loaded at open plus trained since; 0
  // without compression.
  std::size_t dictionaries() const {
    std::lock_guard compressing(compress_mutex_);
    return codec_count_;
  }
  // Whether open() installed the dictionary saved beside the persisted file
  // ("<file>.dict"); false when there was none or it was ignored.
  bool dictionary_loaded() const noexcept { return dictionary_loaded_; }

  // With persist_path: folds the log into a new snapshot of the store as it
  // is now (writers are blocked only while the log is switched), atomically,
  // then removes the folded logs. Without: does nothing.
  result<void> flush() {
    if (!is_open()) return closed_error();
    if (!log_) return {};
    std::lock_guard saving(save_mutex_);
    {
      std::lock_guard writer(write_mutex_);
      if (released_) return {};
    }
    return fold();
  }
  const std::filesystem::path& persist_path() const noexcept { return persist_path_; }

  // For a store whose data has been handed over to another store (the
  // hybrid store's move to RocksDB): stops the background fold and
  // compression, syncs and seals the log, releases the file lock and drops
  // the current version. The files are left as they are, for the caller to
  // remove; close() saves nothing afterwards. Snapshots and cursors taken
  // before keep reading their versions until close(); reads see an empty
  // store; writes are refused (errc::read_only). Idempotent.
  result<void> release_persistence() {
    std::lock_guard closing(close_mutex_);
    folder_.stop();
    compressor_.stop();
    std::lock_guard saving(save_mutex_);
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    if (released_) return {};
    result<void> sealed;
    if (log_) {
      sealed = log_->seal();
      log_->release_lock();
    }
    released_ = true;
    publish(tree());
    return sealed;
  }

 private:
  // Why a write cannot proceed now, if it cannot; called with write_mutex_ held.
  std::optional<keel::error> refuse_write() const {
    if (!is_open()) return closed_error();
    if (released_) {
      return keel::error(errc::read_only, "memory store: its data was handed over to another store "
                                          "(release_persistence); it takes no more writes");
    }
    return std::nullopt;
  }
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
    const bool ranges = std::any_of(batch.begin(), batch.end(), [](const auto& op) {
      return op.kind == write_batch::op_kind::erase_range;
    });
    if (!ranges) {   // the common case: one transient that reuses the current version's path nodes
      tree::transient edit = edit_current();
      for (const auto& op : batch) {
        if (op.kind == write_batch::op_kind::put) edit.insert_or_assign(op.key, op.value);
        else edit.erase(op.key);
      }
      publish(std::move(edit));
      applied(batch);
      return;
    }
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
    applied(batch);
  }
  void applied(const write_batch& batch) {
    conflicts_->record(batch);
    if (compression_ != compression::none) {
      std::size_t bytes = 0;
      for (const auto& op : batch)
        if (op.kind == write_batch::op_kind::put) bytes += op.value.size();
      note_raw_bytes(bytes);
    }
  }
  result<std::optional<std::string>> lookup(const tree& version, std::string_view key) const {
    if (const auto* e = version.find(key)) {
      std::optional<std::string> v(std::in_place);
      if (!decode(*e, *v)) return decode_error(key);
      return v;
    }
    return std::optional<std::string>();
  }

  // ---- compression (docs/compression.md) ----------------------------------
  // Codec slots: entries name theirs (pb_entry::codec(), 1-255); slot 0 is
  // unused. A slot is filled (release) before any entry naming it is
  // published and is never changed or freed while the store exists, so a
  // reader of any version finds its entries' codecs.
  static constexpr std::size_t max_codecs = 256;
  static constexpr std::size_t dictionary_bytes = std::size_t{64} << 10;
  static constexpr std::size_t sample_bytes = std::size_t{4} << 20;     // values sampled to train
  static constexpr std::size_t sample_value_limit = std::size_t{16} << 10;  // larger values are not samples
  static constexpr std::size_t train_min_bytes = std::size_t{64} << 10;  // sampleable bytes before a first dictionary
  static constexpr std::size_t pass_min_bytes = std::size_t{1} << 20;   // raw bytes written that start a pass
  static constexpr std::size_t chunk_entries = 4096;                    // entries republished per version

  // `e`'s value, decompressed if need be, into `out`; false if it does not
  // decompress (only memory damage can cause that).
  bool decode(const detail::pb_entry& e, std::string& out) const {
    const unsigned slot = e.codec();
    if (slot == 0) {
      out.assign(e.value());
      return true;
    }
    const detail::value_codec* c = codecs_ ? codecs_[slot].load(std::memory_order_acquire) : nullptr;
    if (!c) return false;
    out.resize(e.raw_size());
    return c->decompress(e.value(), out.data(), out.size());
  }
  void decode_or_throw(const detail::pb_entry& e, std::string& out) const {
    if (!decode(e, out)) throw std::runtime_error("keel memory store: a compressed value does not decompress");
  }
  static keel::error decode_error(std::string_view key) {
    return keel::error(errc::corruption, "memory store: the compressed value of key '" + std::string(key) +
                                             "' does not decompress (memory damage?)");
  }

  // Called with write_mutex_ held after raw values were published: wakes the
  // compressor once enough raw bytes piled up.
  void note_raw_bytes(std::size_t n) {
    if (compression_ == compression::none) return;
    raw_bytes_since_pass_ += n;
    if (raw_bytes_since_pass_ >= std::max(pass_min_bytes, held_value_bytes_ / 8)) compressor_.request();
  }

  // One pass over the current version: trains a dictionary if due, then
  // compresses every raw value not tried yet, publishing chunk_entries
  // replacements per new version (an entry changed meanwhile is left alone).
  // Values are read from a version the pass holds, compressed outside the
  // writers' mutex, and swapped in under it.
  // background: the compressor thread's pass, which stops early at close().
  void compress_pass(bool background) {
    std::lock_guard compressing(compress_mutex_);
    tree version = current();
    if (!is_open()) return;
    {
      std::lock_guard writer(write_mutex_);
      raw_bytes_since_pass_ = 0;
    }
    const std::size_t value_bytes = train_if_due(version);
    const unsigned slot = static_cast<unsigned>(codec_count_);
    const detail::value_codec* codec = slot ? codecs_[slot].load(std::memory_order_relaxed) : nullptr;
    if (!codec) return;
    struct replacement {
      std::string key, stored;
      const detail::pb_entry* was;
      std::uint32_t form;
    };
    std::vector<replacement> chunk;
    auto commit = [&] {
      if (chunk.empty()) return;
      std::lock_guard writer(write_mutex_);
      if (!is_open()) return;
      tree::transient edit(current());
      bool changed = false;
      for (const auto& r : chunk) {
        if (edit.find(r.key) != r.was) continue;  // written since: raw, a later pass takes it
        edit.insert_or_assign(r.key, r.stored, r.form);
        changed = true;
      }
      if (changed) publish(std::move(edit).persist());
      chunk.clear();
    };
    tree::cursor it(version);
    for (it.seek_first(); it.valid(); it.next()) {
      const detail::pb_entry* e = it.entry();
      if (e->codec() != 0 || e->compression_tried()) continue;
      const std::string_view raw = e->value();
      std::optional<std::string_view> packed;
      if (raw.size() <= detail::pb_entry::max_compressed_raw_size) packed = codec->compress(raw, compress_ctx_);
      if (!packed) {
        e->mark_compression_tried();
        continue;
      }
      chunk.push_back({std::string(e->key()), std::string(*packed), e,
                       detail::pb_entry::compressed_form(slot, raw.size())});
      if (chunk.size() >= chunk_entries) {
        commit();
        if (!is_open() || (background && compressor_.stopping())) return;
      }
    }
    commit();
    std::lock_guard writer(write_mutex_);
    held_value_bytes_ = value_bytes;
  }

  // Trains and installs a new codec when due (called with compress_mutex_):
  // the first once the store's raw sampleable values (up to 16 KiB, not
  // compressed) reach train_min_bytes, then when they reach 8 times what the
  // newest dictionary was trained on (never after a sample of 2 MiB or
  // more); after a failed training, when they doubled. Returns the bytes of
  // all values held (uncompressed).
  std::size_t train_if_due(const tree& version) {
    std::size_t all_values = 0, sampleable = 0, candidates = 0;
    {
      tree::cursor it(version);
      for (it.seek_first(); it.valid(); it.next()) {
        const detail::pb_entry* e = it.entry();
        all_values += e->raw_size();
        if (e->codec() == 0 && e->value().size() <= sample_value_limit && !e->value().empty()) {
          sampleable += e->value().size();
          ++candidates;
        }
      }
    }
    if (sampleable < next_training_ || codec_count_ + 1 >= max_codecs) return all_values;
    // Every stride-th sampleable value, about sample_bytes in all.
    const std::size_t stride = sampleable / sample_bytes + 1;
    std::vector<std::string_view> samples;
    samples.reserve(candidates / stride + 1);
    std::size_t taken = 0, index = 0;
    tree::cursor it(version);
    for (it.seek_first(); it.valid(); it.next()) {
      const detail::pb_entry* e = it.entry();
      if (e->codec() != 0 || e->value().size() > sample_value_limit || e->value().empty()) continue;
      if (index++ % stride != 0) continue;
      samples.push_back(e->value());
      taken += e->value().size();
    }
    std::string dict = detail::train_dictionary(compression_, samples, std::min(dictionary_bytes, taken / 4));
    if (dict.empty()) {  // too few or too random: try again once they doubled
      next_training_ = 2 * sampleable;
      return all_values;
    }
    auto codec = std::make_unique<detail::value_codec>(compression_, std::move(dict));
    codecs_[codec_count_ + 1].store(codec.release(), std::memory_order_release);
    ++codec_count_;
    latest_trained_on_.store(taken, std::memory_order_release);
    latest_slot_.store(static_cast<unsigned>(codec_count_), std::memory_order_release);
    next_training_ = taken < sample_bytes / 2 ? 8 * taken : std::numeric_limits<std::size_t>::max();
    // Values the old dictionary kept raw get a try with the new one.
    tree::cursor again(version);
    for (again.seek_first(); again.valid(); again.next()) {
      const detail::pb_entry* e = again.entry();
      if (e->codec() == 0 && e->compression_tried()) e->clear_compression_tried();
    }
    return all_values;
  }
  // A counted handle to the current version (for cursors and snapshots).
  // The handle is taken (a seq_cst increment), then the version checked to
  // be still current (a seq_cst load): a writer that replaced it meanwhile
  // (seq_cst exchange, then a seq_cst load of the count) either sees the
  // handle when it settles its retirement (publish) or is seen here, and the
  // handle is dropped and taken again. So no handle to a version is taken
  // after it was replaced (persistent_btree::retirement's protocol).
  tree current() const {
    auto reading = detail::epoch_domain::instance().enter();
    for (;;) {
      const tree* version = root_.load(std::memory_order_seq_cst);
      tree handle = version->share(std::memory_order_seq_cst);
      if (root_.load(std::memory_order_seq_cst) == version) return handle;
    }
  }
  // Called with write_mutex_ held: an edit of the current version in reuse
  // mode (path nodes only it holds are handed to the copy, not copied with a
  // reference count change per child); publish(transient) completes it.
  tree::transient edit_current() {
    return tree::transient(*root_.load(std::memory_order_relaxed), std::move(spare_), &pool_);
  }
  // Called with write_mutex_ held: makes the edit's result (or `next`) the
  // current version, retires the old one and frees the retired versions no
  // reader can still see. If it throws, the old version stays current (an
  // unpersisted edit gives the old version its references back).
  void publish(tree::transient&& edit) {
    publish_with([&](tree::retirement& moved) noexcept { return std::move(edit).persist(moved); });
  }
  void publish(tree next) {
    publish_with([&](tree::retirement&) noexcept { return std::move(next); });
  }
  // `make(moved)` gives the new version and leaves in `moved` what the edit
  // left for the old one; it runs once everything that can throw is done.
  template <class Make>
  void publish_with(Make make) {
    std::unique_ptr<tree> fresh = spare_version_ ? std::move(spare_version_) : std::make_unique<tree>();
    retired_.reserve(retired_.size() + 1);
    retired_version& r = retired_.emplace_back();
    *fresh = make(r.moved);
    r.version = root_.exchange(fresh.release(), std::memory_order_seq_cst);
    r.moved.settle();
    r.closed_epoch = detail::epoch_domain::instance().advance();
    reclaim();
  }
  // Called with write_mutex_ held. Keeps one version holder, the first
  // finished retirement's buffers and some node blocks for the next write.
  void reclaim() {
    const std::uint64_t oldest = detail::epoch_domain::instance().min_active();
    std::erase_if(retired_, [&](retired_version& r) {
      if (r.closed_epoch >= oldest) return false;
      tree* version = const_cast<tree*>(r.version);
      if (spare_version_) {
        delete version;
      } else {
        *version = tree();
        spare_version_.reset(version);
      }
      r.moved.finish(&pool_);
      if (spare_.capacity() == 0) spare_ = std::move(r.moved);
      return true;
    });
  }

  // Appends the frame `fill` builds to the log (persisted stores; called with
  // write_mutex_ held); its sequence number, for durable(). Not persisted, or
  // nothing to log: the last sequence number.
  template <class Fill>
  result<std::uint64_t> log_write(Fill&& fill) {
    if (!log_) return std::uint64_t{0};
    encoder_.clear();
    fill(encoder_);
    if (encoder_.empty()) return last_logged();
    auto seq = log_->append(encoder_);
    if (seq && log_->bytes() >= fold_at_.load(std::memory_order_relaxed)) folder_.request();
    return seq;
  }
  result<std::uint64_t> log_batch(const write_batch& batch) {
    return log_write([&](detail::log_encoder& e) {
      for (const auto& op : batch) {
        switch (op.kind) {
          case write_batch::op_kind::put: e.put(op.key, op.value); break;
          case write_batch::op_kind::erase: e.erase(op.key); break;
          case write_batch::op_kind::erase_range: e.erase_range(op.range()); break;
        }
      }
    });
  }
  result<std::uint64_t> last_logged() const {
    if (!log_) return std::uint64_t{0};
    if (log_->failed()) return log_->failure();
    return log_->last_seq();
  }
  // With sync_writes: waits until frame `seq` is synced (group commit). Called
  // without write_mutex_.
  result<void> durable(std::uint64_t seq) {
    if (!log_ || seq == 0) return {};
    return log_->sync_through(seq);
  }

  // Switches the log, saves the store as of the switch, removes the older
  // logs. Called with save_mutex_ held.
  result<void> fold() {
    tree version;
    std::uint64_t below = 0;
    {
      std::lock_guard writer(write_mutex_);
      // Load the version before checking open_: close() clears open_ before
      // it publishes the empty tree, so a version seen while open is the data.
      version = current();
      if (!is_open()) return closed_error();
      auto r = log_->rotate();
      if (!r) return r.error();
      below = *r;
    }
    auto saved = save(std::move(version));
    if (!saved) return saved.error();
    set_fold_at(*saved);
    return log_->remove_before(below);
  }

  // The background fold (folder_, one thread per persisted store with
  // fold_log_bytes > 0), run when the log passes fold_at_.
  void background_fold() {
    std::lock_guard saving(save_mutex_);
    if (is_open() && !fold()) {
      // Failed (e.g. disk full): the log keeps everything; try again
      // once it has grown by another threshold.
      std::lock_guard writer(write_mutex_);
      fold_at_.store(log_->bytes() + fold_threshold_, std::memory_order_relaxed);
    }
  }
  // The next background fold starts when the log reaches the threshold or
  // the snapshot's size, whichever is larger (so folding costs O(1) per byte
  // written); never without a threshold.
  void set_fold_at(std::uint64_t snapshot_bytes) {
    fold_at_.store(fold_threshold_ == 0 ? std::numeric_limits<std::uint64_t>::max()
                                        : std::max(fold_threshold_, snapshot_bytes),
                   std::memory_order_relaxed);
  }

  // Opens the persisted store (called by open, before the store is shared):
  // lock, snapshot, logs, then a new log to append to.
  result<void> load(const options& opts) {
    auto log = detail::memory_log::lock(persist_path_, opts.sync_writes);
    if (!log) return log.error();
    remove_stale_temporaries();
    load_dictionary(persist_path_);
    std::optional<tree::transient> edit;
    edit.emplace(tree());
    std::error_code ec;
    std::uint64_t snapshot_bytes = 0;
    if (std::filesystem::exists(persist_path_, ec) || ec) {
      dump_reader r;
      if (auto o = r.open(persist_path_); !o) return o.error();
      for (;;) {
        auto more = r.next();
        if (!more) return std::move(more).error();
        if (!*more) break;
        edit->insert_or_assign(r.key(), r.value());
        snapshot_bytes += r.key().size() + r.value().size();
        raw_bytes_since_pass_ += r.value().size();
      }
    }
    auto replayed = (*log)->replay([&](const detail::log_op& op) {
      switch (op.kind) {
        case detail::log_op::put:
          edit->insert_or_assign(op.key, op.value);
          raw_bytes_since_pass_ += op.value.size();
          break;
        case detail::log_op::erase: edit->erase(op.key); break;
        case detail::log_op::erase_range: {
          const key_range range = op.has_lower && op.has_upper ? key_range::between(op.key, op.value)
                                  : op.has_lower                ? key_range::from(op.key)
                                  : op.has_upper                ? key_range::until(op.value)
                                                                : key_range::all();
          tree so_far = std::move(*edit).persist();
          edit.reset();
          edit.emplace(without_range(std::move(so_far), range));
          break;
        }
      }
    });
    if (!replayed) return replayed.error();
    if (auto s = (*log)->start(); !s) return s;
    publish(std::move(*edit).persist());
    log_ = std::move(*log);
    fold_threshold_ = opts.fold_log_bytes;
    set_fold_at(snapshot_bytes);
    if (opts.fold_log_bytes > 0) folder_.start([this] { background_fold(); });
    return {};
  }
  // Removes "<file>.tmp-<pid>" files left by saves that a crash interrupted
  // (their process no longer exists). Errors are ignored.
  void remove_stale_temporaries() const noexcept {
    try {
      namespace fs = std::filesystem;
      // "<file>.tmp-<pid>" (snapshots) and "<file>.dict.tmp-<pid>" (dictionaries).
      fs::path dir = persist_path_.parent_path().empty() ? fs::path(".") : persist_path_.parent_path();
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        std::string prefix = persist_path_.filename().string() + ".tmp-";
        if (name.compare(0, prefix.size(), prefix) != 0) prefix = persist_path_.filename().string() + ".dict.tmp-";
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
  // Writes `version` to persist_path_; called with save_mutex_ held. Returns
  // the bytes of keys and values saved.
  result<std::uint64_t> save(tree version) const { return save_to(persist_path_, std::move(version)); }
  // Values are saved uncompressed.
  result<std::uint64_t> save_to(const std::filesystem::path& path, tree version) const {
    dump_writer w;
    if (auto o = w.open(path); !o) return o.error();
    tree::cursor it(std::move(version));
    std::string value;
    for (it.seek_first(); it.valid(); it.next()) {
      if (!decode(*it.entry(), value)) return decode_error(it.key());
      if (auto a = w.add(it.key(), value); !a) return a.error();
    }
    auto done = w.finish();
    if (!done) return done.error();
    if (auto d = save_dictionary(path); !d) return d.error();
    return done->payload_bytes;
  }

  // ---- the dictionary beside the persisted form ---------------------------
  // "<file>.dict": the newest dictionary, so that a reopened store compresses
  // with it at once instead of training again. The values in <file> and the
  // logs are raw: no value depends on this file, and a missing, damaged or
  // foreign one (another compression) is ignored (the store trains anew).
  // Format: "KEELDIC1", u32 compression, u32 CRC32C of the dictionary,
  // u64 bytes of the sample it was trained on, u64 size, the dictionary.
  // Written aside, synced, renamed, directory synced.
  static std::filesystem::path dictionary_path(const std::filesystem::path& file) {
    auto p = file;
    p += ".dict";
    return p;
  }
  result<void> save_dictionary(const std::filesystem::path& file) const {
    const unsigned slot = latest_slot_.load(std::memory_order_acquire);
    if (slot == 0) return {};
    // A fold rewrites the snapshot, not the dictionary: once the newest one
    // is in "<file>.dict" it is not written (and synced) again.
    const bool own_file = file == persist_path_;
    if (own_file && saved_slot_.load(std::memory_order_acquire) == slot) return {};
    const std::string& dict = codecs_[slot].load(std::memory_order_acquire)->dictionary();
    std::string bytes = "KEELDIC1";
    char n[8];
    detail::store_u32(n, static_cast<std::uint32_t>(compression_));
    bytes.append(n, 4);
    detail::store_u32(n, detail::crc32c(dict));
    bytes.append(n, 4);
    detail::store_u64(n, latest_trained_on_.load(std::memory_order_acquire));
    bytes.append(n, 8);
    detail::store_u64(n, dict.size());
    bytes.append(n, 8);
    bytes += dict;
    const auto target = dictionary_path(file);
    auto aside = target;
    aside += ".tmp-" + std::to_string(detail::current_process_id());
    {
      detail::file f;
      if (auto e = f.create(aside)) return detail::os_error(e, "cannot create '" + detail::path_text(aside) + "'");
      if (auto e = f.write_all(bytes.data(), bytes.size()); e || (e = f.sync())) {
        detail::remove_file(aside);
        return detail::os_error(e, "cannot write '" + detail::path_text(aside) + "'");
      }
    }
    if (auto e = detail::replace_file(aside, target)) {
      detail::remove_file(aside);
      return detail::os_error(e, "cannot rename '" + detail::path_text(aside) + "'");
    }
    auto synced = detail::sync_directory(file.has_parent_path() ? file.parent_path() : std::filesystem::path("."));
    if (synced && own_file) saved_slot_.store(slot, std::memory_order_release);
    return synced;
  }
  // Installs the dictionary saved beside `file`, if there is a usable one.
  // Called by open, before the store is shared.
  void load_dictionary(const std::filesystem::path& file) {
    if (compression_ == compression::none) return;
    std::error_code ec;
    if (!std::filesystem::exists(dictionary_path(file), ec)) return;
    auto text = detail::log_io::read_all(dictionary_path(file));
    if (!text || text->size() < 32 || text->compare(0, 8, "KEELDIC1") != 0) return;
    const char* h = text->data();
    const std::uint64_t size = detail::get_u64(h + 24);
    if (detail::get_u32(h + 8) != static_cast<std::uint32_t>(compression_) || size != text->size() - 32) return;
    std::string dict = text->substr(32);
    if (detail::crc32c(dict) != detail::get_u32(h + 12)) return;
    try {
      auto codec = std::make_unique<detail::value_codec>(compression_, std::move(dict));
      codecs_[1].store(codec.release(), std::memory_order_release);
    } catch (const std::bad_alloc&) {
      return;
    }
    codec_count_ = 1;
    const std::uint64_t taken = detail::get_u64(h + 16);
    latest_trained_on_.store(taken, std::memory_order_release);
    latest_slot_.store(1, std::memory_order_release);
    saved_slot_.store(1, std::memory_order_release);  // it is the file's
    dictionary_loaded_ = true;
    next_training_ = taken < sample_bytes / 2 ? 8 * taken : std::numeric_limits<std::size_t>::max();
  }

  std::filesystem::path persist_path_;
  std::unique_ptr<detail::memory_log> log_;  // persisted stores: set by open, never reset
  detail::log_encoder encoder_;              // guarded by write_mutex_
  std::atomic<std::uint64_t> fold_at_{0};    // log bytes that start a background fold
  std::uint64_t fold_threshold_ = 0;
  detail::background_worker folder_;        // background folds (persisted stores)
  std::mutex close_mutex_;  // serialises close() (stops folder_ and compressor_)
  std::mutex save_mutex_;   // serialises folds and saves; taken before write_mutex_
  mutable std::mutex write_mutex_;  // serialises writers and transaction begins; guards retired_
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
  std::atomic<const tree*> root_{new tree()};  // the current version
  struct retired_version {
    std::uint64_t closed_epoch;
    const tree* version;
    tree::retirement moved;   // finished once `version` is deleted
  };
  std::vector<retired_version> retired_;
  tree::retirement spare_;   // buffers for the next edit_current()
  std::unique_ptr<tree> spare_version_;   // an empty holder for the next publish()
  tree::node_pool pool_;     // node blocks for edit_current() transients; guarded by write_mutex_
  std::atomic<bool> open_{true};
  bool released_ = false;  // guarded by write_mutex_: release_persistence() ran
  // Compression (none: all unused).
  keel::compression compression_ = keel::compression::none;
  std::unique_ptr<std::atomic<const detail::value_codec*>[]> codecs_;  // max_codecs slots
  mutable std::mutex compress_mutex_;  // serialises passes; guards the members below it; before write_mutex_
  std::size_t codec_count_ = 0;        // slots filled: 1..codec_count_
  // The newest slot and the sample bytes its dictionary was trained on, for
  // saving it without compress_mutex_ (saves run with write_mutex_ held).
  std::atomic<unsigned> latest_slot_{0};
  mutable std::atomic<unsigned> saved_slot_{0};  // the slot whose dictionary "<persist_path>.dict" holds
  bool dictionary_loaded_ = false;  // set by open, before the store is shared
  std::atomic<std::uint64_t> latest_trained_on_{0};
  std::size_t next_training_ = train_min_bytes;  // raw sampleable bytes that make a new dictionary due
  detail::compress_context compress_ctx_;
  std::size_t raw_bytes_since_pass_ = 0;  // guarded by write_mutex_
  std::size_t held_value_bytes_ = 0;      // guarded by write_mutex_: value bytes at the last pass
  detail::background_worker compressor_;  // background compression passes
};

static_assert(store_policy<MemoryPolicy>);
static_assert(run_cursor<MemoryPolicy::cursor_type>);

// What basic_store::stats() asks of the backend: exact key count and bytes.
inline result<void> backend_stats(const MemoryPolicy& p, store_stats& s) {
  s.keys = p.size();
  s.keys_exact = true;
  s.size_bytes = p.memory_bytes();
  s.uncompressed_bytes = p.compression() == compression::none ? s.size_bytes : p.uncompressed_memory_bytes();
  return {};
}

}  // namespace keel
