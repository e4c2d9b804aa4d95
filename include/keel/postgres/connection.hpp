// keel::detail::pg: one libpq connection and the pool that lends them. One
// job: talking to the server with a deadline, and keeping connections
// healthy (a connection that failed is never reused).
//
// Thread safety: a connection is used by one thread at a time (whoever holds
// its lease); the pool may be called from many threads at once.
#pragma once

#include <libpq-fe.h>

#if defined(_WIN32)
#include "../detail/windows.hpp"  // first: <winsock2.h> then sees <windows.h> without min/max
#include <winsock2.h>
#else
#include <poll.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "errors.hpp"
#include "statements.hpp"

namespace keel::detail::pg {

// Waits until the socket is readable: > 0 readable, 0 timed out, < 0 error.
inline int wait_readable(int socket, int timeout_ms) {
#if defined(_WIN32)
  WSAPOLLFD p{static_cast<SOCKET>(socket), POLLRDNORM, 0};
  return ::WSAPoll(&p, 1, timeout_ms);
#else
  pollfd p{socket, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms);
#endif
}

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

// A statement parameter: bytes sent in binary format.
struct param {
  const char* data;
  int size;
  param(std::string_view v) : data(v.data()), size(static_cast<int>(v.size())) {}  // NOLINT: implicit on purpose
  param(const std::string& v) : param(std::string_view(v)) {}                     // NOLINT: implicit on purpose
};

// libpq's message on one line: without its trailing newline, its inner line
// breaks (and the tab that indents a hint) as spaces.
inline std::string trimmed(const char* message) {
  std::string m = message ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  std::string out;
  out.reserve(m.size());
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') {
      out += ' ';
      while (i + 1 < m.size() && (m[i + 1] == '\t' || m[i + 1] == ' ')) ++i;
    } else {
      out += m[i];
    }
  }
  return out;
}

// The hosts a conninfo names ("host=a,b port=5432"), for messages.
inline std::string describe_hosts(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err) PQfreemem(err);
  if (!opts) return "(unparsable conninfo)";
  std::string host, port;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string_view(o->keyword) == "host" || (std::string_view(o->keyword) == "hostaddr" && host.empty()))
      host = o->val;
    if (std::string_view(o->keyword) == "port") port = o->val;
  }
  PQconninfoFree(opts);
  if (host.empty()) host = "the default socket";
  return "host=" + host + (port.empty() ? "" : " port=" + port);
}

// Why libpq cannot parse `conninfo` (its message), or nullopt when it can.
inline std::optional<std::string> conninfo_parse_error(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &err);
  std::string message = trimmed(err);
  if (err) PQfreemem(err);
  if (parsed) {
    PQconninfoFree(parsed);
    return std::nullopt;
  }
  return message.empty() ? std::string("cannot parse it") : message;
}

// One connection to the server, with the store's statements prepared on it
// as they are first used.
class connection {
 public:
  using clock = std::chrono::steady_clock;

  // Connects (libpq's own failover over several hosts). errc::unavailable
  // naming the hosts and libpq's message when no host accepts.
  static result<std::unique_ptr<connection>> open(const std::string& conninfo,
                                                  std::chrono::milliseconds connect_timeout) {
    const std::string seconds = std::to_string(std::max<long long>(2, (connect_timeout.count() + 999) / 1000));
    // The conninfo comes last: what it sets wins over keel's defaults.
    const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {seconds.c_str(), "keel", conninfo.c_str(), nullptr};
    PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (c == nullptr) return keel::error(errc::unavailable, "postgres: cannot connect: out of memory in libpq");
    if (PQstatus(c) != CONNECTION_OK) {
      std::string m = trimmed(PQerrorMessage(c));
      PQfinish(c);
      return keel::error(errc::unavailable, "postgres: cannot connect to " + describe_hosts(conninfo) + ": " + m);
    }
    // Notices (and the server's goodbye on a terminated connection) are not
    // printed: keel reports what matters through its errors.
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
    return std::unique_ptr<connection>(new connection(c));
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    if (conn_) PQfinish(conn_);
  }

  PGconn* raw() const noexcept { return conn_; }
  // When the connection went back to the pool, and the pool's count of lost
  // connections then (see pool::acquire).
  clock::time_point idle_since{};
  std::uint64_t losses_seen = 0;
  // A connection that failed (lost, timed out, desynchronised) is never used again.
  bool broken() const noexcept { return broken_ || PQstatus(conn_) != CONNECTION_OK; }
  void mark_broken() noexcept { broken_ = true; }
  // Whether the server is a hot standby (reported by the server, PostgreSQL 14+;
  // older servers: asked once).
  bool in_hot_standby() {
    const char* v = PQparameterStatus(conn_, "in_hot_standby");
    if (v) return std::string_view(v) == "on";
    if (!standby_checked_) {
      standby_checked_ = true;
      result_ptr r(PQexec(conn_, "SELECT pg_is_in_recovery()"));
      standby_ = r && PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1 &&
                 std::string_view(PQgetvalue(r.get(), 0, 0)) == "t";
    }
    return standby_;
  }
  // Whether the server closed the connection while it sat idle (a restart, a
  // failover, an administrator's pg_terminate_backend): checked without
  // blocking before a pooled connection is lent again.
  bool closed_by_server() {
    if (broken()) return true;
    if (wait_readable(PQsocket(conn_), 0) <= 0) return false;  // nothing arrived: healthy
    if (!PQconsumeInput(conn_)) return true;       // EOF or error
    while (PGnotify* n = PQnotifies(conn_)) PQfreemem(n);
    return PQstatus(conn_) != CONNECTION_OK || PQisBusy(conn_);
  }

