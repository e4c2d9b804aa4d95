// keel/detail/file_lock.hpp - the exclusive lock file that keeps one process
// per store, for the backends that lock a file of their own: a persisted
// memory store ("FILE.lock", memory/log.hpp) and the hybrid store
// ("PATH/LOCK", hybrid.hpp). RocksDB locks its own LOCK file.
//
// A lock is taken through this process's directory registry first
// (dir_registry.hpp: a second open in this process is already_open_in_process),
// then with file::try_lock (fcntl on POSIX, LockFileEx on Windows); a lock held
// by another process is diagnosed through lock_diagnosis.hpp. The lock file is
// never deleted.
//
// Thread safety: acquire() may be called from any thread (openings are
// serialised process-wide); a file_lock object is used by one thread at a time.
// Ownership: the file_lock holds the lock file's descriptor and the registry
// claim until release() or destruction.
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <utility>

#include "../error.hpp"
#include "dir_registry.hpp"
#include "lock_diagnosis.hpp"
#include "platform_file.hpp"

namespace keel::detail {

// An exclusive lock on a file (file::try_lock: fcntl on POSIX, LockFileEx on
// Windows), for the life of the process's descriptor. Holds the file open:
// on POSIX closing any descriptor of the file would drop the lock, so the
// file is opened only after this process's registry claim says no other
// store here has it.
class file_lock {
 public:
  file_lock() = default;
  file_lock(file_lock&& o) noexcept : file_(std::move(o.file_)), claim_(std::move(o.claim_)) {}
  file_lock& operator=(file_lock&& o) noexcept {
    if (this != &o) {
      release();
      file_ = std::move(o.file_);
      claim_ = std::move(o.claim_);
    }
    return *this;
  }
  ~file_lock() { release(); }
  void release() noexcept {
    (void)file_.close();  // drops the lock
    claim_.release();
  }

  // Locks `lock_file` (created if missing) for the store persisted at `store_file`.
  // Errors: already_open_in_process (another store in this process has it),
  // lock_held_by_other_process (naming the holder's PID where the OS tells:
  // Linux and the BSDs via find_lock_holder; on Windows the holder of a
  // LockFileEx range cannot be asked for, so the message says "another
  // process"), locks_unsupported (POSIX, naming the filesystem),
  // not_found / permission_denied / io_error.
  static result<file_lock> acquire(const std::filesystem::path& lock_file, const std::filesystem::path& store_file) {
    static std::mutex opening;  // no two stores of this process race between stat, create and claim
    std::lock_guard serial(opening);
    const std::string where = "'" + path_text(store_file) + "'";
    file_lock l;
    std::error_code ec;
    const bool present = std::filesystem::exists(lock_file, ec);
    if (ec) return keel::error(errc::io_error, "cannot open " + where + ": cannot stat '" + path_text(lock_file) + "': " + ec.message());
    if (!present) {
      file created;
      bool exists = false;
      // A new file: nobody in this process can hold a lock on it yet, so closing it drops none.
      if (auto e = created.create_new(lock_file, exists); e && !exists)
        return os_error(e, "cannot open " + where + ": cannot create '" + path_text(lock_file) + "'");
    }
    auto claim = dir_registry::instance().acquire(lock_file);
    if (!claim) {
      if (claim.error() == errc::already_open_in_process) {
        return keel::error(errc::already_open_in_process,
                           "cannot open " + where + ": a store in this process has it open already (" +
                               claim.error().message() + ")");
      }
      return claim.error();
    }
    l.claim_ = std::move(*claim);
    if (auto e = l.file_.open_read_write(lock_file))
      return os_error(e, "cannot open " + where + ": cannot open '" + path_text(lock_file) + "'");
    bool busy = false;
    const sys_error e = l.file_.try_lock(busy);
    if (!e && !busy) return l;
    if (busy) {
      std::string holder = "another process";
      if (auto h = find_lock_holder(lock_file, /*may_open_lock_file=*/false)) {
        holder = "process " + std::to_string(h->pid);
        if (!h->command.empty()) holder += " (" + h->command + ")";
      }
      return keel::error(errc::lock_held_by_other_process,
                         "cannot open " + where + ": " + holder + " has it open (it holds the lock on '" +
                             path_text(lock_file) +
                             "'). Close it there, or stop that process; do not delete the lock file, that would "
                             "let two writers corrupt the store");
    }
#if !defined(_WIN32)
    const int c = static_cast<int>(e.code);
    if (c == ENOLCK || c == ENOTSUP || c == EOPNOTSUPP || c == ENOSYS) {
      std::string fs = filesystem_name(lock_file.parent_path().empty() ? "." : lock_file.parent_path());
      return keel::error(errc::locks_unsupported,
                         "cannot open " + where + ": the filesystem" + (fs.empty() ? std::string() : " (" + fs + ")") +
                             " does not support file locks (" + std::strerror(c) +
                             "). Put the file on a local filesystem or enable locking (e.g. lockd for NFS)");
    }
#endif
    return os_error(e, "cannot open " + where + ": cannot lock '" + path_text(lock_file) + "'");
  }

 private:
  file file_;
  dir_registry::claim claim_;
};

}  // namespace keel::detail
