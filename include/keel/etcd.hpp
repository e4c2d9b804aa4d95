// keel: the cluster backend, EtcdPolicy, over an etcd cluster (3.4 or later)
// through etcd's v3 HTTP/JSON gateway. Needs libcurl and nlohmann-json (Meson:
// keel_etcd_dep); no other keel header does.
//
//   keel::etcd_options o;
//   o.endpoints = {"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"};
//   o.prefix = "myapp/";
//   auto store = keel::etcd_store::open(o);
//
// Every key of the store is stored in etcd as prefix + key, so the prefix is a
// namespace: stores with different prefixes never see each other's keys, and
// an empty key is allowed (etcd forbids empty keys; prefix + "" is not empty).
// Many processes on many machines may open the same prefix at once.
//
// How each operation maps onto etcd (docs/cluster.md has the details):
//   put / erase          one put / deleterange request
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
//   close                frees connections; no server-side state exists
// Errors: errc::unavailable (not applied: no endpoint reachable, no leader or
// quorum, refused), errc::outcome_unknown (a write timed out or lost its
// connection after it was sent: it may or may not have been applied),
// errc::snapshot_expired, errc::no_space (etcd's database quota, NOSPACE).
// Reads fail over to the next endpoint by themselves; writes only when they
// were certainly not applied (an outcome_unknown write is never re-sent, but
// the calls after it start on the next endpoint).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/etcd_transport.hpp"
#include "etcd_options.hpp"
#include "store.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// EtcdPolicy: see the top of this file and store.hpp for the contract.
// Thread safety: every member may be called concurrently, close() included.
// ---------------------------------------------------------------------------
class EtcdPolicy : public std::enable_shared_from_this<EtcdPolicy> {
  using json = nlohmann::json;

  // A revision some live view of this process still reads (compact() never
  // goes past it). Shared by copies of a snapshot; unregisters on destruction.
  class pin {
   public:
    pin(std::shared_ptr<const EtcdPolicy> owner, std::int64_t rev) : owner_(std::move(owner)), rev_(rev) {
      std::lock_guard lock(owner_->pins_mutex_);
      owner_->pins_.insert(rev_);
    }
    pin(const pin&) = delete;
    pin& operator=(const pin&) = delete;
    ~pin() {
      std::lock_guard lock(owner_->pins_mutex_);
      owner_->pins_.erase(owner_->pins_.find(rev_));
    }

   private:
    std::shared_ptr<const EtcdPolicy> owner_;
    std::int64_t rev_;
  };

 public:
  using options = etcd_options;
  static constexpr keel::backend backend_kind = keel::backend::etcd;

  // ---- cursor -------------------------------------------------------------
  // Reads its range page by page at one revision (the first page's). One
  // cursor is used by one thread at a time.
  class cursor_type {
   public:
    bool valid() const noexcept { return pos_ < page_.size(); }
    std::string_view key() const noexcept { return page_[pos_].first; }
    std::string_view value() const noexcept { return page_[pos_].second; }
    const std::optional<keel::error>& error() const noexcept { return error_; }

    void next() {
      if (!valid()) return;
      if (!owner_->is_open()) return fail(closed_error());
      if (++pos_ < page_.size()) return;
      page_.clear();
      pos_ = 0;
      if (more_) fetch();
    }

