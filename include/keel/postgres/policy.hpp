// keel: PostgresPolicy, the contract methods of the PostgreSQL backend
// (contract.hpp states the contract; <keel/postgres.hpp> is the front).
//
// How each operation maps onto PostgreSQL (docs/postgres.md has the details):
//   get / contains / put / erase / erase_range / multi_get
//                        one statement on a pooled connection (autocommit);
//                        multi_get is one statement over unnest($1::bytea[])
//   write(batch)         one SQL transaction: the batch reduced to its effect
//                        (last op per key wins), then its range erases, its
//                        erases (one DELETE ... = ANY), its puts (one upsert
//                        over unnest)
//   scan                 keyset pages of page_size rows (key >= / key < the
//                        last key read): a range that fits in one page is one
//                        autocommit statement; a longer one is read in a
//                        REPEATABLE READ READ ONLY transaction on a
//                        connection of its own: one snapshot, bounded client
//                        memory; the connection goes back to the pool after
//                        the last page
//   snapshot             the same transaction, held while a copy lives
//   transaction          a SERIALIZABLE transaction on a connection of its
//                        own (REPEATABLE READ on a hot standby, whose writes
//                        then fail with read_only); reads go to the server
//                        inside it, writes are buffered by keel and sent at
//                        commit, then COMMIT. SQLSTATE 40001/40P01 anywhere
//                        in it: errc::conflict
//   compact              VACUUM (ANALYZE) of the table
//   checkpoint           errc::not_supported (pg_dump, pg_basebackup)
//   keyspaces            "" is the table itself (unchanged); the others live
//                        in two side tables made on first use
//                        (statements.hpp): every operation through a handle is
//                        one statement that also checks, in the same
//                        snapshot, that the keyspace still exists; a batch
//                        or transaction spanning keyspaces is one SQL
//                        transaction that first locks the list rows of the
//                        keyspaces it names (FOR KEY SHARE: a drop waits);
//                        drop_keyspace is one DELETE of the list row (the
//                        foreign key's cascade deletes its keys)
//
// The keyspace members and how a batch is applied are defined in
// keyspaces.hpp (declared here, under "keyspaces" and "batches").
//
// Lock order: a view's mutex (one statement at a time on its connection) is
// taken with no other keel lock held; views_mutex_ and transactions_mutex_
// are leaves, held only to edit or copy their registries; the pool's mutex is
// a leaf too (taken when a lease is given back, which may happen under a
// view's mutex in close()).
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../store.hpp"
#include "batch.hpp"
#include "connection.hpp"
#include "errors.hpp"
#include "options.hpp"
#include "schema.hpp"
#include "statements.hpp"

namespace keel {

class PostgresPolicy : public std::enable_shared_from_this<PostgresPolicy> {
  using clock = std::chrono::steady_clock;
  using step = detail::pg::step;
  using stmt = detail::pg::stmt;
  using param = detail::pg::param;
  using result_ptr = detail::pg::result_ptr;

  // One connection inside one transaction that reads one snapshot: a
  // snapshot's, a cursor's or a keel transaction's. Rolled back and given
  // back to the pool when the last holder goes.
  struct view_state {
    std::mutex mutex;                   // one statement at a time; guards what follows
    detail::pg::pool::lease conn;       // empty once close() dropped it
    std::optional<keel::error> failed;  // the transaction is unusable: every later read gives this
    std::chrono::milliseconds timeout{};
    bool expiring = false;              // the table had its deadline column when it began (expiry.hpp)
    // T_ks (the other keyspaces): 0 not looked at yet, 1 without the deadline
    // column (and locked, so it stays so), 2 with it (expiry.hpp, resolve_keyspaces_shape).
    int keyspaces_shape = 0;
    ~view_state() {
      if (conn && !conn->broken() && PQtransactionStatus(conn->raw()) != PQTRANS_IDLE) {
        detail::pg::failure why;
        if (!conn->exec("ROLLBACK", clock::now() + timeout, &why)) conn->mark_broken();
      }
    }
  };

 public:
  using options = postgres_options;
  static constexpr keel::backend backend_kind = keel::backend::postgres;
  // The largest key or value PostgreSQL stores in a bytea (1 GiB less its
  // header). Keys are also limited by the primary key's B-tree to about
  // 2.7 KB (the server refuses longer ones: invalid_argument).
  static constexpr std::size_t max_bytea = detail::pg::max_bytea;

