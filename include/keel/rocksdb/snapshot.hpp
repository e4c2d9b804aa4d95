// keel/rocksdb/snapshot.hpp - detail::rocks_snapshot<Policy>, the RocksDB
// backend's snapshot (RocksPolicy<Tuning>::snapshot_type). A template over the
// policy, so that it needs only the policy's declaration here: its members
// are instantiated where they are used, with the policy complete. The policy
// befriends it (it reads through the policy's private readers).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../error.hpp"
#include "../expiry.hpp"
#include "../key_range.hpp"
#include "cursor.hpp"
#include "keyspaces.hpp"
#include "open.hpp"

namespace keel::detail {

// A snapshot of the RocksDB backend: a rocksdb::Snapshot, released when the
// last copy goes or at close(), whichever comes first. It covers every
// keyspace (a RocksDB snapshot is of the whole DB); a keyspace dropped after
// it was taken reads as errc::snapshot_expired (keyspaces.hpp).
template <class Policy>
class rocks_snapshot {
 public:
  using cursor_type = typename Policy::cursor_type;
  using keyspace_type = typename Policy::keyspace_type;
  result<std::optional<std::string>> get(std::string_view key) const { return owner_->template read_at<true>(key, view_.get()); }
  result<bool> contains(std::string_view key) const { return owner_->template read_at<false>(key, view_.get()); }
  // The time its reads leave expired keys out at (expiry): when it was taken.
  deadline_ms view_time() const noexcept { return view_->time; }
  cursor_type scan(const key_range& range) const {
    return cursor_type(
        detail::rocks_cursor::open(owner_->handle(), range, view_, *owner_->keyspaces_.default_keyspace, owner_->expiry_->clock));
  }
  result<std::optional<std::string>> get(const keyspace_type& ks, std::string_view key) const {
    if (auto absent = detail::rocks_keyspace_in_snapshot(*ks.entry_, &owner_->h_, epoch_)) return std::move(*absent);
    return owner_->template read_in<true>(ks, key, view_.get());
  }
  result<bool> contains(const keyspace_type& ks, std::string_view key) const {
    if (auto absent = detail::rocks_keyspace_in_snapshot(*ks.entry_, &owner_->h_, epoch_)) return std::move(*absent);
    return owner_->template read_in<false>(ks, key, view_.get());
  }
  cursor_type scan(const keyspace_type& ks, const key_range& range) const {
    if (auto absent = detail::rocks_keyspace_in_snapshot(*ks.entry_, &owner_->h_, epoch_)) return Policy::failed_cursor(std::move(*absent));
    if (ks.entry_->refusing.load(std::memory_order_acquire)) {
      return Policy::failed_cursor(detail::rocks_keyspace_dropped_since_snapshot(ks.name()));
    }
    return cursor_type(detail::rocks_cursor::open(owner_->handle(), range, view_, *ks.entry_, owner_->expiry_->clock, ks.entry_));
  }

 private:
  friend Policy;
  rocks_snapshot(const Policy* owner, std::shared_ptr<const detail::rocks_snapshot_view> v, std::uint64_t epoch)
      : owner_(owner), view_(std::move(v)), epoch_(epoch) {}
  const Policy* owner_;
  std::shared_ptr<const detail::rocks_snapshot_view> view_;
  std::uint64_t epoch_;  // the keyspace registry's epoch just after the snapshot was taken
};

}  // namespace keel::detail
