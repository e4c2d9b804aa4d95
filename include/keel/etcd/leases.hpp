// keel::detail: keys with a time to live on etcd (issue 29), for EtcdPolicy
// (<keel/etcd.hpp>): etcd leases. Private: names may change. The semantics
// are in docs/expiry.md, "## etcd"; the etcd facts (checked against etcd
// 3.4.23 and its source) are:
// - A lease is granted for whole seconds (/v3/lease/grant {"TTL"} answers
//   {"ID","TTL"}); etcd raises a TTL below its minimum,
//   ceil(1.5 * election timeout) (2 s with the default 1000 ms, 1 s with the
//   tests' 200 ms), and refuses one over 9,000,000,000 s (code 11).
// - A key put with "lease" is deleted, in one revision with the other keys of
//   its lease, when the leader revokes the lease: its lessor looks for expired
//   leases every 500 ms. A put without "lease" (lease 0) detaches the key.
// - /v3/lease/timetolive {"ID"} answers {"TTL"}: the remaining time in whole
//   seconds, rounded down; -1 once the lease is gone.
// - A put or txn naming a lease that is gone fails whole: HTTP 404, code 5
//   "requested lease not found" (the transport's errc::not_found).
// - A range answer gives each kv's "lease" (left out for 0);
//   /v3/lease/leases lists the cluster's leases, its header.revision the
//   answering member's current revision.
//
// Deadlines are grouped: every key whose deadline (the client's clock at the
// put + ttl) rounds up to the same second S shares one lease, granted with
// TTL = ceil((S - now) / 1 s), so that etcd (whose time decides) keeps each
// key at least its ttl. etcd_lease_cache keeps the lease of each second
// while etcd will not revoke it for a while.
//
// Thread safety: etcd_lease_cache may be used from many threads at once (a
// mutex, a leaf: never held around a request); etcd_scan_deadlines by one
// thread at a time (its cursor's); the functions are thread-safe.
// Errors: keel::error values; nothing throws but std::bad_alloc.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../expiry.hpp"
#include "codec.hpp"
#include "paging.hpp"
#include "transactions.hpp"
#include "transport.hpp"

namespace keel::detail {

// The deadline of a put at `now` with `ttl` (deadline_after), or
// invalid_argument when it is not one etcd can hold (ttl not positive, past
// the clock, or not shorter than etcd's largest lease TTL).
inline result<deadline_ms> etcd_deadline(std::chrono::system_clock::time_point now, std::chrono::milliseconds ttl) {
  auto d = deadline_after(now, ttl);
  if (d && ttl.count() / 1000 >= etcd_max_lease_ttl_s) return etcd_ttl_too_long(ttl);
  return d;
}

// Whether `e` is etcd's "requested lease not found" (a put or txn naming a
// lease that was revoked: nothing of it was applied).
inline bool etcd_lease_gone(const keel::error& e) {
  return e.code() == errc::not_found && e.message().find("lease not found") != std::string::npos;
}

// One lease per deadline second, while it lasts. A lease is reused only
// while etcd will not revoke it for at least `margin` more (by the client's
// clock): a put naming a revoked lease fails (etcd_lease_gone) and is sent
// again with a new one. At most `max_entries` seconds are kept (the earliest
// go first); entries past their time are dropped when a lease is added.
class etcd_lease_cache {
 public:
  static constexpr std::int64_t margin_ms = 1000;
  static constexpr std::size_t max_entries = 64;

