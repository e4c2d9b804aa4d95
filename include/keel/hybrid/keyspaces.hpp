// keel: the hybrid store's keyspaces (issue 27): what a keyspace handle of
// HybridPolicy (hybrid/policy.hpp) points to, and the registry of a store's
// live keyspaces. Needs no backend headers.
//
// A keyspace lives in whichever tier holds the data; its handle must keep
// working when the data moves to RocksDB. So a handle is a share of one
// entry per keyspace (one incarnation of a name: a keyspace dropped and
// created again is a new entry), holding the tier's handle of it in each
// tier it has been in:
//   small  the memory tier's handle: set when the entry is made in the
//          memory tier (at open, or when created there); never changed.
//   large  RocksDB's handle: set when the entry is made in the RocksDB tier,
//          or by the move's switch (with the tier gate held exclusively) for
//          every entry in the registry then; never changed afterwards.
// An entry dropped before the switch never gets `large`: in the RocksDB tier
// its handles give errc::not_found, as they did in memory. A snapshot of the
// memory tier reads through `small`, one of RocksDB through `large`.
//
// Thread safety: `large` is guarded by the store's tier gate (read with it
// held shared, or by a snapshot of the RocksDB tier, which exists only after
// the switch); `small` and `name` are immutable. The registry's `mutex` is
// held by whoever creates or drops a keyspace (with the tier gate and the
// write gate held shared) and by whoever needs the keyspace set to stay put
// (the move's views of the memory tier), after the gates (policy.hpp's lock
// order).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"

namespace keel::detail {

template <class SmallHandle, class LargeHandle>
struct hybrid_keyspace {
  std::string name;                  // "" for the default keyspace
  std::optional<SmallHandle> small;  // the memory tier's handle (see the file comment)
  std::optional<LargeHandle> large;  // RocksDB's handle, guarded by the tier gate
};

// The live keyspaces of an open hybrid store, "" included: name -> entry.
template <class SmallHandle, class LargeHandle>
struct hybrid_keyspace_registry {
  using entry = hybrid_keyspace<SmallHandle, LargeHandle>;
  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<entry>, std::less<>> by_name;  // guarded by mutex

  std::shared_ptr<entry> find(std::string_view name) const {  // mutex held
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  }
  // Mutex held: opens keyspace `name` of `tier` (created when `create`)
  // and adds its entry, with the tier's handle in `member` (&entry::small or
  // &entry::large). Errors: the tier's (nothing added).
  template <class Tier, class Member>
  result<std::shared_ptr<entry>> add(Tier& tier, std::string_view name, bool create, Member member) {
    auto h = tier.open_keyspace(name, create);
    if (!h) return h.error();
    auto e = std::make_shared<entry>();
    e->name = std::string(name);
    ((*e).*member).emplace(std::move(*h));
    by_name.emplace(e->name, e);
    return e;
  }
  // At open: an entry for every keyspace of `tier`, the tier just opened.
  template <class Tier, class Member>
  result<void> load(Tier& tier, Member member) {
    auto names = tier.keyspaces();
    if (!names) return names.error();
    std::lock_guard lock(mutex);
    for (const auto& name : *names) {
      if (auto e = add(tier, name, false, member); !e) return e.error();
    }
    return {};
  }
};


// What an operation through a handle gives when its keyspace has no handle in
// the tier that holds the data (it was dropped before the move).
inline keel::error hybrid_keyspace_gone(std::string_view name) {
  return keel::error(errc::not_found, "hybrid store: keyspace '" + std::string(name) +
                                          "' was dropped (a keyspace created again under that name is a new one: "
                                          "open it again)");
}
// What a snapshot gives for a keyspace it does not have (created after it).
inline keel::error hybrid_keyspace_not_in_snapshot(std::string_view name) {
  return keel::error(errc::not_found, "hybrid store: keyspace '" + std::string(name) +
                                          "' did not exist when the snapshot was taken");
}

}  // namespace keel::detail