  // Runs a prepared statement of `stmts` with binary parameters and binary
  // results, waiting at most until `deadline`.
  result<result_ptr> run(const std::array<statement_text, statement_count>& stmts, stmt s,
                         std::span<const param> params, clock::time_point deadline, failure* why) {
    const auto i = static_cast<std::size_t>(s);
    if (!prepared_[i]) {
      if (!PQsendPrepare(conn_, statement_name(s), stmts[i].sql.c_str(), static_cast<int>(stmts[i].types.size()),
                         stmts[i].types.data()))
        return fail_unsent(why);
      auto r = wait(deadline, why, /*sent=*/false);
      if (!r) return std::move(r).error();
      prepared_[i] = true;
    }
    std::array<const char*, 4> values{};
    std::array<int, 4> lengths{}, formats{};
    for (std::size_t k = 0; k < params.size() && k < values.size(); ++k) {
      values[k] = params[k].data;
      lengths[k] = params[k].size;
      formats[k] = 1;
    }
    if (!PQsendQueryPrepared(conn_, statement_name(s), static_cast<int>(params.size()), values.data(), lengths.data(),
                             formats.data(), /*resultFormat=*/1))
      return fail_unsent(why);
    return wait(deadline, why, /*sent=*/true);
  }

  // Runs SQL text (no parameters, text results): BEGIN, COMMIT, ROLLBACK, the schema.
  result<result_ptr> exec(const std::string& sql, clock::time_point deadline, failure* why) {
    if (!PQsendQuery(conn_, sql.c_str())) return fail_unsent(why);
    return wait(deadline, why, /*sent=*/true);
  }
  // SQL text with text parameters and text results.
  result<result_ptr> exec_params(const std::string& sql, const std::vector<std::string>& args,
                                 clock::time_point deadline, failure* why) {
    std::vector<const char*> values;
    for (const auto& a : args) values.push_back(a.c_str());
    if (!PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                           nullptr, 0))
      return fail_unsent(why);
    return wait(deadline, why, /*sent=*/true);
  }

  // PQescapeIdentifier: the name quoted as an SQL identifier.
  std::string quote_identifier(std::string_view name) const {
    char* q = PQescapeIdentifier(conn_, name.data(), name.size());
    if (!q) return {};
    std::string out(q);
    PQfreemem(q);
    return out;
  }

 private:
  explicit connection(PGconn* c) : conn_(c) {}

  // Failed before anything reached the server.
  result<result_ptr> fail_unsent(failure* why) {
    why->sent = false;
    why->connection_lost = true;
    why->message = trimmed(PQerrorMessage(conn_));
    mark_broken();
    return keel::error(errc::unavailable, why->message);
  }

  // Waits for the statement's result (and the end of its results). The
  // error returned is a placeholder: callers map *why with to_error().
  result<result_ptr> wait(clock::time_point deadline, failure* why, bool sent) {
    why->sent = sent;
    result_ptr first;  // the first error, else the last result
    bool lost = false;
    for (;;) {
      while (PQisBusy(conn_)) {  // wait for the next result without blocking past the deadline
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
        if (left <= 0) {
          why->connection_lost = true;
          why->message = "no answer within the operation timeout (postgres_options::operation_timeout)";
          mark_broken();
          return keel::error(errc::unavailable, why->message);
        }
        const int n = wait_readable(PQsocket(conn_), static_cast<int>(std::min<long long>(left, 1000 * 60)));
        if ((n < 0 && errno != EINTR) || (n > 0 && !PQconsumeInput(conn_))) {
          lost = true;  // PQgetResult would block on a dead socket
          break;
        }
      }
      if (lost || PQstatus(conn_) != CONNECTION_OK) {
        lost = true;
        break;
      }
      PGresult* next = PQgetResult(conn_);
      if (!next) break;
      result_ptr m(next);
      const bool first_ok = first && (PQresultStatus(first.get()) == PGRES_COMMAND_OK ||
                                      PQresultStatus(first.get()) == PGRES_TUPLES_OK);
      if (first_ok || !first) first = std::move(m);
    }
    if (lost) first.reset();
    if (first) {
      const auto st = PQresultStatus(first.get());
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return first;
      const char* state = PQresultErrorField(first.get(), PG_DIAG_SQLSTATE);
      if (state && *state) {
        why->sqlstate = state;
        why->message = trimmed(PQresultErrorMessage(first.get()));
        why->connection_lost = false;
        if (is_connection_state(why->sqlstate)) mark_broken();
        return keel::error(errc::io_error, why->message);
      }
    }
    why->connection_lost = true;
    why->message = trimmed(PQerrorMessage(conn_));
    if (why->message.empty()) why->message = "the connection to the server was lost";
    mark_broken();
    return keel::error(errc::unavailable, why->message);
  }

  PGconn* conn_;
  std::bitset<statement_count> prepared_;
  bool broken_ = false;
  bool standby_checked_ = false, standby_ = false;
};

