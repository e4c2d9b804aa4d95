// keel/memory/persistence.hpp - the persisted form of a memory store
// (memory_options::persist_path, docs/durability.md): open (lock, load the
// snapshot file, replay the logs), the writes' log appends and syncs, folds
// (the log into a new snapshot file), checkpoints, and the dictionary saved
// beside the snapshot. The log itself (frames, group commit, mapped
// appends, the file lock) is memory/log.hpp; the file formats are described
// there and in docs/dump-format.md.
//
// Thread safety: log_write(), log_batch(), last_logged() and released() are
// called with the writers' mutex (memory_versions::writers()) held, which
// orders log frames as versions are published; wait_synced() without it,
// from any thread (group commit). Folds and saves are serialised by
// save_mutex() (taken before the writers' mutex, never together with the
// compression pass's mutex): flush() takes it; close() and
// release_persistence() (memory/policy.hpp) take it themselves and then
// call save_at_close() / release(). load() runs at open, before the store is
// shared. The background fold is a thread of its own (stop() ends it).
// Ownership: memory_persistence owns the log (and through it the file lock);
// it reads and publishes the store's versions and asks the store's
// compression for the dictionary, both of which outlive it.
// Errors: every failure is returned as a keel::error naming the file
// (detail::path_text); a failed background fold is retried once the log has
// grown by another threshold.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../detail/background_worker.hpp"
#include "../detail/encoding.hpp"
#include "../detail/platform_file.hpp"
#include "../contract.hpp"  // closed_error
#include "../dump.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
#include "compression.hpp"
#include "expiry.hpp"
#include "log.hpp"
#include "snapshot_file.hpp"
#include "versions.hpp"

namespace keel::detail {

class memory_persistence {
 public:
  using tree = persistent_btree;

  // `versions` and `compression`: the store's, which outlive this object.
  memory_persistence(memory_versions& versions, value_compression& compression) noexcept
      : versions_(versions), compression_(compression) {}
  memory_persistence(const memory_persistence&) = delete;
  memory_persistence& operator=(const memory_persistence&) = delete;
  ~memory_persistence() { folder_.stop(); }

  // At open, before load(): the store's expiry (deadlines are loaded,
  // logged and saved with their entries). It outlives this object.
  void set_expiry(memory_expiry& expiry) noexcept { expiry_ = &expiry; }

  // Whether the store is persisted (load() succeeded).
  bool persisted() const noexcept { return log_ != nullptr; }
  // The file the store is persisted at (empty: not persisted).
  const std::filesystem::path& path() const noexcept { return path_; }

  // Opens the store persisted at `file` (at open, before the store is
  // shared): lock, dictionary, snapshot, logs, then a new log to append to;
  // the loaded data is published as the current version. fold_log_bytes:
  // memory_options::fold_log_bytes (0: no background fold). replayed(op,
  // frame seq) sees each op replayed from the logs, after it is applied
  // (the watch history, memory/watch.hpp).
  template <class Replayed>
  result<void> load(const std::filesystem::path& file, bool sync_writes, std::size_t fold_log_bytes,
                    Replayed&& replayed) {
    path_ = file;
    auto log = memory_log::lock(path_, sync_writes);
    if (!log) return log.error();
    remove_stale_temporaries();
    load_dictionary(path_);
    loaded_keyspaces state(expiry_->now());
    std::error_code ec;
    std::uint64_t snapshot_bytes = 0;
    if (std::filesystem::exists(path_, ec) || ec) {
      auto loaded = is_keyspaced_snapshot(path_) ? load_keyspaced_snapshot(state) : load_dump_snapshot(state);
      if (!loaded) return loaded.error();
      snapshot_bytes = *loaded;
    }
    auto replay = (*log)->replay([&](const log_op& op, std::uint64_t seq) {
      state.apply(op, compression_);
      replayed(op, seq);
    });
    if (!replay) return replay.error();
    if (auto s = (*log)->start(); !s) return s;
    expiry_->note_deadline(state.earliest_deadline());
    reclaimed_at_load_ = state.reclaimed();
    auto [main, others] = std::move(state).finish();
    versions_.publish(std::move(main), std::move(others));
    log_ = std::move(*log);
    fold_threshold_ = fold_log_bytes;
    set_fold_at(snapshot_bytes);
    if (fold_log_bytes > 0) folder_.start([this] { background_fold(); });
    return {};
  }

  // The keys load() left out because they had expired, by keyspace (once;
  // loaded_keyspaces).
  std::vector<std::pair<std::string, std::vector<std::string>>> take_reclaimed() {
    return std::exchange(reclaimed_at_load_, {});
  }

