// keel tool: the write commands on the main store: put, del KEY, del with a
// range, compact, checkpoint. They open the store read-write (a RocksDB
// directory is created when missing, and they say so), and work on the
// keyspace of --keyspace (keyspaces.hpp: put creates a missing one; del and
// compact exit 1 on a missing one and create nothing; checkpoint copies
// every keyspace and takes no --keyspace).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "text.hpp"
#include "ttl.hpp"

namespace keel_tool {

// The bytes of a file descriptor up to its end; nullopt on a read error (errno).
inline std::optional<std::string> read_all(int fd) {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// put KEY VALUE | put KEY - (the value is standard input) | put KEY --value-file F,
// each with [--ttl DURATION] (ttl.hpp: the key expires DURATION from now; a
// bad DURATION is a usage error, a backend without expiry exit 5, and
// nothing is written).
// A value from standard input or a file is taken as its exact bytes (a
// trailing newline too), with no escapes; it may be larger than a command
// line can carry.
inline int cmd_put(const cli& c) {
  std::optional<std::string> value_file;
  std::optional<std::chrono::milliseconds> ttl;
  std::vector<std::string> words;
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    if (c.is_option(i) && c.args[i] == "--value-file") {
      if (i + 1 >= c.args.size()) return usage_error("--value-file needs a FILE");
      value_file = c.args[++i];
    } else if (c.is_option(i) && (c.args[i] == "--ttl" || c.args[i].rfind("--ttl=", 0) == 0)) {
      if (ttl) return usage_error("--ttl given twice");
      std::string_view d;
      if (c.args[i] == "--ttl") {
        if (i + 1 >= c.args.size()) return usage_error("--ttl needs a DURATION (30s, 5m, 2h, 1d, 1h30m)");
        d = c.args[++i];
      } else {
        d = std::string_view(c.args[i]).substr(6);
      }
      std::string error;
      ttl = parse_duration(d, "--ttl", error);
      if (!ttl) return usage_error(error);
    } else if (c.is_option(i)) {
      return usage_error("put: unknown option " + c.args[i]);
    } else {
      words.push_back(c.args[i]);
    }
  }
  if (words.size() != (value_file ? 1u : 2u))
    return usage_error("put takes KEY and VALUE, KEY - (VALUE from standard input) or KEY --value-file FILE");
  const auto key = unescape(words[0]);
  if (!key) return usage_error("bad escape in KEY '" + words[0] + "'");
  std::optional<std::string> value;
  if (value_file) {
    const int fd = ::open(value_file->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return op_error(keel::error(keel::errc::io_error, "cannot open --value-file '" + *value_file +
                                                                      "': " + std::strerror(errno)));
    value = read_all(fd);
    const int e = errno;
    ::close(fd);
    if (!value)
      return op_error(keel::error(keel::errc::io_error, "cannot read '" + *value_file + "': " + std::strerror(e)));
  } else if (words[1] == "-") {
    value = read_all(0);
    if (!value)
      return op_error(keel::error(keel::errc::io_error, std::string("cannot read standard input: ") +
                                                            std::strerror(errno)));
  } else {
    value = unescape(words[1]);
    if (!value) return usage_error("bad escape in VALUE");
  }
  return with_store(c, access::write, [&](cli_store& store) {
    if (ttl && !store.has_expiry()) return op_error(no_expiry(store.backend(), "put --ttl"));
    return with_keyspace(c, store, keyspace_use::create, [&](auto& target) {
      if (auto r = target.put(*key, *value, keel::put_options{.ttl = ttl}); !r) return op_error(r.error());
      return exit_ok;
    });
  });
}

// del KEY (removing an absent key succeeds)
inline int cmd_del(const cli& c) {
  if (c.args.size() != 2) return usage_error("del takes one KEY");
  if (c.is_option(1)) return usage_error("del: unknown option " + c.args[1] + " (a KEY starting with -: del -- KEY)");
  const auto key = unescape(c.args[1]);
  if (!key) return usage_error("bad escape in KEY '" + c.args[1] + "'");
  return with_store(c, access::write, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      if (auto r = target.erase(*key); !r) return op_error(r.error());
      return exit_ok;
    });
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

// The same in keyspace `ks` of `store` (one other than ""): by a scan of the
// range in the same transaction as the erase, as for "" (any_store's
// transactions take keyspace handles). On etcd, whose txns cannot hold a
// compare per key, by a scan just before the erase (etcd has no counted
// erase of a keyspace's range): a write by another client in between makes
// the count differ from what the erase removed; the erase itself is atomic.
inline keel::result<std::uint64_t> erase_range_counted(cli_store& store, cli_store::keyspace_type& ks,
                                                       const keel::key_range& range) {
  auto count_then_erase = [&](auto& reader_and_writer) -> keel::result<std::uint64_t> {
    std::uint64_t k = 0;
    {
      auto cursor = reader_and_writer.scan(ks, range);
      for (auto it = cursor.begin(); it != cursor.end(); ++it) ++k;
      if (cursor.error()) return *cursor.error();
    }
    if (auto r = reader_and_writer.erase_range(ks, range); !r) return r.error();
    return k;
  };
#if KEEL_HAS_ETCD
  if (store.get_if<keel::EtcdPolicy>()) {
    struct direct {  // the keyspace's own scan and erase_range, outside a transaction
      keel::result<void> erase_range(cli_store::keyspace_type& k, const keel::key_range& r) { return k.erase_range(r); }
      auto scan(cli_store::keyspace_type& k, const keel::key_range& r) { return k.scan(r); }
    } d;
    return count_then_erase(d);
  }
#endif
  return store.run_transaction([&](cli_store::transaction_type& tx) { return count_then_erase(tx); });
}
// For del's generic target: the store itself ("") or one of its keyspaces.
inline keel::result<std::uint64_t> erase_range_counted(cli_store& store, cli_store&, const keel::key_range& range) {
  return erase_range_counted(store, range);
}

// Whether `del ARGS` is a range erase (`del --prefix P`, `del --from K`, ...)
// rather than `del KEY`.
inline bool is_del_range(const cli& c) {
  if (c.args.size() < 2 || c.args[0] != "del" || !c.is_option(1)) return false;
  const std::string& a = c.args[1];
  return a == "--prefix" || a == "--from" || a == "--to" || a == "--no-count";
}

// del --prefix P | --from K [--to K] | --to K [--no-count]: erase_range.
// The count is exact (erase_range_counted); --no-count skips it.
inline int cmd_del_range(const cli& c) {
  bool count = true;
  std::vector<std::string> rest;
  std::size_t literal_from = static_cast<std::size_t>(-1);  // in rest
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    const std::string& s = c.args[i];
    if (i == c.literal_from) literal_from = rest.size();
    if (c.is_option(i) && s == "--no-count") {
      count = false;
      continue;
    }
    rest.push_back(s);
    if (c.is_option(i) && (s == "--prefix" || s == "--from" || s == "--to") && i + 1 < c.args.size())
      rest.push_back(c.args[++i]);
  }
  range_opts ro;
  if (auto err = parse_range(rest, 0, ro, literal_from); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("del takes one KEY, or a range: --prefix P, --from K, --to K");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (!ro.prefix && !ro.lo && !ro.hi) return usage_error("del needs a KEY, or a range: --prefix P, --from K, --to K");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("del: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  const keel::key_range range = ro.range();

  return with_store(c, access::write, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      std::optional<std::uint64_t> erased;
      if (count) {
        auto n = erase_range_counted(store, target, range);
        if (!n) return op_error(n.error());
        erased = *n;
      } else if (auto r = target.erase_range(range); !r) {
        return op_error(r.error());
      }
      if (c.json)
        write_out(erased ? "{\"erased\":" + std::to_string(*erased) + "}\n" : std::string("{\"erased\":null}\n"));
      else if (erased)
        std::fprintf(stderr, "keel: erased %llu keys\n", static_cast<unsigned long long>(*erased));
      return exit_ok;
    });
  });
}

