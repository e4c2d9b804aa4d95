// keel: expiry (time to live) per key, issue 29: put_options, clock_source
// and the checks every backend shares. Needs no backend headers.
//
//   store.put("session/42", token, keel::put_options{.ttl = std::chrono::minutes(30)});
//
// Semantics (the same on every backend that has expiry; docs/expiry.md):
// - A key put with a ttl expires at put time + ttl, by the store's clock
//   (single-machine backends: the clock_source in their options; cluster
//   backends: the server's time). From that moment it is absent for every
//   read (get, contains, multi_get, scans both ways, snapshots and
//   transactions made after the deadline), and erase or overwrite behave as
//   for an absent key. A put without ttl makes the key permanent again.
// - Deadlines are absolute times: expiry holds across close, reopen and
//   crash. The bytes are reclaimed in the background (and by compact()),
//   never on the read path of other keys.
// - A ttl of zero or less, or one whose deadline the clock cannot represent,
//   is errc::invalid_argument and nothing is written (a batch with one bad
//   ttl writes nothing).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "error.hpp"

namespace keel {

// The time a store reads to set and check deadlines. Default (an empty
// function): std::chrono::system_clock::now. Tests pass a fake one to move
// time without sleeping. Called from many threads at once: it must be
// thread-safe, and should not go backwards (a key seen expired may reappear
// while it does).
using clock_source = std::function<std::chrono::system_clock::time_point()>;

// Options of one put (store.put, keyspace.put, write_batch::put,
// transaction put).
struct put_options {
  // Time to live: the key expires this long after the put. nullopt (the
  // default): permanent. Milliseconds; coarser durations convert
  // (`.ttl = std::chrono::seconds(30)`).
  std::optional<std::chrono::milliseconds> ttl;
};

// A deadline as stored: milliseconds since the Unix epoch (system_clock).
using deadline_ms = std::int64_t;

// What basic_store::expiry(key) reports of one key.
struct key_expiry {
  bool present = false;                 // false: absent (never put, erased, or expired)
  std::optional<deadline_ms> deadline;  // present with a ttl: when it expires; nullopt: permanent
  friend bool operator==(const key_expiry&, const key_expiry&) = default;
};

// Why `ttl` cannot be used (nullopt when it can).
inline std::optional<keel::error> ttl_error(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) {
    return keel::error(errc::invalid_argument,
                       "a ttl must be positive; this one is " + std::to_string(ttl.count()) + " ms; nothing was written");
  }
  return std::nullopt;
}

// The deadline of a put made at `now` with `ttl` (ms since the epoch), or
// invalid_argument when ttl is not positive or the sum passes what a
// deadline can hold.
inline result<deadline_ms> deadline_after(std::chrono::system_clock::time_point now, std::chrono::milliseconds ttl) {
  if (auto bad = ttl_error(ttl)) return *bad;
  const std::int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::int64_t max_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::time_point::max().time_since_epoch())
          .count();
  if (now_ms > max_ms - ttl.count()) {
    return keel::error(errc::invalid_argument, "a ttl of " + std::to_string(ttl.count()) +
                                                   " ms puts the deadline past what the clock can represent; "
                                                   "nothing was written");
  }
  return now_ms + ttl.count();
}

// The time `clock` reads (system_clock::now() when it is empty).
inline std::chrono::system_clock::time_point read_clock(const clock_source& clock) {
  return clock ? clock() : std::chrono::system_clock::now();
}

}  // namespace keel
