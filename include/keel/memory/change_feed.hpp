// keel::detail::change_feed: the in-process change history behind watch
// (issue 28; watch.hpp has the semantics): the memory store's (memory/
// watch.hpp), written backend-neutral so that another in-process backend
// can use it (it then moves to detail/, scripts/check-layout.py). A bounded
// history of committed entries (a seq and its changes, immutable, shared by
// pointer) that writers append to and watches (feed_watch) read by
// position. Needs no backend headers.
//
// Writer side (the backend's commit path). Appends are serialised by the
// caller (one at a time, in commit order: the store's writers' lock):
//   bool recording()            whether entries are kept; false until the
//                               first start_recording(): a commit then only
//                               calls advance(seq) and builds no changes
//   void advance(seq)           a commit that is not kept: last_seq = seq
//   void append(seq, changes)   a commit: its changes (their .seq is
//                               ignored), kept when recording(); an empty
//                               list only advances last_seq
//   void append_one(seq, keyspace, key, value)
//                               the same for a commit of one change (value
//                               nullopt: an erase), building no vector
//   void append_drop(ks)        keyspace `ks` was dropped after the last
//                               commit: watches of it end there (not_found)
//   void start_recording()      from now on keep entries (idempotent). Call
//                               with the appends' serialisation held, so
//                               that no commit is between "not kept" and
//                               "from now". What was kept before (replayed())
//                               stays when no commit came since; otherwise
//                               the history starts at last_seq()
//   void restore(seq)           last_seq = seq and the history starts after
//                               it: whatever was kept is forgotten (at open,
//                               and where a replayed commit cannot be given
//                               as changes)
//   void replayed(seq, changes) at open, before any watch: a commit read
//                               back from a log, kept whether recording or not
//                               (also a commit made while not recording but
//                               whole(): the history stays whole)
//   bool whole()                whether the kept history reaches last_seq()
//   void close()                every watch's next() gives errc::closed
//   first_needed_seq()          the first seq whose commit a rebuilt
//                               history needs (a persisted store's close)
// Seqs given to append/advance only grow (equal is allowed for empty lists
// and drops); a marker (append_drop) has the seq of the commit before it.
//
// Reader side (thread-safe, any thread):
//   result<feed_watch> watch(filter, options)
//                               a watch of filter.keyspace's keys in
//                               filter.range: from now (after last_seq()) or
//                               after options.after. Errors: invalid_argument
//                               (after > last_seq(), buffer 0), closed,
//                               not_supported (not recording: the backend
//                               calls start_recording() first, under its
//                               lock). An `after` older than the history is
//                               not an error here: the watch's next() gives
//                               snapshot_expired.
//   feed_watch::next(timeout)   the next matching change (see watch.hpp);
//                               errc::snapshot_expired (sticky) when the
//                               entries it needs were dropped from the
//                               history, naming the oldest seq still kept;
//                               errc::not_found (sticky) after a drop of its
//                               keyspace; errc::closed after close()
//
// History bound: `capacity` changes (a drop marker counts 1); the oldest
// entries go first, the newest entry is always kept whatever its size.
// Lock: one mutex guards the history; a writer holds it for a push_back and
// the evictions, and wakes readers only when one waits (never waits for a
// reader). A reader holds it to copy at most `buffer` changes' worth (and at
// most 256 entries) of pointers into its own buffer, then filters outside it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../key_range.hpp"
#include "../watch.hpp"
#include "../detail/keyspace_text.hpp"

