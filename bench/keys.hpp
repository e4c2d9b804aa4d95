// The keys and values the instruction-count benchmarks share (overhead.cpp,
// watch_*.cpp, expiry_rocks.cpp): 16-byte keys "user" + 11 digits + "0", in
// key order for ascending i, and 100-byte values of one letter, so that the
// figures of the different files are of the same workload.
#pragma once

#include <cstdio>
#include <string>

namespace keel_bench {

inline std::string key(unsigned i) {
  char b[17];
  std::snprintf(b, sizeof b, "user%011u0", i);
  return std::string(b, 16);
}
inline std::string value(unsigned i) { return std::string(100, static_cast<char>('a' + i % 26)); }

}  // namespace keel_bench
