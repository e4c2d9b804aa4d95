// keel: key_range, the set of keys a scan visits and in which direction.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace keel {

// A half-open interval of keys [lower, upper) in bytewise (memcmp, unsigned)
// order, plus a direction. A missing bound means "unbounded". Ranges are plain
// values: cheap to copy, no reference to any store.
class key_range {
 public:
  // Every key, in ascending order.
  static key_range all() { return key_range{}; }

  // Every key that starts with `prefix`. The upper bound is the smallest key
  // greater than every key with that prefix: trailing 0xFF bytes are dropped
  // and the last remaining byte incremented; a prefix of only 0xFF bytes (or
  // an empty prefix) has no upper bound. So prefix("\xff\xff") finds
  // "\xff\xff", "\xff\xff\x00" and "\xff\xff\xff\xff".
  static key_range prefix(std::string_view prefix) {
    key_range r;
    r.lower_ = std::string(prefix);
    r.upper_ = prefix_successor(prefix);
    return r;
  }

  // Keys in [lo, hi). Empty when lo >= hi.
  static key_range between(std::string_view lo, std::string_view hi) {
    key_range r;
    r.lower_ = std::string(lo);
    r.upper_ = std::string(hi);
    return r;
  }

  // Keys >= lo / keys < hi.
  static key_range from(std::string_view lo) {
    key_range r;
    r.lower_ = std::string(lo);
    return r;
  }
  static key_range until(std::string_view hi) {
    key_range r;
    r.upper_ = std::string(hi);
    return r;
  }

  // The same keys, visited in the opposite order.
  key_range reversed() const {
    key_range r = *this;
    r.reversed_ = !reversed_;
    return r;
  }

  // The same keys in ascending order (what erase_range and conflict
  // records work with).
  key_range forward() const { return reversed_ ? reversed() : *this; }

  const std::optional<std::string>& lower() const noexcept { return lower_; }  // inclusive
  const std::optional<std::string>& upper() const noexcept { return upper_; }  // exclusive
  bool is_reversed() const noexcept { return reversed_; }

  bool contains(std::string_view key) const noexcept {
    return (!lower_ || key >= std::string_view(*lower_)) && (!upper_ || key < std::string_view(*upper_));
  }
  // True when no key is in the range: lower >= upper, or an upper bound of ""
  // (no key is below the empty key).
  bool is_empty() const noexcept { return upper_ && (upper_->empty() || (lower_ && *lower_ >= *upper_)); }

  // The smallest key greater than every key starting with `prefix`, or nullopt
  // when there is none (prefix empty or all 0xFF).
  static std::optional<std::string> prefix_successor(std::string_view prefix) {
    std::string s(prefix);
    while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xFF) s.pop_back();
    if (s.empty()) return std::nullopt;
    s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
    return s;
  }

  friend bool operator==(const key_range&, const key_range&) = default;

 private:
  key_range() = default;
  std::optional<std::string> lower_;
  std::optional<std::string> upper_;
  bool reversed_ = false;
};

}  // namespace keel
