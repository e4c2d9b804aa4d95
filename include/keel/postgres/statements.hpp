// keel::detail::pg: the SQL keel sends, one job: the statements over one
// store's tables, their parameter types, the schema (create, check), and the
// binary encoding of parameters. Table names are quoted once by libpq
// (PQescapeIdentifier) and are never pasted unquoted; keys, values and
// keyspace names are always binary parameters.
//
// Tables of the store `T` (postgres_options::table):
//   T               (key bytea PRIMARY KEY, value bytea NOT NULL)
//                   the default keyspace "" (the only table before keyspaces)
//   T_keyspaces     (name bytea PRIMARY KEY, id bigint identity UNIQUE)
//                   the other keyspaces: one row each; keyspaces() reads it
//   T_ks            (keyspace_id bigint REFERENCES T_keyspaces (id) ON
//                   DELETE CASCADE, key bytea, value bytea NOT NULL,
//                   PRIMARY KEY (keyspace_id, key))   their keys; the
//                   first ttl put in one of them adds the nullable column
//                   expires_at timestamptz (and the partial index
//                   T_ks_expires_at), as the first one in "" does to T
// The two side tables are created together by the first keyspace() that
// creates a keyspace, never by open(). A keyspace is reached by its id, not
// its name: ids are never reused, so a handle to a dropped keyspace (its id
// gone from T_keyspaces) reaches nothing, not a keyspace made again under
// that name. The foreign key makes a write through such a handle fail
// (23503: not_found) and a drop one DELETE of the list row (the cascade
// deletes its keys in the same transaction).
#pragma once

#include <libpq-fe.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keel::detail::pg {

// Built-in type OIDs (pg_type.dat; stable across versions).
inline constexpr Oid bytea_oid = 17;
inline constexpr Oid int8_oid = 20;
inline constexpr Oid int4_oid = 23;
inline constexpr Oid bytea_array_oid = 1001;
inline constexpr Oid int8_array_oid = 1016;

// The column a table gains on its first put with a ttl (expiry.hpp): the
// deadline, timestamptz, NULL for a key without one.
inline constexpr std::string_view deadline_column = "expires_at";

