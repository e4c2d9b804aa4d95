// keel: diagnose(path) explains a database directory in plain words: does it
// exist, is it a RocksDB directory, is it locked and by whom, can the
// filesystem lock, would an open succeed now, and what to do if not. A hybrid
// store's directory (<keel/hybrid.hpp>: a TIER file) is explained as one:
// its tier, who holds keel.lock, and for the RocksDB tier its rocksdb/
// directory as above. A persisted memory store (memory_options::persist_path,
// keel's --memory-file: a FILE that is a keel dump, FILE.wal-* logs,
// FILE.lock) is explained as one: its snapshot, its logs, who holds FILE.lock.
//
// It only reads. It never deletes anything, never opens the LOCK file (the
// holder is found in /proc/locks by device and inode; on Windows, where
// opening a file drops no lock, LOCK is opened for reading to see whether it
// is held, and the Restart Manager names the holder: detail/lock_diagnosis.hpp),
// never opens the database read-write. It may open it read-only (DB::OpenForReadOnly takes no
// lock and, with the discarding logger used here, writes no LOG file) to check
// that RocksDB can read it; diagnose_options::read_only_open = false skips it.
// To tell whether file locks work on the filesystem it takes and at once
// drops a shared lock on CURRENT (which RocksDB never locks), never on LOCK.
// Windows: permissions are judged by the read-only attribute only (not ACLs)
// and users are named by %USERNAME% (detail/platform_file.hpp).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "detail/db_files.hpp"
#include "detail/lock_diagnosis.hpp"
#include "detail/platform_file.hpp"
#include "hybrid/layout.hpp"
#include "rocksdb/errors.hpp"

