// keel: PostgresPolicy's keyspaces (issue 27) and how it applies a batch:
// the definitions of the members policy.hpp declares under "keyspaces" and
// "batches" (and status()). Reached through <keel/postgres.hpp>; needs libpq.
//
// Keyspace "" is the store's table, untouched by all of this (its operations
// are policy.hpp's). Every other keyspace lives in the two side tables that
// statements.hpp describes, made by the first keyspace() that creates one.
// A handle carries the keyspace's id; each operation through it is one
// statement that also checks, in its own snapshot, that the id is still in
// the list, so that a dropped keyspace gives not_found:
//   get, contains, multi_get, scan pages   a LEFT JOIN from the list row
//   erase, erase_range                      DELETE in a WITH, then the list row
//   put                                     the foreign key (23503)
// In a snapshot (REPEATABLE READ) the list is the snapshot's too: a keyspace
// dropped since reads on, one made since is not_found.
// A batch or transaction naming keyspaces is one SQL transaction that first
// locks their list rows (SELECT ... FOR KEY SHARE: a drop waits for it, and
// a batch naming a keyspace being dropped waits for the drop, then finds it
// gone: not_found, nothing written), then writes each keyspace's plan
// (batch.hpp).
//
// Thread safety: as PostgresPolicy (every member may be called from many
// threads at once).
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy.hpp"

namespace keel {

inline result<PostgresPolicy::keyspace_type> PostgresPolicy::open_keyspace(std::string_view name, bool create) const {
  if (!is_open()) return closed_error();
  if (auto bad = keyspace_name_error(name)) return *bad;
  if (name.empty()) return keyspace_type{};
  const param p[] = {name};
  return pooled<keyspace_type>(step::read, "keyspace", [&](detail::pg::connection& c) -> result<keyspace_type> {
    // A name made by another client between the lookup and the INSERT is
    // looked up again (and one made and dropped meanwhile is made anew).
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto exist = side_tables_exist(c);
      if (!exist) return std::move(exist).error();
      if (*exist) {
        auto r = run(c, stmt::ks_lookup, p, step::read, "keyspace");
        if (!r) return std::move(r).error();
        if (PQntuples(r->get()) == 1) return keyspace_type{id_of(*r), std::string(name)};
      }
      if (!create || c.in_hot_standby()) return keyspace_missing(name);
      if (!*exist)
        if (auto made = make_side_tables(c); !made) return std::move(made).error();
      auto r = run(c, stmt::ks_create, p, step::commits_write, "keyspace");
      if (!r) return std::move(r).error();
      if (PQntuples(r->get()) == 1) return keyspace_type{id_of(*r), std::string(name)};
    }
    return keel::error(errc::conflict, "postgres: keyspace " + detail::keyspace_text(name) +
                                           ": other clients made and dropped it 8 times while this one looked");
  });
}

inline result<std::vector<std::string>> PostgresPolicy::keyspaces() const {
  if (!is_open()) return closed_error();
  return pooled<std::vector<std::string>>(
      step::read, "keyspaces", [&](detail::pg::connection& c) -> result<std::vector<std::string>> {
        std::vector<std::string> out{std::string()};
        auto exist = side_tables_exist(c);
        if (!exist) return std::move(exist).error();
        if (!*exist) return out;
        auto r = run(c, stmt::ks_list, {}, step::read, "keyspaces");
        if (!r) return std::move(r).error();
        for (int i = 0; i < PQntuples(r->get()); ++i)
          out.emplace_back(PQgetvalue(r->get(), i, 0), static_cast<std::size_t>(PQgetlength(r->get(), i, 0)));
        return out;
      });
}

inline result<void> PostgresPolicy::drop_keyspace(std::string_view name) {
  if (!is_open()) return closed_error();
  if (name.empty()) return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
  if (auto bad = keyspace_name_error(name)) return *bad;
  const param p[] = {name};
  return pooled<void>(step::commits_write, "drop_keyspace", [&](detail::pg::connection& c) -> result<void> {
    auto exist = side_tables_exist(c);
    if (!exist) return std::move(exist).error();
    if (!*exist) return keyspace_missing(name);
    auto r = run(c, stmt::ks_drop, p, step::commits_write, "drop_keyspace");
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return keyspace_missing(name);
    return {};
  });
}

inline result<void> PostgresPolicy::put(const keyspace_type& ks, std::string_view key, std::string_view value) {
  return put(ks, key, value, put_options{});  // expiry.hpp (ks_put, or x_ks_put once T_ks has deadlines)
}

