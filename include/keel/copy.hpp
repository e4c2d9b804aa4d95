// keel: copy every entry of one store into another, whatever their backends.
//
//   auto n = keel::copy(rocks, memory);                    // result<copy_info>
//   auto n = keel::copy(src, dst, {.range = key_range::prefix("user/"), .progress = show});
//
// Generic over anything with scan(key_range) (basic_store, basic_any_store,
// snapshots) as source and write(write_batch) as destination. The source is
// read through one cursor, i.e. one consistent view; the destination gets
// write_batches of copy_options::batch_bytes (and at most batch_records
// entries, when set), each atomic, not the whole copy.
// Existing keys in the destination are overwritten, others are kept.
// Needs no backend headers.
#pragma once

#include <cstdint>

#include "dump.hpp"
#include "key_range.hpp"
#include "write_batch.hpp"

namespace keel {

struct copy_options {
  key_range range = key_range::all();
  std::size_t batch_bytes = 4 << 20;
  // Entries per write_batch; 0: no limit. For a destination whose batches are
  // capped in operations (etcd: etcd_options::max_txn_ops).
  std::size_t batch_records = 0;
  progress_fn progress{};
};

struct copy_info {
  std::uint64_t records = 0;
  std::uint64_t payload_bytes = 0;
};

template <class Source, class Destination>
result<copy_info> copy(const Source& src, Destination& dst, const copy_options& opts = {}) {
  auto cursor = src.scan(opts.range);
  write_batch batch;
  copy_info info;
  progress_info p;
  detail::progress_throttle t{opts.progress};
  for (const auto& e : cursor) {
    batch.put(e.key, e.value);
    ++info.records;
    info.payload_bytes += e.key.size() + e.value.size();
    if (batch.payload_bytes() >= opts.batch_bytes || (opts.batch_records && batch.size() >= opts.batch_records)) {
      if (auto w = dst.write(batch); !w) return w.error();
      batch.clear();
    }
    p.records = info.records;
    p.bytes = info.payload_bytes;
    t.tick(p);
  }
  if (cursor.error()) return *cursor.error();
  if (!batch.empty()) {
    if (auto w = dst.write(batch); !w) return w.error();
  }
  t.tick(p, true);
  return info;
}

// The form the issue names: copy(src, dst, progress).
template <class Source, class Destination>
result<copy_info> copy(const Source& src, Destination& dst, progress_fn progress) {
  copy_options o;
  o.progress = std::move(progress);
  return keel::copy(src, dst, o);
}

}  // namespace keel
