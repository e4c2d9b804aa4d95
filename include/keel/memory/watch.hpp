// keel/memory/watch.hpp - watch on the memory store (issue 28; watch.hpp has
// the semantics, docs/watch.md the memory section): the store's seqs and its
// change history (detail::change_feed, memory/change_feed.hpp), the changes each commit delivers,
// and the history a persisted store reads back from its log at open.
// Needs no library.
//
// seq: one per commit that publishes a change (put, erase of a present key,
// write, erase_range, a transaction's commit). A plain store counts them
// from 1; a persisted store uses its log's frame numbers, which go on across
// close, reopen and folds, watched or not (a keyspace's creation and drop
// take one too), so seqs skip there and only grow. The numbering is carried
// by the logs themselves (close keeps one log: its frames, or without
// frames its header's first sequence number, memory/log.hpp
// trim_at_close) rather than by a record in the snapshot file: the snapshot
// formats stay as they are, so every older keel opens the files and
// replays the empty log as nothing, and a never-watched store pays 24 bytes
// and a sync at close, nothing per write.
//
// Pay only when used: until the store's first watch the commit path only
// advances last_seq (no change is built, nothing kept); from the first watch
// on every commit's changes are kept, up to memory_options::watch_history
// changes. A persisted store logs a commit as its changes while it records
// (an erase_range as one erase per key it removed, a batch without its
// erases of absent keys: the same effect, a frame the old readers read), so
// that the history read back from the log at open is exact.
//
// Thread safety: memory_watch's writer side (committed, dropped, frame,
// start) is called with the store's writers' mutex held; last_seq() from any
// thread; the feed has its own mutex (change_feed.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../key_range.hpp"
#include "../watch.hpp"
#include "../write_batch.hpp"
#include "btree.hpp"
#include "change_feed.hpp"
#include "expiry.hpp"
#include "log.hpp"
#include "versions.hpp"

namespace keel::detail {

// A commit of one change (value nullopt: an erase).
inline std::vector<change> one_change(std::string_view keyspace, std::string_view key,
                                      std::optional<std::string_view> value = std::nullopt) {
  std::vector<change> out(1);
  out[0].keyspace.assign(keyspace);
  out[0].key.assign(key);
  if (value) out[0].value.emplace(*value);
  return out;
}

// The erase changes of erase_range(range) on keyspace `keyspace` whose tree
// is `t` before it: one per key present, in key order.
inline void append_range_erases(std::vector<change>& out, std::string_view keyspace, const persistent_btree& t,
                                const key_range& range) {
  persistent_btree::cursor it(t);
  if (range.lower())
    it.seek(*range.lower());
  else
    it.seek_first();
  for (; it.valid() && range.contains(it.key()); it.next())
    out.push_back(change{0, std::string(keyspace), std::string(it.key()), std::nullopt});
}

// The changes a batch makes, in its order: each put; each erase of a key
// present at that point; each erase_range as one erase per key present at
// that point. tree_of(name) gives keyspace `name`'s tree before the batch
// (nullptr: none).
template <class TreeOf>
std::vector<change> batch_changes(const write_batch& batch, TreeOf&& tree_of) {
  std::vector<change> out;
  out.reserve(batch.size());
  const bool erases = std::any_of(batch.begin(), batch.end(), [](const auto& op) {
    return op.kind != write_batch::op_kind::put;
  });
  if (!erases) {  // the common case: every op is a change
    for (const auto& op : batch) out.push_back(change{0, std::string(op.keyspace), std::string(op.key), std::string(op.value)});
    return out;
  }
  // The keys the batch touched so far, by (keyspace, key): present after it or not.
  std::map<std::pair<std::string, std::string>, bool, std::less<>> touched;
  auto present = [&](std::string_view ks, std::string_view key) {
    auto it = touched.find(std::pair<std::string, std::string>(ks, key));
    if (it != touched.end()) return it->second;
    const persistent_btree* t = tree_of(ks);
    return t && t->find(key) != nullptr;
  };
  for (const auto& op : batch) {
    switch (op.kind) {
      case write_batch::op_kind::put:
        out.push_back(change{0, std::string(op.keyspace), std::string(op.key), std::string(op.value)});
        touched[{std::string(op.keyspace), std::string(op.key)}] = true;
        break;
      case write_batch::op_kind::erase:
        if (present(op.keyspace, op.key)) out.push_back(change{0, std::string(op.keyspace), std::string(op.key), std::nullopt});
        touched[{std::string(op.keyspace), std::string(op.key)}] = false;
        break;
      case write_batch::op_kind::erase_range: {
        const key_range range = op.range();
        std::vector<std::string> keys;  // present now: in the tree and not erased, or put by the batch
        if (const persistent_btree* t = tree_of(op.keyspace)) {
          persistent_btree::cursor it(*t);
          if (range.lower())
            it.seek(*range.lower());
          else
            it.seek_first();
          for (; it.valid() && range.contains(it.key()); it.next()) keys.emplace_back(it.key());
        }
        const std::string ks(op.keyspace);
        for (auto it = touched.lower_bound(std::pair<std::string, std::string>(ks, range.lower().value_or("")));
             it != touched.end() && it->first.first == ks && range.contains(it->first.second); ++it)
          keys.push_back(it->first.second);
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        for (auto& k : keys) {
          if (present(ks, k)) out.push_back(change{0, ks, k, std::nullopt});
          touched[{ks, k}] = false;
        }
        break;
      }
    }
  }
  return out;
}

// Fills a log frame with `changes` (put / erase ops, keyspaces selected;
// every put permanent).
inline void log_changes(log_encoder& e, const std::vector<change>& changes) {
  for (const auto& c : changes) {
    e.select_keyspace(c.keyspace);
    if (c.value)
      e.put(c.key, *c.value);
    else
      e.erase(c.key);
  }
}

// The same for the changes batch_changes() made of `batch`: every put op of the batch
// gave one put change, in order, so the k-th put change is logged with the
// deadline of the k-th put op (expiry: its ttl counted from `at`).
inline void log_changes(log_encoder& e, const std::vector<change>& changes, const write_batch& batch,
                        deadline_ms at) {
  auto op = batch.begin();
  auto next_put = [&] {
    while (op != batch.end() && (*op).kind != write_batch::op_kind::put) ++op;
    return op == batch.end() ? pb_entry::no_deadline : memory_expiry::deadline_of(*op++, at);
  };
  for (const auto& c : changes) {
    e.select_keyspace(c.keyspace);
    if (c.value)
      e.put(c.key, *c.value, batch.has_ttl() ? next_put() : pb_entry::no_deadline);
    else
      e.erase(c.key);
  }
}

// The history a persisted store reads back from its log at open: each
// frame's ops as changes, kept in the feed. A frame that cannot be given as
// changes exactly (an erase_range or a keyspace drop, logged while the store
// did not record) starts the history after it.
class memory_replay_history {
 public:
  explicit memory_replay_history(change_feed& feed) : feed_(feed) {}
  void op(const log_op& o, std::uint64_t seq) {
    if (seq != seq_) {
      flush();
      if (!started_) feed_.restore(seq - 1);  // the commits before the first frame: in the snapshot only
      started_ = true;
      seq_ = seq;
    }
    switch (o.kind) {
      case log_op::put: changes_.push_back(change{0, std::string(o.keyspace), std::string(o.key), std::string(o.value)}); break;
      case log_op::erase: changes_.push_back(change{0, std::string(o.keyspace), std::string(o.key), std::nullopt}); break;
      case log_op::erase_range:
      case log_op::drop_keyspace: exact_ = false; break;
      default: break;
    }
  }
  // After the replay: `last` is the log's last frame number.
  void finish(std::uint64_t last) {
    flush();
    if (!started_ || feed_.last_seq() != last) feed_.restore(last);
  }

