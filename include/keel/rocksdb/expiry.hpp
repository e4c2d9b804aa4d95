// keel::detail (RocksDB backend): expiry (issue 29; keel/expiry.hpp has the
// semantics, docs/expiry.md "RocksDB" the design and its measurements).
//
// Encoding. A column family (keyspace) in which no key ever had a ttl is
// untouched: its values are stored as given, and reading it costs one
// relaxed-cheap atomic load more than before. The first ttl put in a column
// family gives it a tag: 8 random bytes, recorded in keel's column family
// "keel.expiry" (key: the keyspace name, "" for the default one; value: the
// 8 bytes), which is created then. From then on a value is stored
//   - as given, when it does not begin with the tag (every value written
//     before the tag existed, and almost every plain value after);
//   - tag 'd' deadline(8 bytes, little-endian ms since the epoch) value:
//     a value with a deadline;
//   - tag 'p' value: a plain value that happens to begin with the tag
//     (escaped, so that it cannot be taken for a tagged one).
// A value written before the tag existed begins with it only by chance
// (2^-64: the tag is drawn at random when it is made, after those values).
//
// Reads filter by the clock (a snapshot, and a transaction's view, at the
// time it was taken). Reclamation: a compaction filter (rocks_ttl_filter,
// made per compaction by rocks_ttl_filter_factory for column families that
// have a tag) drops the entries whose deadline has passed by the store's
// clock read when the compaction starts, or by the oldest live snapshot's
// time if earlier; RocksDB runs it in its background threads (so the
// clock_source must be thread-safe, as keel/expiry.hpp requires). compact()
// therefore reclaims every expired key's bytes. Reads never rely on it.
#pragma once

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <limits>
#include <cstdint>
#include <cstring>
#include <atomic>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/background_worker.hpp"
#include "../expiry.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
#include "errors.hpp"
#include "keyspaces.hpp"

namespace keel::detail {

// The column family holding each keyspace's tag (made by the first ttl).
inline constexpr std::string_view rocks_expiry_family = "keel.expiry";

inline constexpr std::size_t rocks_tag_size = 8;
inline constexpr char rocks_tag_deadline = 'd', rocks_tag_plain = 'p';

// A tag as the 8 bytes it is stored as (native order in memory, the same
// bytes on disk: it is only ever compared, never interpreted).
inline std::uint64_t rocks_tag_of(std::string_view bytes) noexcept {
  std::uint64_t t = 0;
  if (bytes.size() >= rocks_tag_size) std::memcpy(&t, bytes.data(), rocks_tag_size);
  return t;
}
inline std::string rocks_tag_bytes(std::uint64_t tag) { return std::string(reinterpret_cast<const char*>(&tag), rocks_tag_size); }

// A new random tag (never 0, which means "no tag").
inline std::uint64_t rocks_new_tag() {
  std::random_device rd;
  std::uint64_t t = 0;
  while (t == 0) t = (std::uint64_t{rd()} << 32) ^ rd();
  return t;
}

// What a stored value holds: the value begins `header` bytes in; `deadline`
// when it has one.
struct rocks_stored {
  std::size_t header = 0;
  std::optional<deadline_ms> deadline;
};

// Parses stored bytes of a column family whose tag is `tag` (0: none).
inline rocks_stored rocks_parse(std::string_view stored, std::uint64_t tag) noexcept {
  if (tag == 0 || stored.size() <= rocks_tag_size) return {};
  std::uint64_t head;
  std::memcpy(&head, stored.data(), rocks_tag_size);
  if (head != tag) return {};
  if (stored[rocks_tag_size] == rocks_tag_plain) return {rocks_tag_size + 1, std::nullopt};
  if (stored[rocks_tag_size] != rocks_tag_deadline || stored.size() < rocks_tag_size + 9) return {};
  std::uint64_t d = 0;
  for (int i = 7; i >= 0; --i) d = (d << 8) | static_cast<unsigned char>(stored[rocks_tag_size + 1 + i]);
  return {rocks_tag_size + 9, static_cast<deadline_ms>(d)};
}

// Whether a plain `value` must be escaped in a column family tagged `tag`.
inline bool rocks_needs_escape(std::string_view value, std::uint64_t tag) noexcept {
  return tag != 0 && value.size() >= rocks_tag_size && rocks_tag_of(value) == tag;
}

// `value` as stored in a column family tagged `tag` (non-zero), with
// `deadline` or escaped as plain.
inline std::string rocks_encode(std::string_view value, std::uint64_t tag, std::optional<deadline_ms> deadline) {
  std::string out;
  out.reserve(rocks_tag_size + 9 + value.size());
  out.append(reinterpret_cast<const char*>(&tag), rocks_tag_size);
  if (deadline) {
    out += rocks_tag_deadline;
    auto d = static_cast<std::uint64_t>(*deadline);
    for (int i = 0; i < 8; ++i, d >>= 8) out += static_cast<char>(d & 0xff);
  } else {
    out += rocks_tag_plain;
  }
  out.append(value);
  return out;
}

inline deadline_ms rocks_now_ms(const clock_source& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(read_clock(clock).time_since_epoch()).count();
}

// The filter of one compaction of a tagged column family: drops entries whose
// deadline is at or before `now` (a delete marker takes their place, so an
// older version below cannot come back; RocksDB drops it in turn at the
// bottom level).
class rocks_ttl_filter final : public rocksdb::CompactionFilter {
 public:
  rocks_ttl_filter(std::uint64_t tag, deadline_ms now) : tag_(tag), now_(now) {}
  Decision FilterV2(int, const rocksdb::Slice&, ValueType type, const rocksdb::Slice& value, std::string*,
                    std::string*) const override {
    if (type != ValueType::kValue) return Decision::kKeep;
    const rocks_stored s = rocks_parse(std::string_view(value.data(), value.size()), tag_);
    return s.deadline && *s.deadline <= now_ ? Decision::kRemove : Decision::kKeep;
  }
  const char* Name() const override { return "keel.ttl"; }

