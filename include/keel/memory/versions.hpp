// keel/memory/versions.hpp - the versions of a memory store's tree that
// readers see: which one is current, the replaced ones not freed yet, and
// when each can be freed (epoch-based reclamation). Needs no library.
//
// Every write publishes a new version of the persistent B+tree (btree.hpp)
// that shares all untouched nodes with the one it replaces. Readers take
// either no reference at all (point reads: an epoch slot, epoch_domain
// below) or a counted handle (current(): cursors, snapshots, saves). A
// replaced version is retired, tagged with the epoch it closed, and freed by
// a later reclaim() once no point read that may still use it is in flight.
//
// Thread safety: memory_versions' writer side (edit_current, publish,
// reclaim, close) is called with writers() held, one writer at a time: that
// mutex is the store's writers' mutex (memory/policy.hpp's lock order), and
// it guards the retired versions, the spare buffers and the node pool.
// current_root(), current(), is_open() may be called from any thread without
// it. Ownership: memory_versions owns the current version's holder and the
// retired versions; the nodes are shared with every handle taken.
// Errors: none; publishing allocates only before the new version is made
// current (if that throws, the old version stays current).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "thread_exit.hpp"
#include "../key_range.hpp"
#include "btree.hpp"

namespace keel::detail {

// Epoch-based reclamation, for the memory backend's point reads.
//
// A reader stores the global epoch in its own slot (its own cache line) for
// the duration of one lookup; a writer that replaces a version tags it with
// the epoch it closes (advance()) and frees it only when every active slot
// holds a later epoch (min_active()). Why that is safe: a reader that can
// still hold the old root loaded it before the writer swapped it, so it read
// the epoch (then announced it) before the writer advanced it; the writer's
// scan, which follows the advance, sees that slot's value (all accesses are
// seq_cst) unless the reader has finished. Slot 0 means "not reading".
//
// One domain serves the whole process; each thread gets a slot on its first
// read, returned when the thread exits. Never destroyed (threads may exit
// after static destructors ran).
class epoch_domain {
 public:
  struct alignas(64) slot {
    std::atomic<std::uint64_t> epoch{0};
  };

  static epoch_domain& instance() {
    static epoch_domain* d = new epoch_domain;
    return *d;
  }

  // Marks the calling thread as reading until the guard goes. Not reentrant
  // (keel never nests lookups).
  class guard {
   public:
    explicit guard(slot& s) noexcept : s_(s) {}
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard() { s_.epoch.store(0, std::memory_order_release); }

   private:
    slot& s_;
  };
  guard enter() {
    slot& s = my_slot();
    s.epoch.store(epoch_.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
    return guard(s);
  }

  // Closes the current epoch and returns it: a version unlinked before this
  // call may be freed once min_active() > the returned value.
  std::uint64_t advance() noexcept { return epoch_.fetch_add(1, std::memory_order_seq_cst); }

  // The oldest epoch a reader announced, or UINT64_MAX when none is reading.
  std::uint64_t min_active() {
    std::lock_guard lock(mutex_);
    std::uint64_t m = std::numeric_limits<std::uint64_t>::max();
    for (const slot* s : slots_) {
      std::uint64_t e = s->epoch.load(std::memory_order_seq_cst);
      if (e != 0 && e < m) m = e;
    }
    return m;
  }

 private:
  // A thread's slot, returned when the thread exits (memory/thread_exit.hpp:
  // not a thread_local destructor, which mingw-w64 runs after freeing TLS).
  static void release(void* s) noexcept { epoch_domain::instance().remove(static_cast<slot*>(s)); }
  using my_slot_ptr = thread_exit_pointer<&epoch_domain::release>;
  slot& my_slot() {
    void* mine = my_slot_ptr::get();
    if (!mine) {
      mine = add();
      my_slot_ptr::set(mine);
    }
    return *static_cast<slot*>(mine);
  }
  slot* add() {
    auto* s = new slot;
    std::lock_guard lock(mutex_);
    slots_.push_back(s);
    return s;
  }
  void remove(slot* s) {
    {
      std::lock_guard lock(mutex_);
      slots_.erase(std::find(slots_.begin(), slots_.end(), s));
    }
    delete s;
  }

  std::atomic<std::uint64_t> epoch_{1};
  std::mutex mutex_;
  std::vector<slot*> slots_;
};


// ---------------------------------------------------------------------------
// Keyspaces (issue 27). One published version holds every keyspace: the
// default keyspace's tree inline (first member, so its point reads cost what
// they did before keyspaces), a pointer to an immutable table of the others,
// shared by every version until a create, a drop, a batch or a switch of
// the hot keyspace replaces it, and the hot keyspace: the one written last
// through a handle, whose tree the version holds inline too (its table
// entry then holds an empty tree). So a snapshot is O(1) whatever the number
// of keyspaces (two tree handles plus one shared_ptr), a batch across
// keyspaces is one publish, and a drop is one publish. A put to the hot
// keyspace publishes only its slot, and edits its tree in reuse mode as a
// put to "" does (btree.hpp): the version holder is the only owner of both
// inline trees, so their reference counts say who else holds them.
//
// A keyspace other than "" is identified by its name and an id given at
// creation (never reused within an open): a handle whose id no longer
// matches the table's entry for its name reaches nothing (the keyspace was
// dropped, or dropped and created again).
// ---------------------------------------------------------------------------
struct keyspace_root {
  std::string name;
  std::uint64_t id = 0;
  persistent_btree tree;  // empty while the keyspace is a version's hot one: read it with tree_of()
};
// Sorted by name, unique names, "" not included. Immutable once published.
using keyspace_table = std::vector<std::shared_ptr<const keyspace_root>>;

struct store_version {
  persistent_btree main;                        // the default keyspace ""
  std::shared_ptr<const keyspace_table> table;  // the others (null: none); read their trees with tree_of()
  std::uint64_t hot_id = 0;                     // the hot keyspace's id (0: none; then `hot` is empty)
  persistent_btree hot;                         // the hot keyspace's tree

