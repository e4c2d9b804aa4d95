// keel::detail: the process-wide registry of open store directories.
//
// RocksDB's own in-process check compares path strings, so "db" and "db/"
// would give two writers on one database (facebook/rocksdb#1780). keel keys
// its registry on the directory's identity (st_dev, st_ino) instead, so every
// spelling of one directory (relative, trailing slash, "./", a symlink) maps
// to one entry.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "../error.hpp"

namespace keel::detail {

struct dir_identity {
  dev_t device;
  ino_t inode;
  friend auto operator<=>(const dir_identity&, const dir_identity&) = default;
};

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
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      int err = errno;
      return keel::error(err == EACCES ? errc::permission_denied : errc::io_error,
                         "cannot stat '" + dir.string() + "': " + std::strerror(err));
    }
    dir_identity id{st.st_dev, st.st_ino};
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
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = open_.find(dir_identity{st.st_dev, st.st_ino});
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