  // The lease for keys whose deadline rounds up to `second` (seconds since
  // the epoch, the client's clock), `now` being the time of the put: a cached
  // one, else one granted now (a grant that is lost or applied twice leaves a
  // lease no key uses, which expires by itself, so it is retried like a read).
  result<std::int64_t> lease_for(const etcd_transport& t, std::int64_t second,
                                 std::chrono::system_clock::time_point now) {
    const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    {
      std::lock_guard lock(mutex_);
      if (auto it = by_second_.find(second); it != by_second_.end() && now_ms + margin_ms < it->second.revoked_after_ms)
        return it->second.id;
    }
    const std::int64_t wanted = std::max<std::int64_t>(1, (second * 1000 - now_ms + 999) / 1000);
    auto r = t.call("lease/grant", json_object().integer("TTL", wanted).str(), call_kind::read, "grant a lease");
    if (!r) return std::move(r).error();
    const auto id = json_int(*r, "ID");
    const auto granted = json_int(*r, "TTL");
    if (id == 0 || granted <= 0)
      return keel::error(errc::io_error, "etcd: /v3/lease/grant gave no lease: " + r->dump());
    std::lock_guard lock(mutex_);
    for (auto it = by_second_.begin(); it != by_second_.end();)
      it = it->second.revoked_after_ms <= now_ms + margin_ms ? by_second_.erase(it) : std::next(it);
    if (by_second_.size() >= max_entries) by_second_.erase(by_second_.begin());
    by_second_.insert_or_assign(second, entry{id, now_ms + granted * 1000});
    return id;
  }
  // Drops lease `id` (etcd said it is gone).
  void forget(std::int64_t id) {
    std::lock_guard lock(mutex_);
    for (auto it = by_second_.begin(); it != by_second_.end();)
      it = it->second.id == id ? by_second_.erase(it) : std::next(it);
  }

 private:
  struct entry {
    std::int64_t id;
    std::int64_t revoked_after_ms;  // etcd revokes it no earlier (the client's clock at the grant + granted TTL)
  };
  std::mutex mutex_;
  std::map<std::int64_t, entry> by_second_;  // deadline second -> lease; guarded by mutex_
};

// Gives each put of `c` that has a ttl (c.leased) its lease and writes its
// op: the deadlines count from `now` (one reading for the whole batch) and are
// all checked before any lease is granted (invalid_argument, nothing sent).
// Returns the leases used.
inline result<std::vector<std::int64_t>> etcd_attach_leases(const etcd_transport& t, etcd_lease_cache& cache,
                                                            etcd_compiled_batch& c,
                                                            std::chrono::system_clock::time_point now) {
  std::vector<std::int64_t> seconds;
  seconds.reserve(c.leased.size());
  for (const auto& p : c.leased) {
    auto d = etcd_deadline(now, p.ttl);
    if (!d) return std::move(d).error();
    seconds.push_back(*d / 1000 + (*d % 1000 != 0));
  }
  std::map<std::int64_t, std::int64_t> lease_of;  // second -> lease
  std::vector<std::int64_t> used;
  for (std::size_t i = 0; i < c.leased.size(); ++i) {
    auto [it, fresh] = lease_of.try_emplace(seconds[i], 0);
    if (fresh) {
      auto id = cache.lease_for(t, seconds[i], now);
      if (!id) return std::move(id).error();
      it->second = *id;
      used.push_back(*id);
    }
    std::string inner = c.leased[i].inner;
    inner.pop_back();  // the closing '}'
    inner += ",\"lease\":\"" + std::to_string(it->second) + "\"}";
    c.ops[c.leased[i].op] = json_object().raw("request_put", inner).str();
  }
  return used;
}

// Sends `c` with `send` (which sends c.ops as one txn) after giving its puts
// with a ttl their leases (etcd_attach_leases, the clock read now). When etcd
// answers that a lease is gone (nothing was applied), the leases are dropped
// from the cache and the txn is sent once more with new ones.
template <class Send>
result<nlohmann::json> etcd_send_leased(const etcd_transport& t, etcd_lease_cache& cache, etcd_compiled_batch& c,
                                        Send&& send) {
  for (int attempt = 0;; ++attempt) {
    auto used = etcd_attach_leases(t, cache, c, std::chrono::system_clock::now());
    if (!used) return std::move(used).error();
    auto r = send();
    if (r || attempt > 0 || !etcd_lease_gone(r.error())) return r;
    for (auto id : *used) cache.forget(id);
  }
}

// The deadline of lease `id` as expiry(key) reports it: the client's clock
// at the answer of /v3/lease/timetolive + the remaining TTL, which etcd
// rounds toward zero to whole seconds (so its keys live up to a second
// longer, plus until the revocation); nullopt when etcd no longer has the
// lease (it was revoked, and its keys with it).
inline result<std::optional<deadline_ms>> etcd_lease_deadline(const etcd_transport& t, std::int64_t id) {
  auto r = t.call("lease/timetolive", json_object().integer("ID", id).str(), call_kind::read, "expiry");
  if (!r) return std::move(r).error();
  // A lease etcd has answers with its grantedTTL; one that is gone with
  // TTL -1 alone. A lease past its end but not revoked yet has a TTL of 0
  // or less: a deadline in the past.
  if (json_int(*r, "grantedTTL") <= 0) return std::optional<deadline_ms>();
  const auto ttl = json_int(*r, "TTL");
  const auto now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  return std::optional<deadline_ms>(now.count() + ttl * 1000);
}

// What expiry(key) reports from etcd: `read` gives the key's lease (0: none;
// nullopt: the key is absent), then etcd_lease_deadline its deadline. A
// lease gone between the two requests took the key with it, unless the key
// was put again meanwhile: read again (3 tries, then absent).
template <class ReadLease>  // () -> result<std::optional<std::int64_t>>
result<key_expiry> etcd_key_expiry(const etcd_transport& t, ReadLease&& read) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto lease = read();
    if (!lease) return std::move(lease).error();
    if (!*lease) return key_expiry{};
    if (**lease == 0) return key_expiry{true, std::nullopt};
    auto d = etcd_lease_deadline(t, **lease);
    if (!d) return std::move(d).error();
    if (*d) return key_expiry{true, **d};
  }
  return key_expiry{};
}

