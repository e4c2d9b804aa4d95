// keel::detail::pg: how a PostgreSQL failure becomes a keel::error. One job:
// the mapping from SQLSTATE (and a lost connection) to errc.
//
//   40001 serialization_failure, 40P01 deadlock_detected   -> conflict
//   25006 read_only_sql_transaction (a hot standby)         -> read_only
//   53100 disk_full                                         -> no_space
//   22xxx data exceptions, 54xxx program limits (a key over
//         the B-tree's row limit, a value over bytea's)     -> invalid_argument
//   42P01 undefined_table (the table was dropped)           -> not_found
//   23503 foreign_key_violation (a write into a keyspace
//         dropped meanwhile: the only foreign key keel makes) -> not_found
//   42501 insufficient_privilege, 28xxx authorization       -> permission_denied
//         (a login refused while connecting has no SQLSTATE in libpq:
//         connection::open reports it as unavailable)
//   08xxx connection exceptions, 57P01-57P03 shutdown, 57014
//         canceled, 53xxx other resources, a lost connection
//         or a timeout                                      -> unavailable, or
//         outcome_unknown when the statement that commits a write had been
//         sent (it may or may not have been applied)
//   anything else                                           -> io_error
#pragma once

#include <string>
#include <string_view>

#include "../error.hpp"

namespace keel::detail::pg {

// What a failed statement tells: the server's SQLSTATE (empty when the
// connection was lost or timed out), its message, and whether the statement
// had been handed to the connection (sent) before it failed.
struct failure {
  std::string sqlstate;
  std::string message;
  bool sent = false;
  bool connection_lost = false;  // no answer: lost, or past the deadline
};

// Whether the statement commits a write: losing the connection after it was
// sent leaves the outcome unknown. Reads and statements inside an explicit
// transaction before COMMIT lose nothing (the server rolls back).
enum class step { read, in_transaction, commits_write };

inline bool is_connection_state(std::string_view s) {
  return s.substr(0, 2) == "08" || s == "57P01" || s == "57P02" || s == "57P03";
}

inline keel::error to_error(const failure& f, step st, std::string_view what) {
  const std::string context = "postgres: " + std::string(what) + ": ";
  const std::string& s = f.sqlstate;
  if (f.connection_lost || s.empty() || is_connection_state(s)) {
    if (st == step::commits_write && f.sent) {
      return keel::error(errc::outcome_unknown,
                         context + "the connection was lost after the write was sent; it may or may not have been "
                                   "applied (" + f.message + ")");
    }
    return keel::error(errc::unavailable, context + "the server is unavailable; nothing was applied (" + f.message + ")");
  }
  const std::string detail = f.message + " (SQLSTATE " + s + ")";
  if (s == "40001" || s == "40P01") {
    return keel::error(errc::conflict, context + "transaction conflict: the server could not serialize it with "
                                                 "concurrent transactions; nothing was written, run it again: " + detail);
  }
  if (s == "25006") {
    return keel::error(errc::read_only, context + "the server is read-only (a hot standby, or "
                                                  "default_transaction_read_only): " + detail);
  }
  if (s == "53100") return keel::error(errc::no_space, context + "the server's disk is full: " + detail);
  if (s.substr(0, 2) == "53" || s == "57014") return keel::error(errc::unavailable, context + detail);
  if (s.substr(0, 2) == "22" || s.substr(0, 2) == "54") return keel::error(errc::invalid_argument, context + detail);
  if (s == "42P01") return keel::error(errc::not_found, context + "the store's table is gone: " + detail);
  if (s == "23503")
    return keel::error(errc::not_found, context + "the keyspace was dropped; nothing was written: " + detail);
  if (s == "42501" || s.substr(0, 2) == "28") return keel::error(errc::permission_denied, context + detail);
  return keel::error(errc::io_error, context + detail);
}

}  // namespace keel::detail::pg
