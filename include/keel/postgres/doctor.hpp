// keel: diagnose_postgres(), what `keel doctor postgres://...` reports: is
// the server reachable, which version, primary or hot standby, does the
// store's table exist and have keel's shape, how many rows, and would a
// write succeed now. Reached through <keel/postgres.hpp>; needs libpq.
//
//   keel::postgres_options o;
//   o.conninfo = "host=db1 dbname=app user=app";
//   o.table = "sessions";
//   keel::postgres_doctor_report r = keel::diagnose_postgres(o);
//   for (const auto& line : r.findings) std::puts(line.c_str());
//   if (!r.write_would_succeed) std::printf("What to do: %s\n", r.advice.c_str());
//
// When the conninfo names several hosts, each is first connected to on its
// own (target_session_attrs=any) and reported: reachable, version, primary
// or standby. Then, on one connection of its own (opened as PostgresPolicy
// opens one: the conninfo as given, so libpq's failover over several hosts
// picks the host keel would use), it sends:
// - catalog reads (to_regclass, pg_attribute, pg_index) for the table's shape,
//   and to_regclass of its keyspace tables (T_keyspaces, T_ks: see
//   postgres/statements.hpp), with the count of T_keyspaces' rows when they
//   exist (one row per keyspace besides "");
// - SELECT count(*) in a READ ONLY transaction whose statement_timeout is
//   the smaller of 5 s and operation_timeout; when the count takes longer,
//   the planner's estimate (pg_class.reltuples) is reported instead, marked
//   as an estimate;
// - the write check: BEGIN, SET LOCAL lock_timeout and statement_timeout
//   (2 s, 5 s), keel's own upsert of one probe key (the bytes
//   "\0keel-doctor/write-probe") -- preceded by keel's CREATE TABLE when the
//   table is missing -- then ROLLBACK. It needs what a keel put needs
//   (INSERT and UPDATE on the table, CREATE on the schema for a missing
//   table, a primary, disk space for the WAL), so it fails as a put would
//   (read_only on a standby, permission_denied, no_space); and it changes
//   nothing that stays: the transaction is rolled back, leaving one dead row
//   version for vacuum (and, for a missing table, nothing at all). A table
//   of another shape is not written to: keel would refuse to open it.
// Nothing is created, altered or kept. Deadlines: connect_timeout for each
// connection attempt (per host: with several hosts, an unreachable one is
// tried twice, on its own and by the failover connection),
// operation_timeout for each statement.
//
// Thread safety: diagnose_postgres may be called from several threads at
// once (each call has its own connection).
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "connection.hpp"
#include "errors.hpp"
#include "options.hpp"
#include "schema.hpp"
#include "statements.hpp"

namespace keel {

// One column of the table, as the server describes it.
struct postgres_column {
  std::string name;
  std::string type;  // format_type(): "bytea", "integer", "text", ...
  bool not_null = false;
};

// One host of a conninfo that names several, checked on its own.
struct postgres_host_report {
  std::string host, port;  // as the conninfo names them ("" : libpq's default)
  bool reachable = false;
  std::string error;  // when !reachable: libpq's message
  int server_version = 0;
  bool standby = false;
};

struct postgres_doctor_report {
  std::string hosts;  // what the conninfo names: "host=db1,db2 port=5432"
  // When the conninfo names several hosts (libpq's failover), each one
  // connected to on its own (target_session_attrs=any), in order: which are
  // up, which is the primary. Empty for one host.
  std::vector<postgres_host_report> each_host;
  std::string table;  // the table asked about (postgres_options::table)

  // The connection. When !reachable, connect_error says why (it names the
  // hosts and libpq's message; a conninfo libpq cannot parse, or an empty
  // one, is reported there too, with connect_error_code invalid_argument).
  bool reachable = false;
  std::string connect_error;
  errc connect_error_code = errc::unavailable;
  std::string host, port, user, database;  // where the connection went (PQhost, PQport, PQuser, PQdb)
  int server_version = 0;                  // PQserverVersion: 150018 for 15.18
  std::string server_version_text;         // the server's own: "15.18 (Debian 15.18-0+deb12u1)"
  bool standby = false;                    // a hot standby (in recovery): read-only

