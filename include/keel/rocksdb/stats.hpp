// keel: backend_stats for the RocksDB backend, what basic_store::stats()
// asks of it (contract.hpp): RocksDB's key properties, its key count
// estimate, and the size of the files in the database directory. Moved out
// of rocksdb/policy.hpp (the layout limit); needs only RocksPolicy's public
// with_db() and path().
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../stats.hpp"

namespace keel {

template <class Tuning>
class RocksPolicy;

// What basic_store::stats() asks of the backend: the key RocksDB properties,
// rocksdb.estimate-num-keys as the key count, and the size of the files in
// the database directory.
template <class Tuning>
result<void> backend_stats(const RocksPolicy<Tuning>& p, store_stats& s) {
  static constexpr const char* names[] = {
      "rocksdb.estimate-num-keys",       "rocksdb.total-sst-files-size",   "rocksdb.live-sst-files-size",
      "rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables", "rocksdb.num-immutable-mem-table",
      "rocksdb.num-running-flushes",     "rocksdb.num-running-compactions", "rocksdb.compaction-pending",
      "rocksdb.background-errors",       "rocksdb.num-live-versions",      "rocksdb.estimate-pending-compaction-bytes",
      "rocksdb.num-snapshots",           "rocksdb.estimate-table-readers-mem", "rocksdb.block-cache-usage"};
  auto props = p.with_db([](rocksdb::DB& db) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    for (const char* n : names) {
      std::uint64_t v = 0;
      if (db.GetIntProperty(n, &v)) out.emplace_back(n, v);
    }
    return out;
  });
  if (!props) return std::move(props).error();
  s.properties = std::move(*props);
  for (const auto& [name, value] : s.properties) {
    if (name == "rocksdb.estimate-num-keys") s.keys = value;
  }
  s.keys_exact = false;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(p.path(), ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      auto n = it->file_size(fec);
      if (!fec) s.size_bytes += n;
    }
  }
  return {};
}

}  // namespace keel
