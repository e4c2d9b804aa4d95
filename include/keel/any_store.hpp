// keel: basic_any_store<Policies...>, a store whose backend is chosen at run
// time. It holds a std::variant<basic_store<Policies>...> and forwards every
// call with std::visit: no dynamic dispatch, no heap indirection. Needs no
// backend headers itself; see <keel/open_store.hpp> for store_config,
// open_store() and the fallback rules.
//
// Expiry (expiry.hpp) is forwarded by concept, not per backend: on an
// alternative whose policy is a keel::expiry_policy, put(k, v, put_options)
// and expiry(k) (store, keyspace handle, transaction) are the backend's; on
// any other, a put with a ttl and expiry() give errc::not_supported ("the
// <backend> backend has no expiry") and write nothing, and a put_options
// without ttl is a plain put. A ttl of zero or less is invalid_argument on
// every alternative. has_expiry() says which it is.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "any_watch.hpp"
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

namespace detail {

// The std::variant of basic_keyspace<P> for those P of Policies that have
// keyspaces (keyspace_policy), after std::monostate (an empty handle).
template <class Variant, class... Policies>
struct keyspace_variant_of {
  using type = Variant;
};
template <class... Done, class P, class... Rest>
struct keyspace_variant_of<std::variant<Done...>, P, Rest...> {
  using type = typename keyspace_variant_of<
      std::conditional_t<keyspace_policy<P>, std::variant<Done..., basic_keyspace<P>>, std::variant<Done...>>,
      Rest...>::type;
};

// The policy of a basic_keyspace<P>.
template <class K>
struct keyspace_policy_of;
template <class P>
struct keyspace_policy_of<basic_keyspace<P>> {
  using type = P;
};

// The policy of a basic_transaction<P>.
template <class T>
struct transaction_policy;
template <class P>
struct transaction_policy<basic_transaction<P>> {
  using type = P;
};

// What expiry calls (a put with a ttl, expiry()) give on a backend without
// expiry; `what` names the call.
inline keel::error expiry_not_supported(backend b, std::string_view what) {
  return keel::error(errc::not_supported, std::string("the ") + std::string(to_string(b)) +
                                              " backend has no expiry (ttl) yet (" + std::string(what) + ")");
}

// A put with `options` on a backend without expiry: nullopt when it is a
// plain put (no ttl), else its error (invalid_argument for a bad ttl, as on
// every backend; else not_supported).
inline std::optional<keel::error> put_options_refused(backend b, const put_options& options) {
  if (!options.ttl) return std::nullopt;
  if (auto bad = ttl_error(*options.ttl)) return bad;
  return expiry_not_supported(b, "put with a ttl; nothing was written");
}

// What a basic_any_store's keyspace calls give on a backend without keyspaces.
inline keel::error keyspaces_not_supported(backend b, std::string_view what) {
  return keel::error(errc::not_supported, std::string("the ") + std::string(to_string(b)) +
                                              " backend has no keyspaces yet (" + std::string(what) + ")");
}

}  // namespace detail

// ---------------------------------------------------------------------------
// basic_any_keyspace: a handle to one keyspace of a basic_any_store (see
// basic_keyspace: the same calls, contracts and errors), for the backend
// chosen at run time. A std::variant of the live backend's basic_keyspace,
// no dynamic dispatch. Cheap to copy; thread-safe as basic_keyspace. A
// default-constructed handle is empty: every call gives errc::closed.
// ---------------------------------------------------------------------------
template <class... Policies>
class basic_any_keyspace {
 public:
  using cursor = basic_cursor<detail::variant_cursor<Policies...>>;
  using variant_type = typename detail::keyspace_variant_of<std::variant<std::monostate>, Policies...>::type;

  basic_any_keyspace() = default;
  // Wraps a backend's handle; `counters`: its store's (for the cursors' counts).
  template <class P>
  basic_any_keyspace(basic_keyspace<P> ks, std::shared_ptr<op_counters> counters)
      : ks_(std::move(ks)), counters_(std::move(counters)) {}

  // Its name ("" for the default keyspace; "" too for an empty handle).
  const std::string& name() const noexcept {
    static const std::string none;
    return std::visit(
        [](const auto& k) -> const std::string& {
          if constexpr (std::is_same_v<std::decay_t<decltype(k)>, std::monostate>) {
            return none;
          } else {
            return k.name();
          }
        },
        ks_);
  }
  // For write_batch::put(ks, k, v) and friends (a batch goes to the store).
  operator keyspace_name() const noexcept { return keyspace_name(name()); }  // NOLINT: meant to convert
  // Whether it is a handle (false: default-constructed).
  explicit operator bool() const noexcept { return !std::holds_alternative<std::monostate>(ks_); }

