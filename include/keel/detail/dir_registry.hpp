// keel::detail: the process-wide registry of open store directories.
//
// RocksDB's own in-process check compares path strings, so "db" and "db/"
// would give two writers on one database (facebook/rocksdb#1780). keel keys
// its registry on the directory's identity (st_dev, st_ino; on Windows the
// volume serial number and file index: detail/dir_identity.hpp) instead, so
// every spelling of one directory (relative, trailing slash, "./", a symlink;
// on Windows also other letter case and a junction) maps to one entry.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
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

  static dir_registry& instance() {
    static dir_registry registry;
    return registry;
  }

  // Claims the existing directory `dir` for this process. Fails with
  // already_open_in_process naming the path it was first opened as.
  result<claim> acquire(const std::filesystem::path& dir) {
    sys_error err;
    dir_identity id = identify(dir, err);
    if (err) {
      return keel::error(is_permission_error(err) ? errc::permission_denied : errc::io_error,
                         "cannot stat '" + dir.string() + "': " + system_message(err.code));
    }
    std::lock_guard lock(mutex_);
    auto [it, inserted] = open_.try_emplace(id, dir.string());
    if (!inserted) {
      return keel::error(errc::already_open_in_process,
                         "'" + dir.string() + "' is already open in this process (opened as '" + it->second +
                             "'); close that store first, or share the open store instead of opening it twice");
    }
    return claim(id);
  }

  // The path a directory was opened as, if it is open in this process.
  std::optional<std::string> opened_as(const std::filesystem::path& dir) {
    sys_error err;
    dir_identity id = identify(dir, err);
    if (err) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (it == open_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void drop(dir_identity id) noexcept {
    std::lock_guard lock(mutex_);
    open_.erase(id);
  }
  std::mutex mutex_;
  std::map<dir_identity, std::string> open_;
};

}  // namespace keel::detail