 private:
  std::uint64_t tag_;
  deadline_ms now_;
};

// Made once per store (rocks_open puts it in the options of every column
// family); told each column family's tag (set()) and the times of the live
// snapshots (hold_view()): a compaction drops what expired by the clock when
// it starts, or by the oldest live snapshot's time if that is earlier (a
// snapshot reads at its own time, so it must still find the keys live then).
// Thread-safe: RocksDB calls it from its background threads.
class rocks_ttl_filter_factory final : public rocksdb::CompactionFilterFactory,
                                       public std::enable_shared_from_this<rocks_ttl_filter_factory> {
 public:
  explicit rocks_ttl_filter_factory(clock_source clock) : clock_(std::move(clock)) {}
  void set(std::uint32_t cf_id, std::uint64_t tag) {
    std::lock_guard lock(mutex_);
    tags_[cf_id] = tag;
  }
  // The clock's time now, held as a live view's time until the returned
  // hold goes (take it before the RocksDB snapshot).
  std::pair<deadline_ms, std::shared_ptr<void>> hold_view() {
    std::lock_guard lock(mutex_);
    const deadline_ms t = rocks_now_ms(clock_);
    auto it = views_.insert(t);
    auto self = shared_from_this();
    return {t, std::shared_ptr<void>(reinterpret_cast<void*>(1), [self, it](void*) {
              std::lock_guard l(self->mutex_);
              self->views_.erase(it);
            })};
  }
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& context) override {
    if (keep_expired_.load(std::memory_order_acquire)) return nullptr;  // a watched store: keel's sweep deletes them
    std::lock_guard lock(mutex_);
    auto it = tags_.find(context.column_family_id);
    if (it == tags_.end() || it->second == 0) return nullptr;  // never used ttl: no filter, no cost per entry
    deadline_ms cutoff = rocks_now_ms(clock_);
    if (!views_.empty() && *views_.begin() < cutoff) cutoff = *views_.begin();
    return std::make_unique<rocks_ttl_filter>(it->second, cutoff);
  }
  const char* Name() const override { return "keel.ttl"; }
  // From now on no compaction gets a filter (the store is watched: expired
  // keys are deleted by keel's sweep, as commits a watch sees).
  void keep_expired() noexcept { keep_expired_.store(true, std::memory_order_release); }

 private:
  const clock_source clock_;
  std::atomic<bool> keep_expired_{false};
  std::mutex mutex_;
  std::map<std::uint32_t, std::uint64_t> tags_;  // guarded by mutex_
  std::multiset<deadline_ms> views_;             // live snapshots' times; guarded by mutex_
};

