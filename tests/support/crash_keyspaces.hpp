// tests/support/crash_keyspaces.hpp - the keyspaces the crash writer
// (tests/crash_writer.cpp --keyspaces) spans with each batch, shared with the
// test that checks them (tests/crash_test.cpp).
#pragma once

#include <string>
#include <vector>

namespace keel::test {

// The default keyspace, a plain name and one of NUL and 0xFF bytes.
inline std::vector<std::string> crash_keyspaces() { return {std::string(), "a", std::string("\0\xff", 2)}; }

}  // namespace keel::test
