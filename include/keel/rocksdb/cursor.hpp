// keel::detail (RocksDB backend): rocks_cursor, the read-ahead cursor of a
// RocksPolicy (its cursor_type derives from it).
//
// A cursor reads ahead: each refill takes the cursor's mutex once and copies
// the next chunk of entries (1, then doubling up to 128) out of the RocksDB
// iterator, so a step usually costs an index increment instead of a lock and
// two string copies. The copies keep the views handed out (key(), value(),
// fill()'s runs) valid even if another thread closes the store meanwhile:
// close() deletes the iterator (under the cursor's mutex), and the next
// refill, or any step after close() began, reports errc::closed.
//
// Thread safety: a cursor is movable and used by one thread at a time; close()
// may run concurrently from another thread. Ownership: a cursor keeps the
// handle (and through it its store) and the snapshot it reads alive; the
// iterator is released when the cursor goes, or by close(). Errors: a failed
// cursor (a closed store, a released snapshot) is empty with error() set; an
// iterator error is reported after the entries read before it.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "../contract.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "errors.hpp"
#include "expiry.hpp"
#include "keyspaces.hpp"
#include "open.hpp"

namespace keel::detail {

// The state of one cursor, on the heap (never moved: the iterator reads its
// bounds through pointers). Shared by the cursor and, through
// rocks_handle::live_cursors, by close(), which deletes the iterator under
// `mutex`. Lock order: handle lifecycle -> handle live_mutex -> mutex.
//
// The cursor reads ahead: each refill takes the mutex once and copies the
// next `chunk` entries (1, then doubling up to 128) into `buf`, so a step
// usually costs an index increment instead of a lock and two string copies.
// The copies keep the views handed out valid even if close() deletes the
// iterator meanwhile.
struct rocks_cursor_state {
  using item = cursor_entry;   // views into buf
  static constexpr std::size_t max_chunk = 128;

  std::mutex mutex;
  std::unique_ptr<rocksdb::Iterator> iterator;  // null once released
  std::string lower, upper;                     // iterate bounds: must outlive the iterator
  rocksdb::Slice lower_slice, upper_slice;
  std::unique_ptr<char[]> buf;                  // copies of the entries read ahead
  std::size_t buf_used = 0, buf_capacity = 0;
  std::array<item, max_chunk> items;            // the entries read ahead: items[0, count)
  std::size_t count = 0;
  std::size_t pos = 0;                          // current entry: items[pos]
  std::size_t chunk = 1;                        // entries per refill
  bool at_end = false;                          // the iterator has no more entries
  std::optional<keel::error> pending;           // its error, reported after the buffered entries
  bool reversed = false;
  bool valid = false;
  std::optional<keel::error> error;
  // Expiry (rocksdb/expiry.hpp): the column family's tag as the iterator
  // sees it (0: no ttl ever, values are copied as stored), and the clock
  // that decides which tagged entries are left out (read once per refill).
  std::uint64_t tag = 0;
  const clock_source* clock = nullptr;
  std::optional<deadline_ms> at;  // a snapshot's cursor: its time, not the clock
  // A tagged column family's: the deadline of items[i] (made by the first
  // copy_live_chunk; none for untagged ones).
  std::unique_ptr<std::optional<deadline_ms>[]> deadlines;

  // copy_chunk for a tagged column family: entries past their deadline are
  // skipped, the others copied without their header.
  template <bool Reverse>
  void copy_live_chunk() {
    rocksdb::Iterator& it = *iterator;
    const deadline_ms now = at ? *at : rocks_now_ms(*clock);
    if (!deadlines) deadlines = std::make_unique<std::optional<deadline_ms>[]>(max_chunk);
    std::size_t used = 0, n = 0;
    while (n < chunk && it.Valid()) {
      const rocksdb::Slice k = it.key(), raw = it.value();
      const rocks_stored s = rocks_parse(std::string_view(raw.data(), raw.size()), tag);
      if (!s.deadline || *s.deadline > now) {
        const std::string_view v(raw.data() + s.header, raw.size() - s.header);
        const std::size_t need = used + k.size() + v.size();
        if (need > buf_capacity) {
          const char* old = buf.get();
          char* b = grow(used, need);
          for (std::size_t i = 0; i < n; ++i)
            items[i] = {std::string_view(b + (items[i].key.data() - old), items[i].key.size()),
                        std::string_view(b + (items[i].value.data() - old), items[i].value.size())};
        }
        char* b = buf.get();
        copy_bytes(b + used, k.data(), k.size());
        copy_bytes(b + used + k.size(), v.data(), v.size());
        deadlines[n] = s.deadline;
        items[n++] = {std::string_view(b + used, k.size()), std::string_view(b + used + k.size(), v.size())};
        used = need;
      }
      if constexpr (Reverse) it.Prev();
      else it.Next();
    }
    count = n;
    buf_used = used;
  }

