// keel: keel::compression, the value compression of the memory backend
// (memory_options::compression, docs/compression.md). Needs no library.
#pragma once

#include <string_view>

namespace keel {

// none: values are held as written. lz4, zstd: values are compressed in the
// background with a dictionary trained on the store's own values; each needs
// its library at build time (KEEL_HAVE_LZ4 / KEEL_HAVE_ZSTD, which keel's
// Meson dependency and keel.pc define when the library was found), else
// open() fails with errc::not_supported.
enum class compression { none, lz4, zstd };

constexpr std::string_view to_string(compression c) noexcept {
  switch (c) {
    case compression::none: return "none";
    case compression::lz4: return "lz4";
    case compression::zstd: return "zstd";
  }
  return "unknown";
}

}  // namespace keel
