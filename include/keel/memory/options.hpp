// keel/memory/options.hpp - memory_options, how a memory store is opened
// (persistence, syncs, folds, compression, watch history). Public: keel::memory_options.
// Plain data; the defaults are stated per member.
#pragma once

#include <cstddef>
#include <filesystem>

#include "../compression.hpp"

namespace keel {

struct memory_options {
  // Persistence (empty: none, closing the store drops its data). When set
  // (docs/durability.md):
  // - every put, erase and write is appended to the log "<file>.wal-<gen>"
  //   (one checksummed frame per write or batch) before it is acknowledged,
  //   so a process crash (SIGKILL) loses no acknowledged write and a batch is
  //   whole or absent after it;
  // - open() loads the snapshot <file> (a dump, docs/dump-format.md) and
  //   replays the logs. A lost tail (damage in the newest log past the last
  //   point it is known synced: a torn last frame, or unsynced pages that
  //   reached the disk out of order after a machine crash) is dropped, so
  //   the store always opens after a crash; damage of synced data (a later
  //   frame records that the damaged one was synced), damage in an older
  //   log, or a damaged snapshot fails the open with errc::corruption naming
  //   the file and offset: never a silently shorter store. A missing file
  //   and no log give an empty store;
  // - flush() and close() fold the log into a new snapshot: written to
  //   "<file>.tmp-<pid>", fsynced, renamed over the file, directory fsynced,
  //   then the older logs removed. So does a background thread once the log
  //   passes fold_log_bytes (or the size of the last snapshot, if larger);
  // - one process per file: open() takes an fcntl lock on "<file>.lock"
  //   (never deleted) and fails with errc::lock_held_by_other_process naming
  //   the holder's PID, or errc::already_open_in_process for a second open in
  //   this process (any spelling of the path).
  // A temporary file left by a crashed save is removed by the next open, once
  // its process is gone.
  std::filesystem::path persist_path{};
  // With persist_path: fdatasync the log before acknowledging a write, so a
  // machine crash or power loss loses nothing acknowledged either. Writers
  // waiting at the same time share one fdatasync (group commit). A write is
  // visible to readers as soon as it is in the log, before its sync. A failed
  // sync is reported and the store accepts no more writes (reads go on);
  // close and reopen it. Default false: a machine crash may lose the writes
  // the OS had not written back yet.
  bool sync_writes = false;
  // With persist_path: the log size (bytes) past which a background fold
  // starts; 0: fold only at flush() and close().
  std::size_t fold_log_bytes = std::size_t{64} << 20;
  // Value compression (docs/compression.md). Default none. With lz4 or zstd:
  // - put(), write() and transactions store values raw (compressing would
  //   double the cost of a put); a background thread of the store compresses
  //   them once about 1 MiB (or 1/8 of the values held, if more) has been
  //   written since its last pass, and compact() compresses at once;
  // - values are compressed with a dictionary of up to 64 KiB trained on a
  //   sample of the store's values (trained once they reach 64 KiB, retrained
  //   when they have grown 8-fold since); a value is kept raw where
  //   compression would save less than 1/8 of its bytes, or is over 16 MiB;
  // - compressing publishes new versions like a write: snapshots, cursors and
  //   readers keep reading the versions they hold; nothing is logged;
  // - reads decompress (get, multi_get, cursors, snapshots); the persisted
  //   form (snapshot file and log) holds values uncompressed, so it stays a
  //   plain dump and a reopened store compresses again in the background,
  //   with the newest dictionary, saved beside the snapshot as
  //   "<file>.dict" at each fold (no value depends on it: a missing or
  //   damaged one is ignored and a dictionary trained anew);
  // - store_stats::size_bytes counts the bytes held (compressed),
  //   uncompressed_bytes what they would be uncompressed.
  // A compression keel was built without (KEEL_HAVE_ZSTD / KEEL_HAVE_LZ4
  // undefined) fails open() with errc::not_supported.
  keel::compression compression = keel::compression::none;
  // Watch (docs/watch.md, "Memory"): how many changes the store keeps for
  // watches that fell behind or resume (watch_options::after), counting one
  // per key a commit changed; the oldest commits go first (the newest is
  // kept whatever its size), and a watch that needs one gone gets
  // errc::snapshot_expired. Nothing is kept, and a write pays nothing, until
  // the store's first watch. 0 is taken as 1. Default 65536 (a kept change
  // costs about 60 bytes besides its key and value). A persisted store also
  // reads it back from its log at open: docs/watch.md, "Memory".
  std::size_t watch_history = 65536;
};

}  // namespace keel