  // Replaces buf/items with copies of up to `chunk` entries from the
  // iterator, which is positioned on the first of them; leaves it on the one
  // after. This runs once per entry scanned: the loop keeps its state in
  // locals (registers across the calls into RocksDB's iterator), copies each key
  // and value with copy_bytes, and records the entry as views into buf.
  template <bool Reverse>
  void copy_chunk() {
    rocksdb::Iterator& it = *iterator;
    item* out = items.data();
    char* b = buf.get();
    std::size_t used = 0, cap = buf_capacity, n = 0;
    const std::size_t limit = chunk;
    while (n < limit && it.Valid()) {
      const rocksdb::Slice k = it.key(), v = it.value();
      const std::size_t need = used + k.size() + v.size();
      if (need > cap) {
        const char* old = b;
        b = grow(used, need);
        cap = buf_capacity;
        for (std::size_t i = 0; i < n; ++i)   // rare: the views so far move with the bytes
          out[i] = {std::string_view(b + (out[i].key.data() - old), out[i].key.size()),
                    std::string_view(b + (out[i].value.data() - old), out[i].value.size())};
      }
      out[n++] = {std::string_view(b + used, k.size()), std::string_view(b + used + k.size(), v.size())};
      copy_bytes(b + used, k.data(), k.size());
      copy_bytes(b + used + k.size(), v.data(), v.size());
      used = need;
      if constexpr (Reverse) it.Prev();
      else it.Next();
    }
    count = n;
    buf_used = used;
  }
  // memcpy, with the short sizes most keys have (4-16 bytes) done inline as
  // two overlapping fixed-size moves instead of a call.
  static void copy_bytes(char* to, const char* from, std::size_t n) noexcept {
    if (n >= 8 && n <= 16) {
      std::uint64_t head, tail;
      std::memcpy(&head, from, 8);
      std::memcpy(&tail, from + n - 8, 8);
      std::memcpy(to, &head, 8);
      std::memcpy(to + n - 8, &tail, 8);
    } else if (n >= 4 && n < 8) {
      std::uint32_t head, tail;
      std::memcpy(&head, from, 4);
      std::memcpy(&tail, from + n - 4, 4);
      std::memcpy(to, &head, 4);
      std::memcpy(to + n - 4, &tail, 4);
    } else if (n != 0) {
      std::memcpy(to, from, n);
    }
  }
  // A buffer of at least `need` bytes holding the first `used` bytes of buf.
  char* grow(std::size_t used, std::size_t need) {
    const std::size_t cap = std::max(need, 2 * buf_capacity);
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);
    if (used) std::memcpy(bigger.get(), buf.get(), used);
    buf = std::move(bigger);
    buf_capacity = cap;
    return buf.get();
  }
};

// Releases every cursor's iterator and every snapshot handed out on `h`
// (close(), with h.lifecycle held exclusively, before DB::Close()).
inline void rocks_release_live(rocks_handle& h) {
  std::lock_guard live(h.live_mutex);
  for (rocks_cursor_state* c : h.live_cursors) {
    std::lock_guard lock(c->mutex);
    c->iterator.reset();
  }
  for (const rocksdb::Snapshot** s : h.live_snapshots) {
    if (*s) h.db->ReleaseSnapshot(*s);
    *s = nullptr;
  }
}

// A cursor over the RocksDB backend. Movable, single-threaded use.
class rocks_cursor {
 public:
  rocks_cursor(rocks_cursor&&) noexcept = default;
  // Releases this cursor's own pass first (unregisters it from close() and
  // deletes its iterator), then takes over `other`'s.
  rocks_cursor& operator=(rocks_cursor&& other) noexcept {
    if (this != &other) {
      release();
      handle_ = std::move(other.handle_);
      snap_ = std::move(other.snap_);
      state_ = std::move(other.state_);
      ks_ = std::move(other.ks_);
    }
    return *this;
  }
  ~rocks_cursor() { release(); }

