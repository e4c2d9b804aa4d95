// keel::detail::keyspace_text: a keyspace name as keel's messages show it,
// quoted, printable ASCII as is and every other byte (and the quote and
// backslash) as \xNN, so names with NUL or 0xFF print on one line. Shared by
// the backends' and the dump format's messages. Pure function.
#pragma once

#include <string>
#include <string_view>

namespace keel::detail {

inline std::string keyspace_text(std::string_view name) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += ch;
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out + "'";
}

}  // namespace keel::detail