// Lends connections: an idle one when there is one (checked for a server-side
// close first), else a new one. Returned connections are kept idle up to
// `max_idle` when they are healthy and outside any transaction; others are
// closed. After close() every connection returned is closed.
class pool : public std::enable_shared_from_this<pool> {
 public:
  pool(std::string conninfo, std::size_t max_idle, std::chrono::milliseconds connect_timeout)
      : conninfo_(std::move(conninfo)), max_idle_(max_idle), connect_timeout_(connect_timeout) {}

  // A connection lent until the lease is destroyed.
  class lease {
   public:
    lease() = default;
    lease(std::shared_ptr<pool> owner, std::unique_ptr<connection> c) : owner_(std::move(owner)), conn_(std::move(c)) {}
    lease(lease&&) noexcept = default;
    lease& operator=(lease&& other) noexcept {
      if (this != &other) {
        give_back();
        owner_ = std::move(other.owner_);
        conn_ = std::move(other.conn_);
      }
      return *this;
    }
    ~lease() { give_back(); }
    connection* operator->() const noexcept { return conn_.get(); }
    connection& operator*() const noexcept { return *conn_; }
    explicit operator bool() const noexcept { return conn_ != nullptr; }
    // Closes the connection now (close() of the store).
    void drop() noexcept {
      if (conn_) {
        owner_->dropped();
        conn_.reset();
      }
    }

   private:
    void give_back() noexcept {
      if (owner_ && conn_) owner_->release(std::move(conn_));
    }
    std::shared_ptr<pool> owner_;
    std::unique_ptr<connection> conn_;
  };

  result<lease> acquire() {
    for (;;) {
      std::unique_ptr<connection> c;
      {
        std::lock_guard lock(mutex_);
        if (closed_) return keel::error(errc::closed, "store is closed");
        if (idle_.empty()) break;
        c = std::move(idle_.back());
        idle_.pop_back();
      }
      // Checked (a non-blocking poll of its socket) when it sat idle long
      // enough for the server to have ended it unnoticed, or when another
      // connection was found lost since (a restart or failover ends them all).
      const bool suspect = connection::clock::now() - c->idle_since >= recheck_after ||
                           c->losses_seen != losses_.load(std::memory_order_relaxed);
      if (!suspect || !c->closed_by_server()) {
        in_use_.fetch_add(1);
        return lease(shared_from_this(), std::move(c));
      }
      discarded_.fetch_add(1);  // broken while idle: closed, never lent
    }
    auto c = connection::open(conninfo_, connect_timeout_);
    if (!c) return std::move(c).error();
    opened_.fetch_add(1);
    in_use_.fetch_add(1);
    return lease(shared_from_this(), std::move(*c));
  }

  void close() {
    std::vector<std::unique_ptr<connection>> gone;
    std::lock_guard lock(mutex_);
    closed_ = true;
    gone.swap(idle_);
  }

  std::size_t idle() const {
    std::lock_guard lock(mutex_);
    return idle_.size();
  }
  std::size_t in_use() const noexcept { return in_use_.load(); }
  std::uint64_t opened() const noexcept { return opened_.load(); }
  std::uint64_t discarded() const noexcept { return discarded_.load(); }

 private:
  void dropped() noexcept { in_use_.fetch_sub(1); }
  void release(std::unique_ptr<connection> c) noexcept {
    in_use_.fetch_sub(1);
    const bool healthy = !c->broken() && PQtransactionStatus(c->raw()) == PQTRANS_IDLE;
    if (!healthy) {
      discarded_.fetch_add(1);
      if (PQstatus(c->raw()) != CONNECTION_OK || c->broken()) losses_.fetch_add(1, std::memory_order_relaxed);
    }
    c->idle_since = connection::clock::now();
    c->losses_seen = losses_.load(std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    if (healthy && !closed_ && idle_.size() < max_idle_) idle_.push_back(std::move(c));
    // else: closed here (PQfinish), under the mutex: cheap, no round trip
  }

  const std::string conninfo_;
  const std::size_t max_idle_;
  const std::chrono::milliseconds connect_timeout_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<connection>> idle_;
  bool closed_ = false;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::uint64_t> opened_{0}, discarded_{0};
  std::atomic<std::uint64_t> losses_{0};  // connections found lost or broken
  // An idle connection younger than this is lent without a check: a busy
  // pool pays no system call per operation. A server that ends it in that
  // window makes the operation fail once (reads are run again on a new
  // connection) and the pool then checks every idle connection.
  static constexpr std::chrono::milliseconds recheck_after{10};
};

}  // namespace keel::detail::pg
