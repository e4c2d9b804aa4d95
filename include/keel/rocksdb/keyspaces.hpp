// keel::detail (RocksDB backend): keyspaces as column families. The names
// (keel's keyspace name <-> RocksDB's column family name), one keyspace's
// entry (the handle a keel keyspace handle points to), and the registry of a
// store's keyspaces.
//
// Names. Keyspace "" is RocksDB's "default" column family. Any other name N
// (1-255 arbitrary bytes) is the column family "keel:" + escape(N), where
// escape keeps the bytes [A-Za-z0-9._-] and writes every other byte as '%'
// and two upper-case hex digits ("users" -> "keel:users", "a b\0" ->
// "keel:a%20b%00"). Why not N itself: RocksDB 7.8 keeps any bytes in the
// MANIFEST, but writes the name unescaped (NUL, quotes, ']') into the OPTIONS
// file, which then no longer parses (ldb, LoadLatestOptions), and a keyspace
// named "default" would be RocksDB's default column family. Column families
// whose names are not "default" and not of this form (made by another
// program) are opened, as RocksDB requires, but are no keyspace of keel's:
// keyspaces() does not list them and keel never writes them.
//
// An entry (rocks_keyspace) lives as long as a keel handle to it; its column
// family handle `cf` is guarded by the entry's `mutex`: shared for each
// operation that uses it, exclusive to drop it or destroy it. A drop first
// sets `refusing` (new operations give not_found, so a stream of them cannot
// starve the drop's exclusive lock), then, once DropColumnFamily is done,
// `dropped` (only then may the handle be destroyed). The handle is
// destroyed (DestroyColumnFamilyHandle) by drop when no cursor reads the
// column family, else by the last such cursor, and by close() before
// DB::Close() in any case. `cf` is null once destroyed. The default entry's
// cf is RocksDB's DefaultColumnFamily(), never destroyed by keel.
//
// Lock order (see rocksdb/policy.hpp): the handle's lifecycle lock, then the
// registry's mutex, then an entry's mutex, then the write gate.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <cstdint>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "../error.hpp"