// Whether a key among `keys`, or in one of `ranges`, of column family `cf`
// (tagged `tag`) reached its deadline in (begun, now]: it was present when
// the transaction could read it and is absent at its commit. Reads the
// current state (the caller excludes writers).
inline bool rocks_expired_between(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf, std::uint64_t tag,
                                  const std::vector<std::string>& keys, const std::vector<key_range>& ranges,
                                  deadline_ms begun, deadline_ms now) {
  auto hit = [&](std::string_view stored) {
    const rocks_stored s = rocks_parse(stored, tag);
    return s.deadline && *s.deadline > begun && *s.deadline <= now;
  };
  rocksdb::PinnableSlice v;
  for (const std::string& k : keys) {
    v.Reset();
    if (db.Get(rocksdb::ReadOptions(), cf, k, &v).ok() && hit(std::string_view(v.data(), v.size()))) return true;
  }
  for (const key_range& r : ranges) {
    if (r.is_empty()) continue;
    rocksdb::ReadOptions ro;
    rocksdb::Slice lo, hi;
    if (r.lower()) ro.iterate_lower_bound = &(lo = rocksdb::Slice(*r.lower()));
    if (r.upper()) ro.iterate_upper_bound = &(hi = rocksdb::Slice(*r.upper()));
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(ro, cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (hit(std::string_view(it->value().data(), it->value().size()))) return true;
    }
  }
  return false;
}


// A store's expiry state (one per open store, shared with nothing but its
// policy): the clock, the compaction filter's factory (told each keyspace's
// tag), the "keel.expiry" column family (null until the first ttl; set with
// the write gate held exclusively; close() destroys it), whether some
// keyspace has a tag, and live transactions' begin times.
class rocks_expiry {
 public:
  explicit rocks_expiry(clock_source c)
      : clock(std::move(c)), filters(std::make_shared<rocks_ttl_filter_factory>(clock)) {}

  const clock_source clock;
  const std::shared_ptr<rocks_ttl_filter_factory> filters;
  rocksdb::ColumnFamilyHandle* family = nullptr;

  deadline_ms now() const { return rocks_now_ms(clock); }

  // A batch's bad ttl (a put with one of zero or less, which write_batch
  // keeps as -1, or a deadline past what the clock can represent):
  // invalid_argument, checked before anything is written.
  std::optional<keel::error> bad_ttl(const write_batch& batch) const {
    if (!batch.has_ttl()) return std::nullopt;
    const auto t = read_clock(clock);
    for (const auto& op : batch) {
      if (op.kind != write_batch::op_kind::put || op.ttl.count() == 0) continue;
      if (op.ttl.count() < 0)
        return keel::error(errc::invalid_argument, "a ttl must be positive; the batch has one that is not; nothing was written");
      if (auto d = deadline_after(t, op.ttl); !d) return std::move(d).error();
    }
    return std::nullopt;
  }

  // Gives keyspace `e` its tag if it has none (the first ttl in it): records
  // it in "keel.expiry" (made now if missing), then publishes it to readers
  // and to the compaction filter. Call with the write gate held exclusively,
  // inside enter() (and e's shared lock).
  result<void> make_tag(rocksdb::DB& db, const rocksdb::ColumnFamilyOptions& cf_options, const rocksdb::WriteOptions& wo,
                        const rocks_keyspace& e, const std::filesystem::path& dir) {
    if (e.tag.load(std::memory_order_acquire) != 0) return {};
    if (!family) {
      rocksdb::Status s = db.CreateColumnFamily(cf_options, std::string(rocks_expiry_family), &family);
      if (!s.ok()) return rocks_op_error(s, "put (the first ttl: creating column family 'keel.expiry')", dir);
      if (watched()) {
        if (rocksdb::Status m = db.Put(wo, family, rocks_watched_marker(), "1"); !m.ok())
          return rocks_op_error(m, "put (the first ttl: recording that the store is watched)", dir);
      }
    }
    const std::uint64_t tag = rocks_new_tag();
    if (rocksdb::Status s = db.Put(wo, family, e.name, rocks_tag_bytes(tag)); !s.ok())
      return rocks_op_error(s, "put (the first ttl: recording the keyspace's expiry tag)", dir);
    filters->set(e.cf->GetID(), tag);
    e.tag.store(tag, std::memory_order_release);
    any_tag_.store(true, std::memory_order_release);
    return {};
  }

