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
// Where the history lives: each entry's records are encoded once into
// blocks the writer side owns (small entries carved from 64 KiB chunks,
// larger ones in a block of their own); a ring of slots (seq, block
// pointer, size, weight), indexed by the entry's ordinal, grows by doubling
// up to what `capacity` needs; [begin, end) are the ordinals kept.
// Synchronisation: a commit takes no lock and no read-modify-write: it
// writes its slot and publishes `end` (one sequentially consistent store).
// An eviction moves `begin` before the slot is reused, behind a release
// fence; a reader reads a slot, then checks `begin` (acquire fence): a slot
// it read may have been reused only if `begin` has passed it (a seqlock on
// `begin`). The mutex is taken by readers while they copy entries' bytes
// (at most `buffer` changes' worth and 256 entries) into their own buffer,
// and by the writer side only (1) to free blocks whose entries were all
// evicted (once per chunk, not per commit), (2) to grow the ring, and (3)
// to wake readers, when one waits. So a writer never waits for a reader
// except for the length of one such copy, and a commit pays for a watch the
// encoding of its changes and a few plain stores.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
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

// A record of an entry (a commit's changes in order, or a drop marker),
// read in place:
//   u8 kind (1 put, 2 erase, 3 drop) | u32 keyspace size | u32 key size |
//   u32 value size | keyspace | key | value   (native byte order; a drop:
//   keyspace = the name, no key, value = the keyspace id, 8 bytes)
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

// What a watch follows.
struct feed_filter {
  feed_keyspace keyspace;
  key_range range = key_range::all();
};

// The default number of changes kept (memory_options::watch_history's
// default; other backends may use it too).
inline constexpr std::size_t default_watch_history = 65536;

// The blocks entries' records live in, owned by the writer side (appends
// are serialised): small entries are carved out of 64 KiB chunks, larger
// ones get a block of their own. Each block knows the ordinal of the last
// entry in it, so it is freed once the history's begin has passed that
// (release(): the caller makes sure no reader is copying from it).
class feed_blocks {
 public:
  static constexpr std::size_t chunk_size = 64 * 1024;
  // Room for `n` bytes of the entry with ordinal `ordinal` (ordinals grow).
  char* allocate(std::size_t n, std::uint64_t ordinal) {
    if (n > chunk_size / 8) {
      close_chunk();
      blocks_.push_back(block{make(n), ordinal});
      return blocks_.back().data.get();
    }
    if (!open_ || chunk_size - used_ < n) {
      close_chunk();
      blocks_.push_back(block{make(chunk_size), open_last});
      open_ = true;
      used_ = 0;
    }
    char* p = blocks_.back().data.get() + used_;
    used_ += n;
    open_ordinal_ = ordinal;
    return p;
  }
  // Whether blocks whose entries all have ordinals below `begin` are kept.
  bool any_before(std::uint64_t begin) const noexcept {
    return !blocks_.empty() && blocks_.front().last < begin;
  }
  // Moves those blocks to `out` (to be freed once no reader can copy from them).
  void take_before(std::uint64_t begin, std::vector<std::unique_ptr<char[]>>& out) {
    while (any_before(begin)) {
      out.push_back(std::move(blocks_.front().data));
      blocks_.pop_front();
    }
  }
  // Every block (the history was forgotten).
  void take_all(std::vector<std::unique_ptr<char[]>>& out) {
    for (auto& b : blocks_) out.push_back(std::move(b.data));
    blocks_.clear();
    open_ = false;
  }

 private:
  static constexpr std::uint64_t open_last = std::numeric_limits<std::uint64_t>::max();
  struct block {
    std::unique_ptr<char[]> data;
    std::uint64_t last;  // the ordinal of its last entry (open_last: the chunk being carved)
  };
  static std::unique_ptr<char[]> make(std::size_t n) {
#if defined(__cpp_lib_smart_ptr_for_overwrite)
    return std::make_unique_for_overwrite<char[]>(n);
#else
    return std::unique_ptr<char[]>(new char[n]);
#endif
  }
  void close_chunk() {
    if (!open_) return;
    blocks_.back().last = open_ordinal_;  // the open chunk is always the newest block
    open_ = false;
  }
  std::deque<block> blocks_;  // in ordinal order
  bool open_ = false;         // blocks_.back() is a chunk still being carved
  std::size_t used_ = 0;
  std::uint64_t open_ordinal_ = 0;
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
  // Copies the next entries from the feed into held_ (feed mutex held):
  // false when the watch fell behind (ended_ set).
  bool copy_from_feed();