namespace keel::detail {

// A keyspace as the feed knows it: its name and the backend's id for it
// (0: the default keyspace, never dropped). A drop ends the watches whose
// keyspace has the same name and id, so a watch of a keyspace created again
// under the same name is not ended by the earlier drop.
struct feed_keyspace {
  std::string name;
  std::uint64_t id = 0;
  friend bool operator==(const feed_keyspace&, const feed_keyspace&) = default;
};

// One entry of the history: a commit's changes in order, or a drop marker,
// encoded in one block (one allocation, shared by pointer: the history and
// the watches that copied it). Immutable once appended. A record:
//   u8 kind (1 put, 2 erase, 3 drop) | u32 keyspace size | u32 key size |
//   u32 value size | keyspace | key | value   (native byte order; a drop:
//   keyspace = the name, no key, value = the keyspace id, 8 bytes)
struct feed_entry {
  std::uint64_t seq = 0;
  std::shared_ptr<const char[]> data;
  std::size_t bytes = 0;
  std::size_t weight = 0;  // changes; a drop counts 1
  bool dropped = false;
};

// A record of a feed_entry, read in place.
struct feed_record {
  static constexpr std::size_t header = 13;
  enum kind_t : std::uint8_t { put = 1, erase = 2, drop = 3 };
  kind_t kind = put;
  std::string_view keyspace, key, value;
  std::size_t size() const noexcept { return header + keyspace.size() + key.size() + value.size(); }

  static std::size_t size_of(std::string_view keyspace, std::string_view key, std::size_t value) noexcept {
    return header + keyspace.size() + key.size() + value;
  }
  // Writes a record at `p`; returns the end.
  static char* write(char* p, kind_t kind, std::string_view keyspace, std::string_view key, std::string_view value) {
    *p++ = static_cast<char>(kind);
    for (std::size_t n : {keyspace.size(), key.size(), value.size()}) {
      const auto u = static_cast<std::uint32_t>(n);
      std::memcpy(p, &u, 4);
      p += 4;
    }
    for (std::string_view part : {keyspace, key, value}) {
      if (!part.empty()) std::memcpy(p, part.data(), part.size());
      p += part.size();
    }
    return p;
  }
  static feed_record read(const char* p) noexcept {
    feed_record r;
    r.kind = static_cast<kind_t>(*p);
    std::uint32_t n[3];
    std::memcpy(n, p + 1, 12);
    const char* at = p + header;
    r.keyspace = std::string_view(at, n[0]);
    r.key = std::string_view(at + n[0], n[1]);
    r.value = std::string_view(at + n[0] + n[1], n[2]);
    return r;
  }
};

// A block of `n` bytes for a feed_entry (not zeroed where the library can).
inline std::shared_ptr<char[]> feed_block(std::size_t n) {
#if defined(__cpp_lib_smart_ptr_for_overwrite)
  return std::make_shared_for_overwrite<char[]>(n);
#else
  return std::shared_ptr<char[]>(new char[n]);
#endif
}

// What a watch follows.
struct feed_filter {
  feed_keyspace keyspace;
  key_range range = key_range::all();
};

// The default number of changes kept (memory_options::watch_history's
// default; other backends may use it too).
inline constexpr std::size_t default_watch_history = 65536;

// Where the writer side puts entries' blocks: small ones are carved out of
// 64 KiB chunks (an entry holds its chunk by an aliasing shared_ptr: no
// allocation per commit; a chunk goes when its last entry does), larger
// ones get a block of their own. Used by the writer side only (appends are
// serialised).
class feed_arena {
 public:
  static constexpr std::size_t chunk_size = 64 * 1024;
  std::shared_ptr<char[]> allocate(std::size_t n) {
    if (n > chunk_size / 8) return feed_block(n);
    if (!chunk_ || chunk_size - used_ < n) {
      chunk_ = feed_block(chunk_size);
      used_ = 0;
    }
    std::shared_ptr<char[]> part(chunk_, chunk_.get() + used_);
    used_ += n;
    return part;
  }

 private:
  std::shared_ptr<char[]> chunk_;
  std::size_t used_ = 0;
};

class change_feed;

// One watch of a change_feed: the backend's watch_type (or the heart of it).
// Movable; one thread at a time (watch.hpp).
class feed_watch {
 public:
  result<std::optional<change>> next(std::chrono::milliseconds timeout);

 private:
  friend class change_feed;
  feed_watch(std::shared_ptr<change_feed> feed, feed_filter filter, std::uint64_t next_ordinal, std::size_t buffer)
      : feed_(std::move(feed)), filter_(std::move(filter)), next_ordinal_(next_ordinal), buffer_(buffer) {}
  feed_watch(std::shared_ptr<change_feed> feed, feed_filter filter, std::uint64_t next_ordinal, std::uint64_t after,
             std::size_t buffer)
      : feed_watch(std::move(feed), std::move(filter), next_ordinal, buffer) {
    copied_seq_ = after;
  }
  // Whether this watch delivers record `r`.
  bool wants(const feed_record& r) const {
    return r.keyspace == filter_.keyspace.name && filter_.range.contains(r.key);
  }