  // At open: each keyspace's tag from "keel.expiry" (`find(name)` gives the
  // keyspace's entry, or nullptr for a name that is no keyspace now).
  template <class Find>
  result<void> load(rocksdb::DB& db, Find&& find, const std::filesystem::path& dir) {
    if (!family) return {};
    std::string marker;  // before any tag is known: no compaction filters a watched store's keyspace
    if (db.Get(rocksdb::ReadOptions(), family, rocks_watched_marker(), &marker).ok()) set_watched();
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions(), family));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocks_keyspace* e = find(std::string_view(it->key().data(), it->key().size()));
      const std::uint64_t tag = rocks_tag_of(std::string_view(it->value().data(), it->value().size()));
      if (!e || it->value().size() != rocks_tag_size || tag == 0) continue;  // (the watched marker: no keyspace)
      filters->set(e->cf->GetID(), tag);
      e->tag.store(tag, std::memory_order_release);
      any_tag_.store(true, std::memory_order_release);
    }
    if (!it->status().ok()) return rocks_op_error(it->status(), "open (reading the expiry tags)", dir);
    return {};
  }

  // A plain value as keyspace e stores it (escaped if it begins with e's
  // tag; built in `scratch` then). Under the write gate.
  static std::string_view plain_stored(const rocks_keyspace& e, std::string_view v, std::string& scratch) {
    const std::uint64_t tag = e.tag.load(std::memory_order_acquire);
    if (!rocks_needs_escape(v, tag)) [[likely]] return v;
    return scratch = rocks_encode(v, tag, std::nullopt);
  }

  // The value `op` (a put) stores in keyspace e: with its deadline (now +
  // its ttl) when it has a ttl, escaped when it begins with e's tag, else as
  // given (built in `scratch` unless as given). Under the write gate.
  static std::string_view stored(const write_batch::op& op, const rocks_keyspace& e, deadline_ms now,
                                 std::string& scratch) {
    const std::uint64_t tag = e.tag.load(std::memory_order_acquire);
    if (op.ttl.count() > 0) return scratch = rocks_encode(op.value, tag, now + op.ttl.count());
    if (!rocks_needs_escape(op.value, tag)) return op.value;
    return scratch = rocks_encode(op.value, tag, std::nullopt);
  }

  // What expiry(key) reports of `key` in keyspace `e`. Inside enter() (and
  // e's shared lock).
  result<key_expiry> key(rocksdb::DB& db, const rocks_keyspace& e, std::string_view key,
                         const std::filesystem::path& dir) const {
    rocksdb::PinnableSlice v;
    rocksdb::Status s = db.Get(rocksdb::ReadOptions(), e.cf, rocksdb::Slice(key.data(), key.size()), &v);
    if (s.IsNotFound()) return key_expiry{};
    if (!s.ok()) return rocks_op_error(s, "expiry", dir);
    const rocks_stored st = rocks_parse(std::string_view(v.data(), v.size()), e.tag.load(std::memory_order_acquire));
    if (st.deadline && *st.deadline <= now()) return key_expiry{};
    return key_expiry{true, st.deadline};
  }

  // ---- watched stores (issue 28 with 29; docs/watch.md, "Expiry") --------
  // A store that has ever been watched (the marker below in "keel.expiry",
  // or a watch in this open) reclaims expired keys by keel's sweep only:
  // explicit deletes, written like any commit, which the WAL-based watch
  // delivers as erase changes; the compaction filter, which would drop them
  // without a WAL record, is off. The sweep runs at compact() and every
  // rocks_options::expiry_interval on a background thread (set_sweeper).
  // The marker's key has 256 bytes: never a keyspace's name.
  static std::string rocks_watched_marker() { return std::string("keel.watched") + std::string(244, '.'); }
  bool watched() const noexcept { return watched_.load(std::memory_order_acquire); }
  // The first watch (write gate held exclusively): turns the filter off,
  // waits for running compactions (they may hold one), records the marker
  // when "keel.expiry" exists (else make_tag() writes it with the first tag).
  result<void> mark_watched(rocksdb::DB& db, const rocksdb::WriteOptions& wo, const std::filesystem::path& dir) {
    if (watched()) return {};
    filters->keep_expired();
    if (db.PauseBackgroundWork().ok()) (void)db.ContinueBackgroundWork();
    if (family) {
      if (rocksdb::Status s = db.Put(wo, family, rocks_watched_marker(), "1"); !s.ok())
        return rocks_op_error(s, "watch (recording that the store is watched)", dir);
    }
    set_watched();
    return {};
  }
  // At open: the background sweep's job and interval (0: compact() only);
  // it starts once the store is watched. stop(): at close, before the DB goes.
  void set_sweeper(std::function<void()> job, std::chrono::milliseconds every) {
    sweep_job_ = std::move(job);
    sweep_every_ = every;
    if (watched()) start_sweeper();
  }
  void stop() {
    std::lock_guard once(stop_mutex_);  // close() may run in several threads at once
    sweeper_.stop();
  }
  // The earliest deadline a put may have left (the background sweep skips
  // while it is in the future): writers note theirs, a sweep resets it.
  void note_deadline(deadline_ms d) {
    deadline_ms cur = earliest_.load(std::memory_order_relaxed);
    while (d < cur && !earliest_.compare_exchange_weak(cur, d, std::memory_order_acq_rel)) {
    }
  }
  void note_batch(const write_batch& batch, deadline_ms now) {
    for (const auto& op : batch)
      if (op.kind == write_batch::op_kind::put && op.ttl.count() > 0) note_deadline(now + op.ttl.count());
  }
  // The background sweep: whether one is due now (then the earliest known
  // deadline is forgotten: the sweep notes what it leaves).
  bool sweep_due() {
    if (earliest_.load(std::memory_order_acquire) > now()) return false;
    earliest_.store(std::numeric_limits<deadline_ms>::max(), std::memory_order_release);
    return true;
  }

  // A new snapshot's time, held against the compaction filter while some
  // keyspace has a tag (a snapshot taken before the first tag shows no value
  // with a deadline).
  std::pair<deadline_ms, std::shared_ptr<void>> hold_view() const {
    if (!any_tag_.load(std::memory_order_acquire)) return {now(), nullptr};
    return filters->hold_view();
  }

  // The commit check of transaction `tx`: a conflict when a key it read (or
  // one in a range it scanned) in the default keyspace `def` or in a
  // keyspace of `registry` reached its deadline between the time its view
  // read at (tx.view_time) and now. Call with the write gate held exclusively. A keyspace read
  // but not written is found under the registry's mutex, tried only (the
  // lock order forbids waiting for it under the gate): when it is busy the
  // commit conflicts (run it again).
  std::optional<keel::error> expired_since_begin(rocksdb::DB& db, const tx_record& tx, const rocks_keyspace& def,
                                                 rocks_keyspace_registry& registry) const {
    const std::optional<deadline_ms> begun = tx.view_time;
    if (!begun) return std::nullopt;
    const deadline_ms t = now();
    auto conflict = [](std::string_view why) {
      return keel::error(errc::conflict, "transaction: " + std::string(why) + "; nothing was written");
    };
    if (const std::uint64_t tag = def.tag.load(std::memory_order_acquire);
        tag && rocks_expired_between(db, def.cf, tag, tx.read_keys, tx.read_ranges, *begun, t))
      return conflict("a key it read expired before the commit");
    if (tx.keyspace_reads.empty()) return std::nullopt;
    std::unique_lock lock(registry.mutex, std::try_to_lock);
    if (!lock) return conflict("the keyspaces were busy while checking expiry (run it again)");
    for (const tx_keyspace_reads& r : tx.keyspace_reads) {
      auto it = registry.by_name.find(r.keyspace);
      if (it == registry.by_name.end() || !it->second->cf) continue;  // dropped: validate() reports it
      const std::uint64_t tag = it->second->tag.load(std::memory_order_acquire);
      if (tag && rocks_expired_between(db, it->second->cf, tag, r.read_keys, r.read_ranges, *begun, t))
        return conflict("a key it read in keyspace '" + r.keyspace + "' expired before the commit");
    }
    return std::nullopt;
  }

 private:
  void set_watched() {
    filters->keep_expired();
    if (!watched_.exchange(true, std::memory_order_acq_rel) && sweep_job_) start_sweeper();
  }
  void start_sweeper() {
    if (sweep_every_.count() > 0) sweeper_.start(sweep_job_, sweep_every_);
  }
  std::atomic<bool> any_tag_{false};
  std::atomic<bool> watched_{false};
  std::atomic<deadline_ms> earliest_{std::numeric_limits<deadline_ms>::min()};  // unknown at open: sweep once
  std::function<void()> sweep_job_;
  std::chrono::milliseconds sweep_every_{0};
  std::mutex stop_mutex_;
  background_worker sweeper_;
};