  struct held_entry {
    std::uint64_t seq;
    std::size_t offset, bytes;  // in held_bytes_
  };
  std::shared_ptr<change_feed> feed_;
  feed_filter filter_;
  std::uint64_t next_ordinal_;  // the ordinal of the next entry to copy from the feed
  std::uint64_t copied_seq_ = 0;  // the seq of the last entry copied (at first: where the watch starts)
  std::size_t buffer_;
  std::vector<held_entry> held_;  // copied, not yet read
  std::vector<char> held_bytes_;  // their records
  std::size_t held_entry_ = 0;    // position in held_
  std::size_t held_offset_ = 0;   // byte offset in held_[held_entry_]'s records
  std::optional<keel::error> ended_;  // sticky: snapshot_expired or not_found
};

class change_feed {
 public:
  explicit change_feed(std::size_t capacity = default_watch_history)
      : capacity_(capacity == 0 ? 1 : capacity) {}
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
    push_changes(seq, changes);
  }
  // The same for a commit of one change (value nullopt: an erase), without
  // building a vector.
  void append_one(std::uint64_t seq, std::string_view keyspace, std::string_view key,
                  std::optional<std::string_view> value) {
    if (!recording()) return advance(seq);
    const std::string_view v = value.value_or(std::string_view());
    const std::size_t n = feed_record::size_of(keyspace, key, v.size());
    char* p = blocks_.allocate(n, end_.load(std::memory_order_relaxed));
    feed_record::write(p, value ? feed_record::put : feed_record::erase, keyspace, key, v);
    push(seq, p, n, 1, false);
  }

  void append_drop(const feed_keyspace& ks) {
    if (!recording()) return;
    const std::uint64_t seq = last_seq();
    char id[8];
    std::memcpy(id, &ks.id, 8);
    const std::size_t n = feed_record::size_of(ks.name, {}, 8);
    char* p = blocks_.allocate(n, end_.load(std::memory_order_relaxed));
    feed_record::write(p, feed_record::drop, ks.name, {}, std::string_view(id, 8));
    push(seq, p, n, 1, true);
  }

  void start_recording() {
    if (recording()) return;
    if (tail_seq_.load(std::memory_order_relaxed) != last_seq()) forget(last_seq());  // commits came that were not kept
    recording_.store(true, std::memory_order_release);
  }

  void restore(std::uint64_t seq) {
    last_seq_.store(seq, std::memory_order_release);
    forget(seq);
  }

  void replayed(std::uint64_t seq, const std::vector<change>& changes) {
    if (changes.empty()) {  // nothing to keep, and nothing missed
      if (tail_seq_.load(std::memory_order_relaxed) == last_seq()) tail_seq_.store(seq, std::memory_order_relaxed);
      return advance(seq);
    }
    push_changes(seq, changes);
  }

  // Whether the kept history reaches last_seq(): no commit came since the
  // last one kept (or replayed) without being kept.
  bool whole() const { return tail_seq_.load(std::memory_order_acquire) == last_seq(); }

  void close() {
    std::lock_guard lock(mutex_);
    closed_.store(true, std::memory_order_release);
    wake_.notify_all();
  }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  std::size_t capacity() const noexcept { return capacity_; }
  // Changes kept now (drop markers count 1).
  std::size_t kept() const { return kept_.load(std::memory_order_acquire); }
  // The smallest S for which watch_options::after = S is still served
  // (the history holds everything after it); meaningful while recording().
  std::uint64_t oldest_resumable_after() const {
    const std::uint64_t lost = lost_.load(std::memory_order_acquire);
    return (lost >> 1) + (lost & 1);
  }

  // The first seq a history rebuilt from the commits from it on needs in
  // order to serve every `after` served now: the one after the oldest lost
  // while the history is whole (recording, or nothing committed since
  // replayed() filled it); last_seq() + 1 when no commit is needed.
  std::uint64_t first_needed_seq() const {
    if (!recording() && !whole()) return last_seq() + 1;
    return (lost_.load(std::memory_order_acquire) >> 1) + 1;
  }

  // ---- reader side ---------------------------------------------------------
  // A watch of `filter` (see the top of this file). `self` is this feed's
  // owner (the watch keeps the feed alive). Called with the appends'
  // serialisation held (the backend's writers' lock).
  static result<feed_watch> watch(const std::shared_ptr<change_feed>& self, feed_filter filter,
                                  const watch_options& options) {
    if (auto bad = watch_options_error(options)) return *bad;
    std::lock_guard lock(self->mutex_);
    if (self->closed()) return keel::error(errc::closed, "watch: the store is closed");
    if (!self->recording()) return keel::error(errc::not_supported, "watch: the store keeps no history (start_recording)");
    const std::uint64_t last = self->last_seq();
    const std::uint64_t begin = self->begin_.load(std::memory_order_relaxed), end = self->end_.load(std::memory_order_relaxed);
    std::uint64_t ordinal = end;  // from now
    const std::uint64_t after = options.after.value_or(last);
    if (after > last) {
      return keel::error(errc::invalid_argument, "watch: after = " + std::to_string(after) +
                                                     " is beyond the store's last seq " + std::to_string(last));
    }
    if (options.after) {
      const std::uint64_t lost = self->lost_.load(std::memory_order_relaxed);
      if (after < (lost >> 1) || (after == (lost >> 1) && (lost & 1))) {
        feed_watch expired(self, std::move(filter), ordinal, after, options.buffer);
        expired.ended_ = self->expired_error(after);  // next() reports it (watch.hpp)
        return expired;
      }
      // The first entry with key > (after, commit): the commits after it and
      // the drops that followed commit `after`. (No append runs meanwhile.)
      std::uint64_t lo = begin, hi = end;
      while (lo < hi) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        const slot& s = self->at(mid);
        const std::uint64_t seq = s.seq.load(std::memory_order_relaxed);
        const bool dropped = s.meta.load(std::memory_order_relaxed) & 1;
        if (seq < after || (seq == after && !dropped))
          lo = mid + 1;
        else
          hi = mid;
      }
      ordinal = lo;
    }
    return feed_watch(self, std::move(filter), ordinal, after, options.buffer);
  }

 private:
  friend class feed_watch;
  static constexpr std::size_t initial_ring = 1024;

  // One entry's place in the ring. Written by the writer side without the
  // mutex, read by readers: atomics, relaxed (the seqlock on begin_ orders them).
  struct slot {
    std::atomic<std::uint64_t> seq{0};
    std::atomic<const char*> data{nullptr};
    std::atomic<std::size_t> bytes{0};
    std::atomic<std::uint64_t> meta{0};  // weight << 1 | dropped (a drop marker)
  };
  slot& at(std::uint64_t ordinal) const noexcept { return ring_[static_cast<std::size_t>(ordinal) & mask_]; }

  // Forgets every kept entry: the history starts after `seq`. Appends'
  // serialisation held.
  void forget(std::uint64_t seq) {
    std::vector<std::unique_ptr<char[]>> freed;
    {
      std::lock_guard lock(mutex_);  // no reader is copying
      begin_.store(end_.load(std::memory_order_relaxed), std::memory_order_release);
      kept_.store(0, std::memory_order_release);
      lost_.store(seq << 1, std::memory_order_release);
      tail_seq_.store(seq, std::memory_order_release);
      blocks_.take_all(freed);
    }
  }

  void push_changes(std::uint64_t seq, const std::vector<change>& changes) {
    std::size_t n = 0;
    for (const auto& c : changes) n += feed_record::size_of(c.keyspace, c.key, c.value ? c.value->size() : 0);
    char* const data = blocks_.allocate(n, end_.load(std::memory_order_relaxed));
    char* p = data;
    for (const auto& c : changes)
      p = feed_record::write(p, c.value ? feed_record::put : feed_record::erase, c.keyspace, c.key,
                             c.value ? std::string_view(*c.value) : std::string_view());
    push(seq, data, n, changes.size(), false);
  }

  // Appends the entry whose records were just written at `data` (`bytes` of
  // them, `weight` changes; allocated for ordinal end_), evicting the oldest
  // entries beyond the capacity (the newest is always kept).
  void push(std::uint64_t seq, const char* data, std::size_t bytes, std::size_t weight, bool dropped) {
    const std::uint64_t end = end_.load(std::memory_order_relaxed);
    std::uint64_t begin = begin_.load(std::memory_order_relaxed);
    std::size_t kept = kept_.load(std::memory_order_relaxed) + weight;
    if (kept > capacity_ && begin < end) {
      std::uint64_t lost = 0;
      do {
        const slot& oldest = at(begin);
        const std::uint64_t meta = oldest.meta.load(std::memory_order_relaxed);
        kept -= static_cast<std::size_t>(meta >> 1);
        // a marker at S follows commit S: losing it loses "after S" too
        lost = oldest.seq.load(std::memory_order_relaxed) << 1 | (meta & 1);
        ++begin;
      } while (kept > capacity_ && begin < end);
      lost_.store(lost, std::memory_order_relaxed);
      begin_.store(begin, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);  // begin_ before the slot's reuse (readers' seqlock)
    }
    if (!ring_ || end - begin > mask_) grow(begin, end);
    slot& s = at(end);
    s.seq.store(seq, std::memory_order_relaxed);
    s.data.store(data, std::memory_order_relaxed);
    s.bytes.store(bytes, std::memory_order_relaxed);
    s.meta.store(static_cast<std::uint64_t>(weight) << 1 | (dropped ? 1 : 0), std::memory_order_relaxed);
    kept_.store(kept, std::memory_order_relaxed);
    tail_seq_.store(seq, std::memory_order_relaxed);
    // Publishes the slot and the records (release); sequentially consistent
    // with waiting_ below: a reader that counted itself waiting either sees
    // this end or is woken.
    end_.store(end + 1, std::memory_order_seq_cst);
    last_seq_.store(seq, std::memory_order_release);
    if (blocks_.any_before(begin)) {
      std::vector<std::unique_ptr<char[]>> freed;
      blocks_.take_before(begin, freed);
      std::lock_guard lock(mutex_);  // no reader is copying from them now, and none will: begin_ passed them
    }
    if (waiting_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard lock(mutex_); }  // a reader between its check and its wait gets there first
      wake_.notify_all();
    }
  }

  // Makes the ring (initial_ring slots: a store that never keeps an entry
  // has none), or doubles it (it is full: end - begin slots). Appends'
  // serialisation held; takes the mutex, under which readers read ring_.
  void grow(std::uint64_t begin, std::uint64_t end) {
    const std::size_t size = ring_ ? (mask_ + 1) * 2 : initial_ring;
    std::unique_ptr<slot[]> bigger(new slot[size]);
    for (std::uint64_t o = begin; o < end; ++o) {
      const slot& from = at(o);
      slot& to = bigger[static_cast<std::size_t>(o) & (size - 1)];
      to.seq.store(from.seq.load(std::memory_order_relaxed), std::memory_order_relaxed);
      to.data.store(from.data.load(std::memory_order_relaxed), std::memory_order_relaxed);
      to.bytes.store(from.bytes.load(std::memory_order_relaxed), std::memory_order_relaxed);
      to.meta.store(from.meta.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    std::lock_guard lock(mutex_);
    ring_.swap(bigger);
    mask_ = size - 1;
  }

  keel::error expired_error(std::uint64_t after) const {  // mutex_ held
    std::string m = "watch: the changes after seq " + std::to_string(after) + " are no longer kept; ";
    const std::uint64_t lost = lost_.load(std::memory_order_acquire);
    const std::uint64_t resume = (lost >> 1) + (lost & 1);
    const std::uint64_t begin = begin_.load(std::memory_order_acquire);
    if (begin < end_.load(std::memory_order_acquire)) {
      // The seq of the oldest entry kept: the seq after the last lost one at
      // least (a slot read here may already be reused; the seq is a hint).
      m += "the oldest seq still available is " +
           std::to_string(std::max(at(begin).seq.load(std::memory_order_relaxed), resume)) +
           " (resume with after >= " + std::to_string(resume) + ")";
    } else {
      m += "no change is kept (resume with after = " + std::to_string(last_seq()) + ")";
    }
    return keel::error(errc::snapshot_expired, std::move(m));
  }

  const std::size_t capacity_;
  feed_blocks blocks_;  // writer side (appends are serialised)
  std::atomic<bool> recording_{false};
  std::atomic<std::uint64_t> last_seq_{0};
  std::unique_ptr<slot[]> ring_;  // made and replaced (grow) under mutex_; its slots are atomics
  std::size_t mask_ = 0;          // ring size - 1 (a power of two); changes with ring_
  std::atomic<std::uint64_t> begin_{0};  // the ordinal of the oldest entry kept
  std::atomic<std::uint64_t> end_{0};    // one past the newest entry's ordinal
  std::atomic<std::size_t> kept_{0};     // the kept entries' weights
  std::atomic<std::uint64_t> lost_{0};   // (seq << 1 | marker): entries up to it may be lost; later ones are kept
                                         // (a marker at seq S comes after commit S)
  std::atomic<std::uint64_t> tail_seq_{0};  // the seq the kept history reaches (last push or forget)
  std::atomic<std::size_t> waiting_{0};     // readers waiting on wake_
  std::atomic<bool> closed_{false};         // set under mutex_ (for wake_)

  mutable std::mutex mutex_;  // readers' copies; the writer's frees, ring growth, wake-ups
  std::condition_variable wake_;
};

inline bool feed_watch::copy_from_feed() {
  change_feed& f = *feed_;
  std::size_t weight = 0;
  const std::uint64_t end = f.end_.load(std::memory_order_acquire);
  while (next_ordinal_ < end && held_.size() < 256 && (held_.empty() || weight < buffer_)) {
    const change_feed::slot& s = f.at(next_ordinal_);
    const std::uint64_t seq = s.seq.load(std::memory_order_relaxed);
    const char* data = s.data.load(std::memory_order_relaxed);
    const std::size_t bytes = s.bytes.load(std::memory_order_relaxed);
    const std::uint64_t meta = s.meta.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (f.begin_.load(std::memory_order_relaxed) > next_ordinal_) {  // evicted: the slot may be reused
      if (!held_.empty()) return true;  // read what was copied; the next copy reports it
      ended_ = f.expired_error(copied_seq_);
      return false;
    }
    // The slot is the entry's: its records were written before end_ was
    // published, and their block is not freed while the mutex is held.
    held_.push_back(held_entry{seq, held_bytes_.size(), bytes});
    held_bytes_.insert(held_bytes_.end(), data, data + bytes);
    weight += static_cast<std::size_t>(meta >> 1);
    copied_seq_ = seq;
    ++next_ordinal_;
  }
  return true;
}

inline result<std::optional<change>> feed_watch::next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (feed_->closed()) return keel::error(errc::closed, "watch: the store is closed");
    if (ended_) return *ended_;
    // Read on in what is held.
    while (held_entry_ < held_.size()) {
      const held_entry& e = held_[held_entry_];
      while (held_offset_ < e.bytes) {
        const feed_record r = feed_record::read(held_bytes_.data() + e.offset + held_offset_);
        held_offset_ += r.size();
        if (r.kind == feed_record::drop) {
          std::uint64_t id = 0;
          std::memcpy(&id, r.value.data(), 8);
          if (filter_.keyspace.id != 0 && id == filter_.keyspace.id && r.keyspace == filter_.keyspace.name) {
            held_.clear();
            held_bytes_.clear();
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
    held_bytes_.clear();
    held_entry_ = 0;
    held_offset_ = 0;
    // Copy the next entries from the feed, waiting for one until the deadline.
    std::unique_lock lock(feed_->mutex_);
    for (;;) {
      if (feed_->closed()) return keel::error(errc::closed, "watch: the store is closed");
      if (next_ordinal_ < feed_->begin_.load(std::memory_order_acquire)) {  // fell behind: what it needs next is gone
        ended_ = feed_->expired_error(copied_seq_);
        return *ended_;
      }
      if (next_ordinal_ < feed_->end_.load(std::memory_order_seq_cst)) break;
      if (std::chrono::steady_clock::now() >= deadline) return std::optional<change>();
      feed_->waiting_.fetch_add(1, std::memory_order_seq_cst);
      // Checked again after counting itself (sequentially consistent with
      // push()): an entry published before this check is seen, a later one wakes.
      if (next_ordinal_ >= feed_->end_.load(std::memory_order_seq_cst)) feed_->wake_.wait_until(lock, deadline);
      feed_->waiting_.fetch_sub(1, std::memory_order_seq_cst);
    }
    if (!copy_from_feed()) return *ended_;
  }
}

}  // namespace keel::detail
