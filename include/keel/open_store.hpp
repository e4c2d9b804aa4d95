// keel: choosing a backend at run time, with explicit, reported, safe
// fallback to memory.
//
//   auto config = keel::store_config::from_env("MERIDIAN", {.path = "data/db"});
//   if (!config) die(config.error().message());
//   auto store = keel::open_store(*config);          // keel::any_store
//   if (store && store->fallback_reason()) warn_user(...);
//
// Fallback rules:
// - Only when fallback_to_memory is true, and only for the error kinds in
//   fallback_on (default: locks_unsupported, permission_denied, io_error).
//   lock_held_by_other_process falls back only if you add it to fallback_on.
// - Never for corruption (a fallback would hide data loss) nor for
//   already_open_in_process (a bug in the calling program), even if listed.
// - Never over existing data: when the directory already holds a database
//   (a CURRENT file or other RocksDB files, or keel cannot look inside), only
//   lock errors may fall back (locks_unsupported; lock_held_by_other_process
//   where opted in), since they say nothing about the data. Any other error
//   (io_error, permission_denied, corruption, a missing file, no_space, ...)
//   goes to the caller, with the path and the cause, whatever fallback_on
//   says: an empty memory store must never stand in for the user's data.
//   A lock error that does fall back over a database logs that the database
//   at PATH exists and is NOT being used.
// - Every decision goes to the log sink as one line; a fallback's line names
//   the backend, the reason, and that memory is not persisted.
// - A failed open's message ends with "[no fallback: WHY]" only when a
//   fallback was possible and relevant: fallback_to_memory was set (WHY says
//   what kept it from happening), or it was not set and would have applied
//   to this error (WHY: "fallback to memory is not enabled"). Otherwise the
//   message is the backend's error alone.
// - Never for the hybrid store nor for PostgreSQL: keel cannot look inside
//   them without opening them, so an empty memory store must not stand in
//   for what they may hold (with fallback_to_memory set, the error says so).
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "any_store.hpp"
#include "etcd_options.hpp"
#include "hybrid.hpp"
#include "memory.hpp"
#include "postgres/options.hpp"
#include "rocksdb.hpp"

namespace keel {

// Receives one line per decision of open_store(), without a trailing newline.
using log_sink = std::function<void(std::string_view line)>;

// The default sink: the line on stderr, prefixed "keel: ".
inline void log_to_stderr(std::string_view line) {
  std::fprintf(stderr, "keel: %.*s\n", static_cast<int>(line.size()), line.data());
}

struct store_config {
  // Where the RocksDB store lives (overrides rocks.path).
  std::filesystem::path path{};
  backend preferred = backend::rocksdb;
  // Open a memory store when the preferred RocksDB store cannot open with an
  // error kind listed in fallback_on.
  bool fallback_to_memory = false;
  std::vector<errc> fallback_on = default_fallback_errors();
  // Further RocksDB settings (sync_writes, env, customize, ...).
  rocks_options rocks{};
  memory_options memory{};
  // The cluster backend (preferred = backend::etcd): endpoints and prefix.
  // open_store() opens it only into a store type that holds EtcdPolicy
  // (keel::etcd_any_store, <keel/etcd_any_store.hpp>).
  etcd_options etcd{};
  // The hybrid store (preferred = backend::hybrid; path, if set, overrides
  // hybrid.path). open_store() opens it only into a store type that holds
  // HybridPolicy<> (e.g. basic_any_store<..., HybridPolicy<>>). Never falls
  // back: the hybrid store has its own memory tier, and an empty memory store
  // must not stand in for its data.
  hybrid_options hybrid{};
  // The PostgreSQL backend (preferred = backend::postgres): conninfo, table,
  // pool and timeouts. open_store() opens it only into a store type that
  // holds PostgresPolicy (keel::postgres_any_store,
  // <keel/postgres_any_store.hpp>, needs libpq). Never falls back: keel
  // cannot look into the table without reaching the server, and an empty
  // memory store must not stand in for what it may hold.
  postgres_options postgres{};
  // Where open_store() reports its decisions; empty: log_to_stderr.
  log_sink log{};

  static std::vector<errc> default_fallback_errors() {
    return {errc::locks_unsupported, errc::permission_denied, errc::io_error};
  }

