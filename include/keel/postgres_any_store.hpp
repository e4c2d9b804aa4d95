// keel: postgres_any_store, a run-time choice among RocksDB, memory and a
// table of a PostgreSQL server. Needs RocksDB (like <keel/keel.hpp>) and
// libpq (like <keel/postgres.hpp>); programs that include only
// <keel/keel.hpp> need no libpq.
//
//   auto config = keel::store_config::from_env("MYAPP", {.path = "data/db"});
//   // MYAPP_POSTGRES='host=db1,db2 dbname=app target_session_attrs=read-write' MYAPP_POSTGRES_TABLE=sessions
//   auto store = keel::open_store<keel::postgres_any_store>(*config);
//
// A program that wants etcd too names its own list:
// keel::basic_any_store<keel::RocksPolicy<keel::NativeTuning>, keel::MemoryPolicy, keel::EtcdPolicy,
// keel::PostgresPolicy> (with <keel/etcd.hpp>); open_store() opens any
// backend its store type holds.
#pragma once

#include "keel.hpp"
#include "postgres.hpp"

namespace keel {

using postgres_any_store = basic_any_store<RocksPolicy<NativeTuning>, MemoryPolicy, PostgresPolicy>;

}  // namespace keel