// The prepared statements of one store. Scans are keyset-paged: forward
// pages read key >= $1 (the next key after the last one read), reversed
// pages key < $2 (the last key read), both ordered by key and limited.
enum class stmt : unsigned {
  get,                // $1 key -> value
  contains,           // $1 key -> 1
  put,                // $1 key, $2 value (upsert)
  erase,              // $1 key
  erase_between,      // $1 lower (inclusive), $2 upper (exclusive)
  erase_from,         // $1 lower
  scan_forward,       // $1 lower, $2 upper, $3 limit
  scan_forward_open,  // $1 lower, $2 limit
  scan_reverse,       // $1 lower, $2 upper, $3 limit
  scan_reverse_open,  // $1 lower, $2 limit
  multi_get,          // $1 keys -> (ordinal, value) of the keys present
  erase_many,         // $1 keys
  put_many,           // $1 keys, $2 values (keys distinct)
  // Keyspaces other than "" ($1: the keyspace's id). Reads and erases return
  // no row at all when the keyspace does not exist (in the statement's
  // snapshot): get one row (value, NULL when absent), scans their rows or
  // one row of NULLs when the range is empty, erases one row; puts fail with
  // 23503 (the foreign key) then.
  ks_get,                // $2 key -> value or NULL
  ks_contains,           // $2 key -> bool
  ks_put,                // $2 key, $3 value (upsert)
  ks_erase,              // $2 key
  ks_erase_between,      // $2 lower, $3 upper
  ks_erase_from,         // $2 lower
  ks_scan_forward,       // $2 lower, $3 upper, $4 limit
  ks_scan_forward_open,  // $2 lower, $3 limit
  ks_scan_reverse,       // $2 lower, $3 upper, $4 limit
  ks_scan_reverse_open,  // $2 lower, $3 limit
  ks_multi_get,          // $2 keys -> (ordinal, value or NULL) per key
  ks_erase_many,         // $2 keys
  ks_put_many,           // $2 keys, $3 values (keys distinct)
  ks_exists,             // -> 1
  // The list of keyspaces.
  ks_lookup,   // $1 name -> id
  ks_create,   // $1 name -> id (no row when the name exists)
  ks_resolve,  // $1 names -> (name, id) of those that exist, locked against a drop (FOR KEY SHARE)
  ks_resolve_snapshot,  // $1 names -> (name, id) of those that exist (no lock)
  ks_list,     // -> names, in byte order
  ks_drop,     // $1 name -> id (no row when missing); the cascade deletes its keys
  // The default keyspace once its table has the deadline column (expiry.hpp):
  // reads leave out rows whose deadline is at or before now() (the
  // statement's start; in a view, its transaction's start).
  x_get,                // $1 key -> value
  x_contains,           // $1 key -> 1
  x_put,                // $1 key, $2 value, $3 ttl ms (int8; 0: permanent)
  x_scan_forward,       // as scan_forward
  x_scan_forward_open,  // as scan_forward_open
  x_scan_reverse,       // as scan_reverse
  x_scan_reverse_open,  // as scan_reverse_open
  x_multi_get,          // as multi_get
  x_put_many,           // $1 keys, $2 values, $3 ttls ms (int8[]; 0: permanent)
  x_expiry,             // $1 key -> deadline ms since the epoch (int8) or NULL (permanent)
  x_sweep,              // $1 limit (int4): deletes up to that many expired rows
  x_expired_keys,       // $1 keys -> 1 when one has a deadline in (now(), statement_timestamp()]
  x_expired_between,    // $1 lower, $2 upper: the same over a range
  x_expired_from,       // $1 lower
  // The other keyspaces once T_ks has the deadline column: as their ks_*
  // counterparts, leaving out expired rows.
  x_ks_get,                // $1 id, $2 key -> value or NULL
  x_ks_contains,           // $1 id, $2 key -> bool
  x_ks_put,                // $1 id, $2 key, $3 value, $4 ttl ms (int8; 0: permanent)
  x_ks_scan_forward,       // as ks_scan_forward
  x_ks_scan_forward_open,  // as ks_scan_forward_open
  x_ks_scan_reverse,       // as ks_scan_reverse
  x_ks_scan_reverse_open,  // as ks_scan_reverse_open
  x_ks_multi_get,          // as ks_multi_get
  x_ks_put_many,           // $1 id, $2 keys, $3 values, $4 ttls ms (int8[])
  x_ks_expiry,             // $1 id, $2 key -> (present bool, deadline ms or NULL); no row: no keyspace
  x_ks_sweep,              // $1 limit (int4): deletes up to that many expired rows of T_ks
  x_ks_expired_keys,       // $1 keyspace name, $2 keys: as x_expired_keys (the keyspace as of the snapshot)
  x_ks_expired_between,    // $1 name, $2 lower, $3 upper
  x_ks_expired_from,       // $1 name, $2 lower
  count_
};
inline constexpr std::size_t statement_count = static_cast<std::size_t>(stmt::count_);

inline const char* statement_name(stmt s) {
  static constexpr const char* names[statement_count] = {
      "keel_get",          "keel_contains",     "keel_put",          "keel_erase",       "keel_erase_between",
      "keel_erase_from",   "keel_scan_forward", "keel_scan_forward_open", "keel_scan_reverse", "keel_scan_reverse_open",
      "keel_multi_get",    "keel_erase_many",   "keel_put_many",
      "keel_ks_get",       "keel_ks_contains",  "keel_ks_put",       "keel_ks_erase",    "keel_ks_erase_between",
      "keel_ks_erase_from", "keel_ks_scan_forward", "keel_ks_scan_forward_open", "keel_ks_scan_reverse",
      "keel_ks_scan_reverse_open", "keel_ks_multi_get", "keel_ks_erase_many", "keel_ks_put_many", "keel_ks_exists",
      "keel_ks_lookup",    "keel_ks_create",    "keel_ks_resolve",   "keel_ks_resolve_snapshot", "keel_ks_list",     "keel_ks_drop",
      "keel_x_get",        "keel_x_contains",   "keel_x_put",        "keel_x_scan_forward", "keel_x_scan_forward_open",
      "keel_x_scan_reverse", "keel_x_scan_reverse_open", "keel_x_multi_get", "keel_x_put_many", "keel_x_expiry",
      "keel_x_sweep",      "keel_x_expired_keys", "keel_x_expired_between", "keel_x_expired_from",
      "keel_x_ks_get",     "keel_x_ks_contains", "keel_x_ks_put",    "keel_x_ks_scan_forward",
      "keel_x_ks_scan_forward_open", "keel_x_ks_scan_reverse", "keel_x_ks_scan_reverse_open", "keel_x_ks_multi_get",
      "keel_x_ks_put_many", "keel_x_ks_expiry",  "keel_x_ks_sweep",   "keel_x_ks_expired_keys",
      "keel_x_ks_expired_between", "keel_x_ks_expired_from"};
  return names[static_cast<std::size_t>(s)];
}

