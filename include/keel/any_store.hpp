// keel: basic_any_store<Policies...>, a store whose backend is chosen at run
// time. It holds a std::variant<basic_store<Policies>...> and forwards every
// call with std::visit: no dynamic dispatch, no heap indirection. Needs no
// backend headers itself; see <keel/open_store.hpp> for store_config,
// open_store() and the fallback rules.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "store.hpp"

namespace keel {

namespace detail {

// Calls f on the live alternative of v: a chain of index comparisons that the
// compiler inlines, where std::visit (libstdc++ 12) calls through a table of
// function pointers. v must not be valueless.
template <std::size_t I = 0, class F, class V>
inline decltype(auto) visit_inline(F&& f, V& v) {
  if constexpr (I + 1 < std::variant_size_v<std::remove_const_t<V>>) {
    if (v.index() != I) return visit_inline<I + 1>(std::forward<F>(f), v);
  }
  auto* p = std::get_if<I>(&v);
  if (!p) __builtin_unreachable();  // checked above, or the only index left
  return f(*p);
}

// A cursor over whichever backend is live; satisfies store_cursor.
template <class... Policies>
class variant_cursor {
  // Moves cannot throw, so the variant is never valueless (visit_inline).
  static_assert((std::is_nothrow_move_constructible_v<typename Policies::cursor_type> && ...));

 public:
  template <class C>
  explicit variant_cursor(C&& c) : cursor_(std::forward<C>(c)) {}

  bool valid() const {
    return visit_inline([](const auto& c) { return c.valid(); }, cursor_);
  }
  std::string_view key() const {
    return visit_inline([](const auto& c) { return std::string_view(c.key()); }, cursor_);
  }
  std::string_view value() const {
    return visit_inline([](const auto& c) { return std::string_view(c.value()); }, cursor_);
  }
  void next() {
    visit_inline([](auto& c) { c.next(); }, cursor_);
  }
  const std::optional<keel::error>& error() const {
    return visit_inline([](const auto& c) -> const std::optional<keel::error>& { return c.error(); }, cursor_);
  }

 private:
  std::variant<typename Policies::cursor_type...> cursor_;
};

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