namespace keel {

enum class doctor_verdict {
  opens,          // an existing database that an open would open now
  would_create,   // no database here yet: an open (create_if_missing) would create one
  will_not_open,  // an open would fail now (see the findings for why and what to do)
};

// Who holds a lock file: the process and its command line ("" when unknown).
using lock_holder = detail::lock_holder;

struct doctor_report {
  std::filesystem::path path;
  bool exists = false;
  bool is_directory = false;
  bool is_rocksdb = false;                    // has a CURRENT file
  std::string hybrid_tier;                    // a hybrid store (TIER file): "memory", "rocksdb", or what TIER says
  bool is_memory_store = false;               // a persisted memory store: FILE (snapshot), FILE.wal-*, FILE.lock
  std::uint64_t memory_logs = 0;              // a persisted memory store: how many FILE.wal-* logs
  bool lock_file = false;                     // has a LOCK file
  std::optional<lock_holder> holder;          // who holds the LOCK, if anyone
  bool lock_state_known = true;               // false when /proc/locks could not be read
  std::string filesystem;
  bool filesystem_may_not_lock = false;  // by the filesystem's type (NFS, SMB, FUSE, ...)
  std::optional<bool> locks_work;        // by a probe: a read lock on CURRENT; empty if not probed
  std::optional<bool> readable;          // read-only open result, when tried
  std::optional<std::uint64_t> estimated_keys;
  std::uint64_t sst_files = 0, sst_bytes = 0;
  doctor_verdict verdict = doctor_verdict::will_not_open;
  std::vector<std::string> findings;  // one sentence each, in order
  std::string advice;                 // what to do, when the verdict is not `opens`
};

struct diagnose_options {
  bool read_only_open = true;
};

// What a path holds, as a RocksDB open would find it: a quick look (the
// listing and CURRENT only) for a tool deciding whether to open, create or
// refuse; diagnose() explains it in full. Reads only, writes nothing.
enum class directory_contents {
  missing,   // nothing at the path
  empty,     // a directory with no RocksDB file in it (it may hold other files)
  database,  // a directory with a CURRENT file
  damaged,   // RocksDB files (MANIFEST-*, *.sst, *.log, ...) but no CURRENT
  unknown,   // it exists but cannot be inspected (permissions, not a directory, I/O error)
};
inline directory_contents inspect_directory(const std::filesystem::path& dir) {
  using kind = detail::db_dir_state::kind;
  switch (detail::inspect_db_dir(dir).what) {
    case kind::missing: return directory_contents::missing;
    case kind::empty: return directory_contents::empty;
    case kind::database: return directory_contents::database;
    case kind::damaged: return directory_contents::damaged;
    case kind::unknown: break;
  }
  return directory_contents::unknown;
}

// Who holds `lock_file` (a RocksDB LOCK, a hybrid store's keel.lock, a memory
// store's FILE.lock); nullopt when nobody does or it cannot be told (Linux:
// /proc/locks; Windows: the Restart Manager). Never opens the file unless
// `may_open_lock_file`: closing any descriptor of it would drop this
// process's own fcntl locks on it, so pass true only when this process holds
// none (e.g. its store is open read-only). Never throws.
inline std::optional<lock_holder> lock_file_holder(const std::filesystem::path& lock_file,
                                                   bool may_open_lock_file = false) noexcept {
  return detail::find_lock_holder(lock_file, may_open_lock_file);
}

namespace detail {

// A RocksDB logger that drops everything (so a read-only open writes no LOG).
class null_logger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

inline bool fs_may_not_lock(const std::string& fs) {
  for (const char* n : {"nfs", "cifs", "smb", "smb2", "fuse", "9p", "vboxsf", "afs", "openafs", "coda", "ceph",
                        "lustre", "gpfs", "smbfs"}) {
    if (fs == n) return true;
  }
  return false;
}

// probe_file_locks() (was probe_fcntl_locks) is in detail/lock_diagnosis.hpp.

}  // namespace detail

inline doctor_report diagnose(const std::filesystem::path& path, const diagnose_options& opts = {});

namespace detail {

// A hybrid store's directory (hybrid/layout.hpp): TIER names the tier;
// keel.lock is held while the store is open (whatever the tier); the RocksDB
// tier is rocksdb/.
inline doctor_report diagnose_hybrid(doctor_report r, const diagnose_options& opts) {
  namespace fs = std::filesystem;
  auto say = [&](std::string s) { r.findings.push_back(std::move(s)); };
  const std::string where = "'" + path_text(r.path) + "'";
  const hybrid_layout layout{r.path};
  if (auto text = layout.read_tier_text()) r.hybrid_tier = std::move(*text);  // unreadable: "", which names no tier
  const bool known_tier = hybrid_layout::names_a_tier(r.hybrid_tier);
  say(where + " is a hybrid store (docs/hybrid.md); its TIER file says the data is " +
      (known_tier ? "in its " + r.hybrid_tier + " tier." : "in '" + r.hybrid_tier + "', which names no tier."));
  if (!known_tier) {
    say("An open fails with corruption; keel changes nothing there.");
    say("Verdict: an open would NOT succeed now.");
    r.advice = "Keep a copy of the directory; TIER must hold 'memory' or 'rocksdb' (the tier whose files are there).";
    return r;
  }
  bool blocked = false;
  std::error_code ec;
  r.lock_file = fs::exists(layout.lock(), ec);
  if (r.lock_file) {
    const lock_state lock = query_lock(layout.lock());
    r.lock_state_known = lock.held.has_value();
    r.holder = lock.holder;
    if (r.holder) {
      say("It is open: process " + std::to_string(r.holder->pid) +
          (r.holder->command.empty() ? std::string(" (command line unknown)") : " (" + r.holder->command + ")") +
          " holds its keel.lock.");
      say("An open now fails with lock_held_by_other_process (a hybrid store has no read-only open).");
      blocked = true;
      r.advice = "Stop process " + std::to_string(r.holder->pid) +
                 " (or let it finish), or go through it. Do not delete keel.lock.";
    } else if (lock.held == true) {
      say(lock.note);
      say("An open now fails with lock_held_by_other_process.");
      blocked = true;
      r.advice = "Stop the program that has the store open (or let it finish). Do not delete keel.lock.";
    } else if (r.lock_state_known) {
      say("Nobody holds its keel.lock (the file stays after a close; that is harmless).");
    } else {
      say(lock.note);
    }
  }
  if (!blocked && !may_access(r.path, /*write=*/true)) {
    say("This user (" + current_user_text() + ") may not write in it, so an open fails with permission_denied.");
    blocked = true;
    r.advice = "Run as the owner of the store's files or fix their permissions.";
  }
  if (r.hybrid_tier == hybrid_layout::rocksdb_tier) {
    if (!fs::is_directory(layout.rocksdb_dir(), ec)) {
      say("But its rocksdb/ directory is missing: an open fails with corruption.");
      say("Verdict: an open would NOT succeed now.");
      r.advice = "Keep a copy of the directory and restore the store from a backup or a checkpoint.";
      r.verdict = doctor_verdict::will_not_open;
      return r;
    }
    if (!blocked) {
      doctor_report tier = diagnose(layout.rocksdb_dir(), opts);
      for (auto& f : tier.findings) {
        if (f.rfind("Verdict:", 0) == 0) continue;
        say("RocksDB tier: " + f);
      }
      r.is_rocksdb = tier.is_rocksdb;
      r.readable = tier.readable;
      r.estimated_keys = tier.estimated_keys;
      r.sst_files = tier.sst_files;
      r.sst_bytes = tier.sst_bytes;
      r.filesystem = tier.filesystem;
      r.locks_work = tier.locks_work;
      if (tier.verdict != doctor_verdict::opens) {
        blocked = true;
        r.advice = tier.advice;
      }
    }
  } else {
    say(fs::exists(layout.memory_file(), ec)
            ? std::string("Its memory tier is memory/store (snapshot) and its logs memory/store.wal-*.")
            : std::string("Its memory tier has no snapshot yet (memory/store.wal-* logs hold every write)."));
    if (fs::exists(layout.rocksdb_dir(), ec))
      say("A rocksdb/ directory is there: a move to RocksDB that did not commit; the next open removes it (the "
          "memory tier has every write).");
  }
  r.verdict = blocked ? doctor_verdict::will_not_open : doctor_verdict::opens;
  say(blocked ? "Verdict: an open would NOT succeed now." : "Verdict: an open would succeed now.");
  return r;
}

// The logs (FILE.wal-<12 digits>) of the memory store persisted at `file`,
// and their bytes.
inline std::vector<std::filesystem::path> memory_store_logs(const std::filesystem::path& file, std::uint64_t& bytes) {
  namespace fs = std::filesystem;
  std::vector<fs::path> logs;
  const std::string prefix = file.filename().string() + ".wal-";
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + 12 || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (name.find_first_not_of("0123456789", prefix.size()) != std::string::npos) continue;
    std::error_code sec;
    const auto size = fs::file_size(it->path(), sec);
    if (!sec) bytes += size;
    logs.push_back(it->path());
  }
  std::sort(logs.begin(), logs.end());
  return logs;
}

// Whether `path` is a persisted memory store: a file that starts as a keel
// dump (its snapshot), or no file but logs of one (no fold yet).
inline bool looks_like_memory_store(const std::filesystem::path& path, bool exists) {
  if (exists) {
    std::ifstream in(path, std::ios::binary);
    char magic[8] = {};
    in.read(magic, sizeof magic);
    return in.gcount() == 8 && std::string_view(magic, 8) == "KEELDUMP";
  }
  std::uint64_t bytes = 0;
  return !memory_store_logs(path, bytes).empty();
}

// A persisted memory store at `path` (the snapshot file): its files, who
// holds path.lock (one process per store; never deleted), whether an open
// would succeed now.
inline doctor_report diagnose_memory_store(doctor_report r) {
  namespace fs = std::filesystem;
  auto say = [&](std::string s) { r.findings.push_back(std::move(s)); };
  const std::string where = "'" + path_text(r.path) + "'";
  r.is_memory_store = true;
  std::error_code ec;
  std::uint64_t log_bytes = 0;
  const auto logs = memory_store_logs(r.path, log_bytes);
  r.memory_logs = logs.size();
  const fs::path dir = r.path.parent_path().empty() ? fs::path(".") : r.path.parent_path();
  r.filesystem = filesystem_name(dir);
  const std::string log_text = logs.empty() ? std::string("no log")
                               : std::to_string(logs.size()) + (logs.size() == 1 ? " log (" : " logs (") +
                                     path_text(logs.front().filename()) + (logs.size() > 1 ? ", ..." : "") + ", " +
                                     std::to_string(log_bytes) + " bytes)";
  if (r.exists) {
    const auto size = fs::file_size(r.path, ec);
    say(where + " is a persisted memory store (memory_options::persist_path; keel --memory-file): its snapshot, " +
        (ec ? std::string("a keel dump") : "a keel dump of " + std::to_string(size) + " bytes") + ", and " + log_text +
        " with the writes since it.");
  } else {
    say(where + " is a persisted memory store that has not folded its log into a snapshot yet: " + log_text +
        " hold its writes.");
  }
  if (!r.filesystem.empty()) say("Filesystem: " + r.filesystem + ".");
  bool blocked = false;
  fs::path lock = r.path;
  lock += ".lock";
  r.lock_file = fs::exists(lock, ec);
  if (r.lock_file) {
    const lock_state state = query_lock(lock);
    r.lock_state_known = state.held.has_value();
    r.holder = state.holder;
    if (r.holder) {
      say("It is open: process " + std::to_string(r.holder->pid) +
          (r.holder->command.empty() ? std::string(" (command line unknown)") : " (" + r.holder->command + ")") +
          " holds its lock file '" + path_text(lock) + "'.");
      say("An open now fails with lock_held_by_other_process (a memory store has no read-only open).");
      blocked = true;
      r.advice = "Stop process " + std::to_string(r.holder->pid) + " (or let it finish), or go through it. Do not "
                 "delete '" + path_text(lock) + "': that would let two writers corrupt the store.";
    } else if (state.held == true) {
      say(state.note);
      say("An open now fails with lock_held_by_other_process.");
      blocked = true;
      r.advice = "Stop the program that has the store open (or let it finish). Do not delete '" + path_text(lock) + "'.";
    } else if (r.lock_state_known) {
      say("Nobody holds its lock file '" + path_text(lock) + "' (the file stays after a close; that is harmless).");
    } else {
      say(state.note);
    }
  } else {
    say("It has no lock file; nobody has it open.");
  }
  if (!blocked && !may_access(dir, /*write=*/true)) {
    say("This user (" + current_user_text() + ") may not write in '" + path_text(dir) +
        "', so an open fails with permission_denied (it writes its logs and snapshot there).");
    blocked = true;
    r.advice = "Run as the owner of the store's files or fix their permissions.";
  }
  r.verdict = blocked ? doctor_verdict::will_not_open : doctor_verdict::opens;
  say(blocked ? "Verdict: an open would NOT succeed now." : "Verdict: an open would succeed now.");
  return r;
}

}  // namespace detail

