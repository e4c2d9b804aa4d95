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

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <keel/keel.hpp>
#if KEEL_HAS_ETCD
#include <keel/etcd_any_store.hpp>
#endif
#if KEEL_HAS_POSTGRES
#include <keel/postgres.hpp>
#endif
#include <cstdlib>
#include <string>
#include <type_traits>
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
// writer creates a missing database (and says so). A modifier (drop-keyspace)
// opens read-write but, as a reader, never creates: a missing store exits 3.
// An etcd store is the same for all three (the cluster is there or not;
// nothing is created).
enum class access { read, write, modify };

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

// The PostgreSQL options of a store on the server: KEEL_POSTGRES and
// KEEL_POSTGRES_TABLE as store_config::from_env("KEEL") reads them (set but
// empty: invalid_argument), then --postgres (or `conninfo`, a doctor's
// postgres://... target), then `table` (postgres:TABLE) or --table; the
// table defaults to "keel". invalid_argument when no server is given.
inline keel::result<keel::store_config> postgres_config(const cli& c, const std::string& table,
                                                        const std::string& conninfo = "") {
  auto cfg = keel::store_config::from_env("KEEL");
  if (!cfg) return std::move(cfg).error();
  cfg->preferred = keel::backend::postgres;
  if (!conninfo.empty())
    cfg->postgres.conninfo = conninfo;
  else if (!c.postgres.empty())
    cfg->postgres.conninfo = c.postgres;
  if (!table.empty())
    cfg->postgres.table = table;
  else if (!c.table.empty())
    cfg->postgres.table = c.table;
  if (cfg->postgres.conninfo.empty())
    return keel::error(keel::errc::invalid_argument,
                       "no PostgreSQL server given: use --postgres CONNINFO or set KEEL_POSTGRES");
  return cfg;
}

// `s` quoted for a POSIX shell (for the command lines keel suggests).
inline std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// Opens the table `table` ("" : --table, else $KEEL_POSTGRES_TABLE, else
// "keel") of the server of --postgres / $KEEL_POSTGRES (docs/postgres.md),
// through open_store (never a fallback: --fallback and KEEL_FALLBACK_MEMORY
// get the reason in the error). The table is created if missing, by readers
// too (an empty store). `doctor_target` becomes the arguments of `keel
// doctor` for that server and table (the conninfo is repeated only when
// --postgres gave it).
inline keel::result<cli_store> open_postgres(const cli& c, const std::string& table, std::string& doctor_target) {
#if KEEL_HAS_POSTGRES
  auto cfg = postgres_config(c, table);
  if (!cfg) return std::move(cfg).error();
  if (c.fallback) cfg->fallback_to_memory = true;
  cfg->log = [](std::string_view) {};
  const char* env_table = std::getenv("KEEL_POSTGRES_TABLE");  // what `keel doctor` takes without --table
  doctor_target = c.postgres.empty() ? "" : "--postgres " + shell_quoted(c.postgres);
  if (cfg->postgres.table != (env_table && *env_table ? std::string(env_table) : std::string("keel")))
    doctor_target += (doctor_target.empty() ? "" : " ") + std::string("--table ") + shell_quoted(cfg->postgres.table);
  if (doctor_target.empty()) doctor_target = "(with KEEL_POSTGRES set)";
  return keel::open_store<cli_store>(*cfg);
#else
  (void)c, (void)table, (void)doctor_target;
  return keel::error(keel::errc::invalid_argument, no_postgres_backend("--postgres"));
#endif
}

// The main store (the one every command but migrate uses): its spec for
// open_spec(), and what chose it. An option chooses it (--db, --memory,
// --memory-file, --hybrid, --etcd / --etcd-prefix) and then wins over every
// environment variable; else the environment does, in the order of
// store_config::from_env: KEEL_USE_MEMORY_STORAGE, then KEEL_ETCD_ENDPOINTS,
// then KEEL_POSTGRES, then KEEL_DB (what --db defaults to).
struct main_store_choice {
  std::string spec;          // "memory:FILE", "hybrid:PATH", "etcd:", or a RocksDB directory ("" if none)
  std::string env_variable;  // KEEL_USE_MEMORY_STORAGE, KEEL_ETCD_ENDPOINTS or KEEL_POSTGRES when it chose the store
  std::string memory_by;     // a non-persisted memory store: what asked for it (--memory, KEEL_USE_MEMORY_STORAGE=...)
};

