// keel::detail (RocksDB backend): rocks_write_gate, the gate every write of a
// RocksPolicy passes, and the WAL-failure guard that sits in it; and
// rocks_fill_batch, a keel write_batch as one rocksdb::WriteBatch across
// column families (keyspaces); and the maintenance writes (compact,
// checkpoint).
//
// The gate: a shared_mutex. Plain writes (put, erase, a batch) hold it shared,
// so they still reach RocksDB together and RocksDB's group commit merges them
// into one WAL write. Transaction begins and commits, and batches with an
// erase_range that is open-ended (its bound resolved against the keys present)
// or whose removed keys are listed for watches (watch.hpp), hold it
// exclusively, so that a commit's validation and the write it allows are one
// step, and no writer slips a key in meanwhile. Taken after the handle's
// lifecycle lock (rocksdb/open.hpp), before live_mutex.
//
// The guard: after a write that failed with an I/O error (ENOSPC, EIO),
// RocksDB 7.8 may go on writing the same WAL file through its failed writer:
// when it resumes (DB::Resume(), or on its own once 64 MiB are free) with an
// empty memtable, it switches to no new WAL, and the next write reaches that
// writer, where Debian's RocksDB (assertions on) aborts the process. So a
// failed write records the WAL current then (check_write), and every later
// write, flush and close-time sync is refused (refuse_after_wal_failure, with
// the first error's code and an explanation) until RocksDB has moved to
// another WAL (a resume that flushed a memtable does) or the store is
// reopened. Cost while nothing failed: one atomic load per write.
//
// Thread safety: every member may be called concurrently; the guard's state
// is under its own mutex (a leaf: nothing else is taken while it is held),
// mirrored by an atomic flag for the fast path. Calls that take a
// rocksdb::DB& need it open (inside the handle's enter()).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <utility>
#include <vector>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "../detail/platform_file.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../key_range.hpp"
#include "../transaction.hpp"  // detail::key_successor
#include "../write_batch.hpp"
#include "errors.hpp"
#include "watch.hpp"

