// keel::detail (RocksDB backend): watch (issue 28; watch.hpp has the
// semantics, docs/watch.md "RocksDB" the options), read from RocksDB's WAL.
//
// Where changes come from: the WAL itself, through DB::GetUpdatesSince, not a
// copy kept by keel. A writer copies nothing for watches: it publishes the
// sequence number of its commit (one atomic max) and wakes watches only when
// one waits (rocks_watch_hub). A watch reads the WAL records after its
// position with its own TransactionLogIterator, decodes them
// (rocks_wal_decoder) and keeps at most about watch_options::buffer decoded
// changes (plus one WAL record's worth). History is what RocksDB still keeps
// of the WAL: the live WAL files, and the archived ones that
// rocks_options::watch_history_mb keeps (RocksDB's WAL_size_limit_MB), also
// across close and reopen. A watch whose next record is no longer kept gets
// errc::snapshot_expired naming the oldest seq still kept.
//
// seq is RocksDB's sequence number. The WAL does not show where one write
// ends and the next begins (group commit merges the batches of concurrent
// writers into one WAL record), so keel marks it where it matters:
//   - a batch of two or more records ends with a LogData record
//     rocks_batch_marker + fixed32 n: the n records before it are one
//     commit, all delivered with the seq of the first (a single put or erase
//     is a record of its own and needs no marker);
//   - an erase_range's DeleteRange (which does not say which keys it
//     removed) follows a LogData record rocks_erased_marker + varint32
//     column family id + (varint32 length, key)*: the keys it removed, in
//     order, delivered as one erase change each. Listing them costs a scan
//     of the range (under the exclusive write gate) and the keys' bytes in
//     the WAL, so a store lists them only while a watch could need them
//     (rocks_watch_hub::list_erased): from its first watch() on (sticky for
//     the open), or always with rocks_options::watch_list_erased_keys.
//     Without it an erase_range costs what it did before watches (one
//     DeleteRange, the write gate shared unless it is open-ended). A watch
//     that meets a DeleteRange in its keyspace and range without the list
//     (written while nothing listed, or by a keel before watches) cannot
//     say what it removed: after the changes of the commits before it,
//     errc::snapshot_expired (sticky) naming that erase_range's commit's
//     seq N ("resume after N": a watch with after = N skips that commit).
// LogData consumes no sequence number and is not applied to the memtable.
//
// Thread safety: rocks_watch_hub members may be called from any thread; a
// rocks_watch is used by one thread at a time. A watch reads the WAL with the
// store's lifecycle lock held shared (rocksdb/open.hpp); close() holds it
// exclusively and drops every watch's iterator first (live list under
// rocks_watch_hub::live_mutex, taken after lifecycle).
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../key_range.hpp"
#include "../watch.hpp"
#include "errors.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "open.hpp"