   private:
    friend class EtcdPolicy;
    explicit cursor_type(keel::error e) : error_(std::move(e)) {}
    cursor_type(std::shared_ptr<const EtcdPolicy> owner, const key_range& range, std::int64_t revision,
                std::shared_ptr<pin> held)
        : owner_(std::move(owner)), revision_(revision), pin_(std::move(held)), reversed_(range.is_reversed()) {
      auto bounds = owner_->etcd_range(range);
      if (!bounds) return;  // empty range
      lo_ = std::move(bounds->first);
      hi_ = std::move(bounds->second);
      more_ = true;
      fetch();
    }
    void fail(keel::error e) {
      page_.clear();
      pos_ = 0;
      more_ = false;
      error_ = std::move(e);
    }
    void fetch() {
      auto r = owner_->read_range(lo_, hi_, revision_, owner_->opts_.page_size, reversed_, "scan");
      if (!r) return fail(std::move(r).error());
      if (revision_ == 0) {
        revision_ = r->revision;
        pin_ = std::make_shared<pin>(owner_, revision_);
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
      const std::size_t p = owner_->opts_.prefix.size();
      for (auto& kv : r->kvs) page_.emplace_back(kv.etcd_key.substr(p), std::move(kv.value));
      pos_ = 0;
    }

    std::shared_ptr<const EtcdPolicy> owner_;
    std::string lo_, hi_;  // etcd keys of what is left to read; hi_ "\0": no upper bound
    std::int64_t revision_ = 0;
    std::shared_ptr<pin> pin_;
    bool reversed_ = false;
    bool more_ = false;
    std::vector<std::pair<std::string, std::string>> page_;  // user keys
    std::size_t pos_ = 0;
    std::optional<keel::error> error_;
  };

  // ---- snapshot -----------------------------------------------------------
  // A revision. Copies share it; compact() of this process keeps it readable
  // while a copy lives (another process's compaction does not: reads then
  // give errc::snapshot_expired).
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->get_at(key, revision_, false);
    }
    result<bool> contains(std::string_view key) const {
      if (!owner_->is_open()) return closed_error();
      return owner_->contains_at(key, revision_, false);
    }
    cursor_type scan(const key_range& range) const {
      if (!owner_->is_open()) return cursor_type(closed_error());
      return cursor_type(owner_, range, revision_, pin_);
    }
    // The etcd revision this view reads.
    std::int64_t revision() const noexcept { return revision_; }