// The deadlines of a scan's keys, for the etcd cursor's deadline_cursor
// members (contract.hpp; export and copy read them): each key's lease comes
// with the range answer, and each distinct lease of the scan is looked up
// once (etcd_lease_deadline: the deadline expiry(key) reports), a page at a
// time before its keys are handed out, instead of a request per key. A lease
// gone by its lookup was revoked after the scan's revision, and its keys
// with it: their deadline is the time of the lookup (it has passed; import
// and copy skip such a record as expired). A request that fails ends the
// scan with its error (error()); the page in hand stays readable.
// Thread safety: none (one cursor, one thread at a time).
class etcd_scan_deadlines {
 public:
  // Whether an entry of `scan` may carry a deadline, decided at the first
  // call (one /v3/lease/leases): false for a scan with nothing to hand out,
  // or when the cluster has no lease and no revision has been written since
  // the scan's (a key attached to a lease at that revision would have been
  // deleted with it, in a later revision). When true, the page in hand's
  // leases are looked up.
  bool holds(const etcd_transport& t, const etcd_paged_scan& scan) {
    if (holds_) return *holds_;
    holds_ = false;
    if (!scan.valid() || error_) return false;
    auto r = t.call("lease/leases", "{}", call_kind::read, "list leases");
    if (!r) {
      error_ = std::move(r).error();
      return false;
    }
    auto it = r->find("leases");
    holds_ = (it != r->end() && it->is_array() && !it->empty()) || etcd_header_revision(*r) != scan.revision();
    if (*holds_) look_up(t, scan);
    return *holds_;
  }
  // After a page was read: looks up its new leases once holds() said true.
  void on_page(const etcd_transport& t, const etcd_paged_scan& scan) {
    if (holds_ && *holds_ && scan.valid() && !error_) look_up(t, scan);
  }
  // The deadline of an entry attached to `lease` (nullopt for 0, or a lease
  // not looked up: holds() was false).
  std::optional<deadline_ms> deadline(std::int64_t lease) const {
    auto it = known_.find(lease);
    if (lease == 0 || it == known_.end()) return std::nullopt;
    return it->second;
  }
  const std::optional<keel::error>& error() const noexcept { return error_; }

 private:
  void look_up(const etcd_transport& t, const etcd_paged_scan& scan) {
    for (const auto lease : scan.leases_left()) {
      if (lease == 0 || known_.contains(lease)) continue;
      auto d = etcd_lease_deadline(t, lease);
      if (!d) {
        error_ = std::move(d).error();
        return;
      }
      const auto now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
      known_.emplace(lease, d->value_or(now.count()));
    }
  }

  std::optional<bool> holds_;                  // decided by the first holds()
  std::map<std::int64_t, deadline_ms> known_;  // lease -> deadline
  std::optional<keel::error> error_;
};

// The lease of the first kv of a range answer (or a txn's range response):
// nullopt when it holds none.
inline std::optional<std::int64_t> etcd_kv_lease(const nlohmann::json* kv) {
  if (!kv) return std::nullopt;
  return json_int(*kv, "lease");
}

}  // namespace keel::detail
