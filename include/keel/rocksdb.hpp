// keel: the RocksDB backend, RocksPolicy<Tuning>, and its tunings.
//
//   auto store = keel::rocks_store::open({.path = "data/db"});
//
// What this backend guarantees beyond RocksDB itself:
// - Deterministic close: close() releases every iterator and snapshot keel
//   handed out, syncs the WAL (sync_on_close), closes and deletes the DB. When
//   it returns, the LOCK is released and the path can be opened again at once.
// - One open per directory per process, by directory identity (not spelling):
//   a second open gives errc::already_open_in_process naming the first path.
// - Lock errors diagnosed: lock_held_by_other_process (naming the PID where
//   the OS tells it), locks_unsupported (naming the filesystem). keel never
//   deletes a LOCK file and never opens one this process might hold.
// - A damaged database is reported as corruption naming the file at fault
//   (a missing MANIFEST or SST, a MANIFEST that is a directory, RocksDB files
//   without CURRENT), never re-created over.
// - Read-only open (rocks_options::read_only): no LOCK, so it works while
//   another process writes; every write returns errc::read_only.
// - A full disk never aborts the process (RocksDB's info log and FlushWAL
//   after a failed WAL write would): a write, flush, open or close that meets
//   it returns errc::no_space, whose message says what to do (free space and
//   reopen, or free RocksDB's 64 MiB reserve and DB::Resume()). docs/durability.md.
//
// The code is in include/keel/rocksdb/: policy.hpp (RocksPolicy: the contract
// methods, the lock order), tunings.hpp, options.hpp (rocks_options),
// open.hpp (open, close, the registry claim, lock diagnosis), cursor.hpp (the
// read-ahead cursor), write_gate.hpp (the write gate, the WAL-failure guard),
// errors.hpp (rocksdb::Status -> keel::error), info_log.hpp (keel's LOG),
// expiry.hpp (ttl: the value encoding, the compaction filter), watch.hpp,
// reads.hpp (the point read), stats.hpp.
// rocks_store (fwd.hpp) is basic_store<RocksPolicy<NativeTuning>>.
#pragma once

#include "rocksdb/options.hpp"
#include "rocksdb/policy.hpp"
#include "rocksdb/tunings.hpp"
#include "store.hpp"