 private:
  void flush() {
    if (seq_ == 0) return;
    if (exact_)
      feed_.replayed(seq_, std::move(changes_));
    else
      feed_.restore(seq_);
    changes_.clear();
    exact_ = true;
  }
  change_feed& feed_;
  std::uint64_t seq_ = 0;
  bool started_ = false;
  bool exact_ = true;
  std::vector<change> changes_;
};

// The memory store's side of watch: its seqs and change history. One per
// store (MemoryPolicy::watch_).
class memory_watch {
 public:
  explicit memory_watch(std::size_t history) : feed_(std::make_shared<change_feed>(history)) {}

  const std::shared_ptr<change_feed>& feed() const noexcept { return feed_; }
  std::uint64_t last_seq() const noexcept { return feed_->last_seq(); }
  bool recording() const noexcept { return feed_->recording(); }

  // At open of a persisted store (before it is shared): the seqs are the
  // log's frame numbers from now on; replay history through history().
  memory_replay_history history() {
    persisted_ = true;
    return memory_replay_history(*feed_);
  }
  // The first seq whose log frame a later open must replay to give the
  // history a watch can resume from now (change_feed::first_needed_seq()):
  // a persisted store's close keeps the logs from the one holding it on
  // (memory_persistence::save_at_close), so that neither a session that only
  // watches nor one that does nothing shortens the history.
  std::uint64_t history_from() const { return feed_->first_needed_seq(); }
  // Whether a write logs its changes rather than its ops (see the top).
  bool logs_changes() const noexcept { return persisted_ && recording(); }