// keel's sweep of keyspace `e` (a watched store; rocks_expiry above): the
// keys in `range` whose deadline is at or before `now`, found by a scan,
// 4096 at a time; each chunk is checked again and deleted with the write
// gate held exclusively (exclusive() gives the guard), so that a key
// overwritten or erased since the scan is left alone: apply(batch) writes
// the erases as one commit (one seq; a watch gets one erase change per key).
// Notes the earliest deadline it leaves in `expiry`. Inside enter() and e's
// shared lock.
template <class Exclusive, class Apply>
result<void> rocks_sweep(rocksdb::DB& db, const rocks_keyspace& e, bool is_default, const key_range& range,
                         rocks_expiry& expiry, Exclusive&& exclusive, Apply&& apply, const std::filesystem::path& dir) {
  const std::uint64_t tag = e.tag.load(std::memory_order_acquire);
  if (tag == 0 || range.is_empty()) return {};
  constexpr std::size_t chunk = 4096;
  const deadline_ms now = expiry.now();
  std::optional<std::string> after;  // the last key scanned when a chunk was full
  for (;;) {
    std::vector<std::string> keys;
    bool more = false;
    {
      rocksdb::ReadOptions ro;
      rocksdb::Slice lo, hi;
      if (range.lower()) ro.iterate_lower_bound = &(lo = rocksdb::Slice(*range.lower()));
      if (range.upper()) ro.iterate_upper_bound = &(hi = rocksdb::Slice(*range.upper()));
      std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(ro, e.cf));
      if (after) {
        it->Seek(*after);
        if (it->Valid() && it->key() == rocksdb::Slice(*after)) it->Next();
      } else {
        it->SeekToFirst();
      }
      for (; it->Valid(); it->Next()) {
        const rocks_stored st = rocks_parse(std::string_view(it->value().data(), it->value().size()), tag);
        if (!st.deadline) continue;
        if (*st.deadline > now) {
          expiry.note_deadline(*st.deadline);
          continue;
        }
        keys.emplace_back(it->key().data(), it->key().size());
        if (keys.size() == chunk) {
          more = true;
          break;
        }
      }
      if (!it->status().ok()) return rocks_op_error(it->status(), "expiry sweep", dir);
    }
    if (!keys.empty()) {
      auto gate = exclusive();
      write_batch batch;
      rocksdb::PinnableSlice v;
      for (const auto& k : keys) {
        v.Reset();
        if (!db.Get(rocksdb::ReadOptions(), e.cf, k, &v).ok()) continue;  // erased since
        const rocks_stored st = rocks_parse(std::string_view(v.data(), v.size()), tag);
        if (!st.deadline || *st.deadline > now) continue;  // overwritten since
        if (is_default)
          batch.erase(k);
        else
          batch.erase(keyspace_name(e.name), k);
      }
      if (!batch.empty())
        if (auto r = apply(batch); !r) return r;
    }
    if (!more) return {};
    after = keys.back();
  }
}

