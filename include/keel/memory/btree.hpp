// keel/memory/btree.hpp - an immutable, persistent (path-copying) B+tree mapping byte
// strings to byte strings. It is the data structure behind keel's in-memory
// backend.
//
// Ordering: unsigned bytewise (std::string_view comparison; char_traits<char>
// compares as unsigned char). Keys and values are arbitrary bytes, each at
// most UINT32_MAX long (std::length_error above that).
//
// Ownership: a persistent_btree is a handle to one immutable version (a root
// node plus a size). Nodes and entries (pb_entry) are intrusively refcounted
// and shared between versions; a version is freed when its last handle (or
// cursor) goes away. Copying a handle is O(1): one atomic increment.
//
// Editing: a `transient` batches edits starting from a base version and
// produces a new version with persist(). Nodes created by that transient carry
// its owner token and are mutated in place by later edits of the same batch;
// every other node is copied first (path copying). Versions are never
// modified once persisted, and the base's keys, values and links are never
// modified at all.
//
// Reuse mode (a transient given a `retirement`): copying a node normally
// takes a reference on each of its up to 64 children and entries, and
// freeing the old version drops them again. When the base is about to be
// replaced and nothing else holds the node being copied (its count says so),
// the copy takes over the old node's references instead and the old node is
// marked hollow: when it is freed it frees only itself. The old nodes stay
// readable (nothing they point to is freed before they are: every reference
// the transient drops is deferred to the retirement), so readers that hold
// no reference (the memory backend's epoch-protected point reads) are safe.
// Whether anything else came to hold the base meanwhile is checked when the
// new version replaces it (retirement::settle); if so, the takeover is
// undone: the old nodes take their references again, as a normal copy
// would have left them. A reuse-mode transient may also be given a
// node_pool: the blocks of hollow nodes freed when a replaced version goes
// are kept there for the next edit's copies (poisoned for ASan meanwhile).
//
// Thread safety: like std::shared_ptr. Any number of threads may read, copy,
// iterate and destroy versions concurrently, provided each thread uses its own
// handle / cursor / transient object. Refcount increments are relaxed,
// decrements acq_rel; whoever drops the last reference frees the object.
//
// Complexity (n keys, fan-out B = 32): find / insert / erase O(log_B n), with
// O(B) work per level for copying nodes; size() O(1); cursor steps amortised
// O(1); memory_bytes() O(n). Nodes hold at most 32 slots and (except the root)
// at least 8, so the height stays <= ~log_8 n (typically log_22 n) even after
// heavy erasing. A with()/without() costs one path copy; batch edits in one
// transient to amortise it.
//
// Layout: a leaf holds up to 32 pb_entry pointers plus 8 key bytes of each
// entry (big-endian in a uint64_t), so a binary search mostly touches only
// the node; an entry is dereferenced only to break a tie. An inner node
// holds child pointers and separators: sep[i] (i >= 1) is a refcounted entry
// whose key is <= every key in child[i] and > every key in child[i-1]. It
// may be an entry that has since been erased; it is still a valid bound.
//
// Prefix truncation: the 8 cached bytes are not a key's first 8 but the 8
// after the node's `plen`, the length of the prefix its fences share (the
// separators around it in its parent, up the tree: every key that can be in
// the node's subtree, and every key a search brings there, starts with those
// plen bytes). Keys with a long common prefix ("user00001234...", table or
// tenant prefixes) would otherwise tie in every cached prefix and cost a
// dereference per comparison. A node's fences change only when the node is
// rewritten (split, merge, rebalance), and those recompute plen and the
// cached bytes; a smaller plen than the fences allow is always valid.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>
#if defined(_MSC_VER) && !defined(__clang__)
#include <stdlib.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KEEL_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_DETAIL_ASAN 1
#endif
#endif
#if defined(KEEL_DETAIL_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace keel::detail {

