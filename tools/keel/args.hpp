// keel tool: the command line. The tool's options, before or after the
// command (struct cli, parse_options), and the range options of scan, count,
// export, del, compact (range_opts, parse_range). "--" ends the options.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <keel/contract.hpp>  // keyspace_name_error
#include <keel/key_range.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exit_codes.hpp"
#include "text.hpp"

namespace keel_tool {

// The options given before the command, and the command with its arguments.
struct cli {
  std::string db;
  std::string memory_file;  // --memory-file: the memory store persists there
  std::string hybrid;       // --hybrid PATH: a hybrid store (memory while small, RocksDB when large)
  std::string etcd;         // --etcd URL[,URL...]: the etcd cluster (only with the etcd backend)
  std::string etcd_prefix;  // --etcd-prefix P: the store's key prefix in the cluster
  // --etcd-connect-timeout MS: etcd_options::connect_timeout (default 1000 ms), also doctor etcd://'s.
  std::optional<std::chrono::milliseconds> etcd_connect_timeout;
  // --etcd-max-request-bytes N: the cluster's --max-request-bytes, etcd_options::max_request_bytes
  // (default 1572864): what import and migrate check each record against and size batches by.
  std::optional<std::size_t> etcd_max_request_bytes;
  std::string postgres;     // --postgres CONNINFO: a PostgreSQL server (only with the PostgreSQL backend)
  std::string table;        // --table NAME: the store's table on that server
  bool memory = false, fallback = false, json = false, raw = false;
  bool help = false;     // -h / --help: print the usage and exit 0
  bool version = false;  // --version: print the version and exit 0
  bool escape_all = false;  // --escape: escape every non-ASCII byte, UTF-8 text too
  bool keep_utf8 = false;  // print keys and values that are UTF-8 text as they are (UTF-8 locale, no --escape)
  std::optional<bool> progress;
  // --keyspace NAME / -k NAME: the keyspace a data command works on, its
  // bytes (NAME unescaped as a KEY is); "" (the default) is the store's
  // default keyspace. keyspace_given: the option was given (commands that
  // work on the whole store refuse it).
  std::string keyspace;
  bool keyspace_given = false;
  std::vector<std::string> args;  // command and its arguments
  // args[literal_from...] came after "--": arguments, never options.
  std::size_t literal_from = static_cast<std::size_t>(-1);

  bool is_option(std::size_t arg) const { return arg < literal_from && args[arg].rfind("--", 0) == 0; }