// RocksDB's batched MultiGet in keyspace `e` (one consistent view: an
// implicit snapshot for the whole call, keys looked up together), keys past
// their deadline left out. Inside enter() (and e's shared lock).
inline result<std::vector<std::optional<std::string>>> rocks_multi_get(rocksdb::DB& db, const rocks_keyspace& e,
                                                                       std::span<const std::string_view> keys,
                                                                       const rocks_expiry& expiry,
                                                                       const std::filesystem::path& dir) {
  std::vector<rocksdb::Slice> slices;
  slices.reserve(keys.size());
  for (std::string_view k : keys) slices.emplace_back(k.data(), k.size());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  if (!keys.empty()) db.MultiGet(rocksdb::ReadOptions(), e.cf, keys.size(), slices.data(), values.data(), statuses.data());
  const std::uint64_t tag = e.tag.load(std::memory_order_acquire);  // after the read (see the file comment)
  const deadline_ms now = tag ? expiry.now() : 0;
  std::vector<std::optional<std::string>> out(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      const rocks_stored st = rocks_parse(std::string_view(values[i].data(), values[i].size()), tag);
      if (!st.deadline || *st.deadline > now) out[i].emplace(values[i].data() + st.header, values[i].size() - st.header);
    } else if (!statuses[i].IsNotFound()) {
      return rocks_op_error(statuses[i], "multi_get", dir);
    }
  }
  return out;
}

}  // namespace keel::detail
