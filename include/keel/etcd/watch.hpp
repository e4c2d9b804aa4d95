// keel::detail: EtcdPolicy's watch (issue 28; the semantics are in
// <keel/watch.hpp>, docs/watch.md "etcd"): etcd's own watch through the
// gateway (etcd/watch_stream.hpp), so a watch sees the changes of every
// client of the store's prefix, on any machine. Private: names may change.
//
// - seq is etcd's revision. A txn (write_batch, transaction, drop) is one
//   revision, and etcd sends all events of one revision in one response, so
//   a batch arrives as consecutive changes with one seq; a DeleteRange
//   (erase_range) gives one DELETE event per key it removed.
// - One etcd watch per keel watch, over the etcd range of the watched keys:
//   the default keyspace's range itself; for keyspace K the range from K's
//   list entry (prefix + M + 0x01 + K) to the end of K's data (prefix + M +
//   0x02 + len + K + ...), filtered here, so that the delete of K's list
//   entry (its drop) arrives in revision order: the changes before it are
//   delivered, then errc::not_found; the drop's own deletes are not.
//   Events of revisions below K's generation (an earlier keyspace of the
//   name) are skipped.
// - Position: the next revision to deliver. A connection asks etcd for
//   start_revision = position - 1 and skips that revision's events: etcd
//   accepts any start at or after its compaction revision C, but a
//   compaction at C removes the delete events (tombstones) of revision C,
//   so only revisions after C are whole. A start before C is answered
//   canceled with compact_revision C: the watch then gives
//   errc::snapshot_expired naming C + 1, the oldest revision it can resume
//   from (after = C), and keeps giving it.
// - Failover: a broken stream (member killed, lost its leader) reconnects to
//   the next endpoint from the position: no gap, no repeat.
// - Flow control: at most watch_options::buffer changes wait for the
//   reader, plus the response being taken apart; beyond that the stream
//   stops reading (etcd's watch then falls behind on the server and reads on
//   from etcd's history, never slowing a writer) until the reader catches up.
//
// Thread safety: one thread calls next() at a time; the stream thread fills
// the buffer. Lock order: etcd_watch_state::mutex_ is a leaf (never held
// around a request or a curl call, but wake() = curl_multi_wakeup);
// etcd_watch_registry::mutex_ is a leaf, released before a watch is closed.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../contract.hpp"
#include "../key_range.hpp"
#include "../watch.hpp"
#include "codec.hpp"
#include "keyspaces.hpp"
#include "paging.hpp"
#include "transport.hpp"
#include "watch_stream.hpp"

namespace keel::detail {

// What one watch reads and how it turns etcd keys back into changes.
struct etcd_watch_target {
  std::string lo, hi;            // the etcd range watched
  std::string data_lo, data_hi;  // changes: etcd keys in [data_lo, data_hi)
  std::shared_ptr<const etcd_keyspace> keys;  // the watched keyspace's mapping
  std::string name;              // the keyspace ("": the default one)
  std::string list_entry;        // keyspace K: its list entry (deleting it is the drop)
  std::int64_t generation = 0;   // keyspace K: the revision that created it
};

// The buffer between a watch's stream thread and its reader, and the stream.
class etcd_watch_state {
 public:
  etcd_watch_state(etcd_watch_target target, std::size_t capacity, std::int64_t position,
                   const etcd_transport& transport)
      : target_(std::move(target)), capacity_(capacity), position_(position), transport_(&transport) {}
  etcd_watch_state(const etcd_watch_state&) = delete;
  etcd_watch_state& operator=(const etcd_watch_state&) = delete;
  ~etcd_watch_state() { close(); }

