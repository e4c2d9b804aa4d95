// keel benchmarks: the baselines keel is measured against.
//
// - map_store: a std::map behind a std::shared_mutex whose snapshot copies
//   the whole map. The obvious design, and the one keel's memory backend
//   replaces.
// - virtual_store: a virtual-interface wrapper over keel's stores (the
//   dynamic-dispatch design that basic_store / any_store avoid).
//
// Raw RocksDB calls are written out in bench.cpp itself.
#pragma once

#include <keel/keel.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

namespace keel_bench {

// ---------------------------------------------------------------------------
// std::map + std::shared_mutex, written the way it usually is.
// ---------------------------------------------------------------------------
class map_store {
 public:
  using map_type = std::map<std::string, std::string, std::less<>>;
  using snapshot_type = std::shared_ptr<const map_type>;  // a full copy

  std::optional<std::string> get(std::string_view key) const {
    std::shared_lock lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void put(std::string_view key, std::string_view value) {
    std::unique_lock lock(mutex_);
    map_.insert_or_assign(std::string(key), std::string(value));
  }
  void write(const keel::write_batch& batch) {
    std::unique_lock lock(mutex_);
    for (const auto& op : batch) {
      if (op.kind == keel::write_batch::op_kind::put)
        map_.insert_or_assign(std::string(op.key), std::string(op.value));
      else if (auto it = map_.find(op.key); it != map_.end())
        map_.erase(it);
    }
  }
  // Calls f(key, value) for every key in [lo, hi) under the reader lock.
  template <class F>
  void scan(std::string_view lo, std::string_view hi, F&& f) const {
    std::shared_lock lock(mutex_);
    for (auto it = map_.lower_bound(lo); it != map_.end() && std::string_view(it->first) < hi; ++it)
      f(std::string_view(it->first), std::string_view(it->second));
  }
  snapshot_type snapshot() const {
    std::shared_lock lock(mutex_);
    return std::make_shared<const map_type>(map_);
  }
  static std::optional<std::string> get(const snapshot_type& snap, std::string_view key) {
    auto it = snap->find(key);
    if (it == snap->end()) return std::nullopt;
    return it->second;
  }
  std::size_t size() const {
    std::shared_lock lock(mutex_);
    return map_.size();
  }

 private:
  mutable std::shared_mutex mutex_;
  map_type map_;
};

// ---------------------------------------------------------------------------
// The dynamic-dispatch design: abstract interfaces, heap-allocated cursors
// and snapshots, one implementation per backend.
// ---------------------------------------------------------------------------
class virtual_cursor {
 public:
  virtual ~virtual_cursor() = default;
  virtual bool valid() const = 0;
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  virtual void next() = 0;
};

class virtual_snapshot {
 public:
  virtual ~virtual_snapshot() = default;
  virtual keel::result<std::optional<std::string>> get(std::string_view key) const = 0;
  virtual std::unique_ptr<virtual_cursor> scan(const keel::key_range& range) const = 0;
};

class virtual_store {
 public:
  virtual ~virtual_store() = default;
  virtual keel::result<std::optional<std::string>> get(std::string_view key) const = 0;
  virtual keel::result<void> put(std::string_view key, std::string_view value) = 0;
  virtual keel::result<void> write(const keel::write_batch& batch) = 0;
  virtual std::unique_ptr<virtual_cursor> scan(const keel::key_range& range) const = 0;
  virtual std::unique_ptr<virtual_snapshot> snapshot() const = 0;
};

template <class Cursor>
class virtual_cursor_impl final : public virtual_cursor {
 public:
  explicit virtual_cursor_impl(Cursor c) : c_(std::move(c)) {}
  bool valid() const override { return c_.valid(); }
  std::string_view key() const override { return c_.current().key; }
  std::string_view value() const override { return c_.current().value; }
  void next() override { c_.advance(); }

 private:
  Cursor c_;
};

template <class Policy>
class virtual_snapshot_impl final : public virtual_snapshot {
 public:
  // Takes the snapshot in place (no moved-from snapshot to destroy: g++ 12
  // at -O1 warns, wrongly, that a moved-from one's variant may be
  // uninitialized, -Wmaybe-uninitialized).
  explicit virtual_snapshot_impl(const keel::basic_store<Policy>& store) : s_(store.snapshot()) {}
  keel::result<std::optional<std::string>> get(std::string_view key) const override { return s_.get(key); }
  std::unique_ptr<virtual_cursor> scan(const keel::key_range& range) const override {
    return std::make_unique<virtual_cursor_impl<typename keel::basic_snapshot<Policy>::cursor>>(s_.scan(range));
  }

 private:
  keel::basic_snapshot<Policy> s_;
};

// Wraps a store owned elsewhere (the benchmark's dataset).
template <class Policy>
class virtual_store_impl final : public virtual_store {
 public:
  explicit virtual_store_impl(keel::basic_store<Policy>* s) : s_(s) {}
  keel::result<std::optional<std::string>> get(std::string_view key) const override { return s_->get(key); }
  keel::result<void> put(std::string_view key, std::string_view value) override { return s_->put(key, value); }
  keel::result<void> write(const keel::write_batch& batch) override { return s_->write(batch); }
  std::unique_ptr<virtual_cursor> scan(const keel::key_range& range) const override {
    return std::make_unique<virtual_cursor_impl<typename keel::basic_store<Policy>::cursor>>(s_->scan(range));
  }
  std::unique_ptr<virtual_snapshot> snapshot() const override {
    return std::make_unique<virtual_snapshot_impl<Policy>>(*s_);
  }

 private:
  keel::basic_store<Policy>* s_;
};

// Out of line, so the compiler sees only the interface at the call sites.
[[gnu::noinline]] std::unique_ptr<virtual_store> make_virtual(keel::basic_store<keel::MemoryPolicy>* s);
[[gnu::noinline]] std::unique_ptr<virtual_store> make_virtual(keel::rocks_store* s);

}  // namespace keel_bench
