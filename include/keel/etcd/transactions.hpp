// keel::detail: what EtcdPolicy (<keel/etcd.hpp>) sends as one etcd txn
// (kv/txn): a write_batch compiled to the txn that applies it, the compares
// with which the cluster validates a keel transaction, and the read-only
// txns of multi_get and of that validation. Private: names may change.
//
// etcd's limits are checked here before anything is sent, against
// etcd_options::max_txn_ops and max_request_bytes (set them to the cluster's
// --max-txn-ops and --max-request-bytes), so that the error names the limit
// (invalid_argument; nothing sent). etcd counts a txn's compares and its
// success ops each against --max-txn-ops (128 compares plus 128 ops pass),
// and the request size on the decoded protobuf, not on the JSON (base64 adds
// a third). A batch is never split: the parts would not be atomic.
//
// Thread safety: every function is thread-safe (the transport is). Errors:
// keel::error values (invalid_argument for what breaks a limit, the
// transport's errors otherwise); nothing throws except std::bad_alloc.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../error.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"
#include "codec.hpp"
#include "options.hpp"
#include "paging.hpp"
#include "transport.hpp"

namespace keel::detail {

// etcd's largest lease TTL in seconds (lease.MaxLeaseTTL; etcd/leases.hpp),
// and the error for a ttl that is not shorter.
inline constexpr std::int64_t etcd_max_lease_ttl_s = 9'000'000'000;
inline keel::error etcd_ttl_too_long(std::chrono::milliseconds ttl) {
  return keel::error(errc::invalid_argument, "etcd: a ttl of " + std::to_string(ttl.count()) +
                                                 " ms is not shorter than etcd's largest lease TTL "
                                                 "(9,000,000,000 s); nothing was written");
}

// The ops or compares of a txn, each already JSON.
using etcd_txn_ops = std::vector<std::string>;

// invalid_argument when a request of about `bytes` bytes would exceed
// max_request_bytes (`what` names it: "put", "the batch"); nullopt when it
// fits.
inline std::optional<keel::error> etcd_request_too_large(std::size_t bytes, std::string_view what,
                                                         const etcd_options& opts) {
  if (bytes <= opts.max_request_bytes) return std::nullopt;
  return keel::error(errc::invalid_argument,
                     "etcd: " + std::string(what) + " of about " + std::to_string(bytes) +
                         " bytes exceeds etcd's request size limit of " + std::to_string(opts.max_request_bytes) +
                         " bytes (--max-request-bytes, etcd_options::max_request_bytes); it was not sent");
}

// Merges the ops of one keyspace of a batch into etcd txn ops (appended to
// `ops`; `bytes` grows by their size). etcd rejects a txn that names a key
// twice, or a put inside a deleted range ("duplicate key given in txn
// request"), so the ops are reduced to their effect first: the last op per
// key wins, an erase_range drops the earlier ops inside it, and a range is
// cut around the keys put after it. invalid_argument for a range whose lower
// bound is above its upper bound.
// A put with a ttl (op::ttl > 0) is appended as an empty op, and its request
// (key and value, without the lease) to `leased`: etcd_attach_leases
// (leases.hpp) writes the op once its lease is known.
struct etcd_leased_put {
  std::size_t op;                  // its index in the txn's ops
  std::string inner;               // {"key":...,"value":...}
  std::chrono::milliseconds ttl;   // > 0
};
inline result<void> etcd_compile_keyspace_ops(const std::vector<write_batch::op>& batch, const etcd_keyspace& keys,
                                              etcd_txn_ops& ops, std::size_t& bytes,
                                              std::vector<etcd_leased_put>& leased) {
  struct last_op {
    std::optional<std::string> value;  // nullopt: erase
    std::chrono::milliseconds ttl{0};
  };
  std::map<std::string, last_op, std::less<>> last;  // user key -> its last op
  std::vector<key_range> ranges;                     // erased, forward
  for (const auto& op : batch) {
    switch (op.kind) {
      case write_batch::op_kind::put:
        last.insert_or_assign(std::string(op.key), last_op{std::optional<std::string>(op.value), op.ttl});
        break;
      case write_batch::op_kind::erase:
        last.insert_or_assign(std::string(op.key), last_op{});
        break;
      case write_batch::op_kind::erase_range: {
        key_range r = op.range();
        if (!erase_range_is_valid(r)) {
          return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
        }
        if (r.is_empty()) break;
        auto first = r.lower() ? last.lower_bound(*r.lower()) : last.begin();
        auto end = r.upper() ? last.lower_bound(*r.upper()) : last.end();
        last.erase(first, end);
        ranges.push_back(std::move(r));
        break;
      }
    }
  }
  auto delete_op = [&](std::string_view lo, std::string_view hi) {
    json_object inner;
    inner.bytes("key", lo);
    if (!hi.empty()) inner.bytes("range_end", hi);
    bytes += lo.size() + hi.size() + 8;
    ops.push_back(json_object().raw("request_delete_range", inner.str()).str());
  };
  for (const auto& r : ranges) {
    auto bounds = keys.range(r);
    if (!bounds) continue;
    // Cut [lo, hi) around the keys put after the range was erased.
    std::string lo = bounds->first;
    auto first = r.lower() ? last.lower_bound(*r.lower()) : last.begin();
    auto end = r.upper() ? last.lower_bound(*r.upper()) : last.end();
    for (auto it = first; it != end; ++it) {
      if (!it->second.value) continue;  // an erase inside an erased range adds nothing
      std::string k = keys.key(it->first);
      if (lo < k) delete_op(lo, k);
      lo = k + '\0';
    }
    if (bounds->second == std::string(1, '\0') || lo < bounds->second) delete_op(lo, bounds->second);
  }
  auto in_some_range = [&](std::string_view k) {
    return std::any_of(ranges.begin(), ranges.end(), [&](const key_range& r) { return r.contains(k); });
  };
  for (const auto& [k, o] : last) {
    const auto& v = o.value;
    if (!v && in_some_range(k)) continue;
    json_object inner;
    std::string etcd_key = keys.key(k);
    bytes += etcd_key.size() + 8;
    inner.bytes("key", etcd_key);
    if (v) {
      inner.bytes("value", *v);
      bytes += v->size();
      if (o.ttl.count() > 0) {
        bytes += 12;  // the lease
        leased.push_back({ops.size(), inner.str(), o.ttl});
        ops.emplace_back();
      } else {
        ops.push_back(json_object().raw("request_put", inner.str()).str());
      }
    } else {
      ops.push_back(json_object().raw("request_delete_range", inner.str()).str());
    }
  }
  return {};
}

// A batch compiled to one txn: the ops, and the keyspaces other than "" it
// names (sorted, each once), which must exist when it is applied.
struct etcd_compiled_batch {
  etcd_txn_ops ops;
  std::vector<std::string> keyspaces;
  std::size_t bytes = 0;
  std::vector<etcd_leased_put> leased;  // the puts with a ttl: their ops are written once leases are granted
};

// A batch (possibly spanning keyspaces; `keys` is the store's default
// keyspace) merged into the ops of one etcd txn, per keyspace as
// etcd_compile_keyspace_ops says. invalid_argument for a bad range, a
// keyspace name over 255 bytes, or past etcd's limits (counting one compare
// per keyspace named), or for a put whose ttl is zero or less (write_batch
// keeps a bad ttl as a negative one) or not shorter than etcd's largest lease TTL
// (9,000,000,000 s: every put of the batch is checked, also one a later op
// on its key replaces).
inline result<etcd_compiled_batch> etcd_compile_batch(const write_batch& batch, const etcd_keyspace& keys,
                                                      const etcd_options& opts) {
  std::map<std::string_view, std::vector<write_batch::op>> by_keyspace;
  for (const auto& op : batch) {
    if (auto bad = keyspace_name_error(op.keyspace)) return *bad;
    if (op.kind == write_batch::op_kind::put && op.ttl.count() < 0) {
      return keel::error(errc::invalid_argument,
                         "a ttl must be positive; a put of the batch has one of zero or less; nothing was written");
    }
    if (op.kind == write_batch::op_kind::put && op.ttl.count() / 1000 >= etcd_max_lease_ttl_s)
      return etcd_ttl_too_long(op.ttl);
    by_keyspace[op.keyspace].push_back(op);
  }
  etcd_compiled_batch out;
  for (const auto& [name, ops] : by_keyspace) {
    auto r = name.empty() ? etcd_compile_keyspace_ops(ops, keys, out.ops, out.bytes, out.leased)
                          : etcd_compile_keyspace_ops(ops, keys.named(name), out.ops, out.bytes, out.leased);
    if (!r) return std::move(r).error();
    if (!name.empty()) {
      out.keyspaces.emplace_back(name);
      out.bytes += keys.list_entry(name).size() + 16;
    }
  }
  if (out.ops.size() > opts.max_txn_ops || out.keyspaces.size() > opts.max_txn_ops) {
    return keel::error(errc::invalid_argument,
                       "etcd: the batch has " + std::to_string(out.ops.size()) +
                           " operations after merging ops on the same key (and needs " +
                           std::to_string(out.keyspaces.size()) +
                           " compares); etcd applies at most " + std::to_string(opts.max_txn_ops) +
                           " of each in one transaction (--max-txn-ops, etcd_options::max_txn_ops). keel does not "
                           "split a batch (it would no longer be atomic): write it as several batches, or raise the "
                           "limit on every member and in etcd_options");
  }
  if (auto bad = etcd_request_too_large(out.bytes, "the batch", opts)) return *bad;
  return out;
}

// The compare "keyspace `name` exists" (its list entry has been created),
// or, with `generation` > 0, "keyspace `name` is still the one created at
// revision `generation`" (a handle's keyspace, not a later one of that name).
inline std::string etcd_keyspace_guard(const etcd_keyspace& keys, std::string_view name, std::int64_t generation = 0) {
  return json_object()
      .bytes("key", keys.list_entry(name))
      .text("target", "CREATE")
      .text("result", generation > 0 ? "EQUAL" : "GREATER")
      .integer("create_revision", generation)
      .str();
}

// The compares "keyspace `name` existed at revision `start` and was not
// created again since" (its list entry was created at or before `start`):
// a transaction that began at `start` may still use it.
inline etcd_txn_ops etcd_keyspace_guard_since(const etcd_keyspace& keys, std::string_view name, std::int64_t start) {
  return {etcd_keyspace_guard(keys, name),
          json_object()
              .bytes("key", keys.list_entry(name))
              .text("target", "CREATE")
              .text("result", "LESS")
              .integer("create_revision", start + 1)
              .str()};
}

// A keys_only range of keyspace `name`'s list entry (a failure branch op:
// tells which keyspace was missing, or created when).
inline std::string etcd_keyspace_probe(const etcd_keyspace& keys, std::string_view name) {
  return json_object()
      .raw("request_range", json_object().bytes("key", keys.list_entry(name)).boolean("keys_only", true).str())
      .str();
}

// Sends {compare, success, failure} as one txn and returns etcd's answer
// ("succeeded" says whether the compares held). A write (never re-sent once
// it may have reached a member) unless `kind` says read (no op writes).
inline result<nlohmann::json> etcd_send_txn_answer(const etcd_transport& t, const etcd_txn_ops& compares,
                                                   const etcd_txn_ops& success, const etcd_txn_ops& failure,
                                                   std::string_view what, call_kind kind = call_kind::write) {
  std::string body = "{";
  auto array = [&](const char* name, const etcd_txn_ops& v) {
    if (v.empty()) return;
    if (body.size() > 1) body += ',';
    body += '"';
    body += name;
    body += "\":[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) body += ',';
      body += v[i];
    }
    body += ']';
  };
  array("compare", compares);
  array("success", success);
  array("failure", failure);
  body += '}';
  return t.call("kv/txn", body, kind, what);
}