  result<void> start(const etcd_transport_config& t) {
    etcd_watch_stream_config c{t.endpoints, t.connect_timeout, t.operation_timeout};
    etcd_watch_stream::callbacks cb;
    cb.request = [this] { return request(); };
    cb.on_message = [this](const nlohmann::json& r) { return on_message(r); };
    cb.drain = [this] { return drain(); };
    cb.on_trouble = [this](std::optional<keel::error> e) {
      std::lock_guard lock(mutex_);
      trouble_ = std::move(e);
      ready_cv_.notify_all();
    };
    return stream_.start(std::move(c), std::move(cb));
  }

  // The reader's side: see basic_watch::next. Changes before an end (drop,
  // compaction) come first; closed comes at once.
  result<std::optional<change>> next(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    ready_cv_.wait_for(lock, timeout, [&] { return closed_ || !ready_.empty() || end_ || trouble_; });
    if (closed_) return closed_error();
    if (!ready_.empty()) {
      change c = std::move(ready_.front());
      ready_.pop_front();
      const bool wake = held_;
      lock.unlock();
      if (wake) stream_.wake();
      return std::optional<change>(std::move(c));
    }
    if (end_) return *end_;
    if (trouble_) {  // once per outage: the stream keeps trying
      keel::error e = std::move(*trouble_);
      trouble_.reset();
      return e;
    }
    return std::optional<change>();
  }