// The store options given, as the user wrote them (for messages).
inline std::vector<std::string> store_options_given(const cli& c) {
  std::vector<std::string> given;
  if (!c.db.empty()) given.push_back("--db");
  if (!c.memory_file.empty())
    given.push_back("--memory-file");
  else if (c.memory)
    given.push_back("--memory");
  if (!c.hybrid.empty()) given.push_back("--hybrid");
  if (!c.etcd.empty() || !c.etcd_prefix.empty()) given.push_back(c.etcd.empty() ? "--etcd-prefix" : "--etcd");
  if (!c.postgres.empty()) given.push_back("--postgres");
  return given;
}

// Two options naming different stores are a usage error (exit 2): the
// returned code, already reported; nullopt when at most one store is named.
inline std::optional<int> check_store_options(const cli& c) {
  const auto given = store_options_given(c);
  if (given.size() > 1)
    return usage_error(given[0] + " and " + given[1] + " name two different stores; give one of them");
  if (!c.hybrid.empty() && c.fallback)
    return usage_error("--hybrid cannot be combined with --fallback: a hybrid store never falls back");
  return std::nullopt;
}

inline keel::result<main_store_choice> choose_main_store(const cli& c) {
  main_store_choice m;
  if (c.memory) {
    m.spec = "memory:" + c.memory_file;
    if (c.memory_file.empty()) m.memory_by = "--memory";
    return m;
  }
  if (!c.hybrid.empty()) {
    m.spec = "hybrid:" + c.hybrid;
    return m;
  }
  if (!c.etcd.empty() || !c.etcd_prefix.empty()) {
    m.spec = "etcd:";
    return m;
  }
  if (!c.postgres.empty()) {
    m.spec = "postgres:";
    return m;
  }
  if (!c.db.empty()) {
    m.spec = c.db;
    return m;
  }
  auto use_memory = keel::store_config::env_flag("KEEL_USE_MEMORY_STORAGE");
  if (!use_memory) return std::move(use_memory).error();
  if (*use_memory && **use_memory) {
    m.spec = "memory:";
    m.env_variable = "KEEL_USE_MEMORY_STORAGE";
    m.memory_by = "KEEL_USE_MEMORY_STORAGE=" + std::string(std::getenv("KEEL_USE_MEMORY_STORAGE"));
    return m;
  }
  if (std::getenv("KEEL_ETCD_ENDPOINTS")) {
    m.spec = "etcd:";
    m.env_variable = "KEEL_ETCD_ENDPOINTS";
    return m;
  }
  if (const char* pg = std::getenv("KEEL_POSTGRES"); pg && *pg) {
    m.spec = "postgres:";
    m.env_variable = "KEEL_POSTGRES";
    return m;
  }
  m.spec = db_path(c);
  return m;
}

// What `cmd` would lose: a write command on a memory store that is not
// persisted. Reported as a usage error (exit 2) before anything is opened.
inline int refuse_forgetful_write(const std::string& cmd, const std::string& memory_by) {
  return usage_error(cmd + " would write to a memory store that is not persisted (chosen by " + memory_by +
                     "): the data would be gone when keel exits, so nothing was written. Use --memory-file FILE "
                     "for a memory store kept in FILE, or --db PATH for a RocksDB database" +
                     (memory_by.rfind("KEEL_USE_MEMORY_STORAGE", 0) == 0 ? " (or unset KEEL_USE_MEMORY_STORAGE)"
                                                                          : std::string()));
}

// The store path `p` names ("db/" -> "db"), and the directory it is created
// in ("." for a bare name).
inline std::filesystem::path store_path_named(const std::filesystem::path& p) {
  return p.has_filename() ? p : p.parent_path();
}
inline std::filesystem::path store_parent_of(const std::filesystem::path& p) {
  const auto parent = store_path_named(p).parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

// Where a write may create a store at `path` (a directory: a RocksDB
// database or a hybrid store), as sqlite3 does: only the last component of
// the path, so its parent must exist; and not among other files. `kind` names
// the store in messages ("database", "hybrid store"); `ignorable` are the
// entries a failed first open may leave, which do not count as other files.
// Returns the error (exit 3), or nothing when the path may be created or
// holds the store already.
inline std::optional<keel::error> check_creatable(const std::filesystem::path& path, bool exists_as_store,
                                                  const std::string& kind, bool (*ignorable)(const std::string&)) {
  namespace fs = std::filesystem;
  if (exists_as_store) return std::nullopt;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  const std::string where = "'" + path.string() + "'";
  if (!fs::exists(st)) {
    const fs::path parent = store_parent_of(path);
    std::error_code pec;
    if (!fs::is_directory(parent, pec)) {
      return keel::error(keel::errc::not_found,
                         "cannot create a new " + kind + " at " + where + ": its parent directory '" +
                             parent.string() + "' does not exist (keel creates only the last component of the "
                             "path); create it first, or check the path");
    }
    return std::nullopt;
  }
  if (!fs::is_directory(st)) return std::nullopt;  // the open names what is wrong
  std::vector<std::string> foreign;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (!ignorable(n)) foreign.push_back(std::move(n));
  }
  const std::size_t count = foreign.size();
  if (count == 0) return std::nullopt;
  std::sort(foreign.begin(), foreign.end());
  std::string names;
  for (std::size_t i = 0; i < count && i < 4; ++i) names += (i ? ", '" : "'") + foreign[i] + "'";
  if (count > 4) names += " and " + std::to_string(count - 4) + " more";
  return keel::error(keel::errc::invalid_argument,
                     where + " is a directory that holds no " + kind + " but " + std::to_string(count) +
                         (count == 1 ? " other entry (" : " other entries (") + names +
                         "): keel does not create a " + kind +
                         " among other files; give a new path or an empty directory");
}

