// tests/support/scale.hpp - iteration counts that CI variants may lower.
//
// Sanitizer builds run the slow loops (1000 RocksDB open/close cycles, the
// differential run, crash rounds) with smaller counts through environment
// variables; the normal build uses the defaults.
#pragma once

#include <cstdlib>
#include <string>

namespace keel::test {

// The value of the environment variable `name` when it is a positive
// integer, else `fallback`.
inline long scaled(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  return (end != nullptr && *end == '\0' && v > 0) ? v : fallback;
}

}  // namespace keel::test
