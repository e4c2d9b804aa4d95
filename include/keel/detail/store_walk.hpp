// keel::detail: moving records between stores, shared by export/import
// (dump.hpp) and copy (copy.hpp). walk_keyspaces() reads every entry of a
// source, with its deadline (expiry, issue 29) where the backend has them;
// create_keyspaces() prepares a destination; record_batcher writes records
// into a destination in write_batches, a deadline as a ttl by the
// destination's clock. Needs no backend headers.
//
// Thread safety: none of its own (one export, import or copy per call).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../cursor.hpp"
#include "../error.hpp"
#include "../expiry.hpp"
#include "../fwd.hpp"
#include "../key_range.hpp"
#include "../stats.hpp"
#include "../write_batch.hpp"
#include "keyspace_text.hpp"

namespace keel {

template <class... Policies>
class basic_any_keyspace;
template <class Policy>
class basic_keyspace;

namespace detail {

// A store that lists its keyspaces (basic_store of a keyspace policy,
// basic_any_store), and one that opens handles to them (not through const).
template <class Store>
concept keyspace_listing = requires(const Store& s) {
  { s.keyspaces() } -> std::same_as<result<std::vector<std::string>>>;
};
template <class Store>
concept keyspace_opening = requires(Store& s, std::string_view name) {
  { s.keyspace(name) };
};

// A source read through its backend's cursor, which reports deadlines
// (basic_store, basic_keyspace, basic_snapshot of an expiry backend).
template <class Source>
concept deadline_source = requires(const Source& s, const key_range& r) {
  { s.scan_impl(r) } -> deadline_cursor;
};

// basic_any_store and basic_any_keyspace: read and written through the live
// backend's own store or handle: with<R>(s, f) is f(that store or handle),
// or R(errc::closed) when there is none (an empty handle).
template <class T>
struct live_of_any : std::false_type {};
template <class... Ps>
struct live_of_any<basic_any_store<Ps...>> : std::true_type {
  template <class R, class Self, class F>
  static R with(Self& s, F&& f) {
    std::optional<R> r;
    (void)((!r && s.template get_if<Ps>() ? (r.emplace(f(*s.template get_if<Ps>())), true) : false) || ...);
    if (r) return std::move(*r);
    return R(closed_error());
  }
};
template <class... Ps>
struct live_of_any<basic_any_keyspace<Ps...>> : std::true_type {
  template <class R, class Self, class F>
  static R with(Self& s, F&& f) {
    std::optional<R> r;
    (void)(try_one<Ps>(s, f, r) || ...);
    if (r) return std::move(*r);
    return R(closed_error("keyspace handle (empty)"));
  }
  template <class P, class Self, class F, class R>
  static bool try_one(Self& s, F& f, std::optional<R>& r) {
    if constexpr (keyspace_policy<P>) {
      if (const auto* k = s.template get_if<P>()) {
        r.emplace(f(*k));
        return true;
      }
    }
    return false;
  }
};
template <class T>
inline constexpr bool is_any_v = live_of_any<std::remove_const_t<T>>::value;

// The policy of a basic_store, basic_keyspace or basic_snapshot (void for
// other sources), and whether the source is of an expiry backend whose
// cursors do not report deadlines: each key's deadline is then asked of the
// store (expiry(key)), one call per key (PostgreSQL: a query).
template <class T>
struct policy_of {
  using type = void;
};
template <class P>
struct policy_of<basic_store<P>> {
  using type = P;
};
template <class P>
struct policy_of<basic_keyspace<P>> {
  using type = P;
};
template <class P>
struct policy_of<basic_snapshot<P>> {
  using type = P;
};
template <class Source>
constexpr bool asks_expiry() {
  using P = typename policy_of<std::remove_const_t<Source>>::type;
  if constexpr (std::is_void_v<P>) return false;
  else return expiry_policy<P> && !deadline_cursor<typename P::cursor_type>;
}

template <class Source>
std::shared_ptr<op_counters> counters_of(const Source& s) {
  if constexpr (requires { s.counters(); }) return s.counters();
  else return {};
}

// Calls fn(name, key, value, deadline) for every entry of `impl`, a backend
// cursor: walked a step at a time with each entry's deadline when it holds
// some, else a run at a time (basic_cursor) with none. Counts into `counters`.
template <class Impl, class Fn>
result<void> drain_cursor(std::string_view name, Impl impl, const std::shared_ptr<op_counters>& counters, Fn& fn) {
  if constexpr (deadline_cursor<Impl>) {
    if (impl.holds_deadlines()) {
      std::uint64_t n = 0, bytes = 0;
      result<void> out;
      for (; impl.valid(); impl.next()) {
        const std::string_view k = impl.key(), v = impl.value();
        ++n;
        bytes += k.size() + v.size();
        if (out = fn(name, k, v, impl.deadline()); !out) break;
      }
      if (counters && n != 0) counters->add(op_counters::cursor_entries, op_counters::bytes_read, n, bytes);
      if (!out) return out;
      if (impl.error()) return *impl.error();
      return {};
    }
  }
  basic_cursor<Impl> c(std::move(impl), counters);
  for (const auto& e : c) {
    if (auto r = fn(name, e.key, e.value, std::optional<deadline_ms>()); !r) return r;
  }
  if (c.error()) return *c.error();
  return {};
}

template <class Impl, class Fn>
result<void> drain_via(std::string_view name, Impl impl, const std::shared_ptr<op_counters>& counters, Fn fn) {
  return drain_cursor(name, std::move(impl), counters, fn);
}

// Reads every entry of `store` in `range` (applied in each keyspace), in
// every keyspace: first on_names(the sorted names, whether some entry may
// carry a deadline), then fn(name, key, value, deadline) for each entry
// (deadline: nullopt for a permanent key, and always on a backend without
// expiry), keyspaces in name order, keys in range order. Keys expired at the
// time of the read are left out. One consistent view: one scan when the
// store has only "" (or cannot list keyspaces: a snapshot, a backend without
// them), else one snapshot read through a handle per keyspace (opened before
// the snapshot; a keyspace dropped meanwhile fails the walk with the
// backend's error, or, dropped between the listing and keyspace(name), is
// recreated empty). An expiry backend whose cursors do not report deadlines
// (contract.hpp, deadline_cursor): each key's deadline is asked of the store
// or keyspace handle after the key is read (expiry(key): a key gone by then
// is left out), and every keyspace is taken to hold deadlines, unless the
// store's may_hold_deadlines() says no key has one (then no key is asked);
// a snapshot of one as the source: errc::not_supported, nothing read.
template <class Store, class OnNames, class Fn>
result<void> walk_keyspaces(Store& store, const key_range& range, OnNames&& on_names, Fn&& fn) {
  if constexpr (is_any_v<Store>) {
    return live_of_any<std::remove_const_t<Store>>::template with<result<void>>(
        store, [&](auto& live) { return walk_keyspaces(live, range, on_names, fn); });
  } else {
    constexpr bool ask = asks_expiry<Store>();
    if constexpr (ask && !requires(const Store& s) { s.expiry(std::string_view()); }) {
      using P = typename policy_of<std::remove_const_t<Store>>::type;
      return keel::error(errc::not_supported, "the " + std::string(to_string(P::backend_kind)) +
                                                  " backend's cursors do not report deadlines, so a snapshot of it "
                                                  "cannot be exported or copied with them; pass the store; nothing was read");
    }
    // Whether to ask: not when the store says no key has a deadline now.
    bool ask_now = ask;
    if constexpr (ask && requires { store.may_hold_deadlines(); }) {
      auto may = store.may_hold_deadlines();
      if (!may) return std::move(may).error();
      ask_now = *may;
    }
    // fn, with the deadline asked of `handle` when the backend's cursors do not tell it.
    auto asking = [&](const auto& handle) {
      return [&](std::string_view name, std::string_view key, std::string_view value,
                            std::optional<deadline_ms> deadline) -> result<void> {
        if constexpr (ask && requires { handle.expiry(key); }) {
          if (!ask_now) return fn(name, key, value, deadline);
          auto e = handle.expiry(key);
          if (!e) return std::move(e).error();
          if (!e->present) return {};  // erased or expired since it was read
          deadline = e->deadline;
        }
        return fn(name, key, value, deadline);
      };
    };
    std::vector<std::string> names{std::string()};
    if constexpr (keyspace_listing<Store>) {
      auto listed = store.keyspaces();
      if (!listed) return std::move(listed).error();
      names = std::move(*listed);
    }
    if (names.size() == 1 && names[0].empty()) {
      if constexpr (deadline_source<Store>) {
        auto impl = store.scan_impl(range);
        if (auto r = on_names(names, impl.holds_deadlines()); !r) return r;
        return drain_cursor("", std::move(impl), counters_of(store), fn);
      } else {
        if (auto r = on_names(names, ask_now); !r) return r;
        auto each = asking(store);
        auto c = store.scan(range);
        for (const auto& e : c) {
          if (auto r = each(std::string_view(), e.key, e.value, std::optional<deadline_ms>()); !r) return r;
        }
        if (c.error()) return *c.error();
        return {};
      }
    }
    if constexpr (keyspace_opening<Store>) {
      using handle = std::remove_cvref_t<decltype(*store.keyspace(std::string_view()))>;
      std::vector<std::optional<handle>> handles(names.size());
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i].empty()) continue;
        auto h = store.keyspace(names[i]);
        if (!h) return std::move(h).error();
        handles[i].emplace(std::move(*h));
      }
      auto snap = store.snapshot();
      // Every keyspace's cursor first: whether any holds deadlines decides
      // the dump's version before its first record.
      using impl = std::remove_cvref_t<decltype(snap.scan_impl(range))>;
      std::vector<impl> cursors;
      cursors.reserve(names.size());
      bool deadlines = ask_now;
      for (std::size_t i = 0; i < names.size(); ++i) {
        cursors.push_back(handles[i] ? snap.scan_impl(*handles[i], range) : snap.scan_impl(range));
        if constexpr (deadline_cursor<impl>) deadlines = deadlines || cursors.back().holds_deadlines();
      }
      if (auto r = on_names(names, deadlines); !r) return r;
      for (std::size_t i = 0; i < names.size(); ++i) {
        if constexpr (ask) {
          if (!ask_now) {
            if (auto r = drain_cursor(names[i], std::move(cursors[i]), snap.counters(), fn); !r) return r;
            continue;
          }
          auto r = handles[i] ? drain_via(names[i], std::move(cursors[i]), snap.counters(), asking(*handles[i]))
                              : drain_via(names[i], std::move(cursors[i]), snap.counters(), asking(store));
          if (!r) return r;
        } else {
          if (auto r = drain_cursor(names[i], std::move(cursors[i]), snap.counters(), fn); !r) return r;
        }
      }
      return {};
    } else {
      return keel::error(errc::not_supported, "the store has keyspaces, but they cannot be read through a const "
                                              "reference; pass the store itself; nothing was read");
    }
  }
}

