// keel tool: exit codes (documented in --help and docs/cli.md) and the
// functions that report an error on stderr and return its exit code.
#pragma once

#include <cstdio>
#include <keel/error.hpp>
#include <string>

namespace keel_tool {

constexpr int exit_ok = 0;
constexpr int exit_not_found = 1;  // get: no such key; doctor: would not open / a write would not succeed
constexpr int exit_usage = 2;
constexpr int exit_open_failed = 3;  // the store could not be opened; doctor: no database there
constexpr int exit_bad_dump = 4;     // a dump was refused (damaged, truncated, not a dump)
constexpr int exit_failed = 5;       // any other failed operation

inline int usage_error(const std::string& msg) {
  std::fprintf(stderr, "keel: %s\nRun 'keel --help' for usage.\n", msg.c_str());
  return exit_usage;
}

inline int op_error(const keel::error& e) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  return exit_failed;
}

// A failed import or verify: a refused dump exits 4, anything else 5.
inline int dump_error(const keel::error& e) {
  std::fprintf(stderr, "keel: %s\n", e.message().c_str());
  bool refused = e.code() == keel::errc::corruption || e.code() == keel::errc::invalid_argument ||
                 e.code() == keel::errc::not_supported;
  return refused ? exit_bad_dump : exit_failed;
}

}  // namespace keel_tool