  // Stops the stream and joins its thread; next() then gives errc::closed.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      ready_cv_.notify_all();
    }
    stream_.stop();
  }

 private:
  using verdict = etcd_watch_stream::verdict;

  std::string request() const {
    json_object create;
    create.bytes("key", target_.lo).bytes("range_end", target_.hi);
    create.integer("start_revision", std::max<std::int64_t>(1, position_ - 1));
    create.boolean("progress_notify", true);
    return json_object().raw("create_request", create.str()).str();
  }

  verdict on_message(const nlohmann::json& r) {
    // last_seq() learns the header's revision after the position moved (on
    // every return), so that a reader who sees last_seq() reach R knows
    // this watch has taken in what etcd sent up to R.
    struct note_at_return {
      const etcd_transport* transport;
      std::int64_t revision;
      ~note_at_return() { transport->note_revision(revision); }
    } note{transport_, etcd_transport::header_revision(r)};
    if (r.value("canceled", false)) {
      const auto compacted = json_int(r, "compact_revision");
      if (compacted <= 0) return verdict::reconnect;  // canceled for another reason: a new stream
      pending_end_ = keel::error(
          errc::snapshot_expired,
          "etcd: watch: revision " + std::to_string(position_) + " and later were needed, but etcd compacted its "
          "history at revision " + std::to_string(compacted) + "; the oldest seq still available is " +
          std::to_string(compacted + 1) + " (resume with after = " + std::to_string(compacted) + ")");
      return drain();
    }
    auto events = r.find("events");
    if (events == r.end() || !events->is_array() || events->empty()) {
      // A progress notification (no events, not the creation): etcd sent
      // every event up to its header's revision, so the position moves
      // there (a quiet watch then resumes from near now after a failover).
      if (!r.value("created", false)) {
        const auto progress = etcd_transport::header_revision(r);
        if (progress >= position_) position_ = progress + 1;
      }
      return verdict::go_on;
    }
    // The drop of the watched keyspace, if this response has it: the
    // changes of earlier revisions are delivered, that revision's are not.
    std::int64_t drop = 0;
    if (!target_.list_entry.empty()) {
      for (const auto& e : *events) {
        const auto& kv = event_kv(e);
        const auto rev = json_int(kv, "mod_revision");
        if (rev < position_ || rev <= target_.generation || !is_delete(e)) continue;
        if (json_bytes(kv, "key") == target_.list_entry && (drop == 0 || rev < drop)) drop = rev;
      }
    }
    std::int64_t last = 0;
    for (const auto& e : *events) {
      const auto& kv = event_kv(e);
      const auto rev = json_int(kv, "mod_revision");
      if (rev < position_ || (drop && rev >= drop)) continue;
      last = std::max(last, rev);
      if (rev <= target_.generation) continue;  // an earlier keyspace of the name, or its creation
      std::string key = json_bytes(kv, "key");
      if (key < target_.data_lo || (target_.data_hi != std::string(1, '\0') && key >= target_.data_hi)) continue;
      change c;
      c.seq = static_cast<std::uint64_t>(rev);
      c.keyspace = target_.name;
      c.key = target_.keys->user_key(key);
      if (!is_delete(e)) c.value = json_bytes(kv, "value");
      held_changes_.push_back(std::move(c));
    }
    if (last >= position_) position_ = last + 1;
    if (drop) pending_end_ = etcd_keyspace_gone(target_.name);
    // Before drain() hands the changes over: a reader who took a change of
    // revision R finds last_seq() >= R.
    transport_->note_revision(note.revision);
    return drain();
  }

  // An event's kv (an empty object when it has none); whether it is a
  // DELETE (a PUT's type is left out: proto3's zero value).
  static const nlohmann::json& event_kv(const nlohmann::json& e) {
    static const nlohmann::json none = nlohmann::json::object();
    if (!e.is_object()) return none;
    auto kv = e.find("kv");
    return kv != e.end() && kv->is_object() ? *kv : none;
  }
  static bool is_delete(const nlohmann::json& e) {
    if (!e.is_object()) return false;
    auto t = e.find("type");
    return t != e.end() && t->is_string() && t->get_ref<const std::string&>() == "DELETE";
  }

  // Moves held changes into the reader's buffer as far as it has room; the
  // end (drop, compaction) once nothing is held.
  verdict drain() {
    std::lock_guard lock(mutex_);
    while (!held_changes_.empty() && ready_.size() < capacity_) {
      ready_.push_back(std::move(held_changes_.front()));
      held_changes_.pop_front();
    }
    held_ = !held_changes_.empty();
    if (!held_ && pending_end_) end_ = std::move(pending_end_);
    ready_cv_.notify_all();
    if (end_) return verdict::stop;
    return held_ ? verdict::pause : verdict::go_on;
  }

  const etcd_watch_target target_;
  const std::size_t capacity_;
  // The stream thread's own.
  std::int64_t position_;                    // the next revision to deliver
  std::deque<change> held_changes_;          // taken apart, no room for them yet
  std::optional<keel::error> pending_end_;   // the end, once held_changes_ is empty
  const etcd_transport* transport_;          // to note revisions (last_seq); outlives the watch
  // Guarded by mutex_.
  std::mutex mutex_;
  std::condition_variable ready_cv_;
  std::deque<change> ready_;                 // at most capacity_
  bool held_ = false;                        // the stream waits for room
  std::optional<keel::error> end_;           // sticky: snapshot_expired, not_found
  std::optional<keel::error> trouble_;       // unavailable: given once, set again by the next outage
  bool closed_ = false;
  etcd_watch_stream stream_;                 // last: stopped and joined first
};

// The live watches of one store, so that close() can end them.
class etcd_watch_registry {
 public:
  void add(const std::shared_ptr<etcd_watch_state>& w) {
    std::lock_guard lock(mutex_);
    std::erase_if(live_, [](const auto& p) { return p.expired(); });
    live_.push_back(w);
  }
  void close_all() {
    std::vector<std::weak_ptr<etcd_watch_state>> all;
    {
      std::lock_guard lock(mutex_);
      all.swap(live_);
    }
    for (auto& p : all) {
      if (auto w = p.lock()) w->close();
    }
  }

 private:
  std::mutex mutex_;
  std::vector<std::weak_ptr<etcd_watch_state>> live_;
};