// Sends {compare, success} as one txn; a write (never re-sent once it may
// have reached a member). With compares, returns whether they held (etcd then
// applied the success ops; else nothing).
inline result<bool> etcd_send_txn(const etcd_transport& t, const etcd_txn_ops& compares, const etcd_txn_ops& success,
                                  std::string_view what) {
  auto r = etcd_send_txn_answer(t, compares, success, {}, what);
  if (!r) return std::move(r).error();
  return r->value("succeeded", false);
}

// A read-only txn (success = range requests); a read (retried elsewhere).
inline result<nlohmann::json> etcd_read_txn(const etcd_transport& t, const etcd_txn_ops& ops, std::string_view what) {
  std::string body = "{\"success\":[";
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (i) body += ',';
    body += ops[i];
  }
  body += "]}";
  return t.call("kv/txn", body, call_kind::read, what);
}

// The i-th response_range of a txn answer; nullptr when absent.
inline const nlohmann::json* etcd_txn_range_response(const nlohmann::json& answer, std::size_t i) {
  auto responses = answer.find("responses");
  if (responses == answer.end() || !responses->is_array() || i >= responses->size()) return nullptr;
  auto f = (*responses)[i].find("response_range");
  return f == (*responses)[i].end() ? nullptr : &*f;
}

// The first kv of a range response; nullptr when it found none.
inline const nlohmann::json* etcd_first_kv(const nlohmann::json* range_response) {
  if (!range_response) return nullptr;
  auto kvs = range_response->find("kvs");
  if (kvs == range_response->end() || !kvs->is_array() || kvs->empty()) return nullptr;
  return &(*kvs)[0];
}

