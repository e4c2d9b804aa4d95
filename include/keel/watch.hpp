// keel: watch, every committed change of a store in commit order (issue 28):
// the change struct, watch_options and basic_watch<Policy>, the handle
// basic_store::watch() and basic_keyspace::watch() give. Needs no backend
// headers.
//
//   auto w = store.watch(keel::key_range::prefix("user/"));
//   while (auto c = w->next(std::chrono::seconds(1))) {   // result<optional<change>>
//     if (!*c) continue;                                    // nothing within a second
//     index((*c)->key, (*c)->value);                        // value nullopt: erased
//   }
//
// Semantics (the same on every backend that has watch; docs/watch.md):
// - A watch delivers every committed change to a key in its range (and its
//   keyspace), in commit order, each exactly once. A write_batch or a
//   transaction is delivered as consecutive changes with one seq; an
//   erase_range as one erase change per key it removed (none for keys that
//   were absent). The range's direction is ignored.
// - seq only grows, per store. watch_options::after = S resumes with the
//   first change whose seq is greater than S, nothing skipped, nothing
//   repeated; without it the watch starts after last_seq() at the time it is
//   made. S greater than last_seq() is errc::invalid_argument (the store
//   never reached S: another store, or commits the watcher saw were lost in
//   a crash before they were synced).
// - A watch never blocks a writer. It buffers at most
//   watch_options::buffer changes; one that falls behind reads on from the
//   history the store keeps (how much: each backend's options), and when
//   what it needs next is no longer kept, next() gives
//   errc::snapshot_expired naming the oldest seq still available, and keeps
//   giving it: a watch never silently skips a change.
// - Dropping the watched keyspace ends a watch of it: after the changes
//   committed before the drop, next() gives errc::not_found (the drop itself
//   is not delivered as erase changes).
// - After the store closes, next() gives errc::closed.
// Thread safety: one watch is used by one thread at a time (next() is not
// synchronised with itself); many watches of one store may be used at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "error.hpp"

namespace keel {

// One committed change to one key.
struct change {
  std::uint64_t seq = 0;              // the commit's position in the store (etcd: the revision)
  std::string keyspace;               // "" for the default keyspace
  std::string key;
  std::optional<std::string> value;   // the new value; nullopt: the key was erased
  friend bool operator==(const change&, const change&) = default;
};

struct watch_options {
  // Resume: deliver the changes with seq greater than this. Default: from now
  // (after last_seq() at the time the watch is made).
  std::optional<std::uint64_t> after;
  // How many changes the watch holds for its reader before it reads on from
  // the store's history instead (at least 1; 0 is errc::invalid_argument).
  std::size_t buffer = 1024;
};

// Why `o` cannot make a watch (nullopt when it can).
inline std::optional<keel::error> watch_options_error(const watch_options& o) {
  if (o.buffer == 0) return keel::error(errc::invalid_argument, "watch_options::buffer must be at least 1");
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// basic_watch: one subscription to a store's changes, over the backend's
// Policy::watch_type (contract.hpp, watch_policy). Movable, not copyable.
// ---------------------------------------------------------------------------
template <class Policy>
class basic_watch {
 public:
  using watch_type = typename Policy::watch_type;

  explicit basic_watch(watch_type impl) : impl_(std::move(impl)) {}

  // The next change, waiting up to about `timeout` for one; nullopt when none
  // came. Errors: errc::closed (the store closed), errc::snapshot_expired
  // (the changes it needs are no longer kept; the message names the oldest
  // seq still available), errc::not_found (its keyspace was dropped), or the
  // backend's own (etcd: unavailable when no endpoint answers).
  result<std::optional<change>> next(std::chrono::milliseconds timeout) { return impl_.next(timeout); }

  // The backend's watch, for adapters (basic_any_watch).
  watch_type& impl() noexcept { return impl_; }

 private:
  watch_type impl_;
};

}  // namespace keel
