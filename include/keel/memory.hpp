// keel: the in-memory backend, MemoryPolicy. Needs no RocksDB headers.
//
//   auto store = keel::memory_store::open({});
//
// The data lives in a persistent (copy-on-write) B+tree: every write publishes
// a new version of the tree that shares all untouched nodes with the previous
// one. Hence:
// - snapshot() and scan() cost O(1): they hold a reference to the current
//   version, never a copy of the map;
// - readers never block writers and never block each other. A point read
//   (get, contains) announces itself in a per-thread slot, loads the current
//   version's root pointer and reads it: no lock, no shared reference count,
//   no write to memory another thread reads (epoch-based reclamation,
//   memory/versions.hpp). scan() and snapshot() take a counted reference to
//   the version instead, since they outlive the call;
// - writers are serialised among themselves; a write costs O(log n) node
//   copies (fan-out 32), and a batch is published as one version, so readers
//   see it whole or not at all. A replaced version is freed once no point
//   read that may still use it is in flight (at the next write, or at close).
// Nothing is persisted unless memory_options::persist_path is set: then every
// write is appended to a log before it is acknowledged, open() replays the
// saved snapshot and the log, and the log is folded into a new snapshot at
// flush(), close() and past a size threshold (see memory_options,
// memory/persistence.hpp and memory/log.hpp).
// Values may be held compressed (memory_options::compression,
// docs/compression.md): writes store them raw, a background pass compresses
// them later with a dictionary trained on the store's own values
// (memory/compression.hpp).
//
// Public names: keel::memory_options (memory/options.hpp), keel::MemoryPolicy
// (memory/policy.hpp: the contract methods and the lock order),
// keel::memory_store = basic_store<MemoryPolicy> (fwd.hpp), and
// keel::compression (compression.hpp). Everything under memory/ but those
// is keel::detail.
#pragma once

#include "compression.hpp"
#include "memory/options.hpp"
#include "memory/policy.hpp"
#include "store.hpp"