namespace keel::detail {

inline constexpr std::string_view rocks_keyspace_prefix = "keel:";

// The column family name of keel keyspace `name` (see the file comment).
inline std::string rocks_column_family_name(std::string_view name) {
  if (name.empty()) return rocksdb::kDefaultColumnFamilyName;
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out(rocks_keyspace_prefix);
  out.reserve(out.size() + 3 * name.size());
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
        c == '-') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The keel keyspace a column family name stands for; nullopt when it is not
// one of keel's (another program's column family, or a malformed escape).
inline std::optional<std::string> rocks_keyspace_name(std::string_view cf) {
  if (cf == rocksdb::kDefaultColumnFamilyName) return std::string();
  if (!cf.starts_with(rocks_keyspace_prefix)) return std::nullopt;
  cf.remove_prefix(rocks_keyspace_prefix.size());
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < cf.size(); ++i) {
    if (cf[i] != '%') {
      out += cf[i];
      continue;
    }
    if (i + 2 >= cf.size()) return std::nullopt;
    const int hi = digit(cf[i + 1]), lo = digit(cf[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  if (out.empty() || out.size() > 255 || rocks_column_family_name(out) != std::string(rocks_keyspace_prefix) + std::string(cf))
    return std::nullopt;  // not in the one form keel writes
  return out;
}

// What an operation through a handle to a dropped keyspace gives.
inline keel::error rocks_keyspace_gone(std::string_view name) {
  return keel::error(errc::not_found, "keyspace '" + std::string(name) +
                                          "' was dropped (recreating the name makes a new keyspace: open it again)");
}

// What a snapshot read of a keyspace dropped since gives: RocksDB frees a
// dropped column family's data once its handle is destroyed, which keel does
// at the drop (or when the last cursor reading it goes), so a snapshot
// cannot read it on.
inline keel::error rocks_keyspace_dropped_since_snapshot(std::string_view name) {
  return keel::error(errc::snapshot_expired,
                     "keyspace '" + std::string(name) +
                         "' was dropped after the snapshot was taken; RocksDB frees a dropped column family's data, "
                         "so the snapshot cannot read it (a cursor opened before the drop reads on)");
}

// What a snapshot read gives for a keyspace that did not exist when the
// snapshot was taken (created after it, or dropped before it).
inline keel::error rocks_keyspace_not_in_snapshot(std::string_view name, bool created_after) {
  return keel::error(errc::not_found, "keyspace '" + std::string(name) + "' was " +
                                          (created_after ? "created after" : "dropped before") +
                                          " the snapshot was taken");
}

// One keyspace of an open store: what a keel keyspace handle points to.
struct rocks_keyspace {
  rocks_keyspace(const void* o, std::string n, rocksdb::ColumnFamilyHandle* h, bool own)
      : owner(o), name(std::move(n)), cf(h), owned(own) {}
  rocks_keyspace(const rocks_keyspace&) = delete;
  rocks_keyspace& operator=(const rocks_keyspace&) = delete;

  const void* const owner;                   // the store it belongs to (its rocks_handle)
  const std::string name;                    // keel's name ("" for the default keyspace)
  mutable std::shared_mutex mutex;           // shared: an operation using cf; exclusive: drop, destroy
  rocksdb::ColumnFamilyHandle* cf = nullptr;  // guarded by mutex; null once destroyed
  const bool owned;                          // keel destroys cf (false for the default column family)
  std::atomic<bool> refusing{false};         // set by drop before it waits for the exclusive lock: new
                                             // operations give not_found (reset if the drop fails)
  std::atomic<bool> dropped{false};          // DropColumnFamily done (set under mutex): cf may be destroyed
  std::atomic<int> cursors{0};               // cursors whose iterator reads cf (changed under mutex)
  // Positions in the registry's epoch (below): the create (0 for a keyspace
  // found at open) and the drop (none: never_dropped). A snapshot keeps the
  // epoch it was taken at to tell a keyspace created after it, or one
  // dropped before it, from one dropped after it.
  static constexpr std::uint64_t never_dropped = ~std::uint64_t(0);
  std::atomic<std::uint64_t> created_epoch{0};
  std::atomic<std::uint64_t> dropped_epoch{never_dropped};
  // Its expiry tag (rocksdb/expiry.hpp): 0 until the first ttl in it; set
  // once, with the write gate held exclusively. Read after a read of cf (a
  // value read was written after any tag it carries was set).
  mutable std::atomic<std::uint64_t> tag{0};

  // Destroys cf if this keyspace was dropped and no cursor reads it. Call
  // with `mutex` held exclusively and the DB open.
  void destroy_if_unused(rocksdb::DB& db) {
    if (owned && cf && dropped.load(std::memory_order_acquire) && cursors.load(std::memory_order_acquire) == 0) {
      db.DestroyColumnFamilyHandle(cf);
      cf = nullptr;
    }
  }
};

// Whether keyspace e existed when a snapshot of the store `owner` was taken
// at keyspace epoch `epoch`: errc::not_found if it was created after it or
// dropped before it (dropped after it: the read gives snapshot_expired). A
// handle of another store passes here; the read then refuses it.
inline std::optional<keel::error> rocks_keyspace_in_snapshot(const rocks_keyspace& e, const void* owner,
                                                             std::uint64_t epoch) {
  if (e.owner != owner) return std::nullopt;
  if (e.created_epoch.load(std::memory_order_acquire) > epoch) return rocks_keyspace_not_in_snapshot(e.name, true);
  if (e.dropped_epoch.load(std::memory_order_acquire) <= epoch) return rocks_keyspace_not_in_snapshot(e.name, false);
  return std::nullopt;
}

// The keyspaces of an open store: name -> entry, plus the dropped entries
// whose column family handle a cursor still holds (close() destroys them).
// `mutex` is taken after the handle's lifecycle lock and before any entry's.
struct rocks_keyspace_registry {
  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<rocks_keyspace>, std::less<>> by_name;  // guarded by mutex
  std::vector<std::shared_ptr<rocks_keyspace>> dropped;                         // guarded by mutex
  std::vector<rocksdb::ColumnFamilyHandle*> foreign;  // column families not keel's, opened at open
  std::shared_ptr<rocks_keyspace> default_keyspace;  // set at open, never changed
  // Counts creates and drops (each takes the next value, under mutex, before
  // the keyspace can be written or after it stopped taking operations); a
  // snapshot reads it just after GetSnapshot().
  std::atomic<std::uint64_t> epoch{0};

  // Drops keyspace `name` (RocksPolicy::drop_keyspace(), inside its
  // enter_write()): `found` false when there is none; else new operations in
  // it are refused, the drop waits for those in flight (its exclusive lock),
  // DropColumnFamily runs, and on success on_drop(entry) is called with this
  // registry's mutex held, then the handle is destroyed unless a cursor
  // reads it (then kept in `dropped` until the last such cursor goes).
  template <class OnDrop>
  rocksdb::Status drop(rocksdb::DB& db, std::string_view name, bool& found, OnDrop&& on_drop) {
    std::lock_guard registry(mutex);
    auto it = by_name.find(name);
    if (!(found = it != by_name.end())) return rocksdb::Status::OK();
    std::shared_ptr<rocks_keyspace> entry = it->second;
    entry->refusing.store(true, std::memory_order_release);  // new operations stop here: the lock below is not starved
    entry->dropped_epoch.store(epoch.fetch_add(1, std::memory_order_acq_rel) + 1, std::memory_order_release);
    std::unique_lock exclusive(entry->mutex);
    if (rocksdb::Status s = db.DropColumnFamily(entry->cf); !s.ok()) {
      entry->refusing.store(false, std::memory_order_release);
      entry->dropped_epoch.store(rocks_keyspace::never_dropped, std::memory_order_release);
      return s;
    }
    entry->dropped.store(true, std::memory_order_release);
    by_name.erase(it);
    on_drop(*entry);
    entry->destroy_if_unused(db);
    const bool read_by_cursors = entry->cf != nullptr;  // the last of them destroys it (or close())
    exclusive.unlock();                                 // one keyspace's lock at a time
    std::erase_if(dropped, [](const auto& e) {  // those whose last cursor went
      std::shared_lock other(e->mutex);
      return e->cf == nullptr;
    });
    if (read_by_cursors) dropped.push_back(std::move(entry));
    return rocksdb::Status::OK();
  }

  // Destroys every column family handle keel made (close(), with the
  // lifecycle lock held exclusively, before DB::Close()).
  void destroy_all(rocksdb::DB& db) {
    std::lock_guard lock(mutex);
    auto destroy = [&](rocks_keyspace& ks) {
      std::unique_lock entry(ks.mutex);
      if (ks.owned && ks.cf) db.DestroyColumnFamilyHandle(ks.cf);
      ks.cf = nullptr;
    };
    for (auto& [name, ks] : by_name) destroy(*ks);
    for (auto& ks : dropped) destroy(*ks);
    for (rocksdb::ColumnFamilyHandle* cf : foreign) db.DestroyColumnFamilyHandle(cf);
    foreign.clear();
    if (default_keyspace) {
      std::unique_lock entry(default_keyspace->mutex);
      default_keyspace->cf = nullptr;
    }
    dropped.clear();
  }
};

}  // namespace keel::detail
