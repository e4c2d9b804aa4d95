// keel: basic_snapshot<Policy>, a point-in-time view of a store. Needs no
// backend headers; basic_store::snapshot() makes one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "contract.hpp"
#include "cursor.hpp"
#include "keyspace.hpp"
#include "stats.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// basic_snapshot: a point-in-time view of a store. Reads through it see the
// store as it was when snapshot() was called, whatever is written later.
// Copies share one view. Thread-safe. After the store is closed every call
// gives errc::closed. A snapshot taken of a closed store is empty and all its
// calls give errc::closed.
// ---------------------------------------------------------------------------
template <class Policy>
class basic_snapshot {
 public:
  using cursor = basic_cursor<typename Policy::cursor_type>;

  // `counters`: the store's stats, where reads through the snapshot are counted.
  explicit basic_snapshot(result<typename Policy::snapshot_type> view,
                          std::shared_ptr<op_counters> counters = {})
      : view_(std::move(view)), counters_(std::move(counters)) {}

  result<std::optional<std::string>> get(std::string_view key) const {
    result<std::optional<std::string>> r = view_ ? view_->get(key) : view_.error();
    if (counters_) counters_->add(op_counters::gets, op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(std::string_view key) const {
    if (counters_) counters_->add(op_counters::contains);
    if (!view_) return view_.error();
    return view_->contains(key);
  }
  cursor scan(const key_range& range = key_range::all()) const { return cursor(scan_impl(range), counters_); }
  // The backend's own cursor, for adapters (basic_any_store).
  typename Policy::cursor_type scan_impl(const key_range& range) const {
    if (counters_) counters_->add(op_counters::scans);
    if (!view_) return Policy::failed_cursor(view_.error());
    return view_->scan(range);
  }
  // The same in keyspace `ks` (one snapshot covers every keyspace as of its
  // creation; a keyspace dropped since stays readable through it; one
  // created since, or a handle to an earlier keyspace of that name:
  // errc::not_found).
  result<std::optional<std::string>> get(const basic_keyspace<Policy>& ks, std::string_view key) const
    requires keyspace_policy<Policy>
  {
    result<std::optional<std::string>> r = view_ ? view_->get(ks.handle(), key) : view_.error();
    if (counters_) counters_->add(op_counters::gets, op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(const basic_keyspace<Policy>& ks, std::string_view key) const
    requires keyspace_policy<Policy>
  {
    if (counters_) counters_->add(op_counters::contains);
    if (!view_) return view_.error();
    return view_->contains(ks.handle(), key);
  }
  cursor scan(const basic_keyspace<Policy>& ks, const key_range& range = key_range::all()) const
    requires keyspace_policy<Policy>
  {
    return cursor(scan_impl(ks, range), counters_);
  }
  // The backend's own cursor, for adapters (basic_any_snapshot).
  typename Policy::cursor_type scan_impl(const basic_keyspace<Policy>& ks, const key_range& range) const
    requires keyspace_policy<Policy>
  {
    if (counters_) counters_->add(op_counters::scans);
    if (!view_) return Policy::failed_cursor(view_.error());
    return view_->scan(ks.handle(), range);
  }
  // Whether the snapshot was taken (false when the store was already closed).
  bool valid() const noexcept { return view_.has_value(); }
  // The store's counters, for adapters (basic_any_snapshot).
  const std::shared_ptr<op_counters>& counters() const noexcept { return counters_; }

 private:
  result<typename Policy::snapshot_type> view_;
  std::shared_ptr<op_counters> counters_;
};

}  // namespace keel
