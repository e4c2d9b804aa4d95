// keel tool: watch, every committed change of the store as it happens
// (issue 28; docs/watch.md, docs/cli.md). One line per change, until
// SIGINT or SIGTERM (exit 0), --limit N changes (exit 0), or the store fails
// (exit 5 with the reason: snapshot_expired names the oldest seq still kept).
#pragma once

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "text.hpp"

namespace keel_tool {

// Set by SIGINT / SIGTERM while a watch runs: the watch loop ends with exit 0.
inline volatile sig_atomic_t watch_stop_requested = 0;

inline void request_watch_stop(int) { watch_stop_requested = 1; }

// Installs the SIGINT / SIGTERM handlers of the watch loop (one-shot: a
// second signal, e.g. a second Ctrl-C, ends the process the default way).
inline void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = request_watch_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The arguments of watch: range options as scan's (no --reverse: changes come
// in commit order), --keys-only, --limit N, and --after SEQ.
struct watch_args {
  range_opts range;
  std::optional<std::uint64_t> after;
};

// Parses the arguments of watch into w; returns an error message or "".
inline std::string parse_watch_args(const cli& c, watch_args& w) {
  // --after SEQ is watch's own; the rest are scan's range options.
  std::vector<std::string> rest;
  std::size_t literal_from = static_cast<std::size_t>(-1);
  for (std::size_t i = 0; i < c.args.size(); ++i) {
    if (i == c.literal_from) literal_from = rest.size();
    if (i >= 1 && i < c.literal_from && c.args[i] == "--after") {
      if (i + 1 >= c.args.size()) return "--after needs a SEQ (a number; 0: every change the store still keeps)";
      const std::string& n = c.args[++i];
      char* end = nullptr;
      errno = 0;
      const unsigned long long v = std::strtoull(n.c_str(), &end, 10);
      if (n.empty() || n[0] < '0' || n[0] > '9' || *end != '\0' || errno == ERANGE)
        return "--after needs a SEQ (a number), not '" + n + "'";
      w.after = v;
      continue;
    }
    rest.push_back(c.args[i]);
  }
  if (auto err = parse_range(rest, 1, w.range, literal_from); !err.empty()) return err;
  if (!w.range.positional.empty()) return "watch takes no argument '" + w.range.positional.front() + "'";
  if (w.range.reverse) return "--reverse is for scan: watch prints changes in commit order";
  return "";
}

// One change as the tool prints it: SEQ<TAB>put<TAB>KEY<TAB>VALUE or
// SEQ<TAB>erase<TAB>KEY (escaped as scan's), or a JSON object per line.
inline std::string watch_line(const cli& c, const keel::change& ch, bool keys_only) {
  const std::string seq = std::to_string(ch.seq);
  const char* op = ch.value ? "put" : "erase";
  std::string line;
  if (c.json) {
    line = "{\"seq\":" + seq + ",\"op\":\"" + op + "\"," + json_bytes_field("key", ch.key);
    if (ch.value && !keys_only) line += "," + json_bytes_field("value", *ch.value);
    line += "}\n";
  } else {
    line = seq + '\t' + op + '\t' + escape(ch.key, c.keep_utf8);
    if (ch.value && !keys_only) line += '\t' + escape(*ch.value, c.keep_utf8);
    line += '\n';
  }
  return line;
}

// watch [--prefix P] [--from K] [--to K] [--after SEQ] [--limit N] [--keys-only]
inline int cmd_watch(const cli& c) {
  watch_args wa;
  if (auto err = parse_watch_args(c, wa); !err.empty()) return usage_error(err);
  if (auto choice = choose_main_store(c); choice && !choice->memory_by.empty())
    return usage_error("watch needs a store that outlives keel: a memory store that is not persisted (chosen by " +
                       choice->memory_by + ") is empty and nobody else can write to it. Use --memory-file FILE, " +
                       "--db PATH, --hybrid PATH or --etcd");
  // Read-write, never created: a RocksDB store opened read-only is a view as
  // of its open and has no watch.
  return with_store(c, access::modify, [&](cli_store& store) {
    const auto b = store.backend();
    const bool held = b == keel::backend::rocksdb || b == keel::backend::memory || b == keel::backend::hybrid;
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      keel::watch_options o;
      o.after = wa.after;
      auto w = target.watch(wa.range.range(), o);
      if (!w) return op_error(w.error());
      catch_stop_signals();  // before the note below, which tells a waiting reader that keel is ready
      if (held && !wa.after)
        std::fprintf(stderr,
                     "keel: this keel holds the store open, so no other process can write to it while it runs: "
                     "nothing will change. --after SEQ replays the changes it still keeps (docs/watch.md)\n");
      std::uint64_t printed = 0;
      while (!watch_stop_requested && !(wa.range.limit && printed >= *wa.range.limit)) {
        auto ch = w->next(std::chrono::milliseconds(100));
        if (!ch) return op_error(ch.error());
        if (!*ch) continue;
        write_out(watch_line(c, **ch, wa.range.keys_only));
        std::fflush(stdout);
        ++printed;
      }
      return exit_ok;
    });
  });
}

}  // namespace keel_tool