struct statement_text {
  std::string sql;
  std::vector<Oid> types;
};

// The statements for the table `t` and its side tables `l` (the list of
// keyspaces) and `k` (their keys), all already quoted by PQescapeIdentifier.
inline std::array<statement_text, statement_count> make_statements(const std::string& t, const std::string& l,
                                                                   const std::string& k) {
  std::array<statement_text, statement_count> s;
  auto set = [&](stmt id, std::string sql, std::vector<Oid> types) {
    s[static_cast<std::size_t>(id)] = {std::move(sql), std::move(types)};
  };
  // The statements of a table without the deadline column ("plain") carry a
  // guard that costs nothing (the planner folds it away: the same plan as
  // without it) and fails once the column exists: reads name the column
  // unqualified beside a constant source of that name (42702, ambiguous
  // after ALTER TABLE ... ADD COLUMN), upserts assign ROW(EXCLUDED.*) to
  // (key, value) (42601 with three columns). PostgreSQL re-analyses a prepared
  // statement when its table changes, so a process that has not seen another
  // one add the column gets an error, never a read that ignores deadlines or
  // a put that leaves one in place (expiry.hpp: then it switches).
  const std::string guard_source = "(SELECT NULL::timestamptz AS " + std::string(deadline_column) + ") keel_guard";
  const std::string guarded = " AND " + std::string(deadline_column) + " IS NULL";
  const std::string plain_upsert = " ON CONFLICT (key) DO UPDATE SET (key, value) = ROW(EXCLUDED.*)";
  set(stmt::put, "INSERT INTO " + t + " (key, value) VALUES ($1, $2)" + plain_upsert, {bytea_oid, bytea_oid});
  set(stmt::erase, "DELETE FROM " + t + " WHERE key = $1", {bytea_oid});
  set(stmt::erase_between, "DELETE FROM " + t + " WHERE key >= $1 AND key < $2", {bytea_oid, bytea_oid});
  set(stmt::erase_from, "DELETE FROM " + t + " WHERE key >= $1", {bytea_oid});
  // The reads of both shapes: `guard` empty or the guard's source, `live`
  // the filter.
  auto reads = [&](const std::string& guard, const std::string& live, stmt get, stmt contains, stmt sf, stmt sfo,
                   stmt sr, stmt sro, stmt mg) {
    const std::string from = t + " t" + (guard.empty() ? std::string() : ", " + guard);
    set(get, "SELECT value FROM " + from + " WHERE key = $1" + live, {bytea_oid});
    set(contains, "SELECT 1 FROM " + from + " WHERE key = $1" + live, {bytea_oid});
    set(sf, "SELECT key, value FROM " + from + " WHERE key >= $1 AND key < $2" + live + " ORDER BY key LIMIT $3",
        {bytea_oid, bytea_oid, int4_oid});
    set(sfo, "SELECT key, value FROM " + from + " WHERE key >= $1" + live + " ORDER BY key LIMIT $2",
        {bytea_oid, int4_oid});
    set(sr, "SELECT key, value FROM " + from + " WHERE key >= $1 AND key < $2" + live + " ORDER BY key DESC LIMIT $3",
        {bytea_oid, bytea_oid, int4_oid});
    set(sro, "SELECT key, value FROM " + from + " WHERE key >= $1" + live + " ORDER BY key DESC LIMIT $2",
        {bytea_oid, int4_oid});
    set(mg,
        "SELECT k.ord::int4, t.value FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, ord) JOIN " + t +
            " t ON t.key = k.key" + (guard.empty() ? std::string() : " CROSS JOIN " + guard) + " WHERE true" + live,
        {bytea_array_oid});
  };
  reads(guard_source, guarded, stmt::get, stmt::contains, stmt::scan_forward, stmt::scan_forward_open,
        stmt::scan_reverse, stmt::scan_reverse_open, stmt::multi_get);
  const std::string live = " AND (t." + std::string(deadline_column) + " IS NULL OR t." +
                           std::string(deadline_column) + " > now())";
  reads("", live, stmt::x_get, stmt::x_contains, stmt::x_scan_forward, stmt::x_scan_forward_open,
        stmt::x_scan_reverse, stmt::x_scan_reverse_open, stmt::x_multi_get);
  set(stmt::erase_many, "DELETE FROM " + t + " WHERE key = ANY($1)", {bytea_array_oid});
  set(stmt::put_many, "INSERT INTO " + t + " (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])" + plain_upsert,
      {bytea_array_oid, bytea_array_oid});
  const std::string d(deadline_column);
  // A deadline: the statement's start, to the millisecond, plus the ttl.
  auto deadline_of = [&](const std::string& ttl) {
    return "CASE WHEN " + ttl + " > 0 THEN date_trunc('milliseconds', statement_timestamp()) + " + ttl +
           " * interval '1 millisecond' END";
  };
  const std::string x_upsert = " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, " + d + " = EXCLUDED." + d;
  set(stmt::x_put, "INSERT INTO " + t + " (key, value, " + d + ") VALUES ($1, $2, " + deadline_of("$3::int8") + ")" +
                       x_upsert,
      {bytea_oid, bytea_oid, int8_oid});
  set(stmt::x_put_many,
      "INSERT INTO " + t + " (key, value, " + d + ") SELECT u.k, u.v, " + deadline_of("u.ttl") +
          " FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) AS u(k, v, ttl)" + x_upsert,
      {bytea_array_oid, bytea_array_oid, int8_array_oid});
  set(stmt::x_expiry,
      "SELECT floor(extract(epoch FROM t." + d + ") * 1000)::int8 FROM " + t + " t WHERE key = $1" + live,
      {bytea_oid});
  set(stmt::x_sweep,
      "DELETE FROM " + t + " WHERE key = ANY(ARRAY(SELECT key FROM " + t + " WHERE " + d + " <= now() LIMIT $1)) AND " +
          d + " <= now()",
      {int4_oid});
  const std::string expired_since_view = " AND " + d + " > now() AND " + d + " <= statement_timestamp() LIMIT 1";
  set(stmt::x_expired_keys, "SELECT 1 FROM " + t + " WHERE key = ANY($1)" + expired_since_view, {bytea_array_oid});
  set(stmt::x_expired_between, "SELECT 1 FROM " + t + " WHERE key >= $1 AND key < $2" + expired_since_view,
      {bytea_oid, bytea_oid});
  set(stmt::x_expired_from, "SELECT 1 FROM " + t + " WHERE key >= $1" + expired_since_view, {bytea_oid});

  // The other keyspaces' statements, of both shapes of T_ks: the plain ones
  // (before its first ttl put) carry the same guards as the default table's
  // (a constant source of the deadline column's name in reads, ROW(EXCLUDED.*)
  // in upserts), the x_ks_* ones filter by deadline.
  const std::string ks_live = " AND (t." + d + " IS NULL OR t." + d + " > now())";
  const std::string plain_ks_upsert = " ON CONFLICT (keyspace_id, key) DO UPDATE SET (keyspace_id, key, value) = "
                                      "ROW(EXCLUDED.*)";
  const std::string x_ks_upsert =
      " ON CONFLICT (keyspace_id, key) DO UPDATE SET value = EXCLUDED.value, " + d + " = EXCLUDED." + d;
  const std::string in_list = " FROM " + l + " WHERE id = $1";
  set(stmt::ks_get,
      "SELECT t.value FROM " + l + " l CROSS JOIN " + guard_source + " LEFT JOIN " + k +
          " t ON t.keyspace_id = l.id AND t.key = $2 WHERE l.id = $1" + guarded,
      {int8_oid, bytea_oid});
  set(stmt::x_ks_get,
      "SELECT t.value FROM " + l + " l LEFT JOIN " + k + " t ON t.keyspace_id = l.id AND t.key = $2" + ks_live +
          " WHERE l.id = $1",
      {int8_oid, bytea_oid});
  set(stmt::ks_contains,
      "SELECT EXISTS (SELECT 1 FROM " + k + ", " + guard_source + " WHERE keyspace_id = $1 AND key = $2" + guarded +
          ")" + in_list,
      {int8_oid, bytea_oid});
  set(stmt::x_ks_contains,
      "SELECT EXISTS (SELECT 1 FROM " + k + " t WHERE keyspace_id = $1 AND key = $2" + ks_live + ")" + in_list,
      {int8_oid, bytea_oid});
  set(stmt::ks_put, "INSERT INTO " + k + " (keyspace_id, key, value) VALUES ($1, $2, $3)" + plain_ks_upsert,
      {int8_oid, bytea_oid, bytea_oid});
  set(stmt::x_ks_put,
      "INSERT INTO " + k + " (keyspace_id, key, value, " + d + ") VALUES ($1, $2, $3, " + deadline_of("$4::int8") +
          ")" + x_ks_upsert,
      {int8_oid, bytea_oid, bytea_oid, int8_oid});
  set(stmt::ks_erase, "WITH d AS (DELETE FROM " + k + " WHERE keyspace_id = $1 AND key = $2) SELECT 1" + in_list,
      {int8_oid, bytea_oid});
  set(stmt::ks_erase_between,
      "WITH d AS (DELETE FROM " + k + " WHERE keyspace_id = $1 AND key >= $2 AND key < $3) SELECT 1" + in_list,
      {int8_oid, bytea_oid, bytea_oid});
  set(stmt::ks_erase_from, "WITH d AS (DELETE FROM " + k + " WHERE keyspace_id = $1 AND key >= $2) SELECT 1" + in_list,
      {int8_oid, bytea_oid});
  // One keyspace's page: the LEFT JOIN gives one row of NULLs when the
  // keyspace exists but has nothing in the range, and no row when it does not.
  auto page = [&](bool x, const std::string& where, const std::string& limit, const char* order) {
    return "SELECT t.key, t.value FROM " + l + " l LEFT JOIN LATERAL (SELECT key, value FROM " + k +
           (x ? " t" : ", " + guard_source) + " WHERE keyspace_id = l.id AND " + where + (x ? ks_live : guarded) +
           " ORDER BY key " + order + " LIMIT " + limit + ") t ON true WHERE l.id = $1 ORDER BY t.key " + order;
  };
  for (bool x : {false, true}) {
    set(x ? stmt::x_ks_scan_forward : stmt::ks_scan_forward, page(x, "key >= $2 AND key < $3", "$4", "ASC"),
        {int8_oid, bytea_oid, bytea_oid, int4_oid});
    set(x ? stmt::x_ks_scan_forward_open : stmt::ks_scan_forward_open, page(x, "key >= $2", "$3", "ASC"),
        {int8_oid, bytea_oid, int4_oid});
    set(x ? stmt::x_ks_scan_reverse : stmt::ks_scan_reverse, page(x, "key >= $2 AND key < $3", "$4", "DESC"),
        {int8_oid, bytea_oid, bytea_oid, int4_oid});
    set(x ? stmt::x_ks_scan_reverse_open : stmt::ks_scan_reverse_open, page(x, "key >= $2", "$3", "DESC"),
        {int8_oid, bytea_oid, int4_oid});
  }
  set(stmt::ks_multi_get,
      "SELECT q.ord::int4, t.value FROM " + l + " l CROSS JOIN " + guard_source +
          " CROSS JOIN unnest($2::bytea[]) WITH ORDINALITY AS q(key, ord) LEFT JOIN " + k +
          " t ON t.keyspace_id = l.id AND t.key = q.key WHERE l.id = $1" + guarded,
      {int8_oid, bytea_array_oid});
  set(stmt::x_ks_multi_get,
      "SELECT q.ord::int4, t.value FROM " + l + " l CROSS JOIN unnest($2::bytea[]) WITH ORDINALITY AS q(key, ord) " +
          "LEFT JOIN " + k + " t ON t.keyspace_id = l.id AND t.key = q.key" + ks_live + " WHERE l.id = $1",
      {int8_oid, bytea_array_oid});
  set(stmt::ks_erase_many,
      "WITH d AS (DELETE FROM " + k + " WHERE keyspace_id = $1 AND key = ANY($2)) SELECT 1" + in_list,
      {int8_oid, bytea_array_oid});
  set(stmt::ks_put_many,
      "INSERT INTO " + k + " (keyspace_id, key, value) SELECT $1, u.k, u.v FROM unnest($2::bytea[], $3::bytea[]) " +
          "AS u(k, v)" + plain_ks_upsert,
      {int8_oid, bytea_array_oid, bytea_array_oid});
  set(stmt::x_ks_put_many,
      "INSERT INTO " + k + " (keyspace_id, key, value, " + d + ") SELECT $1, u.k, u.v, " + deadline_of("u.ttl") +
          " FROM unnest($2::bytea[], $3::bytea[], $4::int8[]) AS u(k, v, ttl)" + x_ks_upsert,
      {int8_oid, bytea_array_oid, bytea_array_oid, int8_array_oid});
  set(stmt::x_ks_expiry,
      "SELECT t.key IS NOT NULL, floor(extract(epoch FROM t." + d + ") * 1000)::int8 FROM " + l + " l LEFT JOIN " +
          k + " t ON t.keyspace_id = l.id AND t.key = $2" + ks_live + " WHERE l.id = $1",
      {int8_oid, bytea_oid});
  // By ctid: T_ks's key is two columns; a row moved meanwhile is skipped.
  set(stmt::x_ks_sweep,
      "DELETE FROM " + k + " WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + k + " WHERE " + d + " <= now() LIMIT $1)) AND " +
          d + " <= now()",
      {int4_oid});
  const std::string in_named = "SELECT 1 FROM " + k + " t JOIN " + l + " l ON l.id = t.keyspace_id WHERE l.name = $1";
  const std::string ks_expired_since_view =
      " AND t." + d + " > now() AND t." + d + " <= statement_timestamp() LIMIT 1";
  set(stmt::x_ks_expired_keys, in_named + " AND t.key = ANY($2)" + ks_expired_since_view,
      {bytea_oid, bytea_array_oid});
  set(stmt::x_ks_expired_between, in_named + " AND t.key >= $2 AND t.key < $3" + ks_expired_since_view,
      {bytea_oid, bytea_oid, bytea_oid});
  set(stmt::x_ks_expired_from, in_named + " AND t.key >= $2" + ks_expired_since_view, {bytea_oid, bytea_oid});
  set(stmt::ks_exists, "SELECT 1" + in_list, {int8_oid});
  set(stmt::ks_lookup, "SELECT id FROM " + l + " WHERE name = $1", {bytea_oid});
  set(stmt::ks_create, "INSERT INTO " + l + " (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
      {bytea_oid});
  set(stmt::ks_resolve, "SELECT name, id FROM " + l + " WHERE name = ANY($1) FOR KEY SHARE", {bytea_array_oid});
  set(stmt::ks_resolve_snapshot, "SELECT name, id FROM " + l + " WHERE name = ANY($1)", {bytea_array_oid});
  set(stmt::ks_list, "SELECT name FROM " + l + " ORDER BY name", {});
  set(stmt::ks_drop, "DELETE FROM " + l + " WHERE name = $1 RETURNING id", {bytea_oid});
  return s;
}