  // The tree of keyspace (name, id), or nullptr when this version has none.
  // id 0 is the default keyspace.
  const persistent_btree* find(std::string_view name, std::uint64_t id) const noexcept {
    if (id == 0) return &main;
    if (id == hot_id) return &hot;
    const keyspace_root* r = find_root(table.get(), name);
    return r && r->id == id ? &r->tree : nullptr;
  }
  // The tree of `r`, an entry of this version's table.
  const persistent_btree& tree_of(const keyspace_root& r) const noexcept { return r.id == hot_id ? hot : r.tree; }
  // fn(tree) summed over every keyspace's tree.
  template <class Fn>
  std::size_t sum(Fn&& fn) const {
    std::size_t n = fn(main);
    if (table)
      for (const auto& r : *table) n += fn(tree_of(*r));
    return n;
  }
  // The table with the hot keyspace's tree in its entry (this version's own
  // table when there is no hot keyspace).
  std::shared_ptr<const keyspace_table> folded() const {
    if (hot_id == 0) return table;
    auto next = std::make_shared<keyspace_table>(*table);
    for (auto& r : *next)
      if (r->id == hot_id) r = std::make_shared<const keyspace_root>(keyspace_root{r->name, r->id, hot});
    return next;
  }
  static const keyspace_root* find_root(const keyspace_table* table, std::string_view name) noexcept {
    if (!table) return nullptr;
    auto it = std::lower_bound(table->begin(), table->end(), name,
                               [](const auto& r, std::string_view n) { return std::string_view(r->name) < n; });
    return it != table->end() && (*it)->name == name ? it->get() : nullptr;
  }
};

// ---------------------------------------------------------------------------
// memory_versions: the current version of one memory store, the versions it
// replaced that a point read may still use, and whether the store is open.
// ---------------------------------------------------------------------------
class memory_versions {
 public:
  using tree = persistent_btree;

  memory_versions() = default;
  memory_versions(const memory_versions&) = delete;
  memory_versions& operator=(const memory_versions&) = delete;
  // No point read can be in flight (the owner is going away).
  ~memory_versions() {
    for (auto& r : retired_) {
      delete r.version;
      r.moved.finish();
    }
    delete root_.load();
  }

  // The store's writers' mutex: serialises writers (and, in the policy,
  // transaction begins); held by every caller of the writer side below.
  std::mutex& writers() const noexcept { return write_mutex_; }

  // Whether the store is open. close() clears it before it publishes the
  // empty tree, so a version loaded before checking is_open() is the data
  // when the store is still open.
  bool is_open() const noexcept { return open_.load(std::memory_order_acquire); }
  const std::atomic<bool>& open_flag() const noexcept { return open_; }

  // The current version for a point read: call inside an epoch_domain guard
  // (epoch_domain::instance().enter()), which keeps it alive until the guard
  // goes. current_root() is its default keyspace's tree.
  const tree* current_root() const noexcept { return &root_.load(std::memory_order_seq_cst)->main; }
  const store_version* current_version() const noexcept { return root_.load(std::memory_order_seq_cst); }

