// keel: postgres_options, what PostgresPolicy (<keel/postgres.hpp>) opens
// with. Needs no libpq, so that a configuration can carry it.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace keel {

class PostgresPolicy;  // <keel/postgres.hpp>

struct postgres_options {
  // A libpq connection string ("host=db1 dbname=app user=app") or URI
  // ("postgresql://app@db1/app"). Several hosts with
  // target_session_attrs=read-write give libpq's own failover: each new
  // connection goes to the host that is primary now. Required.
  std::string conninfo;
  // The table that holds this store (one store = one table; it is created if
  // missing). Any name: it is quoted by libpq, never pasted into SQL.
  std::string table = "keel";
  // Idle connections kept for reuse. More may be open at once: every live
  // snapshot, cursor and transaction holds one of its own until it ends;
  // PostgreSQL's max_connections is the limit.
  std::size_t pool_size = 4;
  // Deadline of one connection attempt (per host; libpq counts whole
  // seconds, at least 2).
  std::chrono::milliseconds connect_timeout{5000};
  // Deadline of one statement, from sending it to its result. A statement
  // past it is abandoned with its connection: unavailable (a read, or a write
  // before COMMIT was sent) or outcome_unknown (a write that commits).
  std::chrono::milliseconds operation_timeout{30000};
  // Rows per page of a scan (one keyset query per page): a cursor holds at
  // most one page.
  std::size_t page_size = 1000;
  // How often a background thread of the store deletes expired rows, once
  // its table has deadlines (the first put with a ttl; docs/expiry.md,
  // "PostgreSQL"). 0: only compact() does. Every process with the store open
  // sweeps; each round is one indexed DELETE.
  std::chrono::milliseconds expiry_interval{1000};
};

}  // namespace keel