  // The table (when reachable).
  bool table_exists = false;
  bool table_shape_ok = false;  // exists, and is (key bytea primary key, value bytea not null)
  std::vector<postgres_column> columns;
  bool key_is_primary_key = false;
  std::optional<std::uint64_t> rows;  // count(*), or the planner's estimate when !rows_exact
  bool rows_exact = false;
  std::optional<std::uint64_t> table_bytes;  // pg_total_relation_size: table, index, TOAST
  // The keyspace side tables (made with the first keyspace besides ""):
  // whether both exist with keel's columns, and then how many keyspaces
  // besides "" they list.
  bool keyspace_tables = false;
  std::optional<std::uint64_t> keyspaces;
  // Whether their keys' table has the deadline column (expires_at: a key was
  // put with a ttl in a keyspace besides ""; docs/expiry.md, "PostgreSQL").
  bool keyspace_deadlines = false;

  // The write check (see the top of this file).
  bool write_would_succeed = false;
  std::optional<errc> write_error_code;  // why not, as keel would report it
  std::string write_error;

  std::vector<std::string> findings;  // one sentence each, in order; the last one is the verdict
  std::string advice;                 // what to do, when a write would not succeed
};

namespace detail::pg {

// `v` as a conninfo value: single-quoted, with \ and ' escaped.
inline std::string conninfo_value(const std::string& v) {
  std::string out = "'";
  for (char ch : v) {
    if (ch == '\\' || ch == '\'') out += '\\';
    out += ch;
  }
  return out + "'";
}

// The items of a comma-separated conninfo list ("db1,db2").
inline std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::string::size_type from = 0;
  for (;;) {
    const auto comma = v.find(',', from);
    out.push_back(v.substr(from, comma == std::string::npos ? std::string::npos : comma - from));
    if (comma == std::string::npos) return out;
    from = comma + 1;
  }
}

// One conninfo per host when `conninfo` names several (host or hostaddr
// lists; a single port applies to all), each with target_session_attrs=any;
// empty when it names one or none. Pairs of (host, port) for the report.
struct single_host {
  std::string host, port, conninfo;
};
inline std::vector<single_host> split_hosts(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err) PQfreemem(err);
  if (!opts) return {};
  std::vector<std::string> hosts, addrs, ports;
  std::string rest;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    const std::string k = o->keyword;
    if (k == "host") hosts = split_list(o->val);
    else if (k == "hostaddr") addrs = split_list(o->val);
    else if (k == "port") ports = split_list(o->val);
    else if (k != "target_session_attrs") rest += k + "=" + conninfo_value(o->val) + " ";
  }
  PQconninfoFree(opts);
  const std::size_t n = std::max(hosts.size(), addrs.size());
  std::vector<single_host> out;
  if (n < 2) return out;
  for (std::size_t i = 0; i < n; ++i) {
    single_host h;
    std::string c = rest;
    if (i < hosts.size() && !hosts[i].empty()) c += "host=" + conninfo_value(h.host = hosts[i]) + " ";
    if (i < addrs.size() && !addrs[i].empty()) {
      c += "hostaddr=" + conninfo_value(addrs[i]) + " ";
      if (h.host.empty()) h.host = addrs[i];
    }
    const std::string port = ports.size() == 1 ? ports[0] : i < ports.size() ? ports[i] : "";
    if (!port.empty()) c += "port=" + conninfo_value(h.port = port) + " ";
    h.conninfo = c + "target_session_attrs=any";
    out.push_back(std::move(h));
  }
  return out;
}

// "\0keel-doctor/write-probe" as bytea text input.
inline const char* doctor_probe_key_hex() { return "\\x006b65656c2d646f63746f722f77726974652d70726f6265"; }

}  // namespace detail::pg