  std::shared_ptr<change_feed> feed_;
  feed_filter filter_;
  std::uint64_t next_ordinal_;  // the ordinal of the next entry to copy from the feed
  std::uint64_t copied_seq_ = 0;  // the seq of the last entry copied (at first: where the watch starts)
  std::size_t buffer_;
  std::vector<feed_entry> held_;  // copied, not yet read
  std::size_t held_entry_ = 0;    // position in held_
  std::size_t held_offset_ = 0;   // byte offset in held_[held_entry_].data
  std::optional<keel::error> ended_;  // sticky: snapshot_expired or not_found
};

class change_feed {
 public:
  explicit change_feed(std::size_t capacity = default_watch_history) : capacity_(capacity == 0 ? 1 : capacity) {}
  change_feed(const change_feed&) = delete;
  change_feed& operator=(const change_feed&) = delete;

  // ---- writer side (appends serialised by the caller) ----------------------
  bool recording() const noexcept { return recording_.load(std::memory_order_acquire); }
  std::uint64_t last_seq() const noexcept { return last_seq_.load(std::memory_order_acquire); }

  void advance(std::uint64_t seq) noexcept { last_seq_.store(seq, std::memory_order_release); }

  void append(std::uint64_t seq, const std::vector<change>& changes) {
    if (changes.empty() || !recording()) {
      advance(seq);
      return;
    }
    push(encode(seq, changes), seq);
  }
  // The same for a commit of one change (value nullopt: an erase), without
  // building a vector: one allocation.
  void append_one(std::uint64_t seq, std::string_view keyspace, std::string_view key,
                  std::optional<std::string_view> value) {
    if (!recording()) return advance(seq);
    const std::string_view v = value.value_or(std::string_view());
    feed_entry e{seq, nullptr, 0, 1, false};
    const std::size_t n = feed_record::size_of(keyspace, key, v.size());
    auto block = arena_.allocate(n);
    feed_record::write(block.get(), value ? feed_record::put : feed_record::erase, keyspace, key, v);
    e.data = std::move(block);
    e.bytes = n;
    push(std::move(e), seq);
  }

  void append_drop(const feed_keyspace& ks) {
    if (!recording()) return;
    const std::uint64_t seq = last_seq();
    char id[8];
    std::memcpy(id, &ks.id, 8);
    const std::size_t n = feed_record::size_of(ks.name, {}, 8);
    auto block = arena_.allocate(n);
    feed_record::write(block.get(), feed_record::drop, ks.name, {}, std::string_view(id, 8));
    push(feed_entry{seq, std::move(block), n, 1, true}, seq);
  }

  void start_recording() {
    if (recording()) return;
    std::lock_guard lock(mutex_);
    if (tail_seq_ != last_seq()) forget(last_seq());  // commits came that were not kept
    recording_.store(true, std::memory_order_release);
  }

  void restore(std::uint64_t seq) {
    std::lock_guard lock(mutex_);
    last_seq_.store(seq, std::memory_order_release);
    forget(seq);
  }

  void replayed(std::uint64_t seq, const std::vector<change>& changes) {
    if (changes.empty()) {  // nothing to keep, and nothing missed
      std::lock_guard lock(mutex_);
      if (tail_seq_ == last_seq()) tail_seq_ = seq;
      return advance(seq);
    }
    push(encode(seq, changes), seq);
  }

  // Whether the kept history reaches last_seq(): no commit came since the
  // last one kept (or replayed) without being kept.
  bool whole() const {
    std::lock_guard lock(mutex_);
    return tail_seq_ == last_seq();
  }

  void close() {
    std::lock_guard lock(mutex_);
    closed_.store(true, std::memory_order_release);
    wake_.notify_all();
  }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  std::size_t capacity() const noexcept { return capacity_; }
  // Changes kept now (drop markers count 1).
  std::size_t kept() const {
    std::lock_guard lock(mutex_);
    return kept_;
  }
  // The smallest S for which watch_options::after = S is still served
  // (the history holds everything after it); meaningful while recording().
  std::uint64_t oldest_resumable_after() const {
    std::lock_guard lock(mutex_);
    return lost_marker_ ? lost_seq_ + 1 : lost_seq_;
  }