  // A handle to one keyspace: its id in the list of keyspaces (0 for the
  // default keyspace "", which is the store's table) and its name (for
  // messages). Ids are never reused: a handle to a dropped keyspace reaches
  // nothing (not_found), not a keyspace made again under that name.
  struct keyspace_type {
    std::int64_t id = 0;
    std::string name;
  };

  // ---- cursor -------------------------------------------------------------
  // Reads its range page by page in one transaction. The current page is a
  // libpq result: key() and value() are views into it. Each page asks for one
  // row more than it hands out, to know whether another page follows. A
  // store's cursor first reads one page with a single autocommit statement:
  // when the whole range fits in it (the common short scan) that is the whole
  // pass, one round trip and no transaction; otherwise the pass starts again
  // inside a REPEATABLE READ READ ONLY transaction (that first page is read
  // twice). One cursor is used by one thread at a time.
  class cursor_type {
   public:
    cursor_type(cursor_type&&) noexcept = default;
    cursor_type& operator=(cursor_type&&) noexcept = default;
    bool valid() const noexcept { return pos_ < rows_; }
    std::string_view key() const noexcept { return field(0); }
    std::string_view value() const noexcept { return field(1); }
    const std::optional<keel::error>& error() const noexcept { return error_; }
    void next() {
      if (!valid()) return;
      if (!owner_->is_open()) return fail(closed_error());
      if (++pos_ < rows_) return;
      page_.reset();
      pos_ = rows_ = 0;
      if (more_) fetch();
    }

   private:
    friend class PostgresPolicy;
    explicit cursor_type(keel::error e) : error_(std::move(e)) {}
    // `view`: the snapshot's transaction, or null for a store's cursor (which
    // opens its own when one page is not enough); `ks`: the keyspace.
    cursor_type(std::shared_ptr<const PostgresPolicy> owner, std::shared_ptr<view_state> view, const key_range& range,
                const keyspace_type* ks = nullptr)
        : owner_(std::move(owner)), view_(std::move(view)), owns_view_(!view_), reversed_(range.is_reversed()),
          range_(range), keyspace_id_(ks ? ks->id : 0), keyspace_name_(ks ? ks->name : std::string()) {
      restart();
      more_ = !range.is_empty();
      if (more_) fetch();
      if (more_ && owns_view_ && !view_) {  // one page was not the whole range: again, in one snapshot
        auto v = owner_->open_view(false, "scan");
        if (!v) {
          fail(std::move(v).error());
          return;
        }
        view_ = std::move(*v);
        page_.reset();
        pos_ = rows_ = 0;
        restart();
        fetch();
      }
    }
    void restart() {
      lo_ = range_.lower().value_or(std::string());
      hi_ = range_.upper();
    }
    std::string_view field(int column) const noexcept {
      return {PQgetvalue(page_.get(), pos_, column), static_cast<std::size_t>(PQgetlength(page_.get(), pos_, column))};
    }
    void fail(keel::error e) {
      page_.reset();
      pos_ = rows_ = 0;
      more_ = false;
      error_ = std::move(e);
      release();
    }
    // The view's connection goes back to the pool as soon as the pass no
    // longer needs it (a store cursor's own view only).
    void release() {
      if (owns_view_) view_.reset();
    }
    void fetch() {
      const std::size_t limit = owner_->opts_.page_size;
      std::string limit_bytes;
      detail::pg::put_be32(limit_bytes, static_cast<std::uint32_t>(limit + 1));
      std::string id_bytes;
      std::vector<param> params;
      if (keyspace_id_ != 0) {
        detail::pg::put_be64(id_bytes, static_cast<std::uint64_t>(keyspace_id_));
        params.emplace_back(id_bytes);
      }
      params.emplace_back(lo_);
      if (hi_) params.emplace_back(*hi_);
      params.emplace_back(limit_bytes);
      const stmt s = keyspace_id_ != 0 ? (reversed_ ? (hi_ ? stmt::ks_scan_reverse : stmt::ks_scan_reverse_open)
                                                    : (hi_ ? stmt::ks_scan_forward : stmt::ks_scan_forward_open))
                                       : (reversed_ ? (hi_ ? stmt::scan_reverse : stmt::scan_reverse_open)
                                                    : (hi_ ? stmt::scan_forward : stmt::scan_forward_open));
      auto r = view_ ? owner_->view_run(*view_, s, params, "scan") : owner_->pooled_run(s, params, "scan");
      if (!r) return fail(std::move(r).error());
      page_ = std::move(*r);
      int got = PQntuples(page_.get());
      if (keyspace_id_ != 0) {  // no row: the keyspace is gone; one row of NULLs: nothing in the range
        if (got == 0) return fail(keyspace_missing(keyspace_name_));
        if (PQgetisnull(page_.get(), 0, 0)) got = 0;
      }
      more_ = static_cast<std::size_t>(got) > limit;
      rows_ = more_ ? static_cast<int>(limit) : got;
      pos_ = 0;
      if (more_) {
        const std::string_view last(PQgetvalue(page_.get(), rows_ - 1, 0),
                                    static_cast<std::size_t>(PQgetlength(page_.get(), rows_ - 1, 0)));
        if (reversed_) {
          hi_ = std::string(last);  // exclusive
        } else {
          lo_.assign(last);
          lo_.push_back('\0');  // the next key after it
        }
      } else {
        release();
      }
    }

