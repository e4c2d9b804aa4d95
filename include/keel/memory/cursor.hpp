// keel/memory/cursor.hpp - the memory store's cursor (MemoryPolicy::
// cursor_type): an ordered pass over one version of one keyspace's tree,
// forward or reversed, with the optional run_cursor members (contract.hpp).
// Needs no library.
//
// Thread safety: one thread at a time per cursor; it holds its version (a
// counted tree handle) and the store, so writers and other cursors go on
// meanwhile. After the store's close() a step gives errc::closed. Errors:
// error() (closed, or a failed cursor made from an error); a value that does
// not decompress throws std::runtime_error (memory damage only).
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../key_range.hpp"
#include "btree.hpp"
#include "compression.hpp"
#include "expiry.hpp"
#include "versions.hpp"

namespace keel::detail {

class memory_cursor {
  using tree = persistent_btree;

 public:
  bool valid() const noexcept { return valid_; }
  std::string_view key() const noexcept { return it_->key(); }
  // Precondition valid(); a compressed value is decompressed into the
  // cursor, valid until its next step.
  std::string_view value() const {
    const detail::pb_entry* e = it_->entry();
    if (e->codec() == 0) return e->value();
    compression_->decode_or_throw(*e, value_buffer_);
    return value_buffer_;
  }
  const std::optional<keel::error>& error() const noexcept { return error_; }
  // The deadline_cursor members (contract.hpp; export and copy read them,
  // and the hybrid store's move carries them to RocksDB): whether an entry
  // may have a deadline (the store had held one when the cursor was made),
  // and the current entry's (ms since the epoch; nullopt when it has none;
  // precondition valid()).
  bool holds_deadlines() const noexcept { return !time_.never_hides(); }
  std::optional<deadline_ms> deadline() const noexcept {
    const detail::pb_entry* e = it_->entry();
    if (!e->has_deadline()) return std::nullopt;
    return e->deadline();
  }

  void next() {
    if (!valid_) return;
    if (!versions_->is_open()) {
      valid_ = false;
      error_ = closed_error();
      return;
    }
    step();
  }

  // The optional run_cursor members (contract.hpp). A run is taken a leaf at
  // a time: the range's bound is compared once per leaf, not per entry.
  // Compressed values of a run are decompressed into the cursor, valid
  // until its next fill().
  std::size_t fill(std::span<cursor_entry> out) {
    if (!valid_ || out.empty()) return 0;
    if (!versions_->is_open()) {
      valid_ = false;
      error_ = closed_error();
      return 0;
    }
    std::size_t n = 0;
    while (n < out.size()) {
      const auto leaf = reversed_ ? it_->leaf_up_to_here() : it_->rest_of_leaf();
      auto at = [&](std::size_t i) { return reversed_ ? leaf[leaf.size() - 1 - i] : leaf[i]; };
      std::size_t take = std::min(leaf.size(), out.size() - n);
      bool ends_here = false;
      if (bound_ && !in_bound(at(take - 1)->key())) {
        std::size_t inside = 0;
        while (inside < take && in_bound(at(inside)->key())) ++inside;
        take = inside;
        ends_here = true;
      }
      for (std::size_t i = 0; i < take; ++i) {
        const detail::pb_entry* e = at(i);
        if (time_.hides(*e)) continue;  // expired at the scan's time
        std::string_view v = e->value();
        if (e->codec() != 0) {
          if (run_values_.size() < out.size()) run_values_.resize(out.size());
          compression_->decode_or_throw(*e, run_values_[n]);
          v = run_values_[n];
        }
        out[n++] = {e->key(), v};
      }
      if (ends_here) {
        valid_ = false;
        return n;
      }
      if (reversed_)
        it_->skip_back(take);
      else
        it_->skip_forward(take);
      if (!it_->valid()) {
        valid_ = false;
        return n;
      }
    }
    settle();
    return n;
  }
  // Precondition: not a failed cursor (one that fill() gave entries).
  const std::atomic<bool>& open_flag() const noexcept { return versions_->open_flag(); }

  // A failed cursor: valid() is false, error() is `e`.
  explicit memory_cursor(keel::error e) : error_(std::move(e)) {}
  // A cursor over `range` of `version`; `owner` (the store, kept alive while
  // the cursor is) owns `versions` and `compression`. Entries expired at
  // `time` are left out.
  memory_cursor(std::shared_ptr<const void> owner, const memory_versions& versions,
                const value_compression& compression, tree version, const key_range& range,
                read_time time = read_time::never())
      : owner_(std::move(owner)), versions_(&versions), compression_(&compression), time_(time),
        reversed_(range.is_reversed()) {
    if (range.is_empty()) return;
    it_.emplace(std::move(version));
    if (!reversed_) {
      if (range.lower())
        it_->seek(*range.lower());
      else
        it_->seek_first();
      if (range.upper()) bound_ = *range.upper();
    } else {
      if (range.upper())
        it_->seek_before(*range.upper());
      else
        it_->seek_last();
      if (range.lower()) bound_ = *range.lower();
    }
    settle();
  }
  void step() {
    if (reversed_)
      it_->prev();
    else
      it_->next();
    settle();
  }
 private:
  // valid_ = the iterator is on an entry inside the range, not expired at
  // time_ (expired ones are stepped over).
  void settle() {
    for (;;) {
      valid_ = it_->valid() && (!bound_ || in_bound(it_->key()));
      if (!valid_ || !time_.hides(*it_->entry())) return;
      if (reversed_)
        it_->prev();
      else
        it_->next();
    }
  }
  // Whether `key` is on the near side of the range's far end (bound_ set).
  bool in_bound(std::string_view key) const {
    return reversed_ ? key >= std::string_view(*bound_) : key < std::string_view(*bound_);
  }

  std::shared_ptr<const void> owner_;
  const memory_versions* versions_ = nullptr;
  const value_compression* compression_ = nullptr;
  read_time time_ = read_time::never();
  std::optional<tree::cursor> it_;
  std::optional<std::string> bound_;  // the range's far end: upper (forward) or lower (reversed)
  bool reversed_ = false;
  bool valid_ = false;
  std::optional<keel::error> error_;
  mutable std::string value_buffer_;  // the current value, decompressed
  std::vector<std::string> run_values_;  // compressed values of the last fill(), decompressed
};

}  // namespace keel::detail