// The name of a side table of `table`: table + suffix ("_keyspaces",
// "_ks") when that fits PostgreSQL's 63-byte identifiers, else a prefix of
// table (cut at a UTF-8 character boundary), '_', 16 hex digits of a hash of
// the whole name, and the suffix, so that two long table names never share
// side tables and no name is truncated by the server.
inline std::string side_table_name(std::string_view table, std::string_view suffix) {
  constexpr std::size_t max_identifier = 63;
  if (table.size() + suffix.size() <= max_identifier) return std::string(table) + std::string(suffix);
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : table) h = (h ^ c) * 1099511628211ull;
  std::size_t cut = max_identifier - suffix.size() - 17;
  while (cut > 0 && (static_cast<unsigned char>(table[cut]) & 0xc0) == 0x80) --cut;  // not inside a character
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(table.substr(0, cut));
  out += '_';
  for (int shift = 60; shift >= 0; shift -= 4) out += hex[(h >> shift) & 15];
  return out + std::string(suffix);
}
// Whether the side tables exist ($2: the keys' table, made last), whether
// they have keel's columns ($1: the list), and whether the keys' table has
// the deadline column (its first ttl put adds it); text results "t"/"f".
inline constexpr const char* keyspace_tables_sql =
    "SELECT to_regclass($2) IS NOT NULL, "
    "(SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped "
    "AND ((attname = 'name' AND atttypid = 'bytea'::regtype) OR (attname = 'id' AND atttypid = 'int8'::regtype))) = 2 "
    "AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($2) AND attnum > 0 AND NOT attisdropped "
    "AND ((attname IN ('key', 'value') AND atttypid = 'bytea'::regtype) OR "
    "(attname = 'keyspace_id' AND atttypid = 'int8'::regtype))) = 3, "
    "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'expires_at' "
    "AND atttypid = 'timestamptz'::regtype AND NOT attisdropped)";