// multi_get: read-only txns of range requests, one when the keys fit
// max_txn_ops, else several, all at the revision the first one read. With
// `guard` (a compare, etcd_keyspace_guard), the first txn reads only if it
// holds, else errc::not_found (the keyspace is gone).
inline result<std::vector<std::optional<std::string>>> etcd_multi_get(const etcd_transport& t,
                                                                      const etcd_keyspace& keys,
                                                                      const etcd_options& opts,
                                                                      std::span<const std::string_view> wanted,
                                                                      const std::string& guard = {}) {
  if (wanted.empty() && !guard.empty()) {
    auto r = etcd_send_txn_answer(t, {guard}, {}, {}, "multi_get", call_kind::read);
    if (!r) return std::move(r).error();
    if (!r->value("succeeded", false)) return keel::error(errc::not_found, "etcd: the keyspace was dropped");
    return std::vector<std::optional<std::string>>();
  }
  std::vector<std::optional<std::string>> out;
  out.reserve(wanted.size());
  std::int64_t revision = 0;
  for (std::size_t at = 0; at < wanted.size(); at += opts.max_txn_ops) {
    const std::size_t n = std::min(opts.max_txn_ops, wanted.size() - at);
    etcd_txn_ops ops;
    ops.reserve(n);
    for (std::size_t i = at; i < at + n; ++i)
      ops.push_back(json_object()
                        .raw("request_range", etcd_range_body(keys.key(wanted[i]), {}, revision, 0, false, false))
                        .str());
    const bool guarded = at == 0 && !guard.empty();
    auto r = guarded ? etcd_send_txn_answer(t, {guard}, ops, {}, "multi_get", call_kind::read)
                     : etcd_read_txn(t, ops, "multi_get");
    if (!r) return std::move(r).error();
    if (guarded && !r->value("succeeded", false)) return keel::error(errc::not_found, "etcd: the keyspace was dropped");
    if (revision == 0) revision = etcd_header_revision(*r);
    for (std::size_t i = 0; i < n; ++i) {
      if (const auto* kv = etcd_first_kv(etcd_txn_range_response(*r, i)))
        out.emplace_back(json_bytes(*kv, "value"));
      else
        out.emplace_back(std::nullopt);
    }
  }
  return out;
}

