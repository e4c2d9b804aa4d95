// keel::detail: range reads of an etcd store, and scans paged at one
// revision in either direction, for EtcdPolicy (<keel/etcd.hpp>). Private:
// names may change.
//
// A range request (kv/range) returns at most `limit` keys of [key,
// range_end) and says whether more remain ("more"). A scan reads its range
// page by page, each page a range request with limit = page_size at the
// revision the first page read, so one scan never mixes revisions (a
// revision compacted away meanwhile gives errc::snapshot_expired). A forward
// scan moves its lower bound past the last key read (last + '\0'); a reverse
// scan asks for sort_order DESCEND on KEY and moves its exclusive upper bound
// down to the last key read. etcd counts every key up to range_end for each
// limited request, so a page costs time in proportion to what is left of the
// range: pages of about 1000 keys (etcd_options::page_size) and the tightest
// range end.
//
// Thread safety: the functions are thread-safe (the transport is); one
// etcd_paged_scan is used by one thread at a time. Errors: a page that cannot
// be read ends the scan with the transport's error (error()); nothing throws
// except std::bad_alloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "codec.hpp"
#include "transport.hpp"

namespace keel::detail {

// One key of a range answer, with the etcd key (prefix included).
struct etcd_kv {
  std::string etcd_key, value;
  std::int64_t mod_revision = 0;
  std::int64_t create_revision = 0;
  std::int64_t lease = 0;  // the lease the key is attached to (0: none)
};

struct etcd_range_page {
  std::vector<etcd_kv> kvs;
  bool more = false;
  std::int64_t revision = 0;  // header.revision (the current one, even for historical reads)
};

// The body of a range request over [lo, hi) (hi empty: the key lo alone);
// limit 0: no limit; revision 0: the current one. serializable: served by the
// member asked without a quorum round trip.
inline std::string etcd_range_body(std::string_view lo, std::string_view hi, std::int64_t revision, std::size_t limit,
                                   bool reversed, bool serializable, bool keys_only = false) {
  json_object o;
  o.bytes("key", lo);
  if (!hi.empty()) o.bytes("range_end", hi);
  if (limit) o.integer("limit", static_cast<std::int64_t>(limit));
  if (revision > 0) o.integer("revision", revision);
  if (reversed) o.text("sort_order", "DESCEND").text("sort_target", "KEY");
  if (serializable) o.boolean("serializable", true);
  if (keys_only) o.boolean("keys_only", true);
  return o.str();
}

inline etcd_range_page parse_etcd_range(const nlohmann::json& j) {
  etcd_range_page r;
  r.revision = etcd_header_revision(j);
  r.more = j.value("more", false);
  if (auto kvs = j.find("kvs"); kvs != j.end() && kvs->is_array()) {
    r.kvs.reserve(kvs->size());
    for (const auto& x : *kvs)
      r.kvs.push_back({json_bytes(x, "key"), json_bytes(x, "value"), json_int(x, "mod_revision"),
                       json_int(x, "create_revision"), json_int(x, "lease")});
  }
  return r;
}

// One linearizable range request (a read: retried on the next endpoint).
inline result<etcd_range_page> read_etcd_range(const etcd_transport& t, std::string_view lo, std::string_view hi,
                                               std::int64_t revision, std::size_t limit, bool reversed,
                                               std::string_view what) {
  auto r = t.call("kv/range", etcd_range_body(lo, hi, revision, limit, reversed, false), call_kind::read, what);
  if (!r) return std::move(r).error();
  return parse_etcd_range(*r);
}

// ---------------------------------------------------------------------------
// The state of one scan: what is left of its etcd range, its revision, and
// the page in hand (user keys, in the scan's order). The owner (EtcdPolicy's
// cursor) reads pages through fetch() and steps through them with step().
// ---------------------------------------------------------------------------
class etcd_paged_scan {
 public:
  // Nothing to read (an empty range, or a failed cursor).
  etcd_paged_scan() = default;
  // The etcd range [lo, hi) (hi "\0": no upper bound), read at `revision`
  // (0: at the revision of the first page). Reads nothing until fetch().
  etcd_paged_scan(std::string lo, std::string hi, std::int64_t revision, bool reversed)
      : lo_(std::move(lo)), hi_(std::move(hi)), revision_(revision), reversed_(reversed), more_(true) {}

  bool valid() const noexcept { return pos_ < page_.size(); }
  std::string_view key() const noexcept { return page_[pos_].key; }
  std::string_view value() const noexcept { return page_[pos_].value; }
  // The lease the current key is attached to at the scan's revision (0: none).
  std::int64_t lease() const noexcept { return page_[pos_].lease; }
  // The leases of the page in hand from the current entry on (0s included).
  std::vector<std::int64_t> leases_left() const {
    std::vector<std::int64_t> out;
    for (std::size_t i = pos_; i < page_.size(); ++i) out.push_back(page_[i].lease);
    return out;
  }
  const std::optional<keel::error>& error() const noexcept { return error_; }
  // The revision the scan reads (0 until its first page, when it was 0).
  std::int64_t revision() const noexcept { return revision_; }

  // Moves to the next entry of the page in hand (valid() must hold). True
  // when the page is used up and another must be read (call fetch()).
  bool step() {
    if (++pos_ < page_.size()) return false;
    page_.clear();
    pos_ = 0;
    return more_;
  }

  // Reads the next page (page_size keys) through `t`; on failure the scan
  // ends with the error. True when this page fixed the scan's revision (the
  // first page of a scan started at revision 0).
  bool fetch(const etcd_transport& t, const etcd_keyspace& keys, std::size_t page_size) {
    auto r = read_etcd_range(t, lo_, hi_, revision_, page_size, reversed_, "scan");
    if (!r) {
      fail(std::move(r).error());
      return false;
    }
    bool fixed = false;
    if (revision_ == 0) {
      revision_ = r->revision;
      fixed = true;
    }
    more_ = r->more && !r->kvs.empty();
    if (more_) {
      const std::string& last = r->kvs.back().etcd_key;
      if (reversed_)
        hi_ = last;  // exclusive
      else
        lo_ = last + '\0';
    }
    page_.clear();
    page_.reserve(r->kvs.size());
    for (auto& kv : r->kvs) page_.push_back({keys.user_key(kv.etcd_key), std::move(kv.value), kv.lease});
    pos_ = 0;
    return fixed;
  }

  // Ends the scan with `e` (valid() is false from now on).
  void fail(keel::error e) {
    page_.clear();
    pos_ = 0;
    more_ = false;
    error_ = std::move(e);
  }

 private:
  std::string lo_, hi_;  // etcd keys of what is left to read; hi_ "\0": no upper bound
  std::int64_t revision_ = 0;
  bool reversed_ = false;
  bool more_ = false;
  struct entry {
    std::string key, value;  // the user key
    std::int64_t lease;
  };
  std::vector<entry> page_;
  std::size_t pos_ = 0;
  std::optional<keel::error> error_;
};

}  // namespace keel::detail
