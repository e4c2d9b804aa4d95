// keel: hybrid_options, what a hybrid store opens with, and what
// HybridPolicy asks of its two tiers (hybrid_small_tier, hybrid_large_tier).
// Needs no backend headers.
#pragma once

#include <concepts>
#include <cstddef>
#include <filesystem>

#include "../compression.hpp"
#include "../contract.hpp"
#include "../error.hpp"
#include "../expiry.hpp"

namespace keel {

struct hybrid_options {
  // The store's directory (created with missing parents). Required.
  std::filesystem::path path{};
  // Bytes held by the memory tier (what store_stats::size_bytes of a memory
  // store counts: keys, values as held, per-entry header) past which the data
  // moves to RocksDB. Default 64 MiB: a memory store folds its log into a
  // snapshot file that it rewrites whole, so the cost of a fold (and the RAM
  // the data takes) grows with the store, while RocksDB writes only what
  // changed; at 64 MiB a fold takes well under a second and the data still
  // fits any machine keel runs on (docs/hybrid.md has the measurements).
  // 0: move at the first check (mostly for tests).
  std::size_t spill_bytes = std::size_t{64} << 20;
  // Every write is synced before it is acknowledged, in either tier (memory:
  // fdatasync of its log with group commit; RocksDB: WriteOptions::sync), so
  // a power loss loses nothing acknowledged. Default false: a process crash
  // loses nothing acknowledged, a machine crash may lose the latest writes.
  bool sync_writes = false;
  // Compression of the memory tier's values (memory_options::compression).
  keel::compression compression = keel::compression::none;
  // The clock deadlines (put_options::ttl) are set and checked by, in both
  // tiers (memory_options::clock, rocks_options::clock), so a deadline means
  // the same before and after the move. Default (empty): the system clock.
  // Called from many threads (RocksDB's compactions too): thread-safe.
  keel::clock_source clock{};
};

// What HybridPolicy asks of its tiers, besides store_policy and
// keyspace_policy (every keyspace moves with the data):
//   Small (the tier the store starts in; MemoryPolicy):
//     options::persist_path, options::sync_writes, options::compression
//     result<void> release_persistence()   seal and unlock its files, keep
//                                          serving the snapshots taken before
//     std::size_t memory_bytes() const     bytes held (may be O(n))
//     result<void> flush()
//   Large (the tier it moves to; RocksPolicy):
//     options::path, options::sync_writes
//     result<void> flush()                 make every acknowledged write durable
template <class S>
concept hybrid_small_tier = keyspace_policy<S> && requires(S& s, const S& cs, typename S::options& o) {
  o.persist_path = std::filesystem::path();
  o.sync_writes = true;
  o.compression = compression::none;
  { s.release_persistence() } -> std::same_as<result<void>>;
  { cs.memory_bytes() } -> std::convertible_to<std::size_t>;
  { s.flush() } -> std::same_as<result<void>>;
};
template <class L>
concept hybrid_large_tier = keyspace_policy<L> && requires(L& l, typename L::options& o) {
  o.path = std::filesystem::path();
  o.sync_writes = true;
  { l.flush() } -> std::same_as<result<void>>;
};

}  // namespace keel