namespace keel::detail {

using namespace std::string_view_literals;
inline constexpr std::string_view rocks_batch_marker = "\0keel.batch"sv;
inline constexpr std::string_view rocks_erased_marker = "\0keel.erased"sv;

// The sequence number RocksDB gave batch `wb` when it was written (the first
// 8 bytes of its representation, set by DB::Write, also for a batch merged
// into another writer's group).
inline std::uint64_t rocks_batch_seq(const rocksdb::WriteBatch& wb) noexcept {
  std::uint64_t s = 0;
  std::memcpy(&s, wb.Data().data(), sizeof s);  // little-endian fixed64, as RocksDB encodes it
  return s;
}

inline void rocks_put_varint32(std::string& out, std::uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline bool rocks_get_varint32(std::string_view& in, std::uint32_t& v) {
  v = 0;
  for (int shift = 0; shift <= 28 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<std::uint32_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

// Ends a batch of wb.Count() records with the marker that makes them one
// commit for watches (nothing for a batch of one record or none).
inline rocksdb::Status rocks_mark_batch(rocksdb::WriteBatch& wb) {
  const std::uint32_t n = wb.Count();
  if (n < 2) return rocksdb::Status::OK();
  std::string blob(rocks_batch_marker);
  char raw[4];
  std::memcpy(raw, &n, 4);
  blob.append(raw, 4);
  return wb.PutLogData(blob);
}

// The LogData record listing the keys an erase_range in column family
// `cf_id` removes (sorted, distinct).
inline std::string rocks_erased_record(std::uint32_t cf_id, const std::vector<std::string>& keys) {
  std::size_t bytes = rocks_erased_marker.size() + 5;
  for (const auto& k : keys) bytes += k.size() + 5;
  std::string blob;
  blob.reserve(bytes);
  blob.append(rocks_erased_marker);
  rocks_put_varint32(blob, cf_id);
  for (const auto& k : keys) {
    rocks_put_varint32(blob, static_cast<std::uint32_t>(k.size()));
    blob.append(k);
  }
  return blob;
}

// The keys stored in [lo, hi) of column family cf (the default one when
// null), sorted: what an erase_range there removes (rocks_erased_record).
inline result<std::vector<std::string>> rocks_stored_keys(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                                                          const rocksdb::Slice& lo, const rocksdb::Slice& hi,
                                                          const std::filesystem::path& dir) {
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &hi;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(ro, cf ? cf : db.DefaultColumnFamily()));
  std::vector<std::string> keys;
  for (it->Seek(lo); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
  if (!it->status().ok()) return rocks_op_error(it->status(), "erase_range", dir);
  return keys;
}

// What the writers and the watches of one store share: the latest commit's
// seq (what last_seq() gives), the wake-up of waiting watches, the live
// watches (for close()), and the seq at which each dropped keyspace was
// dropped.
struct rocks_watch_state;
struct rocks_watch_hub {
  rocks_watch_hub(std::uint64_t latest, bool list_always) : committed(latest), list_erased(list_always) {}

  // A write with sequence number `seq` returned: raise committed, wake the
  // watches that wait. Costs one atomic max (and a load) when none waits.
  void publish(std::uint64_t seq) noexcept {
    std::uint64_t cur = committed.load(std::memory_order_relaxed);
    while (cur < seq && !committed.compare_exchange_weak(cur, seq, std::memory_order_seq_cst)) {
    }
    if (sleepers.load(std::memory_order_seq_cst) > 0) wake();
  }
  void wake() noexcept {
    { std::lock_guard lock(mutex); }  // a watch between its check and its wait has the mutex
    cv.notify_all();
  }
  // Waits until committed differs from `seen`, wake() is called, or `until`.
  void wait(std::uint64_t seen, std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(mutex);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (committed.load(std::memory_order_seq_cst) == seen) cv.wait_until(lock, until);
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  // The seq at which the column family `cf_id` (a keyspace's) was dropped:
  // its last record is at or before it; nullopt while it is not dropped.
  // (RocksDB never reuses a column family id within a database.)
  std::optional<std::uint64_t> dropped_at(std::uint32_t cf_id) const {
    std::lock_guard lock(live_mutex);
    auto it = dropped.find(cf_id);
    if (it == dropped.end()) return std::nullopt;
    return it->second;
  }
  void record_drop(std::uint32_t cf_id, std::uint64_t seq) {
    {
      std::lock_guard lock(live_mutex);
      dropped[cf_id] = seq;
    }
    wake();
  }

  std::atomic<std::uint64_t> committed;  // the latest commit's seq (last_seq())
  // Whether erase_ranges list the keys they remove (rocks_erased_record):
  // set by the open (rocks_options::watch_list_erased_keys) or by the first
  // watch, never cleared while open. Changed only with the store's write
  // gate held exclusively, so a writer holding the gate reads a stable value.
  std::atomic<bool> list_erased;
  std::atomic<int> sleepers{0};          // watches inside wait()
  std::mutex mutex;
  std::condition_variable cv;
  mutable std::mutex live_mutex;  // guards live and dropped; after the store's lifecycle lock
  std::unordered_set<rocks_watch_state*> live;
  std::unordered_map<std::uint32_t, std::uint64_t> dropped;  // column family id -> seq at its drop
};

// One put (value given) or erase of `key` in column family cf (the default
// one when null), written as DB::Put / DB::Delete would, its seq published to
// the watches.
inline rocksdb::Status rocks_write_one(rocksdb::DB& db, const rocksdb::WriteOptions& wo, rocks_watch_hub& hub,
                                       rocksdb::ColumnFamilyHandle* cf, std::string_view key,
                                       const std::string_view* value) {
  const rocksdb::Slice k(key.data(), key.size());
  rocksdb::WriteBatch wb(key.size() + (value ? value->size() : 0) + 24);
  if (!cf) cf = db.DefaultColumnFamily();
  rocksdb::Status s = value ? wb.Put(cf, k, rocksdb::Slice(value->data(), value->size())) : wb.Delete(cf, k);
  if (s.ok()) s = db.Write(wo, &wb);
  if (s.ok()) hub.publish(rocks_batch_seq(wb));
  return s;
}

// Writes `wb` (filled by rocks_fill_batch), its seq published to the watches.
inline rocksdb::Status rocks_write_batch(rocksdb::DB& db, const rocksdb::WriteOptions& wo, rocks_watch_hub& hub,
                                         rocksdb::WriteBatch& wb) {
  rocksdb::Status s = db.Write(wo, &wb);
  if (s.ok() && wb.Count() > 0) hub.publish(rocks_batch_seq(wb));
  return s;
}

// Decodes one WAL record (a WriteBatch of one or more commits, starting at
// sequence number `base`) into the changes of column family `cf_id` in
// `range`: seq of each (its commit's first record), key, value.
class rocks_wal_decoder : public rocksdb::WriteBatch::Handler {
 public:
  struct item {
    std::uint64_t record_seq;  // the record's own sequence number
    std::uint64_t seq;         // its commit's seq
    bool erase;
    std::string key;
    std::string value;
  };

  rocks_wal_decoder(std::uint64_t base, std::uint32_t cf_id, const key_range& range)
      : next_(base), cf_id_(cf_id), range_(range) {}

  std::vector<item> items;
  bool malformed = false;

  rocksdb::Status PutCF(std::uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) override {
    add(cf, key, &value);
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(std::uint32_t cf, const rocksdb::Slice& key) override {
    add(cf, key, nullptr);
    return rocksdb::Status::OK();
  }
  rocksdb::Status SingleDeleteCF(std::uint32_t cf, const rocksdb::Slice& key) override {
    add(cf, key, nullptr);
    return rocksdb::Status::OK();
  }
  // The keys come from the LogData record before it (rocks_erased_marker);
  // without one, a record in cf_id_ that overlaps range_ is in `unlisted`.
  rocksdb::Status DeleteRangeCF(std::uint32_t cf, const rocksdb::Slice& lo, const rocksdb::Slice& hi) override {
    const bool listed = listed_;
    listed_ = false;
    if (!listed && cf == cf_id_ && overlaps(lo.ToStringView(), hi.ToStringView()))
      unlisted.push_back({next_, next_});  // a commit of its own unless a batch marker follows
    ++next_;
    return rocksdb::Status::OK();
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unlisted;  // (record seq, its commit's seq), in order
  rocksdb::Status MergeCF(std::uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    ++next_;  // keel writes no merges; one written outside keel is not delivered
    return rocksdb::Status::OK();
  }
  rocksdb::Status PutBlobIndexCF(std::uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    ++next_;
    return rocksdb::Status::OK();
  }
  void LogData(const rocksdb::Slice& blob) override {
    std::string_view b(blob.data(), blob.size());
    if (b.starts_with(rocks_batch_marker) && b.size() == rocks_batch_marker.size() + 4) {
      std::uint32_t n = 0;
      std::memcpy(&n, b.data() + rocks_batch_marker.size(), 4);
      const std::uint64_t first = next_ - n;
      for (auto it = items.rbegin(); it != items.rend() && it->record_seq >= first; ++it) it->seq = first;
      for (auto it = unlisted.rbegin(); it != unlisted.rend() && it->first >= first; ++it) it->second = first;
    } else if (b.starts_with(rocks_erased_marker)) {
      listed_ = true;
      b.remove_prefix(rocks_erased_marker.size());
      std::uint32_t cf = 0;
      if (!rocks_get_varint32(b, cf)) {
        malformed = true;
        return;
      }
      while (!b.empty()) {
        std::uint32_t len = 0;
        if (!rocks_get_varint32(b, len) || len > b.size()) {
          malformed = true;
          return;
        }
        std::string_view key = b.substr(0, len);
        b.remove_prefix(len);
        if (cf == cf_id_ && range_.contains(key)) items.push_back({next_, next_, true, std::string(key), {}});
      }
    }
  }

 private:
  void add(std::uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice* value) {
    const std::uint64_t s = next_++;
    std::string_view k(key.data(), key.size());
    if (cf != cf_id_ || !range_.contains(k)) return;
    items.push_back({s, s, value == nullptr, std::string(k), value ? value->ToString() : std::string()});
  }

  bool overlaps(std::string_view lo, std::string_view hi) const {
    return lo < hi && (!range_.upper() || lo < *range_.upper()) && (!range_.lower() || hi > *range_.lower());
  }

  std::uint64_t next_;
  std::uint32_t cf_id_;
  const key_range& range_;
  bool listed_ = false;  // the record before was an erased-keys list
};

// One watch's state, registered in its hub's live list while it exists.
struct rocks_watch_state {
  std::shared_ptr<const rocks_handle> handle;  // the store (lifecycle, db)
  std::shared_ptr<rocks_watch_hub> hub;
  std::shared_ptr<rocks_keyspace> keyspace;  // the watched one (the default one for the store's watch)
  std::uint32_t cf_id = 0;
  key_range range = key_range::all();
  std::size_t buffer = 1024;
  std::uint64_t after = 0;    // deliver the commits whose seq is greater
  std::uint64_t covered = 0;  // every WAL record up to this sequence number was read
  std::unique_ptr<rocksdb::TransactionLogIterator> iter;  // guarded by handle->lifecycle; dropped by close()
  bool step_first = false;                                 // call iter->Next() before looking at it
  std::deque<change> ready;
  std::optional<keel::error> failed;  // sticky: snapshot_expired, not_found (dropped)
};

// The oldest seq the WAL still has (the first record of the oldest WAL file
// with one); latest + 1 when it has none.
inline std::uint64_t rocks_oldest_kept(rocksdb::DB& db) {
  rocksdb::VectorLogPtr files;
  std::uint64_t oldest = db.GetLatestSequenceNumber() + 1;
  if (db.GetSortedWalFiles(files).ok()) {
    for (const auto& f : files) {
      if (f->StartSequence() > 0 && f->SizeFileBytes() > 0) oldest = std::min<std::uint64_t>(oldest, f->StartSequence());
    }
  }
  return oldest;
}

inline keel::error rocks_watch_expired(rocksdb::DB& db, std::uint64_t covered, const std::filesystem::path& dir) {
  const std::uint64_t oldest = rocks_oldest_kept(db);
  return keel::error(errc::snapshot_expired,
                     "watch of '" + path_text(dir) + "': the changes after seq " + std::to_string(covered) +
                         " are no longer in the WAL (RocksDB deleted the WAL file that held them: "
                         "rocks_options::watch_history_mb keeps more; or they never were: an SST ingestion, a write "
                         "without WAL); the oldest seq still available is " + std::to_string(oldest) +
                         " (a watch with after = " + std::to_string(oldest == 0 ? 0 : oldest - 1) + " can start there)");
}

// A watch met an erase_range, in the commit with seq `seq`, whose removed
// keys were not listed. A watch with after = seq skips that whole commit.
inline keel::error rocks_watch_unlisted(std::uint64_t seq, const std::filesystem::path& dir) {
  return keel::error(errc::snapshot_expired,
                     "watch of '" + path_text(dir) + "': the keys an erase_range removed at seq " + std::to_string(seq) +
                         " were not recorded (written before the store's first watch of that open, or by a keel "
                         "without watches; rocks_options::watch_list_erased_keys records them always); resume after " +
                         std::to_string(seq) + ": the oldest seq still available is " + std::to_string(seq + 1));
}

// Reads WAL records into w.ready until it holds w.buffer changes or the WAL
// has nothing more. Inside the store's enter() (lifecycle held shared).
inline void rocks_watch_fill(rocks_watch_state& w) {
  rocksdb::DB& db = *w.handle->db;
  int fresh_iterators = 0;
  while (w.ready.size() < w.buffer && !w.failed) {
    if (!w.iter) {
      if (w.covered >= db.GetLatestSequenceNumber()) return;  // nothing new
      if (fresh_iterators == 4) return;                        // enough for one call: the next one goes on
      ++fresh_iterators;
      rocksdb::Status s = db.GetUpdatesSince(w.covered + 1, &w.iter);
      w.step_first = false;
      if (!s.ok() || !w.iter || !w.iter->Valid()) {
        w.iter.reset();
        if (w.covered >= db.GetLatestSequenceNumber()) return;
        if (fresh_iterators < 2) continue;  // e.g. a WAL file moved to the archive meanwhile: once more
        w.failed = rocks_watch_expired(db, w.covered, w.handle->path);  // seq covered + 1 is in no WAL file
        return;
      }
    }
    if (w.step_first) {
      w.iter->Next();
      w.step_first = false;
    }
    if (!w.iter->Valid()) {
      rocksdb::Status s = w.iter->status();
      if (s.ok()) {  // at the end of what is written: poll it again next time
        w.step_first = true;
        return;
      }
      w.iter.reset();  // TryAgain (a new WAL file), or a gap: a new iterator from covered + 1
      continue;
    }
    rocksdb::BatchResult b = w.iter->GetBatch();
    w.step_first = true;
    if (b.sequence > w.covered + 1) {  // the records between were deleted (or never in the WAL)
      w.iter.reset();
      w.failed = rocks_watch_expired(db, w.covered, w.handle->path);
      return;
    }
    const std::uint64_t count = b.writeBatchPtr->Count();
    const std::uint64_t end = b.sequence + count;  // one past its last record
    if (end <= w.covered + 1) continue;           // read before (or no records)
    rocks_wal_decoder d(b.sequence, w.cf_id, w.range);
    rocksdb::Status s = b.writeBatchPtr->Iterate(&d);
    if (!s.ok() || d.malformed) {
      w.failed = keel::error(errc::corruption, "watch of '" + path_text(w.handle->path) + "': the WAL record at seq " +
                                                   std::to_string(b.sequence) + " cannot be read: " + s.ToString());
      return;
    }
    // An erase_range whose keys were not listed, in a commit the watch must
    // deliver: the commits before it, then snapshot_expired.
    std::optional<std::uint64_t> unlisted;  // the first such commit's seq
    for (const auto& [record, commit] : d.unlisted) {
      if (record > w.covered && commit > w.after) {
        unlisted = commit;
        break;
      }
    }
    for (auto& it : d.items) {
      if (it.record_seq <= w.covered || it.seq <= w.after) continue;
      if (unlisted && it.seq >= *unlisted) break;
      change c;
      c.seq = it.seq;
      c.keyspace = w.keyspace->name;
      c.key = std::move(it.key);
      if (!it.erase) {  // as stored: without expiry's header (rocksdb/expiry.hpp)
        const std::size_t header = rocks_parse(it.value, w.keyspace->tag.load(std::memory_order_acquire)).header;
        c.value = header ? it.value.substr(header) : std::move(it.value);
      }
      w.ready.push_back(std::move(c));
    }
    if (unlisted) {
      w.iter.reset();
      w.failed = rocks_watch_unlisted(*unlisted, w.handle->path);
      return;
    }
    w.covered = end - 1;
  }
}

// The watch a RocksPolicy hands out (its watch_type). Movable.
class rocks_watch {
 public:
  explicit rocks_watch(std::unique_ptr<rocks_watch_state> s) : s_(std::move(s)) {}
  rocks_watch(rocks_watch&&) noexcept = default;
  rocks_watch& operator=(rocks_watch&& o) noexcept {
    if (this != &o) {
      release();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  ~rocks_watch() { release(); }

  // See basic_watch::next (watch.hpp).
  result<std::optional<change>> next(std::chrono::milliseconds timeout) {
    if (!s_) return keel::error(errc::invalid_argument, "next() on a moved-from watch");
    rocks_watch_state& w = *s_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (w.handle->closing.load(std::memory_order_acquire)) return w.handle->closed();
      if (!w.ready.empty()) {
        change c = std::move(w.ready.front());
        w.ready.pop_front();
        return std::optional<change>(std::move(c));
      }
      if (w.failed) return *w.failed;
      const std::uint64_t seen = w.hub->committed.load(std::memory_order_seq_cst);
      {
        std::shared_lock<std::shared_mutex> lock;
        if (!w.handle->enter(lock)) return w.handle->closed();
        // Dropped: the changes up to the drop, then not_found.
        const std::optional<std::uint64_t> dropped = w.hub->dropped_at(w.cf_id);
        rocks_watch_fill(w);
        if (dropped && w.ready.empty() && !w.failed && w.covered >= *dropped) {
          w.iter.reset();
          w.failed = rocks_keyspace_gone(w.keyspace->name);
        }
      }
      if (!w.ready.empty() || w.failed) continue;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return std::optional<change>();
      // Woken by a commit, a drop or close(); at most 100 ms apart, so that
      // writes made outside keel (with_db) are seen too.
      w.hub->wait(seen, std::min(deadline, now + std::chrono::milliseconds(100)));
    }
  }

 private:
  void release() noexcept {
    if (!s_) return;
    std::shared_lock<std::shared_mutex> lock(s_->handle->lifecycle);
    {
      std::lock_guard live(s_->hub->live_mutex);
      s_->hub->live.erase(s_.get());
    }
    s_->iter.reset();
    s_.reset();
  }
  std::unique_ptr<rocks_watch_state> s_;
};

// A new watch of keyspace `ks` (cf_id: its column family's id) from the
// store's handle. Inside enter(); invalid `after` already refused.
inline rocks_watch rocks_make_watch(std::shared_ptr<const rocks_handle> handle, std::shared_ptr<rocks_watch_hub> hub,
                                    std::shared_ptr<rocks_keyspace> ks, std::uint32_t cf_id, const key_range& range,
                                    const watch_options& o) {
  auto s = std::make_unique<rocks_watch_state>();
  s->handle = std::move(handle);
  s->hub = std::move(hub);
  s->keyspace = std::move(ks);
  s->cf_id = cf_id;
  s->range = range;
  s->buffer = o.buffer;
  s->after = o.after ? *o.after : s->hub->committed.load(std::memory_order_seq_cst);
  s->covered = s->after;
  {
    std::lock_guard live(s->hub->live_mutex);
    s->hub->live.insert(s.get());
  }
  return rocks_watch(std::move(s));
}

// Why a watch with options `o` cannot be made on this store (nullopt when
// it can): a read-only store (its view is as of the open: not_supported), a
// WAL RocksDB does not write as it commits (manual_wal_flush, set through
// customize: not_supported), or `after` beyond last_seq (invalid_argument).
inline std::optional<keel::error> rocks_watch_refusal(rocksdb::DB& db, bool read_only, const watch_options& o,
                                                      std::uint64_t last_seq, const std::filesystem::path& dir) {
  const std::string where = "watch of '" + path_text(dir) + "'";
  if (read_only) {
    return keel::error(errc::not_supported, where + ": a read-only store sees the database as of its open, not the "
                                                    "changes made since; watch the store that writes");
  }
  if (db.GetDBOptions().manual_wal_flush) {
    return keel::error(errc::not_supported, where + ": watches read the WAL, which manual_wal_flush (set through "
                                                    "rocks_options::customize) holds back");
  }
  if (o.after && *o.after > last_seq) {
    return keel::error(errc::invalid_argument, where + ": after = " + std::to_string(*o.after) +
                                                   " is beyond the latest commit, seq " + std::to_string(last_seq));
  }
  return std::nullopt;
}

// close(): drops every watch's WAL iterator (they must go before the DB) and
// wakes the watches that wait. With the lifecycle lock held exclusively.
inline void rocks_close_watches(rocks_watch_hub& hub) {
  {
    std::lock_guard live(hub.live_mutex);
    for (rocks_watch_state* w : hub.live) w->iter.reset();
  }
  hub.wake();
}

}  // namespace keel::detail
