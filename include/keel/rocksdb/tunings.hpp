// keel: the RocksDB tunings. A tuning is a type with
// `static void apply(rocksdb::Options&)`, which RocksPolicy<Tuning>::open calls
// on a fresh rocksdb::Options before keel's own settings and before
// rocks_options::customize (rocksdb/open.hpp). Three are given:
// RocksDefaultsTuning (RocksDB's defaults), DefaultTuning (keel's
// general-purpose one) and MacOSTuning; NativeTuning (fwd.hpp) names the one
// for the platform. apply() is thread-safe: DefaultTuning's block cache is a
// function-local static shared by every store opened with it.
#pragma once

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace keel {

// A tuning: `static void apply(rocksdb::Options&)`.
template <class T>
concept rocks_tuning = requires(rocksdb::Options& o) { T::apply(o); };

// RocksDB's own defaults, untouched: what DB::Open does with a fresh
// rocksdb::Options (for comparisons, or to keep a database's behaviour exactly
// as a plain RocksDB program would have it).
struct RocksDefaultsTuning {
  static void apply(rocksdb::Options&) {}
};
static_assert(rocks_tuning<RocksDefaultsTuning>);

// keel's general-purpose tuning: RocksDB's defaults plus what RocksDB's own
// tuning guide ("Setup Options and Basic Tuning") recommends for an embedded
// store, each kept only where a measurement justified it (docs/benchmarks.md,
// "RocksDB tuning"; bench/tuning.cpp measures each setting on its own):
// - a 10-bit-per-key Bloom filter (about 1% false positives, 1.25 bytes per
//   key): a get of an absent key no longer reads a data block;
// - a block cache sized on purpose, 64 MiB, shared by every store this process
//   opens with this tuning (RocksDB's default is a private 8 MiB cache per
//   DB, under a tenth of the blocks of a 1M-key DB of 116-byte entries; 64 MiB
//   made present-key gets 0.74x as long there). It caches uncompressed
//   blocks; the OS page cache still holds the files. Capacity is a cap, not
//   an allocation; raise it with customize for larger working sets;
// - table format_version 5 (the newest in RocksDB 7.8, its default there:
//   stated so it stays so);
// - level_compaction_dynamic_level_bytes: level targets sized from the last
//   level down, which bounds space amplification to about 1.1x (the default
//   in RocksDB >= 8.4);
// - bytes_per_sync = 1 MiB: SST writes are synced incrementally instead of in
//   one burst at the end of a file.
// Not set, and why: optimize_filters_for_hits (drops the last level's filter,
// where almost all keys live: absent gets get slow again);
// cache_index_and_filter_blocks (bounds memory on very large DBs; measured no
// gain here: with max_open_files = -1 index and filter stay in the table
// readers); 16 KiB blocks (scans 0.81x, point reads 1.23x as long);
// compression (RocksDB's default, Snappy, is kept).
// Override anything with rocks_options::customize.
struct DefaultTuning {
  // The block cache every store opened with DefaultTuning (or MacOSTuning)
  // shares. Thread-safe (a function-local static).
  static const std::shared_ptr<rocksdb::Cache>& block_cache() {
    static const std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(std::size_t{64} << 20);
    return cache;
  }
  static void apply(rocksdb::Options& o) {
    rocksdb::BlockBasedTableOptions t;
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    t.block_cache = block_cache();
    t.format_version = 5;
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    o.level_compaction_dynamic_level_bytes = true;
    o.bytes_per_sync = std::uint64_t{1} << 20;
  }
};
static_assert(rocks_tuning<DefaultTuning>);

// DefaultTuning plus the settings commonly recommended for macOS. To be clear
// about what they do:
// - use_adaptive_mutex, allow_mmap_reads, allow_mmap_writes, use_direct_reads
//   and use_direct_io_for_flush_and_compaction are already false by default
//   in RocksDB 7.8; setting them changes nothing, and none of them has
//   anything to do with lock errors ("lock hold by current process" is a
//   double open in one process; keel reports it as already_open_in_process).
// - max_open_files = 256 is the one that matters: macOS's default
//   file-descriptor limit is low (often 256) and RocksDB's default (-1, keep
//   every SST file open) ends in "Too many open files" as the DB grows.
// - IncreaseParallelism(2) sizes the background flush/compaction pools. Note
//   it resizes the thread pools of Env::Default(), which every DB in the
//   process shares.
// Durability cost on macOS comes from F_FULLFSYNC (RocksDB >= 6.29), paid on
// every synced write: leave sync_writes off unless you need it.
struct MacOSTuning {
  static void apply(rocksdb::Options& o) {
    DefaultTuning::apply(o);
    o.use_adaptive_mutex = false;
    o.allow_mmap_reads = false;
    o.allow_mmap_writes = false;
    o.use_direct_reads = false;
    o.use_direct_io_for_flush_and_compaction = false;
    o.max_open_files = 256;
    o.IncreaseParallelism(2);
  }
};
static_assert(rocks_tuning<MacOSTuning>);

}  // namespace keel