  result<void> put(std::string_view key, std::string_view value) {
    return visit<result<void>>(*this, [&](auto& k) { return k.put(key, value); });
  }
  // With options (expiry.hpp), as basic_keyspace::put; on a backend without
  // expiry a ttl is errc::not_supported and nothing is written, no ttl a
  // plain put.
  result<void> put(std::string_view key, std::string_view value, const put_options& options) {
    return visit<result<void>>(*this, [&](auto& k) -> result<void> {
      using P = typename detail::keyspace_policy_of<std::decay_t<decltype(k)>>::type;
      if constexpr (expiry_policy<P>) {
        return k.put(key, value, options);
      } else {
        if (auto refused = detail::put_options_refused(P::backend_kind, options)) return *refused;
        return k.put(key, value);
      }
    });
  }
  // Whether key is present now and its deadline (basic_keyspace::expiry); a
  // backend without expiry: errc::not_supported.
  result<key_expiry> expiry(std::string_view key) const {
    return visit<result<key_expiry>>(*this, [&](const auto& k) -> result<key_expiry> {
      using P = typename detail::keyspace_policy_of<std::decay_t<decltype(k)>>::type;
      if constexpr (expiry_policy<P>) {
        return k.expiry(key);
      } else {
        return detail::expiry_not_supported(P::backend_kind, "keyspace expiry");
      }
    });
  }
  result<std::optional<std::string>> get(std::string_view key) const {
    return visit<result<std::optional<std::string>>>(*this, [&](const auto& k) { return k.get(key); });
  }
  result<bool> contains(std::string_view key) const {
    return visit<result<bool>>(*this, [&](const auto& k) { return k.contains(key); });
  }
  result<void> erase(std::string_view key) {
    return visit<result<void>>(*this, [&](auto& k) { return k.erase(key); });
  }
  result<void> erase_range(const key_range& range) {
    return visit<result<void>>(*this, [&](auto& k) { return k.erase_range(range); });
  }
  template <std::ranges::input_range Keys>
    requires std::convertible_to<std::ranges::range_reference_t<Keys>, std::string_view>
  result<std::vector<std::optional<std::string>>> multi_get(const Keys& keys) const {
    return visit<result<std::vector<std::optional<std::string>>>>(*this,
                                                               [&](const auto& k) { return k.multi_get(keys); });
  }
  result<std::vector<std::optional<std::string>>> multi_get(std::initializer_list<std::string_view> keys) const {
    return multi_get(std::span<const std::string_view>(keys.begin(), keys.size()));
  }
  cursor scan(const key_range& range = key_range::all()) const {
    return std::visit(
        [&](const auto& k) {
          if constexpr (std::is_same_v<std::decay_t<decltype(k)>, std::monostate>) {
            return cursor(empty_cursor(), counters_);
          } else {
            return cursor(detail::variant_cursor<Policies...>(k.scan_impl(range)), counters_);
          }
        },
        ks_);
  }
  result<void> compact(const key_range& range = key_range::all()) {
    return visit<result<void>>(*this, [&](auto& k) { return k.compact(range); });
  }
  // Watch of this keyspace (see basic_keyspace::watch); a backend without
  // watch: errc::not_supported.
  result<basic_any_watch<Policies...>> watch(const key_range& range = key_range::all(),
                                             const watch_options& options = {}) const {
    using R = result<basic_any_watch<Policies...>>;
    return visit<R>(*this, [&](const auto& k) -> R {
      using P = typename detail::keyspace_policy_of<std::decay_t<decltype(k)>>::type;
      if constexpr (watch_policy<P>) {
        auto w = k.watch(range, options);
        if (!w) return std::move(w).error();
        return basic_any_watch<Policies...>(std::move(*w));
      } else {
        return detail::watch_not_supported(P::backend_kind, "keyspace watch");
      }
    });
  }

  // The backend's handle, when the store is a basic_store<P> (nullptr otherwise).
  template <class P>
  const basic_keyspace<P>* get_if() const noexcept {
    return std::get_if<basic_keyspace<P>>(&ks_);
  }
  const variant_type& handle() const noexcept { return ks_; }
  // The backend's handle for a view of a basic_store<P> (a snapshot, a
  // transaction; `what` names it in errors): a pointer, or the error (an
  // empty handle: closed; another backend's: invalid_argument; P without
  // keyspaces: not_supported).
  template <class P>
  auto resolve(std::string_view what) const {
    if constexpr (keyspace_policy<P>) {
      using R = result<const basic_keyspace<P>*>;
      if (!*this) return R(empty_error());
      if (const auto* k = get_if<P>()) return R(k);
      return R(keel::error(errc::invalid_argument,
                           "the keyspace handle is not of this " + std::string(what) + "'s store"));
    } else {
      return result<std::monostate>(detail::keyspaces_not_supported(P::backend_kind, what));
    }
  }

