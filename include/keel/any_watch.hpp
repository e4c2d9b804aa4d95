// keel: basic_any_watch<Policies...>, the watch of a basic_any_store or of
// one of its keyspaces (basic_any_store::watch, basic_any_keyspace::watch):
// a std::variant of basic_watch<P> for those P of Policies that have watch
// (keel::watch_policy), after std::monostate (an empty handle). Forwards
// next() with std::visit: no dynamic dispatch. Needs no backend headers.
//
// A backend without watch (PostgreSQL for now) never gives an empty watch:
// store.watch() and ks.watch() give errc::not_supported naming the backend
// (detail::watch_not_supported), and store.last_seq() is 0 there.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "contract.hpp"
#include "error.hpp"
#include "watch.hpp"

namespace keel {

namespace detail {

// The std::variant of basic_watch<P> for those P of Policies that have watch
// (watch_policy), after std::monostate.
template <class Variant, class... Policies>
struct watch_variant_of {
  using type = Variant;
};
template <class... Done, class P, class... Rest>
struct watch_variant_of<std::variant<Done...>, P, Rest...> {
  using type = typename watch_variant_of<
      std::conditional_t<watch_policy<P>, std::variant<Done..., basic_watch<P>>, std::variant<Done...>>,
      Rest...>::type;
};

// What a basic_any_store's watch calls give on a backend without watch.
inline keel::error watch_not_supported(backend b, std::string_view what) {
  return keel::error(errc::not_supported, std::string("the ") + std::string(to_string(b)) +
                                              " backend has no watch (" + std::string(what) +
                                              "): its changes cannot be followed");
}

}  // namespace detail

// ---------------------------------------------------------------------------
// basic_any_watch: one subscription to a basic_any_store's changes (see
// basic_watch: the same next(), contracts and errors), over the watch of the
// backend chosen at run time. Movable, not copyable. One thread at a time
// (as basic_watch). A default-constructed watch is empty: next() gives
// errc::closed.
// ---------------------------------------------------------------------------
template <class... Policies>
class basic_any_watch {
 public:
  using variant_type = typename detail::watch_variant_of<std::variant<std::monostate>, Policies...>::type;

  basic_any_watch() = default;
  template <class P>
  explicit basic_any_watch(basic_watch<P> w) : w_(std::in_place_type<basic_watch<P>>, std::move(w)) {}
  basic_any_watch(basic_any_watch&&) noexcept = default;
  basic_any_watch& operator=(basic_any_watch&&) noexcept = default;
  basic_any_watch(const basic_any_watch&) = delete;
  basic_any_watch& operator=(const basic_any_watch&) = delete;

  // The next change, waiting up to about `timeout` (see basic_watch::next).
  result<std::optional<change>> next(std::chrono::milliseconds timeout) {
    return std::visit(
        [&](auto& w) -> result<std::optional<change>> {
          if constexpr (std::is_same_v<std::decay_t<decltype(w)>, std::monostate>) {
            return closed_error("watch (empty)");
          } else {
            return w.next(timeout);
          }
        },
        w_);
  }

  // Whether it is a watch (false: default-constructed).
  explicit operator bool() const noexcept { return !std::holds_alternative<std::monostate>(w_); }
  // The backend's watch, when the store is a basic_store<P> (nullptr otherwise).
  template <class P>
  basic_watch<P>* get_if() noexcept {
    if constexpr (watch_policy<P>) {
      return std::get_if<basic_watch<P>>(&w_);
    } else {
      return nullptr;
    }
  }

 private:
  variant_type w_;
};

}  // namespace keel