// Opens (creating) every keyspace of `names` but "" in `store`, the
// destination of an import or a copy, before anything is written to it. A
// destination without keyspaces (no keyspace(name), or not_supported from
// it) refuses names other than "": errc::not_supported, nothing written.
template <class Store>
result<void> create_keyspaces(Store& store, const std::vector<std::string>& names, std::string_view what) {
  for (const auto& name : names) {
    if (name.empty()) continue;
    if constexpr (keyspace_opening<Store>) {
      auto h = store.keyspace(name);
      if (!h) {
        return keel::error(h.error().code(), std::string(what) + " holds keyspace " + keyspace_text(name) +
                                                 "', which the destination cannot open: " + h.error().message() +
                                                 "; nothing was written");
      }
    } else {
      return keel::error(errc::not_supported, std::string(what) + " holds keyspace " + keyspace_text(name) +
                                                  "', and the destination has no keyspaces; nothing was written");
    }
  }
  return {};
}

// Whether `dst` takes puts with a ttl: a basic_store of an expiry backend
// (the live one for an any_store), or what dst.takes_ttl() says; any other
// destination is assumed to (its write() refuses a ttl it cannot keep, as
// basic_store::write does).
template <class Dst>
bool takes_ttl(const Dst& dst) {
  if constexpr (requires { { dst.takes_ttl() } -> std::convertible_to<bool>; }) {
    return dst.takes_ttl();
  } else if constexpr (is_any_v<Dst>) {
    auto r = live_of_any<Dst>::template with<result<bool>>(dst, [](const auto& live) { return result<bool>(takes_ttl(live)); });
    return r && *r;
  } else if constexpr (requires { typename Dst::policy_type; }) {
    return expiry_policy<typename Dst::policy_type>;
  } else {
    return true;
  }
}