inline doctor_report diagnose(const std::filesystem::path& path, const diagnose_options& opts) {
  namespace fs = std::filesystem;
  doctor_report r;
  r.path = path;
  auto say = [&](std::string s) { r.findings.push_back(std::move(s)); };
  const std::string where = "'" + detail::path_text(path) + "'";

  std::error_code st_ec;
  const fs::file_status st = fs::status(path, st_ec);
  if (st_ec || !fs::exists(st)) {
    if (!st_ec || st_ec == std::errc::no_such_file_or_directory) {
      if (detail::looks_like_memory_store(path, false)) return detail::diagnose_memory_store(std::move(r));
      say(where + " does not exist.");
      // The nearest existing ancestor decides whether it can be created: a
      // relative path's ancestors end at the working directory ("data/db"
      // with no "data": "."), an absolute one's at its root.
      fs::path parent = path.parent_path();
      std::error_code pec;
      while (!parent.empty() && !fs::exists(parent, pec) && parent != parent.parent_path())
        parent = parent.parent_path();
      if (parent.empty()) parent = ".";
      const bool parent_missing = !path.parent_path().empty() && parent != path.parent_path();
      if (detail::may_create_in(parent)) {
        say(parent_missing ? "An open with create_if_missing (the default) would create a new, empty database there, "
                             "and the missing directories above it ('" +
                                 detail::path_text(path.parent_path()) + "' is missing; the keel tool creates only "
                                 "the last component and refuses)."
                           : "An open with create_if_missing (the default) would create a new, empty database there.");
        r.verdict = doctor_verdict::would_create;
        r.advice = "If you expected data here, check the path (a typo, another working directory, an unmounted disk).";
      } else {
        say("It cannot be created: '" + detail::path_text(parent) + "' is not writable by this user (" +
            detail::current_user_text() + ").");
        r.advice = "Create the directory with the right owner, or use a path this user may write.";
      }
      return r;
    }
    say("Cannot inspect " + where + ": " + st_ec.message() + ".");
    r.advice = st_ec == std::errc::permission_denied
                   ? "A parent directory is not searchable by this user; fix its permissions."
                   : "Fix the path or the filesystem first.";
    return r;
  }
  r.exists = true;
  if (fs::is_regular_file(st) && detail::looks_like_memory_store(path, true))
    return detail::diagnose_memory_store(std::move(r));
  if (!fs::is_directory(st)) {
    say(where + " exists but is not a directory (RocksDB needs a directory).");
    r.advice = "Point keel at the database directory, not at a file inside it or another file.";
    return r;
  }
  r.is_directory = true;
  r.filesystem = detail::filesystem_name(path);

  std::error_code ec;
  std::size_t entries = 0;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    ++entries;
    const std::string name = it->path().filename().string();
    if (name.size() > 4 && name.ends_with(".sst")) {
      ++r.sst_files;
      std::error_code sec;
      auto sz = fs::file_size(it->path(), sec);
      if (!sec) r.sst_bytes += sz;
    }
  }
  r.is_rocksdb = fs::exists(path / "CURRENT", ec);
  r.lock_file = fs::exists(path / "LOCK", ec);
  if (!r.is_rocksdb && fs::exists(hybrid_layout{path}.tier(), ec)) return detail::diagnose_hybrid(std::move(r), opts);

  const bool can_rw = detail::may_access(path, /*write=*/true);

  if (!r.is_rocksdb) {
    const detail::db_dir_state state = detail::inspect_db_dir(path);
    if (state.what == detail::db_dir_state::kind::damaged && state.data_files) {
      say(where + " has RocksDB files (" + detail::join_names(state.files) +
          ") but no CURRENT file: the database is damaged.");
      say("An open fails with corruption; keel will not create a new database over it.");
      r.advice =
          "Keep a copy of the directory before anything else; restore it from a backup, or repair a copy "
          "of it (rocksdb's `ldb repair`).";
      say("Verdict: an open would NOT succeed now.");
      return r;
    }
    if (entries == 0) {
      say(where + " is an empty directory: no database yet.");
    } else {
      say(where + " is a directory with " + std::to_string(entries) +
          " entries but no CURRENT file: it is not a RocksDB database.");
    }
    if (!can_rw) {
      say("This user (" + detail::current_user_text() + ") may not write in it, so an open would fail.");
      r.advice = "Fix the directory's permissions or use another path.";
      return r;
    }
    say("An open with create_if_missing (the default) would create a new database in it.");
    r.verdict = doctor_verdict::would_create;
    r.advice = entries == 0 ? "Nothing to do, unless you expected data here: then check the path."
                            : "This is probably the wrong path: a new database would be created among other files.";
    return r;
  }

  say(where + " is a RocksDB database (" + std::to_string(r.sst_files) + " SST files, " + std::to_string(r.sst_bytes) +
      " bytes in them).");
  if (!r.filesystem.empty()) {
    r.filesystem_may_not_lock = detail::fs_may_not_lock(r.filesystem);
    say("Filesystem: " + r.filesystem +
        (r.filesystem_may_not_lock ? std::string(", where file locks often do not work (NFS without lockd, SMB).")
                                   : std::string(".")));
  }

  bool blocked = false;
  std::string advice;
  r.locks_work = detail::probe_file_locks(path / "CURRENT");
  if (r.locks_work == true) {
    say("File locks work here (checked with a shared lock on CURRENT, never on LOCK).");
  } else if (r.locks_work == false) {
    say("File locks do NOT work on this filesystem: a read-write open fails with locks_unsupported.");
    blocked = true;
    advice =
        "Move the database to a local disk, enable locking on the mount (NFS: run lockd/rpc.statd; "
        "SMB: mount with locking support), or open it read-only.";
  }
  if (r.lock_file) {
    const detail::lock_state lock = detail::query_lock(path / "LOCK");
    r.lock_state_known = lock.held.has_value();
    r.holder = lock.holder;
    if (r.holder) {
      say("It is locked: process " + std::to_string(r.holder->pid) +
          (r.holder->command.empty() ? std::string(" (command line unknown)") : " (" + r.holder->command + ")") +
          " has it open read-write.");
      say("An open now fails with lock_held_by_other_process.");
      blocked = true;
      advice = "Stop process " + std::to_string(r.holder->pid) +
               " (or let it finish), or go through it. Do not delete the LOCK file: that would let two "
               "writers corrupt the database.";
    } else if (lock.held == true) {
      say(lock.note);  // held, holder unknown (Windows: the Restart Manager named nobody)
      say("An open now fails with lock_held_by_other_process.");
      blocked = true;
      advice = "Stop the program that has the database open (or let it finish), or go through it. Do not delete "
               "the LOCK file.";
    } else if (r.lock_state_known) {
      say("It has a LOCK file, but no process holds a lock on it: it was left by a process that closed the "
          "database or exited (even if killed). That is harmless; an open takes the lock again. Do not delete it.");
    } else {
      say(lock.note);  // e.g. /proc/locks is not readable
    }
  } else {
    say("It has no LOCK file; nobody has it open read-write.");
  }

  if (!can_rw) {
    say("This user (" + detail::current_user_text() +
        ") may not read and write the directory, so a "
        "read-write open fails with permission_denied.");
    blocked = true;
    if (advice.empty()) {
      const std::string owner = detail::owner_text(path);
      advice = "Run as the directory's owner" + (owner.empty() ? std::string() : " (" + owner + ")") +
               " or fix its permissions.";
    }
  } else if (r.lock_file && !detail::may_access(path / "LOCK", /*write=*/true)) {
    say("This user may not write its LOCK file, so a read-write open fails with permission_denied.");
    blocked = true;
    if (advice.empty()) advice = "Run as the owner of the database's files or fix their permissions.";
  }

  if (opts.read_only_open && detail::may_access(path, /*write=*/false)) {
    rocksdb::Options o;
    o.create_if_missing = false;
    o.info_log = std::make_shared<detail::null_logger>();
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(o, path.string(), &db);
    if (s.ok()) {
      r.readable = true;
      std::uint64_t n = 0;
      if (db->GetIntProperty("rocksdb.estimate-num-keys", &n)) r.estimated_keys = n;
      say("RocksDB can read it (read-only check, no lock taken): about " +
          std::to_string(r.estimated_keys.value_or(0)) + " keys.");
      (void)db->Close();
      delete db;
    } else {
      delete db;
      r.readable = false;
      // Whatever the cause, an open reads the same files and fails too.
      const keel::error e = detail::rocks_open_error(s, path);
      say("RocksDB cannot read it: " + s.ToString());
      say("An open fails with " + std::string(to_string(e.code())) + ": " + e.message());
      blocked = true;
      if (e.code() == errc::corruption)
        advice =
            "The database is damaged. Keep a copy of the directory before anything else; restore it from a "
            "backup, or repair a copy of it (rocksdb's `ldb repair`).";
      else if (advice.empty())
        advice = "Fix what the message above names (permissions, the disk, the files), then run doctor again.";
    }
  }

  if (r.holder && r.readable == true) {
    say("Reading works meanwhile: a read-only open (rocks_options::read_only; keel's get, scan, count, stats, "
        "export) takes no lock and sees the data as of its open.");
  }

  if (blocked) {
    r.verdict = doctor_verdict::will_not_open;
    r.advice = advice;
    say("Verdict: an open would NOT succeed now.");
  } else {
    r.verdict = doctor_verdict::opens;
    say("Verdict: an open would succeed now.");
  }
  return r;
}

}  // namespace keel
