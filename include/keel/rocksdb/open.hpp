// keel::detail (RocksDB backend): opening and closing a RocksDB database, and
// the handle that a RocksPolicy, its cursors and its snapshots share.
//
// rocks_open(opts, tuning) checks the path first (an empty path, a NUL byte,
// a file in the way, a damaged database: refused before RocksDB touches the
// directory), creates the directory if asked, claims it in this process's
// registry (detail/dir_registry.hpp: read-write once, or read-only any number
// of times, by directory identity), builds the rocksdb::Options (the tuning,
// keel's info log, rocks_options::customize last) and calls DB::Open or
// DB::OpenForReadOnly, with every column family the database has
// (rocks_open_families; keyspaces, rocksdb/keyspaces.hpp). A failure comes
// back as a keel::error naming the path
// (rocksdb/errors.hpp: lock held by another process and by whom, locks not
// supported, damaged files, no space, ...); nothing is left claimed or open.
//
// rocks_handle is the open database and what close() must release first:
//   lifecycle  (shared_mutex) guards `db` and every iterator and snapshot made
//              from it: each operation holds it shared (enter()), close()
//              exclusively, so close() waits for operations in flight;
//   closing    set first by close(): new calls fail at once (errc::closed), so
//              a stream of readers cannot starve close(); `open` is its
//              negation, for cursors walked by runs (basic_cursor's open flag);
//   live_mutex guards live_cursors and live_snapshots, which close() releases;
//              taken after lifecycle.
// The handle owns the DB (deleted by shut()) and the registry claim (released
// by shut()). A rocks_snapshot_view is one registered rocksdb::Snapshot,
// released by its last owner or by close(), whichever comes first.
#pragma once

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/db_files.hpp"
#include "../detail/dir_registry.hpp"
#include "../detail/platform_file.hpp"
#include "../error.hpp"
#include "errors.hpp"
#include "info_log.hpp"
#include "options.hpp"

namespace keel::detail {

struct rocks_cursor_state;  // rocksdb/cursor.hpp

// The open database shared by a policy, its cursors and its snapshots. See
// the file comment for what guards what.
struct rocks_handle {
  rocks_handle(std::filesystem::path dir, dir_registry::claim c, rocksdb::DB* d)
      : path(std::move(dir)), claim(std::move(c)), db(d) {}
  rocks_handle(const rocks_handle&) = delete;
  rocks_handle& operator=(const rocks_handle&) = delete;

  // Takes the reader lock for one operation. False once close() has begun.
  bool enter(std::shared_lock<std::shared_mutex>& lock) const noexcept {
    if (closing.load(std::memory_order_acquire)) return false;
    lock = std::shared_lock(lifecycle);
    return db != nullptr;
  }
  // What a call after close() returns.
  keel::error closed() const { return closed_error("store '" + path_text(path) + "'"); }

  // The end of close(), with `lifecycle` held exclusively and every cursor's
  // iterator and every snapshot released: DB::Close(), the DB deleted, the
  // claim released (the path can be opened again at once; RocksDB has
  // released the LOCK). Returns `refusal` if given (the WAL sync was
  // refused), else the WAL sync's error (`synced`), else Close()'s.
  result<void> shut(const rocksdb::Status& synced, std::optional<keel::error> refusal) {
    rocksdb::Status closed_status = db->Close();
    delete db;
    db = nullptr;
    claim.release();
    if (refusal) return std::move(*refusal);
    if (!synced.ok()) return rocks_op_error(synced, "close (WAL sync)", path);
    if (!closed_status.ok()) return rocks_op_error(closed_status, "close", path);
    return {};
  }

