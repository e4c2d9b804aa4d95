// keel: basic_keyspace<Policy>, a handle to one keyspace of a store: the
// store's keyed API scoped to it. Needs no backend headers;
// basic_store::keyspace(name) makes one.
//
//   auto users = store.keyspace("users");       // created if missing
//   users->put("alice", "1");
//   store.write(keel::write_batch{}.put(*users, "bob", "2").put("log/1", "bob added"));
//
// Semantics (the same on every backend with keyspaces):
// - The same key in two keyspaces is two entries; a scan never leaves its
//   keyspace; the store's own operations act on the default keyspace "".
// - A handle is cheap to copy and may be used from many threads at once. It
//   never outlives the store's open: after close() every call gives
//   errc::closed; after drop_keyspace(name) errc::not_found (recreating the
//   name gives a new, empty keyspace that old handles do not reach).
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "contract.hpp"
#include "cursor.hpp"
#include "stats.hpp"
#include "watch.hpp"
#include "write_batch.hpp"

namespace keel {

template <class Policy>
class basic_keyspace {
  static_assert(keyspace_policy<Policy>, "Policy has no keyspaces (keel::keyspace_policy)");

 public:
  using cursor = basic_cursor<typename Policy::cursor_type>;

  // Its name ("" for the default keyspace).
  const std::string& name() const noexcept { return name_; }
  // For write_batch::put(ks, k, v) and friends.
  operator keyspace_name() const noexcept { return keyspace_name(name_); }  // NOLINT: meant to convert

  result<void> put(std::string_view key, std::string_view value) {
    if (!backend_) return closed_error();
    counters_->add(op_counters::puts, op_counters::bytes_written, key.size() + value.size());
    return backend_->put(ks_, key, value);
  }
  // With options (expiry.hpp: put_options::ttl), as basic_store::put.
  result<void> put(std::string_view key, std::string_view value, const put_options& options)
    requires expiry_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (options.ttl) {
      if (auto bad = ttl_error(*options.ttl)) return *bad;
    }
    counters_->add(op_counters::puts, op_counters::bytes_written, key.size() + value.size());
    return backend_->put(ks_, key, value, options);
  }
  // Whether key is present now and, if it has a ttl, its deadline
  // (expiry.hpp: key_expiry).
  result<key_expiry> expiry(std::string_view key) const
    requires expiry_policy<Policy>
  {
    if (!backend_) return closed_error();
    return backend_->expiry(ks_, key);
  }
  result<std::optional<std::string>> get(std::string_view key) const {
    result<std::optional<std::string>> r = backend_ ? backend_->get(ks_, key) : closed_error();
    if (backend_) counters_->add(op_counters::gets, op_counters::bytes_read, r && *r ? (*r)->size() : 0);
    return r;
  }
  result<bool> contains(std::string_view key) const {
    if (!backend_) return closed_error();
    counters_->add(op_counters::contains);
    return backend_->contains(ks_, key);
  }
  result<void> erase(std::string_view key) {
    if (!backend_) return closed_error();
    counters_->add(op_counters::erases, op_counters::bytes_written, key.size());
    return backend_->erase(ks_, key);
  }
  result<void> erase_range(const key_range& range) {
    if (!backend_) return closed_error();
    counters_->add(op_counters::writes);
    return backend_->erase_range(ks_, range);
  }
  template <std::ranges::input_range Keys>
    requires std::convertible_to<std::ranges::range_reference_t<Keys>, std::string_view>
  result<std::vector<std::optional<std::string>>> multi_get(const Keys& keys) const {
    if (!backend_) return closed_error();
    std::vector<std::string_view> views;
    if constexpr (std::ranges::sized_range<Keys>) views.reserve(std::ranges::size(keys));
    for (auto&& k : keys) views.emplace_back(k);
    auto r = backend_->multi_get(ks_, std::span<const std::string_view>(views));
    if (r) {
      std::uint64_t bytes = 0;
      for (const auto& v : *r) bytes += v ? v->size() : 0;
      counters_->add(op_counters::gets, op_counters::bytes_read, views.size(), bytes);
    }
    return r;
  }
  result<std::vector<std::optional<std::string>>> multi_get(std::initializer_list<std::string_view> keys) const {
    return multi_get(std::span<const std::string_view>(keys.begin(), keys.size()));
  }
  cursor scan(const key_range& range = key_range::all()) const { return cursor(scan_impl(range), counters_); }
  typename Policy::cursor_type scan_impl(const key_range& range) const {
    if (!backend_) return Policy::failed_cursor(closed_error());
    counters_->add(op_counters::scans);
    return backend_->scan(ks_, range);
  }
  result<void> compact(const key_range& range = key_range::all()) {
    if (!backend_) return closed_error();
    return backend_->compact(ks_, range);
  }

  // Watch (watch.hpp) of this keyspace: its changes carry its name. Dropping
  // the keyspace ends the watch (next(): errc::not_found).
  result<basic_watch<Policy>> watch(const key_range& range = key_range::all(), const watch_options& options = {}) const
    requires watch_policy<Policy>
  {
    if (!backend_) return closed_error();
    if (auto bad = watch_options_error(options)) return *bad;
    auto w = backend_->watch(ks_, range, options);
    if (!w) return std::move(w).error();
    return basic_watch<Policy>(std::move(*w));
  }

  // The backend's handle, for adapters (basic_transaction, basic_snapshot).
  const typename Policy::keyspace_type& handle() const noexcept { return ks_; }

 private:
  template <class P>
  friend class basic_store;
  basic_keyspace(std::shared_ptr<Policy> backend, typename Policy::keyspace_type ks, std::string name,
                 std::shared_ptr<op_counters> counters)
      : backend_(std::move(backend)), ks_(std::move(ks)), name_(std::move(name)), counters_(std::move(counters)) {}

  std::shared_ptr<Policy> backend_;
  typename Policy::keyspace_type ks_;
  std::string name_;
  std::shared_ptr<op_counters> counters_;
};

}  // namespace keel