 private:
  static keel::error empty_error() { return closed_error("keyspace handle (empty)"); }
  static detail::variant_cursor<Policies...> empty_cursor() {
    using first = std::tuple_element_t<0, std::tuple<Policies...>>;
    return detail::variant_cursor<Policies...>(first::failed_cursor(empty_error()));
  }
  // f(the live handle), or empty_error() for an empty handle.
  template <class R, class Self, class F>
  static R visit(Self& self, F&& f) {
    return std::visit(
        [&](auto& k) -> R {
          if constexpr (std::is_same_v<std::decay_t<decltype(k)>, std::monostate>) {
            return empty_error();
          } else {
            return f(k);
          }
        },
        self.ks_);
  }

  variant_type ks_;
  std::shared_ptr<op_counters> counters_;
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
  // The same in keyspace `ks`, a handle of the same store (see
  // basic_snapshot: a keyspace dropped since stays readable or gives
  // snapshot_expired, per backend). An empty handle: errc::closed; one of
  // another backend: errc::invalid_argument; a backend without keyspaces:
  // errc::not_supported.
  result<std::optional<std::string>> get(const basic_any_keyspace<Policies...>& ks, std::string_view key) const {
    return with_keyspace<result<std::optional<std::string>>>(
        ks, [&](const auto& s, const auto& k) { return s.get(k, key); });
  }
  result<bool> contains(const basic_any_keyspace<Policies...>& ks, std::string_view key) const {
    return with_keyspace<result<bool>>(ks, [&](const auto& s, const auto& k) { return s.contains(k, key); });
  }
  cursor scan(const basic_any_keyspace<Policies...>& ks, const key_range& range = key_range::all()) const {
    return std::visit([&](const auto& s) { return cursor(scan_in(s, ks, range), s.counters()); }, snapshot_);
  }
  bool valid() const noexcept {
    return std::visit([](const auto& s) { return s.valid(); }, snapshot_);
  }

