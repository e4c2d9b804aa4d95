// keel tool: the stats command: of the store, or with --keyspace of one
// keyspace (its keys and bytes, counted by a scan).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "text.hpp"

namespace keel_tool {

// (name, value, numeric): one line of `stats` (one member of its JSON object).
using stats_lines = std::vector<std::tuple<std::string, std::string, bool>>;

// Prints the lines (or the JSON object) of `stats`.
inline int print_stats_lines(const cli& c, const stats_lines& kv) {
  if (c.json) {
    std::string j = "{";
    for (std::size_t i = 0; i < kv.size(); ++i) {
      const auto& [k, v, numeric] = kv[i];
      j += (i ? "," : "") + json_string(k) + ":" + (numeric ? v : json_string(v));
    }
    write_out(j + "}\n");
  } else {
    for (const auto& [k, v, numeric] : kv) write_out(k + "\t" + escape(v, c.keep_utf8) + "\n");
  }
  return exit_ok;
}

// The store's path: a RocksDB directory or a hybrid store ("" for others).
inline std::string store_path_of(cli_store& store) {
  if (auto* rocks = store.get_if<keel::RocksPolicy<keel::NativeTuning>>()) return rocks->policy().path().string();
  if (auto* hybrid = store.get_if<keel::HybridPolicy<>>()) return hybrid->policy().options_used().path.string();
  return {};
}

// stats --keyspace NAME: the backend, the path, the keyspace (escaped; in
// JSON "keyspace" or "keyspace_base64", as keys are), and its keys and the
// bytes of their keys and values, exact (counted by a scan, as `keel
// keyspaces` does). The operation counters and properties are the whole
// store's: plain `stats` has them.
template <class Target>
int print_keyspace_stats(const cli& c, cli_store& store, const Target& target) {
  auto row = count_keyspace(target, c.keyspace);
  if (!row) return op_error(row.error());
  if (c.json) {
    std::string j = "{\"backend\":" + json_string(keel::to_string(store.backend()));
    if (auto path = store_path_of(store); !path.empty()) j += ",\"path\":" + json_string(path);
    j += "," + json_bytes_field("keyspace", c.keyspace) + ",\"keys\":" + std::to_string(row->keys) +
         ",\"keys_exact\":true,\"bytes\":" + std::to_string(row->bytes) + "}\n";
    write_out(j);
    return exit_ok;
  }
  std::string out = "backend\t" + std::string(keel::to_string(store.backend())) + "\n";
  if (auto path = store_path_of(store); !path.empty()) out += "path\t" + escape(path, c.keep_utf8) + "\n";
  out += "keyspace\t" + escape(c.keyspace, c.keep_utf8) + "\nkeys\t" + std::to_string(row->keys) +
         "\nkeys_exact\ttrue\nbytes\t" + std::to_string(row->bytes) + "\n";
  write_out(out);
  return exit_ok;
}

// The lines (or the JSON object) of `stats`.
inline int print_stats(const cli& c, cli_store& store) {
  auto st = store.stats();
  if (!st) return op_error(st.error());
  stats_lines kv;
  auto num = [&](std::string k, std::uint64_t v) { kv.emplace_back(std::move(k), std::to_string(v), true); };
  kv.emplace_back("backend", std::string(keel::to_string(st->backend)), false);
  if (auto path = store_path_of(store); !path.empty()) kv.emplace_back("path", path, false);
  if (!st->tier.empty()) kv.emplace_back("tier", st->tier, false);  // hybrid: memory or rocksdb
  if (auto* hybrid = store.get_if<keel::HybridPolicy<>>();
      hybrid && hybrid->policy().current_tier() == keel::HybridPolicy<>::tier::small) {
    // When the data moves to RocksDB: past spill_bytes held in memory, by the
    // write command (or compact) that finds it there.
    const std::uint64_t at = hybrid->policy().options_used().spill_bytes;
    kv.emplace_back("move", "to rocksdb once the memory tier holds " + std::to_string(at) + " bytes (now " +
                                std::to_string(st->size_bytes) + "): by the write command that finds it there, or by compact",
                    false);
  }
#if KEEL_HAS_ETCD
  if (auto* etcd = store.get_if<keel::EtcdPolicy>()) {
    kv.emplace_back("prefix", etcd->policy().config().prefix, false);
    std::string endpoints;
    for (const auto& e : etcd->policy().config().endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
    kv.emplace_back("endpoints", endpoints, false);
  }
#endif
  num("keys", st->keys);
  kv.emplace_back("keys_exact", st->keys_exact ? "true" : "false", true);
  // How many keyspaces, "" included, on a backend with keyspaces (`keel
  // keyspaces` lists them, `stats -k NAME` counts one).
  if (store.has_keyspaces()) {
    auto names = store.keyspaces();
    if (!names) return op_error(names.error());
    num("keyspaces", names->size());
  }
  num("size_bytes", st->size_bytes);
  if (st->uncompressed_bytes != 0) {  // memory stores: values as held vs uncompressed
    num("uncompressed_bytes", st->uncompressed_bytes);
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.3f", double(st->size_bytes) / double(st->uncompressed_bytes));
    kv.emplace_back("compression_ratio", ratio, true);
  }
  num("puts", st->puts);
  num("gets", st->gets);
  num("erases", st->erases);
  num("writes", st->writes);
  num("contains", st->contains);
  num("batch_ops", st->batch_ops);
  num("scans", st->scans);
  num("cursor_entries", st->cursor_entries);
  num("snapshots", st->snapshots);
  num("bytes_read", st->bytes_read);
  num("bytes_written", st->bytes_written);
  for (const auto& [k, v] : st->properties) {
    if (k == "etcd.leader" || k == "etcd.member_id") {  // member ids: hex, as etcd and `keel doctor etcd://` write them
      char hex[32];
      std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(v));
      kv.emplace_back(k, hex, false);
    } else {
      num(k, v);
    }
  }
  return print_stats_lines(c, kv);
}

// stats: backend (and a hybrid store's tier), key count, sizes, operation counters, and the backend's
// properties (etcd: revision, members, leader, raft index and term, db size).
inline int cmd_stats(const cli& c) {
  if (c.args.size() != 1) return usage_error("stats takes no argument");
  return with_store(c, access::read, [&](cli_store& store) {
    if (!c.keyspace_given) return print_stats(c, store);
    return with_keyspace(c, store, keyspace_use::existing,
                         [&](auto& target) { return print_keyspace_stats(c, store, target); });
  });
}

}  // namespace keel_tool