inline constexpr std::string_view keyspace_list_suffix = "_keyspaces";
inline constexpr std::string_view keyspace_keys_suffix = "_ks";
inline constexpr std::string_view deadline_index_suffix = "_expires_at";  // the sweep's partial index
inline constexpr std::string_view keyspace_deadline_index_suffix = "_ks_expires_at";  // T_ks's

// The side tables, made together: one simple query of two statements is one
// implicit transaction (IF NOT EXISTS: a second client doing the same at once
// may still fail on the catalog's unique index; the caller then checks that
// they exist).
inline std::string create_keyspace_tables_sql(const std::string& l, const std::string& k) {
  return "CREATE TABLE IF NOT EXISTS " + l +
         " (name bytea PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255), id bigint GENERATED ALWAYS AS IDENTITY "
         "UNIQUE); CREATE TABLE IF NOT EXISTS " + k + " (keyspace_id bigint NOT NULL REFERENCES " + l +
         " (id) ON DELETE CASCADE, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (keyspace_id, key))";
}

// The table keel creates when it is missing.
inline std::string create_table_sql(const std::string& quoted) {
  return "CREATE TABLE IF NOT EXISTS " + quoted + " (key bytea PRIMARY KEY, value bytea NOT NULL)";
}

// The table's columns as "name type[ not null]", in order (text results;
// $1: the quoted name, resolved by to_regclass on the search_path).
inline constexpr const char* columns_sql =
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
    "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