// EtcdPolicy::watch_type: one watch (movable; closing or destroying it stops
// its stream and joins its thread). `owner_` keeps the store's policy (and
// its transport) alive while the watch lives.
class etcd_watch {
 public:
  etcd_watch(std::shared_ptr<etcd_watch_state> state, std::shared_ptr<const void> owner)
      : state_(std::move(state)), owner_(std::move(owner)) {}
  etcd_watch(etcd_watch&&) noexcept = default;
  etcd_watch& operator=(etcd_watch&& o) noexcept {
    if (this != &o) {
      if (state_) state_->close();
      state_ = std::move(o.state_);
      owner_ = std::move(o.owner_);
    }
    return *this;
  }
  ~etcd_watch() {
    if (state_) state_->close();
  }

  result<std::optional<change>> next(std::chrono::milliseconds timeout) {
    if (!state_) return closed_error("watch");
    return state_->next(timeout);
  }

 private:
  std::shared_ptr<etcd_watch_state> state_;
  std::shared_ptr<const void> owner_;
};

// Makes a watch of `range` in the keyspace `mapping` (name "" and generation
// 0: the default keyspace; `store_keys` is the store's layout). Errors:
// invalid_argument (after beyond the cluster's revision), not_found (the
// keyspace was dropped before the position), and the transport's.
inline result<etcd_watch> etcd_open_watch(const etcd_transport& t, const etcd_keyspace& store_keys,
                                          std::shared_ptr<const etcd_keyspace> mapping, const std::string& name,
                                          std::int64_t generation, const key_range& range, const watch_options& o,
                                          etcd_watch_registry& registry, std::shared_ptr<const void> owner,
                                          const std::function<bool()>& is_open) {
  if (auto bad = watch_options_error(o)) return *bad;
  // The position: after `after`, or after the cluster's revision now.
  std::int64_t now = t.seen_revision();
  if (!o.after || static_cast<std::int64_t>(*o.after) > now) {
    auto r = read_etcd_range(t, store_keys.prefix(), {}, 0, 1, false, "watch");
    if (!r) return std::move(r).error();
    now = std::max(now, r->revision);
  }
  if (o.after && *o.after > static_cast<std::uint64_t>(now)) {
    return keel::error(errc::invalid_argument, "watch: after = " + std::to_string(*o.after) +
                                                   " is beyond the cluster's revision " + std::to_string(now) +
                                                   " (last_seq())");
  }
  const std::int64_t after = o.after ? static_cast<std::int64_t>(*o.after) : now;
  etcd_watch_target target;
  target.name = name;
  target.generation = generation;
  target.keys = std::move(mapping);
  if (!name.empty()) {
    // Gone now: was it there at the position? (A keyspace present now was
    // never dropped: a drop deletes the entry, a re-creation makes another.)
    auto there = etcd_keyspace_at(t, store_keys, name, generation, 0);
    if (!there && there.error() != errc::not_found) return std::move(there).error();
    if (!there && after >= generation) {
      auto then = etcd_keyspace_at(t, store_keys, name, generation, after);
      if (!then && then.error() == errc::not_found) return std::move(then).error();
      // present at `after`: the stream delivers the drop; compacted: it reports that
    }
    target.list_entry = store_keys.list_entry(name);
  }
  auto bounds = target.keys->range(range);
  if (bounds) {
    target.data_lo = std::move(bounds->first);
    target.data_hi = std::move(bounds->second);
  } else {  // no key: only a drop can happen
    target.data_lo = target.data_hi = target.keys->base();
  }
  target.lo = target.list_entry.empty() ? target.data_lo : target.list_entry;
  target.hi = bounds ? target.data_hi : target.list_entry + '\0';
  const bool idle = !bounds && target.list_entry.empty();  // nothing can ever arrive
  auto state = std::make_shared<etcd_watch_state>(std::move(target), o.buffer, after + 1, t);
  if (!idle) {
    if (auto started = state->start(t.config()); !started) return std::move(started).error();
  }
  // Registered after it started (close() may reach it at once); a close()
  // that ran before the registration is seen by is_open().
  registry.add(state);
  if (!is_open()) {
    state->close();
    return closed_error();
  }
  return etcd_watch(std::move(state), std::move(owner));
}

}  // namespace keel::detail