namespace keel::detail {

// Syncs every live WAL file of `db`, as FlushWAL(true) does, but checks the
// DB's background error first: a synced write of an empty batch. After a
// failed WAL append (EIO, ENOSPC) FlushWAL/SyncWAL reach the failed log
// writer, and Debian's RocksDB (assertions on) aborts the process there; the
// empty write returns the background error instead.
inline rocksdb::Status rocks_sync_wal(rocksdb::DB& db) {
  rocksdb::WriteOptions sync_options;
  sync_options.sync = true;
  rocksdb::WriteBatch empty;
  return db.Write(sync_options, &empty);
}

// Fills `wb` with the ops of `batch`, each in column family cf_of(op)
// (nullptr: the default one, through WriteBatch's calls without a handle).
// An erase_range without an upper bound gets one just past the largest key
// that can be in its range: largest(cf) (the largest key stored in cf,
// looked up once per column family) or the largest key the batch puts before
// it (of any column family: a bound above every key present is still right).
// For watches (rocksdb/watch.hpp), when `list_erased`, each DeleteRange is
// preceded by a LogData record listing the keys it removes (also when none):
// stored(cf, lo, hi) gives the keys stored in [lo, hi) of cf (sorted),
// corrected here by the batch's own earlier ops (not called otherwise); and
// a batch of two or more records ends with the marker that makes it one
// commit (rocks_mark_batch). Call it with the write gate held exclusively
// when the batch has an erase_range and `list_erased`, so that the keys
// listed are the keys removed, or one without an upper bound.
// A put stores encode(op, scratch): the value as the column family keeps it
// (expiry's encoding, rocksdb/expiry.hpp; it may build it in `scratch`).
// Errors: the WriteBatch's, or largest()'s, as keel errors naming `what`.
template <class CfOf, class Largest, class Stored, class Encode>
result<void> rocks_fill_batch(const write_batch& batch, rocksdb::WriteBatch& wb, CfOf&& cf_of, Largest&& largest,
                              Stored&& stored, bool list_erased, std::string_view what,
                              const std::filesystem::path& dir, Encode&& encode) {
  auto slice = [](std::string_view v) { return rocksdb::Slice(v.data(), v.size()); };
  std::string scratch;
  std::optional<std::string> largest_put;
  std::vector<std::pair<rocksdb::ColumnFamilyHandle*, std::optional<std::string>>> largest_stored;
  // The batch's earlier ops, when it has an erase_range: (cf, key) -> present.
  auto ranges_left = std::count_if(batch.begin(), batch.end(),
                                   [](const auto& op) { return op.kind == write_batch::op_kind::erase_range; });
  const bool ranged = list_erased && ranges_left > 0;
  std::map<std::pair<rocksdb::ColumnFamilyHandle*, std::string>, bool> earlier;
  for (const auto& op : batch) {
    rocksdb::ColumnFamilyHandle* const cf = cf_of(op);
    rocksdb::Status s;
    switch (op.kind) {
      case write_batch::op_kind::put: {
        const rocksdb::Slice value = slice(encode(op, scratch));
        s = cf ? wb.Put(cf, slice(op.key), value) : wb.Put(slice(op.key), value);
        if (!largest_put || op.key > *largest_put) largest_put = std::string(op.key);
        if (ranged) earlier[{cf, std::string(op.key)}] = true;
        break;
      }
      case write_batch::op_kind::erase:
        s = cf ? wb.Delete(cf, slice(op.key)) : wb.Delete(slice(op.key));
        if (ranged) earlier[{cf, std::string(op.key)}] = false;
        break;
      case write_batch::op_kind::erase_range: {
        const key_range r = op.range();
        if (r.is_empty()) break;
        std::string upper(op.value);
        if (!op.has_upper) {  // up to just past the largest key that can be there
          auto known = std::find_if(largest_stored.begin(), largest_stored.end(),
                                    [&](const auto& e) { return e.first == cf; });
          if (known == largest_stored.end()) {
            auto l = largest(cf);
            if (!l) return std::move(l).error();
            largest_stored.emplace_back(cf, std::move(*l));
            known = std::prev(largest_stored.end());
          }
          std::optional<std::string> top = known->second;
          if (largest_put && (!top || *largest_put > *top)) top = largest_put;
          if (!top || (r.lower() && *top < *r.lower())) break;  // no key at or above lower
          upper = key_successor(*top);
        }
        const rocksdb::Slice lo = slice(op.has_lower ? op.key : std::string_view()), hi = slice(upper);
        if (!list_erased) {
          s = cf ? wb.DeleteRange(cf, lo, hi) : wb.DeleteRange(lo, hi);
          break;
        }
        auto keys = stored(cf, lo, hi);
        if (!keys) return std::move(keys).error();
        std::vector<std::string> removed;
        for (const auto& [ck, present] : earlier) {  // put earlier in the batch, not stored
          const std::string_view k(ck.second);
          if (ck.first == cf && present && k.compare(lo.ToStringView()) >= 0 && k.compare(hi.ToStringView()) < 0 &&
              !std::binary_search(keys->begin(), keys->end(), ck.second))
            removed.push_back(ck.second);
        }
        for (std::string& k : *keys) {  // stored, not erased earlier in the batch
          auto e = earlier.find({cf, k});
          if (e == earlier.end() || e->second) removed.push_back(std::move(k));
        }
        std::sort(removed.begin(), removed.end());
        if (--ranges_left > 0) {  // a later erase_range must not list them again
          for (const auto& k : removed) earlier[{cf, k}] = false;
        }
        s = wb.PutLogData(rocks_erased_record(cf ? cf->GetID() : 0, removed));  // also an empty list
        if (!s.ok()) return rocks_op_error(s, what, dir);
        s = cf ? wb.DeleteRange(cf, lo, hi) : wb.DeleteRange(lo, hi);
        break;
      }
    }
    if (!s.ok()) return rocks_op_error(s, what, dir);
  }
  if (rocksdb::Status s = rocks_mark_batch(wb); !s.ok()) return rocks_op_error(s, what, dir);
  return {};
}

// Whether `batch` needs the write gate exclusively, so that no other writer
// slips a key in while its erase_range is resolved against the keys present:
// an open-ended one (its bound), or any while the removed keys are listed for
// watches (hub.list_erased, which changes only under the exclusive gate:
// callers that took the gate shared check again under it).
inline bool rocks_needs_exclusive(const write_batch& batch, const rocks_watch_hub& hub) {
  const bool listing = hub.list_erased.load(std::memory_order_acquire);
  for (const auto& op : batch) {
    if (op.kind == write_batch::op_kind::erase_range && (listing || !op.has_upper)) return true;
  }
  return false;
}

// CompactRange of `range` (nothing for an empty one; the whole key space
// when unbounded) in `cf`, down to the bottommost level so that erased data,
// range tombstones and expired keys (rocksdb/expiry.hpp) go.
inline rocksdb::Status rocks_compact(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, const key_range& range) {
  if (range.is_empty()) return rocksdb::Status::OK();
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  rocksdb::Slice lo, hi;
  if (range.lower()) lo = rocksdb::Slice(*range.lower());
  if (range.upper()) hi = rocksdb::Slice(*range.upper());
  return db.CompactRange(co, cf, range.lower() ? &lo : nullptr, range.upper() ? &hi : nullptr);
}

// rocksdb::Checkpoint of `db` (at `where`) into `dir` (see
// RocksPolicy::checkpoint()). Inside enter().
inline result<void> rocks_checkpoint(rocksdb::DB& db, const std::filesystem::path& dir,
                                     const std::filesystem::path& where) {
  rocksdb::Checkpoint* raw = nullptr;
  if (rocksdb::Status s = rocksdb::Checkpoint::Create(&db, &raw); !s.ok()) return rocks_op_error(s, "checkpoint", where);
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  rocksdb::Status s = cp->CreateCheckpoint(dir.string(), /*log_size_for_flush=*/0);
  if (!s.ok()) return rocks_op_error(s, "checkpoint to '" + path_text(dir) + "'", where);
  return {};
}

class rocks_write_gate {
 public:
  // Plain writes: shared. Commits, transaction begins, batches with an
  // open-ended or listed erase_range, a watch turning listing on: exclusive.
  std::shared_lock<std::shared_mutex> shared() const { return std::shared_lock(gate_); }
  std::unique_lock<std::shared_mutex> exclusive() const { return std::unique_lock(gate_); }