// The mod_revision of each key at `revision` (0: absent), in order.
inline result<std::vector<std::int64_t>> etcd_mod_revisions_at(const etcd_transport& t, const etcd_keyspace& keys,
                                                               const etcd_options& opts,
                                                               const std::vector<std::string_view>& wanted,
                                                               std::int64_t revision) {
  std::vector<std::int64_t> out;
  out.reserve(wanted.size());
  for (std::size_t at = 0; at < wanted.size(); at += opts.max_txn_ops) {
    const std::size_t n = std::min(opts.max_txn_ops, wanted.size() - at);
    etcd_txn_ops ops;
    for (std::size_t i = at; i < at + n; ++i)
      ops.push_back(json_object()
                        .raw("request_range", etcd_range_body(keys.key(wanted[i]), {}, revision, 0, false, false, true))
                        .str());
    auto r = etcd_read_txn(t, ops, "transaction validation");
    if (!r) return std::move(r).error();
    for (std::size_t i = 0; i < n; ++i) {
      const auto* kv = etcd_first_kv(etcd_txn_range_response(*r, i));
      out.push_back(kv ? json_int(*kv, "mod_revision") : 0);
    }
  }
  return out;
}

// The compares under which a keel transaction that read at revision
// R = tx.start may commit. The read set is first read again at R (keys
// only), then:
//   each key read:            mod_revision == its mod_revision at R (0 when
//                             absent): catches puts, erases, re-creations;
//   each range scanned:       no key in it has mod_revision > R (catches
//                             puts and new keys), and each key it held at R
//                             has the same mod_revision (catches erases:
//                             etcd's range compare does not see a key that
//                             left the range).
// A write that changed nothing in etcd (erasing an absent key) is not seen:
// it leaves no trace in etcd, and the result is still serializable (every
// value the transaction read is unchanged when it commits).
// These are the compares of one keyspace's reads (`keys`), appended to
// `compares`; etcd_transaction_compares checks the limit.
inline result<void> etcd_validation_compares(const etcd_transport& t, const etcd_keyspace& keys,
                                            const etcd_options& opts, std::int64_t start,
                                            const std::vector<std::string>& read_keys,
                                            const std::vector<key_range>& read_ranges, etcd_txn_ops& compares) {
  auto compare_mod = [&](std::string_view key, std::string_view range_end, const char* result, std::int64_t rev) {
    json_object c;
    c.bytes("key", key);
    if (!range_end.empty()) c.bytes("range_end", range_end);
    c.text("target", "MOD").text("result", result).integer("mod_revision", rev);
    compares.push_back(c.str());
  };
  // Read again, at R, what was read: point keys in read txns, ranges by pages.
  if (!read_keys.empty()) {
    std::vector<std::string_view> read(read_keys.begin(), read_keys.end());
    auto mods = etcd_mod_revisions_at(t, keys, opts, read, start);
    if (!mods) return std::move(mods).error();
    for (std::size_t i = 0; i < read.size(); ++i) compare_mod(keys.key(read[i]), {}, "EQUAL", (*mods)[i]);
  }
  for (const auto& range : read_ranges) {
    auto bounds = keys.range(range);
    if (!bounds) continue;
    compare_mod(bounds->first, bounds->second, "LESS", start + 1);
    std::string lo = bounds->first;
    for (;;) {
      if (compares.size() > opts.max_txn_ops) break;
      auto page = t.call("kv/range", etcd_range_body(lo, bounds->second, start, opts.max_txn_ops, false, false, true),
                         call_kind::read, "transaction validation");
      if (!page) return std::move(page).error();
      auto r = parse_etcd_range(*page);
      for (const auto& kv : r.kvs) compare_mod(kv.etcd_key, {}, "EQUAL", kv.mod_revision);
      if (!r.more || r.kvs.empty()) break;
      lo = r.kvs.back().etcd_key + '\0';
    }
  }
  return {};
}

