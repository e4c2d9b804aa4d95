// keel::detail::pg: the SQL keel sends, one job: the statements over one
// table, their parameter types, the schema (create, check), and the binary
// encoding of bytea[] parameters. The table name is quoted once by libpq
// (PQescapeIdentifier) and is never pasted unquoted; keys and values are
// always binary parameters.
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
inline constexpr Oid int4_oid = 23;
inline constexpr Oid bytea_array_oid = 1001;

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
  count_
};
inline constexpr std::size_t statement_count = static_cast<std::size_t>(stmt::count_);

inline const char* statement_name(stmt s) {
  static constexpr const char* names[statement_count] = {
      "keel_get",          "keel_contains",     "keel_put",          "keel_erase",       "keel_erase_between",
      "keel_erase_from",   "keel_scan_forward", "keel_scan_forward_open", "keel_scan_reverse", "keel_scan_reverse_open",
      "keel_multi_get",    "keel_erase_many",   "keel_put_many"};
  return names[static_cast<std::size_t>(s)];
}

struct statement_text {
  std::string sql;
  std::vector<Oid> types;
};

// The statements for the table `quoted` (already quoted by PQescapeIdentifier).
inline std::array<statement_text, statement_count> make_statements(const std::string& t) {
  const std::string upsert = " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";
  std::array<statement_text, statement_count> s;
  auto set = [&](stmt id, std::string sql, std::vector<Oid> types) {
    s[static_cast<std::size_t>(id)] = {std::move(sql), std::move(types)};
  };
  set(stmt::get, "SELECT value FROM " + t + " WHERE key = $1", {bytea_oid});
  set(stmt::contains, "SELECT 1 FROM " + t + " WHERE key = $1", {bytea_oid});
  set(stmt::put, "INSERT INTO " + t + " (key, value) VALUES ($1, $2)" + upsert, {bytea_oid, bytea_oid});
  set(stmt::erase, "DELETE FROM " + t + " WHERE key = $1", {bytea_oid});
  set(stmt::erase_between, "DELETE FROM " + t + " WHERE key >= $1 AND key < $2", {bytea_oid, bytea_oid});
  set(stmt::erase_from, "DELETE FROM " + t + " WHERE key >= $1", {bytea_oid});
  set(stmt::scan_forward, "SELECT key, value FROM " + t + " WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
      {bytea_oid, bytea_oid, int4_oid});
  set(stmt::scan_forward_open, "SELECT key, value FROM " + t + " WHERE key >= $1 ORDER BY key LIMIT $2",
      {bytea_oid, int4_oid});
  set(stmt::scan_reverse, "SELECT key, value FROM " + t + " WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT $3",
      {bytea_oid, bytea_oid, int4_oid});
  set(stmt::scan_reverse_open, "SELECT key, value FROM " + t + " WHERE key >= $1 ORDER BY key DESC LIMIT $2",
      {bytea_oid, int4_oid});
  set(stmt::multi_get,
      "SELECT k.ord::int4, t.value FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, ord) JOIN " + t +
          " t ON t.key = k.key",
      {bytea_array_oid});
  set(stmt::erase_many, "DELETE FROM " + t + " WHERE key = ANY($1)", {bytea_array_oid});
  set(stmt::put_many, "INSERT INTO " + t + " (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])" + upsert,
      {bytea_array_oid, bytea_array_oid});
  return s;
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
inline std::uint32_t get_be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t(u[0]) << 24) | (std::uint32_t(u[1]) << 16) | (std::uint32_t(u[2]) << 8) | std::uint32_t(u[3]);
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
