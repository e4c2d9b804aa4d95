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
// - Every decision goes to the log sink as one line; a fallback's line names
//   the backend, the reason, and that memory is not persisted.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "any_store.hpp"
#include "memory.hpp"
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
  // Where open_store() reports its decisions; empty: log_to_stderr.
  log_sink log{};

  static std::vector<errc> default_fallback_errors() {
    return {errc::locks_unsupported, errc::permission_denied, errc::io_error};
  }

  // Whether an open failing with `code` may fall back to memory under this
  // config. corruption and already_open_in_process never may.
  bool may_fall_back(errc code) const {
    if (!fallback_to_memory || code == errc::corruption || code == errc::already_open_in_process) return false;
    return std::find(fallback_on.begin(), fallback_on.end(), code) != fallback_on.end();
  }

  // `base` adjusted by the environment:
  //   PREFIX_USE_MEMORY_STORAGE   true: preferred = memory (no RocksDB at all);
  //                               false: no change
  //   PREFIX_FALLBACK_MEMORY      sets fallback_to_memory
  // Accepted values, in any case: 1/0, true/false, yes/no, on/off. Anything
  // else (the empty string included) is errc::invalid_argument naming the
  // variable and its value. Unset variables leave `base` as it is.
  static result<store_config> from_env(std::string_view prefix = "KEEL");
  static result<store_config> from_env(std::string_view prefix, store_config base) {
    auto use_memory = env_flag(std::string(prefix) + "_USE_MEMORY_STORAGE");
    if (!use_memory) return std::move(use_memory).error();
    auto fallback = env_flag(std::string(prefix) + "_FALLBACK_MEMORY");
    if (!fallback) return std::move(fallback).error();
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

// Opens the store `config` asks for, falling back to memory where the rules
// above allow. On failure the error's code is the preferred backend's and the
// message lists every attempt.
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
          : "data will be saved to '" + config.memory.persist_path.string() + "' (every acknowledged write is logged)";

  if (config.preferred == backend::memory) {
    return open_memory("opened the memory backend (as configured); " + memory_fate);
  }

  rocks_options ro = config.rocks;
  if (!config.path.empty()) ro.path = config.path;
  auto r = rocks_backend::open(ro);
  if (r) {
    log("opened the rocksdb backend at '" + ro.path.string() + "'");
    return Store(std::move(*r), {{backend::rocksdb, std::nullopt}});
  }
  keel::error failure = std::move(r).error();
  log("rocksdb backend failed (" + std::string(to_string(failure.code())) + "): " + failure.message());
  attempts.push_back({backend::rocksdb, failure});

  if (!config.may_fall_back(failure.code())) {
    std::string why = !config.fallback_to_memory ? "fallback to memory is not enabled"
                      : failure.code() == errc::corruption || failure.code() == errc::already_open_in_process
                          ? "this kind of error never falls back"
                          : "this kind of error is not in fallback_on";
    return keel::error(failure.code(), failure.message() + " [no fallback: " + why + "]");
  }
  return open_memory("falling back to the memory backend because rocksdb could not open (" +
                     std::string(to_string(failure.code())) + "); " + memory_fate);
}

}  // namespace keel