  // The first seq a history rebuilt from the commits from it on needs in
  // order to serve every `after` served now: the one after the oldest lost
  // while the history is whole (recording, or nothing committed since
  // replayed() filled it); last_seq() + 1 when no commit is needed.
  std::uint64_t first_needed_seq() const {
    std::lock_guard lock(mutex_);
    if (!recording() && tail_seq_ != last_seq()) return last_seq() + 1;
    return lost_seq_ + 1;
  }

  // ---- reader side ---------------------------------------------------------
  // A watch of `filter` (see the top of this file). `self` is this feed's
  // owner (the watch keeps the feed alive).
  static result<feed_watch> watch(const std::shared_ptr<change_feed>& self, feed_filter filter,
                                  const watch_options& options) {
    if (auto bad = watch_options_error(options)) return *bad;
    std::lock_guard lock(self->mutex_);
    if (self->closed()) return keel::error(errc::closed, "watch: the store is closed");
    if (!self->recording()) return keel::error(errc::not_supported, "watch: the store keeps no history (start_recording)");
    const std::uint64_t last = self->last_seq();
    std::uint64_t ordinal = self->front_ordinal_ + self->entries_.size();  // from now
    const std::uint64_t after = options.after.value_or(last);
    if (after > last) {
      return keel::error(errc::invalid_argument, "watch: after = " + std::to_string(after) +
                                                     " is beyond the store's last seq " + std::to_string(last));
    }
    if (options.after) {
      if (after < self->lost_seq_ || (after == self->lost_seq_ && self->lost_marker_)) {
        feed_watch expired(self, std::move(filter), ordinal, after, options.buffer);
        expired.ended_ = self->expired_error(after);  // next() reports it (watch.hpp)
        return expired;
      }
      // The first entry with key > (after, commit): the commits after it and
      // the drops that followed commit `after`.
      auto it = std::partition_point(self->entries_.begin(), self->entries_.end(), [&](const feed_entry& e) {
        return e.seq < after || (e.seq == after && !e.dropped);
      });
      ordinal = self->front_ordinal_ + static_cast<std::uint64_t>(it - self->entries_.begin());
    }
    return feed_watch(self, std::move(filter), ordinal, after, options.buffer);
  }

 private:
  friend class feed_watch;

  void forget(std::uint64_t seq) {  // mutex_ held
    front_ordinal_ += entries_.size();
    entries_.clear();
    kept_ = 0;
    lost_seq_ = tail_seq_ = seq;
    lost_marker_ = false;
  }

  feed_entry encode(std::uint64_t seq, const std::vector<change>& changes) {
    std::size_t n = 0;
    for (const auto& c : changes) n += feed_record::size_of(c.keyspace, c.key, c.value ? c.value->size() : 0);
    auto block = arena_.allocate(n);
    char* p = block.get();
    for (const auto& c : changes)
      p = feed_record::write(p, c.value ? feed_record::put : feed_record::erase, c.keyspace, c.key,
                             c.value ? std::string_view(*c.value) : std::string_view());
    return feed_entry{seq, std::move(block), n, changes.size(), false};
  }

  void push(feed_entry entry, std::uint64_t seq) {
    std::shared_ptr<const char[]> evicted;  // freed after the lock (the common case: one entry goes per append)
    std::lock_guard lock(mutex_);
    tail_seq_ = seq;
    kept_ += entry.weight;
    entries_.push_back(std::move(entry));
    while (kept_ > capacity_ && entries_.size() > 1) {
      feed_entry& oldest = entries_.front();
      kept_ -= oldest.weight;
      lost_seq_ = oldest.seq;  // a marker at S follows commit S: losing it loses "after S" too
      lost_marker_ = oldest.dropped;
      evicted = std::move(oldest.data);
      entries_.pop_front();
      ++front_ordinal_;
    }
    last_seq_.store(seq, std::memory_order_release);
    if (waiting_ > 0) wake_.notify_all();
  }

