// keel::detail (RocksDB backend): the point read behind get and contains
// (of the store, a keyspace or a snapshot), and the largest key of a column
// family (an open-ended erase_range's bound). Moved out of rocksdb/policy.hpp
// (the layout limit). Call inside the handle's enter() (rocksdb/open.hpp),
// with the keyspace's shared lock when cf is a keyspace's.
#pragma once

#include <rocksdb/db.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../error.hpp"
#include "errors.hpp"
#include "open.hpp"

namespace keel::detail {

// get (WithValue: the value, or nullopt when absent) or contains
// (!WithValue: whether present; the value is only pinned, not copied) of
// `key` in cf, through *snap when snap is given (closed once close()
// released it, i.e. *snap is null).
template <bool WithValue>
auto rocks_point_read(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, std::string_view key,
                      const rocksdb::Snapshot* const* snap, const rocks_handle& h, const std::filesystem::path& dir)
    -> result<std::conditional_t<WithValue, std::optional<std::string>, bool>> {
  rocksdb::ReadOptions ro;
  if (snap) {
    if (!*snap) return h.closed();
    ro.snapshot = *snap;
  }
  std::conditional_t<WithValue, std::string, rocksdb::PinnableSlice> value;
  rocksdb::Status s = db.Get(ro, cf, rocksdb::Slice(key.data(), key.size()), &value);
  if constexpr (WithValue) {
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return rocks_op_error(s, "get", dir);
    return std::optional<std::string>(std::move(value));
  } else {
    if (s.IsNotFound()) return false;
    if (!s.ok()) return rocks_op_error(s, "contains", dir);
    return true;
  }
}

// The largest key in column family cf (the default one when null; nullopt
// when empty).
inline result<std::optional<std::string>> rocks_largest_key(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                                                            const std::filesystem::path& dir) {
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions(), cf ? cf : db.DefaultColumnFamily()));
  it->SeekToLast();
  if (it->Valid()) return std::optional<std::string>(it->key().ToString());
  if (!it->status().ok()) return rocks_op_error(it->status(), "erase_range", dir);
  return std::optional<std::string>();
}

}  // namespace keel::detail