  // A commit was published (writers' mutex held): `frame` is its log frame
  // (persisted stores; no new frame: nothing was committed); make() gives
  // what it changed, called only while recording(). Without a watch yet this
  // only moves last_seq: the cost a store that never watched pays.
  template <class Make>
  void committed(std::uint64_t frame, Make&& make) {
    if (!recording()) {
      feed_->advance(persisted_ ? std::max(frame, feed_->last_seq()) : feed_->last_seq() + 1);
      return;
    }
    record(frame, make());
  }
  // A commit of one change (value nullopt: an erase); no vector built.
  void committed_one(std::uint64_t frame, std::string_view keyspace, std::string_view key,
                     std::optional<std::string_view> value) {
    if (persisted_ && frame <= feed_->last_seq()) return;
    feed_->append_one(persisted_ ? frame : feed_->last_seq() + 1, keyspace, key, value);
  }
  void committed(std::uint64_t frame, std::vector<change>&& changes) {
    committed(frame, [&] { return std::move(changes); });
  }
  void record(std::uint64_t frame, std::vector<change> changes) {
    std::uint64_t seq = 0;
    if (persisted_) {
      if (frame <= feed_->last_seq()) return;
      seq = frame;
    } else {
      if (recording() && changes.empty()) return;
      seq = feed_->last_seq() + 1;
    }
    feed_->append(seq, std::move(changes));
  }
  // What `batch` changes (nothing unless recording), from the store's
  // current trees (writers' mutex held, before the batch is published).
  std::vector<change> batch_changes(const write_batch& batch, const memory_versions& versions) const {
    if (!recording()) return {};
    return detail::batch_changes(batch, [&](std::string_view name) -> const persistent_btree* {
      if (name.empty()) return versions.current_root();
      const store_version& current = versions.writer_version();
      const auto* r = store_version::find_root(current.table.get(), name);
      return r ? &current.tree_of(*r) : nullptr;
    });
  }
  // Logs `batch` (persisted stores): its ops, or its changes while
  // recording (see the top).
  template <class Persistence>
  result<std::uint64_t> log_batch(Persistence& p, const write_batch& batch, const std::vector<change>& changes,
                                  deadline_ms at = 0) const {
    if (!logs_changes()) return p.log_batch(batch, at);
    return p.log_write([&](log_encoder& e) { log_changes(e, changes, batch, at); });
  }
  // A log frame that changes no key (a keyspace created or dropped): a
  // persisted store's seq moves to it; a plain store's does not move.
  void logged_only(std::uint64_t frame) {
    if (persisted_ && frame > feed_->last_seq()) feed_->advance(frame);
  }
  // Keyspace `name` (id `id`) was dropped in log frame `frame` (writers' mutex held).
  void dropped(std::uint64_t frame, std::string_view name, std::uint64_t id) {
    logged_only(frame);
    feed_->append_drop(feed_keyspace{std::string(name), id});
  }

  // ---- expiry (issue 28 with 29; docs/watch.md, "Expiry") ----------------
  // The expired keys a sweep removes (memory_expiry::set_sweep_listener) are
  // a commit: a seq, one erase change per key while recording and, in a
  // persisted store, always a log frame of their erases (so that the
  // history read back at a reopen has them, whether or not this session
  // watched). A persisted store not recording whose replayed history is
  // still whole keeps them in it, as replayed: a watch that resumes after a
  // restart, made after the sweep, still sees them. Writers' mutex held.
  bool wants_swept_keys() const noexcept { return persisted_ || recording(); }
  template <class Persistence>
  result<void> swept(Persistence& p, std::string_view keyspace, const std::vector<std::string>* keys) {
    std::uint64_t frame = 0;
    if (persisted_) {
      if (!keys || keys->empty()) return {};
      auto logged = p.log_write([&](log_encoder& e) {
        e.select_keyspace(keyspace);
        for (const auto& k : *keys) e.erase(k);
      });
      if (!logged) return logged.error();
      frame = *logged;
    }
    const bool keep_replayed = !recording() && persisted_ && feed_->whole();
    if (!recording() && !keep_replayed) {
      committed(frame, [] { return std::vector<change>(); });
      return {};
    }
    std::vector<change> changes;
    if (keys) {
      changes.reserve(keys->size());
      for (const auto& k : *keys) changes.push_back(change{0, std::string(keyspace), k, std::nullopt});
    }
    if (keep_replayed)
      feed_->replayed(frame, changes);
    else
      record(frame, std::move(changes));
    return {};
  }
  // At open: the sweeps report to this watch, logging through `p`.
  template <class Persistence>
  void attach(memory_expiry& expiry, Persistence& p) {
    expiry.set_sweep_listener([this, &p](std::string_view ks, const std::vector<std::string>* keys) {
      return swept(p, ks, keys).has_value();
    },
                              [this] { return wants_swept_keys(); });
  }
  // At open of a persisted store, after the history was replayed: the keys
  // the load left out because they had expired (reclaimed at load, from the
  // snapshot or a logged put; memory_persistence::take_reclaimed) are one
  // commit per keyspace, as a sweep's.
  template <class Persistence>
  result<void> reclaimed_at_load(Persistence& p, std::mutex& writers) {
    std::lock_guard writer(writers);
    for (const auto& [keyspace, keys] : p.take_reclaimed())
      if (auto logged = swept(p, keyspace, &keys); !logged) return logged;
    return {};
  }

  // A watch (writers' mutex held, the store open, the keyspace there).
  result<feed_watch> watch(feed_filter filter, const watch_options& options) {
    feed_->start_recording();
    return change_feed::watch(feed_, std::move(filter), options);
  }
  void close() { feed_->close(); }

 private:
  std::shared_ptr<change_feed> feed_;
  bool persisted_ = false;
};

}  // namespace keel::detail