  bool show_progress() const { return progress.value_or(::isatty(2) == 1); }
};

// Whether this keel can open an etcd cluster (tools/meson.build defines
// KEEL_HAS_ETCD when keel is built with the etcd backend).
#if KEEL_HAS_ETCD
constexpr bool has_etcd_backend = true;
#else
constexpr bool has_etcd_backend = false;
#endif

// Whether this keel can open a PostgreSQL table (tools/meson.build defines
// KEEL_HAS_POSTGRES when keel is built with the PostgreSQL backend).
#if KEEL_HAS_POSTGRES
constexpr bool has_postgres_backend = true;
#else
constexpr bool has_postgres_backend = false;
#endif

// The message for --postgres, --table, postgres: and KEEL_POSTGRES without the backend.
inline std::string no_postgres_backend(std::string_view what) {
  return std::string(what) + ": this keel was built without the PostgreSQL backend (meson option postgres: libpq)";
}

// The message for --etcd, --etcd-prefix, etcd:// and etcd: without the backend.
inline std::string no_etcd_backend(std::string_view what) {
  return std::string(what) +
         ": this keel was built without the etcd backend (meson option etcd: libcurl and "
         "nlohmann-json)";
}

// The limits of --etcd-connect-timeout (at most the operation timeout,
// etcd_options::operation_timeout, 10 s: a longer connect could never finish
// within it) and --etcd-max-request-bytes (at least 1 KiB: a batch is a third
// of it; at most what etcd itself accepts, an int32).
inline constexpr unsigned long long etcd_connect_timeout_max_ms = 10000;
inline constexpr unsigned long long etcd_max_request_bytes_min = 1024, etcd_max_request_bytes_max = 2147483647;

// A decimal number from `lo` to `hi` (digits only: no sign, no suffix), or nullopt.
inline std::optional<unsigned long long> number_in(std::string_view s, unsigned long long lo, unsigned long long hi) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  unsigned long long v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned long long>(ch - '0');
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

// The keyspace name an argument stands for (escaped as a KEY is, so a name
// is accepted in the form the tool prints it), or the usage error: a bad
// escape, or a name over 255 bytes (keel::keyspace_name_error). `what` names
// the argument in the message ("--keyspace", "drop-keyspace NAME").
inline std::optional<std::string> keyspace_argument(std::string_view arg, std::string_view what,
                                                    std::string& error) {
  auto name = unescape(arg);
  if (!name) {
    error = std::string(what) + ": bad escape in '" + std::string(arg) + "'";
    return std::nullopt;
  }
  if (auto bad = keel::keyspace_name_error(*name)) {
    error = std::string(what) + ": " + bad->message();
    return std::nullopt;
  }
  return name;
}

// The options of commands that take a value (scan --prefix P, put
// --value-file F, put --ttl DURATION, ...): after the command, they and their
// value go to the command as they are (a value may start with '-').
inline bool command_option_with_value(std::string_view s) {
  return s == "--prefix" || s == "--from" || s == "--to" || s == "--limit" || s == "--value-file" || s == "--after" ||
         s == "--ttl";
}

// Parses argv[1...] into c: the tool's options (before or after the command),
// and the command with its arguments and its own options. "--" ends the
// options: every word after it is an argument (a key starting with '-').
// Returns the exit code of a usage error (already reported), or nullopt to go
// on.
inline std::optional<int> parse_options(int argc, char** argv, cli& c) {
  for (int i = 1; i < argc; ++i) {
    std::string_view s = argv[i];
    const bool after_command = !c.args.empty();
    if (s == "--") {
      c.literal_from = c.args.size();
      for (++i; i < argc; ++i) c.args.emplace_back(argv[i]);
      break;
    }
    if (s == "-k" || s == "--keyspace" || s.rfind("--keyspace=", 0) == 0) {
      std::string_view arg;
      if (s.size() > 10 && s[10] == '=') {
        arg = s.substr(11);
      } else {
        if (++i >= argc) return usage_error(std::string(s) + " needs a NAME (\"\" is the default keyspace)");
        arg = argv[i];
      }
      if (c.keyspace_given) return usage_error("--keyspace (-k) given twice; a command works on one keyspace");
      std::string error;
      auto name = keyspace_argument(arg, "--keyspace", error);
      if (!name) return usage_error(error);
      c.keyspace = std::move(*name);
      c.keyspace_given = true;
      continue;
    }
    if (after_command && command_option_with_value(s)) {
      c.args.emplace_back(s);
      if (i + 1 < argc) c.args.emplace_back(argv[++i]);
      continue;
    }
    if (s == "-h" || s == "--help") {
      c.help = true;
      return std::nullopt;
    } else if (s == "--version") {
      c.version = true;
      return std::nullopt;
    } else if (s == "--db") {
      if (++i >= argc) return usage_error("--db needs a PATH");
      c.db = argv[i];
    } else if (s.rfind("--db=", 0) == 0) {
      c.db = std::string(s.substr(5));
    } else if (s == "--memory") {
      c.memory = true;
    } else if (s == "--memory-file") {
      if (++i >= argc) return usage_error("--memory-file needs a FILE");
      c.memory = true;
      c.memory_file = argv[i];
    } else if (s == "--hybrid") {
      if (++i >= argc) return usage_error("--hybrid needs a PATH");
      if (*argv[i] == '\0') return usage_error("--hybrid needs a non-empty PATH");
      c.hybrid = argv[i];
    } else if (s.rfind("--hybrid=", 0) == 0) {
      if (s.size() == 9) return usage_error("--hybrid needs a non-empty PATH");
      c.hybrid = std::string(s.substr(9));
    } else if (s == "--etcd" || s == "--etcd-prefix") {
      if (!has_etcd_backend) return usage_error(no_etcd_backend(s));
      if (++i >= argc) return usage_error(std::string(s) + (s == "--etcd" ? " needs URL[,URL...]" : " needs a PREFIX"));
      if (*argv[i] == '\0') return usage_error(std::string(s) + " needs a non-empty value");
      (s == "--etcd" ? c.etcd : c.etcd_prefix) = argv[i];
    } else if (s == "--etcd-connect-timeout" || s == "--etcd-max-request-bytes") {
      if (!has_etcd_backend) return usage_error(no_etcd_backend(s));
      const bool timeout = s == "--etcd-connect-timeout";
      const std::string range = timeout ? "milliseconds, from 1 to " + std::to_string(etcd_connect_timeout_max_ms)
                                        : "bytes, from " + std::to_string(etcd_max_request_bytes_min) + " to " +
                                              std::to_string(etcd_max_request_bytes_max);
      if (++i >= argc) return usage_error(std::string(s) + " needs a number of " + range);
      const auto n = timeout ? number_in(argv[i], 1, etcd_connect_timeout_max_ms)
                             : number_in(argv[i], etcd_max_request_bytes_min, etcd_max_request_bytes_max);
      if (!n) return usage_error(std::string(s) + " needs a number of " + range + ", not '" + argv[i] + "'");
      if (timeout)
        c.etcd_connect_timeout = std::chrono::milliseconds(*n);
      else
        c.etcd_max_request_bytes = static_cast<std::size_t>(*n);
    } else if (s == "--postgres" || s == "--table") {
      if (!has_postgres_backend) return usage_error(no_postgres_backend(s));
      if (++i >= argc) return usage_error(std::string(s) + (s == "--postgres" ? " needs a CONNINFO" : " needs a NAME"));
      if (*argv[i] == '\0') return usage_error(std::string(s) + " needs a non-empty value");
      (s == "--postgres" ? c.postgres : c.table) = argv[i];
    } else if (s == "--fallback") {
      c.fallback = true;
    } else if (s == "--json") {
      c.json = true;
    } else if (s == "--raw") {
      c.raw = true;
    } else if (s == "--escape") {
      c.escape_all = true;
    } else if (s == "--progress") {
      c.progress = true;
    } else if (s == "--no-progress") {
      c.progress = false;
    } else if (!after_command && s.size() > 1 && s[0] == '-') {
      return usage_error("unknown option " + std::string(s));
    } else {
      c.args.emplace_back(s);  // the command, an argument, or the command's own option (it checks them)
    }
  }
  c.keep_utf8 = !c.escape_all && locale_is_utf8();
  // A prefix or an etcd limit with no cluster would be silently ignored by a
  // RocksDB command (doctor etcd:// names its cluster itself).
  const bool cluster_given = !c.etcd.empty() || std::getenv("KEEL_ETCD_ENDPOINTS") ||
                             (c.args.size() == 2 && c.args[0] == "doctor" && c.args[1].rfind("etcd://", 0) == 0);
  if (!c.etcd_prefix.empty() && c.etcd.empty() && !std::getenv("KEEL_ETCD_ENDPOINTS"))
    return usage_error("--etcd-prefix needs a cluster: --etcd URL[,URL...] or KEEL_ETCD_ENDPOINTS");
  if ((c.etcd_connect_timeout || c.etcd_max_request_bytes) && !cluster_given)
    return usage_error(std::string(c.etcd_connect_timeout ? "--etcd-connect-timeout" : "--etcd-max-request-bytes") +
                       " needs a cluster: --etcd URL[,URL...], KEEL_ETCD_ENDPOINTS or doctor etcd://...");
  return std::nullopt;
}

// The RocksDB directory of the main store: --db, else $KEEL_DB, else "".
inline std::string db_path(const cli& c) {
  if (!c.db.empty()) return c.db;
  if (const char* e = std::getenv("KEEL_DB")) return e;
  return {};
}

// The range options of scan, count, export, del and compact.
struct range_opts {
  std::optional<std::string> prefix, lo, hi;
  bool reverse = false, keys_only = false;
  std::optional<std::uint64_t> limit;
  std::vector<std::string> positional;
  keel::key_range range() const {
    keel::key_range r = keel::key_range::all();
    if (prefix) r = keel::key_range::prefix(*prefix);
    if (lo && hi)
      r = keel::key_range::between(*lo, *hi);
    else if (lo)
      r = keel::key_range::from(*lo);
    else if (hi)
      r = keel::key_range::until(*hi);
    return reverse ? r.reversed() : r;
  }
};

// Parses range options from a[from...] into o (other words, and every word
// from a[literal_from] on, go to o.positional); returns an error message, or
// "" when they are valid.
inline std::string parse_range(const std::vector<std::string>& a, std::size_t from, range_opts& o,
                               std::size_t literal_from = static_cast<std::size_t>(-1)) {
  for (std::size_t i = from; i < a.size(); ++i) {
    const std::string& s = a[i];
    if (i >= literal_from) {
      o.positional.push_back(s);
      continue;
    }
    auto value = [&](std::optional<std::string>& dst) -> std::string {
      if (i + 1 >= a.size()) return s + " needs a value";
      auto u = unescape(a[++i]);
      if (!u) return "bad escape in '" + a[i] + "'";
      dst = *u;
      return "";
    };
    std::string err;
    if (s == "--prefix")
      err = value(o.prefix);
    else if (s == "--from")
      err = value(o.lo);
    else if (s == "--to")
      err = value(o.hi);
    else if (s == "--reverse")
      o.reverse = true;
    else if (s == "--keys-only")
      o.keys_only = true;
    else if (s == "--limit") {
      if (i + 1 >= a.size()) return "--limit needs a value";
      char* end = nullptr;
      const std::string& n = a[++i];
      unsigned long long v = std::strtoull(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || n[0] == '-') return "--limit needs a number, not '" + n + "'";
      o.limit = v;
    } else if (s.rfind("--", 0) == 0 && s.size() > 2)
      return "unknown option " + s;
    else
      o.positional.push_back(s);
    if (!err.empty()) return err;
  }
  if (o.prefix && (o.lo || o.hi)) return "--prefix cannot be combined with --from/--to";
  return "";
}

}  // namespace keel_tool