inline result<std::optional<std::string>> PostgresPolicy::get(const keyspace_type& ks, std::string_view key) const {
  if (ks.id == 0) return get(key);
  if (!is_open()) return closed_error();
  return keyspace_get(ks, key, nullptr);
}

inline result<bool> PostgresPolicy::contains(const keyspace_type& ks, std::string_view key) const {
  if (ks.id == 0) return contains(key);
  if (!is_open()) return closed_error();
  return keyspace_contains(ks, key, nullptr);
}

inline result<void> PostgresPolicy::erase(const keyspace_type& ks, std::string_view key) {
  if (ks.id == 0) return erase(key);
  if (!is_open()) return closed_error();
  const std::string id = id_bytes(ks);
  const param p[] = {id, key};
  return keyspace_write(ks, stmt::ks_erase, p, "erase");
}

inline result<void> PostgresPolicy::erase_range(const keyspace_type& ks, const key_range& range) {
  if (ks.id == 0) return erase_range(range);
  if (!is_open()) return closed_error();
  if (!erase_range_is_valid(range))
    return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
  const std::string id = id_bytes(ks);
  if (range.is_empty()) return keyspace_check(ks, "erase_range");
  const std::string lo = range.lower().value_or(std::string());
  if (range.upper()) {
    const std::string hi = *range.upper();
    const param p[] = {id, lo, hi};
    return keyspace_write(ks, stmt::ks_erase_between, p, "erase_range");
  }
  const param p[] = {id, lo};
  return keyspace_write(ks, stmt::ks_erase_from, p, "erase_range");
}

inline result<std::vector<std::optional<std::string>>> PostgresPolicy::multi_get(
    const keyspace_type& ks, std::span<const std::string_view> keys) const {
  if (ks.id == 0) return multi_get(keys);
  if (!is_open()) return closed_error();
  std::vector<std::optional<std::string>> out(keys.size());
  if (keys.empty()) {
    if (auto ok = keyspace_check(ks, "multi_get"); !ok) return std::move(ok).error();
    return out;
  }
  const std::string id = id_bytes(ks);
  const std::string array = detail::pg::encode_bytea_array(keys);
  if (auto bad = array_too_large(array)) return *bad;
  const param p[] = {id, array};
  auto r = pooled_run(stmt::ks_multi_get, p, "multi_get");
  if (!r) return std::move(r).error();
  const int rows = PQntuples(r->get());
  if (rows == 0) return keyspace_missing(ks.name);
  for (int i = 0; i < rows; ++i) {
    const std::uint32_t ord = detail::pg::get_be32(PQgetvalue(r->get(), i, 0));
    if (ord >= 1 && ord <= out.size() && !PQgetisnull(r->get(), i, 1))
      out[ord - 1].emplace(PQgetvalue(r->get(), i, 1), static_cast<std::size_t>(PQgetlength(r->get(), i, 1)));
  }
  return out;
}

inline PostgresPolicy::cursor_type PostgresPolicy::scan(const keyspace_type& ks, const key_range& range) const {
  if (ks.id == 0) return scan(range);
  if (!is_open()) return cursor_type(closed_error());
  return cursor_type(shared_from_this(), nullptr, range, &ks);
}

inline result<void> PostgresPolicy::compact(const keyspace_type& ks, const key_range& range) {
  if (ks.id == 0) return compact(range);
  if (!is_open()) return closed_error();
  if (!erase_range_is_valid(range))
    return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
  if (auto ok = keyspace_check(ks, "compact"); !ok) return ok;
  if (auto swept = sweep(true); !swept) return swept;  // expired rows first (expiry.hpp)
  return pooled<void>(step::read, "compact", [&](detail::pg::connection& c) -> result<void> {
    auto r = exec(c, "VACUUM (ANALYZE) " + quoted_keys_, step::read, "compact");
    if (!r) return std::move(r).error();
    return {};
  });
}

inline keel::error PostgresPolicy::keyspace_missing(std::string_view name, std::string_view more) {
  return keel::error(errc::not_found, "postgres: no keyspace " + detail::keyspace_text(name) +
                                          " (never made, made after the snapshot read, or dropped: a handle to a "
                                          "dropped keyspace does not reach one made again under its name)" +
                                          std::string(more));
}

inline std::string PostgresPolicy::id_bytes(const keyspace_type& ks) {
  std::string out;
  detail::pg::put_be64(out, static_cast<std::uint64_t>(ks.id));
  return out;
}