// What `dst`'s clock reads now, in ms since the epoch: its clock_source
// (policy().clock(), the live store's for an any_store), else the system
// clock.
template <class Dst>
deadline_ms destination_now(const Dst& dst) {
  using namespace std::chrono;
  if constexpr (requires { dst.policy().clock(); }) {
    return duration_cast<milliseconds>(read_clock(dst.policy().clock()).time_since_epoch()).count();
  } else if constexpr (is_any_v<Dst>) {
    auto r = live_of_any<Dst>::template with<result<deadline_ms>>(
        dst, [](const auto& live) { return result<deadline_ms>(destination_now(live)); });
    if (r) return *r;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  } else {
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
}

// Writes records into `dst` in write_batches of at most `bytes` of keys and
// values (and `records` records, when not 0). A record with a deadline is
// put with ttl = deadline - the destination's clock (destination_now())
// read once per batch; the batch is written as soon as that clock moves on,
// so the destination (which adds the ttl to its own reading at the write)
// keeps the deadline to within the write's duration. A deadline at or
// before that reading: the record is skipped and counted (expired_skipped).
// A deadline for a destination that takes no ttl: errc::not_supported (the
// batches written before stay; `what` says where the record came from).
template <class Dst>
class record_batcher {
 public:
  record_batcher(Dst& dst, std::size_t bytes, std::size_t records, std::string what)
      : dst_(dst), bytes_(bytes), records_(records), what_(std::move(what)) {}

  result<void> add(std::string_view ks, std::string_view key, std::string_view value,
                   std::optional<deadline_ms> deadline) {
    if (now_ && destination_now(dst_) != *now_) {
      if (auto r = flush(); !r) return r;
    }
    if (deadline) {
      if (!takes_ttl_) takes_ttl_ = takes_ttl(dst_);
      if (!*takes_ttl_) {
        return keel::error(errc::not_supported,
                           what_ + " holds keys with a deadline (ttl), and the destination has no expiry; " +
                               std::to_string(written_) +
                               " records were written before the first of them, which was not");
      }
      if (!now_) now_ = destination_now(dst_);
      if (*deadline <= *now_) {
        ++expired_skipped_;
        return {};
      }
      batch_.put(keyspace_name(ks), key, value, put_options{std::chrono::milliseconds(*deadline - *now_)});
    } else {
      batch_.put(keyspace_name(ks), key, value);
    }
    if (batch_.payload_bytes() >= bytes_ || (records_ && batch_.size() >= records_)) return flush();
    return {};
  }
  // Writes what is buffered.
  result<void> flush() {
    now_.reset();
    if (batch_.empty()) return {};
    if (auto w = dst_.write(batch_); !w) return w;
    written_ += batch_.size();
    batch_.clear();
    return {};
  }
  std::uint64_t expired_skipped() const noexcept { return expired_skipped_; }

 private:
  Dst& dst_;
  std::size_t bytes_, records_;
  std::string what_;
  write_batch batch_;
  std::optional<deadline_ms> now_;  // the clock reading the batch's ttls count from (set: it has one)
  std::optional<bool> takes_ttl_;
  std::uint64_t expired_skipped_ = 0, written_ = 0;
};

}  // namespace detail
}  // namespace keel