  const std::filesystem::path path;
  dir_registry::claim claim;
  rocksdb::DB* db = nullptr;             // owned; null once closed; guarded by lifecycle
  mutable std::shared_mutex lifecycle;   // guards db and every iterator/snapshot pointer
  std::atomic<bool> open{true};          // !closing, for cursors walked by runs
  std::atomic<bool> closing{false};      // set first by close()
  mutable std::mutex live_mutex;         // guards the two sets below
  mutable std::unordered_set<rocks_cursor_state*> live_cursors;
  mutable std::unordered_set<const rocksdb::Snapshot**> live_snapshots;
};

// One rocksdb::Snapshot, shared by the copies of one keel snapshot and the
// cursors reading through it. Registered in handle->live_snapshots, so that
// close() can release it first (and null `snap`).
struct rocks_snapshot_view {
  std::shared_ptr<const rocks_handle> handle;
  const rocksdb::Snapshot* snap = nullptr;  // guarded by handle->lifecycle; null once released
  // Expiry (rocksdb/expiry.hpp): the time its reads leave expired keys out
  // at, and what keeps the compaction filter from dropping keys it shows.
  deadline_ms time = 0;
  std::shared_ptr<void> time_hold;
  ~rocks_snapshot_view() {
    std::shared_lock lifecycle(handle->lifecycle);
    {
      std::lock_guard live(handle->live_mutex);
      handle->live_snapshots.erase(&snap);
    }
    if (snap && handle->db) handle->db->ReleaseSnapshot(snap);
  }
};

// A new snapshot of the handle's DB, reading at time `time` (its first:
// the time; its second: the hold, see rocks_snapshot_view), taken after it.
// Call inside enter().
inline std::shared_ptr<const rocks_snapshot_view> take_rocks_snapshot(std::shared_ptr<const rocks_handle> handle,
                                                                      std::pair<deadline_ms, std::shared_ptr<void>> time) {
  auto v = std::make_shared<rocks_snapshot_view>();
  v->time = time.first;
  v->time_hold = std::move(time.second);
  v->handle = std::move(handle);
  v->snap = v->handle->db->GetSnapshot();
  std::lock_guard live(v->handle->live_mutex);
  v->handle->live_snapshots.insert(&v->snap);
  return v;
}

// What rocks_open gives: the DB (owned by the caller from now on) and the
// directory's registry claim.
struct rocks_opened {
  dir_registry::claim claim;
  rocksdb::DB* db = nullptr;
  // Every column family but "default", by its RocksDB name; the handles are
  // the caller's to destroy before DB::Close() (rocksdb/keyspaces.hpp).
  std::vector<std::pair<std::string, rocksdb::ColumnFamilyHandle*>> families;
  // The options a keyspace's new column family gets: the tuning's (and
  // customize's) column family options.
  rocksdb::ColumnFamilyOptions cf_options;
};

// Opens `dir` with every column family it has (RocksDB refuses a read-write
// open that leaves one out), each with `cf_options`; a new database has only
// "default". On success fills `families` (every one but "default"; the
// handle Open returns for "default" is destroyed: DefaultColumnFamily() is
// used instead).
inline rocksdb::Status rocks_open_families(const rocksdb::Options& ro, const std::string& dir, bool read_only,
                                           rocksdb::DB** db,
                                           std::vector<std::pair<std::string, rocksdb::ColumnFamilyHandle*>>& families) {
  std::vector<std::string> names;
  if (!rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(ro), dir, &names).ok() || names.empty()) {
    names = {rocksdb::kDefaultColumnFamilyName};  // a new database (no CURRENT yet)
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.reserve(names.size());
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions(ro));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = read_only ? rocksdb::DB::OpenForReadOnly(ro, dir, descriptors, &handles, db)
                                : rocksdb::DB::Open(ro, dir, descriptors, &handles, db);
  if (!s.ok()) return s;
  families.clear();
  for (std::size_t i = 0; i < handles.size(); ++i) {
    if (names[i] == rocksdb::kDefaultColumnFamilyName)
      (*db)->DestroyColumnFamilyHandle(handles[i]);
    else
      families.emplace_back(names[i], handles[i]);
  }
  return s;
}

// Destroys the handles of `families` (a failed or abandoned open).
inline void rocks_destroy_families(rocksdb::DB& db,
                                   std::vector<std::pair<std::string, rocksdb::ColumnFamilyHandle*>>& families) {
  for (auto& f : families) db.DestroyColumnFamilyHandle(f.second);
  families.clear();
}