inline std::int64_t PostgresPolicy::id_of(const result_ptr& r) {
  return static_cast<std::int64_t>(detail::pg::get_be64(PQgetvalue(r.get(), 0, 0)));
}

inline result<bool> PostgresPolicy::side_tables_exist(detail::pg::connection& c) const {
  if (side_tables_.load(std::memory_order_acquire)) return true;
  detail::pg::failure why;
  auto r = c.exec_params(detail::pg::keyspace_tables_sql, {quoted_list_, quoted_keys_}, deadline(), &why);
  if (!r) return detail::pg::to_error(why, step::read, "keyspaces");
  const bool exist = std::string_view(PQgetvalue(r->get(), 0, 0)) == "t";
  if (!exist) return false;
  if (std::string_view(PQgetvalue(r->get(), 0, 1)) != "t")
    return keel::error(errc::invalid_argument,
                       "postgres: tables " + quoted_list_ + " and " + quoted_keys_ +
                           " exist but are not keel's keyspace tables (" + quoted_list_ + " (name bytea, id bigint), " +
                           quoted_keys_ +
                           " (keyspace_id bigint, key bytea, value bytea)); nothing was altered: "
                           "choose another postgres_options::table, or move those tables away");
  if (std::string_view(PQgetvalue(r->get(), 0, 2)) == "t") mark_keyspaces_expiring();  // T_ks has deadlines
  side_tables_.store(true, std::memory_order_release);
  return true;
}

inline result<void> PostgresPolicy::make_side_tables(detail::pg::connection& c) const {
  detail::pg::failure why;
  auto made = c.exec(detail::pg::create_keyspace_tables_sql(quoted_list_, quoted_keys_), deadline(), &why);
  // Another client making them at once: the loser sees a unique violation
  // on the catalog (23505), or the table's row type already there (42710);
  // they exist then.
  if (!made && why.sqlstate != "23505" && why.sqlstate != "42P07" && why.sqlstate != "42710")
    return detail::pg::to_error(why, step::commits_write, "create the keyspace tables");
  auto exist = side_tables_exist(c);
  if (!exist) return std::move(exist).error();
  if (!*exist) return keel::error(errc::io_error, "postgres: the keyspace tables were made but are not there");
  return {};
}

inline result<std::optional<std::string>> PostgresPolicy::keyspace_get(const keyspace_type& ks, std::string_view key,
                                                                       view_state* v) const {
  const std::string id = id_bytes(ks);
  const param p[] = {id, key};
  auto r = v ? view_run(*v, stmt::ks_get, p, "get") : pooled_run(stmt::ks_get, p, "get");
  if (!r) return std::move(r).error();
  if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
  if (PQgetisnull(r->get(), 0, 0)) return std::optional<std::string>();
  return std::optional<std::string>(std::in_place, PQgetvalue(r->get(), 0, 0),
                                    static_cast<std::size_t>(PQgetlength(r->get(), 0, 0)));
}

inline result<bool> PostgresPolicy::keyspace_contains(const keyspace_type& ks, std::string_view key,
                                                      view_state* v) const {
  const std::string id = id_bytes(ks);
  const param p[] = {id, key};
  auto r = v ? view_run(*v, stmt::ks_contains, p, "contains") : pooled_run(stmt::ks_contains, p, "contains");
  if (!r) return std::move(r).error();
  if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
  return *PQgetvalue(r->get(), 0, 0) != 0;
}

inline result<void> PostgresPolicy::keyspace_check(const keyspace_type& ks, std::string_view what) const {
  const std::string id = id_bytes(ks);
  const param p[] = {id};
  auto r = pooled_run(stmt::ks_exists, p, what);
  if (!r) return std::move(r).error();
  if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
  return {};
}

inline result<void> PostgresPolicy::keyspace_write(const keyspace_type& ks, stmt s, std::span<const param> p,
                                                   std::string_view what) {
  return pooled<void>(step::commits_write, what, [&](detail::pg::connection& c) -> result<void> {
    auto r = run(c, s, p, step::commits_write, what);
    if (!r) return std::move(r).error();
    if (PQntuples(r->get()) == 0) return keyspace_missing(ks.name);
    return {};
  });
}

inline void PostgresPolicy::roll_back(detail::pg::connection& c) const {
  if (c.broken() || PQtransactionStatus(c.raw()) == PQTRANS_IDLE) return;
  detail::pg::failure why;
  if (!c.exec("ROLLBACK", deadline(), &why)) c.mark_broken();
}