// Marks memory kept for reuse as unusable (and usable again) for ASan.
inline void asan_poison([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(KEEL_DETAIL_ASAN)
  ASAN_POISON_MEMORY_REGION(p, n);
#endif
}
inline void asan_unpoison([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(KEEL_DETAIL_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
}

class persistent_btree;

// One key/value pair: a single ::operator new block holding this header
// followed by the key bytes and then the value bytes. Immutable, refcounted.
//
// The value may be held compressed (the memory backend's value compression,
// memory/compression.hpp): then value() is the compressed bytes, codec() the
// slot (1-127) of the codec that compressed it in its owner's table, and
// raw_size() the size it decompresses to. The tree itself never decodes.
//
// An entry may carry a deadline (expiry, memory/expiry.hpp): then the block
// holds 8 more bytes after the value (the deadline, ms since the epoch) and
// the top bit of the form word says so. Entries without one pay nothing:
// no bytes, and a reader tests the bit only.
class pb_entry {
 public:
  pb_entry(const pb_entry&) = delete;
  pb_entry& operator=(const pb_entry&) = delete;

  // Compressed values decompress to at most this many bytes.
  static constexpr std::size_t max_compressed_raw_size = (std::size_t{1} << 24) - 1;

  std::string_view key() const noexcept { return {bytes(), klen_}; }
  // The value as held: compressed when codec() != 0.
  std::string_view value() const noexcept { return {bytes() + klen_, vlen_}; }
  // 0: the value is held raw; else the codec slot that compressed it.
  unsigned codec() const noexcept { return (form_.load(std::memory_order_relaxed) >> 24) & 0x7Fu; }
  // Size of the value uncompressed.
  std::size_t raw_size() const noexcept {
    const std::uint32_t f = form_.load(std::memory_order_relaxed);
    return (f >> 24) & 0x7Fu ? (f & max_compressed_raw_size) : vlen_;
  }
  // A raw value that a compressor already tried (and kept raw): skipped by
  // later passes. The mark is a hint, set in place on a shared entry; it
  // changes nothing a reader sees (the deadline bit is kept).
  bool compression_tried() const noexcept { return (form_.load(std::memory_order_relaxed) & ~deadline_bit) != 0; }
  void mark_compression_tried() const noexcept {
    if (codec() == 0)
      form_.store(tried_raw | (form_.load(std::memory_order_relaxed) & deadline_bit), std::memory_order_relaxed);
  }
  void clear_compression_tried() const noexcept {
    if (codec() == 0) form_.store(form_.load(std::memory_order_relaxed) & deadline_bit, std::memory_order_relaxed);
  }
  // The form word of a value compressed by codec slot `codec` (1-127) from
  // raw_size (<= max_compressed_raw_size) bytes, for insert_or_assign.
  static constexpr std::uint32_t compressed_form(unsigned codec, std::size_t raw_size) noexcept {
    return (static_cast<std::uint32_t>(codec) << 24) | static_cast<std::uint32_t>(raw_size);
  }
  // The deadline of an entry without one: later than any real deadline.
  static constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();
  // Whether the entry expires, and when (ms since the Unix epoch;
  // no_deadline when it does not).
  bool has_deadline() const noexcept { return form_.load(std::memory_order_relaxed) & deadline_bit; }
  std::int64_t deadline() const noexcept {
    if (!has_deadline()) return no_deadline;
    std::int64_t d;
    std::memcpy(&d, bytes() + klen_ + vlen_, sizeof d);
    return d;
  }
  // Size of the allocation backing this entry.
  std::size_t alloc_size() const noexcept { return sizeof(pb_entry) + klen_ + vlen_ + deadline_bytes(); }
  // alloc_size() with the value uncompressed.
  std::size_t raw_alloc_size() const noexcept { return sizeof(pb_entry) + klen_ + raw_size() + deadline_bytes(); }

 private:
  friend class persistent_btree;

  static constexpr std::uint32_t tried_raw = 1;
  static constexpr std::uint32_t deadline_bit = std::uint32_t{1} << 31;
  std::size_t deadline_bytes() const noexcept { return has_deadline() ? sizeof(std::int64_t) : 0; }

  pb_entry(std::uint32_t k, std::uint32_t v, std::uint32_t form) noexcept : klen_(k), vlen_(v), form_(form) {}
  ~pb_entry() = default;

  const char* bytes() const noexcept { return reinterpret_cast<const char*>(this) + sizeof(pb_entry); }

  // Returns an entry with refcount 1; `deadline` != no_deadline: one that
  // expires then.
  static pb_entry* make(std::string_view k, std::string_view v, std::uint32_t form = 0,
                        std::int64_t deadline = no_deadline) {
    constexpr std::size_t max_len = std::numeric_limits<std::uint32_t>::max();
    if (k.size() > max_len || v.size() > max_len ||
        v.size() > std::numeric_limits<std::size_t>::max() - sizeof(pb_entry) - sizeof(std::int64_t) - k.size())
      throw std::length_error("keel: key or value longer than UINT32_MAX bytes");
    const bool expires = deadline != no_deadline;
    void* mem = ::operator new(sizeof(pb_entry) + k.size() + v.size() + (expires ? sizeof deadline : 0));
    auto* e = ::new (mem) pb_entry(static_cast<std::uint32_t>(k.size()), static_cast<std::uint32_t>(v.size()),
                                   expires ? form | deadline_bit : form);
    char* d = static_cast<char*>(mem) + sizeof(pb_entry);
    if (!k.empty()) std::memcpy(d, k.data(), k.size());
    if (!v.empty()) std::memcpy(d + k.size(), v.data(), v.size());
    if (expires) std::memcpy(d + k.size() + v.size(), &deadline, sizeof deadline);
    return e;
  }
  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    this->~pb_entry();
    ::operator delete(static_cast<void*>(this));   // unsized: clang 14 lacks sized delete by default
  }

  std::atomic<std::uint32_t> refs_{1};
  std::uint32_t klen_;
  std::uint32_t vlen_;
  // 0: raw; tried_raw: raw, compression tried; else compressed_form().
  mutable std::atomic<std::uint32_t> form_;
};

class persistent_btree {
  static constexpr unsigned kCap = 32;          // slots per node
  static constexpr unsigned kMin = kCap / 4;    // non-root nodes hold >= kMin slots
  static constexpr unsigned kMaxHeight = 24;    // inner levels; >= log_8(2^64)

  // Common node header. `owner` is the token of the transient that created
  // the node; only that transient may mutate it, and only before persist().
  // The hollow bit in it marks a node whose references a reuse-mode copy took
  // over (atomic only because other transients read it; relaxed throughout).
  static constexpr std::uint64_t kHollow = std::uint64_t{1} << 63;
  struct node {
    std::atomic<std::uint32_t> refs{1};
    std::uint8_t count = 0;    // slots in use
    std::uint8_t level = 0;    // 0 = leaf; a parent's level is its children's + 1
    std::uint16_t plen = 0;    // key bytes every key under this node shares; pfx[] start after them
    std::atomic<std::uint64_t> owner{0};
    std::uint64_t owner_token() const noexcept { return owner.load(std::memory_order_relaxed); }
    bool hollow() const noexcept { return owner_token() & kHollow; }
    void set_hollow(bool h) noexcept {
      owner.store(h ? owner_token() | kHollow : owner_token() & ~kHollow, std::memory_order_relaxed);
    }
  };
  struct leaf : node {
    std::uint64_t pfx[kCap];   // pfx[i] = prefix_at(ent[i]->key(), plen)
    pb_entry* ent[kCap];       // strictly increasing keys
  };
  struct inner : node {
    std::uint64_t pfx[kCap];   // pfx[i] = prefix_at(sep[i]->key(), plen); pfx[0] = 0
    pb_entry* sep[kCap];       // sep[0] = nullptr (unused)
    node* child[kCap];
  };

 public:
  class transient;
  class retirement;
  class node_pool;
  class cursor;

  persistent_btree() noexcept = default;
  persistent_btree(const persistent_btree& o) noexcept : root_(o.root_), size_(o.size_) { retain(root_); }
  persistent_btree(persistent_btree&& o) noexcept
      : root_(std::exchange(o.root_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  persistent_btree& operator=(const persistent_btree& o) noexcept {
    persistent_btree(o).swap(*this);
    return *this;
  }
  persistent_btree& operator=(persistent_btree&& o) noexcept {
    persistent_btree(std::move(o)).swap(*this);
    return *this;
  }
  ~persistent_btree() { release(root_); }

  // A new handle whose reference is taken with `order`: seq_cst for an owner
  // that then checks the version is still current (retirement's protocol).
  persistent_btree share(std::memory_order order) const noexcept {
    persistent_btree t;
    t.root_ = root_;
    t.size_ = size_;
    if (root_) root_->refs.fetch_add(1, order);
    return t;
  }

  void swap(persistent_btree& o) noexcept {
    std::swap(root_, o.root_);
    std::swap(size_, o.size_);
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // Levels including the leaves; 0 for an empty tree.
  std::size_t height() const noexcept { return root_ ? root_->level + 1u : 0u; }

  // The entry for `key`, or nullptr. Valid while this version is alive.
  const pb_entry* find(std::string_view key) const noexcept { return find_in(root_, key); }
  // Whether both handles are the same version (the same root).
  bool same_version(const persistent_btree& o) const noexcept { return root_ == o.root_; }

  // Bytes of nodes and entries reachable from this version (without allocator
  // overhead; entries shared with other versions are counted in full). O(n).
  std::size_t memory_bytes() const noexcept { return bytes_of(root_, false); }
  // memory_bytes() as if every value were held uncompressed. O(n).
  std::size_t uncompressed_memory_bytes() const noexcept { return bytes_of(root_, true); }

  // Convenience one-edit transients.
  persistent_btree with(std::string_view key, std::string_view value) const;
  persistent_btree without(std::string_view key) const;

  // The longest prefix any node truncates (its plen), for tests. O(n).
  std::size_t longest_node_prefix() const noexcept { return longest_prefix_in(root_); }

  // Full structural check (ordering, separators, fill, cached bytes, each
  // node's plen against its fences, size), for tests. O(n).
  bool check_invariants() const noexcept {
    if (!root_) return size_ == 0;
    std::size_t n = 0;
    if (root_->level > 0 && root_->count < 2) return false;
    return check_node(root_, nullptr, nullptr, true, n) && n == size_;
  }

 private:
  // Key bytes [off, off + 8), big-endian, zero padded: if two keys that
  // share their first `off` bytes differ here, this orders them; if equal
  // the full keys must be compared.
  static std::uint64_t prefix_at(std::string_view k, std::size_t off) noexcept {
    std::uint64_t v = 0;
    if (k.size() >= off + 8) {
      std::memcpy(&v, k.data() + off, 8);
      if constexpr (std::endian::native == std::endian::little) v = byteswap64(v);
      return v;
    }
    for (std::size_t i = off; i < off + 8; ++i) v = (v << 8) | (i < k.size() ? static_cast<unsigned char>(k[i]) : 0u);
    return v;
  }
  static std::uint64_t byteswap64(std::uint64_t v) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
    return _byteswap_uint64(v);
#else
    return __builtin_bswap64(v);
#endif
  }
  // Length of the prefix the keys in [lo, hi) share (0 when a side is
  // unbounded), capped to fit node::plen.
  static std::uint16_t fence_prefix(const pb_entry* lo, const pb_entry* hi) noexcept {
    if (!lo || !hi) return 0;
    const std::string_view a = lo->key(), b = hi->key();
    std::size_t n = std::min({a.size(), b.size(), std::size_t{std::numeric_limits<std::uint16_t>::max()}});
    std::size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return static_cast<std::uint16_t>(i);
  }
  // A key being searched for, with its cached bytes at the offset of the
  // node last asked (most nodes on a path share one plen).
  class probe {
   public:
    explicit probe(std::string_view k) noexcept : key(k), pfx_(prefix_at(k, 0)) {}
    std::uint64_t at(std::uint16_t plen) noexcept {
      if (plen != off_) off_ = plen, pfx_ = prefix_at(key, plen);
      return pfx_;
    }
    std::string_view key;

   private:
    std::uint16_t off_ = 0;
    std::uint64_t pfx_;
  };
  // entry < key, and key < entry, given the entry's cached bytes `ep` and
  // the key's `kp` at the same offset.
  static bool entry_less(std::uint64_t ep, const pb_entry* e, std::uint64_t kp, std::string_view key) noexcept {
    return ep != kp ? ep < kp : e->key() < key;
  }
  static bool key_less(std::uint64_t kp, std::string_view key, std::uint64_t ep, const pb_entry* e) noexcept {
    return ep != kp ? kp < ep : key < e->key();
  }

  static leaf* as_leaf(node* n) noexcept { return static_cast<leaf*>(n); }
  static const leaf* as_leaf(const node* n) noexcept { return static_cast<const leaf*>(n); }
  static inner* as_inner(node* n) noexcept { return static_cast<inner*>(n); }
  static const inner* as_inner(const node* n) noexcept { return static_cast<const inner*>(n); }

  // First slot whose key is >= p.
  static unsigned lower_bound(const leaf* l, probe& p) noexcept {
    const std::uint64_t kp = p.at(l->plen);
    unsigned lo = 0, hi = l->count;
    while (lo < hi) {
      const unsigned mid = (lo + hi) / 2;
      if (entry_less(l->pfx[mid], l->ent[mid], kp, p.key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  // Whether slot i of leaf l holds p's key.
  static bool holds(const leaf* l, unsigned i, probe& p) noexcept {
    return i < l->count && l->pfx[i] == p.at(l->plen) && l->ent[i]->key() == p.key;
  }
  // The child whose key range contains p: the last i with sep[i] <= p (or 0).
  static unsigned child_index(const inner* n, probe& p) noexcept {
    const std::uint64_t kp = p.at(n->plen);
    unsigned lo = 1, hi = n->count;
    while (lo < hi) {
      const unsigned mid = (lo + hi) / 2;
      if (key_less(kp, p.key, n->pfx[mid], n->sep[mid])) hi = mid;
      else lo = mid + 1;
    }
    return lo - 1;
  }
  // Sets n's plen to what its fences [lo, hi) allow and recomputes its cached
  // bytes, if that changes plen. Called when a node's fences change.
  static void fit_prefix(node* n, const pb_entry* lo, const pb_entry* hi) noexcept {
    const std::uint16_t plen = fence_prefix(lo, hi);
    if (plen != n->plen) rekey(n, plen);
  }
  static void rekey(node* n, std::uint16_t plen) noexcept {
    n->plen = plen;
    if (n->level == 0) {
      leaf* l = as_leaf(n);
      for (unsigned i = 0; i < l->count; ++i) l->pfx[i] = prefix_at(l->ent[i]->key(), plen);
    } else {
      inner* in = as_inner(n);
      for (unsigned i = 1; i < in->count; ++i) in->pfx[i] = prefix_at(in->sep[i]->key(), plen);
    }
  }

  static const pb_entry* find_in(const node* n, std::string_view key) noexcept {
    if (!n) return nullptr;
    probe p(key);
    while (n->level) {
      const inner* in = as_inner(n);
      n = in->child[child_index(in, p)];
    }
    const leaf* l = as_leaf(n);
    const unsigned i = lower_bound(l, p);
    return holds(l, i, p) ? l->ent[i] : nullptr;
  }

  static void retain(node* n) noexcept {
    if (n) n->refs.fetch_add(1, std::memory_order_relaxed);
  }
  // Drops one reference; frees the node (and, unless it is hollow, drops its
  // children's and entries' references) at zero. Recursion depth <= height.
  // `pool`: where freed node blocks go (nullptr: back to the allocator).
  static void release(node* n, node_pool* pool = nullptr) noexcept {
    if (!n || n->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (!n->hollow()) {
      if (n->level == 0) {
        leaf* l = as_leaf(n);
        for (unsigned i = 0; i < l->count; ++i) l->ent[i]->release();
      } else {
        inner* in = as_inner(n);
        for (unsigned i = 0; i < in->count; ++i) {
          if (i) in->sep[i]->release();
          release(in->child[i], pool);
        }
      }
    }
    free_node(n, pool);
  }
  // Nodes are built in blocks from ::operator new (or a pool), with placement new.
  static node* make_node(unsigned level, node_pool* pool);
  static void free_node(node* n, node_pool* pool) noexcept;

  // Takes a reference on each child and entry of n (what copying n takes).
  static void retain_children(const node* n) noexcept {
    if (n->level == 0) {
      const leaf* l = as_leaf(n);
      for (unsigned i = 0; i < l->count; ++i) l->ent[i]->retain();
    } else {
      const inner* in = as_inner(n);
      for (unsigned i = 0; i < in->count; ++i) {
        if (i) in->sep[i]->retain();
        retain(in->child[i]);
      }
    }
  }

  static std::size_t bytes_of(const node* n, bool uncompressed) noexcept {
    if (!n) return 0;
    std::size_t b = 0;
    if (n->level == 0) {
      const leaf* l = as_leaf(n);
      b = sizeof(leaf);
      for (unsigned i = 0; i < l->count; ++i) b += uncompressed ? l->ent[i]->raw_alloc_size() : l->ent[i]->alloc_size();
    } else {
      const inner* in = as_inner(n);
      b = sizeof(inner);
      for (unsigned i = 0; i < in->count; ++i) b += bytes_of(in->child[i], uncompressed);
    }
    return b;
  }

  static std::size_t longest_prefix_in(const node* n) noexcept {
    if (!n) return 0;
    std::size_t m = n->plen;
    if (n->level)
      for (unsigned i = 0; i < n->count; ++i) m = std::max(m, longest_prefix_in(as_inner(n)->child[i]));
    return m;
  }

  // Keys of node `n` must lie in [lo, hi) (nullptr = unbounded).
  static bool check_node(const node* n, const pb_entry* lo, const pb_entry* hi, bool is_root,
                         std::size_t& total) noexcept {
    if (n->count == 0 || n->count > kCap || (!is_root && n->count < kMin)) return false;
    if (n->plen > fence_prefix(lo, hi)) return false;
    auto in_range = [&](std::string_view k) {
      return (!lo || !(k < lo->key())) && (!hi || k < hi->key());
    };
    if (n->level == 0) {
      const leaf* l = as_leaf(n);
      for (unsigned i = 0; i < l->count; ++i) {
        const std::string_view k = l->ent[i]->key();
        if (l->pfx[i] != prefix_at(k, l->plen) || !in_range(k)) return false;
        if (i > 0 && !(l->ent[i - 1]->key() < k)) return false;
      }
      total += l->count;
      return true;
    }
    const inner* in = as_inner(n);
    if (in->sep[0] != nullptr) return false;
    for (unsigned i = 0; i < in->count; ++i) {
      if (in->child[i]->level + 1 != in->level) return false;
      if (i > 0 && (in->pfx[i] != prefix_at(in->sep[i]->key(), in->plen) || !in_range(in->sep[i]->key())))
        return false;
      if (i > 1 && !(in->sep[i - 1]->key() < in->sep[i]->key())) return false;
      const pb_entry* clo = i > 0 ? in->sep[i] : lo;
      const pb_entry* chi = i + 1 < in->count ? in->sep[i + 1] : hi;
      if (!check_node(in->child[i], clo, chi, false, total)) return false;
    }
    return true;
  }

  // Array helpers: open a gap at `pos` / close the slot at `pos`.
  template <class T>
  static void insert_at(T* a, unsigned count, unsigned pos, T v) noexcept {
    for (unsigned i = count; i > pos; --i) a[i] = a[i - 1];
    a[pos] = v;
  }
  template <class T>
  static void erase_at(T* a, unsigned count, unsigned pos) noexcept {
    for (unsigned i = pos; i + 1 < count; ++i) a[i] = a[i + 1];
  }

  node* root_ = nullptr;
  std::size_t size_ = 0;
};

// Freed node blocks kept for the next allocations: the hollow nodes a
// reuse-mode write leaves are freed when the version it replaced goes, and
// the next write allocates as many of the same two sizes. Holds at most
// kKeep blocks of each size (the rest go back to the allocator). Not
// thread-safe: its owner serialises every transient and retirement::finish()
// given it (MemoryPolicy: the writers' mutex).
class persistent_btree::node_pool {
 public:
  static constexpr unsigned kKeep = 8;

  node_pool() = default;
  node_pool(const node_pool&) = delete;
  node_pool& operator=(const node_pool&) = delete;
  ~node_pool() {
    for (bool is_inner : {false, true})
      while (void* p = take(is_inner)) ::operator delete(p);
  }
  // Blocks held (leaves, inner nodes), for tests.
  unsigned leaves() const noexcept { return kept_[0].count; }
  unsigned inners() const noexcept { return kept_[1].count; }

 private:
  friend class persistent_btree;
  struct blocks {
    void* block[kKeep];
    unsigned count = 0;
  };
  static constexpr std::size_t size_of(bool is_inner) noexcept { return is_inner ? sizeof(inner) : sizeof(leaf); }
  void* take(bool is_inner) noexcept {
    blocks& k = kept_[is_inner];
    if (!k.count) return nullptr;
    void* p = k.block[--k.count];
    asan_unpoison(p, size_of(is_inner));
    return p;
  }
  bool keep(void* p, bool is_inner) noexcept {
    blocks& k = kept_[is_inner];
    if (k.count == kKeep) return false;
    asan_poison(p, size_of(is_inner));
    k.block[k.count++] = p;
    return true;
  }
  blocks kept_[2];
};

inline persistent_btree::node* persistent_btree::make_node(unsigned level, node_pool* pool) {
  const bool is_inner = level != 0;
  void* mem = pool ? pool->take(is_inner) : nullptr;
  if (!mem) mem = ::operator new(node_pool::size_of(is_inner));
  node* n;
  if (is_inner) {
    inner* in = ::new (mem) inner;
    in->sep[0] = nullptr;
    in->pfx[0] = 0;
    n = in;
  } else {
    n = ::new (mem) leaf;
  }
  n->level = static_cast<std::uint8_t>(level);
  return n;
}

inline void persistent_btree::free_node(node* n, node_pool* pool) noexcept {
  const bool is_inner = n->level != 0;
  if (is_inner) as_inner(n)->~inner();
  else as_leaf(n)->~leaf();
  if (!pool || !pool->keep(n, is_inner)) ::operator delete(static_cast<void*>(n));   // unsized: see pb_entry
}

// What a reuse-mode transient leaves for the version it replaces (its base):
// the base's nodes it hollowed and the references it dropped, which must
// outlive every reader of the base. Move-only; not thread-safe.
//
// Protocol for the base's owner, which must be the only place new handles to
// the base come from (and take them as MemoryPolicy::current() does: take
// the handle with share(seq_cst), then check with a seq_cst load that the
// base is still current; drop it and try again if not):
//   1. make the new version current (seq_cst), holding one handle to the base;
//   2. settle(): checks that nothing but that handle (and the retirement)
//      holds any hollowed node; if something does, undoes the takeover and
//      drops the deferred references at once;
//   3. when the base's last handle is gone and no reader can still be in it,
//      finish() (the destructor does too).
// A retirement that is never settled undoes the takeover when it goes (or at
// abandon()): the base is whole again, as if copied normally.
class persistent_btree::retirement {
 public:
  retirement() = default;
  retirement(retirement&& o) noexcept
      : stolen_(std::move(o.stolen_)), dropped_(std::move(o.dropped_)),
        base_root_(std::exchange(o.base_root_, nullptr)), settled_(std::exchange(o.settled_, false)) {
    o.stolen_.clear();
    o.dropped_.clear();
  }
  retirement& operator=(retirement&& o) noexcept {
    if (this != &o) {
      close();
      stolen_ = std::move(o.stolen_);
      dropped_ = std::move(o.dropped_);
      base_root_ = std::exchange(o.base_root_, nullptr);
      settled_ = std::exchange(o.settled_, false);
      o.stolen_.clear();
      o.dropped_.clear();
    }
    return *this;
  }
  retirement(const retirement&) = delete;
  retirement& operator=(const retirement&) = delete;
  ~retirement() { close(); }

  // Whether the transient took over any node's references (before settle()).
  bool took_over() const noexcept { return !stolen_.empty(); }
  // Step 2 above. Call after the new version is current, the base's handle
  // still held. True if the takeover stands (finish() is then due after the
  // base's last reader); false if there was none or it was undone, and the
  // deferred references were dropped already.
  bool settle() noexcept {
    settled_ = true;
    for (node* s : stolen_) {
      // The base root: the owner's handle and the transient's dropped one.
      const std::uint32_t alone = s == base_root_ ? 2u : 1u;
      if (s->refs.load(std::memory_order_seq_cst) != alone) {
        undo();
        finish();
        return false;
      }
    }
    if (!stolen_.empty()) return true;
    finish();
    return false;
  }
  // Undoes the takeover and drops the deferred references: for a retirement
  // whose new version will not be published. Idempotent.
  void abandon() noexcept {
    undo();
    finish();
  }
  // Step 3 above: drops the deferred references (freeing the hollowed nodes
  // and whatever only the base held; node blocks go to `pool` if given).
  // Keeps the buffers for reuse.
  void finish(node_pool* pool = nullptr) noexcept {
    stolen_.clear();
    for (std::uintptr_t d : dropped_) {
      if (d & 1) reinterpret_cast<pb_entry*>(d & ~std::uintptr_t{1})->release();
      else release(reinterpret_cast<node*>(d), pool);
    }
    dropped_.clear();
    base_root_ = nullptr;
    settled_ = false;
  }
  // Buffer space held (a spare retirement lends it to the next transient).
  std::size_t capacity() const noexcept { return dropped_.capacity(); }

 private:
  friend class persistent_btree::transient;

  void undo() noexcept {
    for (node* s : stolen_) {
      retain_children(s);
      s->set_hollow(false);
    }
    stolen_.clear();
  }
  void close() noexcept {
    if (!settled_) undo();
    finish();
  }
  // Room for one more edit of a tree of height h, so that recording never
  // throws in the middle of one.
  void reserve_for(std::size_t h) {
    grow(stolen_, 2 * (h + 1));
    grow(dropped_, 4 * (h + 2));
  }
  // Doubling: a batch of n edits reallocates O(log n) times.
  template <class T>
  static void grow(std::vector<T>& v, std::size_t more) {
    if (v.capacity() - v.size() < more) v.reserve(std::max({v.size() + more, 2 * v.capacity(), std::size_t{64}}));
  }

  std::vector<node*> stolen_;            // hollowed nodes of the base
  std::vector<std::uintptr_t> dropped_;  // node* or (pb_entry* | 1)
  node* base_root_ = nullptr;
  bool settled_ = false;
};

// A batch of edits on top of a base version. Move-only; not thread-safe (one
// thread at a time). Edits give the basic exception guarantee: if an
// allocation throws, the transient still holds a valid tree with either the
// old or the new content for that key.
class persistent_btree::transient {
 public:
  explicit transient(const persistent_btree& base)
      : root_(base.root_), size_(base.size_), owner_(next_owner()) {
    retain(root_);
  }
  // Reuse mode (see the top of this file), for a base about to be replaced
  // by this transient's result: persist it with persist(retirement&) and
  // follow the retirement's protocol. `buffers`: an empty (finished)
  // retirement whose buffers to reuse. `pool`: where new nodes come from
  // first (used by this transient only, which its owner serialises).
  transient(const persistent_btree& base, retirement&& buffers, node_pool* pool = nullptr)
      : root_(base.root_), size_(base.size_), owner_(next_owner()), moved_(std::move(buffers)), reusing_(true),
        pool_(pool) {
    assert(moved_.stolen_.empty() && moved_.dropped_.empty() && "buffers: a finished retirement");
    retain(root_);
    moved_.base_root_ = base.root_;
  }
  transient(transient&& o) noexcept
      : root_(std::exchange(o.root_, nullptr)), size_(std::exchange(o.size_, 0)),
        owner_(std::exchange(o.owner_, 0)), moved_(std::move(o.moved_)), reusing_(std::exchange(o.reusing_, false)),
        pool_(std::exchange(o.pool_, nullptr)) {}
  transient(const transient&) = delete;
  transient& operator=(const transient&) = delete;
  transient& operator=(transient&&) = delete;
  // Unpersisted in reuse mode: the base gets its references back first.
  ~transient() {
    moved_.abandon();
    release(root_);
  }

  std::size_t size() const noexcept { return size_; }
  const pb_entry* find(std::string_view key) const noexcept { return find_in(root_, key); }

  // `form`: 0 for a raw value, pb_entry::compressed_form() for a compressed one.
  // `deadline`: when the entry expires (pb_entry::no_deadline: never).
  void insert_or_assign(std::string_view key, std::string_view value, std::uint32_t form = 0,
                        std::int64_t deadline = pb_entry::no_deadline) {
    assert(owner_ != 0 && "transient used after persist() or move");
    if (reusing_) moved_.reserve_for(root_ ? root_->level + 1u : 0u);
    pb_entry* e = pb_entry::make(key, value, form, deadline);
    try {
      insert_entry(e);
    } catch (...) {
      e->release();
      throw;
    }
  }

  // Inserts `e` itself (an entry of another version, shared: one more
  // reference), replacing any entry with its key.
  void insert_shared(const pb_entry* e) {
    assert(owner_ != 0 && "transient used after persist() or move");
    if (reusing_) moved_.reserve_for(root_ ? root_->level + 1u : 0u);
    auto* mine = const_cast<pb_entry*>(e);
    mine->retain();
    try {
      insert_entry(mine);
    } catch (...) {
      mine->release();
      throw;
    }
  }

  // Erasing a missing key is a no-op (and copies nothing).
  void erase(std::string_view key) {
    assert(owner_ != 0 && "transient used after persist() or move");
    if (!find_in(root_, key)) return;
    if (reusing_) moved_.reserve_for(root_->level + 1u);
    root_ = editable(root_);
    probe p(key);
    erase_rec(root_, p, nullptr, nullptr);   // allocates only before it changes anything
    --size_;
    if (root_->count == 0) {                          // last key gone
      release(root_);
      root_ = nullptr;
    } else if (root_->level > 0 && root_->count == 1) {  // collapse the root
      node* c = as_inner(root_)->child[0];
      retain(c);
      release(root_);
      root_ = c;
    }
  }

  // Finishes the batch. The transient is unusable afterwards.
  persistent_btree persist() && {
    assert(!reusing_ && "a reuse-mode transient persists with persist(retirement&)");
    persistent_btree t;
    t.root_ = std::exchange(root_, nullptr);
    t.size_ = std::exchange(size_, 0);
    owner_ = 0;
    return t;
  }
  // Finishes a reuse-mode batch; `out` (empty) receives what the base's
  // owner must settle. Never throws.
  persistent_btree persist(retirement& out) && noexcept {
    assert(reusing_ && out.dropped_.empty() && out.stolen_.empty());
    out = std::move(moved_);
    reusing_ = false;
    pool_ = nullptr;
    persistent_btree t;
    t.root_ = std::exchange(root_, nullptr);
    t.size_ = std::exchange(size_, 0);
    owner_ = 0;
    return t;
  }

 private:
  static std::uint64_t next_owner() noexcept {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;   // never 0
  }

  node* new_node(unsigned level) {
    node* n = make_node(level, pool_);
    n->owner.store(owner_, std::memory_order_relaxed);
    return n;
  }

  // Drops a reference the tree held. In reuse mode the drop waits for the
  // retirement: the base's readers may still reach what it refers to.
  void drop(node* n) noexcept {
    if (reusing_) moved_.dropped_.push_back(reinterpret_cast<std::uintptr_t>(n));   // reserved
    else release(n);
  }
  void drop(pb_entry* e) noexcept {
    if (reusing_) moved_.dropped_.push_back(reinterpret_cast<std::uintptr_t>(e) | 1);
    else e->release();
  }

  // `n` itself if this transient owns it, else a copy (owned, refcount 1) that
  // replaces the caller's reference to `n`: use as `slot = editable(slot)`.
  // In reuse mode a node that only the base holds (the base root: the base's
  // handle and this transient's; any other node: its parent's single
  // reference, which this transient's copy of the parent took over) hands
  // its references to the copy and becomes hollow.
  node* editable(node* n) {
    if (n->owner_token() == owner_) return n;
    const bool take_over =
        reusing_ && n->refs.load(std::memory_order_relaxed) == (n == moved_.base_root_ ? 2u : 1u);
    node* c = new_node(n->level);
    c->count = n->count;
    c->plen = n->plen;
    if (n->level == 0) {
      const leaf* s = as_leaf(n);
      leaf* d = as_leaf(c);
      std::memcpy(d->pfx, s->pfx, s->count * sizeof d->pfx[0]);
      std::memcpy(d->ent, s->ent, s->count * sizeof d->ent[0]);
    } else {
      const inner* s = as_inner(n);
      inner* d = as_inner(c);
      std::memcpy(d->pfx + 1, s->pfx + 1, (s->count - 1u) * sizeof d->pfx[0]);
      std::memcpy(d->sep + 1, s->sep + 1, (s->count - 1u) * sizeof d->sep[0]);
      std::memcpy(d->child, s->child, s->count * sizeof d->child[0]);
    }
    if (take_over) {
      n->set_hollow(true);
      moved_.stolen_.push_back(n);   // reserved
    } else {
      retain_children(n);
    }
    drop(n);
    return c;
  }

  // Where to split a full node that is about to receive p: in half, except
  // that appending past its end (ascending loads) keeps the left part 3/4
  // full and prepending (descending loads) keeps the right part 3/4 full.
  static unsigned split_point(const node* c, probe& p) noexcept {
    unsigned pos, end;
    if (c->level) pos = child_index(as_inner(c), p), end = c->count - 1u;
    else pos = lower_bound(as_leaf(c), p), end = c->count;
    return pos == end ? kCap - kMin : pos == 0 ? kMin : kCap / 2;
  }

  // Moves slots [h, kCap) of the full, owned child p->child[i] into `sib` (an
  // empty owned node of the same level) and links `sib` in at i + 1. The
  // child's fences were [lo, hi). p must not be full.
  void split_child(inner* p, unsigned i, node* sib, unsigned h, const pb_entry* lo, const pb_entry* hi) noexcept {
    node* c = p->child[i];
    sib->plen = c->plen;   // the cached bytes move as they are
    pb_entry* sep;
    if (c->level == 0) {
      leaf* a = as_leaf(c);
      leaf* b = as_leaf(sib);
      for (unsigned k = h; k < kCap; ++k) {
        b->pfx[k - h] = a->pfx[k];
        b->ent[k - h] = a->ent[k];
      }
      sep = b->ent[0];
      sep->retain();
    } else {
      inner* a = as_inner(c);
      inner* b = as_inner(sib);
      for (unsigned k = h; k < kCap; ++k) {
        b->pfx[k - h] = a->pfx[k];
        b->sep[k - h] = a->sep[k];
        b->child[k - h] = a->child[k];
      }
      sep = b->sep[0];   // moves up into p
      b->sep[0] = nullptr;
      b->pfx[0] = 0;
    }
    c->count = static_cast<std::uint8_t>(h);
    sib->count = static_cast<std::uint8_t>(kCap - h);
    insert_at(p->pfx, p->count, i + 1, prefix_at(sep->key(), p->plen));
    insert_at(p->sep, p->count, i + 1, sep);
    insert_at(p->child, p->count, i + 1, sib);
    ++p->count;
    fit_prefix(c, lo, sep);
    fit_prefix(sib, sep, hi);
  }

  // Takes the entry's reference on success. Splits full nodes on the way down,
  // so every allocation happens while the tree is consistent.
  void insert_entry(pb_entry* e) {
    probe p(e->key());
    if (!root_) {
      leaf* l = as_leaf(new_node(0));
      l->count = 1;
      l->pfx[0] = p.at(0);
      l->ent[0] = e;
      root_ = l;
      ++size_;
      return;
    }
    root_ = editable(root_);
    if (root_->count == kCap) {   // grow: new root above the old one, then split it
      node* sib = new_node(root_->level);
      inner* r;
      try {
        r = as_inner(new_node(root_->level + 1u));
      } catch (...) {
        release(sib);
        throw;
      }
      r->count = 1;
      r->child[0] = root_;
      root_ = r;
      split_child(r, 0, sib, split_point(r->child[0], p), nullptr, nullptr);
    }
    node* n = root_;
    const pb_entry* lo = nullptr;   // fences of n
    const pb_entry* hi = nullptr;
    while (n->level) {
      inner* in = as_inner(n);
      unsigned i = child_index(in, p);
      node* c = in->child[i] = editable(in->child[i]);
      if (c->count == kCap) {
        split_child(in, i, new_node(c->level), split_point(c, p), i > 0 ? in->sep[i] : lo,
                    i + 1 < in->count ? in->sep[i + 1] : hi);
        if (!key_less(p.at(in->plen), p.key, in->pfx[i + 1], in->sep[i + 1])) ++i;
        c = in->child[i];
      }
      if (i > 0) lo = in->sep[i];
      if (i + 1 < in->count) hi = in->sep[i + 1];
      n = c;
    }
    leaf* l = as_leaf(n);
    const unsigned pos = lower_bound(l, p);
    if (holds(l, pos, p)) {
      drop(l->ent[pos]);   // overwrite
      l->ent[pos] = e;
      return;
    }
    insert_at(l->pfx, l->count, pos, p.at(l->plen));
    insert_at(l->ent, l->count, pos, e);
    ++l->count;
    ++size_;
  }

  // `n` is owned, its fences are [lo, hi) and its subtree contains the key.
  // On the way down it makes owned the child to descend into and, if that
  // child may underflow, the sibling it would be rebalanced with;
  // rebalancing then allocates nothing.
  void erase_rec(node* n, probe& p, const pb_entry* lo, const pb_entry* hi) {
    if (n->level == 0) {
      leaf* l = as_leaf(n);
      const unsigned pos = lower_bound(l, p);
      assert(pos < l->count && l->ent[pos]->key() == p.key);
      drop(l->ent[pos]);
      erase_at(l->pfx, l->count, pos);
      erase_at(l->ent, l->count, pos);
      --l->count;
      return;
    }
    inner* in = as_inner(n);
    const unsigned i = child_index(in, p);
    const unsigned left = i > 0 ? i - 1 : 0;   // pair (left, left + 1) to rebalance
    node* c = in->child[i] = editable(in->child[i]);
    if (c->count <= kMin && in->count > 1) {
      const unsigned s = i > 0 ? i - 1 : i + 1;
      in->child[s] = editable(in->child[s]);
    }
    erase_rec(c, p, i > 0 ? in->sep[i] : lo, i + 1 < in->count ? in->sep[i + 1] : hi);
    if (c->count < kMin && in->count > 1) rebalance(in, left, lo, hi);
  }

  // Merges p->child[j + 1] into p->child[j] if they fit in one node, else
  // splits their slots evenly between them. Both children are owned; p's
  // fences are [plo, phi). The fences of both children change, so both get
  // their plen and cached bytes anew.
  void rebalance(inner* p, unsigned j, const pb_entry* plo, const pb_entry* phi) noexcept {
    node* a = p->child[j];
    node* b = p->child[j + 1];
    const pb_entry* lo = j > 0 ? p->sep[j] : plo;             // a's lower fence
    const pb_entry* hi = j + 2 < p->count ? p->sep[j + 2] : phi;   // b's upper fence
    const unsigned na = a->count, total = a->count + b->count;
    const bool merge = total <= kCap;
    const unsigned h = merge ? total : total / 2;   // slots that end up in a
    if (a->level == 0) {
      leaf* x = as_leaf(a);
      leaf* y = as_leaf(b);
      pb_entry* en[2 * kCap];
      for (unsigned k = 0; k < total; ++k) en[k] = k < na ? x->ent[k] : y->ent[k - na];
      for (unsigned k = 0; k < total; ++k) {
        if (k < h) x->ent[k] = en[k];
        else y->ent[k - h] = en[k];
      }
      drop(p->sep[j + 1]);
      if (!merge) {
        p->sep[j + 1] = y->ent[0];
        p->sep[j + 1]->retain();
      }
    } else {
      // The parent's separator comes down between a's and b's children.
      inner* x = as_inner(a);
      inner* y = as_inner(b);
      pb_entry* sp[2 * kCap];
      node* ch[2 * kCap];
      for (unsigned k = 0; k < total; ++k) {
        const bool in_a = k < na;
        const unsigned s = in_a ? k : k - na;
        sp[k] = k == na ? p->sep[j + 1] : in_a ? x->sep[s] : y->sep[s];
        ch[k] = in_a ? x->child[s] : y->child[s];
      }
      for (unsigned k = 0; k < total; ++k) {
        if (k < h) x->sep[k] = sp[k], x->child[k] = ch[k];
        else y->sep[k - h] = sp[k], y->child[k - h] = ch[k];
      }
      if (!merge) {   // the first separator of b moves up
        p->sep[j + 1] = y->sep[0];
        y->sep[0] = nullptr;
        y->pfx[0] = 0;
      }
    }
    a->count = static_cast<std::uint8_t>(h);
    b->count = static_cast<std::uint8_t>(total - h);
    if (merge) {   // b is now empty: unlink and free it
      erase_at(p->pfx, p->count, j + 1);
      erase_at(p->sep, p->count, j + 1);
      erase_at(p->child, p->count, j + 1);
      --p->count;
      release(b);   // owned by this transient and empty
      rekey(a, fence_prefix(lo, hi));
    } else {
      p->pfx[j + 1] = prefix_at(p->sep[j + 1]->key(), p->plen);
      rekey(a, fence_prefix(lo, p->sep[j + 1]));
      rekey(b, fence_prefix(p->sep[j + 1], hi));
    }
  }

  node* root_;
  std::size_t size_;
  std::uint64_t owner_;
  retirement moved_;
  bool reusing_ = false;
  node_pool* pool_ = nullptr;
};

inline persistent_btree persistent_btree::with(std::string_view key, std::string_view value) const {
  transient t(*this);
  t.insert_or_assign(key, value);
  return std::move(t).persist();
}

inline persistent_btree persistent_btree::without(std::string_view key) const {
  if (!find(key)) return *this;
  transient t(*this);
  t.erase(key);
  return std::move(t).persist();
}

// Bidirectional iteration over one version, which the cursor keeps alive. A
// cursor is used by one thread at a time; copies are independent.
class persistent_btree::cursor {
 public:
  explicit cursor(persistent_btree tree) noexcept : tree_(std::move(tree)) {}
  cursor(const cursor&) = default;
  cursor& operator=(const cursor&) = default;
  cursor(cursor&& o) noexcept : tree_(std::move(o.tree_)), path_(o.path_), leaf_(o.leaf_), idx_(o.idx_) {
    o.leaf_ = nullptr;
  }
  cursor& operator=(cursor&& o) noexcept {
    tree_ = std::move(o.tree_);
    path_ = o.path_;
    leaf_ = std::exchange(o.leaf_, nullptr);
    idx_ = o.idx_;
    return *this;
  }

  bool valid() const noexcept { return leaf_ != nullptr; }
  // Preconditions for the following: valid().
  const pb_entry* entry() const noexcept { return leaf_->ent[idx_]; }
  std::string_view key() const noexcept { return entry()->key(); }
  std::string_view value() const noexcept { return entry()->value(); }

  void seek_first() noexcept {
    if (tree_.root_) descend(tree_.root_, 0, false);
    else leaf_ = nullptr;
  }
  void seek_last() noexcept {
    if (tree_.root_) descend(tree_.root_, 0, true);
    else leaf_ = nullptr;
  }
  // First entry with key >= `key`.
  void seek(std::string_view key) noexcept {
    leaf_ = nullptr;
    const node* n = tree_.root_;
    if (!n) return;
    probe p(key);
    unsigned d = 0;
    while (n->level) {
      const inner* in = as_inner(n);
      const unsigned i = child_index(in, p);
      path_[d++] = {in, i};
      n = in->child[i];
    }
    leaf_ = as_leaf(n);
    idx_ = lower_bound(leaf_, p);
    if (idx_ == leaf_->count) next_leaf();
  }
  // Last entry with key < `key`.
  void seek_before(std::string_view key) noexcept {
    seek(key);
    if (valid()) prev();
    else seek_last();
  }
  void next() noexcept {
    assert(valid());
    if (++idx_ < leaf_->count) return;
    next_leaf();
  }
  // The current leaf's entries from the current one to its last (forward
  // walks), and from its first to the current one (backward walks): a caller
  // can take a leaf's worth at a time. Precondition valid(); valid until the
  // cursor moves.
  std::span<const pb_entry* const> rest_of_leaf() const noexcept {
    return {leaf_->ent + idx_, leaf_->count - idx_};
  }
  std::span<const pb_entry* const> leaf_up_to_here() const noexcept { return {leaf_->ent, idx_ + 1u}; }
  // n next() / prev() steps, n <= rest_of_leaf().size() / leaf_up_to_here().size().
  void skip_forward(std::size_t n) noexcept {
    assert(valid() && n <= leaf_->count - idx_);
    idx_ += static_cast<unsigned>(n);
    if (idx_ == leaf_->count) next_leaf();
  }
  void skip_back(std::size_t n) noexcept {
    assert(valid() && n <= idx_ + 1u);
    if (n <= idx_) {
      idx_ -= static_cast<unsigned>(n);
    } else {
      idx_ = 0;
      prev();
    }
  }
  void prev() noexcept {
    assert(valid());
    if (idx_ > 0) {
      --idx_;
      return;
    }
    for (unsigned d = tree_.root_->level; d-- > 0;) {
      frame& f = path_[d];
      if (f.idx > 0) {
        --f.idx;
        descend(f.in->child[f.idx], d + 1, true);
        return;
      }
    }
    leaf_ = nullptr;
  }

 private:
  struct frame {
    const inner* in;
    unsigned idx;
  };

  // Positions on the leftmost / rightmost entry under `n`, at depth d.
  void descend(const node* n, unsigned d, bool rightmost) noexcept {
    assert(tree_.root_->level < kMaxHeight);
    while (n->level) {
      const inner* in = as_inner(n);
      const unsigned i = rightmost ? in->count - 1u : 0u;
      path_[d++] = {in, i};
      n = in->child[i];
    }
    leaf_ = as_leaf(n);
    idx_ = rightmost ? leaf_->count - 1u : 0u;
  }
  // Moves to the first entry of the leaf after the current one.
  void next_leaf() noexcept {
    for (unsigned d = tree_.root_->level; d-- > 0;) {
      frame& f = path_[d];
      if (f.idx + 1 < f.in->count) {
        ++f.idx;
        descend(f.in->child[f.idx], d + 1, false);
        return;
      }
    }
    leaf_ = nullptr;
  }

  persistent_btree tree_;
  std::array<frame, kMaxHeight> path_{};   // path_[d]: inner node at depth d (root = 0)
  const leaf* leaf_ = nullptr;
  unsigned idx_ = 0;
};

}  // namespace keel::detail
