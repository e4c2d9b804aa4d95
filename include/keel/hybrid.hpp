// keel: the hybrid store, HybridPolicy<Small, Large> and hybrid_store:
// memory while the data is small, RocksDB once it is large, one path.
//
//   auto store = keel::hybrid_store::open({.path = "data/app"});
//
// The store starts as a persisted memory store (every write in a log before
// it is acknowledged, like memory_options::persist_path). Once the memory
// tier holds more than hybrid_options::spill_bytes, a background thread of
// the store moves the data to RocksDB, online: readers and writers keep
// working, snapshots and cursors taken before keep reading their version. It
// never moves back (docs/hybrid.md says why).
//
// Open reads TIER (the layout: hybrid/layout.hpp). "memory" (or no TIER: a
// new store): a rocksdb/ directory is what a move that did not commit left
// (a crash, a failed move); it is removed, the memory tier has every write.
// "rocksdb": memory files are what a committed move had not removed yet;
// they are removed. Either way one complete store is opened, and nothing is
// seen twice or missing. The move and its commit point: hybrid/move.hpp.
//
// The parts, in include/keel/hybrid/:
//   options.hpp   hybrid_options; what HybridPolicy asks of its tiers
//   layout.hpp    hybrid_layout: PATH/{keel.lock, TIER, memory/, rocksdb/}
//                 (shared with the doctor, doctor.hpp)
//   move.hpp      the move to RocksDB and its commit point
//   keyspaces.hpp what a keyspace handle points to, valid across the move
//   watch.hpp     watch: the tier's, one seq across the move (SEQ_BASE)
//   expiry.hpp    expiry: one clock for both tiers, the move carries deadlines
//   snapshot.hpp  the snapshot of the tier it was taken from
//   policy.hpp    HybridPolicy: the contract methods, the lock order
// hybrid_store = basic_store<HybridPolicy<>> (fwd.hpp): MemoryPolicy, then
// RocksPolicy<NativeTuning>. Needs RocksDB.
#pragma once

#include "fwd.hpp"
#include "hybrid/layout.hpp"
#include "hybrid/options.hpp"
#include "hybrid/policy.hpp"
#include "store.hpp"
