// keel: PostgresPolicy's expiry (issue 29): the definitions of the members
// policy.hpp declares under "expiry". Reached through <keel/postgres.hpp>;
// needs libpq. docs/expiry.md, "## PostgreSQL", has the reasoning.
//
// The server's clock decides. A put with a ttl stores the deadline
// date_trunc('milliseconds', statement_timestamp()) + ttl: the start of the
// statement that writes it, by the server's clock (every ttl of a batch or a
// transaction's commit is one statement: one reading). Reads leave out rows
// whose deadline is at or before now(): in an autocommit statement its start,
// in a snapshot, cursor or transaction (one SQL transaction) the start of
// that transaction, so a view reads expiry as of the moment it was taken.
// The client's clock is never read: processes on many machines agree.
//
// Pay only when used. Deadlines live in a nullable column, expires_at
// timestamptz, with a partial index (WHERE expires_at IS NOT NULL) for the
// sweep, both added by the first put with a ttl (ALTER TABLE ... ADD COLUMN,
// metadata only; CREATE INDEX). Until then the table and the statements are
// today's: the plain statements only carry a guard that the planner folds
// away and that fails once another process added the column
// (statements.hpp); this process then switches to the statements with
// deadlines (x_*) and runs the operation again (gained_deadlines). A
// snapshot, cursor or transaction begun on a table without the column takes
// the table's lock at its start (view_guard_sql), so the column cannot
// appear under it.
//
// Keyspaces other than "": their table T_ks (statements.hpp) gets its own
// deadline column and index the same way, on the first ttl put in any of
// them (enable_expiry(true)); this process tracks it apart
// (keyspaces_expiring: known from the catalog when it first looks at the
// side tables, from a guard's failure, or at compact()). Views lock T_ks at
// their start when the side tables are known, else at their first keyspace
// read (resolve_keyspaces_shape).
//
// Reclamation: a background thread per store (once either table has the column;
// postgres_options::expiry_interval) and compact() delete expired rows in
// rounds of sweep_round (x_sweep, x_ks_sweep); VACUUM makes their space reusable.
//
// Transactions (SERIALIZABLE): expiry is no write, so the server's
// serializable validation cannot see it; at commit, before its writes, keel
// reads the keys and ranges the transaction read once more inside it: a row
// of its snapshot whose deadline lies after the transaction's start (now())
// and at or before the commit's statement time is errc::conflict.
//
// Thread safety: as PostgresPolicy.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "../expiry.hpp"
#include "policy.hpp"

