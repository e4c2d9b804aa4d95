// keel/memory/checks.hpp - the memory store's checks of what a write asks
// for, before anything is logged: key and value sizes, a batch's ops, an
// erase_range's bounds. Needs no library.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "../error.hpp"
#include "../write_batch.hpp"

namespace keel::detail {

// Keys and values are limited to 4 GiB - 1 bytes each (the log's and the
// B+tree's u32 sizes).
inline std::optional<keel::error> memory_check_sizes(std::string_view key, std::string_view value) {
  constexpr std::size_t limit = std::numeric_limits<std::uint32_t>::max();
  if (key.size() > limit || value.size() > limit) {
    return keel::error(errc::invalid_argument, "memory store: keys and values are limited to 4 GiB - 1 bytes");
  }
  return std::nullopt;
}

inline keel::error memory_bad_range() {
  return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
}

// The first op of `batch` that cannot be written, as its error.
inline std::optional<keel::error> memory_check_batch(const write_batch& batch) {
  for (const auto& op : batch) {
    if (op.kind == write_batch::op_kind::erase_range) {
      if (!erase_range_is_valid(op.range())) return memory_bad_range();
    } else if (auto bad = memory_check_sizes(op.key, op.value)) {
      return bad;
    }
  }
  return std::nullopt;
}

}  // namespace keel::detail