// compact [--prefix P] [--from K] [--to K]: RocksDB CompactRange.
inline int cmd_compact(const cli& c) {
  range_opts ro;
  if (auto err = parse_range(c.args, 1, ro, c.literal_from); !err.empty()) return usage_error(err);
  if (!ro.positional.empty()) return usage_error("compact takes no argument besides --prefix, --from, --to");
  if (ro.reverse || ro.limit || ro.keys_only) return usage_error("--reverse, --limit and --keys-only are for scan");
  if (ro.lo && ro.hi && *ro.lo > *ro.hi)
    return usage_error("compact: --from " + escape(*ro.lo) + " is above --to " + escape(*ro.hi));
  return with_store(c, access::write, [&](cli_store& store) {
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      auto before = store.stats();
      if (!before) return op_error(before.error());
      if (auto r = target.compact(ro.range()); !r) return op_error(r.error());
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
  });
}

// checkpoint DIR: a consistent copy of the store, taken while it is in use.
inline int cmd_checkpoint(const cli& c) {
  if (c.args.size() != 2 || c.args[1].empty()) return usage_error("checkpoint takes one DIR (which must not exist)");
  const std::string& dir = c.args[1];
  // Checked before the store is opened, so that it creates no store.
  const auto dir_is_new = [&] {
    std::error_code ec;
    const auto st = std::filesystem::symlink_status(dir, ec);
    if (st.type() == std::filesystem::file_type::not_found) return exit_ok;
    return op_error(keel::error(keel::errc::invalid_argument,
                                "cannot write a checkpoint to '" + dir + "': " +
                                    (ec ? ec.message() : std::string("it already exists")) +
                                    " (checkpoint DIR must not exist; nothing was opened)"));
  };
  return with_store(c, access::write, [&](cli_store& store) {
    if (auto r = store.checkpoint(dir); !r) return op_error(r.error());
    if (c.json)
      write_out("{\"checkpoint\":" + json_string(dir) + "}\n");
    else
      std::fprintf(stderr, "keel: checkpoint written to %s\n", dir.c_str());
    return exit_ok;
  }, dir_is_new);
}

}  // namespace keel_tool
