// keel: basic_any_store<Policies...>, a store whose backend is chosen at run
// time. It holds a std::variant<basic_store<Policies>...> and forwards every
// call with std::visit: no dynamic dispatch, no heap indirection. Needs no
// backend headers itself; see <keel/open_store.hpp> for store_config,
// open_store() and the fallback rules.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "detail/any_cursor.hpp"
#include "store.hpp"

namespace keel {

namespace detail {

// A cursor over whichever backend is live.
template <class... Policies>
using variant_cursor = any_cursor<typename Policies::cursor_type...>;
// A transaction's cursor over whichever backend is live.
template <class... Policies>
using variant_tx_cursor = any_cursor<tx_cursor<typename Policies::cursor_type>...>;

}  // namespace detail

// One attempt to open a backend, kept by open_store() and by the store.
struct open_attempt {
  keel::backend backend;
  std::optional<keel::error> error;  // empty: this attempt opened the store
};

// A point-in-time view of a basic_any_store (see basic_snapshot).
template <class... Policies>
class basic_any_snapshot {
 public:
  using cursor = basic_cursor<detail::variant_cursor<Policies...>>;

  template <class P>
  explicit basic_any_snapshot(basic_snapshot<P> s) : snapshot_(std::move(s)) {}

  result<std::optional<std::string>> get(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.get(key); }, snapshot_);
  }
  result<bool> contains(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.contains(key); }, snapshot_);
  }
  cursor scan(const key_range& range = key_range::all()) const {
    return std::visit(
        [&](const auto& s) { return cursor(detail::variant_cursor<Policies...>(s.scan_impl(range)), s.counters()); },
                      snapshot_);
  }
  bool valid() const noexcept {
    return std::visit([](const auto& s) { return s.valid(); }, snapshot_);
  }

 private:
  std::variant<basic_snapshot<Policies>...> snapshot_;
};

// A transaction of a basic_any_store (see basic_transaction).
template <class... Policies>
class basic_any_transaction {
 public:
  using cursor = basic_cursor<detail::variant_tx_cursor<Policies...>>;

  template <class P>
  explicit basic_any_transaction(basic_transaction<P> tx) : tx_(std::move(tx)) {}

  result<std::optional<std::string>> get(std::string_view key) {
    return std::visit([&](auto& t) { return t.get(key); }, tx_);
  }
  result<bool> contains(std::string_view key) {
    return std::visit([&](auto& t) { return t.contains(key); }, tx_);
  }
  cursor scan(const key_range& range = key_range::all()) {
    return std::visit(
        [&](auto& t) { return cursor(detail::variant_tx_cursor<Policies...>(t.scan_impl(range)), t.counters()); },
        tx_);
  }
  result<void> put(std::string_view key, std::string_view value) {
    return std::visit([&](auto& t) { return t.put(key, value); }, tx_);
  }
  result<void> erase(std::string_view key) {
    return std::visit([&](auto& t) { return t.erase(key); }, tx_);
  }
  result<void> erase_range(const key_range& range) {
    return std::visit([&](auto& t) { return t.erase_range(range); }, tx_);
  }
  result<void> commit() {
    return std::visit([](auto& t) { return t.commit(); }, tx_);
  }
  void rollback() noexcept {
    std::visit([](auto& t) { t.rollback(); }, tx_);
  }
  bool is_active() const noexcept {
    return std::visit([](const auto& t) { return t.is_active(); }, tx_);
  }

 private:
  std::variant<basic_transaction<Policies>...> tx_;
};

// ---------------------------------------------------------------------------
// basic_any_store: every basic_store operation, with the same contracts
// (thread safety, close, cursors, snapshots), on the backend chosen at run
// time; plus backend(), fallback_reason() and attempts().
// ---------------------------------------------------------------------------
template <class... Policies>
class basic_any_store {
  static_assert(sizeof...(Policies) > 0);

 public:
  using cursor = basic_cursor<detail::variant_cursor<Policies...>>;
  using snapshot_type = basic_any_snapshot<Policies...>;
  using transaction_type = basic_any_transaction<Policies...>;

