// keel tool: opening the store a command works on, from the options: a
// RocksDB directory (--db, $KEEL_DB), a memory store (--memory,
// --memory-file), a hybrid store (--hybrid), the fallback to memory
// (--fallback), an etcd cluster
// (--etcd, --etcd-prefix, $KEEL_ETCD_ENDPOINTS, $KEEL_ETCD_PREFIX; only when
// built with the etcd backend), all per store_config::from_env("KEEL"), and
// a PostgreSQL table (--postgres, --table, $KEEL_POSTGRES,
// $KEEL_POSTGRES_TABLE, postgres:TABLE; only with the PostgreSQL backend).
// Read commands open a RocksDB directory read-only; write commands create a
// missing one.
#pragma once

#include <cstdio>
#include <filesystem>
#include <keel/keel.hpp>
#if KEEL_HAS_ETCD
#include <keel/etcd_any_store.hpp>
#endif
#if KEEL_HAS_POSTGRES
#include <keel/postgres.hpp>
#endif
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"

namespace keel_tool {

// The store type of every command: RocksDB, memory, the hybrid store, and
// with the etcd backend a cluster too.
// With the PostgreSQL backend a table of a server too.
#if KEEL_HAS_ETCD
#define KEEL_CLI_ETCD_POLICY , keel::EtcdPolicy
#else
#define KEEL_CLI_ETCD_POLICY
#endif
#if KEEL_HAS_POSTGRES
#define KEEL_CLI_POSTGRES_POLICY , keel::PostgresPolicy
#else
#define KEEL_CLI_POSTGRES_POLICY
#endif
using cli_store = keel::basic_any_store<keel::RocksPolicy<keel::NativeTuning>, keel::MemoryPolicy, keel::HybridPolicy<>
                                            KEEL_CLI_ETCD_POLICY KEEL_CLI_POSTGRES_POLICY>;

// How a command uses a store. A reader opens a RocksDB directory read-only:
// it creates nothing and works while another process holds the database. A
// writer creates a missing database (and says so). An etcd store is the same
// for both (the cluster is there or not; nothing is created).
enum class access { read, write };

// "URL[,URL...]" as a list; an item without a scheme gets http://.
inline std::vector<std::string> split_endpoints(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty())
      out.push_back(item.find("://") == std::string_view::npos ? "http://" + std::string(item) : std::string(item));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

// What `keel doctor` takes for these endpoints: etcd://HOST:PORT[,HOST:PORT...].
inline std::string etcd_doctor_target(const std::vector<std::string>& endpoints) {
  std::string t = "etcd://";
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    std::string_view e = endpoints[i];
    if (auto s = e.find("://"); s != std::string_view::npos) e.remove_prefix(s + 3);
    while (!e.empty() && e.back() == '/') e.remove_suffix(1);
    t += (i ? "," : "") + std::string(e);
  }
  return t;
}

// The PostgreSQL server of --postgres, else $KEEL_POSTGRES ("" when neither).
inline std::string postgres_conninfo(const cli& c) {
  if (!c.postgres.empty()) return c.postgres;
  const char* e = std::getenv("KEEL_POSTGRES");
  return e ? e : "";
}

// Opens the table `table` ("" : --table, else $KEEL_POSTGRES_TABLE, else
// "keel") of the server of --postgres / $KEEL_POSTGRES (docs/postgres.md).
// The table is created if missing, by readers too (an empty store).
inline keel::result<cli_store> open_postgres(const cli& c, std::string table, std::string& doctor_target) {
#if KEEL_HAS_POSTGRES
  keel::postgres_options o;
  o.conninfo = postgres_conninfo(c);
  if (o.conninfo.empty())
    return keel::error(keel::errc::invalid_argument,
                       "no PostgreSQL server given: use --postgres CONNINFO or set KEEL_POSTGRES");
  if (table.empty()) table = c.table;
  if (const char* e = std::getenv("KEEL_POSTGRES_TABLE"); table.empty() && e) table = e;
  if (!table.empty()) o.table = table;
  doctor_target.clear();  // keel doctor does not diagnose a server
  auto s = keel::postgres_store::open(o);
  if (!s) return std::move(s).error();
  return cli_store(std::move(*s));
#else
  (void)c, (void)table, (void)doctor_target;
  return keel::error(keel::errc::invalid_argument, no_postgres_backend("--postgres"));
#endif
}

