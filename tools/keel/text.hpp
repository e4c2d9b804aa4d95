// keel tool: how keys and values are written and read on the command line:
// C-style escapes (escape, unescape), UTF-8 text, JSON strings and fields
// (json_string, json_bytes_field), and raw output to stdout (write_out). See
// the "Escaping" paragraph of --help.
#pragma once

#include <langinfo.h>

#include <clocale>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace keel_tool {

// Whether s is well-formed UTF-8: no overlong forms, no surrogates, nothing
// past U+10FFFF, no cut sequence.
inline bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
    if (c >= 0xc2 && c <= 0xdf)
      len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
    } else {
      return false;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
    i += len;
  }
  return true;
}

// Whether s prints as UTF-8 text: valid UTF-8 with no C1 control character
// (U+0080-U+009F, which terminals may act on).
inline bool utf8_text(std::string_view s) {
  if (!valid_utf8(s)) return false;
  for (std::size_t i = 0; i + 1 < s.size(); ++i)
    if (static_cast<unsigned char>(s[i]) == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) return false;
  return true;
}

// Whether the user's locale (LC_ALL, LC_CTYPE, LANG) uses UTF-8. Sets the
// process's LC_CTYPE from the environment (call once, from main).
inline bool locale_is_utf8() {
  if (!std::setlocale(LC_CTYPE, "")) return false;
  const char* codeset = ::nl_langinfo(CODESET);
  return codeset && (std::strcmp(codeset, "UTF-8") == 0 || std::strcmp(codeset, "utf8") == 0);
}

// One record per line: \\ \t \n \r, and \xHH for every other byte outside
// printable ASCII. With `keep_utf8` a string that is UTF-8 text
// (utf8_text()) keeps its non-ASCII characters as they are (ASCII is escaped
// as always); any other string is escaped whole.
inline std::string escape(std::string_view s, bool keep_utf8 = false) {
  static const char hex[] = "0123456789abcdef";
  const bool raw_high = keep_utf8 && utf8_text(s);
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if ((c >= 0x20 && c < 0x7f) || (raw_high && c >= 0x80))
      out.push_back(static_cast<char>(c));
    else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// A JSON string. Valid UTF-8 is kept as it is, with '"' and '\\' escaped and
// every control character (below 0x20, and 0x7f) as \u00HH. Anything else
// (not UTF-8: paths, never keys or values, see json_bytes_field) writes every
// byte outside printable ASCII as \u00HH, one code point U+0000-U+00FF each.
inline std::string json_string(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  const bool utf8 = valid_utf8(s);
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if ((c >= 0x20 && c < 0x7f) || (utf8 && c >= 0x80))
      out.push_back(static_cast<char>(c));
    else {
      out += "\\u00";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out + "\"";
}

// Standard base64 (RFC 4648, padded).
inline std::string base64(std::string_view in) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::size_t n = in.size() - i < 3 ? in.size() - i : 3;
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k)
      v = (v << 8) | (k < n ? static_cast<unsigned char>(in[i + k]) : 0u);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += n > 1 ? alphabet[(v >> 6) & 63] : '=';
    out += n > 2 ? alphabet[v & 63] : '=';
  }
  return out;
}

// A key or value as a JSON member: "NAME":"text" when it is valid UTF-8, else
// "NAME_base64":"..." (its bytes in standard base64). A reader takes
// whichever of the two the object has.
inline std::string json_bytes_field(std::string_view name, std::string_view bytes) {
  if (valid_utf8(bytes)) return "\"" + std::string(name) + "\":" + json_string(bytes);
  return "\"" + std::string(name) + "_base64\":\"" + base64(bytes) + "\"";
}

// The bytes a KEY or VALUE argument stands for (the escapes of escape(),
// plus \0 and upper-case hex); nullopt for a bad escape.
inline std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
      continue;
    }
    if (++i >= s.size()) return std::nullopt;
    switch (s[i]) {
      case '\\':
        out.push_back('\\');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case '0':
        out.push_back('\0');
        break;
      case 'x': {
        auto digit = [](char c) -> int {
          if (c >= '0' && c <= '9') return c - '0';
          if (c >= 'a' && c <= 'f') return c - 'a' + 10;
          if (c >= 'A' && c <= 'F') return c - 'A' + 10;
          return -1;
        };
        if (i + 2 >= s.size()) return std::nullopt;
        int hi = digit(s[i + 1]), lo = digit(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        break;
      }
      default:
        return std::nullopt;
    }
  }
  return out;
}

// Writes the bytes of s to stdout as they are.
inline void write_out(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

}  // namespace keel_tool