// Opens the database opts.path as described in the file comment; `tuning`
// is applied to a fresh rocksdb::Options first.
// `filters` (not null: the expiry compaction filter, rocksdb/expiry.hpp) is
// every column family's compaction filter factory unless customize sets
// another.
inline result<rocks_opened> rocks_open(const rocks_options& opts, void (*tuning)(rocksdb::Options&),
                                       std::shared_ptr<rocksdb::CompactionFilterFactory> filters = nullptr) {
  namespace fs = std::filesystem;
  const fs::path& dir = opts.path;
  const std::string where = "'" + path_text(dir) + "'";
  if (dir.empty()) return fail(errc::invalid_argument, "cannot open a RocksDB store: the path is empty");
  // The OS sees a path only up to its first NUL: "db\0x" would silently be "db".
  if (dir.native().find('\0') != std::filesystem::path::string_type::npos) {
    std::string shown = path_text(dir);
    for (char& c : shown) if (c == '\0') c = '?';
    return fail(errc::invalid_argument,
                "cannot open '" + shown + "' (NUL shown as '?'): the path contains a NUL byte, which no file system allows");
  }

  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return fail(ec == std::errc::permission_denied ? errc::permission_denied
                : ec == std::errc::not_a_directory ? errc::invalid_argument
                                                   : errc::io_error,
                "cannot open " + where + ": " + ec.message());
  }
  if (fs::exists(st) && !fs::is_directory(st)) {
    return fail(errc::invalid_argument, "cannot open " + where + ": it exists and is not a directory");
  }
  // Files of a database but no CURRENT: RocksDB would report it only after
  // writing a new, empty database's files beside the old ones. A MANIFEST
  // named by CURRENT that is missing or not a file: RocksDB reports it after
  // rotating the LOG. Refuse both before RocksDB touches the directory.
  const db_dir_state state = inspect_db_dir(dir);
  if (!state.bad_manifest.empty()) {
    return damaged_file_error(dir, state.bad_manifest, state.manifest_is_directory);
  }
  if (state.what == db_dir_state::kind::damaged && state.data_files) {
    return fail(errc::corruption, "cannot open " + where + ": the database is damaged: it has RocksDB files (" +
                                      join_names(state.files) +
                                      ") but no CURRENT file. Keep a copy of the directory before anything else; "
                                      "restore it from a backup, or repair a copy of it (rocksdb's `ldb repair`)");
  }
  if (opts.read_only && (state.what == db_dir_state::kind::missing || state.what == db_dir_state::kind::empty)) {
    return fail(errc::not_found, "cannot open " + where + " read-only: no database there (" +
                                     (state.what == db_dir_state::kind::missing ? std::string("no such directory")
                                                                                : std::string("no CURRENT file")) +
                                     "); a read-only open creates nothing");
  }
  if (!fs::exists(st)) {
    if (!opts.create_if_missing) {
      return fail(errc::not_found, "cannot open " + where + ": no such directory (create_if_missing is false)");
    }
    fs::create_directories(dir, ec);
    if (ec) {
      errc code = ec == std::errc::permission_denied || ec == std::errc::read_only_file_system ? errc::permission_denied
                  : ec == std::errc::no_space_on_device                                      ? errc::no_space
                  : ec == std::errc::not_a_directory || ec == std::errc::file_exists ? errc::invalid_argument
                                                                                     : errc::io_error;
      return fail(code, "cannot create " + where + ": " + ec.message());
    }
  }

  auto claim = dir_registry::instance().acquire(
      dir, opts.read_only ? dir_registry::mode::read_only : dir_registry::mode::read_write);
  if (!claim) return std::move(claim).error();

  rocksdb::Options ro;
  tuning(ro);
  ro.create_if_missing = opts.create_if_missing;
  if (opts.env) ro.env = opts.env;
  // RocksDB's own info log aborts the process on a full disk (see
  // rocksdb/info_log.hpp): keel's writes the same <dir>/LOG and drops
  // the lines it cannot write. Not for read-only opens (which write no LOG)
  // nor with a custom Env (the LOG then comes from that Env, as before);
  // customize may replace it (o.info_log = nullptr: RocksDB's own again).
  if (!opts.read_only && !opts.env) ro.info_log = std::make_shared<rocks_info_log>(dir);
  if (filters) ro.compaction_filter_factory = std::move(filters);
  if (!opts.read_only) ro.WAL_size_limit_MB = opts.watch_history_mb;  // watch history (rocksdb/watch.hpp)
  if (opts.customize) opts.customize(ro);

  rocksdb::DB* db = nullptr;
  std::vector<std::pair<std::string, rocksdb::ColumnFamilyHandle*>> families;
  rocksdb::Status s;
  if (opts.read_only) {
    // create_if_missing = false: RocksDB then only reads CURRENT first
    // (true would create the directory). Takes no lock, writes no LOG. A
    // writer in another process may switch to a new MANIFEST and delete the
    // one just read from CURRENT: then try again (at most twice more).
    ro.create_if_missing = false;
    for (int attempt = 0;; ++attempt) {
      const std::string current = read_current(dir);
      s = rocks_open_families(ro, dir.string(), true, &db, families);
      if (s.ok() || attempt == 2 || read_current(dir) == current) break;
      if (db) rocks_destroy_families(*db, families);
      delete db;
      db = nullptr;
    }
  } else {
    s = rocks_open_families(ro, dir.string(), false, &db, families);
  }
  if (!s.ok()) {
    delete db;
    return rocks_open_error(s, dir);
  }
  return rocks_opened{std::move(*claim), db, std::move(families), rocksdb::ColumnFamilyOptions(ro)};
}

}  // namespace keel::detail
