// keel::detail::pg: a table's shape, one job: what columns the table has
// and whether it is keel's (key bytea primary key, value bytea not null).
// Used by PostgresPolicy::open (ensure_table: creates a missing table,
// refuses another shape) and by keel::diagnose_postgres (which reports it).
#pragma once

#include <libpq-fe.h>

#include <string>
#include <string_view>
#include <vector>

#include "../error.hpp"
#include "connection.hpp"
#include "errors.hpp"
#include "statements.hpp"

namespace keel::detail::pg {

struct column_info {
  std::string name;
  std::string type;  // format_type(): "bytea", "integer", "character varying(10)"
  bool not_null = false;
};

struct table_shape {
  bool exists = false;
  std::vector<column_info> columns;  // in column order; empty when !exists
  bool key_is_primary_key = false;   // the primary key is exactly the column "key"

  // Whether keel can use the table: exactly (key bytea, value bytea not
  // null), in that order, with the primary key on key; and, once a key was
  // put with a ttl, the nullable deadline column (expires_at timestamptz,
  // postgres/expiry.hpp) third.
  bool is_keel_table() const {
    return exists && (columns.size() == 2 || has_deadline_column()) && columns.size() >= 2 &&
           columns[0].name == "key" && columns[0].type == "bytea" && columns[1].name == "value" &&
           columns[1].type == "bytea" && columns[1].not_null && key_is_primary_key;
  }
  // Whether the third column is the deadline column.
  bool has_deadline_column() const {
    return columns.size() == 3 && columns[2].name == deadline_column && columns[2].type == "timestamp with time zone" &&
           !columns[2].not_null;
  }
  // The columns as "name type[ not null], ..." (and "; no primary key on
  // key" when the columns are right but the key is not).
  std::string describe() const {
    std::string s;
    for (const auto& c : columns) {
      if (!s.empty()) s += ", ";
      s += c.name + " " + c.type + (c.not_null ? " not null" : "");
    }
    const bool columns_right = (columns.size() == 2 || has_deadline_column()) && columns[0].name == "key" && columns[0].type == "bytea" &&
                               columns[1].name == "value" && columns[1].type == "bytea" && columns[1].not_null;
    if (columns_right && !key_is_primary_key) s += "; no primary key on key";
    return s;
  }
};

// The shape of the table `quoted` (quoted by PQescapeIdentifier, resolved on
// the connection's search_path). On failure *why says why (map it with
// to_error).
inline result<table_shape> read_table_shape(connection& c, const std::string& quoted,
                                            connection::clock::time_point deadline, failure* why) {
  table_shape shape;
  auto exists = c.exec_params(exists_sql, {quoted}, deadline, why);
  if (!exists) return std::move(exists).error();
  shape.exists = std::string_view(PQgetvalue(exists->get(), 0, 0)) == "t";
  if (!shape.exists) return shape;
  auto cols = c.exec_params(columns_sql, {quoted}, deadline, why);
  if (!cols) return std::move(cols).error();
  for (int i = 0; i < PQntuples(cols->get()); ++i)
    shape.columns.push_back({PQgetvalue(cols->get(), i, 0), PQgetvalue(cols->get(), i, 1),
                             std::string_view(PQgetvalue(cols->get(), i, 2)) == "t"});
  auto pk = c.exec_params(primary_key_sql, {quoted}, deadline, why);
  if (!pk) return std::move(pk).error();
  shape.key_is_primary_key = std::string_view(PQgetvalue(pk->get(), 0, 0)) == "1";
  return shape;
}

// Creates the table `quoted` when it is missing and checks its shape:
// invalid_argument (naming its columns) for another shape, nothing altered.
// *expiring: whether it has the deadline column.
// Two processes creating it at once is fine (the loser's catalog conflict is
// ignored and the table checked).
inline result<void> ensure_table(connection& c, const std::string& quoted, connection::clock::time_point deadline,
                                 bool* expiring = nullptr) {
  failure why;
  auto exists = c.exec_params(exists_sql, {quoted}, deadline, &why);
  if (!exists) return to_error(why, step::read, "open");
  if (std::string_view(PQgetvalue(exists->get(), 0, 0)) != "t") {
    failure create_why;
    auto created = c.exec(create_table_sql(quoted), deadline, &create_why);
    if (!created && create_why.sqlstate != "23505" && create_why.sqlstate != "42P07" &&
        create_why.sqlstate != "42710")  // another client's table (its row type) came first
      return to_error(create_why, step::commits_write, "create table " + quoted);
  }
  auto shape = read_table_shape(c, quoted, deadline, &why);
  if (!shape) return to_error(why, step::read, "open");
  if (!shape->is_keel_table())
    return keel::error(errc::invalid_argument,
                       "postgres: table " + quoted + " exists with columns (" + shape->describe() +
                           "); keel needs (key bytea primary key, value bytea not null). Nothing was altered: "
                           "choose another postgres_options::table, or move that table away");
  if (expiring) *expiring = shape->has_deadline_column();
  return {};
}

}  // namespace keel::detail::pg
