// keel::detail: does a directory already hold a RocksDB database?
//
// Asked before an open, to keep a user's data from being hidden: an open
// that fails over an existing database never falls back to an empty memory
// store (open_store.hpp), a damaged database is reported as damaged rather
// than re-created over (rocksdb.hpp), and the CLI tells "no database at PATH"
// from an empty one. Standard library only; reads the directory listing and
// CURRENT (a few bytes), nothing else, and writes nothing.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace keel::detail {

struct db_dir_state {
  enum class kind {
    missing,       // nothing at the path
    empty,         // a directory with no RocksDB file in it (it may hold other files)
    database,      // a directory with a CURRENT file
    damaged,       // RocksDB files (MANIFEST-*, *.sst, *.log, ...) but no CURRENT
    unknown,       // it exists but cannot be inspected (permissions, not a directory, I/O error)
  };
  kind what = kind::missing;
  // The RocksDB files found (a few names, for messages), when `what` is
  // damaged or database.
  std::vector<std::string> files;
  // Without CURRENT: whether a file that can hold keys and values (*.sst,
  // *.ldb, *.log, *.blob) is among them. A lone MANIFEST-000001 or OPTIONS
  // file is what a first open that died half-way leaves; no data is in it.
  bool data_files = false;
  // With CURRENT: the MANIFEST it names, when that is missing or not a
  // regular file (`manifest_is_directory` tells which). Empty when it is
  // fine or CURRENT cannot be read (RocksDB then reports the cause).
  std::string bad_manifest;
  bool manifest_is_directory = false;

  // True when the path may hold a user's data: a database, a damaged one, or
  // a path keel cannot look into (assume the worst).
  bool may_hold_data() const noexcept { return what == kind::database || what == kind::damaged || what == kind::unknown; }
};

// Whether `name` is a file RocksDB names in its directory, by RocksDB's own
// naming (db/filename.cc): CURRENT, IDENTITY, MANIFEST-<n>, OPTIONS-<n>,
// <n>.sst, <n>.ldb, <n>.log, <n>.blob. LOCK and LOG are left out: they say
// nothing about data (a failed first open can leave them). "app.log" is not
// one: only a number may come before the extension.
inline bool is_rocksdb_data_file(std::string_view name) noexcept {
  auto digits = [](std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
      if (c < '0' || c > '9') return false;
    return true;
  };
  if (name == "CURRENT" || name == "IDENTITY") return true;
  for (std::string_view prefix : {"MANIFEST-", "OPTIONS-"})
    if (name.starts_with(prefix)) return digits(name.substr(prefix.size()));
  for (std::string_view ext : {".sst", ".ldb", ".log", ".blob"})
    if (name.ends_with(ext)) return digits(name.substr(0, name.size() - ext.size()));
  return false;
}

// The first line of `dir`/CURRENT (the MANIFEST's name), "" if unreadable.
inline std::string read_current(const std::filesystem::path& dir) {
  std::ifstream current(dir / "CURRENT", std::ios::binary);
  std::string name;
  if (!current || !std::getline(current, name)) return {};
  return name;
}

// What stat(2) says of `p` (following symlinks), through std::filesystem so
// that the path goes to the OS in its native form on every platform:
// missing = ENOENT (ERROR_FILE_NOT_FOUND / ERROR_PATH_NOT_FOUND on Windows),
// error = any other failure.
enum class entry_type { missing, error, directory, regular, other };
inline entry_type entry_type_of(const std::filesystem::path& p) noexcept {
  std::error_code ec;
  const auto st = std::filesystem::status(p, ec);
  if (ec) return ec == std::errc::no_such_file_or_directory ? entry_type::missing : entry_type::error;
  switch (st.type()) {
    case std::filesystem::file_type::directory: return entry_type::directory;
    case std::filesystem::file_type::regular: return entry_type::regular;
    default: return entry_type::other;
  }
}

// What `dir` holds. Lists the directory only when it has no CURRENT file.
// A writer switching to a new MANIFEST (write it, point CURRENT at it,
// delete the old one) can make the MANIFEST just read from CURRENT vanish:
// it is reported bad only if CURRENT still names it afterwards.
inline db_dir_state inspect_db_dir(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  db_dir_state r;
  const entry_type d = entry_type_of(dir);
  if (d == entry_type::missing || d == entry_type::error) {
    r.what = d == entry_type::missing ? db_dir_state::kind::missing : db_dir_state::kind::unknown;
    return r;
  }
  if (d != entry_type::directory) {
    r.what = db_dir_state::kind::unknown;
    return r;
  }
  const entry_type current = entry_type_of(dir / "CURRENT");
  if (current != entry_type::missing && current != entry_type::error) {
    r.what = db_dir_state::kind::database;
    r.files.push_back("CURRENT");
    for (int attempt = 0; attempt < 3; ++attempt) {
      const std::string name = read_current(dir);
      if (!name.starts_with("MANIFEST-") || name.find('/') != std::string::npos) break;
      const entry_type m = entry_type_of(dir / name);
      bool missing = false, not_file = false;
      if (m == entry_type::missing || m == entry_type::error)
        missing = m == entry_type::missing;
      else
        not_file = m != entry_type::regular;
      if (!missing && !not_file) break;
      if (read_current(dir) != name) continue;  // the writer switched MANIFEST meanwhile
      r.bad_manifest = name;
      r.manifest_is_directory = not_file && m == entry_type::directory;
      break;
    }
    return r;
  }
  if (current != entry_type::missing) {
    r.what = db_dir_state::kind::unknown;
    return r;
  }
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) {
    r.what = db_dir_state::kind::unknown;
    return r;
  }
  for (; it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!is_rocksdb_data_file(name)) continue;
    if (!name.starts_with("MANIFEST-") && !name.starts_with("OPTIONS-") && name != "IDENTITY") r.data_files = true;
    if (r.files.size() < 4) r.files.push_back(std::move(name));
  }
  if (ec) {
    r.what = db_dir_state::kind::unknown;
    return r;
  }
  r.what = r.files.empty() ? db_dir_state::kind::empty : db_dir_state::kind::damaged;
  return r;
}

inline std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace keel::detail