  // A cursor over `range` of the handle's DB, or of the snapshot `snap` when
  // given, in the default keyspace or in keyspace `ks` when given. Fails (an
  // empty cursor with errc::closed) once close() has begun or the snapshot
  // was released, with errc::not_found when `ks` was dropped. A cursor in
  // `ks` keeps its column family's handle (so it reads on if `ks` is dropped
  // meanwhile; the handle is destroyed when its last cursor goes).
  // Entries of `tagged` (the keyspace read: ks, or the default one) whose
  // deadline has passed by `clock` (at the snapshot's time: snap->time) are
  // left out (rocksdb/expiry.hpp); both must live as long as the handle.
  static rocks_cursor open(std::shared_ptr<const rocks_handle> handle, const key_range& range,
                           std::shared_ptr<const rocks_snapshot_view> snap, const rocks_keyspace& tagged,
                           const clock_source& clock, std::shared_ptr<rocks_keyspace> ks = nullptr) {
    auto state = std::make_unique<rocks_cursor_state>();
    state->reversed = range.is_reversed();
    std::shared_lock<std::shared_mutex> lifecycle;
    if (!handle->enter(lifecycle) || (snap && !snap->snap)) return failed(handle->closed());
    std::shared_lock<std::shared_mutex> entry;
    if (ks) {
      if (ks->refusing.load(std::memory_order_acquire)) return failed(rocks_keyspace_gone(ks->name));
      entry = std::shared_lock(ks->mutex);
      if (!ks->cf || ks->refusing.load(std::memory_order_acquire)) return failed(rocks_keyspace_gone(ks->name));
    }
    if (range.is_empty()) return rocks_cursor(std::move(handle), nullptr, std::move(state));

    // The bounds are read through pointers for the iterator's whole life: they
    // live in the (heap-allocated, never moved) cursor state.
    rocksdb::ReadOptions ro;
    if (range.lower()) {
      state->lower = *range.lower();
      state->lower_slice = rocksdb::Slice(state->lower.data(), state->lower.size());
      ro.iterate_lower_bound = &state->lower_slice;
    }
    if (range.upper()) {
      state->upper = *range.upper();
      state->upper_slice = rocksdb::Slice(state->upper.data(), state->upper.size());
      ro.iterate_upper_bound = &state->upper_slice;
    }
    if (snap) ro.snapshot = snap->snap;
    state->iterator.reset(ks ? handle->db->NewIterator(ro, ks->cf) : handle->db->NewIterator(ro));
    if (ks) ks->cursors.fetch_add(1, std::memory_order_acq_rel);  // under its shared lock: no drop meanwhile
    state->tag = tagged.tag.load(std::memory_order_acquire);  // after the iterator: it sees no value tagged later
    state->clock = &clock;
    if (snap) state->at = snap->time;
    rocksdb::Iterator& it = *state->iterator;
    if (!state->reversed) {
      if (range.lower())
        it.Seek(state->lower_slice);
      else
        it.SeekToFirst();
    } else if (range.upper()) {
      it.SeekForPrev(state->upper_slice);
      if (it.Valid() && it.key() == state->upper_slice) it.Prev();
    } else {
      it.SeekToLast();
    }
    {
      std::lock_guard live(handle->live_mutex);
      handle->live_cursors.insert(state.get());
    }
    rocks_cursor c(std::move(handle), std::move(snap), std::move(state));
    c.ks_ = std::move(ks);
    c.read_ahead();
    return c;
  }
  // An empty cursor reporting `e`.
  static rocks_cursor failed(keel::error e) {
    auto state = std::make_unique<rocks_cursor_state>();
    state->error = std::move(e);
    return rocks_cursor(nullptr, nullptr, std::move(state));
  }

  bool valid() const noexcept { return state_->valid; }
  std::string_view key() const noexcept { return state_->items[state_->pos].key; }
  std::string_view value() const noexcept { return state_->items[state_->pos].value; }
  const std::optional<keel::error>& error() const noexcept { return state_->error; }
  // The deadline_cursor members (contract.hpp; for export and copy): whether
  // an entry may have a deadline (the keyspace had a tag when the cursor was
  // made), and the current entry's (precondition valid()).
  bool holds_deadlines() const noexcept { return state_->tag != 0; }
  std::optional<deadline_ms> deadline() const noexcept {
    if (state_->tag == 0) return std::nullopt;
    return state_->deadlines[state_->pos];
  }