inline result<void> PostgresPolicy::write(const write_batch& batch) {
  if (!is_open()) return closed_error();
  auto plan = detail::pg::compile(batch);
  if (!plan) return std::move(plan).error();
  if (plan->keyspaces.empty() && plan->default_keyspace.statements() == 0) return {};
  if (plan->has_ttl())
    if (auto e = enable_expiry(); !e) return e;
  if (plan->has_keyspace_ttl())
    if (auto e = enable_expiry(true); !e) return e;
  return pooled<void>(step::commits_write, "write", [&](detail::pg::connection& c) -> result<void> {
    for (int pass = 0;; ++pass) {  // again when a table gained its deadline column meanwhile
      const bool on = expiring(), keyspaces_on = keyspaces_expiring();
      result<void> r;
      if (plan->keyspaces.empty() && plan->default_keyspace.statements() == 1) {
        r = apply(c, plan->default_keyspace, 0, step::commits_write, "write", on);
      } else if (auto b = exec(c, "BEGIN", step::in_transaction, "write"); !b) {
        return std::move(b).error();
      } else if (r = apply_batch(c, *plan, "write", on, nullptr, keyspaces_on); !r) {
        roll_back(c);
      } else if (auto done = exec(c, "COMMIT", step::commits_write, "write"); !done) {
        return std::move(done).error();
      }
      if (r || pass > 1) return r;
      if (!(!on && gained_deadlines(c, r.error())) &&
          !(!keyspaces_on && !plan->keyspaces.empty() && gained_deadlines(c, r.error(), true)))
        return r;
    }
  });
}

inline result<void> PostgresPolicy::apply_batch(detail::pg::connection& c, const detail::pg::batch_plan& b,
                                                std::string_view what, bool expiring, const tx_record* tx,
                                                bool keyspaces_expiring) const {
  // The keyspaces to lock: those written, and (in a transaction) those read.
  std::vector<std::string_view> names;
  for (const auto& [name, p] : b.keyspaces) names.push_back(name);
  if (tx)
    for (const auto& reads : tx->keyspace_reads) names.push_back(reads.keyspace);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::map<std::string, std::int64_t, std::less<>> found;  // name -> id
  if (!names.empty()) {
    auto exist = side_tables_exist(c);
    if (!exist) return std::move(exist).error();
    if (!*exist) return keyspace_missing(names.front(), "; nothing was written");
    const std::string array = detail::pg::encode_bytea_array(names);
    const param ps[] = {array};
    auto read_ids = [&](const result_ptr& r) {
      for (int i = 0; i < PQntuples(r.get()); ++i)
        found.emplace(std::string(PQgetvalue(r.get(), i, 0), static_cast<std::size_t>(PQgetlength(r.get(), i, 0))),
                      static_cast<std::int64_t>(detail::pg::get_be64(PQgetvalue(r.get(), i, 1))));
    };
    if (tx) {
      // The ids as of the transaction's snapshot (what its handles reached);
      // locking them then fails (40001) if one was dropped since: told
      // apart from other conflicts by looking at the ids from outside.
      auto r = run(c, stmt::ks_resolve_snapshot, ps, step::in_transaction, what);
      if (!r) return std::move(r).error();
      read_ids(*r);
      for (std::string_view name : names)
        if (found.find(name) == found.end()) return keyspace_missing(name, "; nothing was written");
      auto locked = run(c, stmt::ks_resolve, ps, step::in_transaction, what);
      if (!locked) {
        if (locked.error() != errc::conflict) return std::move(locked).error();
        for (const auto& [name, id] : found)
          if (auto there = keyspace_check(keyspace_type{id, name}, what); !there)
            return there.error() == errc::not_found
                       ? keyspace_missing(name, " (dropped while the transaction ran; nothing was written)")
                       : std::move(locked).error();
        return std::move(locked).error();
      }
    } else {
      auto r = run(c, stmt::ks_resolve, ps, step::in_transaction, what);
      if (!r) return std::move(r).error();
      read_ids(*r);
      for (std::string_view name : names)
        if (found.find(name) == found.end()) return keyspace_missing(name, "; nothing was written");
    }
  }
  if (auto a = apply(c, b.default_keyspace, 0, step::in_transaction, what, expiring); !a) return a;
  for (const auto& [name, p] : b.keyspaces)
    if (auto a = apply(c, p, found.find(name)->second, step::in_transaction, what, keyspaces_expiring); !a) return a;
  return {};
}