 private:
  // f(the snapshot, the backend's keyspace handle), or the error when `ks`
  // cannot be read through this snapshot.
  template <class R, class F>
  R with_keyspace(const basic_any_keyspace<Policies...>& ks, F&& f) const {
    return std::visit(
        [&](const auto& s) -> R {
          auto k = keyspace_of(s, ks);
          if (!k) return std::move(k).error();
          if constexpr (!std::is_same_v<decltype(k), result<std::monostate>>) return f(s, **k);
          else return R(std::move(k).error());  // not reached: keyspace_of gave an error
        },
        snapshot_);
  }
  template <class P>
  static detail::variant_cursor<Policies...> scan_in(const basic_snapshot<P>& s,
                                                     const basic_any_keyspace<Policies...>& ks,
                                                     const key_range& range) {
    using cursor_impl = detail::variant_cursor<Policies...>;
    auto k = keyspace_of(s, ks);
    if (!k) return cursor_impl(P::failed_cursor(std::move(k).error()));
    if constexpr (keyspace_policy<P>) {
      return cursor_impl(s.scan_impl(**k, range));
    } else {
      return cursor_impl(P::failed_cursor(detail::keyspaces_not_supported(P::backend_kind, "snapshot scan")));
    }
  }
  template <class P>
  static auto keyspace_of(const basic_snapshot<P>&, const basic_any_keyspace<Policies...>& ks) {
    return ks.template resolve<P>("snapshot");
  }

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
  // With options (basic_transaction::put: the ttl counts from the commit);
  // a backend without expiry: a ttl is errc::not_supported, nothing
  // buffered; no ttl: a plain put.
  result<void> put(std::string_view key, std::string_view value, const put_options& options) {
    return std::visit(
        [&](auto& t) -> result<void> {
          using P = typename detail::transaction_policy<std::decay_t<decltype(t)>>::type;
          if constexpr (expiry_policy<P>) {
            return t.put(key, value, options);
          } else {
            if (auto refused = detail::put_options_refused(P::backend_kind, options)) return *refused;
            return t.put(key, value);
          }
        },
        tx_);
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

  // The same in keyspace `ks`, a handle of this transaction's store (see
  // basic_transaction: conflicts per (keyspace, key), one atomic commit over
  // every keyspace). An empty handle: errc::closed; one of another backend:
  // errc::invalid_argument; a backend without keyspaces: errc::not_supported.
  result<std::optional<std::string>> get(const basic_any_keyspace<Policies...>& ks, std::string_view key) {
    return with_keyspace<result<std::optional<std::string>>>(ks, [&](auto& t, const auto& k) { return t.get(k, key); });
  }
  result<bool> contains(const basic_any_keyspace<Policies...>& ks, std::string_view key) {
    return with_keyspace<result<bool>>(ks, [&](auto& t, const auto& k) { return t.contains(k, key); });
  }
  cursor scan(const basic_any_keyspace<Policies...>& ks, const key_range& range = key_range::all()) {
    return std::visit([&](auto& t) { return cursor(scan_in(t, ks, range), t.counters()); }, tx_);
  }
  result<void> put(const basic_any_keyspace<Policies...>& ks, std::string_view key, std::string_view value) {
    return with_keyspace<result<void>>(ks, [&](auto& t, const auto& k) { return t.put(k, key, value); });
  }
  result<void> put(const basic_any_keyspace<Policies...>& ks, std::string_view key, std::string_view value,
                   const put_options& options) {
    return with_keyspace<result<void>>(ks, [&](auto& t, const auto& k) -> result<void> {
      using P = typename detail::transaction_policy<std::decay_t<decltype(t)>>::type;
      if constexpr (expiry_policy<P>) {
        return t.put(k, key, value, options);
      } else {
        if (auto refused = detail::put_options_refused(P::backend_kind, options)) return *refused;
        return t.put(k, key, value);
      }
    });
  }
  result<void> erase(const basic_any_keyspace<Policies...>& ks, std::string_view key) {
    return with_keyspace<result<void>>(ks, [&](auto& t, const auto& k) { return t.erase(k, key); });
  }
  result<void> erase_range(const basic_any_keyspace<Policies...>& ks, const key_range& range) {
    return with_keyspace<result<void>>(ks, [&](auto& t, const auto& k) { return t.erase_range(k, range); });
  }

 private:
  template <class R, class F>
  R with_keyspace(const basic_any_keyspace<Policies...>& ks, F&& f) {
    return std::visit(
        [&](auto& t) -> R {
          using P = typename detail::transaction_policy<std::decay_t<decltype(t)>>::type;
          auto k = ks.template resolve<P>("transaction");
          if (!k) return std::move(k).error();
          if constexpr (keyspace_policy<P>) return f(t, **k);
          else return R(std::move(k).error());  // not reached: resolve gave an error
        },
        tx_);
  }
  template <class P>
  static detail::variant_tx_cursor<Policies...> scan_in(basic_transaction<P>& t,
                                                        const basic_any_keyspace<Policies...>& ks,
                                                        const key_range& range) {
    using cursor_impl = detail::variant_tx_cursor<Policies...>;
    using one = detail::tx_cursor<typename P::cursor_type>;
    auto k = ks.template resolve<P>("transaction scan");
    if (!k) return cursor_impl(one(P::failed_cursor(std::move(k).error()), range, nullptr, 0));
    if constexpr (keyspace_policy<P>) return cursor_impl(t.scan_impl(**k, range));
    else return cursor_impl(one(P::failed_cursor(std::move(k).error()), range, nullptr, 0));
  }

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
  using keyspace_type = basic_any_keyspace<Policies...>;
  using watch_type = basic_any_watch<Policies...>;

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
  // With options (expiry.hpp, basic_store::put): put_options::ttl makes the
  // key expire that long from now by the store's clock. A ttl of zero or
  // less: errc::invalid_argument; a backend without expiry (has_expiry()
  // false): a ttl is errc::not_supported (a closed store: errc::closed),
  // nothing written; no ttl: a plain put, on every backend.
  result<void> put(std::string_view key, std::string_view value, const put_options& options) {
    return std::visit(
        [&](auto& s) -> result<void> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (expiry_policy<P>) {
            return s.put(key, value, options);
          } else {
            if (options.ttl && !s.is_open()) return closed_error();
            if (auto refused = detail::put_options_refused(P::backend_kind, options)) return *refused;
            return s.put(key, value);
          }
        },
        store_);
  }
  // Whether key is present now and, if it has a ttl, its deadline
  // (basic_store::expiry, expiry.hpp: key_expiry); a backend without
  // expiry: errc::not_supported (a closed store: errc::closed).
  result<key_expiry> expiry(std::string_view key) const {
    return std::visit(
        [&](const auto& s) -> result<key_expiry> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (expiry_policy<P>) {
            return s.expiry(key);
          } else {
            if (!s.is_open()) return closed_error();
            return detail::expiry_not_supported(P::backend_kind, "expiry");
          }
        },
        store_);
  }
  // Whether the live backend has expiry (keel::expiry_policy). write() of a
  // batch with a ttl on one without is errc::not_supported (basic_store::write).
  bool has_expiry() const noexcept {
    return std::visit([](const auto& s) { return expiry_policy<typename std::decay_t<decltype(s)>::policy_type>; },
                      store_);
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

  // Keyspaces (keyspace.hpp), forwarded to the live backend: the keyspace
  // `name` ("" is the default one), created if missing (a read-only store:
  // errc::not_found); a name over 255 bytes: errc::invalid_argument. A
  // backend without keyspaces (has_keyspaces() false) gives
  // errc::not_supported for every name, "" included (the store's own calls
  // are the default keyspace there).
  result<keyspace_type> keyspace(std::string_view name) {
    return std::visit(
        [&](auto& s) -> result<keyspace_type> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (keyspace_policy<P>) {
            auto ks = s.keyspace(name);
            if (!ks) return std::move(ks).error();
            return keyspace_type(std::move(*ks), s.counters());
          } else {
            if (!s.is_open()) return closed_error();
            if (auto bad = keyspace_name_error(name)) return *bad;
            return detail::keyspaces_not_supported(P::backend_kind, "keyspace '" + std::string(name) + "'");
          }
        },
        store_);
  }
  // Every keyspace's name, sorted, "" included; {""} on a backend without
  // keyspaces (its one, default keyspace).
  result<std::vector<std::string>> keyspaces() const {
    return std::visit(
        [&](const auto& s) -> result<std::vector<std::string>> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (keyspace_policy<P>) {
            return s.keyspaces();
          } else {
            if (!s.is_open()) return closed_error();
            return std::vector<std::string>{std::string()};
          }
        },
        store_);
  }
  // Drops the keyspace `name` atomically (see basic_store::drop_keyspace):
  // "" is errc::invalid_argument, a missing name errc::not_found; a backend
  // without keyspaces: errc::not_supported for any other name.
  result<void> drop_keyspace(std::string_view name) {
    return std::visit(
        [&](auto& s) -> result<void> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (keyspace_policy<P>) {
            return s.drop_keyspace(name);
          } else {
            if (!s.is_open()) return closed_error();
            if (name.empty()) {
              return keel::error(errc::invalid_argument, "the default keyspace \"\" cannot be dropped");
            }
            if (auto bad = keyspace_name_error(name)) return *bad;
            return detail::keyspaces_not_supported(P::backend_kind, "drop_keyspace");
          }
        },
        store_);
  }
  // Whether the live backend has keyspaces other than "" (keel::keyspace_policy).
  // A backend that has them can still refuse them at run time (memory with
  // persist_path: errc::not_supported from keyspace(name)).
  bool has_keyspaces() const noexcept {
    return std::visit(
        [](const auto& s) { return keyspace_policy<typename std::decay_t<decltype(s)>::policy_type>; }, store_);
  }

  // Watch (watch.hpp, basic_store::watch), forwarded to the live backend:
  // every committed change to a key in `range` of the default keyspace. A
  // backend without watch (has_watch() false: PostgreSQL) gives
  // errc::not_supported naming it; a closed store errc::closed.
  result<watch_type> watch(const key_range& range = key_range::all(), const watch_options& options = {}) const {
    return std::visit(
        [&](const auto& s) -> result<watch_type> {
          using P = typename std::decay_t<decltype(s)>::policy_type;
          if constexpr (watch_policy<P>) {
            auto w = s.watch(range, options);
            if (!w) return std::move(w).error();
            return watch_type(std::move(*w));
          } else {
            if (!s.is_open()) return closed_error();
            return detail::watch_not_supported(P::backend_kind, "watch");
          }
        },
        store_);
  }
  // The live backend's last_seq() (basic_store::last_seq); 0 on a backend
  // without watch.
  std::uint64_t last_seq() const noexcept {
    return std::visit(
        [](const auto& s) -> std::uint64_t {
          if constexpr (watch_policy<typename std::decay_t<decltype(s)>::policy_type>) {
            return s.last_seq();
          } else {
            return 0;
          }
        },
        store_);
  }
  // Whether the live backend has watch (keel::watch_policy).
  bool has_watch() const noexcept {
    return std::visit([](const auto& s) { return watch_policy<typename std::decay_t<decltype(s)>::policy_type>; },
                      store_);
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
