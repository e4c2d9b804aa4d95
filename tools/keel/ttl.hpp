// keel tool: expiry (issue 29; docs/cli.md, "Expiry"): the DURATION of
// put --ttl (parse_duration), the remaining time as ttl and scan --show-ttl
// print it (remaining_text), and the command ttl KEY.
//
// DURATION grammar: one or more NUMBER UNIT parts, units in decreasing
// order and each at most once, summed: d (24 h), h, m, s, ms; e.g. 30s, 5m,
// 2h, 1d, 500ms, 1h30m, 1d12h. NUMBER is decimal digits only (no sign, no
// fraction, no spaces). The total must be positive and its deadline (now +
// DURATION) representable by the clock; anything else is a usage error
// (exit 2) and nothing is written.
//
// The remaining time is the key's deadline minus this machine's clock
// (std::chrono::system_clock, the clock keel opens a store with), rounded up
// to the second and written in the same grammar without zero parts (1h,
// 59m59s, 1d2h3s), or in ms when under a second (250ms); 0s when the
// deadline has passed by this clock but the store still reports the key.
// A backend without expiry: exit 5 with errc::not_supported.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "args.hpp"
#include "exit_codes.hpp"
#include "keyspaces.hpp"
#include "open.hpp"
#include "text.hpp"

namespace keel_tool {

// The DURATION `s` in ms, or nullopt with `error` set (the grammar above).
// `what` names the option in messages ("--ttl").
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view s, std::string_view what,
                                                              std::string& error) {
  const std::string shown = "'" + std::string(s) + "'";
  const std::string grammar = std::string(what) +
                              " needs a DURATION: NUMBER UNIT parts, units d, h, m, s, ms in that order "
                              "(30s, 5m, 2h, 1d, 500ms, 1h30m), not " + shown;
  struct unit {
    std::string_view name;
    std::int64_t ms;
  };
  static constexpr unit units[] = {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}};
  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::string too_long = std::string(what) + " " + shown + " is too long: its deadline is past what the clock can represent";
  const std::string not_positive = std::string(what) + " must be positive, not " + shown +
                                   " (a key without ttl: put without " + std::string(what) + ")";
  if (s.empty()) {
    error = grammar;
    return std::nullopt;
  }
  if (s[0] == '-') {
    error = not_positive;
    return std::nullopt;
  }
  std::int64_t total = 0;
  std::size_t next_unit = 0;  // units before this one were used or skipped
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] < '0' || s[i] > '9') {
      error = grammar;
      return std::nullopt;
    }
    std::int64_t n = 0;
    bool overflow = false;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      const int d = s[i] - '0';
      if (n > (max - d) / 10) overflow = true;
      if (!overflow) n = n * 10 + d;
    }
    std::size_t j = i;
    while (j < s.size() && s[j] >= 'a' && s[j] <= 'z') ++j;
    const std::string_view name = s.substr(i, j - i);
    i = j;
    std::size_t u = next_unit;
    while (u < std::size(units) && units[u].name != name) ++u;
    if (u == std::size(units)) {
      error = grammar;
      return std::nullopt;
    }
    next_unit = u + 1;
    if (overflow || n > (max - total) / units[u].ms) {
      error = too_long;
      return std::nullopt;
    }
    total += n * units[u].ms;
  }
  if (total <= 0) {
    error = not_positive;
    return std::nullopt;
  }
  if (!keel::deadline_after(std::chrono::system_clock::now(), std::chrono::milliseconds(total))) {
    error = too_long;
    return std::nullopt;
  }
  return std::chrono::milliseconds(total);
}

// The ms from now (this machine's clock) to `deadline`, 0 when it has passed.
inline std::int64_t remaining_ms(keel::deadline_ms deadline) {
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  return deadline > now ? deadline - now : 0;
}

// `ms` as ttl prints it: rounded up to the second, d/h/m/s parts without the
// zero ones (1h, 59m59s, 1d2h3s); under a second in ms (250ms); 0: 0s.
inline std::string remaining_text(std::int64_t ms) {
  if (ms <= 0) return "0s";
  if (ms < 1000) return std::to_string(ms) + "ms";
  std::int64_t sec = ms / 1000 + (ms % 1000 != 0 ? 1 : 0);
  std::string out;
  const std::pair<const char*, std::int64_t> parts[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}};
  for (const auto& [name, size] : parts) {
    if (sec >= size) {
      out += std::to_string(sec / size) + name;
      sec %= size;
    }
  }
  return out;
}

// The members ttl --json and scan --json --show-ttl add: "ttl_ms" (the ms
// left, by this machine's clock) and "deadline_ms" (ms since the Unix
// epoch), both null for a key without ttl.
inline std::string json_ttl_fields(const std::optional<keel::deadline_ms>& deadline) {
  if (!deadline) return "\"ttl_ms\":null,\"deadline_ms\":null";
  return "\"ttl_ms\":" + std::to_string(remaining_ms(*deadline)) + ",\"deadline_ms\":" + std::to_string(*deadline);
}

// The error of a ttl command on a store whose backend has no expiry.
inline keel::error no_expiry(keel::backend b, std::string_view what) {
  return keel::error(keel::errc::not_supported, "the " + std::string(keel::to_string(b)) +
                                                    " backend has no expiry (ttl) in this keel: " + std::string(what) +
                                                    " needs a backend that has it (docs/expiry.md)");
}

// ttl KEY: the remaining time, "no ttl" for a permanent key; "absent" and
// exit 1 (as get) for a key that is not there. --json: {"key", "present",
// "ttl_ms", "deadline_ms"}.
inline int cmd_ttl(const cli& c) {
  if (c.args.size() != 2) return usage_error("ttl takes one KEY");
  if (c.is_option(1)) return usage_error("ttl: unknown option " + c.args[1] + " (a KEY starting with -: ttl -- KEY)");
  const auto key = unescape(c.args[1]);
  if (!key) return usage_error("bad escape in KEY '" + c.args[1] + "'");
  return with_store(c, access::read, [&](cli_store& store) {
    if (!store.has_expiry()) return op_error(no_expiry(store.backend(), "ttl"));
    return with_keyspace(c, store, keyspace_use::existing, [&](auto& target) {
      auto e = target.expiry(*key);
      if (!e) return op_error(e.error());
      if (c.json) {
        write_out("{" + json_bytes_field("key", *key) + ",\"present\":" + (e->present ? "true" : "false") + "," +
                  json_ttl_fields(e->deadline) + "}\n");
      } else if (!e->present) {
        write_out("absent\n");
      } else {
        write_out((e->deadline ? remaining_text(remaining_ms(*e->deadline)) : std::string("no ttl")) + "\n");
      }
      return e->present ? exit_ok : exit_not_found;
    });
  });
}

}  // namespace keel_tool