inline result<void> PostgresPolicy::apply(detail::pg::connection& c, const detail::pg::plan& p,
                                          std::int64_t keyspace_id, step st, std::string_view what,
                                          bool expiring) const {
  const bool ks = keyspace_id != 0;
  std::string id;
  if (ks) detail::pg::put_be64(id, static_cast<std::uint64_t>(keyspace_id));
  // The statement's parameters: the keyspace's id first when it has one.
  auto with_id = [&](std::initializer_list<param> rest) {
    std::vector<param> v;
    v.reserve(rest.size() + 1);
    if (ks) v.emplace_back(id);
    for (const param& x : rest) v.push_back(x);  // (not insert(end, list): g++ 12 -O2 warns falsely)
    return v;
  };
  auto send = [&](stmt plain, stmt in_keyspace, std::initializer_list<param> rest) -> result<void> {
    const auto ps = with_id(rest);
    auto d = run(c, ks ? in_keyspace : plain, ps, st, what);
    if (!d) return std::move(d).error();
    return {};
  };
  for (const auto& r : p.ranges) {
    const std::string lo = r.lower().value_or(std::string());
    auto done = r.upper() ? send(stmt::erase_between, stmt::ks_erase_between, {lo, *r.upper()})
                          : send(stmt::erase_from, stmt::ks_erase_from, {lo});
    if (!done) return done;
  }
  if (p.erased.size() == 1) {
    if (auto d = send(stmt::erase, stmt::ks_erase, {p.erased[0]}); !d) return d;
  } else if (!p.erased.empty()) {
    const std::string keys = detail::pg::encode_bytea_array(p.erased);
    if (auto bad = array_too_large(keys)) return *bad;
    if (auto d = send(stmt::erase_many, stmt::ks_erase_many, {keys}); !d) return d;
  }
  if (expiring && !p.put_keys.empty()) {  // the plan's table (T or T_ks) has deadlines
    std::string ttl;
    if (p.put_keys.size() == 1) {
      detail::pg::put_be64(ttl, static_cast<std::uint64_t>(p.put_ttls[0]));
      return send(stmt::x_put, stmt::x_ks_put, {p.put_keys[0], p.put_values[0], ttl});
    }
    const std::string keys = detail::pg::encode_bytea_array(p.put_keys);
    const std::string values = detail::pg::encode_bytea_array(p.put_values);
    if (auto bad = array_too_large(keys)) return *bad;
    if (auto bad = array_too_large(values)) return *bad;
    ttl = detail::pg::encode_int8_array(p.put_ttls);
    return send(stmt::x_put_many, stmt::x_ks_put_many, {keys, values, ttl});
  }
  if (p.has_ttl)  // the caller gave the table its deadline column first
    return keel::error(errc::invalid_argument, "postgres: internal: a ttl put for a table without deadlines");
  if (p.put_keys.size() == 1) {
    if (auto d = send(stmt::put, stmt::ks_put, {p.put_keys[0], p.put_values[0]}); !d) return d;
  } else if (!p.put_keys.empty()) {
    const std::string keys = detail::pg::encode_bytea_array(p.put_keys);
    const std::string values = detail::pg::encode_bytea_array(p.put_values);
    if (auto bad = array_too_large(keys)) return *bad;
    if (auto bad = array_too_large(values)) return *bad;
    if (auto d = send(stmt::put_many, stmt::ks_put_many, {keys, values}); !d) return d;
  }
  return {};
}

inline result<PostgresPolicy::table_status> PostgresPolicy::status() const {
  if (!is_open()) return closed_error();
  return pooled<table_status>(step::read, "stats", [&](detail::pg::connection& c) -> result<table_status> {
    detail::pg::failure why;
    auto r = c.exec_params("SELECT count(*), pg_total_relation_size(to_regclass($1)) FROM " + quoted_, {quoted_},
                           deadline(), &why);
    if (!r) return detail::pg::to_error(why, step::read, "stats");
    table_status s;
    s.rows = std::stoull(PQgetvalue(r->get(), 0, 0));
    s.table_bytes = std::stoull(PQgetvalue(r->get(), 0, 1));
    s.server_version = PQserverVersion(c.raw());
    s.standby = c.in_hot_standby();
    s.pool_idle = pool_->idle();
    s.pool_in_use = pool_->in_use();
    s.connections_opened = pool_->opened();
    s.connections_discarded = pool_->discarded();
    return s;
  });
}

}  // namespace keel