// Diagnoses the server and the table `opts` name. Never throws; every
// failure is a finding. See the top of this file for what it sends.
inline postgres_doctor_report diagnose_postgres(const postgres_options& opts) {
  namespace pg = detail::pg;
  using clock = pg::connection::clock;
  postgres_doctor_report r;
  r.table = opts.table;
  auto say = [&](std::string s) { r.findings.push_back(std::move(s)); };
  auto verdict = [&] {
    say(r.write_would_succeed ? "Verdict: a write would succeed now." : "Verdict: a write would NOT succeed now.");
    return r;
  };
  auto deadline = [&] { return clock::now() + opts.operation_timeout; };

  // 1. The options and the connection.
  if (opts.conninfo.empty() || opts.table.empty()) {
    r.connect_error_code = errc::invalid_argument;
    r.connect_error = opts.conninfo.empty() ? "no conninfo given (postgres_options::conninfo is empty)"
                                            : "no table given (postgres_options::table is empty)";
    say("Not checked: " + r.connect_error + ".");
    r.write_error_code = errc::invalid_argument;
    r.write_error = r.connect_error;
    r.advice = opts.conninfo.empty()
                   ? "Give the server's connection string, e.g. \"host=db1 dbname=app user=app\" or "
                     "\"postgresql://app@db1/app\" (keel --postgres CONNINFO, or KEEL_POSTGRES)."
                   : "Give the store's table name (keel --table NAME, KEEL_POSTGRES_TABLE; default keel).";
    return verdict();
  }
  if (auto bad = pg::conninfo_parse_error(opts.conninfo)) {
    r.connect_error_code = errc::invalid_argument;
    r.connect_error = "libpq cannot parse the conninfo: " + *bad;
    say("Not checked: " + r.connect_error + ".");
    r.write_error_code = errc::invalid_argument;
    r.write_error = r.connect_error;
    r.advice =
        "Fix the connection string: keyword=value pairs (\"host=db1 port=5432 dbname=app user=app\") or a URI "
        "(\"postgresql://app@db1:5432/app\"); see libpq's \"Connection Strings\".";
    return verdict();
  }
  r.hosts = pg::describe_hosts(opts.conninfo);
  for (const auto& one : pg::split_hosts(opts.conninfo)) {
    postgres_host_report h;
    h.host = one.host;
    h.port = one.port;
    const std::string name = "Host " + (h.host.empty() ? std::string("(default)") : h.host) +
                             (h.port.empty() ? "" : " port " + h.port);
    auto c = pg::connection::open(one.conninfo, opts.connect_timeout);
    if (!c) {
      h.error = c.error().message();
      say(name + " is not reachable: " + h.error);
    } else {
      h.reachable = true;
      h.server_version = PQserverVersion((*c)->raw());
      h.standby = (*c)->in_hot_standby();
      const char* v = PQparameterStatus((*c)->raw(), "server_version");
      say(name + ": " + (h.standby ? "a hot standby" : "a primary") + ", PostgreSQL " + (v ? v : "?") + ".");
    }
    r.each_host.push_back(std::move(h));
  }
  auto opened = pg::connection::open(opts.conninfo, opts.connect_timeout);
  if (!opened) {
    r.connect_error_code = opened.error().code();
    r.connect_error = opened.error().message();
    say("The server is not reachable: " + r.connect_error);
    r.write_error_code = r.connect_error_code;
    r.write_error = r.connect_error;
    r.advice =
        "Check that PostgreSQL runs and listens where the conninfo points (host: a name, an address or a "
        "socket directory; port), that pg_hba.conf admits this user from this host, and the password "
        "(PGPASSWORD, ~/.pgpass). With several hosts, each was tried.";
    return verdict();
  }
  pg::connection& c = **opened;
  r.reachable = true;
  auto text = [](const char* s) { return std::string(s ? s : ""); };
  r.host = text(PQhost(c.raw()));
  r.port = text(PQport(c.raw()));
  r.user = text(PQuser(c.raw()));
  r.database = text(PQdb(c.raw()));
  r.server_version = PQserverVersion(c.raw());
  r.server_version_text = text(PQparameterStatus(c.raw(), "server_version"));
  r.standby = c.in_hot_standby();
  say("Connected to host=" + r.host + " port=" + r.port + " as user " + r.user + ", database " + r.database +
      ": PostgreSQL " + r.server_version_text + " (server_version_num " + std::to_string(r.server_version) + ")" +
      (r.server_version != 0 && r.server_version < 110000 ? "; keel needs 11 or later." : "."));
  say(r.standby ? "The server is a hot standby (in recovery): reads work, writes give read_only."
                : "The server is a primary: it accepts writes.");

  auto failed = [&](const pg::failure& why, pg::step st, const char* what) {
    keel::error e = pg::to_error(why, st, what);
    r.write_error_code = e.code();
    r.write_error = e.message();
  };

  // 2. The table.
  const std::string quoted = c.quote_identifier(opts.table);
  if (quoted.empty()) {
    r.write_error_code = errc::invalid_argument;
    r.write_error = "the table name cannot be quoted: " + pg::trimmed(PQerrorMessage(c.raw()));
    say("The table name cannot be used: " + r.write_error + ".");
    r.advice = "Give another table name.";
    return verdict();
  }
  pg::failure why;
  auto shape = pg::read_table_shape(c, quoted, deadline(), &why);
  if (!shape) {
    failed(why, pg::step::read, "table check");
    say("The table could not be looked up: " + r.write_error);
    r.advice = "See the failure above; the server's log says more.";
    return verdict();
  }
  r.table_exists = shape->exists;
  r.table_shape_ok = shape->is_keel_table();
  r.key_is_primary_key = shape->key_is_primary_key;
  for (const auto& col : shape->columns) r.columns.push_back({col.name, col.type, col.not_null});
  if (!r.table_exists) {
    say("Table " + quoted + " does not exist (on the search_path of user " + r.user +
        "): keel creates it at the first open, as (key bytea primary key, value bytea not null).");
  } else if (r.table_shape_ok) {
    say("Table " + quoted + " has keel's shape: key bytea primary key, value bytea not null.");
  } else {
    say("Table " + quoted + " has another shape: columns (" + shape->describe() +
        "); keel needs (key bytea primary key, value bytea not null), so it refuses to open it "
        "(invalid_argument) and alters nothing.");
  }

  // 2b. The keyspace side tables.
  if (r.table_shape_ok) {
    const std::string list = c.quote_identifier(pg::side_table_name(opts.table, pg::keyspace_list_suffix));
    const std::string keys = c.quote_identifier(pg::side_table_name(opts.table, pg::keyspace_keys_suffix));
    pg::failure ks_why;
    auto there = c.exec_params(pg::keyspace_tables_sql, {list, keys}, deadline(), &ks_why);
    const bool found = there && PQntuples(there->get()) == 1 && std::string_view(PQgetvalue(there->get(), 0, 0)) == "t";
    r.keyspace_tables = found && std::string_view(PQgetvalue(there->get(), 0, 1)) == "t";
    r.keyspace_deadlines = r.keyspace_tables && std::string_view(PQgetvalue(there->get(), 0, 2)) == "t";
    if (found && !r.keyspace_tables) {
      say("Tables " + list + " and " + keys + " exist but are not keel's keyspace tables: keyspace operations give "
          "invalid_argument (the default keyspace works).");
    } else if (r.keyspace_tables) {
      if (auto n = c.exec("SELECT count(*) FROM " + list, deadline(), &ks_why); n && PQntuples(n->get()) == 1)
        r.keyspaces = std::stoull(PQgetvalue(n->get(), 0, 0));
      const std::string count =
          r.keyspaces ? std::to_string(*r.keyspaces) : "unknown (" + ks_why.message + ")";
      say("Keyspaces besides \"\": " + count + ", listed in " + list + ", their keys in " + keys +
          (r.keyspace_deadlines ? " (with the deadline column expires_at: keys put with a ttl)." : "."));
    } else if (there) {
      say("No keyspaces besides \"\" yet (tables " + list + " and " + keys + " are made with the first one).");
    }
  }

  // 3. Rows and size.
  if (r.table_exists) {
    const auto limit = std::min<long long>(5000, std::max<long long>(1, opts.operation_timeout.count()));
    pg::failure count_why;
    bool counted = false;
    if (auto b = c.exec("BEGIN READ ONLY; SET LOCAL statement_timeout = " + std::to_string(limit), deadline(),
                        &count_why)) {
      auto n = c.exec("SELECT count(*) FROM " + quoted, deadline(), &count_why);
      if (n && PQntuples(n->get()) == 1) {
        r.rows = std::stoull(PQgetvalue(n->get(), 0, 0));
        r.rows_exact = counted = true;
      }
      if (!c.broken()) {
        pg::failure end_why;
        if (!c.exec(counted ? "COMMIT" : "ROLLBACK", deadline(), &end_why)) c.mark_broken();
      }
    }
    if (c.broken()) {
      failed(count_why, pg::step::read, "row count");
      say("The connection was lost while counting rows: " + r.write_error);
      r.advice = "See the failure above; the server's log says more.";
      return verdict();
    }
    pg::failure size_why;
    if (auto sz = c.exec_params("SELECT pg_total_relation_size(c.oid), c.reltuples::bigint FROM pg_class c "
                                "WHERE c.oid = to_regclass($1)",
                                {quoted}, deadline(), &size_why);
        sz && PQntuples(sz->get()) == 1) {
      r.table_bytes = std::stoull(PQgetvalue(sz->get(), 0, 0));
      const long long estimate = std::stoll(PQgetvalue(sz->get(), 0, 1));
      if (!counted && estimate >= 0) r.rows = static_cast<std::uint64_t>(estimate);
    }
    std::string line;
    if (r.rows_exact)
      line = "It holds " + std::to_string(*r.rows) + " row" + (*r.rows == 1 ? "" : "s");
    else if (r.rows)
      line = "It holds about " + std::to_string(*r.rows) + " rows (the planner's estimate: count(*) " +
             (count_why.sqlstate == "57014" ? "took longer than " + std::to_string(limit) + " ms)"
                                            : "failed: " + count_why.message + ")");
    else
      line = "Its row count is unknown (count(*) " +
             (count_why.sqlstate == "57014" ? "took longer than " + std::to_string(limit) + " ms" : "failed: " + count_why.message) +
             "; the table was never analyzed)";
    if (r.table_bytes) line += ", " + std::to_string(*r.table_bytes) + " bytes with its index and TOAST";
    say(line + ".");
  }

  // 4. Would a write succeed now?
  if (r.table_exists && !r.table_shape_ok) {
    r.write_error_code = errc::invalid_argument;
    r.write_error = "table " + quoted + " has another shape (" + shape->describe() + ")";
    r.advice = "keel will not open or alter table " + quoted +
               ": give the store another table (postgres_options::table, keel --table NAME, KEEL_POSTGRES_TABLE), "
               "or move that table away (ALTER TABLE ... RENAME).";
    return verdict();
  }
  pg::failure probe_why;
  pg::step probe_step = pg::step::in_transaction;
  bool probed = false;
  if (c.exec("BEGIN; SET LOCAL lock_timeout = 2000; SET LOCAL statement_timeout = 5000", deadline(), &probe_why)) {
    bool ok = true;
    if (!r.table_exists) ok = static_cast<bool>(c.exec(pg::create_table_sql(quoted), deadline(), &probe_why));
    if (ok)
      ok = static_cast<bool>(c.exec_params("INSERT INTO " + quoted + " (key, value) VALUES ($1::bytea, ''::bytea) "
                                           "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                                           {pg::doctor_probe_key_hex()}, deadline(), &probe_why));
    if (!c.broken()) {
      pg::failure end_why;
      if (!c.exec("ROLLBACK", deadline(), &end_why)) c.mark_broken();
    }
    probed = ok;
  } else {
    probe_step = pg::step::read;
  }
  if (probed) {
    r.write_would_succeed = true;
    say(std::string("A write check succeeded (") +
        (r.table_exists ? "keel's upsert of a probe key" : "keel's CREATE TABLE and an upsert of a probe key") +
        ", in a transaction that was rolled back: nothing was kept).");
    return verdict();
  }
  failed(probe_why, probe_step, "write check");
  say("A write check failed (" + std::string(to_string(*r.write_error_code)) + "): " + r.write_error);
  switch (*r.write_error_code) {
    case errc::read_only:
      r.advice =
          "The server is read-only (a hot standby, or default_transaction_read_only): point the conninfo at the "
          "primary, or list every host with target_session_attrs=read-write so that libpq finds the primary.";
      break;
    case errc::permission_denied:
      r.advice = "Grant user " + r.user + " what keel needs: GRANT SELECT, INSERT, UPDATE, DELETE ON " + quoted +
                 " TO " + r.user + (r.table_exists ? "" : "; and CREATE on the schema, since the table does not exist yet") +
                 ".";
      break;
    case errc::no_space:
      r.advice = "The server's disk is full: free space there (WAL kept for a replication slot, old logs; VACUUM FULL "
                 "of bloated tables) or give it a larger disk.";
      break;
    case errc::unavailable:
    case errc::outcome_unknown:
      r.advice = "The server stopped answering during the check: see its log, and run the doctor again.";
      break;
    default:
      r.advice = "See the failure above; the server's log says more.";
  }
  return verdict();
}

}  // namespace keel