  void next() {
    if (!state_->valid) return;
    if (handle_->closing.load(std::memory_order_acquire)) return stop(handle_->closed());
    if (++state_->pos < state_->count) return;
    if (state_->at_end) {
      state_->valid = false;
      state_->error = std::move(state_->pending);
      return;
    }
    std::lock_guard lock(state_->mutex);
    if (!state_->iterator) return stop(handle_->closed());
    read_ahead();
  }

  // The optional run_cursor members (contract.hpp): a run is the entries read
  // ahead and not yet handed out, as views into the read-ahead buffer (valid
  // until the next fill(), which may refill it). Once walked by fill(), the
  // cursor is walked by fill() only.
  std::size_t fill(std::span<cursor_entry> out) {
    rocks_cursor_state& st = *state_;
    if (!st.valid || out.empty()) return 0;
    if (handle_->closing.load(std::memory_order_acquire)) {
      stop(handle_->closed());
      return 0;
    }
    if (st.pos == st.count) {   // every entry read ahead was handed out
      if (st.at_end) {
        st.valid = false;
        st.error = std::move(st.pending);
        return 0;
      }
      std::lock_guard lock(st.mutex);
      if (!st.iterator) {
        stop(handle_->closed());
        return 0;
      }
      read_ahead();
      if (!st.valid) return 0;
    }
    const std::size_t n = std::min(out.size(), st.count - st.pos);
    std::copy_n(st.items.data() + st.pos, n, out.data());
    st.pos += n;
    return n;
  }
  // Precondition: not a failed cursor (one that fill() gave entries).
  const std::atomic<bool>& open_flag() const noexcept { return handle_->open; }

 private:
  rocks_cursor(std::shared_ptr<const rocks_handle> handle, std::shared_ptr<const void> snap,
               std::unique_ptr<rocks_cursor_state> state)
      : handle_(std::move(handle)), snap_(std::move(snap)), state_(std::move(state)) {}

  // Copies the next chunk of entries from the iterator, which is positioned
  // on the first of them. Called with state_->mutex held (or before the
  // cursor is shared).
  void read_ahead() {
    rocks_cursor_state& st = *state_;
    rocksdb::Iterator& it = *st.iterator;
    st.pos = 0;
    if (st.tag != 0) {
      if (st.reversed) st.copy_live_chunk<true>();
      else st.copy_live_chunk<false>();
    } else if (st.reversed) {
      st.copy_chunk<true>();
    } else {
      st.copy_chunk<false>();
    }
    if (!it.Valid()) {
      st.at_end = true;
      if (!it.status().ok()) st.pending = rocks_op_error(it.status(), "scan", handle_->path);
    }
    st.chunk = std::min(st.chunk * 2, rocks_cursor_state::max_chunk);
    st.valid = st.count != 0;
    if (!st.valid) st.error = std::move(st.pending);
  }
  void stop(keel::error e) {
    state_->valid = false;
    state_->error = std::move(e);
  }
  void release() noexcept {
    if (!state_ || !handle_) return;
    std::shared_lock lifecycle(handle_->lifecycle);
    {
      std::lock_guard live(handle_->live_mutex);
      handle_->live_cursors.erase(state_.get());
    }
    {
      std::lock_guard lock(state_->mutex);
      state_->iterator.reset();  // the DB is open (or the iterator is already gone)
    }
    if (ks_) {  // this cursor no longer reads its column family: destroy it if dropped
      std::unique_lock entry(ks_->mutex);
      ks_->cursors.fetch_sub(1, std::memory_order_acq_rel);
      if (handle_->db) ks_->destroy_if_unused(*handle_->db);
      ks_.reset();
    }
  }

  std::shared_ptr<const rocks_handle> handle_;  // null for a failed cursor
  std::shared_ptr<const void> snap_;            // keeps the snapshot a cursor reads alive
  std::unique_ptr<rocks_cursor_state> state_;
  std::shared_ptr<rocks_keyspace> ks_;  // the keyspace whose column family the iterator reads (null: default)
};

}  // namespace keel::detail
