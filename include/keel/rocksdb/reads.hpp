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
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "open.hpp"

namespace keel::detail {

// get (WithValue: the value, or nullopt when absent) or contains
// (!WithValue: whether present; the value is only pinned, not copied) of
// `key` in keyspace e, through snap when given (closed once close()
// released it, i.e. snap->snap is null). In a keyspace with an expiry tag
// (rocksdb/expiry.hpp) a key past its deadline, by the clock (at a
// snapshot's time), is absent.
template <bool WithValue>
auto rocks_point_read(rocksdb::DB& db, const rocks_keyspace& e, std::string_view key, const rocks_snapshot_view* snap,
                      const rocks_expiry& expiry, const rocks_handle& h, const std::filesystem::path& dir)
    -> result<std::conditional_t<WithValue, std::optional<std::string>, bool>> {
  rocksdb::ReadOptions ro;
  if (snap) {
    if (!snap->snap) return h.closed();
    ro.snapshot = snap->snap;
  }
  std::conditional_t<WithValue, std::string, rocksdb::PinnableSlice> value;
  rocksdb::Status s = db.Get(ro, e.cf, rocksdb::Slice(key.data(), key.size()), &value);
  std::size_t header = 0;
  if (s.ok()) {
    if (const std::uint64_t tag = e.tag.load(std::memory_order_acquire); tag != 0) [[unlikely]] {  // after the read
      const rocks_stored st = rocks_parse(std::string_view(value.data(), value.size()), tag);
      if (st.deadline && *st.deadline <= (snap ? snap->time : expiry.now())) s = rocksdb::Status::NotFound();
      header = st.header;
    }
  }
  if constexpr (WithValue) {
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return rocks_op_error(s, "get", dir);
    if (header) value.erase(0, header);
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
