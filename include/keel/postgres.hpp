// keel: the PostgreSQL backend, PostgresPolicy: one keel store is one table
// of a PostgreSQL server (11 or later; tested on 15), shared by every process
// and machine that opens it. Needs libpq (Meson: keel_postgres_dep); no other
// keel header does.
//
//   keel::postgres_options o;
//   o.conninfo = "host=db1,db2 dbname=app user=app target_session_attrs=read-write";
//   o.table = "sessions";
//   auto store = keel::postgres_store::open(o);
//
// The table is `key bytea primary key, value bytea not null`, created if
// missing; bytea compares bytewise, so scans come in keel's order with no
// collation involved. A table of another shape is refused (invalid_argument
// naming its columns) and never altered, except that the first put with a
// ttl adds a nullable deadline column (postgres/expiry.hpp). Keys and values travel as binary
// parameters of prepared statements; the table name is quoted by libpq.
//
// Semantics (postgres/policy.hpp maps each operation; docs/postgres.md):
// a batch is one SQL transaction; a snapshot is a REPEATABLE READ READ ONLY
// transaction held while it lives; a keel transaction is a SERIALIZABLE one,
// validated by the server (SQLSTATE 40001/40P01 -> errc::conflict), which is
// serializable but not always in commit order (docs/transactions.md).
// Errors: unavailable (not reachable, or the connection was lost before a
// write was sent: nothing applied; names the host and libpq's message),
// outcome_unknown (lost after a committing write was sent), read_only (a hot
// standby), no_space (53100), invalid_argument (bad conninfo, a table of
// another shape, a key or value over the server's limits), conflict.
//
// keel::diagnose_postgres(options) (postgres/doctor.hpp) explains a server
// and a table without opening a store: reachable, version, primary or
// standby, the table's shape and rows, whether a write would succeed now.
#pragma once

#include "postgres/doctor.hpp"
#include "postgres/expiry.hpp"
#include "postgres/options.hpp"
#include "postgres/keyspaces.hpp"
#include "postgres/policy.hpp"
#include "store.hpp"

namespace keel {

using postgres_store = basic_store<PostgresPolicy>;

// What basic_store::stats() asks of the backend: the exact row count
// (count(*): a full scan of the table's index or heap), size_bytes =
// pg_total_relation_size (table, index, TOAST). properties:
// postgres.server_version (e.g. 150018), postgres.standby (1 on a hot
// standby), postgres.pool_idle, postgres.pool_in_use,
// postgres.connections_opened, postgres.connections_discarded.
inline result<void> backend_stats(const PostgresPolicy& p, store_stats& s) {
  auto st = p.status();
  if (!st) return std::move(st).error();
  s.keys = st->rows;
  s.keys_exact = true;
  s.size_bytes = st->table_bytes;
  s.properties = {{"postgres.server_version", static_cast<std::uint64_t>(st->server_version)},
                  {"postgres.standby", st->standby ? 1u : 0u},
                  {"postgres.pool_idle", st->pool_idle},
                  {"postgres.pool_in_use", st->pool_in_use},
                  {"postgres.connections_opened", st->connections_opened},
                  {"postgres.connections_discarded", st->connections_discarded}};
  return {};
}

}  // namespace keel