  // A counted handle to the current version (for cursors and snapshots).
  // The handle is taken (a seq_cst increment), then the version checked to
  // be still current (a seq_cst load): a writer that replaced it meanwhile
  // (seq_cst exchange, then a seq_cst load of the count) either sees the
  // handle when it settles its retirement (publish) or is seen here, and the
  // handle is dropped and taken again. So no handle to a version is taken
  // after it was replaced (persistent_btree::retirement's protocol).
  tree current() const {
    auto reading = epoch_domain::instance().enter();
    for (;;) {
      const store_version* version = root_.load(std::memory_order_seq_cst);
      tree handle = version->main.share(std::memory_order_seq_cst);
      if (root_.load(std::memory_order_seq_cst) == version) return handle;
    }
  }
  // The same with every keyspace: the default and the hot keyspace's trees
  // taken as current() takes the default one, the table of the others
  // copied from the same version (the epoch guard keeps that version's
  // holder alive while it is copied). Out of line: inlined into a
  // transaction's begin it made the compiler inline less of the rest.
  [[gnu::noinline]] store_version current_all() const {
    auto reading = epoch_domain::instance().enter();
    for (;;) {
      const store_version* version = root_.load(std::memory_order_seq_cst);
      store_version all{version->main.share(std::memory_order_seq_cst), version->table, 0, tree()};
      if (version->hot_id != 0) {
        all.hot_id = version->hot_id;
        all.hot = version->hot.share(std::memory_order_seq_cst);
      }
      if (root_.load(std::memory_order_seq_cst) == version) return all;
    }
  }
  // Writers' mutex held: the current version's table of non-default
  // keyspaces (null when there is none), every entry with its tree: when
  // the current version has a hot keyspace, a version with the same data
  // and that keyspace folded back into the table is published first. The
  // reference stays valid until the next publish. (memory_versions is
  // never a const object: its owner, the policy, is a heap object owned
  // by a shared_ptr to non-const, so the publish through const is defined.)
  const std::shared_ptr<const keyspace_table>& current_others() const {
    const store_version* now = root_.load(std::memory_order_relaxed);
    if (now->hot_id != 0) const_cast<memory_versions&>(*this).publish(now->main, now->folded());
    return root_.load(std::memory_order_relaxed)->table;
  }
  // Writers' mutex held: the current version (its table's entries may
  // leave the hot keyspace's tree to the version: read with tree_of()).
  const store_version& writer_version() const noexcept { return *root_.load(std::memory_order_relaxed); }

  // Writers' mutex held: an edit of the current version in reuse mode (path
  // nodes only it holds are handed to the copy, not copied with a reference
  // count change per child); publish(transient) completes it.
  tree::transient edit_current() {
    return tree::transient(root_.load(std::memory_order_relaxed)->main, std::move(spare_), &pool_);
  }
  // Writers' mutex held: makes the edit's result (or `next`) the current
  // version, retires the old one and frees the retired versions no reader
  // can still see. If it throws, the old version stays current (an
  // unpersisted edit gives the old version its references back).
  void publish(tree::transient&& edit) {
    publish_with([&](tree::retirement& moved) noexcept { return std::move(edit).persist(moved); });
  }
  void publish(tree next) {
    publish_with([&](tree::retirement&) noexcept { return std::move(next); });
  }
  // Writers' mutex held: publishes `next` as the default keyspace's tree and
  // `others` as the table of the other keyspaces (every entry with its
  // tree), in one version without a hot keyspace.
  void publish(tree next, std::shared_ptr<const keyspace_table> others) {
    publish_with([&](tree::retirement&) noexcept { return std::move(next); }, &others);
  }

  // Writers' mutex held, the current version has a hot keyspace:
  // `change(transient&)` edits its tree in reuse mode (as edit_current()
  // for ""), and the result is published as its tree, the default tree and
  // the table kept. If `change` throws, nothing is published. Out of line,
  // and the btree and vector members that a write to "" calls too are
  // called through flattened wrappers (hot_base, hot_settle, hot_retired):
  // a second call site would change how the compiler inlines them into
  // the write to "" (it inlines a function called once).
  template <class Change>
  [[gnu::noinline]] void edit_hot(Change&& change) {
    const store_version* now = root_.load(std::memory_order_relaxed);
    tree::transient edit = hot_base(now->hot);
    change(edit);
    publish_keyspace_with([&](tree::retirement& moved) noexcept { return std::move(edit).persist(moved); },
                          now->table, now->hot_id);
  }
  // Writers' mutex held: publishes `next` as the tree of keyspace `id` (an
  // entry of `table`, whose tree for it is empty), the hot keyspace of the
  // new version, with `table` as the table; the default tree kept.
  void publish_hot(tree next, std::shared_ptr<const keyspace_table> table, std::uint64_t id) {
    publish_keyspace_with([&](tree::retirement&) noexcept { return std::move(next); }, std::move(table), id);
  }