// The spec of the main store (the one every command but migrate uses).
inline std::string main_spec(const cli& c) {
  if (!postgres_conninfo(c).empty()) return "postgres:";
  if (c.memory) return "memory:" + c.memory_file;
  if (!c.hybrid.empty()) return "hybrid:" + c.hybrid;
  if (!c.etcd.empty()) return "etcd:";
  return db_path(c);
}

// Opens the hybrid store at `path` (docs/hybrid.md). A reader refuses a path
// that holds no hybrid store (nothing is created); a writer creates one.
inline keel::result<cli_store> open_hybrid(const std::string& path, access how, std::string& doctor_target) {
  if (path.empty()) return keel::error(keel::errc::invalid_argument, "hybrid: needs a PATH (hybrid:PATH)");
  doctor_target = path;
  const std::filesystem::path tier = keel::detail::hybrid_layout{path}.tier();
  std::error_code ec;
  const bool exists = std::filesystem::exists(tier, ec);
  if (how == access::read && !exists && !ec) {
    return keel::error(keel::errc::not_found,
                       "no database at '" + path + "' (no hybrid store there: no TIER file; nothing was created)");
  }
  keel::store_config cfg;
  cfg.preferred = keel::backend::hybrid;
  cfg.hybrid.path = path;
  cfg.log = [](std::string_view) {};
  auto store = keel::open_store<cli_store>(cfg);
  if (store && how == access::write && !exists && !ec)
    std::fprintf(stderr, "keel: created a new hybrid store at '%s'\n", path.c_str());
  return store;
}