  keel::error expired_error(std::uint64_t after) const {  // mutex_ held
    std::string m = "watch: the changes after seq " + std::to_string(after) + " are no longer kept; ";
    if (!entries_.empty()) {
      m += "the oldest seq still available is " + std::to_string(entries_.front().seq) +
           " (resume with after >= " + std::to_string(lost_marker_ ? lost_seq_ + 1 : lost_seq_) + ")";
    } else {
      m += "no change is kept (resume with after = " + std::to_string(last_seq()) + ")";
    }
    return keel::error(errc::snapshot_expired, std::move(m));
  }

  const std::size_t capacity_;
  feed_arena arena_;  // writer side (appends are serialised)
  std::atomic<bool> recording_{false};
  std::atomic<std::uint64_t> last_seq_{0};

  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable wake_;
  std::deque<feed_entry> entries_;
  std::uint64_t front_ordinal_ = 0;  // ordinal of entries_.front(): entries appended before it
  std::size_t kept_ = 0;             // sum of entries_' weights
  std::uint64_t lost_seq_ = 0;       // entries up to (lost_seq_, lost_marker_) may be lost; later ones are kept
  bool lost_marker_ = false;         // (a marker at seq S comes after commit S)
  std::uint64_t tail_seq_ = 0;       // the seq the kept history reaches (last push or forget)
  std::size_t waiting_ = 0;          // readers waiting on wake_
  std::atomic<bool> closed_{false};  // set under mutex_ (for wake_)
};

inline result<std::optional<change>> feed_watch::next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (feed_->closed()) return keel::error(errc::closed, "watch: the store is closed");
    if (ended_) return *ended_;
    // Read on in what is held.
    while (held_entry_ < held_.size()) {
      const feed_entry& e = held_[held_entry_];
      while (held_offset_ < e.bytes) {
        const feed_record r = feed_record::read(e.data.get() + held_offset_);
        held_offset_ += r.size();
        if (r.kind == feed_record::drop) {
          std::uint64_t id = 0;
          std::memcpy(&id, r.value.data(), 8);
          if (filter_.keyspace.id != 0 && id == filter_.keyspace.id && r.keyspace == filter_.keyspace.name) {
            held_.clear();
            held_entry_ = held_offset_ = 0;
            ended_ = keel::error(errc::not_found,
                                 "watch: keyspace " + keyspace_text(filter_.keyspace.name) + " was dropped");
            return *ended_;
          }
        } else if (wants(r)) {
          change c{e.seq, std::string(r.keyspace), std::string(r.key), std::nullopt};
          if (r.kind == feed_record::put) c.value.emplace(r.value);
          return std::optional<change>(std::move(c));
        }
      }
      ++held_entry_;
      held_offset_ = 0;
    }
    held_.clear();
    held_entry_ = 0;
    held_offset_ = 0;
    // Copy the next entries from the feed, waiting for one until the deadline.
    std::unique_lock lock(feed_->mutex_);
    for (;;) {
      if (feed_->closed()) return keel::error(errc::closed, "watch: the store is closed");
      if (next_ordinal_ < feed_->front_ordinal_) {  // fell behind: what it needs next is gone
        ended_ = feed_->expired_error(copied_seq_);
        return *ended_;
      }
      const std::uint64_t end = feed_->front_ordinal_ + feed_->entries_.size();
      if (next_ordinal_ < end) break;
      if (std::chrono::steady_clock::now() >= deadline) return std::optional<change>();
      ++feed_->waiting_;
      feed_->wake_.wait_until(lock, deadline);
      --feed_->waiting_;
    }
    std::size_t weight = 0;
    const std::uint64_t end = feed_->front_ordinal_ + feed_->entries_.size();
    while (next_ordinal_ < end && held_.size() < 256 && (held_.empty() || weight < buffer_)) {
      const feed_entry& e = feed_->entries_[static_cast<std::size_t>(next_ordinal_ - feed_->front_ordinal_)];
      weight += e.weight;
      copied_seq_ = e.seq;
      held_.push_back(e);
      ++next_ordinal_;
    }
  }
}

}  // namespace keel::detail
