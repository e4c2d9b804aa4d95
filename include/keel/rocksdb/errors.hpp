// keel::detail (RocksDB backend): turning a rocksdb::Status into a
// keel::error. One job: the mapping, for DB::Open (rocks_open_error) and for
// operations on an open DB (rocks_op_error); also used by the disk doctor
// (doctor.hpp) and by SST import (dump_rocksdb.hpp).
//
// RocksDB gives lock failures no distinct code or subcode, so they are told
// apart by message text, then explained with what the OS can tell (the
// holder's PID, the filesystem's name). The texts, from RocksDB 7.8:
//   "lock hold by current process ... <dir>/LOCK: No locks available"
//       RocksDB's own process-wide map of locked paths (keyed by the path
//       string): the directory is open in this process outside keel;
//   "While lock file: <dir>/LOCK: <strerror>"
//       fcntl(F_SETLK) on LOCK failed: EAGAIN/EACCES another process holds it,
//       ENOLCK/EOPNOTSUPP/ENOSYS the filesystem has no working locks;
//   "Failed to create lock file: <dir>/LOCK: ..."
//       Windows: LOCK is opened with share mode 0 (docs/platforms.md).
// Thread safety: free functions without shared state. Messages show paths
// through path_text().
#pragma once

#include <rocksdb/status.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "../error.hpp"
#include "../detail/db_files.hpp"
#include "../detail/lock_diagnosis.hpp"
#include "../detail/platform_file.hpp"