  // Whether an open failing with `code` may fall back to memory under this
  // config. corruption and already_open_in_process never may. Over existing
  // data (`over_existing_data`: the directory holds a database) only the
  // lock errors may (see the rules at the top of this file).
  bool may_fall_back(errc code, bool over_existing_data = false) const {
    return fallback_to_memory && would_fall_back_if_enabled(code, over_existing_data);
  }
  // Whether it may with fallback_to_memory set (whether it is set or not).
  bool would_fall_back_if_enabled(errc code, bool over_existing_data = false) const {
    if (code == errc::corruption || code == errc::already_open_in_process) return false;
    if (over_existing_data && !is_lock_error(code)) return false;
    return std::find(fallback_on.begin(), fallback_on.end(), code) != fallback_on.end();
  }

  // The errors that say nothing about the data: the only ones that may fall
  // back over an existing database.
  static bool is_lock_error(errc code) noexcept {
    return code == errc::locks_unsupported || code == errc::lock_held_by_other_process;
  }

  // `base` adjusted by the environment:
  //   PREFIX_USE_MEMORY_STORAGE   true: preferred = memory (no RocksDB at all);
  //                               false: no change
  //   PREFIX_FALLBACK_MEMORY      sets fallback_to_memory
  //   PREFIX_ETCD_ENDPOINTS       comma-separated etcd client URLs: sets
  //                               etcd.endpoints and preferred = etcd
  //                               (unless PREFIX_USE_MEMORY_STORAGE is true)
  //   PREFIX_ETCD_PREFIX          sets etcd.prefix
  //   PREFIX_POSTGRES             a libpq conninfo: sets postgres.conninfo and
  //                               preferred = postgres (unless
  //                               PREFIX_USE_MEMORY_STORAGE is true or
  //                               PREFIX_ETCD_ENDPOINTS is set: the order is
  //                               memory, etcd, PostgreSQL, then base's
  //                               RocksDB path, as the keel tool's)
  //   PREFIX_POSTGRES_TABLE       sets postgres.table
  // Boolean values, in any case: 1/0, true/false, yes/no, on/off. Anything
  // else (the empty string included) is errc::invalid_argument naming the
  // variable and its value; so is an empty PREFIX_ETCD_ENDPOINTS,
  // PREFIX_POSTGRES or PREFIX_POSTGRES_TABLE (set but empty is a mistake, not
  // a request for another store). Unset variables leave `base` as it is.
  static result<store_config> from_env(std::string_view prefix = "KEEL");
  static result<store_config> from_env(std::string_view prefix, store_config base) {
    auto use_memory = env_flag(std::string(prefix) + "_USE_MEMORY_STORAGE");
    if (!use_memory) return std::move(use_memory).error();
    auto fallback = env_flag(std::string(prefix) + "_FALLBACK_MEMORY");
    if (!fallback) return std::move(fallback).error();
    if (const char* eps = std::getenv((std::string(prefix) + "_ETCD_ENDPOINTS").c_str())) {
      std::vector<std::string> list;
      std::string_view rest(eps);
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (!item.empty()) list.emplace_back(item);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      if (list.empty()) {
        return keel::error(errc::invalid_argument, "environment variable " + std::string(prefix) +
                                                       "_ETCD_ENDPOINTS is empty; expected http://HOST:PORT[,...]");
      }
      base.etcd.endpoints = std::move(list);
      base.preferred = backend::etcd;
    }
    if (const char* p = std::getenv((std::string(prefix) + "_ETCD_PREFIX").c_str())) base.etcd.prefix = p;
    const std::string pg_variable = std::string(prefix) + "_POSTGRES";
    if (const char* pg = std::getenv(pg_variable.c_str())) {
      if (*pg == '\0')
        return keel::error(errc::invalid_argument, "environment variable " + pg_variable +
                                                       " is empty; expected a libpq connection string "
                                                       "(\"host=db1 dbname=app\" or \"postgresql://app@db1/app\")");
      base.postgres.conninfo = pg;
      if (base.preferred != backend::etcd) base.preferred = backend::postgres;
    }
    if (const char* t = std::getenv((pg_variable + "_TABLE").c_str())) {
      if (*t == '\0')
        return keel::error(errc::invalid_argument,
                           "environment variable " + pg_variable + "_TABLE is empty; expected a table name");
      base.postgres.table = t;
    }
    if (*use_memory && **use_memory) base.preferred = backend::memory;
    if (*fallback) base.fallback_to_memory = **fallback;
    return base;
  }