  // ---- the writes' log (writers' mutex held) -------------------------------
  // Appends the frame `fill` builds to the log; its sequence number, for
  // wait_synced(). Not persisted, or nothing to log: the last sequence
  // number (0 when not persisted).
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
  // A batch's ops in one frame; ops on a keyspace other than "" are
  // preceded by a keyspace op where the keyspace changes (a batch of ""
  // alone is logged as before keyspaces). `at`: the time its ttls count
  // from (puts with one are logged with their absolute deadline).
  result<std::uint64_t> log_batch(const write_batch& batch, deadline_ms at = 0) {
    return log_write([&](log_encoder& e) {
      for (const auto& op : batch) {
        e.select_keyspace(op.keyspace);
        switch (op.kind) {
          case write_batch::op_kind::put: e.put(op.key, op.value, memory_expiry::deadline_of(op, at)); break;
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
  // With sync_writes: waits until frame `seq` is synced (group commit; the
  // log's own mutex). Called without the writers' mutex. Otherwise, or for
  // seq 0: returns at once.
  result<void> wait_synced(std::uint64_t seq) {
    if (!log_ || seq == 0) return {};
    return log_->sync_through(seq);
  }
  // Whether release() ran: the data was handed over, the store takes no
  // more writes. Writers' mutex held.
  bool released() const noexcept { return released_; }

  // ---- folds and saves ------------------------------------------------------
  // Serialises folds and saves; taken before the writers' mutex.
  std::mutex& save_mutex() noexcept { return save_mutex_; }

  // With persist_path: folds the log into a new snapshot of the store as it
  // is now (writers are blocked only while the log is switched), then
  // removes the folded logs. Not persisted, or released: does nothing.
  result<void> flush() {
    if (!log_) return {};
    std::lock_guard saving(save_mutex_);
    {
      std::lock_guard writer(versions_.writers());
      if (released_) return {};
    }
    return fold();
  }

  // Stops the background fold (a running one finishes). Idempotent.
  void stop() { folder_.stop(); }

  // At close, save_mutex() and the writers' mutex held, the store still
  // open: syncs and seals the log, saves the current version, then trims
  // the logs (memory_log::trim_at_close): it keeps those a later open must
  // replay to give every frame from `history_from` on (the first seq of the
  // history a watch could resume from now, memory_watch::history_from():
  // replaying them over the snapshot changes nothing), and always one log
  // whose frames or header carry the seqs on across the reopen (a store
  // never watched keeps only a log without frames: 24 bytes written and
  // synced at close, nothing per write). So a close shortens what a resume
  // can reach by nothing; a fold (flush(), the background fold) removes
  // every log before it, so after a reopen the history starts at the last
  // fold at the earliest. Releases the file lock. Not persisted, or
  // released: nothing. A failed save is returned and leaves the files with
  // every acknowledged write (the next open replays the log).
  result<void> save_at_close(std::uint64_t history_from = std::numeric_limits<std::uint64_t>::max()) {
    result<void> saved;
    if (log_ && !released_) {
      saved = log_->seal();  // syncs what is in the log; appends end here
      if (saved) {
        if (auto s = save_to(path_, versions_.current_all()); !s) saved = s.error();
      }
      if (saved) saved = log_->trim_at_close(history_from);
      log_->release_lock();
    }
    return saved;
  }

  // For release_persistence(), save_mutex() and the writers' mutex held, the
  // store open and not released: syncs and seals the log and releases the
  // file lock; marks the store released (writes refused, close() saves
  // nothing). The files are left as they are.
  result<void> release() {
    result<void> sealed;
    if (log_) {
      sealed = log_->seal();
      log_->release_lock();
    }
    released_ = true;
    return sealed;
  }

  // Saves `version` to `path` in the persisted form (the file a store with
  // memory_options::persist_path = path opens), atomically, values
  // uncompressed; on failure removes what it wrote. Any thread.
  result<void> checkpoint(const std::filesystem::path& path, store_version version) const {
    if (auto saved = save_to(path, std::move(version)); !saved) {
      std::error_code rm;
      std::filesystem::remove(path, rm);
      std::filesystem::remove(dictionary_path(path), rm);
      return saved.error();
    }
    return {};
  }

 private:
  // Switches the log, saves the store as of the switch, removes the older
  // logs. Called with save_mutex_ held.
  result<void> fold() {
    store_version version;
    std::uint64_t below = 0;
    {
      std::lock_guard writer(versions_.writers());
      // Load the version before checking open: close() clears it before it
      // publishes the empty tree, so a version seen while open is the data.
      version = versions_.current_all();
      if (!versions_.is_open()) return closed_error();
      auto r = log_->rotate();
      if (!r) return r.error();
      below = *r;
    }
    auto saved = save_to(path_, std::move(version));
    if (!saved) return saved.error();
    set_fold_at(*saved);
    return log_->remove_before(below);
  }

  // The background fold (folder_, one thread per persisted store with
  // fold_log_bytes > 0), run when the log passes fold_at_.
  void background_fold() {
    std::lock_guard saving(save_mutex_);
    if (versions_.is_open() && !fold()) {
      // Failed (e.g. disk full): the log keeps everything; try again
      // once it has grown by another threshold.
      std::lock_guard writer(versions_.writers());
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

  // Removes "<file>.tmp-<pid>" files left by saves that a crash interrupted
  // (their process no longer exists). Errors are ignored.
  void remove_stale_temporaries() const noexcept {
    try {
      namespace fs = std::filesystem;
      // "<file>.tmp-<pid>" (snapshots) and "<file>.dict.tmp-<pid>" (dictionaries).
      fs::path dir = path_.parent_path().empty() ? fs::path(".") : path_.parent_path();
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        std::string prefix = path_.filename().string() + ".tmp-";
        if (name.compare(0, prefix.size(), prefix) != 0) prefix = path_.filename().string() + ".dict.tmp-";
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string digits = name.substr(prefix.size());
        if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
        const long pid = std::stol(digits);
        if (process_gone(pid)) {
          std::error_code rm;
          fs::remove(it->path(), rm);
        }
      }
    } catch (...) {
    }
  }

  // Writes `version` to `path` (save_mutex_ held when `path` is the store's
  // file), values uncompressed, then the dictionary beside it: a dump when
  // it has no keyspace but "" and the store never held a deadline (as
  // before keyspaces and expiry), else the keyspaced snapshot
  // (snapshot_file.hpp; version 2 with deadlines). Entries expired but not
  // swept yet are saved with their deadlines: the next load reclaims them
  // and so gives their erase changes (a watch resuming after a restart must
  // get them; docs/watch.md, "Expiry"). Returns the bytes of keys and values
  // saved.
  result<std::uint64_t> save_to(const std::filesystem::path& path, store_version version) const {
    std::uint64_t payload = 0;
    const bool deadlines = expiry_->used();
    if ((!version.table || version.table->empty()) && !deadlines) {
      dump_writer w;
      if (auto o = w.open(path); !o) return o.error();
      if (auto a = save_tree(std::move(version.main), [&](auto k, auto v, deadline_ms) { return w.add(k, v); }); !a)
        return a.error();
      auto done = w.finish();
      if (!done) return done.error();
      payload = done->payload_bytes;
    } else {
      keyspaced_snapshot_writer w;
      if (auto o = w.open(path, deadlines); !o) return o.error();
      auto add = [&](auto k, auto v, deadline_ms d) { return w.add(k, v, d); };
      if (auto a = save_tree(std::move(version.main), add); !a) return a.error();
      if (version.table) {
        for (const auto& ks : *version.table) {
          if (auto a = w.keyspace(ks->name); !a) return a.error();
          if (auto a = save_tree(version.tree_of(*ks), add); !a) return a.error();
        }
      }
      auto done = w.finish();
      if (!done) return done.error();
      payload = *done;
    }
    if (auto d = save_dictionary(path); !d) return d.error();
    return payload;
  }
  template <class Add>
  result<void> save_tree(tree version, Add&& add) const {
    tree::cursor it(std::move(version));
    std::string value;
    for (it.seek_first(); it.valid(); it.next()) {
      if (!compression_.decode(*it.entry(), value)) return value_compression::decode_error(it.key());
      if (auto a = add(it.key(), std::string_view(value), it.entry()->deadline()); !a) return a.error();
    }
    return {};
  }

  // ---- loading (at open) ------------------------------------------------------
  // What load() builds: the default keyspace and the others, by name, from
  // the snapshot file, then the logs' ops applied in order.
  // Entries whose deadline is at or before `now` (the clock at load) are
  // left out (a put of one erases the key): reclaimed at load. Their keys,
  // unless a later op of the logs put or erased them again, are listed by
  // reclaimed(): the store gives them to its watch as erases (memory/
  // watch.hpp, reclaimed_at_load), like a sweep's.
  class loaded_keyspaces {
   public:
    explicit loaded_keyspaces(deadline_ms now) : now_(now) { main_.emplace(tree()); }
    // Inserts an entry of keyspace `ks` loaded from the snapshot file or a log.
    void put(std::optional<tree::transient>& edit, std::string_view ks, std::string_view key, std::string_view value,
             deadline_ms deadline) {
      if (deadline != pb_entry::no_deadline && deadline <= now_) {
        edit->erase(key);
        reclaimed_[std::string(ks)].emplace(key);
        return;
      }
      forget_reclaimed(ks, key);
      if (deadline == pb_entry::no_deadline) return edit->insert_or_assign(key, value);
      edit->insert_or_assign(key, value, 0, deadline);
      earliest_ = std::min(earliest_, deadline);
    }
    // The keys reclaimed at load, by keyspace, in key order.
    std::vector<std::pair<std::string, std::vector<std::string>>> reclaimed() const {
      std::vector<std::pair<std::string, std::vector<std::string>>> out;
      for (const auto& [ks, keys] : reclaimed_)
        if (!keys.empty()) out.emplace_back(ks, std::vector<std::string>(keys.begin(), keys.end()));
      return out;
    }
    // The earliest deadline of the entries loaded (no_deadline: none).
    deadline_ms earliest_deadline() const noexcept { return earliest_; }
    // The tree edit of keyspace `name` ("" included); nullptr when there is
    // no such keyspace (a log op on a keyspace dropped before: cannot happen
    // in a log keel wrote; ignored).
    std::optional<tree::transient>* find(std::string_view name) {
      if (name.empty()) return &main_;
      auto it = others_.find(name);
      return it == others_.end() ? nullptr : &it->second;
    }
    std::optional<tree::transient>& create(std::string_view name) {
      auto& slot = others_[std::string(name)];
      slot.reset();
      slot.emplace(tree());
      return slot;
    }
    void apply(const log_op& op, value_compression& compression) {
      if (op.kind == log_op::create_keyspace || op.kind == log_op::drop_keyspace)
        if (!reclaimed_.empty()) reclaimed_.erase(std::string(op.key));
      if (op.kind == log_op::create_keyspace) return void(create(op.key));
      if (op.kind == log_op::drop_keyspace) return void(others_.erase(std::string(op.key)));
      auto* edit = find(op.keyspace);
      if (!edit) return;
      switch (op.kind) {
        case log_op::put:
          put(*edit, op.keyspace, op.key, op.value, op.deadline);
          compression.count_loaded_bytes(op.value.size());
          break;
        case log_op::erase:
          (*edit)->erase(op.key);
          forget_reclaimed(op.keyspace, op.key);
          break;
        case log_op::erase_range: {
          const key_range range = op.has_lower && op.has_upper ? key_range::between(op.key, op.value)
                                  : op.has_lower                ? key_range::from(op.key)
                                  : op.has_upper                ? key_range::until(op.value)
                                                                : key_range::all();
          if (auto it = reclaimed_.find(op.keyspace); it != reclaimed_.end())
            std::erase_if(it->second, [&](const std::string& k) { return range.contains(k); });
          tree so_far = std::move(**edit).persist();
          edit->reset();
          edit->emplace(without_range(std::move(so_far), range));
          break;
        }
        default: break;
      }
    }
    // The default tree and the table of the others (ids 1..n in name order;
    // null when there is none).
    std::pair<tree, std::shared_ptr<const keyspace_table>> finish() && {
      tree main = std::move(*main_).persist();
      if (others_.empty()) return {std::move(main), nullptr};
      auto table = std::make_shared<keyspace_table>();
      std::uint64_t id = 0;
      for (auto& [name, edit] : others_)
        table->push_back(std::make_shared<const keyspace_root>(keyspace_root{name, ++id, std::move(*edit).persist()}));
      return {std::move(main), std::move(table)};
    }

   private:
    void forget_reclaimed(std::string_view ks, std::string_view key) {
      if (reclaimed_.empty()) return;  // the common case (no expired entry met): nothing to look up
      if (auto it = reclaimed_.find(ks); it != reclaimed_.end())
        if (auto k = it->second.find(key); k != it->second.end()) it->second.erase(k);
    }
    deadline_ms now_;
    deadline_ms earliest_ = pb_entry::no_deadline;
    std::map<std::string, std::set<std::string, std::less<>>, std::less<>> reclaimed_;  // by keyspace
    std::optional<tree::transient> main_;
    std::map<std::string, std::optional<tree::transient>, std::less<>> others_;
  };
  // The snapshot file as a dump (a store that had no keyspace but "" when
  // it was saved); returns the bytes of keys and values.
  result<std::uint64_t> load_dump_snapshot(loaded_keyspaces& state) {
    dump_reader r;
    if (auto o = r.open(path_); !o) return o.error();
    std::uint64_t bytes = 0;
    auto& main = *state.find("");
    for (;;) {
      auto more = r.next();
      if (!more) return std::move(more).error();
      if (!*more) return bytes;
      main->insert_or_assign(r.key(), r.value());
      bytes += r.key().size() + r.value().size();
      compression_.count_loaded_bytes(r.value().size());
    }
  }
  result<std::uint64_t> load_keyspaced_snapshot(loaded_keyspaces& state) {
    keyspaced_snapshot_reader r;
    if (auto o = r.open(path_); !o) return o.error();
    std::uint64_t bytes = 0;
    std::optional<tree::transient>* edit = state.find("");
    std::string keyspace;
    keyspaced_snapshot_reader::item it;
    for (;;) {
      auto more = r.next(it);
      if (!more) return std::move(more).error();
      if (!*more) return bytes;
      if (it.is_keyspace) {
        edit = &state.create(it.key);
        keyspace.assign(it.key);
        continue;
      }
      state.put(*edit, keyspace, it.key, it.value, it.deadline);
      bytes += it.key.size() + it.value.size();
      compression_.count_loaded_bytes(it.value.size());
    }
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
    const auto latest = compression_.latest_dictionary();
    if (latest.slot == 0) return {};
    // A fold rewrites the snapshot, not the dictionary: once the newest one
    // is in "<file>.dict" it is not written (and synced) again.
    const bool own_file = file == path_;
    if (own_file && saved_slot_.load(std::memory_order_acquire) == latest.slot) return {};
    std::string bytes = "KEELDIC1";
    put_u32(bytes, static_cast<std::uint32_t>(compression_.kind()));
    put_u32(bytes, crc32c(latest.bytes));
    put_u64(bytes, latest.trained_on);
    put_u64(bytes, latest.bytes.size());
    bytes += latest.bytes;
    const auto target = dictionary_path(file);
    auto aside = target;
    aside += ".tmp-" + std::to_string(current_process_id());
    {
      detail::file f;
      if (auto e = f.create(aside)) return os_error(e, "cannot create '" + path_text(aside) + "'");
      if (auto e = f.write_all(bytes.data(), bytes.size()); e || (e = f.sync())) {
        remove_file(aside);
        return os_error(e, "cannot write '" + path_text(aside) + "'");
      }
    }
    if (auto e = replace_file(aside, target)) {
      remove_file(aside);
      return os_error(e, "cannot rename '" + path_text(aside) + "'");
    }
    auto synced = sync_directory(file.has_parent_path() ? file.parent_path() : std::filesystem::path("."));
    if (synced && own_file) saved_slot_.store(latest.slot, std::memory_order_release);
    return synced;
  }
  // Installs the dictionary saved beside `file`, if there is a usable one.
  // Called by load, before the store is shared.
  void load_dictionary(const std::filesystem::path& file) {
    if (compression_.kind() == compression::none) return;
    std::error_code ec;
    if (!std::filesystem::exists(dictionary_path(file), ec)) return;
    auto text = log_io::read_all(dictionary_path(file));
    if (!text || text->size() < 32 || text->compare(0, 8, "KEELDIC1") != 0) return;
    const char* h = text->data();
    const std::uint64_t size = get_u64(h + 24);
    if (get_u32(h + 8) != static_cast<std::uint32_t>(compression_.kind()) || size != text->size() - 32) return;
    std::string dict = text->substr(32);
    if (crc32c(dict) != get_u32(h + 12)) return;
    if (compression_.install_saved_dictionary(std::move(dict), get_u64(h + 16)))
      saved_slot_.store(1, std::memory_order_release);  // it is the file's
  }

  memory_versions& versions_;
  value_compression& compression_;
  std::vector<std::pair<std::string, std::vector<std::string>>> reclaimed_at_load_;  // until take_reclaimed()
  memory_expiry* expiry_ = nullptr;  // set before load(); the store's
  std::filesystem::path path_;
  std::unique_ptr<memory_log> log_;  // persisted stores: set by load, never reset
  log_encoder encoder_;              // guarded by the writers' mutex
  bool released_ = false;            // guarded by the writers' mutex: release() ran
  std::atomic<std::uint64_t> fold_at_{0};  // log bytes that start a background fold
  std::uint64_t fold_threshold_ = 0;
  std::mutex save_mutex_;  // serialises folds and saves; taken before the writers' mutex
  mutable std::atomic<unsigned> saved_slot_{0};  // the slot whose dictionary "<path_>.dict" holds
  background_worker folder_;  // background folds (persisted stores)
};

}  // namespace keel::detail
