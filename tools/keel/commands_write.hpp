// keel tool: the write commands on the main store: put, del KEY, del with a
// range, compact, checkpoint. They open the store read-write (a RocksDB
// directory is created when missing, and they say so).
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "open.hpp"
#include "text.hpp"

namespace keel_tool {

// put KEY VALUE
inline int cmd_put(const cli& c) {
  if (c.args.size() != 3) return usage_error("put takes KEY and VALUE");
  const auto key = unescape(c.args[1]), value = unescape(c.args[2]);
  if (!key || !value) return usage_error("bad escape in KEY or VALUE");
  return with_store(c, access::write, [&](cli_store& store) {
    if (auto r = store.put(*key, *value); !r) return op_error(r.error());
    return exit_ok;
  });
}

// del KEY (removing an absent key succeeds)
inline int cmd_del(const cli& c) {
  if (c.args.size() != 2) return usage_error("del takes one KEY");
  const auto key = unescape(c.args[1]);
  if (!key) return usage_error("bad escape in KEY '" + c.args[1] + "'");
  return with_store(c, access::write, [&](cli_store& store) {
    if (auto r = store.erase(*key); !r) return op_error(r.error());
    return exit_ok;
  });
}

// Erases `range` and returns how many keys it held, exactly: by a scan of
// the range in the same transaction as the erase (a write into the range by
// anyone else in between makes the commit conflict, and run_transaction runs
// both again); on etcd by etcd's own count (EtcdPolicy::erase_range_counted:
// a counting transaction would need one compare per key there, and etcd takes
// at most 128 per txn).
inline keel::result<std::uint64_t> erase_range_counted(cli_store& store, const keel::key_range& range) {
#if KEEL_HAS_ETCD
  if (auto* etcd = store.get_if<keel::EtcdPolicy>()) return etcd->policy().erase_range_counted(range);
#endif
  return store.run_transaction([&](cli_store::transaction_type& tx) -> keel::result<std::uint64_t> {
    std::uint64_t k = 0;
    auto cursor = tx.scan(range);
    for (auto it = cursor.begin(); it != cursor.end(); ++it) ++k;
    if (cursor.error()) return *cursor.error();
    if (auto r = tx.erase_range(range); !r) return r.error();
    return k;
  });
}

// Whether `del ARGS` is a range erase (`del --prefix P`, `del --from K`, ...)
// rather than `del KEY`.
inline bool is_del_range(const cli& c) {
  if (c.args.size() < 2 || c.args[0] != "del") return false;
  const std::string& a = c.args[1];
  return a == "--prefix" || a == "--from" || a == "--to" || a == "--no-count";
}

// del --prefix P | --from K [--to K] | --to K [--no-count]: erase_range.
// The count is exact (erase_range_counted); --no-count skips it.
inline int cmd_del_range(const cli& c) {
  bool count = true;
  std::vector<std::string> rest;
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    const std::string& s = c.args[i];
    if (s == "--no-count") {
      count = false;
      continue;
    }
    rest.push_back(s);
    if ((s == "--prefix" || s == "--from" || s == "--to") && i + 1 < c.args.size()) rest.push_back(c.args[++i]);
  }
  range_opts ro;
  if (auto err = parse_range(rest, 0, ro); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("del takes one KEY, or a range: --prefix P, --from K, --to K");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (!ro.prefix && !ro.lo && !ro.hi) return usage_error("del needs a KEY, or a range: --prefix P, --from K, --to K");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("del: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  const keel::key_range range = ro.range();

  return with_store(c, access::write, [&](cli_store& store) {
    std::optional<std::uint64_t> erased;
    if (count) {
      auto n = erase_range_counted(store, range);
      if (!n) return op_error(n.error());
      erased = *n;
    } else if (auto r = store.erase_range(range); !r) {
      return op_error(r.error());
    }
    if (c.json)
      write_out(erased ? "{\"erased\":" + std::to_string(*erased) + "}\n" : std::string("{\"erased\":null}\n"));
    else if (erased)
      std::fprintf(stderr, "keel: erased %llu keys\n", static_cast<unsigned long long>(*erased));
    return exit_ok;
  });
}

// compact [--prefix P] [--from K] [--to K]: RocksDB CompactRange.
inline int cmd_compact(const cli& c) {
  range_opts ro;
  if (auto err = parse_range(c.args, 1, ro); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("compact takes no argument besides --prefix, --from, --to");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("compact: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  return with_store(c, access::write, [&](cli_store& store) {
    auto before = store.stats();
    if (!before) return op_error(before.error());
    if (auto r = store.compact(ro.range()); !r) return op_error(r.error());
    auto after = store.stats();
    if (!after) return op_error(after.error());
    if (c.json)
      std::printf("{\"size_bytes_before\":%llu,\"size_bytes_after\":%llu}\n",
                  static_cast<unsigned long long>(before->size_bytes),
                  static_cast<unsigned long long>(after->size_bytes));
    else
      std::fprintf(stderr, "keel: compacted: %llu bytes before, %llu after\n",
                   static_cast<unsigned long long>(before->size_bytes),
                   static_cast<unsigned long long>(after->size_bytes));
    return exit_ok;
  });
}

// checkpoint DIR: a consistent copy of the store, taken while it is in use.
inline int cmd_checkpoint(const cli& c) {
  if (c.args.size() != 2 || c.args[1].empty()) return usage_error("checkpoint takes one DIR (which must not exist)");
  const std::string& dir = c.args[1];
  return with_store(c, access::write, [&](cli_store& store) {
    if (auto r = store.checkpoint(dir); !r) return op_error(r.error());
    if (c.json)
      write_out("{\"checkpoint\":" + json_string(dir) + "}\n");
    else
      std::fprintf(stderr, "keel: checkpoint written to %s\n", dir.c_str());
    return exit_ok;
  });
}

}  // namespace keel_tool