  // The refusal for `op` on the database in `dir` while a failed WAL is still
  // current; nullopt when writing is safe.
  std::optional<keel::error> refuse_after_wal_failure(rocksdb::DB& db, std::string_view op,
                                                      const std::filesystem::path& dir) const {
    if (!wal_failed_.load(std::memory_order_acquire)) return std::nullopt;
    std::lock_guard lock(wal_failure_mutex_);
    if (!wal_failure_) return std::nullopt;
    if (wal_failure_->wal) {
      if (const std::optional<std::uint64_t> now = current_wal(db); now && *now != *wal_failure_->wal) {
        wal_failure_.reset();  // RocksDB writes a new WAL: the failed writer is gone
        wal_failed_.store(false, std::memory_order_release);
        return std::nullopt;
      }
    }
    std::string text = std::string(op) + " on '" + path_text(dir) +
                       "' refused: an earlier write failed and RocksDB would write again to the WAL file that failed "
                       "(RocksDB 7.8 aborts the process there); close() the store and open it again";
    if (wal_failure_->error == errc::no_space) text += " once some space is free";
    return keel::error(wal_failure_->error.code(), text + ". The first error: " + wal_failure_->error.message());
  }

  // The result of write `op`'s status `s` (rocks_op_error when it failed);
  // a failed write with an I/O error records the WAL current now.
  result<void> check_write(rocksdb::DB& db, const rocksdb::Status& s, std::string_view op,
                           const std::filesystem::path& dir) const {
    if (s.ok()) return {};
    keel::error e = rocks_op_error(s, op, dir);
    if (s.IsIOError()) {
      std::lock_guard lock(wal_failure_mutex_);
      if (!wal_failure_) {
        wal_failure_ = wal_failure{current_wal(db), e};
        wal_failed_.store(true, std::memory_order_release);
      }
    }
    return e;
  }

 private:
  struct wal_failure {
    std::optional<std::uint64_t> wal;  // the WAL's number; nullopt: unknown (refuse until reopened)
    keel::error error;                 // the write's error
  };
  static std::optional<std::uint64_t> current_wal(rocksdb::DB& db) {
    std::unique_ptr<rocksdb::LogFile> wal;
    if (!db.GetCurrentWalFile(&wal).ok() || !wal) return std::nullopt;
    return wal->LogNumber();
  }

  mutable std::shared_mutex gate_;
  // A write failed with an I/O error and its WAL may still be current. The
  // flag mirrors wal_failure_.has_value().
  mutable std::atomic<bool> wal_failed_{false};
  mutable std::mutex wal_failure_mutex_;
  mutable std::optional<wal_failure> wal_failure_;  // guarded by wal_failure_mutex_
};

}  // namespace keel::detail