  // Writers' mutex held: marks the store closed, publishes the empty tree
  // and waits until every retired version is freed (point reads in flight
  // finish with theirs).
  void close() {
    open_.store(false, std::memory_order_release);
    publish(tree(), nullptr);
    while (!retired_.empty()) {
      std::this_thread::yield();
      reclaim();
    }
  }

 private:
  // `make(moved)` gives the new version and leaves in `moved` what the edit
  // left for the old one; it runs once everything that can throw is done.
  // `others`: the new table of non-default keyspaces (null: the current
  // one's, kept).
  template <class Make>
  void publish_with(Make make, std::shared_ptr<const keyspace_table>* others = nullptr) {
    std::unique_ptr<store_version> fresh =
        spare_version_ ? std::move(spare_version_) : std::make_unique<store_version>();
    retired_.reserve(retired_.size() + 1);
    // A fresh holder has no table (reclaim() leaves it so): set one only
    // when there is one, which keeps a store without keyspaces' writes as
    // cheap as before keyspaces.
    if (others) {
      fresh->table = std::move(*others);
    } else if (const store_version* now = root_.load(std::memory_order_relaxed); now->table) {
      fresh->table = now->table;
      fresh->hot_id = now->hot_id;
      fresh->hot = now->hot;
    }
    retired_version& r = retired_.emplace_back();
    fresh->main = make(r.moved);
    r.version = root_.exchange(fresh.release(), std::memory_order_seq_cst);
    r.moved.settle();
    r.closed_epoch = epoch_domain::instance().advance();
    reclaim();
  }
  // publish_with() for the hot keyspace: `make(moved)` gives its new tree.
  template <class Make>
  void publish_keyspace_with(Make make, std::shared_ptr<const keyspace_table> table, std::uint64_t id) {
    std::unique_ptr<store_version> fresh =
        spare_version_ ? std::move(spare_version_) : std::make_unique<store_version>();
    retired_.reserve(retired_.size() + 1);
    fresh->main = root_.load(std::memory_order_relaxed)->main;
    fresh->table = std::move(table);
    fresh->hot_id = id;
    retired_version& r = hot_retired();
    fresh->hot = make(r.moved);
    r.version = root_.exchange(fresh.release(), std::memory_order_seq_cst);
    hot_settle(r.moved);
    r.closed_epoch = epoch_domain::instance().advance();
    reclaim();
  }
  // edit_hot()'s wrappers (see there).
  struct retired_version;
  [[gnu::flatten]] tree::transient hot_base(const tree& hot) { return tree::transient(hot, std::move(spare_), &pool_); }
  [[gnu::flatten]] static void hot_settle(tree::retirement& moved) noexcept { moved.settle(); }
  [[gnu::flatten]] retired_version& hot_retired() { return retired_.emplace_back(); }
  // Writers' mutex held. Keeps one version holder, the first finished
  // retirement's buffers and some node blocks for the next write.
  void reclaim() {
    const std::uint64_t oldest = epoch_domain::instance().min_active();
    std::erase_if(retired_, [&](retired_version& r) {
      if (r.closed_epoch >= oldest) return false;
      store_version* version = const_cast<store_version*>(r.version);
      if (spare_version_) {
        delete version;
      } else {
        version->main = tree();
        if (version->table) {  // a hot keyspace is in the table
          version->table.reset();
          version->hot_id = 0;
          version->hot = tree();
        }
        spare_version_.reset(version);
      }
      r.moved.finish(&pool_);
      if (spare_.capacity() == 0) spare_ = std::move(r.moved);
      return true;
    });
  }

  mutable std::mutex write_mutex_;  // the writers' mutex: guards the members below but root_ and open_
  std::atomic<const store_version*> root_{new store_version()};  // the current version
  struct retired_version {
    std::uint64_t closed_epoch;
    const store_version* version;
    tree::retirement moved;  // finished once `version` is deleted
  };
  std::vector<retired_version> retired_;
  tree::retirement spare_;                // buffers for the next edit_current()
  std::unique_ptr<store_version> spare_version_;   // an empty holder for the next publish()
  tree::node_pool pool_;                  // node blocks for edit_current() transients
  std::atomic<bool> open_{true};
};

// `version` without the keys in `range`.
inline persistent_btree without_range(persistent_btree version, const key_range& range) {
  std::vector<std::string> doomed;
  {
    persistent_btree::cursor it(version);
    if (range.lower())
      it.seek(*range.lower());
    else
      it.seek_first();
    for (; it.valid() && range.contains(it.key()); it.next()) doomed.emplace_back(it.key());
  }
  if (doomed.empty()) return version;
  persistent_btree::transient edit(version);
  for (const auto& k : doomed) edit.erase(k);
  return std::move(edit).persist();
}

}  // namespace keel::detail