  // Wraps an open store. `attempts` records how it was chosen (open_store
  // fills it); a fallback is an open whose earlier attempts failed.
  template <class P>
  explicit basic_any_store(basic_store<P>&& store, std::vector<open_attempt> attempts = {})
      : store_(std::move(store)), attempts_(std::move(attempts)) {
    if (attempts_.empty()) attempts_.push_back({P::backend_kind, std::nullopt});
  }

  result<void> put(std::string_view key, std::string_view value) {
    return std::visit([&](auto& s) { return s.put(key, value); }, store_);
  }
  result<std::optional<std::string>> get(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.get(key); }, store_);
  }
  result<bool> contains(std::string_view key) const {
    return std::visit([&](const auto& s) { return s.contains(key); }, store_);
  }
  result<void> erase(std::string_view key) {
    return std::visit([&](auto& s) { return s.erase(key); }, store_);
  }
  result<void> write(const write_batch& batch) {
    return std::visit([&](auto& s) { return s.write(batch); }, store_);
  }
  cursor scan(const key_range& range = key_range::all()) const {
    return std::visit(
        [&](const auto& s) { return cursor(detail::variant_cursor<Policies...>(s.scan_impl(range)), s.counters()); },
                      store_);
  }
  snapshot_type snapshot() const {
    return std::visit([](const auto& s) { return snapshot_type(s.snapshot()); }, store_);
  }
  result<void> erase_range(const key_range& range) {
    return std::visit([&](auto& s) { return s.erase_range(range); }, store_);
  }
  template <std::ranges::input_range Keys>
    requires std::convertible_to<std::ranges::range_reference_t<Keys>, std::string_view>
  result<std::vector<std::optional<std::string>>> multi_get(const Keys& keys) const {
    return std::visit([&](const auto& s) { return s.multi_get(keys); }, store_);
  }
  result<std::vector<std::optional<std::string>>> multi_get(std::initializer_list<std::string_view> keys) const {
    return multi_get(std::span<const std::string_view>(keys.begin(), keys.size()));
  }
  result<void> compact(const key_range& range = key_range::all()) {
    return std::visit([&](auto& s) { return s.compact(range); }, store_);
  }
  result<void> checkpoint(const std::filesystem::path& path) const {
    return std::visit([&](const auto& s) { return s.checkpoint(path); }, store_);
  }
  transaction_type transaction() {
    return std::visit([](auto& s) { return transaction_type(s.transaction()); }, store_);
  }
  // See basic_store::run_transaction; fn takes a transaction_type&.
  template <class F>
  auto run_transaction(F&& fn, int max_attempts = 16) -> detail::transaction_fn_result_t<F, transaction_type> {
    return detail::run_transaction([this] { return transaction(); }, fn, max_attempts);
  }
  result<void> close() {
    return std::visit([](auto& s) { return s.close(); }, store_);
  }
  bool is_open() const noexcept {
    return std::visit([](const auto& s) { return s.is_open(); }, store_);
  }

  // The backend in use.
  keel::backend backend() const noexcept {
    return std::visit([](const auto& s) { return std::decay_t<decltype(s)>::policy_type::backend_kind; }, store_);
  }
  // The error that made open_store() fall back to this backend; empty when
  // the preferred backend opened.
  const std::optional<keel::error>& fallback_reason() const noexcept {
    static const std::optional<keel::error> none;
    return attempts_.size() > 1 ? attempts_.front().error : none;
  }
  // Every backend tried, in order; the last one is the one in use.
  const std::vector<open_attempt>& attempts() const noexcept { return attempts_; }

  // The store itself, when it is a basic_store<P> (nullptr otherwise).
  template <class P>
  basic_store<P>* get_if() noexcept {
    return std::get_if<basic_store<P>>(&store_);
  }
  template <class P>
  const basic_store<P>* get_if() const noexcept {
    return std::get_if<basic_store<P>>(&store_);
  }

  // The live store's flush() (see basic_store::flush()).
  result<void> flush() {
    return std::visit([](auto& s) { return s.flush(); }, store_);
  }
  // The live store's stats() (see store_stats).
  result<store_stats> stats() const {
    return std::visit([](const auto& s) { return s.stats(); }, store_);
  }

 private:
  std::variant<basic_store<Policies>...> store_;
  std::vector<open_attempt> attempts_;
};

}  // namespace keel
