// keel: the cluster backend, EtcdPolicy, over an etcd cluster (3.4 or later)
// through etcd's v3 HTTP/JSON gateway. Needs libcurl and nlohmann-json (Meson:
// keel_etcd_dep); no other keel header does.
//
//   keel::etcd_options o;
//   o.endpoints = {"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"};
//   o.prefix = "myapp/";
//   auto store = keel::etcd_store::open(o);
//
// A default-keyspace key is stored as prefix + key, other keyspaces after it
// under the prefix (etcd/codec.hpp): the prefix is a namespace (stores with
// different prefixes never see each other's keys); an empty key is allowed.
// Many processes on many machines may open the same prefix at once.
//
// How each operation maps onto etcd (docs/cluster.md has the details):
//   put / erase          one put / deleterange request; a put with a ttl is a txn with a lease (etcd/leases.hpp)
//   write(batch)         one txn (all or nothing); the batch is merged first
//                        (last op per key wins) and must fit etcd's limits:
//                        etcd_options::max_txn_ops operations and
//                        max_request_bytes bytes, else invalid_argument naming
//                        the limit. A batch is never split.
//   get / contains       a linearizable range (serializable_reads: served by
//                        the member asked, possibly stale)
//   scan                 ranges of page_size keys, all read at the revision of
//                        the first page: a cursor never mixes revisions
//   snapshot             a revision (taken from a linearizable read); reads
//                        through it give errc::snapshot_expired once that
//                        revision is compacted away
//   keyspaces            listed in etcd; drop = one txn (etcd/keyspaces.hpp)
//   watch                etcd's own watch (/v3/watch stream): seq = revision
//   close                frees connections; leases keel granted expire by themselves (not revoked)
// Errors: errc::unavailable (not applied: no endpoint reachable, no leader or
// quorum, refused), errc::outcome_unknown (a write timed out or lost its
// connection after it was sent: it may or may not have been applied),
// errc::snapshot_expired, errc::no_space (etcd's database quota, NOSPACE).
// Reads fail over to the next endpoint by themselves; writes only when they
// were certainly not applied (an outcome_unknown write is never re-sent, but
// the calls after it start on the next endpoint).
//
// The parts (include/keel/etcd/*.hpp): policy (EtcdPolicy, the lock order), transport, codec, paging,
// transactions, keyspaces, leases, watch, watch_stream, options; doctor: keel::diagnose_cluster (`keel doctor`).
#pragma once

#include <cstdint>
#include <utility>

#include "etcd/doctor.hpp"
#include "etcd/options.hpp"
#include "etcd/policy.hpp"
#include "store.hpp"

namespace keel {

using etcd_store = basic_store<EtcdPolicy>;

// What basic_store::stats() asks of the backend: the exact key count of the
// default keyspace; size_bytes is the etcd database size of the member that
// answered (the whole cluster's data, every prefix and its history).
// properties: etcd.revision, etcd.members, etcd.leader, etcd.member_id,
// etcd.raft_index, etcd.raft_term, etcd.db_size, etcd.db_size_in_use,
// etcd.alarms (count of errors/alarms reported).
inline result<void> backend_stats(const EtcdPolicy& p, store_stats& s) {
  auto st = p.status();
  if (!st) return std::move(st).error();
  s.keys = st->keys;
  s.keys_exact = true;
  s.size_bytes = static_cast<std::uint64_t>(st->db_size);
  s.properties = {{"etcd.revision", static_cast<std::uint64_t>(st->revision)},
                  {"etcd.members", st->members},
                  {"etcd.leader", st->leader},
                  {"etcd.member_id", st->member_id},
                  {"etcd.raft_index", static_cast<std::uint64_t>(st->raft_index)},
                  {"etcd.raft_term", static_cast<std::uint64_t>(st->raft_term)},
                  {"etcd.db_size", static_cast<std::uint64_t>(st->db_size)},
                  {"etcd.db_size_in_use", static_cast<std::uint64_t>(st->db_size_in_use)},
                  {"etcd.alarms", st->errors.size()}};
  return {};
}

}  // namespace keel