// 1 when the table's primary key is exactly its column "key".
inline constexpr const char* primary_key_sql =
    "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
    "WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnkeyatts = 1 AND a.attname = 'key'";
// The table's existence ($1 as above).
inline constexpr const char* exists_sql = "SELECT to_regclass($1) IS NOT NULL";

// Big-endian integers of the binary wire format.
inline void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}
inline void put_be64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}
inline std::uint64_t get_be64(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | u[i];
  return v;
}
inline std::uint32_t get_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t(u[0]) << 24) | (std::uint32_t(u[1]) << 16) | (std::uint32_t(u[2]) << 8) | std::uint32_t(u[3]);
}

// A one-dimensional int8[] in PostgreSQL's binary array format (no NULLs).
inline std::string encode_int8_array(const std::vector<std::int64_t>& items) {
  std::string out;
  out.reserve(20 + 12 * items.size());
  put_be32(out, items.empty() ? 0 : 1);
  put_be32(out, 0);
  put_be32(out, int8_oid);
  if (!items.empty()) {
    put_be32(out, static_cast<std::uint32_t>(items.size()));
    put_be32(out, 1);
    for (std::int64_t x : items) {
      put_be32(out, 8);
      put_be64(out, static_cast<std::uint64_t>(x));
    }
  }
  return out;
}

// A one-dimensional bytea[] in PostgreSQL's binary array format (no NULLs).
template <class Range>
std::string encode_bytea_array(const Range& items) {
  std::string out;
  std::size_t n = 0, bytes = 0;
  for (const auto& x : items) {
    ++n;
    bytes += std::string_view(x).size();
  }
  out.reserve(20 + 4 * n + bytes);
  put_be32(out, n == 0 ? 0 : 1);  // dimensions
  put_be32(out, 0);               // has NULLs
  put_be32(out, bytea_oid);
  if (n != 0) {
    put_be32(out, static_cast<std::uint32_t>(n));  // length of the dimension
    put_be32(out, 1);                              // lower bound
    for (const auto& x : items) {
      std::string_view v(x);
      put_be32(out, static_cast<std::uint32_t>(v.size()));
      out.append(v);
    }
  }
  return out;
}

}  // namespace keel::detail::pg
