// keel: copy every entry of one store into another, whatever their backends.
//
//   auto n = keel::copy(rocks, memory);                    // result<copy_info>
//   auto n = keel::copy(src, dst, {.range = key_range::prefix("user/"), .progress = show});
//
// Generic over anything with scan(key_range) (basic_store, basic_any_store,
// snapshots) as source and write(write_batch) as destination. Every keyspace
// of the source is copied into the keyspace of the same name, created in the
// destination first (keyspace(name)); a destination without keyspaces
// refuses a source that has any but "" (errc::not_supported, nothing
// written). The source is read through one cursor (one consistent view), or
// one snapshot when it has keyspaces other than ""; the destination gets
// write_batches of copy_options::batch_bytes (and at most batch_records
// entries, when set), each atomic, not the whole copy.
// Existing keys in the destination are overwritten, others are kept.
// Expiry (issue 29): a key with a deadline is put with a ttl of that
// deadline minus the destination's clock (the deadline stays absolute, as
// in import_dump()); keys expired at the source's read are not copied, and
// one whose deadline has passed by the destination's clock is skipped and
// counted (copy_info::expired_skipped). A destination without expiry given a
// key with a deadline: errc::not_supported, that key and the rest unwritten
// (batches written before stay; the message says how many records).
// Needs no backend headers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detail/store_walk.hpp"
#include "dump.hpp"
#include "expiry.hpp"
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
  std::uint64_t records = 0;        // read from the source (expired_skipped included)
  std::uint64_t payload_bytes = 0;
  std::uint64_t expired_skipped = 0;  // deadline passed by the destination's clock: not written
};

template <class Source, class Destination>
result<copy_info> copy(Source& src, Destination& dst, const copy_options& opts = {}) {
  detail::record_batcher<Destination> batches(dst, opts.batch_bytes, opts.batch_records, "the source");
  copy_info info;
  progress_info p;
  detail::progress_throttle t{opts.progress};
  auto walked = detail::walk_keyspaces(
      src, opts.range,
      [&](const std::vector<std::string>& names, bool) { return detail::create_keyspaces(dst, names, "the source"); },
      [&](std::string_view ks, std::string_view key, std::string_view value,
          std::optional<deadline_ms> deadline) -> result<void> {
        if (auto w = batches.add(ks, key, value, deadline); !w) return w;
        ++info.records;
        info.payload_bytes += key.size() + value.size();
        p.records = info.records;
        p.bytes = info.payload_bytes;
        t.tick(p);
        return {};
      });
  if (!walked) return walked.error();
  if (auto w = batches.flush(); !w) return w.error();
  info.expired_skipped = batches.expired_skipped();
  t.tick(p, true);
  return info;
}

// The form the issue names: copy(src, dst, progress).
template <class Source, class Destination>
result<copy_info> copy(Source& src, Destination& dst, progress_fn progress) {
  copy_options o;
  o.progress = std::move(progress);
  return keel::copy(src, dst, o);
}

}  // namespace keel
