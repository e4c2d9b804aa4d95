// keel::detail: the process-wide registry of open store directories.
//
// RocksDB's own in-process check compares path strings, so "db" and "db/"
// would give two writers on one database (facebook/rocksdb#1780). keel keys
// its registry on the directory's identity (st_dev, st_ino; on Windows the
// volume serial number and file index: detail/dir_identity.hpp) instead, so
// every spelling of one directory (relative, trailing slash, "./", a symlink;
// on Windows also other letter case and a junction) maps to one entry.
//
// Read-only stores (rocks_options::read_only) are registered too. The rule:
// a directory is open in this process either by one read-write store, or by
// any number of read-only stores, never both. A read-only store beside a
// writer in the same process is refused (already_open_in_process): the
// writer's own snapshot() gives the same fixed view without a second DB
// object, and the refusal keeps the one-writer rule simple to state. (It
// would be safe for the lock: RocksDB's DB::OpenForReadOnly never opens the
// LOCK file; docs/read-only.md.)
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "../error.hpp"
#include "dir_identity.hpp"

namespace keel::detail {

using dir_identity = file_identity;

class dir_registry {
 public:
  // Releases its claim when destroyed (or on release()). Movable.
  class claim {
   public:
    claim() = default;
    claim(claim&& o) noexcept : id_(o.id_), held_(std::exchange(o.held_, false)) {}
    claim& operator=(claim&& o) noexcept {
      if (this != &o) {
        release();
        id_ = o.id_;
        held_ = std::exchange(o.held_, false);
      }
      return *this;
    }
    ~claim() { release(); }
    void release() noexcept {
      if (held_) instance().drop(id_);
      held_ = false;
    }
    bool held() const noexcept { return held_; }

   private:
    friend class dir_registry;
    explicit claim(dir_identity id) : id_(id), held_(true) {}
    dir_identity id_{};
    bool held_ = false;
  };

  enum class mode { read_write, read_only };

  static dir_registry& instance() {
    static dir_registry registry;
    return registry;
  }

  // Claims the existing directory `dir` for this process, in `m` mode. Fails
  // with already_open_in_process, naming the path it was first opened as,
  // when it is open read-write, or when a read-write claim meets read-only
  // ones (see the rule above).
  result<claim> acquire(const std::filesystem::path& dir, mode m = mode::read_write) {
    sys_error err;
    dir_identity id = identify(dir, err);
    if (err) {
      return keel::error(is_permission_error(err) ? errc::permission_denied : errc::io_error,
                         "cannot stat '" + dir.string() + "': " + system_message(err.code));
    }
    std::lock_guard lock(mutex_);
    auto [it, inserted] = open_.try_emplace(id, entry{dir.string(), 0});
    entry& e = it->second;
    if (inserted) {
      e.readers = m == mode::read_only ? 1 : 0;
      return claim(id);
    }
    if (e.readers > 0 && m == mode::read_only) {
      ++e.readers;
      return claim(id);
    }
    const std::string where = "'" + dir.string() + "'";
    if (e.readers == 0 && m == mode::read_only) {
      return keel::error(errc::already_open_in_process,
                         "cannot open " + where + " read-only: it is already open read-write in this process (opened as '" +
                             e.first_path +
                             "'); read through that store instead (its snapshot() is a fixed view of the data)");
    }
    if (e.readers > 0) {
      return keel::error(errc::already_open_in_process,
                         "cannot open " + where + " read-write: it is open read-only in this process (opened as '" +
                             e.first_path + "'); close the read-only store(s) first");
    }
    return keel::error(errc::already_open_in_process,
                       where + " is already open in this process (opened as '" + e.first_path +
                           "'); close that store first, or share the open store instead of opening it twice");
  }

  // The path a directory was opened as, if it is open in this process.
  std::optional<std::string> opened_as(const std::filesystem::path& dir) {
    sys_error err;
    dir_identity id = identify(dir, err);
    if (err) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it == open_.end()) return std::nullopt;
    return it->second.first_path;
  }

 private:
  struct entry {
    std::string first_path;  // the spelling used by the open that created this entry
    int readers = 0;         // read-only claims; 0: one read-write claim
  };
  void drop(dir_identity id) noexcept {
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it == open_.end()) return;
    if (it->second.readers > 1)
      --it->second.readers;
    else
      open_.erase(it);
  }
  std::mutex mutex_;
  std::map<dir_identity, entry> open_;
};

}  // namespace keel::detail
