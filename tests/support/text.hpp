// Test support: small string checks shared by the test files.
#pragma once

#include <string_view>

namespace keel::test {

// Whether `needle` occurs in `haystack` (error messages, logs, tool output).
inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace keel::test