    std::shared_ptr<const PostgresPolicy> owner_;
    std::shared_ptr<view_state> view_;
    bool owns_view_ = false;
    bool reversed_ = false;
    bool more_ = false;
    key_range range_ = key_range::all();
    std::int64_t keyspace_id_ = 0;   // 0: the default keyspace
    std::string keyspace_name_;
    std::string lo_;                 // inclusive
    std::optional<std::string> hi_;  // exclusive; none: to the end
    result_ptr page_;
    int rows_ = 0, pos_ = 0;
    std::optional<keel::error> error_;
  };

  // ---- snapshot -----------------------------------------------------------
  // A REPEATABLE READ READ ONLY transaction on a connection of its own, held
  // while a copy lives. Copies share it; calls from several threads take
  // turns on its connection.
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->get_on(*view_, key);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->contains_on(*view_, key);
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, view_, range);
    }
    // The same in keyspace `ks`, as of the snapshot: a keyspace dropped since
    // reads on; one created since (or a handle to an older keyspace of that
    // name dropped before it) gives not_found.
    result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
      if (ks.id == 0) return get(key);
      if (!owner_->is_open()) return closed_error();
      return owner_->keyspace_get(ks, key, view_.get());
    }
    result<bool> contains(const keyspace_type& ks, std::string_view key) const {
      if (ks.id == 0) return contains(key);
      if (!owner_->is_open()) return closed_error();
      return owner_->keyspace_contains(ks, key, view_.get());
    }
    cursor_type scan(const keyspace_type& ks, const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, view_, range, &ks);
    }

   private:
    friend class PostgresPolicy;
    snapshot_type(std::shared_ptr<const PostgresPolicy> owner, std::shared_ptr<view_state> view)
        : owner_(std::move(owner)), view_(std::move(view)) {}
    std::shared_ptr<const PostgresPolicy> owner_;
    std::shared_ptr<view_state> view_;
  };

  // ---- store --------------------------------------------------------------
  // Checks the options, connects, creates the table when it is missing and
  // checks its shape when it exists. invalid_argument: bad conninfo, an
  // empty table name, a table of another shape (nothing is altered);
  // unavailable: no host accepts.
  static result<std::shared_ptr<PostgresPolicy>> open(const options& opts) {
    if (opts.conninfo.empty())
      return keel::error(errc::invalid_argument, "postgres: postgres_options::conninfo is empty (e.g. "
                                                 "\"host=db1 dbname=app\" or \"postgresql://app@db1/app\")");
    if (auto bad = detail::pg::conninfo_parse_error(opts.conninfo))
      return keel::error(errc::invalid_argument, "postgres: bad conninfo: " + *bad);
    if (opts.table.empty()) return keel::error(errc::invalid_argument, "postgres: postgres_options::table is empty");
    if (opts.page_size == 0 || opts.page_size > INT32_MAX)
      return keel::error(errc::invalid_argument, "postgres: postgres_options::page_size must be 1 to 2^31-1");
    auto pool = std::make_shared<detail::pg::pool>(opts.conninfo, opts.pool_size, opts.connect_timeout);
    auto lease = pool->acquire();
    if (!lease) return std::move(lease).error();
    const std::string quoted = (*lease)->quote_identifier(opts.table);
    if (quoted.empty())
      return keel::error(errc::invalid_argument,
                         "postgres: the table name cannot be quoted (" + detail::pg::trimmed(PQerrorMessage((*lease)->raw())) + ")");
    const std::string quoted_list =
        (*lease)->quote_identifier(detail::pg::side_table_name(opts.table, detail::pg::keyspace_list_suffix));
    const std::string quoted_keys =
        (*lease)->quote_identifier(detail::pg::side_table_name(opts.table, detail::pg::keyspace_keys_suffix));
    if (quoted_list.empty() || quoted_keys.empty())
      return keel::error(errc::invalid_argument, "postgres: the keyspace tables' names cannot be quoted (" +
                                                     detail::pg::trimmed(PQerrorMessage((*lease)->raw())) + ")");
    auto p = std::make_shared<PostgresPolicy>(opts, quoted, quoted_list, quoted_keys, pool);
    bool expiring = false;
    if (auto ok = detail::pg::ensure_table(**lease, quoted, clock::now() + opts.operation_timeout, &expiring); !ok) {
      pool->close();
      return std::move(ok).error();
    }
    p->quoted_deadline_index_ =
        (*lease)->quote_identifier(detail::pg::side_table_name(opts.table, detail::pg::deadline_index_suffix));
    p->quoted_keyspaces_deadline_index_ = (*lease)->quote_identifier(
        detail::pg::side_table_name(opts.table, detail::pg::keyspace_deadline_index_suffix));
    if (expiring) p->mark_expiring();
    return p;
  }

  // `quoted_*`: the store's table and its side tables (statements.hpp),
  // quoted by PQescapeIdentifier. Use open().
  PostgresPolicy(const options& opts, std::string quoted_table, std::string quoted_list, std::string quoted_keys,
                 std::shared_ptr<detail::pg::pool> pool)
      : opts_(opts), quoted_(std::move(quoted_table)), quoted_list_(std::move(quoted_list)),
        quoted_keys_(std::move(quoted_keys)), stmts_(detail::pg::make_statements(quoted_, quoted_list_, quoted_keys_)),
        pool_(std::move(pool)) {}
  PostgresPolicy(const PostgresPolicy&) = delete;
  PostgresPolicy& operator=(const PostgresPolicy&) = delete;
  ~PostgresPolicy() { stop_sweeper(); }

  result<void> put(std::string_view key, std::string_view value) { return put(key, value, put_options{}); }
  // ---- expiry (expiry.hpp) ----------------------------------------------------
  // put_options::ttl: the key expires at the server's statement time + ttl.
  // The first one gives the table its deadline column (ALTER TABLE).
  result<void> put(std::string_view key, std::string_view value, const put_options& o);
  // Whether key is present now (by the server's clock) and its deadline.
  result<key_expiry> expiry(std::string_view key) const;
  // The same in keyspace `ks`; the first ttl put in any keyspace but "" gives
  // T_ks its deadline column.
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value, const put_options& o);
  result<key_expiry> expiry(const keyspace_type& ks, std::string_view key) const;
  // Whether the table or T_ks has its deadline column now (the catalog); store.hpp.
  result<bool> may_hold_deadlines() const;
  // Whether the table has its deadline column (as far as this process knows).
  bool expiring() const noexcept { return expiring_.load(std::memory_order_acquire); }
  bool keyspaces_expiring() const noexcept { return keyspaces_expiring_.load(std::memory_order_acquire); }

  result<std::optional<std::string>> get(std::string_view key) const {
    if (!is_open()) return closed_error();
    const param p[] = {key};
    return pooled<std::optional<std::string>>(step::read, "get", [&](detail::pg::connection& c) {
      return first_value(run_read(c, stmt::get, p, "get"));
    });
  }
  result<bool> contains(std::string_view key) const {
    if (!is_open()) return closed_error();
    const param p[] = {key};
    return pooled<bool>(step::read, "contains", [&](detail::pg::connection& c) -> result<bool> {
      auto r = run_read(c, stmt::contains, p, "contains");
      if (!r) return std::move(r).error();
      return PQntuples(r->get()) > 0;
    });
  }

  result<void> erase(std::string_view key) {
    if (!is_open()) return closed_error();
    const param p[] = {key};
    return pooled<void>(step::commits_write, "erase", [&](detail::pg::connection& c) -> result<void> {
      auto r = run(c, stmt::erase, p, step::commits_write, "erase");
      if (!r) return std::move(r).error();
      return {};
    });
  }

  // One SQL transaction (one statement when the batch reduces to one); keyspaces.hpp.
  result<void> write(const write_batch& batch);

  cursor_type scan(const key_range& range) const {
    if (!is_open()) return cursor_type(closed_error());
    return cursor_type(shared_from_this(), nullptr, range);
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    if (!is_open()) return closed_error();
    auto view = open_view(false, "snapshot");
    if (!view) return std::move(view).error();
    return snapshot_type(shared_from_this(), std::move(*view));
  }

  // One DELETE (atomic); invalid_argument when the lower bound is above the upper.
  result<void> erase_range(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
    if (range.is_empty()) return {};
    detail::pg::plan p;
    p.ranges.push_back(range);
    return pooled<void>(step::commits_write, "erase_range", [&](detail::pg::connection& c) {
      return apply(c, p, 0, step::commits_write, "erase_range", false);
    });
  }

  // One statement: one view; results in input order.
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    if (!is_open()) return closed_error();
    std::vector<std::optional<std::string>> out(keys.size());
    if (keys.empty()) return out;
    const std::string array = detail::pg::encode_bytea_array(keys);
    if (auto bad = array_too_large(array)) return *bad;
    const param p[] = {array};
    return pooled<std::vector<std::optional<std::string>>>(
        step::read, "multi_get", [&](detail::pg::connection& c) -> result<std::vector<std::optional<std::string>>> {
          auto r = run_read(c, stmt::multi_get, p, "multi_get");
          if (!r) return std::move(r).error();
          const int rows = PQntuples(r->get());
          for (int i = 0; i < rows; ++i) {
            const std::uint32_t ord = detail::pg::get_be32(PQgetvalue(r->get(), i, 0));
            if (ord >= 1 && ord <= out.size())
              out[ord - 1].emplace(PQgetvalue(r->get(), i, 1), static_cast<std::size_t>(PQgetlength(r->get(), i, 1)));
          }
          return out;
        });
  }

  // VACUUM (ANALYZE) of the table: dead row versions (overwritten and erased
  // values) become reusable space and the planner's statistics are renewed.
  // The file does not shrink (VACUUM FULL would, under an exclusive lock: a
  // DBA's decision). The range is checked, otherwise the whole table is done.
  result<void> compact(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    if (auto swept = sweep(true); !swept) return swept;  // expired rows first (then VACUUM reuses their space)
    return pooled<void>(step::read, "compact", [&](detail::pg::connection& c) -> result<void> {
      auto r = exec(c, "VACUUM (ANALYZE) " + quoted_, step::read, "compact");
      if (!r) return std::move(r).error();
      return {};
    });
  }

  // Not supported: the data lives in the server. Back it up with pg_dump
  // (the table) or pg_basebackup (the cluster), or copy the store with
  // keel::export_dump (read through one cursor, one snapshot).
  result<void> checkpoint(const std::filesystem::path&) const {
    if (!is_open()) return closed_error();
    return keel::error(errc::not_supported,
                       "postgres: checkpoint() is not supported by the PostgreSQL backend (its data lives in the "
                       "server): back up the table with pg_dump, the cluster with pg_basebackup, or copy the store "
                       "with keel::export_dump (one snapshot)");
  }

  // A SERIALIZABLE transaction on its own connection; its snapshot is taken
  // now. tx_start::start identifies it to commit_transaction().
  result<tx_start<snapshot_type>> begin_transaction() const {
    if (!is_open()) return closed_error();
    auto view = open_view(true, "transaction");
    if (!view) return std::move(view).error();
    const std::uint64_t id = next_transaction_.fetch_add(1) + 1;
    {
      std::lock_guard lock(transactions_mutex_);
      transactions_[id] = *view;
    }
    auto self = shared_from_this();
    std::shared_ptr<void> registration(reinterpret_cast<void*>(1), [self, id](void*) {
      std::lock_guard lock(self->transactions_mutex_);
      self->transactions_.erase(id);
    });
    return tx_start<snapshot_type>{snapshot_type(self, std::move(*view)), id, std::move(registration)};
  }

  // Sends the buffered writes inside the transaction, then COMMIT. The
  // server validates: errc::conflict (40001, 40P01) with nothing written.
  result<void> commit_transaction(const tx_record& tx) {
    if (!is_open()) return closed_error();
    std::shared_ptr<view_state> view;
    {
      std::lock_guard lock(transactions_mutex_);
      auto it = transactions_.find(tx.start);
      if (it != transactions_.end()) view = it->second.lock();
    }
    if (!view) return keel::error(errc::closed, "postgres: the transaction is no longer open");
    auto plan = detail::pg::compile(tx.writes);
    if (!plan) return std::move(plan).error();
    std::lock_guard lock(view->mutex);
    if (!view->conn || !is_open()) return closed_error();
    if (view->failed) return *view->failed;
    auto& c = *view->conn;
    auto finish = [&](result<void> r) -> result<void> {
      if (!r && !c.broken() && PQtransactionStatus(c.raw()) != PQTRANS_IDLE) {
        detail::pg::failure why;
        if (!c.exec("ROLLBACK", deadline(), &why)) c.mark_broken();
      }
      if (!r) view->failed = r.error();
      return r;
    };
    // A key it read that expired since it began is a conflict; the first
    // ttl put of a store gives the table its column inside this transaction.
    if (auto e = commit_expiry_checks(c, *view, *plan, tx); !e) return finish(std::move(e));
    if (auto a = apply_batch(c, *plan, "commit", view->expiring, &tx, view->keyspaces_shape == 2); !a)
      return finish(std::move(a));
    auto done = exec(c, "COMMIT", step::commits_write, "commit");
    if (!done) return finish(std::move(done).error());
    if (view->expiring) mark_expiring();
    if (view->keyspaces_shape == 2) mark_keyspaces_expiring();
    view->failed = keel::error(errc::closed, "transaction is already committed");
    return {};
  }

  // ---- keyspaces -------------------------------------------------------------
  // The keyspace `name` ("": the store's table). A missing one is created
  // when `create` (one INSERT into the list; the side tables too, on first
  // use), else not_found; on a hot standby it is not_found (nothing created).
  result<keyspace_type> open_keyspace(std::string_view name, bool create) const;
  // Every name, sorted (bytea order: memcmp), "" first. Reads only the list.
  result<std::vector<std::string>> keyspaces() const;
  // One DELETE of the list row; the cascade deletes the keys in the same
  // transaction. Snapshots and cursors begun before read on (MVCC).
  result<void> drop_keyspace(std::string_view name);

  // The keyed operations in keyspace `ks`: one statement each, which gives
  // not_found when the keyspace was dropped (whatever else it would do).
  result<void> put(const keyspace_type& ks, std::string_view key, std::string_view value);
  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const;
  result<bool> contains(const keyspace_type& ks, std::string_view key) const;
  result<void> erase(const keyspace_type& ks, std::string_view key);
  result<void> erase_range(const keyspace_type& ks, const key_range& range);
  result<std::vector<std::optional<std::string>>> multi_get(const keyspace_type& ks,
                                                           std::span<const std::string_view> keys) const;
  cursor_type scan(const keyspace_type& ks, const key_range& range) const;
  // The expired rows deleted (expiry.hpp, sweep), then VACUUM (ANALYZE) of
  // the keyspaces' table (all keyspaces but "").
  result<void> compact(const keyspace_type& ks, const key_range& range);

  // Closes every connection: the pool's and those that live snapshots,
  // cursors and transactions hold (their transactions end; they give
  // errc::closed). Idempotent.
  result<void> close() {
    if (!open_.exchange(false)) return {};
    stop_sweeper();
    std::vector<std::shared_ptr<view_state>> live;
    {
      std::lock_guard lock(views_mutex_);
      for (auto& w : views_)
        if (auto v = w.lock()) live.push_back(std::move(v));
      views_.clear();
    }
    for (auto& v : live) {
      std::lock_guard lock(v->mutex);
      v->conn.drop();
    }
    live.clear();
    pool_->close();
    return {};
  }
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  const options& config() const noexcept { return opts_; }
  // The table name as sent to the server (quoted by libpq).
  const std::string& quoted_table() const noexcept { return quoted_; }

  // What backend_stats() reports.
  struct table_status {
    std::uint64_t rows = 0, table_bytes = 0;
    int server_version = 0;  // PQserverVersion: 150018 for 15.18
    bool standby = false;
    std::size_t pool_idle = 0, pool_in_use = 0;
    std::uint64_t connections_opened = 0, connections_discarded = 0;
  };
  // Rows and bytes of the table (count(*)), the server, the pool (keyspaces.hpp).
  result<table_status> status() const;
  
 private:
  friend class cursor_type;
  friend class snapshot_type;

  clock::time_point deadline() const { return clock::now() + opts_.operation_timeout; }

  static std::optional<keel::error> too_large(std::string_view key, std::string_view value) {
    return detail::pg::too_large(key, value);
  }

  // A batch's keys or values travel as one bytea[] parameter, which
  // PostgreSQL limits to 1 GiB like any field.
  static std::optional<keel::error> array_too_large(const std::string& array) {
    if (array.size() <= max_bytea) return std::nullopt;
    return keel::error(errc::invalid_argument,
                       "postgres: the batch's keys or values total " + std::to_string(array.size()) +
                           " bytes, over PostgreSQL's 1 GiB limit of one parameter; nothing was sent: write it as "
                           "several batches");
  }

  result<result_ptr> run(detail::pg::connection& c, stmt s, std::span<const param> params, step st,
                         std::string_view what) const {
    detail::pg::failure why;
    auto r = c.run(stmts_, s, params, deadline(), &why);
    if (!r) return detail::pg::to_error(why, st, what);
    return r;
  }
  result<result_ptr> exec(detail::pg::connection& c, const std::string& sql, step st, std::string_view what) const {
    detail::pg::failure why;
    auto r = c.exec(sql, deadline(), &why);
    if (!r) return detail::pg::to_error(why, st, what);
    return r;
  }
  static result<std::optional<std::string>> first_value(result<result_ptr> r) {
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return std::optional<std::string>();
    return std::optional<std::string>(std::in_place, PQgetvalue(r->get(), 0, 0),
                                      static_cast<std::size_t>(PQgetlength(r->get(), 0, 0)));
  }

  // Runs f on a pooled connection. A read that found its connection lost
  // runs once more on a new one (the server may have restarted or failed
  // over since the connection was pooled).
  template <class T, class F>
  result<T> pooled(step st, std::string_view what, F&& f) const {
    for (int attempt = 0;; ++attempt) {
      auto lease = pool_->acquire();
      if (!lease) {
        if (lease.error() == errc::closed) return closed_error();
        return keel::error(lease.error().code(), lease.error().message() + " (" + std::string(what) + ")");
      }
      result<T> r = f(**lease);
      if (r || attempt > 0 || st != step::read || r.error() != errc::unavailable || !(*lease)->broken()) return r;
    }
  }

  // One read statement on a pooled connection (autocommit).
  result<result_ptr> pooled_run(stmt s, std::span<const param> params, std::string_view what) const {
    if (!is_open()) return closed_error();
    return pooled<result_ptr>(step::read, what, [&](detail::pg::connection& c) { return run_read(c, s, params, what); });
  }
  // An autocommit read of the default keyspace: the statement `s` of the
  // table's shape (with_deadlines), again with the other one when the table
  // gained its deadline column meanwhile (expiry.hpp).
  result<result_ptr> run_read(detail::pg::connection& c, stmt s, std::span<const param> params,
                              std::string_view what) const;

  // A new transaction reading one snapshot, on a connection of its own (expiry.hpp).
  result<std::shared_ptr<view_state>> open_view(bool for_transaction, std::string_view what) const;
  // A statement on a view's connection (inside its transaction; expiry.hpp).
  result<result_ptr> view_run(view_state& v, stmt s, std::span<const param> params, std::string_view what) const;
  result<std::optional<std::string>> get_on(view_state& v, std::string_view key) const {
    const param p[] = {key};
    return first_value(view_run(v, stmt::get, p, "get"));
  }
  result<bool> contains_on(view_state& v, std::string_view key) const {
    const param p[] = {key};
    auto r = view_run(v, stmt::contains, p, "contains");
    if (!r) return std::move(r).error();
    return PQntuples(r->get()) > 0;
  }

  // ---- keyspaces (helpers) -----------------------------------------------------
  static keel::error keyspace_missing(std::string_view name, std::string_view more = {});
  static std::string id_bytes(const keyspace_type& ks);
  static std::int64_t id_of(const result_ptr& r);
  // Whether the side tables exist (cached once seen: keel never drops them).
  result<bool> side_tables_exist(detail::pg::connection& c) const;
  result<void> make_side_tables(detail::pg::connection& c) const;
  // Reads of keyspace `ks`, on the view `v` (a snapshot's) or a pooled connection.
  result<std::optional<std::string>> keyspace_get(const keyspace_type& ks, std::string_view key, view_state* v) const;
  result<bool> keyspace_contains(const keyspace_type& ks, std::string_view key, view_state* v) const;
  // not_found unless the keyspace exists now.
  result<void> keyspace_check(const keyspace_type& ks, std::string_view what) const;
  // An erase statement of keyspace `ks` (it returns a row iff the keyspace exists).
  result<void> keyspace_write(const keyspace_type& ks, stmt s, std::span<const param> p, std::string_view what);

  // ---- batches --------------------------------------------------------------
  // (batch.hpp reduces a batch to plans.)
  void roll_back(detail::pg::connection& c) const;
  // Inside a transaction: locks the list rows of the keyspaces the batch
  // names (not_found, nothing applied, when one is missing), then applies
  // the default keyspace's plan and each keyspace's.
  result<void> apply_batch(detail::pg::connection& c, const detail::pg::batch_plan& b, std::string_view what,
                           bool expiring, const tx_record* tx = nullptr, bool keyspaces_expiring = false) const;
  // One keyspace's plan (`keyspace_id` 0: the default keyspace's table),
  // in the order batch.hpp says; `expiring`: that table has deadlines.
  result<void> apply(detail::pg::connection& c, const detail::pg::plan& p, std::int64_t keyspace_id, step st,
                     std::string_view what, bool expiring = false) const;

  // ---- expiry (expiry.hpp) ------------------------------------------------------
  static stmt with_deadlines(stmt s);  // the statement's counterpart on a table with deadlines
  static bool in_keyspaces(stmt s);    // whether s reads or writes T_ks (the other keyspaces)
  std::string view_guard_sql(const std::string& table) const;
  // After `e` on c in plain mode: whether the table (T_ks when `keyspaces`)
  // has its deadline column now (then this process switches to it: true).
  bool gained_deadlines(detail::pg::connection& c, const keel::error& e, bool keyspaces = false) const;
  void mark_expiring() const;  // switches to deadlines, starts the sweeper
  void mark_keyspaces_expiring() const;  // the same for T_ks
  void start_sweeper() const;
  result<void> enable_expiry(bool keyspaces = false);
  // Deletes every expired row (in rounds), of T and T_ks; `look`: asks the
  // catalog first whether T_ks has deadlines this process has not seen (compact()).
  result<void> sweep(bool look = false) const;
  void stop_sweeper() const;
  // Makes v's T_ks shape known (1 or 2) before its first statement there.
  result<void> resolve_keyspaces_shape(view_state& v) const;
  result<void> commit_expiry_checks(detail::pg::connection& c, view_state& v, const detail::pg::batch_plan& plan,
                                    const tx_record& tx) const;
  struct sweeper_state;

  options opts_;
  std::string quoted_;
  std::string quoted_list_, quoted_keys_;  // the keyspace side tables (statements.hpp)
  mutable std::atomic<bool> side_tables_{false};  // seen to exist (they are never dropped by keel)
  std::array<detail::pg::statement_text, detail::pg::statement_count> stmts_;
  std::shared_ptr<detail::pg::pool> pool_;
  std::atomic<bool> open_{true};
  mutable std::mutex views_mutex_;
  mutable std::vector<std::weak_ptr<view_state>> views_;  // live views, closed by close()
  mutable std::size_t prune_views_at_ = 64;
  mutable std::mutex transactions_mutex_;
  mutable std::unordered_map<std::uint64_t, std::weak_ptr<view_state>> transactions_;
  mutable std::atomic<std::uint64_t> next_transaction_{0};
  std::string quoted_deadline_index_, quoted_keyspaces_deadline_index_;
  mutable std::atomic<bool> expiring_{false};
  mutable std::atomic<bool> keyspaces_expiring_{false};  // T_ks has its deadline column
  mutable std::mutex sweeper_mutex_;  // a leaf: guards sweeper_
  mutable std::shared_ptr<sweeper_state> sweeper_;
};

static_assert(store_policy<PostgresPolicy>);
static_assert(keyspace_policy<PostgresPolicy>);

}  // namespace keel