// Opens the store `spec` per store_config::from_env("KEEL"):
//   "memory:" / "memory:FILE"  a memory store (persisted in FILE);
//   "hybrid:PATH"              the hybrid store at PATH (no read-only open:
//                              a reader takes its lock too, but creates
//                              nothing);
//   "postgres:" / "postgres:TABLE"  the table (default --table, $KEEL_POSTGRES_TABLE,
//                              "keel") of the server of --postgres / $KEEL_POSTGRES;
//   "etcd:" / "etcd:PREFIX"    the etcd cluster of --etcd / $KEEL_ETCD_ENDPOINTS,
//                              with PREFIX or --etcd-prefix / $KEEL_ETCD_PREFIX;
//   anything else              a RocksDB directory. For the main store
//                              (main_store = true) $KEEL_ETCD_ENDPOINTS chooses
//                              the cluster instead, as it does for programs
//                              using from_env; migrate's SRC and DST are what
//                              they say.
// `doctor_target` is what an open failure suggests to run `keel doctor` on: it
// comes in as the path, and becomes etcd://... when the store is a cluster.
inline keel::result<cli_store> open_spec(const cli& c, const std::string& spec, access how, std::string& doctor_target,
                                         bool main_store = false) {
  if (spec.rfind("hybrid:", 0) == 0) return open_hybrid(spec.substr(7), how, doctor_target);
  if (spec.rfind("postgres:", 0) == 0) return open_postgres(c, spec.substr(9), doctor_target);
  keel::store_config base;
  const bool memory_spec = spec == "memory" || spec.rfind("memory:", 0) == 0;
  const bool etcd_spec = spec.rfind("etcd:", 0) == 0;
  base.memory.persist_path = c.memory_file;
  if (memory_spec) {
    base.preferred = keel::backend::memory;
    if (spec.size() > 7) base.memory.persist_path = spec.substr(7);
  } else if (!etcd_spec) {
    base.path = spec;
  }
  if (c.memory) base.preferred = keel::backend::memory;
  auto cfg = keel::store_config::from_env("KEEL", base);
  if (!cfg) return std::move(cfg).error();
  if (c.fallback) cfg->fallback_to_memory = true;
  if (memory_spec) cfg->preferred = keel::backend::memory;
  if (etcd_spec) {
    cfg->preferred = keel::backend::etcd;
    if (spec.size() > 5) cfg->etcd.prefix = spec.substr(5);
  } else if (!main_store && !memory_spec && cfg->preferred == keel::backend::etcd) {
    cfg->preferred = keel::backend::rocksdb;  // migrate's SRC or DST names a directory
  }
  // Quiet unless something noteworthy happens (a fallback).
  cfg->log = [](std::string_view line) {
    if (line.find("falling back") != std::string_view::npos)
      std::fprintf(stderr, "keel: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  if (cfg->preferred == keel::backend::etcd) {
    if (!has_etcd_backend)
      return keel::error(keel::errc::invalid_argument,
                         no_etcd_backend(etcd_spec ? "'" + spec + "'" : std::string("KEEL_ETCD_ENDPOINTS")));
    if (!c.etcd.empty()) cfg->etcd.endpoints = split_endpoints(c.etcd);
    if (!c.etcd_prefix.empty() && !(etcd_spec && spec.size() > 5)) cfg->etcd.prefix = c.etcd_prefix;
    if (cfg->etcd.endpoints.empty())
      return keel::error(keel::errc::invalid_argument,
                         "no etcd cluster given: use --etcd URL[,URL...] or set KEEL_ETCD_ENDPOINTS");
    if (cfg->etcd.prefix.empty())
      return keel::error(keel::errc::invalid_argument,
                         "the etcd backend needs a key prefix (every key of the store lives under it): "
                         "--etcd-prefix P or KEEL_ETCD_PREFIX");
    doctor_target = etcd_doctor_target(cfg->etcd.endpoints);
    return keel::open_store<cli_store>(*cfg);
  }
  if (cfg->preferred == keel::backend::rocksdb && cfg->path.empty()) {
    return keel::error(keel::errc::invalid_argument,
                       "no database given: use --db PATH or set KEEL_DB (or --memory for a scratch store)");
  }
  if (cfg->preferred != keel::backend::rocksdb) {
    // A read of a persisted memory store whose file is missing would save an
    // empty file at close: refuse it as for a RocksDB path.
    const auto& file = cfg->memory.persist_path;
    std::error_code ec;
    if (how == access::read && !file.empty() && !std::filesystem::exists(file, ec) && !ec) {
      return keel::error(keel::errc::not_found,
                         "no database at '" + file.string() + "' (no such memory store file; nothing was created)");
    }
    return keel::open_store<cli_store>(*cfg);
  }

  const std::string where = "'" + cfg->path.string() + "'";
  const keel::detail::db_dir_state before = keel::detail::inspect_db_dir(cfg->path);
  using kind = keel::detail::db_dir_state::kind;
  if (how == access::read) {
    if (before.what == kind::missing || before.what == kind::empty) {
      return keel::error(keel::errc::not_found,
                         "no database at " + where + " (nothing was created; put or import creates one)");
    }
    cfg->rocks.read_only = true;
  }
  auto store = keel::open_store<cli_store>(*cfg);
  if (!store || store->backend() != keel::backend::rocksdb) return store;
  if (how == access::write && (before.what == kind::missing || before.what == kind::empty)) {
    std::fprintf(stderr, "keel: created a new database at %s\n", where.c_str());
  } else if (how == access::read) {
    // The store sees the data as of this open; say so when someone is
    // writing. This process holds no lock on LOCK (a read-only open takes
    // none), so it may open the file to ask F_GETLK where /proc/locks is
    // missing.
    if (auto h = keel::detail::find_lock_holder(cfg->path / "LOCK", /*may_open_lock_file=*/true)) {
      std::string who = "process " + std::to_string(h->pid);
      if (!h->command.empty()) who += " (" + h->command + ")";
      std::fprintf(stderr,
                   "keel: %s has %s open read-write; this is a read-only view as of now: its later writes are "
                   "not shown\n",
                   who.c_str(), where.c_str());
    }
  }
  return store;
}

// Reports a failed open; exits 3. For the errors `keel doctor` explains, says
// how to run it on `target` (a path, or etcd://... for a cluster).
inline int open_failed(const keel::error& e, const std::string& target) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  using keel::errc;
  const errc k = e.code();
  if (!target.empty() &&
      (k == errc::lock_held_by_other_process || k == errc::permission_denied || k == errc::locks_unsupported ||
       k == errc::io_error || k == errc::corruption || k == errc::unavailable))
    std::fprintf(stderr, "keel: for an explanation, run: keel doctor %s\n", target.c_str());
  return exit_open_failed;
}

// Opens the main store, runs fn(store) and closes it. Returns fn's exit code;
// a failed open exits 3, a failed close 5 (unless fn already failed).
template <class F>
int with_store(const cli& c, access how, F&& fn) {
  std::string target = c.hybrid.empty() ? db_path(c) : c.hybrid;
  auto opened = open_spec(c, main_spec(c), how, target, /*main_store=*/true);
  if (!opened) return open_failed(opened.error(), target);
  const int rc = fn(*opened);
  if (auto r = opened->close(); !r) return rc == exit_ok || rc == exit_not_found ? op_error(r.error()) : rc;
  return rc;
}

}  // namespace keel_tool
