// keel tool: keyspaces (issue 27; docs/cli.md, "Keyspaces"). The keyspace a
// data command works on (--keyspace NAME / -k NAME: with_keyspace), and the
// commands keyspaces and drop-keyspace.
//
// A name is given and printed in the tool's escaped form (text.hpp), so any
// name it prints can be given back. The default keyspace "" is the store
// itself: without --keyspace (or with -k '') every command works as before
// keyspaces existed. A command that works on a keyspace other than "" needs a
// backend with keyspaces (basic_any_store::has_keyspaces()); on another one
// it exits 5 with errc::not_supported, naming the backend.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "open.hpp"
#include "text.hpp"

namespace keel_tool {

// The commands --keyspace applies to; every other one works on the whole
// store (checkpoint, migrate, keyspaces, drop-keyspace NAME) or on none.
inline bool takes_keyspace(std::string_view cmd) {
  return cmd == "get" || cmd == "put" || cmd == "del" || cmd == "scan" || cmd == "count" || cmd == "compact" ||
         cmd == "export" || cmd == "import" || cmd == "stats" || cmd == "watch" || cmd == "ttl";
}

// The keyspace `name` as messages call it: keyspace 'NAME', escaped.
inline std::string keyspace_called(const cli& c, std::string_view name) {
  return "keyspace '" + escape(name, c.keep_utf8) + "'";
}

// The error of a backend without keyspaces asked for one other than "".
inline keel::error no_keyspaces(keel::backend b) {
  return keel::error(keel::errc::not_supported,
                     "the " + std::string(keel::to_string(b)) +
                         " backend has no keyspaces in this keel: only the default keyspace \"\" (the store itself; "
                         "no --keyspace) works there");
}

// A keyspace that is not there: exit 1 (not found), as for get's absent key.
inline int keyspace_missing(const cli& c, std::string_view name) {
  std::fprintf(stderr, "keel: no %s in the store (keel keyspaces lists them; nothing was created)\n",
               keyspace_called(c, name).c_str());
  return exit_not_found;
}

// How a command uses the keyspace of --keyspace: `create` makes a missing one
// (put, import); `existing` finds a missing one an error, exit 1, and
// creates nothing (every other command: a typo in NAME is reported rather
// than made into a new keyspace).
enum class keyspace_use { existing, create };

// Runs fn(target) and returns its exit code. The target is the store itself
// without --keyspace (or with -k ''), else the keyspace handle
// (keel::basic_any_keyspace: the store's keyed API, get/put/erase/
// erase_range/scan/compact). fn is a generic callable: it is instantiated
// for both.
template <class F>
int with_keyspace(const cli& c, cli_store& store, keyspace_use use, F&& fn) {
  if (c.keyspace.empty()) return fn(store);
  if (!store.has_keyspaces()) return op_error(no_keyspaces(store.backend()));
  if (use == keyspace_use::existing) {
    auto names = store.keyspaces();
    if (!names) return op_error(names.error());
    if (std::find(names->begin(), names->end(), c.keyspace) == names->end()) return keyspace_missing(c, c.keyspace);
  }
  auto ks = store.keyspace(c.keyspace);
  if (!ks) {
    if (ks.error().code() == keel::errc::not_found) return keyspace_missing(c, c.keyspace);
    return op_error(ks.error());
  }
  return fn(*ks);
}

// One keyspace's row of `keel keyspaces`: its keys and the bytes of their
// keys and values, counted by a scan (exact).
struct keyspace_row {
  std::string name;
  std::uint64_t keys = 0, bytes = 0;
};

// Counts the keys and bytes of a cursor (which `row` names).
template <class Cursor>
keel::result<keyspace_row> count_rows(Cursor&& cursor, std::string name) {
  keyspace_row row{std::move(name)};
  for (const auto& e : cursor) {
    ++row.keys;
    row.bytes += e.key.size() + e.value.size();
  }
  if (cursor.error()) return *cursor.error();
  return row;
}

// Counts the keys and bytes of `target` (a store or a keyspace handle).
template <class Target>
keel::result<keyspace_row> count_keyspace(const Target& target, std::string name) {
  return count_rows(target.scan(keel::key_range::all()), std::move(name));
}

// Every keyspace of `store` with its keys and bytes, sorted by name ("" first),
// as of one snapshot (the handles are opened first). A backend without
// keyspaces has the default one only.
inline keel::result<std::vector<keyspace_row>> keyspace_rows(cli_store& store) {
  auto names = store.keyspaces();
  if (!names) return names.error();
  std::vector<cli_store::keyspace_type> handles(names->size());  // empty for ""
  for (std::size_t i = 0; i < names->size(); ++i) {
    if ((*names)[i].empty()) continue;
    auto ks = store.keyspace((*names)[i]);
    if (!ks) return ks.error();
    handles[i] = std::move(*ks);
  }
  const auto snapshot = store.snapshot();
  std::vector<keyspace_row> rows;
  for (std::size_t i = 0; i < names->size(); ++i) {
    const auto& n = (*names)[i];
    auto row = n.empty() ? count_rows(snapshot.scan(keel::key_range::all()), n)
                         : count_rows(snapshot.scan(handles[i], keel::key_range::all()), n);
    if (!row) return row.error();
    rows.push_back(std::move(*row));
  }
  return rows;
}

// keyspaces: one line per keyspace, NAME<TAB>KEYS<TAB>BYTES (NAME escaped;
// the default keyspace's is empty), or with --json one object per line:
// {"name":...,"keys":N,"bytes":N} ("name_base64" for a name that is not UTF-8).
inline int cmd_keyspaces(const cli& c) {
  if (c.args.size() != 1) return usage_error("keyspaces takes no argument");
  return with_store(c, access::read, [&](cli_store& store) {
    auto rows = keyspace_rows(store);
    if (!rows) return op_error(rows.error());
    std::string out;
    for (const auto& r : *rows) {
      if (c.json)
        out += "{" + json_bytes_field("name", r.name) + ",\"keys\":" + std::to_string(r.keys) +
               ",\"bytes\":" + std::to_string(r.bytes) + "}\n";
      else
        out += escape(r.name, c.keep_utf8) + "\t" + std::to_string(r.keys) + "\t" + std::to_string(r.bytes) + "\n";
    }
    write_out(out);
    return exit_ok;
  });
}

// drop-keyspace NAME --yes: drops the keyspace NAME and every key in it
// (store.drop_keyspace: atomic; RocksDB: DropColumnFamily, no scan).
// Without --yes it refuses (exit 2) and opens nothing; NAME "" (the default
// keyspace, which cannot be dropped) is a usage error too. A missing NAME
// exits 1. The store must exist (access::modify: nothing is created).
inline int cmd_drop_keyspace(const cli& c) {
  bool yes = false;
  std::vector<std::string> words;
  for (std::size_t i = 1; i < c.args.size(); ++i) {
    if (c.is_option(i) && c.args[i] == "--yes")
      yes = true;
    else if (c.is_option(i))
      return usage_error("drop-keyspace: unknown option " + c.args[i]);
    else
      words.push_back(c.args[i]);
  }
  if (words.size() != 1) return usage_error("drop-keyspace takes one NAME (and --yes)");
  std::string error;
  auto name = keyspace_argument(words[0], "drop-keyspace NAME", error);
  if (!name) return usage_error(error);
  if (name->empty())
    return usage_error(
        "drop-keyspace: the default keyspace \"\" cannot be dropped (to erase its keys: keel del --prefix '')");
  if (!yes)
    return usage_error("drop-keyspace would delete " + keyspace_called(c, *name) +
                       " and every key in it, for good; add --yes to do it (nothing was dropped)");
  return with_store(c, access::modify, [&](cli_store& store) {
    if (!store.has_keyspaces()) return op_error(no_keyspaces(store.backend()));
    if (auto r = store.drop_keyspace(*name); !r) {
      if (r.error().code() == keel::errc::not_found) return keyspace_missing(c, *name);
      return op_error(r.error());
    }
    if (c.json)
      write_out("{" + json_bytes_field("dropped", *name) + "}\n");
    else
      std::fprintf(stderr, "keel: dropped %s\n", keyspace_called(c, *name).c_str());
    return exit_ok;
  });
}

}  // namespace keel_tool
