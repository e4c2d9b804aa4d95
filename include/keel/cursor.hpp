// keel: basic_cursor<CursorImpl>, a backend's cursor as a single-pass range
// that counts what it hands out into its store's stats. Needs no backend
// headers.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "contract.hpp"
#include "stats.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// basic_cursor: a cursor as a range.
//
//   auto cursor = store.scan(key_range::prefix("user/"));
//   for (const auto& e : cursor) use(e.key, e.value);
//   if (cursor.error()) report(*cursor.error());
//
// An entry's views are valid until the next step. A cursor reads one
// consistent view as of its creation: later writes are not seen, a batch is
// seen whole or not at all. One cursor is used by one thread at a time;
// different cursors may be used from different threads. A cursor may outlive
// its store: after close() it stops and error() is errc::closed.
// The entries it hands out are added to its store's stats() (cursor_entries,
// bytes_read) when the pass ends or the cursor is destroyed.
// ---------------------------------------------------------------------------
template <class CursorImpl>
class basic_cursor {
  // A run_cursor is walked a run at a time (fill()): a step is then an index
  // increment and a load of the store's open flag, with no call into the
  // backend's cursor until the run is used up.
  static constexpr bool walks_runs = run_cursor<CursorImpl>;
  static constexpr std::size_t run_size = 32;

 public:
  using entry = cursor_entry;

  // `counters`: where the entries read are reported (none: not counted).
  explicit basic_cursor(CursorImpl impl, std::shared_ptr<op_counters> counters = {})
      : impl_(std::move(impl)), counters_(std::move(counters)) {
    if constexpr (walks_runs) refill();
    load();
  }
  basic_cursor(basic_cursor&&) noexcept = default;
  basic_cursor& operator=(basic_cursor&& other) noexcept {
    if (this != &other) {
      report();
      impl_ = std::move(other.impl_);
      current_ = other.current_;
      run_ = other.run_;
      pos_ = other.pos_;
      count_ = other.count_;
      open_ = other.open_;
      stopped_ = std::move(other.stopped_);
      counters_ = std::move(other.counters_);
      entries_ = std::exchange(other.entries_, 0);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  ~basic_cursor() { report(); }

  class iterator {
   public:
    using value_type = entry;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    const entry& operator*() const noexcept { return cursor_->current(); }
    const entry* operator->() const noexcept { return &cursor_->current(); }
    iterator& operator++() {
      cursor_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cursor_->valid(); }

   private:
    friend class basic_cursor;
    explicit iterator(basic_cursor* c) : cursor_(c) {}
    basic_cursor* cursor_ = nullptr;
  };

  // Iteration continues from the cursor's current position: a cursor is a
  // single-pass range.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

  bool valid() const {
    if constexpr (walks_runs) return pos_ < count_;
    else return impl_.valid();
  }
  // Precondition valid().
  const entry& current() const noexcept {
    if constexpr (walks_runs) return run_[pos_];
    else return current_;
  }
  void advance() {
    if constexpr (walks_runs) {
      if (pos_ >= count_) return;
      ++pos_;
      if (!open_->load(std::memory_order_acquire)) {   // closed: this step stops, as next() would
        pos_ = count_ = 0;
        stopped_ = closed_error();
      } else if (pos_ == count_) {
        refill();
      }
    } else {
      impl_.next();
    }
    load();
  }
  // Set when the pass stopped before the end of its range (closed, I/O error).
  const std::optional<keel::error>& error() const {
    if (stopped_) return stopped_;
    return impl_.error();
  }

 private:
  void refill() {
    pos_ = count_ = 0;   // if fill() throws, the cursor is past its end
    count_ = impl_.fill(std::span<entry>(run_));
    if (count_ != 0) open_ = &impl_.open_flag();
  }
  void load() {
    if (valid()) {
      if constexpr (!walks_runs) current_ = {impl_.key(), impl_.value()};
      const entry& e = current();
      ++entries_;
      bytes_ += e.key.size() + e.value.size();
    } else {
      report();
    }
  }
  // Hands the counts so far to the store's counters (once per pass, not per step).
  void report() noexcept {
    if (counters_ && entries_ != 0) counters_->add(op_counters::cursor_entries, op_counters::bytes_read, entries_, bytes_);
    entries_ = bytes_ = 0;
  }
  CursorImpl impl_;
  entry current_{};                       // cursors walked step by step: the current entry
  std::array<entry, walks_runs ? run_size : 0> run_{};  // cursors walked by runs: the run
  std::size_t pos_ = 0, count_ = 0;       // the current entry in run_, and how many it holds
  const std::atomic<bool>* open_ = nullptr;
  std::optional<keel::error> stopped_;    // set when close() stopped the pass inside a run
  std::shared_ptr<op_counters> counters_;
  std::uint64_t entries_ = 0, bytes_ = 0;
};

}  // namespace keel