namespace keel::detail {

inline bool contains_text(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// The file in `dir` that RocksDB's message `text` says is missing ("...:
// <dir>/MANIFEST-000005: No such file or directory") or is a directory
// ("...: Is a directory"): its name, or "" when the message names no file
// directly inside `dir`. `is_directory` tells which of the two it was.
inline std::string named_bad_file(std::string_view text, const std::filesystem::path& dir, bool& is_directory) {
  for (std::string_view tail : {std::string_view(": No such file or directory"), std::string_view(": Is a directory")}) {
    const std::size_t end = text.rfind(tail);
    if (end == std::string_view::npos) continue;
    const std::size_t start = text.rfind(": ", end == 0 ? 0 : end - 1);
    if (start == std::string_view::npos) continue;
    const std::filesystem::path file(std::string(text.substr(start + 2, end - start - 2)));
    std::error_code ec;
    if (!file.has_filename() || !std::filesystem::equivalent(file.parent_path(), dir, ec) || ec) continue;
    is_directory = tail == ": Is a directory";
    return path_text(file.filename());
  }
  return {};
}

// The database in `dir` is damaged: `file`, which it needs, is missing or (if
// `is_directory`) a directory. `cause` is RocksDB's text, if any.
inline keel::error damaged_file_error(const std::filesystem::path& dir, const std::string& file, bool is_directory,
                                      std::string_view cause = {}) {
  return {errc::corruption,
          "cannot open '" + path_text(dir) + "': the database is damaged: '" + file + "', a file it needs, " +
              (is_directory ? "is a directory, not a file" : "is missing") +
              (cause.empty() ? std::string() : " (RocksDB: " + std::string(cause) + ")") +
              ". Keep a copy of the directory before anything else; restore it from a backup, or repair a copy of "
              "it (rocksdb's `ldb repair`)"};
}

// RocksDB's reserve for resuming after a full disk: its SstFileManager
// resumes writes (on its own, or through DB::Resume()) only once the
// filesystem has this much free ("free space [N bytes] is less than required
// disk buffer [67108864 bytes]" in its LOG); until then Resume() returns Busy.
inline constexpr std::uint64_t rocks_resume_reserve_bytes = std::uint64_t{64} << 20;

// Free bytes on the filesystem holding `dir` (available to this user), or
// nullopt when it cannot be told.
inline std::optional<std::uint64_t> free_bytes(const std::filesystem::path& dir) {
  std::error_code ec;
  const std::filesystem::space_info si = std::filesystem::space(dir, ec);
  if (ec) return std::nullopt;
  return static_cast<std::uint64_t>(si.available);
}

// What to do after a write on the open database in `dir` met a full disk.
inline std::string no_space_write_advice(const std::filesystem::path& dir) {
  const std::optional<std::uint64_t> free = free_bytes(dir);
  std::string now = free ? std::to_string(*free) + " bytes free now" : std::string("free space unknown");
  std::string more;
  if (free && *free < rocks_resume_reserve_bytes)
    more = ", i.e. " + std::to_string(rocks_resume_reserve_bytes - *free) + " bytes more than now";
  return ". The disk is full (" + now + "): after a write that met it RocksDB refuses every write (reads go on, nothing "
         "acknowledged is lost). To write again, either free some space, close() the store and open it again "
         "(a reopen needs a few MiB: a new MANIFEST preallocates 4 MiB), or free at least " +
         std::to_string(rocks_resume_reserve_bytes) + " bytes (64 MiB, RocksDB's reserve for resuming in place" +
         more + ") and call DB::Resume() (through with_db); with less free, Resume() keeps returning Busy";
}

// A failure of DB::Open or DB::OpenForReadOnly on `dir`.
inline keel::error rocks_open_error(const rocksdb::Status& s, const std::filesystem::path& dir) {
  const std::string text = s.ToString();
  const std::string where = "'" + path_text(dir) + "'";
  const std::filesystem::path lock_file = dir / "LOCK";

  // A file the database needs is missing or is not a file. RocksDB calls it
  // an I/O error (the MANIFEST named by CURRENT) or a corruption (an SST the
  // MANIFEST names, reported under its old ".ldb" name too): either way the
  // database is damaged, and saying so keeps a fallback from hiding it.
  if (s.IsIOError() || s.IsCorruption()) {
    bool is_directory = false;
    std::string file = named_bad_file(text, dir, is_directory);
    if (!is_rocksdb_data_file(file)) file.clear();  // LOCK, LOG: not about the data
    if (file == "CURRENT" && !is_directory) {
      return {errc::not_found, "cannot open " + where + ": no database there (no CURRENT file)"};
    }
    if (!file.empty()) {
      if (file.ends_with(".ldb")) file = file.substr(0, file.size() - 4) + ".sst";
      return damaged_file_error(dir, file, is_directory, text);
    }
  }

  if (contains_text(text, "lock hold by current process")) {
    // keel's registry would have caught an open made through keel, so another
    // part of this program opened the directory with RocksDB directly.
    return {errc::already_open_in_process,
            "cannot open " + where + ": it is already open in this process, outside keel (RocksDB: " + text +
                "); close the other DB handle first"};
  }
  // "While lock file: <dir>/LOCK: <strerror>" is the fcntl(F_SETLK) call failing.
  if (contains_text(text, "While lock file")) {
    if (contains_text(text, "Resource temporarily unavailable") || contains_text(text, "Permission denied")) {
      std::string holder = "another process";
      // This process holds no lock on this file (the lock call just failed),
      // but a DB on it may still be open here through raw RocksDB: read
      // /proc/locks where there is one, and never open the file otherwise.
      if (auto h = find_lock_holder(lock_file, /*may_open_lock_file=*/false)) {
        holder = "process " + std::to_string(h->pid);
        if (!h->command.empty()) holder += " (" + h->command + ")";
      }
      return {errc::lock_held_by_other_process,
              "cannot open " + where + ": " + holder + " has it open (it holds the lock on '" + path_text(lock_file) +
                  "'). Close it there, or stop that process; do not delete the LOCK file, that would let two "
                  "writers corrupt the database"};
    }
    if (contains_text(text, "No locks available") || contains_text(text, "Operation not supported") ||
        contains_text(text, "Function not implemented")) {
      std::string fs = filesystem_name(dir);
      return {errc::locks_unsupported,
              "cannot open " + where + ": the filesystem" + (fs.empty() ? std::string() : " (" + fs + ")") +
                  " does not support file locks (RocksDB: " + text +
                  "). Put the database on a local filesystem, enable locking (e.g. lockd for NFS), or use "
                  "the memory backend"};
    }
  }
  // Windows (port/win/env_win.cc): LOCK is opened with share mode 0, and a
  // second opener gets "Failed to create lock file: <dir>/LOCK: <localised
  // Windows message>". The message text is not relied on: query_lock() checks
  // that LOCK is held (sharing violation) and asks the Restart Manager who
  // holds it, or says that it cannot tell.
  if (contains_text(text, "Failed to create lock file")) {
    const lock_state lock = query_lock(lock_file);
    if (lock.held == true) {
      std::string holder = "another process";
      if (lock.holder) {
        holder = "process " + std::to_string(lock.holder->pid);
        if (!lock.holder->command.empty()) holder += " (" + lock.holder->command + ")";
      }
      return {errc::lock_held_by_other_process,
              "cannot open " + where + ": " + holder + " has it open (it holds '" + path_text(lock_file) + "')" +
                  (lock.holder ? std::string() : " [" + lock.note + "]") +
                  ". Close it there, or stop that process; do not delete the LOCK file, that would let two "
                  "writers corrupt the database (RocksDB: " + text + ")"};
    }
  }
  if (contains_text(text, "Permission denied") || contains_text(text, "Read-only file system") ||
      contains_text(text, "Access is denied")) {
    return {errc::permission_denied, "cannot open " + where + ": permission denied (RocksDB: " + text +
                                         "); the process needs read and write access to the directory"};
  }
  if (s.IsNoSpace() || contains_text(text, "No space left")) {
    const std::optional<std::uint64_t> free = free_bytes(dir);
    return {errc::no_space, "cannot open " + where + ": no space left on device (RocksDB: " + text + "; " +
                                (free ? std::to_string(*free) + " bytes free now" : std::string("free space unknown")) +
                                "). Free some space and open it again: an open writes a new MANIFEST, which "
                                "RocksDB preallocates to 4 MiB (manifest_preallocation_size), and its WAL"};
  }
  if (s.IsCorruption()) {
    return {errc::corruption, "cannot open " + where + ": the database is corrupted (RocksDB: " + text +
                                  "); restore it from a backup or repair a copy of it"};
  }
  if (s.IsInvalidArgument()) {
    if (contains_text(text, "does not exist")) {
      return {errc::not_found, "cannot open " + where + ": no database there and create_if_missing is false"};
    }
    return {errc::invalid_argument, "cannot open " + where + ": " + text};
  }
  if (s.IsNotSupported()) return {errc::not_supported, "cannot open " + where + ": " + text};
  return {errc::io_error, "cannot open " + where + ": " + text};
}

// A failure of an operation on an open DB.
inline keel::error rocks_op_error(const rocksdb::Status& s, std::string_view op, const std::filesystem::path& dir) {
  std::string text = std::string(op) + " on '" + path_text(dir) + "' failed: " + s.ToString();
  if (s.IsNoSpace() || contains_text(text, "No space left on device")) {
    return {errc::no_space, std::move(text) + no_space_write_advice(dir)};
  }
  if (s.IsCorruption()) return {errc::corruption, std::move(text)};
  if (s.IsInvalidArgument()) return {errc::invalid_argument, std::move(text)};
  if (s.IsNotSupported()) return {errc::not_supported, std::move(text)};
  if (contains_text(text, "Permission denied")) return {errc::permission_denied, std::move(text)};
  return {errc::io_error, std::move(text)};
}

}  // namespace keel::detail
