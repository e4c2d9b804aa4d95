// keel: etcd_any_store, a run-time choice among RocksDB, memory and an etcd
// cluster. Needs RocksDB (like <keel/keel.hpp>) and libcurl (like
// <keel/etcd.hpp>); programs that include only <keel/keel.hpp> need no
// libcurl.
//
//   auto config = keel::store_config::from_env("MYAPP", {.path = "data/db"});
//   // MYAPP_ETCD_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.2:2379 MYAPP_ETCD_PREFIX=myapp/
//   auto store = keel::open_store<keel::etcd_any_store>(*config);
#pragma once

#include "etcd.hpp"
#include "keel.hpp"

namespace keel {

using etcd_any_store = basic_any_store<RocksPolicy<NativeTuning>, MemoryPolicy, EtcdPolicy>;

}  // namespace keel