namespace keel {

namespace detail::pg {
// The first ttl put's schema change, inside the caller's transaction. It
// waits at most `lock_wait` for the table's lock (held by every live
// snapshot, cursor and transaction on it): then 55P03, nothing changed.
inline std::string enable_expiry_sql(const std::string& table, const std::string& index,
                                     std::chrono::milliseconds lock_wait) {
  const std::string d(deadline_column);
  return "SET LOCAL lock_timeout = " + std::to_string(lock_wait.count()) + "; ALTER TABLE " + table +
         " ADD COLUMN IF NOT EXISTS " + d + " timestamptz; CREATE INDEX IF NOT EXISTS " + index + " ON " + table +
         " (" + d + ") WHERE " + d + " IS NOT NULL; SET LOCAL lock_timeout = DEFAULT";
}
inline constexpr int sweep_round = 10000;  // rows per sweep statement
}  // namespace detail::pg

struct PostgresPolicy::sweeper_state {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;
};

inline PostgresPolicy::stmt PostgresPolicy::with_deadlines(stmt s) {
  switch (s) {
    case stmt::get: return stmt::x_get;
    case stmt::contains: return stmt::x_contains;
    case stmt::scan_forward: return stmt::x_scan_forward;
    case stmt::scan_forward_open: return stmt::x_scan_forward_open;
    case stmt::scan_reverse: return stmt::x_scan_reverse;
    case stmt::scan_reverse_open: return stmt::x_scan_reverse_open;
    case stmt::multi_get: return stmt::x_multi_get;
    case stmt::ks_get: return stmt::x_ks_get;
    case stmt::ks_contains: return stmt::x_ks_contains;
    case stmt::ks_scan_forward: return stmt::x_ks_scan_forward;
    case stmt::ks_scan_forward_open: return stmt::x_ks_scan_forward_open;
    case stmt::ks_scan_reverse: return stmt::x_ks_scan_reverse;
    case stmt::ks_scan_reverse_open: return stmt::x_ks_scan_reverse_open;
    case stmt::ks_multi_get: return stmt::x_ks_multi_get;
    default: return s;  // erases (the same on both shapes) and the list's statements
  }
}

inline bool PostgresPolicy::in_keyspaces(stmt s) {
  switch (s) {
    case stmt::ks_get:
    case stmt::ks_contains:
    case stmt::ks_scan_forward:
    case stmt::ks_scan_forward_open:
    case stmt::ks_scan_reverse:
    case stmt::ks_scan_reverse_open:
    case stmt::ks_multi_get: return true;
    default: return false;
  }
}

// An autocommit read: the statement of its table's shape, again with the
// other shape when the table gained its deadline column meanwhile.
inline result<PostgresPolicy::result_ptr> PostgresPolicy::run_read(detail::pg::connection& c, stmt s,
                                                                   std::span<const param> params,
                                                                   std::string_view what) const {
  const bool keyspaces = in_keyspaces(s);
  const bool on = keyspaces ? keyspaces_expiring() : expiring();
  auto r = run(c, on ? with_deadlines(s) : s, params, step::read, what);
  if (r || on || !gained_deadlines(c, r.error(), keyspaces)) return r;
  return run(c, with_deadlines(s), params, step::read, what);
}

inline result<std::shared_ptr<PostgresPolicy::view_state>> PostgresPolicy::open_view(bool for_transaction,
                                                                                     std::string_view what) const {
  for (int attempt = 0;; ++attempt) {
    auto lease = pool_->acquire();
    if (!lease) {
      if (lease.error() == errc::closed) return closed_error();
      return std::move(lease).error();
    }
    // SERIALIZABLE is refused on a hot standby: there a transaction reads
    // at REPEATABLE READ and its writes fail with read_only.
    const char* begin = !for_transaction             ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                        : (*lease)->in_hot_standby() ? "BEGIN ISOLATION LEVEL REPEATABLE READ; "
                                                     : "BEGIN ISOLATION LEVEL SERIALIZABLE; ";
    // Then the snapshot; on a table without deadlines, also its lock and a
    // check that it still has none (view_guard_sql); the same for T_ks when
    // this process knows it exists (else resolve_keyspaces_shape, later).
    const bool on = expiring();
    const int keyspaces_shape = keyspaces_expiring() ? 2 : side_tables_.load(std::memory_order_acquire) ? 1 : 0;
    std::string sql = begin + (on ? std::string("SELECT 1") : view_guard_sql(quoted_));
    if (keyspaces_shape == 1) sql += "; " + view_guard_sql(quoted_keys_);
    auto r = exec(**lease, sql, step::read, what);
    if (!r) {
      if (attempt == 0 && r.error() == errc::unavailable && (*lease)->broken()) continue;
      roll_back(**lease);
      if (attempt < 2 && ((!on && gained_deadlines(**lease, r.error())) ||
                          (keyspaces_shape == 1 && gained_deadlines(**lease, r.error(), true))))
        continue;
      return std::move(r).error();
    }
    auto v = std::make_shared<view_state>();
    v->conn = std::move(*lease);
    v->timeout = opts_.operation_timeout;
    v->expiring = on;
    v->keyspaces_shape = keyspaces_shape;
    std::lock_guard lock(views_mutex_);
    if (!is_open()) {
      v->conn.drop();
      return closed_error();
    }
    if (views_.size() >= prune_views_at_) {
      std::erase_if(views_, [](const std::weak_ptr<view_state>& w) { return w.expired(); });
      prune_views_at_ = std::max<std::size_t>(64, 2 * views_.size());
    }
    views_.push_back(v);
    return v;
  }
}

inline result<PostgresPolicy::result_ptr> PostgresPolicy::view_run(view_state& v, stmt s,
                                                                   std::span<const param> params,
                                                                   std::string_view what) const {
  if (!is_open()) return closed_error();
  std::lock_guard lock(v.mutex);
  if (!v.conn) return closed_error();
  if (v.failed) return *v.failed;
  const bool keyspaces = in_keyspaces(s);
  if (keyspaces && v.keyspaces_shape == 0)
    if (auto known = resolve_keyspaces_shape(v); !known) return std::move(known).error();
  const bool on = keyspaces ? v.keyspaces_shape == 2 : v.expiring;
  auto r = run(*v.conn, on ? with_deadlines(s) : s, params, step::read, what);
  if (!r && (v.conn->broken() || PQtransactionStatus(v.conn->raw()) != PQTRANS_INTRANS)) v.failed = r.error();
  return r;
}

// A view begun before this process knew T_ks: its guard, now, in a
// savepoint. It passes: T_ks has no deadlines and is locked from here on.
// It fails with 42702: T_ks has the column (added before or after the
// view's snapshot: rows of the snapshot from before have none), read with
// deadlines. Called with v.mutex held.
inline result<void> PostgresPolicy::resolve_keyspaces_shape(view_state& v) const {
  detail::pg::failure why;
  if (v.conn->exec("SAVEPOINT keel_keyspaces; " + view_guard_sql(quoted_keys_) + "; RELEASE SAVEPOINT keel_keyspaces",
                   deadline(), &why)) {
    v.keyspaces_shape = 1;
    return {};
  }
  detail::pg::failure back_why;
  if (why.sqlstate == "42702" && !v.conn->broken() &&
      v.conn->exec("ROLLBACK TO SAVEPOINT keel_keyspaces; RELEASE SAVEPOINT keel_keyspaces", deadline(), &back_why)) {
    v.keyspaces_shape = 2;
    mark_keyspaces_expiring();
    return {};
  }
  v.failed = detail::pg::to_error(why, step::read, "keyspace read");
  return *v.failed;
}

// Takes the table's lock (ACCESS SHARE, as any read) and fails (42702) when
// it has the deadline column: run inside a view's transaction.
inline std::string PostgresPolicy::view_guard_sql(const std::string& table) const {
  const std::string d(detail::pg::deadline_column);
  return "SELECT 1 FROM " + table + ", (SELECT NULL::timestamptz AS " + d + ") keel_guard WHERE false AND " + d +
         " IS NULL";
}

inline bool PostgresPolicy::gained_deadlines(detail::pg::connection& c, const keel::error& e, bool keyspaces) const {
  if (keyspaces ? keyspaces_expiring() : expiring()) return true;
  // The guards fail with 42702 / 42601, which are io_error; anything else
  // (a lost connection, a conflict) is not a change of the table.
  if (e != errc::io_error || c.broken() || PQtransactionStatus(c.raw()) != PQTRANS_IDLE) return false;
  detail::pg::failure why;
  auto r = c.exec_params("SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = '" +
                             std::string(detail::pg::deadline_column) + "' AND NOT attisdropped",
                         {keyspaces ? quoted_keys_ : quoted_}, deadline(), &why);
  if (!r || std::string_view(PQgetvalue(r->get(), 0, 0)) != "1") return false;
  if (keyspaces)
    mark_keyspaces_expiring();
  else
    mark_expiring();
  return true;
}

inline void PostgresPolicy::mark_expiring() const {
  if (!expiring_.exchange(true, std::memory_order_acq_rel)) start_sweeper();
}

inline void PostgresPolicy::mark_keyspaces_expiring() const {
  if (!keyspaces_expiring_.exchange(true, std::memory_order_acq_rel)) start_sweeper();
}

// The background sweep: one thread per store, once either table has deadlines.
inline void PostgresPolicy::start_sweeper() const {
  if (opts_.expiry_interval.count() <= 0 || !is_open()) return;
  auto state = std::make_shared<sweeper_state>();
  std::weak_ptr<const PostgresPolicy> weak = weak_from_this();
  const auto interval = opts_.expiry_interval;
  std::lock_guard lock(sweeper_mutex_);
  if (sweeper_ || !is_open()) return;
  state->thread = std::thread([state, weak, interval] {
    std::unique_lock guard(state->mutex);
    while (!state->wake.wait_for(guard, interval, [&] { return state->stop; })) {
      guard.unlock();
      if (auto self = weak.lock()) (void)self->sweep();  // errors: again next interval
      guard.lock();
    }
  });
  sweeper_ = std::move(state);
}

inline void PostgresPolicy::stop_sweeper() const {
  std::shared_ptr<sweeper_state> state;
  {
    std::lock_guard lock(sweeper_mutex_);
    state = std::move(sweeper_);
  }
  if (!state) return;
  {
    std::lock_guard guard(state->mutex);
    state->stop = true;
  }
  state->wake.notify_all();
  // The last owner may let go inside the thread's sweep: then it ends alone.
  if (state->thread.get_id() == std::this_thread::get_id())
    state->thread.detach();
  else
    state->thread.join();
}

inline result<void> PostgresPolicy::sweep(bool look) const {
  if (!is_open()) return closed_error();
  if (look && !keyspaces_expiring()) {  // another process may have given T_ks deadlines
    auto seen = pooled<bool>(step::read, "sweep", [&](detail::pg::connection& c) -> result<bool> {
      detail::pg::failure why;
      auto r = c.exec_params(detail::pg::keyspace_tables_sql, {quoted_list_, quoted_keys_}, deadline(), &why);
      if (!r) return detail::pg::to_error(why, step::read, "sweep");
      return std::string_view(PQgetvalue(r->get(), 0, 0)) == "t" && std::string_view(PQgetvalue(r->get(), 0, 2)) == "t";
    });
    if (!seen) return std::move(seen).error();
    if (*seen) mark_keyspaces_expiring();
  }
  std::string limit;
  detail::pg::put_be32(limit, static_cast<std::uint32_t>(detail::pg::sweep_round));
  const param p[] = {limit};
  for (const stmt s : {stmt::x_sweep, stmt::x_ks_sweep}) {
    if (!(s == stmt::x_sweep ? expiring() : keyspaces_expiring())) continue;
    for (;;) {
      auto r = pooled<result_ptr>(step::commits_write, "sweep", [&](detail::pg::connection& c) {
        return run(c, s, p, step::commits_write, "sweep");
      });
      if (!r) return std::move(r).error();
      if (!is_open()) return {};
      if (std::atoi(PQcmdTuples(r->get())) < detail::pg::sweep_round) break;
    }
  }
  return {};
}

// T (or T_ks, when `keyspaces`: the first ttl put in a keyspace but "")
// gets its deadline column. T_ks missing: nothing to do (the write that
// asked then finds its keyspace missing: not_found).
inline result<void> PostgresPolicy::enable_expiry(bool keyspaces) {
  if (keyspaces ? keyspaces_expiring() : expiring()) return {};
  const auto lock_wait = std::min<std::chrono::milliseconds>(opts_.operation_timeout, std::chrono::seconds(2));
  const std::string& table = keyspaces ? quoted_keys_ : quoted_;
  const std::string& index = keyspaces ? quoted_keyspaces_deadline_index_ : quoted_deadline_index_;
  return pooled<void>(step::commits_write, "first ttl put", [&](detail::pg::connection& c) -> result<void> {
    if (keyspaces) {
      auto exist = side_tables_exist(c);
      if (!exist) return std::move(exist).error();
      if (!*exist || keyspaces_expiring()) return {};
    }
    detail::pg::failure why;
    auto r = c.exec("BEGIN; " + detail::pg::enable_expiry_sql(table, index, lock_wait) + "; COMMIT", deadline(), &why);
    if (r) {
      if (keyspaces)
        mark_keyspaces_expiring();
      else
        mark_expiring();
      return {};
    }
    roll_back(c);
    if (gained_deadlines(c, keel::error(errc::io_error, ""), keyspaces)) return {};  // another process did it meanwhile
    if (why.sqlstate == "55P03")
      return keel::error(errc::unavailable,
                         "postgres: the first put with a ttl adds the column expires_at to table " + table +
                             " (ALTER TABLE), which waits for every open transaction on it (snapshots, cursors, "
                             "transactions, in any process); it waited " + std::to_string(lock_wait.count()) +
                             " ms; nothing was written: try again when they have ended");
    return detail::pg::to_error(why, step::in_transaction, "first put with a ttl (ALTER TABLE " + table + ")");
  });
}

inline result<void> PostgresPolicy::put(std::string_view key, std::string_view value, const put_options& o) {
  if (!is_open()) return closed_error();
  if (auto bad = too_large(key, value)) return *bad;
  if (o.ttl) {
    if (auto bad = ttl_error(*o.ttl)) return *bad;
    if (auto e = enable_expiry(); !e) return e;
  }
  std::string ttl;
  detail::pg::put_be64(ttl, static_cast<std::uint64_t>(o.ttl ? o.ttl->count() : 0));
  const param plain[] = {key, value};
  const param with_ttl[] = {key, value, ttl};
  return pooled<void>(step::commits_write, "put", [&](detail::pg::connection& c) -> result<void> {
    if (!expiring()) {
      auto r = run(c, stmt::put, plain, step::commits_write, "put");
      if (r) return {};
      if (!gained_deadlines(c, r.error())) return std::move(r).error();
    }
    auto r = run(c, stmt::x_put, with_ttl, step::commits_write, "put");
    if (!r) return std::move(r).error();
    return {};
  });
}

// Export and copy ask expiry(key) of every key only when this says yes
// (store.hpp, may_hold_deadlines): the column of T or T_ks, known or in the catalog.
inline result<bool> PostgresPolicy::may_hold_deadlines() const {
  if (!is_open()) return closed_error();
  if (expiring() || keyspaces_expiring()) return true;
  return pooled<bool>(step::read, "may_hold_deadlines", [&](detail::pg::connection& c) -> result<bool> {
    detail::pg::failure why;
    auto r = c.exec_params("SELECT count(*) FROM pg_attribute WHERE attrelid IN (to_regclass($1), to_regclass($2)) "
                           "AND attname = '" + std::string(detail::pg::deadline_column) + "' AND NOT attisdropped",
                           {quoted_, quoted_keys_}, deadline(), &why);
    if (!r) return true;  // cannot tell: every key is asked (its own errors then show)
    return std::string_view(PQgetvalue(r->get(), 0, 0)) != "0";
  });
}

inline result<key_expiry> PostgresPolicy::expiry(std::string_view key) const {
  if (!is_open()) return closed_error();
  const param p[] = {key};
  return pooled<key_expiry>(step::read, "expiry", [&](detail::pg::connection& c) -> result<key_expiry> {
    if (!expiring()) {
      auto r = run(c, stmt::contains, p, step::read, "expiry");
      if (r) return key_expiry{PQntuples(r->get()) > 0, std::nullopt};
      if (!gained_deadlines(c, r.error())) return std::move(r).error();
    }
    auto r = run(c, stmt::x_expiry, p, step::read, "expiry");
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return key_expiry{};
    if (PQgetisnull(r->get(), 0, 0)) return key_expiry{true, std::nullopt};
    return key_expiry{true, static_cast<deadline_ms>(detail::pg::get_be64(PQgetvalue(r->get(), 0, 0)))};
  });
}

inline result<void> PostgresPolicy::put(const keyspace_type& ks, std::string_view key, std::string_view value,
                                        const put_options& o) {
  if (ks.id == 0) return put(key, value, o);
  if (!is_open()) return closed_error();
  if (auto bad = too_large(key, value)) return *bad;
  if (o.ttl) {
    if (auto bad = ttl_error(*o.ttl)) return *bad;
    if (auto e = enable_expiry(true); !e) return e;
  }
  const std::string id = id_bytes(ks);
  std::string ttl;
  detail::pg::put_be64(ttl, static_cast<std::uint64_t>(o.ttl ? o.ttl->count() : 0));
  const param plain[] = {id, key, value};
  const param with_ttl[] = {id, key, value, ttl};
  return pooled<void>(step::commits_write, "put", [&](detail::pg::connection& c) -> result<void> {
    if (!keyspaces_expiring()) {
      auto r = run(c, stmt::ks_put, plain, step::commits_write, "put");
      if (r) return {};
      if (!gained_deadlines(c, r.error(), true)) return std::move(r).error();
    }
    auto r = run(c, stmt::x_ks_put, with_ttl, step::commits_write, "put");
    if (!r) return std::move(r).error();
    return {};
  });
}

inline result<key_expiry> PostgresPolicy::expiry(const keyspace_type& ks, std::string_view key) const {
  if (ks.id == 0) return expiry(key);
  if (!is_open()) return closed_error();
  const std::string id = id_bytes(ks);
  const param p[] = {id, key};
  return pooled<key_expiry>(step::read, "expiry", [&](detail::pg::connection& c) -> result<key_expiry> {
    if (!keyspaces_expiring()) {
      auto r = run(c, stmt::ks_contains, p, step::read, "expiry");
      if (r) {
        if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
        return key_expiry{*PQgetvalue(r->get(), 0, 0) != 0, std::nullopt};
      }
      if (!gained_deadlines(c, r.error(), true)) return std::move(r).error();
    }
    auto r = run(c, stmt::x_ks_expiry, p, step::read, "expiry");
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
    if (*PQgetvalue(r->get(), 0, 0) == 0) return key_expiry{};
    if (PQgetisnull(r->get(), 0, 1)) return key_expiry{true, std::nullopt};
    return key_expiry{true, static_cast<deadline_ms>(detail::pg::get_be64(PQgetvalue(r->get(), 0, 1)))};
  });
}

// At commit, before the writes, per table (T, then T_ks): a table without
// deadlines when the transaction began (its lock kept it so) needs no check,
// and its first ttl put adds the column here, in the transaction (the column
// and the puts commit together); on a table with deadlines, a key read or a
// range scanned that expired since the transaction began is a conflict.
inline result<void> PostgresPolicy::commit_expiry_checks(detail::pg::connection& c, view_state& v,
                                                         const detail::pg::batch_plan& plan,
                                                         const tx_record& tx) const {
  const auto lock_wait = std::min<std::chrono::milliseconds>(opts_.operation_timeout, std::chrono::seconds(2));
  auto add_column = [&](const std::string& table, const std::string& index) -> result<void> {
    auto r = exec(c, detail::pg::enable_expiry_sql(table, index, lock_wait), step::in_transaction,
                  "commit (first put with a ttl: ALTER TABLE)");
    if (r) return {};
    if (r.error() == errc::io_error || r.error() == errc::unavailable)  // 55P03: the lock was busy
      return keel::error(errc::conflict, r.error().message() + "; the transaction adds the column expires_at to " +
                                             table + " for its first ttl put and waited for the table's lock: "
                                             "run it again");
    return std::move(r).error();
  };
  auto found = [&](result<result_ptr> r) -> result<void> {
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return {};
    return keel::error(errc::conflict, "postgres: commit: a key the transaction read expired (by the server's clock) "
                                       "after it began; nothing was written: run it again");
  };
  if (!v.expiring) {
    if (plan.has_ttl()) {
      if (auto e = add_column(quoted_, quoted_deadline_index_); !e) return e;
      v.expiring = true;
    }
  } else {
    if (!tx.read_keys.empty()) {
      const std::string keys = detail::pg::encode_bytea_array(tx.read_keys);
      const param p[] = {keys};
      if (auto e = found(run(c, stmt::x_expired_keys, p, step::in_transaction, "commit")); !e) return e;
    }
    for (const auto& range : tx.read_ranges) {
      const std::string lo = range.lower().value_or(std::string());
      if (range.upper()) {
        const param p[] = {lo, *range.upper()};
        if (auto e = found(run(c, stmt::x_expired_between, p, step::in_transaction, "commit")); !e) return e;
      } else {
        const param p[] = {lo};
        if (auto e = found(run(c, stmt::x_expired_from, p, step::in_transaction, "commit")); !e) return e;
      }
    }
  }
  if (plan.keyspaces.empty() && tx.keyspace_reads.empty()) return {};
  if (v.keyspaces_shape == 0) {  // nothing read in keyspaces; it writes there
    auto exist = side_tables_exist(c);
    if (!exist) return std::move(exist).error();
    if (!*exist) return {};  // apply_batch names the keyspace missing
    if (auto known = resolve_keyspaces_shape(v); !known) return known;
  }
  if (v.keyspaces_shape == 1) {
    if (plan.has_keyspace_ttl()) {
      if (auto e = add_column(quoted_keys_, quoted_keyspaces_deadline_index_); !e) return e;
      v.keyspaces_shape = 2;
    }
    return {};
  }
  for (const auto& reads : tx.keyspace_reads) {
    const std::string_view name = reads.keyspace;
    if (!reads.read_keys.empty()) {
      const std::string keys = detail::pg::encode_bytea_array(reads.read_keys);
      const param p[] = {name, keys};
      if (auto e = found(run(c, stmt::x_ks_expired_keys, p, step::in_transaction, "commit")); !e) return e;
    }
    for (const auto& range : reads.read_ranges) {
      const std::string lo = range.lower().value_or(std::string());
      if (range.upper()) {
        const param p[] = {name, lo, *range.upper()};
        if (auto e = found(run(c, stmt::x_ks_expired_between, p, step::in_transaction, "commit")); !e) return e;
      } else {
        const param p[] = {name, lo};
        if (auto e = found(run(c, stmt::x_ks_expired_from, p, step::in_transaction, "commit")); !e) return e;
      }
    }
  }
  return {};
}

static_assert(expiry_policy<PostgresPolicy>);

}  // namespace keel