// The compares of a whole transaction record: its default keyspace's reads
// (`keys`) and those of each keyspace in tx.keyspace_reads, appended to
// `compares` (which may already hold others, e.g. keyspace guards).
// invalid_argument when more than max_txn_ops compares are needed in all
// (nothing sent yet).
inline result<void> etcd_transaction_compares(const etcd_transport& t, const etcd_keyspace& keys,
                                              const etcd_options& opts, const tx_record& tx,
                                              etcd_txn_ops& compares) {
  const auto start = static_cast<std::int64_t>(tx.start);
  auto r = etcd_validation_compares(t, keys, opts, start, tx.read_keys, tx.read_ranges, compares);
  for (const auto& ks : tx.keyspace_reads) {
    if (!r || compares.size() > opts.max_txn_ops) break;
    if (auto bad = keyspace_name_error(ks.keyspace)) return *bad;
    const etcd_keyspace mapped = ks.keyspace.empty() ? keys : keys.named(ks.keyspace);
    r = etcd_validation_compares(t, mapped, opts, start, ks.read_keys, ks.read_ranges, compares);
  }
  if (!r) return r;
  if (compares.size() > opts.max_txn_ops) {
    return keel::error(errc::invalid_argument,
                       "etcd: this transaction's read set needs more than " + std::to_string(opts.max_txn_ops) +
                           " compares (one per key read, one per range scanned plus one per key it held, one per "
                           "keyspace it writes), etcd's limit per txn (--max-txn-ops, etcd_options::max_txn_ops); "
                           "nothing was written. Read fewer keys in one transaction, or raise the limit on every "
                           "member and in etcd_options");
  }
  return {};
}

}  // namespace keel::detail
