// keel/rocksdb/snapshot.hpp - RocksPolicy<Tuning>::snapshot_type, the RocksDB
// backend's snapshot. It defines a member class of the policy, so
// rocksdb/policy.hpp includes it after the policy's class; included first, it
// includes rocksdb/policy.hpp (which includes it again at that point). Hence a
// plain include guard here, not #pragma once.
#ifndef KEEL_ROCKSDB_POLICY_CLASS_DEFINED
#include "policy.hpp"
#elif !defined(KEEL_ROCKSDB_SNAPSHOT_HPP)
#define KEEL_ROCKSDB_SNAPSHOT_HPP

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace keel {

// A snapshot of the RocksDB backend: a rocksdb::Snapshot, released when the
// last copy goes or at close(), whichever comes first. It covers every
// keyspace (a RocksDB snapshot is of the whole DB); a keyspace dropped after
// it was taken reads as errc::snapshot_expired (keyspaces.hpp).
template <class Tuning>
class RocksPolicy<Tuning>::snapshot_type {
 public:
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
    if (auto absent = detail::rocks_keyspace_in_snapshot(*ks.entry_, &owner_->h_, epoch_)) return failed_cursor(std::move(*absent));
    if (ks.entry_->refusing.load(std::memory_order_acquire)) {
      return failed_cursor(detail::rocks_keyspace_dropped_since_snapshot(ks.name()));
    }
    return cursor_type(detail::rocks_cursor::open(owner_->handle(), range, view_, *ks.entry_, owner_->expiry_->clock, ks.entry_));
  }

 private:
  friend class RocksPolicy;
  snapshot_type(const RocksPolicy* owner, std::shared_ptr<const detail::rocks_snapshot_view> v, std::uint64_t epoch)
      : owner_(owner), view_(std::move(v)), epoch_(epoch) {}
  const RocksPolicy* owner_;
  std::shared_ptr<const detail::rocks_snapshot_view> view_;
  std::uint64_t epoch_;  // the keyspace registry's epoch just after the snapshot was taken
};

}  // namespace keel

#endif  // KEEL_ROCKSDB_SNAPSHOT_HPP