  // Parses a boolean environment variable: nullopt when unset.
  static result<std::optional<bool>> env_flag(const std::string& name) {
    const char* raw = std::getenv(name.c_str());
    if (!raw) return std::optional<bool>();
    std::string v(raw);
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (v == "1" || v == "true" || v == "yes" || v == "on") return std::optional<bool>(true);
    if (v == "0" || v == "false" || v == "no" || v == "off") return std::optional<bool>(false);
    return keel::error(errc::invalid_argument, "environment variable " + name + " has the value '" + raw +
                                                   "'; expected one of 1/0, true/false, yes/no, on/off");
  }
};

inline result<store_config> store_config::from_env(std::string_view prefix) { return from_env(prefix, store_config{}); }

namespace detail {
// Whether the any_store type Store can hold a basic_store<P>.
template <class Store, class P>
struct any_store_holds : std::false_type {};
template <class... Ps, class P>
struct any_store_holds<basic_any_store<Ps...>, P> : std::bool_constant<(std::is_same_v<Ps, P> || ...)> {};
// T, made dependent on U (defers the use of a type that may be incomplete).
template <class T, class U>
struct dependent_type {
  using type = T;
};
}  // namespace detail

// Opens the store `config` asks for, falling back to memory where the rules
// above allow. On failure the error's code is the preferred backend's and the
// message lists every attempt. backend::etcd needs a Store that holds
// EtcdPolicy (etcd_any_store); with another Store it is invalid_argument.
template <class Store = any_store>
result<Store> open_store(const store_config& config) {
  using memory_backend = basic_store<MemoryPolicy>;
  using rocks_backend = basic_store<RocksPolicy<NativeTuning>>;
  const log_sink& log = config.log ? config.log : log_sink(log_to_stderr);
  std::vector<open_attempt> attempts;

  auto open_memory = [&](std::string why) -> result<Store> {
    auto m = memory_backend::open(config.memory);
    if (!m) {
      log("memory backend failed to open: " + m.error().message());
      std::string all;
      for (const auto& a : attempts) all += std::string(to_string(a.backend)) + ": " + a.error->message() + "; ";
      return keel::error(m.error().code(), all + "memory: " + m.error().message());
    }
    log(why);
    attempts.push_back({backend::memory, std::nullopt});
    return Store(std::move(*m), std::move(attempts));
  };

  // What happens to the data of a memory store, for the log line.
  const std::string memory_fate =
      config.memory.persist_path.empty()
          ? std::string("data will NOT be persisted")
          : "data will be saved to '" + detail::path_text(config.memory.persist_path) + "' (every acknowledged write is logged)";

  if (config.preferred == backend::memory) {
    return open_memory("opened the memory backend (as configured); " + memory_fate);
  }

  if (config.preferred == backend::hybrid) {
    if constexpr (detail::any_store_holds<Store, HybridPolicy<>>::value) {
      hybrid_options ho = config.hybrid;
      if (!config.path.empty()) ho.path = config.path;
      auto h = basic_store<HybridPolicy<>>::open(ho);
      if (!h) {
        if (!config.fallback_to_memory) return std::move(h).error();
        return keel::error(h.error().code(), h.error().message() + " [no fallback: a hybrid store never falls back]");
      }
      log("opened the hybrid store at '" + detail::path_text(ho.path) + "' (its data is in its " + h->stats()->tier + " tier)");
      return Store(std::move(*h), {{backend::hybrid, std::nullopt}});
    } else {
      return keel::error(errc::invalid_argument,
                         "open_store: the configuration asks for the hybrid store, but this program's store type has "
                         "no hybrid backend; use a basic_any_store that holds keel::HybridPolicy<>");
    }
  }

  if (config.preferred == backend::etcd) {
    if constexpr (detail::any_store_holds<Store, EtcdPolicy>::value) {
      using etcd_backend = basic_store<typename detail::dependent_type<EtcdPolicy, Store>::type>;
      auto e = etcd_backend::open(config.etcd);
      if (e) {
        log("opened the etcd backend (prefix '" + config.etcd.prefix + "', " +
            std::to_string(config.etcd.endpoints.size()) + " endpoint(s))");
        return Store(std::move(*e), {{backend::etcd, std::nullopt}});
      }
      keel::error failure = std::move(e).error();
      log("etcd backend failed (" + std::string(to_string(failure.code())) + "): " + failure.message());
      attempts.push_back({backend::etcd, failure});
      if (!config.may_fall_back(failure.code())) {
        if (!config.fallback_to_memory && !config.would_fall_back_if_enabled(failure.code())) return failure;
        return keel::error(failure.code(), failure.message() + (config.fallback_to_memory
                                                                     ? " [no fallback: this kind of error does not fall back]"
                                                                     : " [no fallback: fallback to memory is not enabled]"));
      }
      return open_memory("falling back to the memory backend because etcd could not open (" +
                         std::string(to_string(failure.code())) + "); " + memory_fate);
    } else {
      return keel::error(errc::invalid_argument,
                         "open_store: the configuration asks for the etcd backend, but this program's store type has "
                         "no etcd backend; use keel::etcd_any_store (<keel/etcd_any_store.hpp>, needs libcurl)");
    }
  }

  if (config.preferred == backend::postgres) {
    if constexpr (detail::any_store_holds<Store, PostgresPolicy>::value) {
      using postgres_backend = basic_store<typename detail::dependent_type<PostgresPolicy, Store>::type>;
      auto p = postgres_backend::open(config.postgres);
      if (!p) {
        keel::error failure = std::move(p).error();
        log("postgres backend failed (" + std::string(to_string(failure.code())) + "): " + failure.message());
        if (!config.fallback_to_memory) return failure;
        return keel::error(failure.code(),
                           failure.message() + " [no fallback: a PostgreSQL store never falls back to memory: keel "
                                               "cannot look into the table without the server, and an empty memory "
                                               "store must not stand in for what it may hold]");
      }
      log("opened the postgres backend (table '" + config.postgres.table + "')");
      return Store(std::move(*p), {{backend::postgres, std::nullopt}});
    } else {
      return keel::error(errc::invalid_argument,
                         "open_store: the configuration asks for the PostgreSQL backend, but this program's store "
                         "type has no PostgreSQL backend; use keel::postgres_any_store (<keel/postgres_any_store.hpp>, "
                         "needs libpq)");
    }
  }

  rocks_options ro = config.rocks;
  if (!config.path.empty()) ro.path = config.path;
  // Looked at before the open, which may create files.
  const detail::db_dir_state before = detail::inspect_db_dir(ro.path);
  const bool existing_data = before.may_hold_data();
  auto r = rocks_backend::open(ro);
  if (r) {
    log("opened the rocksdb backend at '" + detail::path_text(ro.path) + "'");
    return Store(std::move(*r), {{backend::rocksdb, std::nullopt}});
  }
  keel::error failure = std::move(r).error();
  log("rocksdb backend failed (" + std::string(to_string(failure.code())) + "): " + failure.message());
  attempts.push_back({backend::rocksdb, failure});

  const errc code = failure.code();
  if (!config.may_fall_back(code, existing_data)) {
    // Not worth a word when enabling the fallback would have changed nothing.
    if (!config.fallback_to_memory && !config.would_fall_back_if_enabled(code, existing_data)) return failure;
    const std::string what = before.what == detail::db_dir_state::kind::unknown
                                 ? "keel cannot look inside '" + detail::path_text(ro.path) + "', so it may hold a database"
                                 : "'" + detail::path_text(ro.path) + "' holds a database (" + detail::join_names(before.files) +
                                       ")";
    std::string why = !config.fallback_to_memory ? "fallback to memory is not enabled"
                      : code == errc::corruption || code == errc::already_open_in_process
                          ? "this kind of error never falls back"
                      : existing_data && !store_config::is_lock_error(code)
                          ? what + ": an empty memory store must not stand in for its data"
                          : "this kind of error is not in fallback_on";
    return keel::error(code, failure.message() + " [no fallback: " + why + "]");
  }
  std::string line = "falling back to the memory backend because rocksdb could not open (" +
                     std::string(to_string(code)) + "); " + memory_fate;
  if (existing_data) line += "; the database at '" + detail::path_text(ro.path) + "' exists and is NOT being used";
  return open_memory(std::move(line));
}

}  // namespace keel
