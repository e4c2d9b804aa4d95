// keel: write_batch, a group of puts, erases and range erases applied atomically.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "expiry.hpp"
#include "key_range.hpp"

namespace keel {

// The name of a keyspace (1-255 bytes; "" is the default keyspace), as a
// write_batch op names it. Explicit, so that put(keyspace_name{"users"}, k, v)
// cannot be mistaken for put(k, v); a basic_keyspace converts to it.
struct keyspace_name {
  std::string_view name;
  explicit constexpr keyspace_name(std::string_view n) noexcept : name(n) {}
};

// An ordered list of puts, erases and range erases. store.write(batch) applies them all or
// none, in order (a later op on the same key wins), and readers see the batch
// whole or not at all. A batch is a plain value owned by the caller; it is not
// thread-safe to modify from several threads at once.
class write_batch {
  struct record;

 public:
  enum class op_kind : std::uint8_t { put, erase, erase_range };

  // One operation; views point into the batch and stay valid until it is
  // modified or destroyed. For erase_range, `key` and `value` hold the
  // range's lower and upper bounds (each meaningful only when has_lower /
  // has_upper); range() rebuilds the key_range.
  struct op {
    op_kind kind;
    std::string_view key;
    std::string_view value;  // empty for erase
    bool has_lower = false, has_upper = false;
    std::string_view keyspace = {};  // "": the default keyspace
    std::chrono::milliseconds ttl{0};  // put only: time to live (expiry.hpp); 0: permanent

    key_range range() const {
      if (has_lower && has_upper) return key_range::between(key, value);
      if (has_lower) return key_range::from(key);
      if (has_upper) return key_range::until(value);
      return key_range::all();
    }
  };

  write_batch& put(std::string_view key, std::string_view value) {
    add(op_kind::put, key, value);
    return *this;
  }
  write_batch& erase(std::string_view key) {
    add(op_kind::erase, key, {});
    return *this;
  }
  // The same, in keyspace `ks` (one batch may span keyspaces, atomically).
  write_batch& put(keyspace_name ks, std::string_view key, std::string_view value) {
    add(op_kind::put, key, value, false, false, ks.name);
    return *this;
  }
  write_batch& erase(keyspace_name ks, std::string_view key) {
    add(op_kind::erase, key, {}, false, false, ks.name);
    return *this;
  }
  write_batch& erase_range(keyspace_name ks, const key_range& range) {
    add(op_kind::erase_range, range.lower().value_or(std::string()), range.upper().value_or(std::string()),
        range.lower().has_value(), range.upper().has_value(), ks.name);
    return *this;
  }
  // Puts with options (expiry.hpp: put_options::ttl). A bad ttl (zero or
  // less) is kept and makes write() fail with errc::invalid_argument, writing
  // nothing.
  write_batch& put(std::string_view key, std::string_view value, const put_options& o) {
    add(op_kind::put, key, value, false, false, {}, o.ttl);
    return *this;
  }
  write_batch& put(keyspace_name ks, std::string_view key, std::string_view value, const put_options& o) {
    add(op_kind::put, key, value, false, false, ks.name, o.ttl);
    return *this;
  }
  // Whether some put carries a ttl (a backend without expiry refuses such a
  // batch rather than write the keys permanent).
  bool has_ttl() const noexcept { return has_ttl_; }
  // Whether some op names a keyspace other than the default one (a backend
  // without keyspaces refuses such a batch rather than write it elsewhere).
  bool names_keyspaces() const noexcept { return names_keyspaces_; }
  // Erases every key in `range` (its direction is ignored) present when the
  // batch is applied, including keys put by earlier operations of this batch.
  // A range whose lower bound is above its upper bound makes write() fail
  // with errc::invalid_argument (see check_range()).
  write_batch& erase_range(const key_range& range) {
    add(op_kind::erase_range, range.lower().value_or(std::string()), range.upper().value_or(std::string()),
        range.lower().has_value(), range.upper().has_value());
    return *this;
  }

  std::size_t size() const noexcept { return ops_.size(); }
  bool empty() const noexcept { return ops_.empty(); }
  void clear() noexcept {
    ops_.clear();
    bytes_.clear();
    names_keyspaces_ = false;
    has_ttl_ = false;
    keyspace_bytes_ = 0;
  }
  // Bytes of keys and values held.
  std::size_t payload_bytes() const noexcept { return bytes_.size() - keyspace_bytes_; }

  class const_iterator {
   public:
    using value_type = op;
    using difference_type = std::ptrdiff_t;
    const_iterator() = default;
    op operator*() const {
      const record& r = (*records_)[i_];
      const char* base = bytes_->data() + r.offset;
      return {r.kind,      {base + r.keyspace_size, r.key_size}, {base + r.keyspace_size + r.key_size, r.value_size},
              r.has_lower, r.has_upper,                          {base, r.keyspace_size},
              r.ttl};
    }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) {
      auto t = *this;
      ++i_;
      return t;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) { return a.i_ == b.i_; }

   private:
    friend class write_batch;
    const_iterator(const write_batch* b, std::size_t i) : records_(&b->ops_), bytes_(&b->bytes_), i_(i) {}
    const std::vector<record>* records_ = nullptr;
    const std::string* bytes_ = nullptr;
    std::size_t i_ = 0;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, ops_.size()}; }

 private:
  // bytes_ holds, per op: keyspace name, key, value.
  struct record {
    std::size_t offset, key_size, value_size;
    std::uint32_t keyspace_size;
    op_kind kind;
    bool has_lower, has_upper;
    std::chrono::milliseconds ttl;
  };
  void add(op_kind kind, std::string_view key, std::string_view value, bool has_lower = false,
           bool has_upper = false, std::string_view keyspace = {},
           std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    // A bad ttl is kept as a non-positive one (never 0, which means
    // permanent), so that write() can refuse the whole batch.
    const std::chrono::milliseconds kept = !ttl ? std::chrono::milliseconds(0)
                                           : ttl->count() > 0 ? *ttl
                                                              : std::chrono::milliseconds(-1);
    ops_.push_back({bytes_.size(), key.size(), value.size(), static_cast<std::uint32_t>(keyspace.size()), kind,
                    has_lower, has_upper, kept});
    has_ttl_ = has_ttl_ || ttl.has_value();
    bytes_.append(keyspace);
    bytes_.append(key);
    bytes_.append(value);
    names_keyspaces_ = names_keyspaces_ || !keyspace.empty();
    keyspace_bytes_ += keyspace.size();
  }
  std::vector<record> ops_;
  std::string bytes_;
  bool names_keyspaces_ = false;
  bool has_ttl_ = false;
  std::size_t keyspace_bytes_ = 0;  // of bytes_, the keyspace names (not payload)
};

// The check every backend applies to a range it erases: a lower bound above
// the upper bound is a caller's mistake, not an empty range to ignore.
inline bool erase_range_is_valid(const key_range& r) noexcept {
  return !(r.lower() && r.upper() && *r.lower() > *r.upper());
}

}  // namespace keel