   private:
    friend class EtcdPolicy;
    snapshot_type(std::shared_ptr<const EtcdPolicy> owner, std::int64_t revision)
        : owner_(std::move(owner)), revision_(revision), pin_(std::make_shared<pin>(owner_, revision)) {}
    std::shared_ptr<const EtcdPolicy> owner_;
    std::int64_t revision_;
    std::shared_ptr<pin> pin_;
  };

  // ---- store --------------------------------------------------------------
  // Checks the options and that the cluster answers a linearizable read (so
  // a store that opens can serve; errc::unavailable otherwise).
  static result<std::shared_ptr<EtcdPolicy>> open(const options& opts) {
    if (opts.endpoints.empty()) return keel::error(errc::invalid_argument, "etcd: etcd_options::endpoints is empty");
    if (opts.prefix.empty()) {
      return keel::error(errc::invalid_argument,
                         "etcd: etcd_options::prefix is empty; every store needs its own non-empty key prefix "
                         "(e.g. \"myapp/\")");
    }
    for (const auto& e : opts.endpoints) {
      if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
        return keel::error(errc::invalid_argument,
                           "etcd: endpoint '" + e + "' must start with http:// or https:// (e.g. http://127.0.0.1:2379)");
      }
    }
    if (opts.page_size == 0 || opts.max_txn_ops == 0 || opts.max_request_bytes == 0) {
      return keel::error(errc::invalid_argument, "etcd: page_size, max_txn_ops and max_request_bytes must be > 0");
    }
    auto p = std::make_shared<EtcdPolicy>(opts);
    auto probe = p->current_revision();
    if (!probe) return std::move(probe).error();
    return p;
  }

  explicit EtcdPolicy(const options& opts)
      : opts_(opts), prefix_end_(key_range::prefix_successor(opts.prefix).value_or(std::string(1, '\0'))),
        transport_(make_transport_config(opts)) {}
  EtcdPolicy(const EtcdPolicy&) = delete;
  EtcdPolicy& operator=(const EtcdPolicy&) = delete;

  result<void> put(std::string_view key, std::string_view value) {
    if (!is_open()) return closed_error();
    if (auto bad = check_request_size(opts_.prefix.size() + key.size() + value.size() + 16, "put")) return *bad;
    std::string body = detail::json_object().bytes("key", etcd_key(key)).bytes("value", value).str();
    auto r = transport_.call("kv/put", body, detail::call_kind::write, "put");
    if (!r) return std::move(r).error();
    return {};
  }

  result<std::optional<std::string>> get(std::string_view key) const {
    if (!is_open()) return closed_error();
    return get_at(key, 0, opts_.serializable_reads);
  }
  result<bool> contains(std::string_view key) const {
    if (!is_open()) return closed_error();
    return contains_at(key, 0, opts_.serializable_reads);
  }

  result<void> erase(std::string_view key) {
    if (!is_open()) return closed_error();
    std::string body = detail::json_object().bytes("key", etcd_key(key)).str();
    auto r = transport_.call("kv/deleterange", body, detail::call_kind::write, "erase");
    if (!r) return std::move(r).error();
    return {};
  }

  // One etcd txn; see the top of this file for the limits.
  result<void> write(const write_batch& batch) {
    if (!is_open()) return closed_error();
    if (batch.empty()) return {};
    auto ops = compile(batch);
    if (!ops) return std::move(ops).error();
    if (ops->empty()) return {};
    return send_txn({}, *ops, "write");
  }

  cursor_type scan(const key_range& range) const {
    if (!is_open()) return cursor_type(closed_error());
    return cursor_type(shared_from_this(), range, 0, nullptr);
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(std::move(e)); }

  result<snapshot_type> snapshot() const {
    if (!is_open()) return closed_error();
    auto rev = current_revision();
    if (!rev) return std::move(rev).error();
    return snapshot_type(shared_from_this(), *rev);
  }

  // One deleterange request (atomic); invalid_argument when the lower bound
  // is above the upper bound.
  result<void> erase_range(const key_range& range) {
    auto n = erase_range_counted(range);
    if (!n) return std::move(n).error();
    return {};
  }
  // erase_range, returning how many keys it erased: etcd's own count, from
  // the same request (exact and atomic; a counting transaction would need a
  // compare per key, past max_txn_ops).
  result<std::uint64_t> erase_range_counted(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range)) {
      return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
    }
    auto bounds = etcd_range(range);
    if (!bounds) return std::uint64_t{0};
    std::string body = detail::json_object().bytes("key", bounds->first).bytes("range_end", bounds->second).str();
    auto r = transport_.call("kv/deleterange", body, detail::call_kind::write, "erase_range");
    if (!r) return std::move(r).error();
    return static_cast<std::uint64_t>(detail::json_int(*r, "deleted"));
  }

  // Read-only txns of range requests: one when the keys fit max_txn_ops,
  // else several, all at the revision the first one read.
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    if (!is_open()) return closed_error();
    std::vector<std::optional<std::string>> out;
    out.reserve(keys.size());
    std::int64_t revision = 0;
    for (std::size_t at = 0; at < keys.size(); at += opts_.max_txn_ops) {
      const std::size_t n = std::min(opts_.max_txn_ops, keys.size() - at);
      txn_ops ops;
      ops.reserve(n);
      for (std::size_t i = at; i < at + n; ++i)
        ops.push_back(detail::json_object()
                          .raw("request_range", range_body(etcd_key(keys[i]), {}, revision, 0, false, false))
                          .str());
      auto r = read_txn(ops, "multi_get");
      if (!r) return std::move(r).error();
      if (revision == 0) revision = header_revision(*r);
      auto responses = r->find("responses");
      for (std::size_t i = 0; i < n; ++i) {
        const json* rr = nullptr;
        if (responses != r->end() && responses->is_array() && i < responses->size()) {
          auto f = (*responses)[i].find("response_range");
          if (f != (*responses)[i].end()) rr = &*f;
        }
        auto kvs = rr ? rr->find("kvs") : json::const_iterator();
        if (rr && kvs != rr->end() && kvs->is_array() && !kvs->empty())
          out.emplace_back(detail::json_bytes((*kvs)[0], "value"));
        else
          out.emplace_back(std::nullopt);
      }
    }
    return out;
  }

  // etcd compaction: drops the history older than the oldest revision a live
  // snapshot, cursor or transaction of this process reads (or than the
  // current revision when there is none), so the database stops growing with
  // overwrites. Compaction is cluster-wide: it also ends older snapshots of
  // other stores and processes (they get errc::snapshot_expired). The range
  // is checked (invalid_argument when lower > upper) but otherwise ignored:
  // etcd compacts every key. Nothing to compact: success.
  result<void> compact(const key_range& range) {
    if (!is_open()) return closed_error();
    if (!erase_range_is_valid(range)) {
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    }
    auto now = current_revision();
    if (!now) return std::move(now).error();
    std::int64_t target = *now;
    {
      std::lock_guard lock(pins_mutex_);
      if (!pins_.empty()) target = std::min(target, *pins_.begin());
    }
    if (target <= 1) return {};
    std::string body = detail::json_object().integer("revision", target).boolean("physical", true).str();
    auto r = transport_.call("kv/compaction", body, detail::call_kind::read, "compact");
    if (!r && r.error() == errc::snapshot_expired) return {};  // already compacted at or past target
    if (!r) return std::move(r).error();
    return {};
  }

  // Not supported: an etcd store has no local files to copy. Back up the
  // cluster with `etcdctl snapshot save`, or copy the prefix with
  // keel::export_dump (<keel/dump.hpp>; a dump read through one cursor, at one
  // revision).
  result<void> checkpoint(const std::filesystem::path&) const {
    if (!is_open()) return closed_error();
    return keel::error(errc::not_supported,
                       "etcd: checkpoint() is not supported by the cluster backend (its data lives in the etcd "
                       "cluster, not in local files): back up the cluster with 'etcdctl snapshot save', or copy "
                       "the store's prefix with keel::export_dump (a dump read at one revision)");
  }

  // A transaction reads a snapshot (revision R); start = R. The view's pin
  // keeps R out of this process's compactions while the transaction lives.
  result<tx_start<snapshot_type>> begin_transaction() const {
    auto snap = snapshot();
    if (!snap) return std::move(snap).error();
    const auto start = static_cast<std::uint64_t>(snap->revision());
    std::shared_ptr<void> registration = snap->pin_;
    return tx_start<snapshot_type>{std::move(*snap), start, std::move(registration)};
  }

  // Validated by the cluster, in the txn that applies the writes, so that
  // commits from other processes and machines are seen. The read set is first
  // read again at the start revision R (keys only), then the txn compares:
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
  // The compares count against max_txn_ops: a read set needing more is
  // refused with invalid_argument before anything is sent.
  result<void> commit_transaction(const tx_record& tx) {
    if (!is_open()) return closed_error();
    auto ops = compile(tx.writes);
    if (!ops) return std::move(ops).error();
    if (ops->empty()) return {};
    const auto start = static_cast<std::int64_t>(tx.start);
    txn_ops compares;
    auto compare_mod = [&](std::string_view key, std::string_view range_end, const char* result, std::int64_t rev) {
      detail::json_object c;
      c.bytes("key", key);
      if (!range_end.empty()) c.bytes("range_end", range_end);
      c.text("target", "MOD").text("result", result).integer("mod_revision", rev);
      compares.push_back(c.str());
    };
    // Read again, at R, what was read: point keys in read txns, ranges by pages.
    if (!tx.read_keys.empty()) {
      std::vector<std::string_view> keys(tx.read_keys.begin(), tx.read_keys.end());
      auto mods = mod_revisions_at(keys, start);
      if (!mods) return std::move(mods).error();
      for (std::size_t i = 0; i < keys.size(); ++i) compare_mod(etcd_key(keys[i]), {}, "EQUAL", (*mods)[i]);
    }
    for (const auto& range : tx.read_ranges) {
      auto bounds = etcd_range(range);
      if (!bounds) continue;
      compare_mod(bounds->first, bounds->second, "LESS", start + 1);
      std::string lo = bounds->first;
      for (;;) {
        if (compares.size() > opts_.max_txn_ops) break;
        auto page = transport_.call("kv/range",
                                    range_body(lo, bounds->second, start, opts_.max_txn_ops, false, false, true),
                                    detail::call_kind::read, "transaction validation");
        if (!page) return std::move(page).error();
        auto r = parse_range(*page);
        for (const auto& kv : r.kvs) compare_mod(kv.etcd_key, {}, "EQUAL", kv.mod_revision);
        if (!r.more || r.kvs.empty()) break;
        lo = r.kvs.back().etcd_key + '\0';
      }
    }
    if (compares.size() > opts_.max_txn_ops) {
      return keel::error(errc::invalid_argument,
                         "etcd: this transaction's read set needs more than " + std::to_string(opts_.max_txn_ops) +
                             " compares (one per key read, one per range scanned plus one per key it held), "
                             "etcd's limit per txn (--max-txn-ops, etcd_options::max_txn_ops); nothing was written. "
                             "Read fewer keys in one transaction, or raise the limit on every member and in "
                             "etcd_options");
    }
    auto ok = send_txn_checked(compares, *ops, "commit");
    if (!ok) return std::move(ok).error();
    if (!*ok) {
      return keel::error(errc::conflict,
                         "etcd: transaction conflict: a key it read or a range it scanned was changed by another "
                         "commit after revision " + std::to_string(start) + "; nothing was written, run it again");
    }
    return {};
  }

  // Frees the connections. Snapshots and cursors still alive give
  // errc::closed. Idempotent; nothing to flush (etcd acknowledged every write).
  result<void> close() {
    if (!open_.exchange(false)) return {};
    transport_.close();
    return {};
  }
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }

  const options& config() const noexcept { return opts_; }

  // The cluster's current revision (a linearizable read).
  result<std::int64_t> current_revision() const {
    std::string body = detail::json_object().bytes("key", opts_.prefix).boolean("count_only", true).str();
    auto r = transport_.call("kv/range", body, detail::call_kind::read, "read the current revision");
    if (!r) return std::move(r).error();
    return header_revision(*r);
  }

  // What the member that answers reports (/v3/maintenance/status), plus the
  // member count and the number of keys under the prefix.
  struct cluster_status {
    std::int64_t revision = 0, raft_index = 0, raft_term = 0, db_size = 0, db_size_in_use = 0;
    std::uint64_t member_id = 0, leader = 0;
    std::size_t members = 0;
    std::uint64_t keys = 0;  // under the prefix
    std::string version;
    std::vector<std::string> errors;  // e.g. alarms ("memberID:... alarm:NOSPACE")
  };
  result<cluster_status> status() const {
    if (!is_open()) return closed_error();
    cluster_status s;
    auto st = transport_.call("maintenance/status", "{}", detail::call_kind::read, "status");
    if (!st) return std::move(st).error();
    s.raft_index = detail::json_int(*st, "raftIndex");
    s.raft_term = detail::json_int(*st, "raftTerm");
    s.db_size = detail::json_int(*st, "dbSize");
    s.db_size_in_use = detail::json_int(*st, "dbSizeInUse");
    s.leader = detail::json_int<std::uint64_t>(*st, "leader");
    s.version = st->value("version", "");
    if (auto h = st->find("header"); h != st->end()) s.member_id = detail::json_int<std::uint64_t>(*h, "member_id");
    if (auto e = st->find("errors"); e != st->end() && e->is_array())
      for (const auto& x : *e)
        if (x.is_string()) s.errors.push_back(x.get<std::string>());
    auto ml = transport_.call("cluster/member/list", "{}", detail::call_kind::read, "member list");
    if (!ml) return std::move(ml).error();
    if (auto m = ml->find("members"); m != ml->end() && m->is_array()) s.members = m->size();
    std::string body = detail::json_object()
                           .bytes("key", opts_.prefix)
                           .bytes("range_end", prefix_end_)
                           .boolean("count_only", true)
                           .str();
    auto c = transport_.call("kv/range", body, detail::call_kind::read, "count keys");
    if (!c) return std::move(c).error();
    s.keys = static_cast<std::uint64_t>(detail::json_int(*c, "count"));
    s.revision = header_revision(*c);
    return s;
  }

  // Builds the etcd range [lo, hi) for a user range (hi "\0": to the end of
  // the keyspace, only when the prefix is all 0xFF); nullopt when empty.
  // Public for tests of the key mapping.
  std::optional<std::pair<std::string, std::string>> etcd_range(const key_range& range) const {
    if (range.is_empty()) return std::nullopt;
    std::string lo = etcd_key(range.lower().value_or(std::string()));
    std::string hi = range.upper() ? etcd_key(*range.upper()) : prefix_end_;
    if (hi != std::string(1, '\0') && lo >= hi) return std::nullopt;
    return std::pair{std::move(lo), std::move(hi)};
  }

 private:
  friend class cursor_type;
  friend class snapshot_type;

  static detail::etcd_transport_config make_transport_config(const options& o) {
    detail::etcd_transport_config c;
    for (auto e : o.endpoints) {
      while (!e.empty() && e.back() == '/') e.pop_back();
      c.endpoints.push_back(std::move(e));
    }
    c.connect_timeout = o.connect_timeout;
    c.request_timeout = o.request_timeout;
    c.operation_timeout = o.operation_timeout;
    return c;
  }

  std::string etcd_key(std::string_view key) const {
    std::string k;
    k.reserve(opts_.prefix.size() + key.size());
    k += opts_.prefix;
    k += key;
    return k;
  }

  static std::int64_t header_revision(const json& j) {
    auto h = j.find("header");
    return h == j.end() ? 0 : detail::json_int(*h, "revision");
  }

  std::optional<keel::error> check_request_size(std::size_t bytes, std::string_view what) const {
    if (bytes <= opts_.max_request_bytes) return std::nullopt;
    return keel::error(errc::invalid_argument,
                       "etcd: " + std::string(what) + " of about " + std::to_string(bytes) +
                           " bytes exceeds etcd's request size limit of " + std::to_string(opts_.max_request_bytes) +
                           " bytes (--max-request-bytes, etcd_options::max_request_bytes); it was not sent");
  }

  // ---- reads ----------------------------------------------------------------
  struct kv {
    std::string etcd_key, value;
    std::int64_t mod_revision = 0;
  };
  struct range_result {
    std::vector<kv> kvs;
    bool more = false;
    std::int64_t revision = 0;  // header.revision (the current one, even for historical reads)
  };
  static std::string range_body(std::string_view lo, std::string_view hi, std::int64_t revision, std::size_t limit,
                                bool reversed, bool serializable, bool keys_only = false) {
    detail::json_object o;
    o.bytes("key", lo);
    if (!hi.empty()) o.bytes("range_end", hi);
    if (limit) o.integer("limit", static_cast<std::int64_t>(limit));
    if (revision > 0) o.integer("revision", revision);
    if (reversed) o.text("sort_order", "DESCEND").text("sort_target", "KEY");
    if (serializable) o.boolean("serializable", true);
    if (keys_only) o.boolean("keys_only", true);
    return o.str();
  }
  static range_result parse_range(const json& j) {
    range_result r;
    r.revision = header_revision(j);
    r.more = j.value("more", false);
    if (auto kvs = j.find("kvs"); kvs != j.end() && kvs->is_array()) {
      r.kvs.reserve(kvs->size());
      for (const auto& x : *kvs)
        r.kvs.push_back({detail::json_bytes(x, "key"), detail::json_bytes(x, "value"),
                         detail::json_int(x, "mod_revision")});
    }
    return r;
  }
  result<range_result> read_range(std::string_view lo, std::string_view hi, std::int64_t revision, std::size_t limit,
                                  bool reversed, std::string_view what) const {
    auto r = transport_.call("kv/range", range_body(lo, hi, revision, limit, reversed, false), detail::call_kind::read,
                             what);
    if (!r) return std::move(r).error();
    return parse_range(*r);
  }
  result<std::optional<std::string>> get_at(std::string_view key, std::int64_t revision, bool serializable) const {
    auto r = transport_.call("kv/range", range_body(etcd_key(key), {}, revision, 0, false, serializable),
                             detail::call_kind::read, "get");
    if (!r) return std::move(r).error();
    auto kvs = r->find("kvs");
    if (kvs == r->end() || !kvs->is_array() || kvs->empty()) return std::optional<std::string>();
    return std::optional<std::string>(detail::json_bytes((*kvs)[0], "value"));
  }
  result<bool> contains_at(std::string_view key, std::int64_t revision, bool serializable) const {
    detail::json_object o;
    o.bytes("key", etcd_key(key)).boolean("count_only", true);
    if (revision > 0) o.integer("revision", revision);
    if (serializable) o.boolean("serializable", true);
    auto r = transport_.call("kv/range", o.str(), detail::call_kind::read, "contains");
    if (!r) return std::move(r).error();
    return detail::json_int(*r, "count") > 0;
  }

  // A read-only txn (success = range requests); a read (retried elsewhere).
  result<json> read_txn(const std::vector<std::string>& ops, std::string_view what) const {
    std::string body = "{\"success\":[";
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (i) body += ',';
      body += ops[i];
    }
    body += "]}";
    return transport_.call("kv/txn", body, detail::call_kind::read, what);
  }
  // The mod_revision of each key at `revision` (0: absent), in order.
  result<std::vector<std::int64_t>> mod_revisions_at(const std::vector<std::string_view>& keys,
                                                     std::int64_t revision) const {
    std::vector<std::int64_t> out;
    out.reserve(keys.size());
    for (std::size_t at = 0; at < keys.size(); at += opts_.max_txn_ops) {
      const std::size_t n = std::min(opts_.max_txn_ops, keys.size() - at);
      std::vector<std::string> ops;
      for (std::size_t i = at; i < at + n; ++i)
        ops.push_back(detail::json_object()
                          .raw("request_range", range_body(etcd_key(keys[i]), {}, revision, 0, false, false, true))
                          .str());
      auto r = read_txn(ops, "transaction validation");
      if (!r) return std::move(r).error();
      auto responses = r->find("responses");
      for (std::size_t i = 0; i < n; ++i) {
        std::int64_t mod = 0;
        if (responses != r->end() && responses->is_array() && i < responses->size()) {
          auto f = (*responses)[i].find("response_range");
          if (f != (*responses)[i].end()) {
            auto kvs = f->find("kvs");
            if (kvs != f->end() && kvs->is_array() && !kvs->empty()) mod = detail::json_int((*kvs)[0], "mod_revision");
          }
        }
        out.push_back(mod);
      }
    }
    return out;
  }

  // ---- batches --------------------------------------------------------------
  // One request op of a txn, already JSON.
  using txn_ops = std::vector<std::string>;

  // Merges a batch into etcd txn ops. etcd rejects a txn that names a key
  // twice, or a put inside a deleted range ("duplicate key given in txn
  // request"), so the batch is reduced to its effect first: the last op per
  // key wins, an erase_range drops the earlier ops inside it, and a range is
  // cut around the keys put after it. invalid_argument for a range whose
  // lower bound is above its upper bound, or past etcd's limits.
  result<txn_ops> compile(const write_batch& batch) const {
    std::map<std::string, std::optional<std::string>, std::less<>> last;  // user key -> value (nullopt: erase)
    std::vector<key_range> ranges;                                        // erased, forward
    for (const auto& op : batch) {
      switch (op.kind) {
        case write_batch::op_kind::put:
          last.insert_or_assign(std::string(op.key), std::optional<std::string>(op.value));
          break;
        case write_batch::op_kind::erase:
          last.insert_or_assign(std::string(op.key), std::nullopt);
          break;
        case write_batch::op_kind::erase_range: {
          key_range r = op.range();
          if (!erase_range_is_valid(r)) {
            return keel::error(errc::invalid_argument,
                               "erase_range: the range's lower bound is above its upper bound");
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
    txn_ops ops;
    std::size_t bytes = 0;
    auto delete_op = [&](std::string_view lo, std::string_view hi) {
      detail::json_object inner;
      inner.bytes("key", lo);
      if (!hi.empty()) inner.bytes("range_end", hi);
      bytes += lo.size() + hi.size() + 8;
      ops.push_back(detail::json_object().raw("request_delete_range", inner.str()).str());
    };
    for (const auto& r : ranges) {
      auto bounds = etcd_range(r);
      if (!bounds) continue;
      // Cut [lo, hi) around the keys put after the range was erased.
      std::string lo = bounds->first;
      auto first = r.lower() ? last.lower_bound(*r.lower()) : last.begin();
      auto end = r.upper() ? last.lower_bound(*r.upper()) : last.end();
      for (auto it = first; it != end; ++it) {
        if (!it->second) continue;  // an erase inside an erased range adds nothing
        std::string k = etcd_key(it->first);
        if (lo < k) delete_op(lo, k);
        lo = k + '\0';
      }
      if (bounds->second == std::string(1, '\0') || lo < bounds->second) delete_op(lo, bounds->second);
    }
    auto in_some_range = [&](std::string_view k) {
      return std::any_of(ranges.begin(), ranges.end(), [&](const key_range& r) { return r.contains(k); });
    };
    for (const auto& [k, v] : last) {
      if (!v && in_some_range(k)) continue;
      detail::json_object inner;
      inner.bytes("key", etcd_key(k));
      bytes += opts_.prefix.size() + k.size() + 8;
      if (v) {
        inner.bytes("value", *v);
        bytes += v->size();
        ops.push_back(detail::json_object().raw("request_put", inner.str()).str());
      } else {
        ops.push_back(detail::json_object().raw("request_delete_range", inner.str()).str());
      }
    }
    if (ops.size() > opts_.max_txn_ops) {
      return keel::error(errc::invalid_argument,
                         "etcd: the batch has " + std::to_string(ops.size()) +
                             " operations after merging ops on the same key; etcd applies at most " +
                             std::to_string(opts_.max_txn_ops) +
                             " in one transaction (--max-txn-ops, etcd_options::max_txn_ops). keel does not split "
                             "a batch (it would no longer be atomic): write it as several batches, or raise the limit "
                             "on every member and in etcd_options");
    }
    if (auto bad = check_request_size(bytes, "the batch")) return *bad;
    return ops;
  }

  // Sends {compare, success} as one txn; a write. With compares, returns
  // whether they held (succeeded).
  result<bool> send_txn_checked(const txn_ops& compares, const txn_ops& success, std::string_view what) {
    std::string body = "{";
    auto array = [&](const char* name, const txn_ops& v) {
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
    body += '}';
    auto r = transport_.call("kv/txn", body, detail::call_kind::write, what);
    if (!r) return std::move(r).error();
    return r->value("succeeded", false);
  }
  result<void> send_txn(const txn_ops& compares, const txn_ops& success, std::string_view what) {
    auto r = send_txn_checked(compares, success, what);
    if (!r) return std::move(r).error();
    return {};
  }

  options opts_;
  std::string prefix_end_;  // etcd range end of the prefix ("\0": none)
  detail::etcd_transport transport_;
  std::atomic<bool> open_{true};
  mutable std::mutex pins_mutex_;
  mutable std::multiset<std::int64_t> pins_;  // revisions live views read
};

static_assert(store_policy<EtcdPolicy>);

using etcd_store = basic_store<EtcdPolicy>;

// What basic_store::stats() asks of the backend: the exact key count under
// the prefix; size_bytes is the etcd database size of the member that
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
