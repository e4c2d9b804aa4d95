// keel::detail::any_cursor<Cursors...>: a cursor over whichever of Cursors
// is live (a std::variant, no dynamic dispatch), used by basic_any_store
// (any_store.hpp) and by the hybrid store (hybrid/policy.hpp), whose cursor
// is its current tier's. Needs no backend headers.
//
// It satisfies run_cursor (contract.hpp), so basic_cursor walks it a run at a
// time with one dispatch per run: a dispatch per step costs about a fifth of
// a memory store's step. A live cursor that is a run_cursor itself fills the
// run; any other gives runs of one entry (its current one, stepped past at
// the next fill()), so its views stay valid as long as the contract asks.
// Walk it either by fill() or by next(), not both. Thread safety: that of the
// cursor it holds (one thread at a time).
#pragma once

#include <atomic>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "../contract.hpp"

namespace keel::detail {

template <class... Cursors>
class any_cursor {
 public:
  // The live cursor is `c` (its type must be one of Cursors, once).
  template <class C>
  explicit any_cursor(C&& c) : cursor_(std::forward<C>(c)) {}
  // The live cursor is the I-th of Cursors (for Cursors that repeat a type).
  template <std::size_t I, class C>
  any_cursor(std::in_place_index_t<I> index, C&& c) : cursor_(index, std::forward<C>(c)) {}

  bool valid() const {
    return std::visit([](const auto& c) { return c.valid(); }, cursor_);
  }
  std::string_view key() const {
    return std::visit([](const auto& c) { return std::string_view(c.key()); }, cursor_);
  }
  std::string_view value() const {
    return std::visit([](const auto& c) { return std::string_view(c.value()); }, cursor_);
  }
  void next() {
    std::visit([](auto& c) { c.next(); }, cursor_);
  }
  const std::optional<keel::error>& error() const {
    return std::visit([](const auto& c) -> const std::optional<keel::error>& { return c.error(); }, cursor_);
  }

  // The deadline_cursor members (contract.hpp), of the live cursor when it
  // has them; a cursor without them holds no deadline.
  bool holds_deadlines() const {
    return std::visit(
        [](const auto& c) {
          if constexpr (deadline_cursor<std::remove_cvref_t<decltype(c)>>) return c.holds_deadlines();
          else return false;
        },
        cursor_);
  }
  std::optional<deadline_ms> deadline() const {
    return std::visit(
        [](const auto& c) -> std::optional<deadline_ms> {
          if constexpr (deadline_cursor<std::remove_cvref_t<decltype(c)>>) return c.deadline();
          else return std::nullopt;
        },
        cursor_);
  }

  std::size_t fill(std::span<cursor_entry> out) {
    return std::visit(
        [&](auto& c) -> std::size_t {
          if constexpr (run_cursor<std::remove_cvref_t<decltype(c)>>) {
            const std::size_t n = c.fill(out);
            if (n != 0) open_ = &c.open_flag();
            return n;
          } else {
            if (stepped_over_) c.next();
            stepped_over_ = false;
            if (out.empty() || !c.valid()) return 0;
            out[0] = {c.key(), c.value()};
            stepped_over_ = true;
            open_ = &never_closed();   // a run of one has no step inside it to stop
            return 1;
          }
        },
        cursor_);
  }
  const std::atomic<bool>& open_flag() const noexcept { return *open_; }

 private:
  static const std::atomic<bool>& never_closed() noexcept {
    static const std::atomic<bool> open{true};
    return open;
  }

  std::variant<Cursors...> cursor_;
  bool stepped_over_ = false;   // the entry last handed out by a cursor without runs
  const std::atomic<bool>* open_ = &never_closed();
};

}  // namespace keel::detail