// Entries a first RocksDB open that failed may leave (no data in them).
inline bool rocksdb_leftover(const std::string& n) { return n == "LOCK" || n == "LOG" || n.rfind("LOG.old.", 0) == 0; }
// Entries of a hybrid store that has not written TIER yet.
inline bool hybrid_leftover(const std::string& n) { return n == "keel.lock" || n == "memory"; }

// Opens the hybrid store at `path` (docs/hybrid.md). A reader refuses a path
// that holds no hybrid store (nothing is created); a writer creates one.
inline keel::result<cli_store> open_hybrid(const std::string& path, access how, std::string& doctor_target) {
  if (path.empty()) return keel::error(keel::errc::invalid_argument, "hybrid: needs a PATH (hybrid:PATH)");
  doctor_target = path;
  const std::filesystem::path tier = keel::hybrid_layout{path}.tier();
  std::error_code ec;
  const bool exists = std::filesystem::exists(tier, ec);
  if (how != access::write && !exists && !ec) {
    return keel::error(keel::errc::not_found,
                       "no database at '" + path + "' (no hybrid store there: no TIER file; nothing was created)");
  }
  if (how == access::write && !ec) {
    if (auto refused = check_creatable(path, exists, "hybrid store", hybrid_leftover)) return *refused;
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

// Opens the store `spec`; the spec alone chooses the backend:
//   "memory:" / "memory:FILE"  a memory store (persisted in FILE; "memory:"
//                              alone takes --memory-file);
//   "hybrid:PATH"              the hybrid store at PATH (no read-only open:
//                              a reader takes its lock too, but creates
//                              nothing);
//   "postgres:" / "postgres:TABLE"  the table (default --table, $KEEL_POSTGRES_TABLE,
//                              "keel") of the server of --postgres / $KEEL_POSTGRES;
//   "etcd:" / "etcd:PREFIX"    the etcd cluster of --etcd / $KEEL_ETCD_ENDPOINTS,
//                              with PREFIX or --etcd-prefix / $KEEL_ETCD_PREFIX;
//   anything else              a RocksDB directory, whatever the environment
//                              says (choose_main_store() has let it choose
//                              the main store already).
// store_config::from_env("KEEL") supplies the fallback (reads only: a write
// command never falls back, a memory store would forget the write) and the
// etcd endpoints and prefix. `doctor_target` is what an open failure suggests
// to run `keel doctor` on: it comes in as the path, and becomes etcd://...
// when the store is a cluster.
inline keel::result<cli_store> open_spec(const cli& c, const std::string& spec, access how,
                                         std::string& doctor_target) {
  if (spec.rfind("hybrid:", 0) == 0) return open_hybrid(spec.substr(7), how, doctor_target);
  if (spec.rfind("postgres:", 0) == 0) return open_postgres(c, spec.substr(9), doctor_target);
  keel::store_config base;
  const bool memory_spec = spec == "memory" || spec.rfind("memory:", 0) == 0;
  const bool etcd_spec = spec.rfind("etcd:", 0) == 0;
  base.memory.persist_path = c.memory_file;
  if (memory_spec) {
    if (spec.size() > 7) base.memory.persist_path = spec.substr(7);
  } else if (!etcd_spec) {
    base.path = spec;
  }
  auto cfg = keel::store_config::from_env("KEEL", base);
  if (!cfg) return std::move(cfg).error();
  if (c.fallback) cfg->fallback_to_memory = true;
  const bool fallback_asked = cfg->fallback_to_memory;
  if (how != access::read) {
    // A write that fell back would go to a memory store that forgets it.
    cfg->fallback_to_memory = false;
    cfg->fallback_on.clear();
  }
  cfg->preferred = memory_spec ? keel::backend::memory : etcd_spec ? keel::backend::etcd : keel::backend::rocksdb;
  if (etcd_spec && spec.size() > 5) cfg->etcd.prefix = spec.substr(5);
  // Quiet unless something noteworthy happens (a fallback).
  cfg->log = [](std::string_view line) {
    if (line.find("falling back") != std::string_view::npos)
      std::fprintf(stderr, "keel: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  if (cfg->preferred == keel::backend::etcd) {
    if (!has_etcd_backend)
      return keel::error(keel::errc::invalid_argument,
                         no_etcd_backend(etcd_spec && c.etcd.empty() && c.etcd_prefix.empty() && spec.size() == 5
                                             ? std::string("KEEL_ETCD_ENDPOINTS")
                                             : "'" + spec + "'"));
    if (!c.etcd.empty()) {
      cfg->etcd.endpoints = split_endpoints(c.etcd);
    } else {  // from $KEEL_ETCD_ENDPOINTS: the forms --etcd takes (HOST:PORT gets http://)
      std::string list;
      for (const auto& e : cfg->etcd.endpoints) list += (list.empty() ? "" : ",") + e;
      cfg->etcd.endpoints = split_endpoints(list);
    }
    if (!c.etcd_prefix.empty() && !(etcd_spec && spec.size() > 5)) cfg->etcd.prefix = c.etcd_prefix;
    if (c.etcd_connect_timeout) cfg->etcd.connect_timeout = *c.etcd_connect_timeout;
    if (c.etcd_max_request_bytes) cfg->etcd.max_request_bytes = *c.etcd_max_request_bytes;
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
                       "no database given: use --db PATH or set KEEL_DB (or --memory-file FILE for a memory store)");
  }
  if (cfg->preferred == keel::backend::memory) {
    // A read of a persisted memory store whose file is missing would save an
    // empty file at close: refuse it as for a RocksDB path.
    const auto& file = cfg->memory.persist_path;
    std::error_code ec;
    const bool missing = !file.empty() && !std::filesystem::exists(file, ec) && !ec;
    if (how != access::write && missing) {
      return keel::error(keel::errc::not_found,
                         "no database at '" + file.string() + "' (no such memory store file; nothing was created)");
    }
    return keel::open_store<cli_store>(*cfg);
  }

  const std::string where = "'" + cfg->path.string() + "'";
  const keel::directory_contents before = keel::inspect_directory(cfg->path);
  using kind = keel::directory_contents;
  if (how != access::write) {
    if (before == kind::missing || before == kind::empty) {
      return keel::error(keel::errc::not_found,
                         "no database at " + where + " (nothing was created; put or import creates one)");
    }
    if (how == access::read) cfg->rocks.read_only = true;
  } else if (before == kind::missing || before == kind::empty) {
    if (auto refused = check_creatable(cfg->path, false, "database", rocksdb_leftover)) return *refused;
  }
  // Each keel command is a run of its own, and `keel watch --after` in a later
  // run replays this one's erase_ranges: list their keys always (docs/watch.md).
  cfg->rocks.watch_list_erased_keys = true;
  auto store = keel::open_store<cli_store>(*cfg);
  if (!store) {
    if (how != access::read && fallback_asked)
      return keel::error(store.error().code(),
                         store.error().message() +
                             " (a write command never falls back to memory: the memory store would forget the "
                             "write when keel exits)");
    return store;
  }
  if (store->backend() != keel::backend::rocksdb) return store;
  if (how == access::write && (before == kind::missing || before == kind::empty)) {
    std::fprintf(stderr, "keel: created a new database at %s\n", where.c_str());
  } else if (how == access::read) {
    // The store sees the data as of this open; say so when someone is
    // writing. This process holds no lock on LOCK (a read-only open takes
    // none), so it may open the file to ask F_GETLK where /proc/locks is
    // missing.
    if (auto h = keel::lock_file_holder(cfg->path / "LOCK", /*may_open_lock_file=*/true)) {
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

// Says on stderr which store the environment chose (nothing when an option
// or KEEL_DB did), with the table or prefix it will use (an option such as
// --table or --etcd-prefix wins over its variable, as in open_spec()).
inline void name_env_choice(const cli& c, const main_store_choice& m) {
  if (m.env_variable == "KEEL_USE_MEMORY_STORAGE") {
    std::fprintf(stderr, "keel: %s chose a memory store (not persisted: it starts empty and is gone when keel exits)\n",
                 m.memory_by.c_str());
  } else if (m.env_variable == "KEEL_ETCD_ENDPOINTS") {
    const char* prefix = std::getenv("KEEL_ETCD_PREFIX");
    std::fprintf(stderr, "keel: KEEL_ETCD_ENDPOINTS chose the etcd cluster at %s%s%s%s (--db, --memory-file or --hybrid "
                 "choose another store)\n",
                 std::getenv("KEEL_ETCD_ENDPOINTS"), prefix ? ", prefix '" : "", prefix ? prefix : "",
                 prefix ? "' (KEEL_ETCD_PREFIX)" : "");
  } else if (m.env_variable == "KEEL_POSTGRES") {
    const char* env_table = std::getenv("KEEL_POSTGRES_TABLE");
    const std::string table = !c.table.empty() ? c.table : env_table && *env_table ? env_table : "keel";
    const char* from = !c.table.empty() ? " (--table)" : env_table && *env_table ? " (KEEL_POSTGRES_TABLE)" : "";
    std::fprintf(stderr, "keel: KEEL_POSTGRES chose a PostgreSQL server, table '%s'%s (--db, --memory-file, --hybrid or "
                 "--etcd choose another store)\n",
                 table.c_str(), from);
  }
}

// Whether `store` is a hybrid store whose data is in its memory tier.
inline bool hybrid_in_memory(cli_store& store) {
  auto* h = store.get_if<keel::HybridPolicy<>>();
  return h && h->policy().current_tier() == keel::HybridPolicy<>::tier::small;
}

// After a write command on a hybrid store (`was_in_memory`: its data was in
// the memory tier before the command): the move to RocksDB, when due,
// happens now (in the background it would be stopped by the close: keel
// lives for one command; compact may have moved it already), and is
// reported. A failed move is reported too; the data stays in the memory tier
// and the command still succeeds.
inline void move_hybrid_if_due(cli_store& store, bool was_in_memory) {
  auto* h = store.get_if<keel::HybridPolicy<>>();
  if (!h || !was_in_memory) return;
  auto& policy = h->policy();
  auto moved = policy.move_if_due();
  if (!moved) {
    std::fprintf(stderr, "keel: %s\n", moved.error().message().c_str());
  } else if (*moved) {
    std::fprintf(stderr, "keel: the hybrid store holds %llu bytes or more in memory: moved its data to RocksDB (%s)\n",
                 static_cast<unsigned long long>(policy.options_used().spill_bytes),
                 keel::hybrid_layout{policy.options_used().path}.rocksdb_dir().string().c_str());
  }
}

// Opens the main store, runs fn(store) and closes it. Returns fn's exit code;
// a failed open exits 3, a failed close 5 (unless fn already failed). A
// write command on a memory store that is not persisted is refused (exit 2).
// A store a write command created stays when the command fails later: keel
// never removes a store (nor its lock file, which another process may have
// opened meanwhile), so commands check their input before the store is
// opened (cmd_import verifies the dump, cmd_checkpoint its DIR, cmd_migrate
// opens SRC first).
// `before_open()`, when given, checks the command's input once the store is
// chosen and before it is opened (and so before it is created): an exit code
// other than exit_ok is returned as it is.
template <class F, class Check = int (*)()>
int with_store(const cli& c, access how, F&& fn, Check&& before_open = nullptr) {
  auto choice = choose_main_store(c);
  std::string target = c.hybrid.empty() ? db_path(c) : c.hybrid;
  if (!choice) return open_failed(choice.error(), "");
  if (how != access::read && !choice->memory_by.empty()) return refuse_forgetful_write(c.args[0], choice->memory_by);
  name_env_choice(c, *choice);
  if constexpr (!std::is_same_v<std::decay_t<Check>, int (*)()>) {
    if (const int rc = before_open(); rc != exit_ok) return rc;
  }
  auto opened = open_spec(c, choice->spec, how, target);
  if (!opened) return open_failed(opened.error(), target);
  const bool was_in_memory = hybrid_in_memory(*opened);
  const int rc = fn(*opened);
  if (rc == exit_ok && how != access::read) move_hybrid_if_due(*opened, was_in_memory);
  if (auto r = opened->close(); !r) return rc == exit_ok || rc == exit_not_found ? op_error(r.error()) : rc;
  return rc;
}

}  // namespace keel_tool
