// keel::detail: the request pieces of EtcdPolicy's keyspaces
// (<keel/etcd.hpp>; the layout is etcd_keyspace's, codec.hpp, and
// docs/cluster.md "Keyspaces"). Private: names may change.
//
// The list of keyspaces lives in etcd (one list entry per keyspace, under the
// store's reserved area), so every client of the store sees the same
// keyspaces and keyspaces() reads the list, not the data. A keyspace's
// generation is its list entry's create_revision: dropping deletes the entry
// and recreating puts a new one with a new create_revision, so a handle
// (which carries the generation it was opened with) never reaches a later
// keyspace of its name. Every operation through a handle is guarded by a
// compare on that create_revision in the same txn (writes, point reads), or
// reads the entry at the revision it then reads the data at (scans,
// snapshot reads).
//
// Thread safety: pure functions, or calls through the (thread-safe)
// transport. Errors: keel::error values; nothing throws except
// std::bad_alloc.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../detail/keyspace_text.hpp"
#include "../error.hpp"
#include "codec.hpp"
#include "paging.hpp"
#include "transactions.hpp"
#include "transport.hpp"

namespace keel::detail {

// What an operation through a handle to a dropped keyspace gives.
inline keel::error etcd_keyspace_gone(std::string_view name) {
  return keel::error(errc::not_found, "etcd: keyspace " + keyspace_text(name) +
                                          "' was dropped (recreating the name makes a new keyspace: open it again)");
}
inline keel::error etcd_keyspace_missing(std::string_view name) {
  return keel::error(errc::not_found, "etcd: keyspace " + keyspace_text(name) + " does not exist");
}

// Txn ops: a put, a delete of one key (hi empty) or of [lo, hi), a range
// read of one key (at `revision`, 0: the current one).
inline std::string etcd_put_op(std::string_view key, std::string_view value) {
  return json_object().raw("request_put", json_object().bytes("key", key).bytes("value", value).str()).str();
}
inline std::string etcd_delete_op(std::string_view lo, std::string_view hi = {}) {
  json_object inner;
  inner.bytes("key", lo);
  if (!hi.empty()) inner.bytes("range_end", hi);
  return json_object().raw("request_delete_range", inner.str()).str();
}
inline std::string etcd_get_op(std::string_view key, std::int64_t revision = 0, bool count_only = false) {
  json_object inner;
  inner.bytes("key", key);
  if (revision > 0) inner.integer("revision", revision);
  if (count_only) inner.boolean("count_only", true);
  return json_object().raw("request_range", inner.str()).str();
}

// The first kv of the i-th range response of a txn answer; nullptr if none.
inline const nlohmann::json* etcd_txn_kv(const nlohmann::json& answer, std::size_t i) {
  return etcd_first_kv(etcd_txn_range_response(answer, i));
}

// The generation (create_revision of the list entry) of keyspace `name`;
// creates it first when `create` and it is missing (one txn: put the entry
// only if it has no create_revision, then read it back: concurrent creators
// agree on one generation). errc::not_found when missing and not `create`.
inline result<std::int64_t> etcd_open_keyspace(const etcd_transport& t, const etcd_keyspace& keys,
                                               std::string_view name, bool create) {
  const std::string entry = keys.list_entry(name);
  const std::string read = etcd_get_op(entry);
  result<nlohmann::json> r =
      create ? etcd_send_txn_answer(t,
                                    {json_object()
                                         .bytes("key", entry)
                                         .text("target", "CREATE")
                                         .text("result", "EQUAL")
                                         .integer("create_revision", 0)
                                         .str()},
                                    {etcd_put_op(entry, {}), read}, {read}, "create keyspace")
             : etcd_send_txn_answer(t, {}, {read}, {}, "open keyspace", call_kind::read);
  if (!r) return std::move(r).error();
  const std::size_t at = create && r->value("succeeded", false) ? 1 : 0;
  const auto* kv = etcd_txn_kv(*r, at);
  if (!kv) return etcd_keyspace_missing(name);
  return json_int(*kv, "create_revision");
}

// Every keyspace name in the list (sorted by etcd's byte order), read page by
// page at one revision; "" not included.
inline result<std::vector<std::string>> etcd_list_keyspaces(const etcd_transport& t, const etcd_keyspace& keys,
                                                            std::size_t page_size) {
  auto [lo, hi] = keys.list_range();
  const std::size_t skip = lo.size();
  std::vector<std::string> names;
  std::int64_t revision = 0;
  for (;;) {
    auto page = read_etcd_range(t, lo, hi, revision, page_size, false, "list keyspaces");
    if (!page) return std::move(page).error();
    if (revision == 0) revision = page->revision;
    for (const auto& kv : page->kvs) names.push_back(kv.etcd_key.substr(skip));
    if (!page->more || page->kvs.empty()) break;
    lo = page->kvs.back().etcd_key + '\0';
  }
  return names;
}

// Whether keyspace `name` of generation `generation` exists at `revision`
// (0: now): reads its list entry there. Returns the revision read (now's,
// when 0), errc::not_found (etcd_keyspace_gone) when the entry is absent or
// of another generation.
inline result<std::int64_t> etcd_keyspace_at(const etcd_transport& t, const etcd_keyspace& keys,
                                             std::string_view name, std::int64_t generation, std::int64_t revision) {
  if (revision > 0 && generation > revision) return etcd_keyspace_gone(name);  // created after that revision
  auto r = read_etcd_range(t, keys.list_entry(name), {}, revision, 0, false, "keyspace check");
  if (!r) return std::move(r).error();
  std::int64_t created = 0;
  if (!r->kvs.empty()) created = r->kvs.front().create_revision;
  if (created != generation) return etcd_keyspace_gone(name);
  return revision > 0 ? revision : r->revision;
}

// The name of the first keyspace whose probe (etcd_keyspace_probe, in the
// failure branch of a txn, in the order of `names`) found no list entry, or
// (`start` > 0) one created after revision `start`.
inline std::optional<std::string> etcd_missing_keyspace(const nlohmann::json& answer,
                                                        const std::vector<std::string>& names, std::int64_t start = 0) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto* kv = etcd_txn_kv(answer, i);
    if (!kv || (start > 0 && json_int(*kv, "create_revision") > start)) return names[i];
  }
  return std::nullopt;
}

}  // namespace keel::detail
