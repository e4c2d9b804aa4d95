// keel: the hybrid store's snapshot (HybridPolicy::snapshot_type): the
// snapshot of the tier it was taken from. Needs no backend headers.
//
// In keyspace `ks`: through the tier's handle of it (hybrid/keyspaces.hpp);
// errc::not_found when the keyspace has none in that tier (created after the
// snapshot). A snapshot of the RocksDB tier exists only after the move's
// switch, which set every live entry's `large`: reading it needs no gate.
// Thread safety: as the tier's snapshot (copyable, usable from many threads).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "../detail/any_cursor.hpp"
#include "../error.hpp"
#include "../expiry.hpp"
#include "../key_range.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"

namespace keel::detail {

// Keyspace: HybridPolicy::keyspace_type (its entry_, a hybrid_keyspace).
template <class Small, class Large, class Keyspace>
class hybrid_snapshot {
 public:
  using cursor_type = any_cursor<typename Small::cursor_type, typename Large::cursor_type>;

  // Made by the store, of the tier that holds the data.
  explicit hybrid_snapshot(typename Small::snapshot_type s) : s_(std::in_place_index<0>, std::move(s)) {}
  explicit hybrid_snapshot(typename Large::snapshot_type s) : s_(std::in_place_index<1>, std::move(s)) {}

  result<std::optional<std::string>> get(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.get(key); }, s_);
  }
  result<bool> contains(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.contains(key); }, s_);
  }
  cursor_type scan(const key_range& range) const {
    if (s_.index() == 0) return cursor_type(std::in_place_index<0>, std::get<0>(s_).scan(range));
    return cursor_type(std::in_place_index<1>, std::get<1>(s_).scan(range));
  }
  result<std::optional<std::string>> get(const Keyspace& ks, std::string_view key) const {
    return in_keyspace<result<std::optional<std::string>>>(ks, [&](const auto& s, const auto& h) { return s.get(h, key); });
  }
  result<bool> contains(const Keyspace& ks, std::string_view key) const {
    return in_keyspace<result<bool>>(ks, [&](const auto& s, const auto& h) { return s.contains(h, key); });
  }
  cursor_type scan(const Keyspace& ks, const key_range& range) const {
    if (s_.index() == 0) {
      if (!ks.entry_->small) return failed(ks);
      return cursor_type(std::in_place_index<0>, std::get<0>(s_).scan(*ks.entry_->small, range));
    }
    if (!ks.entry_->large) return failed(ks);
    return cursor_type(std::in_place_index<1>, std::get<1>(s_).scan(*ks.entry_->large, range));
  }
  // The time its reads leave expired keys out at (the tier's; hybrid/expiry.hpp).
  deadline_ms view_time() const
    requires hybrid_tiers_expire<Small, Large>
  {
    return std::visit([](const auto& s) { return s.view_time(); }, s_);
  }

 private:
  static cursor_type failed(const Keyspace& ks) {
    return cursor_type(std::in_place_index<0>, Small::failed_cursor(hybrid_keyspace_not_in_snapshot(ks.name())));
  }
  template <class R, class F>
  R in_keyspace(const Keyspace& ks, F&& f) const {
    if (s_.index() == 0) {
      if (!ks.entry_->small) return R(hybrid_keyspace_not_in_snapshot(ks.name()));
      return f(std::get<0>(s_), *ks.entry_->small);
    }
    if (!ks.entry_->large) return R(hybrid_keyspace_not_in_snapshot(ks.name()));
    return f(std::get<1>(s_), *ks.entry_->large);
  }
  std::variant<typename Small::snapshot_type, typename Large::snapshot_type> s_;
};

}  // namespace keel::detail
