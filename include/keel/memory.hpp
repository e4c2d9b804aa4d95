// keel: the in-memory backend, MemoryPolicy. Needs no RocksDB headers.
//
//   auto store = keel::memory_store::open({});
//
// The data lives in a persistent (copy-on-write) B+tree: every write publishes
// a new version of the tree that shares all untouched nodes with the previous
// one. Hence:
// - snapshot() and scan() cost O(1): they hold a reference to the current
//   version, never a copy of the map;
// - readers never block writers and never block each other: a read takes a
//   reference to the current version (a few nanoseconds under a spin lock)
//   and then runs without any lock;
// - writers are serialised among themselves; a write costs O(log n) node
//   copies (fan-out 32), and a batch is published as one version, so readers
//   see it whole or not at all.
// Nothing is persisted: closing a memory store drops its data.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "detail/persistent_btree.hpp"
#include "store.hpp"

namespace keel {

struct memory_options {
  // Nothing to configure yet; the struct exists so that memory and RocksDB
  // stores open the same way (store_type::open(options)).
};

namespace detail {

// A tiny lock for a critical section of a few instructions (copying a tree
// handle). Spins briefly, then yields.
class spin_lock {
 public:
  void lock() noexcept {
    for (int spins = 0; flag_.exchange(true, std::memory_order_acquire); ++spins) {
      while (flag_.load(std::memory_order_relaxed)) {
        if (++spins > 64) std::this_thread::yield();
      }
    }
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

}  // namespace detail

// ---------------------------------------------------------------------------
// MemoryPolicy: the in-memory backend. See store.hpp for the contract.
// Thread safety: every member may be called concurrently, close() included.
// Keys and values up to 4 GiB - 1 bytes each (larger: invalid_argument).
// ---------------------------------------------------------------------------
class MemoryPolicy : public std::enable_shared_from_this<MemoryPolicy> {
  using tree = detail::persistent_btree;

 public:
  using options = memory_options;
  static constexpr keel::backend backend_kind = keel::backend::memory;

  // ---- cursor -------------------------------------------------------------
  class cursor_type {
   public:
    bool valid() const noexcept { return valid_; }
    std::string_view key() const noexcept { return it_->key(); }
    std::string_view value() const noexcept { return it_->value(); }
    const std::optional<keel::error>& error() const noexcept { return error_; }

    void next() {
      if (!valid_) return;
      if (!owner_->is_open()) {
        valid_ = false;
        error_ = closed_error();
        return;
      }
      if (reversed_)
        it_->prev();
      else
        it_->next();
      settle();
    }

   private:
    friend class MemoryPolicy;
    explicit cursor_type(keel::error e) : error_(std::move(e)) {}
    cursor_type(std::shared_ptr<const MemoryPolicy> owner, tree version, const key_range& range)
        : owner_(std::move(owner)), reversed_(range.is_reversed()) {
      if (range.is_empty()) return;
      it_.emplace(std::move(version));
      if (!reversed_) {
        if (range.lower())
          it_->seek(*range.lower());
        else
          it_->seek_first();
        if (range.upper()) bound_ = *range.upper();
      } else {
        if (range.upper())
          it_->seek_before(*range.upper());
        else
          it_->seek_last();
        if (range.lower()) bound_ = *range.lower();
      }
      settle();
    }
    // valid_ = the iterator is on an entry inside the range.
    void settle() {
      valid_ = it_->valid() && (!bound_ || (reversed_ ? it_->key() >= std::string_view(*bound_)
                                                      : it_->key() < std::string_view(*bound_)));
    }

    std::shared_ptr<const MemoryPolicy> owner_;
    std::optional<tree::cursor> it_;
    std::optional<std::string> bound_;  // the range's far end: upper (forward) or lower (reversed)
    bool reversed_ = false;
    bool valid_ = false;
    std::optional<keel::error> error_;
  };

  // ---- snapshot -----------------------------------------------------------
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return lookup(version_, key);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return version_.find(key) != nullptr;
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, version_, range);
    }

   private:
    friend class MemoryPolicy;
    snapshot_type(std::shared_ptr<const MemoryPolicy> owner, tree version)
        : owner_(std::move(owner)), version_(std::move(version)) {}
    std::shared_ptr<const MemoryPolicy> owner_;
    tree version_;
  };

  // ---- store --------------------------------------------------------------
  static result<std::shared_ptr<MemoryPolicy>> open(const options&) { return std::make_shared<MemoryPolicy>(); }

  result<void> put(std::string_view key, std::string_view value) {
    if (auto bad = check_sizes(key, value)) return *bad;
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    publish(current().with(key, value));
    return {};
  }

  result<std::optional<std::string>> get(std::string_view key) const {
    if (!is_open()) return closed_error();
    return lookup(current(), key);
  }

  result<bool> contains(std::string_view key) const {
    if (!is_open()) return closed_error();
    return current().find(key) != nullptr;
  }

  result<void> erase(std::string_view key) {
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    tree now = current();
    if (now.find(key)) publish(now.without(key));
    return {};
  }

  result<void> write(const write_batch& batch) {
    for (const auto& op : batch) {
      if (auto bad = check_sizes(op.key, op.value)) return *bad;
    }
    std::lock_guard writer(write_mutex_);
    if (!is_open()) return closed_error();
    tree::transient edit(current());
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::put)
        edit.insert_or_assign(op.key, op.value);
      else
        edit.erase(op.key);
    }
    publish(std::move(edit).persist());
    return {};
  }

  cursor_type scan(const key_range& range) const {
    if (!is_open()) return cursor_type(closed_error());
    return cursor_type(shared_from_this(), current(), range);
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    if (!is_open()) return closed_error();
    return snapshot_type(shared_from_this(), current());
  }

  // Drops the data. Snapshots and cursors still alive give errc::closed.
  result<void> close() {
    std::lock_guard writer(write_mutex_);
    open_.store(false, std::memory_order_release);
    publish(tree());
    return {};
  }

  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  // Number of keys, exact.
  std::size_t size() const { return current().size(); }
  // Bytes held by the entries (keys, values, per-entry header); O(n).
  std::size_t memory_bytes() const { return current().memory_bytes(); }

 private:
  static std::optional<keel::error> check_sizes(std::string_view key, std::string_view value) {
    constexpr std::size_t limit = std::numeric_limits<std::uint32_t>::max();
    if (key.size() > limit || value.size() > limit) {
      return keel::error(errc::invalid_argument, "memory store: keys and values are limited to 4 GiB - 1 bytes");
    }
    return std::nullopt;
  }
  static result<std::optional<std::string>> lookup(const tree& version, std::string_view key) {
    if (const auto* e = version.find(key)) return std::optional<std::string>(std::in_place, e->value());
    return std::optional<std::string>();
  }
  tree current() const {
    std::lock_guard lock(root_lock_);
    return root_;
  }
  // Called with write_mutex_ held. The old version is released outside the
  // spin lock (releasing may free nodes).
  void publish(tree next) {
    {
      std::lock_guard lock(root_lock_);
      std::swap(root_, next);
    }
  }

  std::mutex write_mutex_;  // serialises writers
  mutable detail::spin_lock root_lock_;
  tree root_;
  std::atomic<bool> open_{true};
};

static_assert(store_policy<MemoryPolicy>);

// What basic_store::stats() asks of the backend: exact key count and bytes.
inline result<void> backend_stats(const MemoryPolicy& p, store_stats& s) {
  s.keys = p.size();
  s.keys_exact = true;
  s.size_bytes = p.memory_bytes();
  return {};
}

}  // namespace keel
