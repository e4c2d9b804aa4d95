// keel: the umbrella header. Everything, RocksDB included.
// For the memory backend alone (no RocksDB needed) include <keel/memory.hpp>.
#pragma once

#include "any_store.hpp"
#include "copy.hpp"
#include "doctor.hpp"
#include "dump.hpp"
#include "dump_rocksdb.hpp"
#include "error.hpp"
#include "fwd.hpp"
#include "hybrid.hpp"
#include "key_range.hpp"
#include "memory.hpp"
#include "open_store.hpp"
#include "rocksdb.hpp"
#include "stats.hpp"
#include "store.hpp"
#include "write_batch.hpp"
