// keel: etcd_options, what EtcdPolicy (<keel/etcd.hpp>) opens with. Needs no
// libcurl, so that store_config (<keel/open_store.hpp>) can carry it; also
// included as <keel/etcd_options.hpp>. EtcdPolicy::open checks the values
// (invalid_argument naming the field).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace keel {

struct etcd_options {
  // Client URLs of the cluster's members, "http://HOST:PORT" (at least one).
  // Any member serves any request; the list is tried in rotation.
  std::vector<std::string> endpoints;
  // Every key of this store lives under this prefix (required, non-empty).
  std::string prefix;
  // TCP connect timeout per attempt. Also how long an operation keeps trying
  // when no endpoint accepts a connection at all (etcd not running there):
  // once it has passed and every endpoint was tried, the operation fails with
  // errc::unavailable naming each endpoint, before operation_timeout.
  std::chrono::milliseconds connect_timeout{1000};
  // Deadline of one attempt on one endpoint. Keep it well under etcd's own
  // request timeout (7 s by default): after a leader failure a member answers
  // only when the election is over, and a short deadline lets a read move on
  // to another member (a write that timed out is reported outcome_unknown).
  std::chrono::milliseconds request_timeout{2000};
  // Deadline of one operation, all attempts and endpoints included.
  std::chrono::milliseconds operation_timeout{10000};
  // Keys per page of a scan (one range request per page).
  std::size_t page_size = 1000;
  // etcd's server limits (--max-txn-ops, --max-request-bytes). Set them here
  // too when the cluster runs with other values: keel checks batches against
  // them before sending, so that the error names the limit.
  std::size_t max_txn_ops = 128;
  std::size_t max_request_bytes = 1572864;
  // get/contains served by the member asked without a quorum round
  // trip: faster, may be stale. multi_get, scans, snapshots and
  // transactions stay linearizable.
  bool serializable_reads = false;
};

}  // namespace keel
