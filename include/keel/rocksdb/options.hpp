// keel: rocks_options, what RocksPolicy<Tuning>::open takes (a plain
// struct: copy it freely; the store keeps its own copy). Defaults: created
// if missing, read-write, writes acknowledged before the WAL is synced, the
// WAL synced at close().
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

#include "../expiry.hpp"

namespace keel {

struct rocks_options {
  // The database directory. Created (with missing parents) when
  // create_if_missing is true.
  std::filesystem::path path{};
  bool create_if_missing = true;
  // Open with rocksdb::DB::OpenForReadOnly: no LOCK is taken (the LOCK file is
  // not even opened), so it works while another process has the database
  // open read-write, and never disturbs that process's lock. The store reads
  // the state as of its open: later writes by the other process are not seen
  // (reopen to see them). Every write (put, erase, write, ...) returns
  // errc::read_only. Nothing is created: create_if_missing is ignored, and a
  // missing directory, or one with no database in it, is errc::not_found.
  // sync_writes and sync_on_close do not apply. In this process a directory
  // is open either read-write once or read-only any number of times
  // (already_open_in_process otherwise; see detail/dir_registry.hpp).
  bool read_only = false;
  // Every write waits until the WAL is fsynced: acknowledged writes survive a
  // power loss. Off: they survive a process crash, not a machine crash.
  bool sync_writes = false;
  // close() fsyncs the WAL before closing, so everything written before a
  // successful close() survives a power loss even without sync_writes.
  bool sync_on_close = true;
  // How much WAL RocksDB keeps (archived under <path>/archive) after it no
  // longer needs it, in MiB: the history a watch can resume from, also after
  // close and reopen (rocksdb/watch.hpp; RocksDB's WAL_size_limit_MB, checked
  // at open and then every 10 minutes, so it may run over for that long).
  // 0: none kept beyond the live WAL files. Read-write opens only.
  std::uint64_t watch_history_mb = 64;
  // Every erase_range lists the keys it removes in the WAL, so that any
  // watch, also one made after a restart, can replay it as one erase per
  // key. Off (the default): an erase_range lists them only once this open
  // of the store has had a watch (from its first watch() on), and costs
  // nothing extra before; a watch that reaches an erase_range written
  // without the list gets errc::snapshot_expired naming the seq after it
  // (rocksdb/watch.hpp). Listing costs a scan of the range under the
  // exclusive write gate and the keys' bytes in the WAL.
  bool watch_list_erased_keys = false;
  // Not owned; must outlive the store. For tests (fault injection) and for
  // RocksDB without disk (rocksdb::NewMemEnv). nullptr: Env::Default().
  rocksdb::Env* env = nullptr;
  // Last word on the options, applied after the tuning and after keel has
  // set Options::info_log: a read-write open with the default Env gets keel's
  // info log (rocksdb/info_log.hpp: the same <path>/LOG, previous one kept
  // as LOG.old.<microseconds>, lines it cannot write on a full disk dropped,
  // where RocksDB's own logger aborts the process). To get RocksDB's own
  // logger back: `o.info_log = nullptr;` here (it then honours db_log_dir).
  std::function<void(rocksdb::Options&)> customize{};
  // The time deadlines are set and checked by (expiry, keel/expiry.hpp);
  // default: the system clock. Read by every thread that uses the store and
  // by RocksDB's compaction threads (the compaction filter that reclaims
  // expired keys): it must be thread-safe.
  clock_source clock{};
  // A store that has ever been watched reclaims expired keys by keel's own
  // sweep (deletes a watch sees as erase changes; docs/watch.md, "Expiry"),
  // run at compact() and, on a background thread, this often (0: only at
  // compact()). Unused by a store never watched (a compaction filter
  // reclaims its expired keys).
  std::chrono::milliseconds expiry_interval{1000};
};

}  // namespace keel
