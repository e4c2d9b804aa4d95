// keel tool: the read commands on the main store: get, scan, count (and
// ttl KEY, in ttl.hpp). They open a RocksDB directory read-only (open.hpp),
// and work on the keyspace of --keyspace (keyspaces.hpp; a missing one exits
// 1).
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "text.hpp"
#include "ttl.hpp"

namespace keel_tool {

// get KEY: the value (escaped, --raw or --json); exit 1 when absent.
inline int cmd_get(const cli& c) {
  if (c.args.size() != 2) return usage_error("get takes one KEY");
  if (c.is_option(1)) return usage_error("get: unknown option " + c.args[1] + " (a KEY starting with -: get -- KEY)");
  const auto key = unescape(c.args[1]);
  if (!key) return usage_error("bad escape in KEY '" + c.args[1] + "'");
  return with_store(c, access::read, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      auto v = target.get(*key);
      if (!v) return op_error(v.error());
      if (!*v) {
        if (c.json)
          write_out("null\n");
        else
          std::fprintf(stderr, "keel: no key %s\n", escape(*key, c.keep_utf8).c_str());
        return exit_not_found;
      }
      if (c.raw)
        write_out(**v);
      else if (c.json)
        write_out("{" + json_bytes_field("key", *key) + "," + json_bytes_field("value", **v) + "}\n");
      else
        write_out(escape(**v, c.keep_utf8) + "\n");
      return exit_ok;
    });
  });
}

// Checks the arguments of scan and count (range options, no FILE; scan also
// --show-ttl, into *show_ttl); returns an error message or "".
inline std::string parse_scan_args(const cli& c, range_opts& ro, bool* show_ttl = nullptr) {
  const std::string& cmd = c.args[0];
  std::vector<std::string> args;
  std::size_t literal_from = c.literal_from;
  for (std::size_t i = 0; i < c.args.size(); ++i) {
    if (show_ttl && i < c.literal_from && c.args[i] == "--show-ttl") {
      *show_ttl = true;
      if (literal_from != static_cast<std::size_t>(-1)) --literal_from;
    } else {
      args.push_back(c.args[i]);
    }
  }
  if (auto err = parse_range(args, 1, ro, literal_from); !err.empty()) return err;
  if (!ro.positional.empty()) return cmd + " takes no FILE";
  if (cmd != "scan" && (ro.reverse || ro.limit || ro.keys_only))
    return "--reverse, --limit and --keys-only are for scan";
  return "";
}

// scan [--prefix P] [--from K] [--to K] [--reverse] [--limit N] [--keys-only] [--show-ttl]
// --show-ttl: each line ends with a TAB and the key's remaining time
// (remaining_text) or "none" (no ttl); --json adds "ttl_ms" and
// "deadline_ms" (json_ttl_fields). The ttl is read per key after the scan
// read it: a key that expires or is erased in between is left out.
inline int cmd_scan(const cli& c) {
  range_opts ro;
  bool show_ttl = false;
  if (auto err = parse_scan_args(c, ro, &show_ttl); !err.empty()) return usage_error(err);
  return with_store(c, access::read, [&](cli_store& store) {
    if (show_ttl && !store.has_expiry()) return op_error(no_expiry(store.backend(), "scan --show-ttl"));
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      auto cursor = target.scan(ro.range());
      std::uint64_t n = 0;
      std::string line;
      for (const auto& e : cursor) {
        if (ro.limit && n >= *ro.limit) break;
        std::optional<keel::deadline_ms> deadline;
        if (show_ttl) {
          auto x = target.expiry(e.key);
          if (!x) return op_error(x.error());
          if (!x->present) continue;  // gone since the scan read it
          deadline = x->deadline;
        }
        ++n;
        if (c.json) {
          line = "{" + json_bytes_field("key", e.key);
          if (!ro.keys_only) line += "," + json_bytes_field("value", e.value);
          if (show_ttl) line += "," + json_ttl_fields(deadline);
          line += "}\n";
        } else {
          line = escape(e.key, c.keep_utf8);
          if (!ro.keys_only) {
            line += '\t';
            line += escape(e.value, c.keep_utf8);
          }
          if (show_ttl) {
            line += '\t';
            line += deadline ? remaining_text(remaining_ms(*deadline)) : std::string("none");
          }
          line += '\n';
        }
        write_out(line);
      }
      if (cursor.error()) return op_error(*cursor.error());
      return exit_ok;
    });
  });
}

// count [--prefix P] [--from K] [--to K]: the number of keys (exact: counted by a scan).
inline int cmd_count(const cli& c) {
  range_opts ro;
  if (auto err = parse_scan_args(c, ro); !err.empty()) return usage_error(err);
  return with_store(c, access::read, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      auto cursor = target.scan(ro.range());
      std::uint64_t n = 0;
      for (auto it = cursor.begin(); it != cursor.end(); ++it) ++n;
      if (cursor.error()) return op_error(*cursor.error());
      if (c.json)
        std::printf("{\"count\":%llu}\n", static_cast<unsigned long long>(n));
      else
        std::printf("%llu\n", static_cast<unsigned long long>(n));
      return exit_ok;
    });
  });
}

}  // namespace keel_tool
