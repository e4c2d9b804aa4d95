// tests/persistent_btree_test.cpp - keel::detail::persistent_btree against a
// std::map model: randomized edits, old versions, transients, heavy deletion,
// cursors, and concurrent sharing of versions (meant to run under TSan too).

#include <doctest/doctest.h>

#include <keel/memory/btree.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using keel::detail::persistent_btree;
using model = std::map<std::string, std::string>;

namespace {

using namespace std::string_literals;

// REQUIRE, but only pays doctest's bookkeeping when the check fails (the
// model checks below run ~10^8 comparisons).
#define QUICK_REQUIRE(...)                    \
  do {                                        \
    if (!(__VA_ARGS__)) REQUIRE(__VA_ARGS__); \
  } while (0)

// Keys from a tiny alphabet (so keys collide and share long prefixes, ties
// beyond the 8-byte cached prefix included) plus hand-picked edge cases.
std::vector<std::string> make_key_pool(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::string> pool = {
      ""s, "\0"s, "\0\0"s, "\0\0\0\0\0\0\0\0\0"s, "\xff"s, "\xff\xff"s, "\xff\xff\xff\xff\xff\xff\xff\xff"s,
      "\xff\xff\xff\xff\xff\xff\xff\xff\xff"s, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"s,
      "a"s, "a\0"s, "a\0b"s, "ab"s, "prefix-shared-0"s, "prefix-shared-1"s, "prefix-shared-10"s,
      "prefix-shared"s, "prefix-s"s, "prefix-"s, "\x80"s, "\x7f"s, "\x7f\xff"s, "\x80\0"s};
  const char alphabet[] = {'\0', '\x01', 'a', 'b', '\x7f', '\x80', '\xfe', '\xff'};
  std::uniform_int_distribution<int> len(0, 12), sym(0, 7);
  while (pool.size() < n) {
    std::string k;
    const int l = len(rng);
    // Half of the keys share a 9-byte prefix, so the cached prefix ties.
    if (rng() % 2) k = "\x01\x01\x01\x01\x01\x01\x01\x01\x01"s;
    for (int i = 0; i < l; ++i) k.push_back(alphabet[sym(rng)]);
    pool.push_back(std::move(k));
  }
  return pool;
}

std::string random_value(std::mt19937_64& rng) {
  static const std::string vals[] = {""s, "\0"s, "v"s, "\xff\0\xff"s, std::string(100, 'x')};
  if (rng() % 2) return vals[rng() % std::size(vals)];
  return "value-" + std::to_string(rng() % 100000);
}

// Forward and reverse iteration, size, invariants and every find.
void check_equal(const persistent_btree& t, const model& m) {
  QUICK_REQUIRE(t.size() == m.size());
  QUICK_REQUIRE(t.empty() == m.empty());
  QUICK_REQUIRE(t.check_invariants());
  persistent_btree::cursor c(t);
  c.seek_first();
  for (const auto& [k, v] : m) {
    QUICK_REQUIRE(c.valid());
    QUICK_REQUIRE(c.key() == k);
    QUICK_REQUIRE(c.value() == v);
    c.next();
  }
  QUICK_REQUIRE(!c.valid());
  c.seek_last();
  for (auto it = m.rbegin(); it != m.rend(); ++it) {
    QUICK_REQUIRE(c.valid());
    QUICK_REQUIRE(c.key() == it->first);
    QUICK_REQUIRE(c.value() == it->second);
    c.prev();
  }
  QUICK_REQUIRE(!c.valid());
  for (const auto& [k, v] : m) {
    const auto* e = t.find(k);
    QUICK_REQUIRE(e != nullptr);
    QUICK_REQUIRE(e->key() == k);
    QUICK_REQUIRE(e->value() == v);
  }
}

void check_find(const persistent_btree& t, const model& m, const std::string& k) {
  const auto* e = t.find(k);
  const auto it = m.find(k);
  QUICK_REQUIRE((e != nullptr) == (it != m.end()));
  if (e) QUICK_REQUIRE(e->value() == it->second);
}

// seek / seek_before on `k`, then a few steps each way, against the model.
void check_seek(const persistent_btree& t, const model& m, const std::string& k, std::mt19937_64& rng) {
  persistent_btree::cursor c(t);
  c.seek(k);
  auto it = m.lower_bound(k);
  auto same = [&] {
    if (it == m.end()) {
      QUICK_REQUIRE(!c.valid());
      return false;
    }
    QUICK_REQUIRE(c.valid());
    QUICK_REQUIRE(c.key() == it->first);
    QUICK_REQUIRE(c.value() == it->second);
    return true;
  };
  for (int steps = static_cast<int>(rng() % 4); same() && steps > 0; --steps) {
    c.next();
    ++it;
  }
  c.seek_before(k);
  it = m.lower_bound(k);
  if (it == m.begin()) {
    QUICK_REQUIRE(!c.valid());
    return;
  }
  --it;
  for (int steps = static_cast<int>(rng() % 4);; --steps) {
    QUICK_REQUIRE(same());
    if (steps == 0) break;
    c.prev();
    if (it == m.begin()) {
      QUICK_REQUIRE(!c.valid());
      break;
    }
    --it;
  }
}

}  // namespace

TEST_CASE("empty tree") {
  persistent_btree t;
  CHECK(t.size() == 0);
  CHECK(t.empty());
  CHECK(t.height() == 0);
  CHECK(t.memory_bytes() == 0);
  CHECK(t.find("") == nullptr);
  CHECK(t.check_invariants());
  persistent_btree::cursor c(t);
  c.seek_first();
  CHECK_FALSE(c.valid());
  c.seek_last();
  CHECK_FALSE(c.valid());
  c.seek("x");
  CHECK_FALSE(c.valid());
  c.seek_before("x");
  CHECK_FALSE(c.valid());
  CHECK(t.without("x").empty());
}

TEST_CASE("arbitrary bytes in keys and values") {
  const std::string big(1 << 20, '\xab');
  const model m = {{""s, ""s}, {"\0"s, "\0\0"s}, {"\0\xff"s, "x"s}, {"\xff\xff\xff"s, big}, {"a"s, "\xff"s}};
  persistent_btree t;
  for (const auto& [k, v] : m) t = t.with(k, v);
  check_equal(t, m);
  CHECK(t.find("")->value().empty());
  CHECK(t.find("\0\xff"s)->key().size() == 2);
  CHECK(t.memory_bytes() > big.size());
  // Overwrite keeps one entry.
  t = t.with(""s, "now"s);
  CHECK(t.size() == m.size());
  CHECK(t.find("")->value() == "now");
  t = t.without(""s).without("nope"s);
  CHECK(t.size() == m.size() - 1);
  CHECK(t.find("") == nullptr);
}

TEST_CASE("randomized edits against std::map, with old versions") {
  std::mt19937_64 rng(0x5eed'b7ee);
  const auto pool = make_key_pool(rng, 20000);
  std::uniform_int_distribution<std::size_t> any_key(0, pool.size() - 1), hot_key(0, 63);
  auto pick = [&]() -> const std::string& { return pool[rng() % 10 < 3 ? hot_key(rng) : any_key(rng)]; };

  persistent_btree t;
  model m;
  std::vector<std::pair<persistent_btree, model>> old;
  constexpr int kSteps = 200000;
  std::size_t max_size = 0, max_height = 0, max_prefix = 0;
  for (int step = 0; step < kSteps; ++step) {
    // Alternate growing and shrinking phases so the tree height changes.
    const bool grow = (step / 25000) % 2 == 0;
    const unsigned r = static_cast<unsigned>(rng() % 100);
    if (r < 10) {   // a batch through one transient
      persistent_btree::transient tr(t);
      const persistent_btree base = t;
      const bool verify_base = rng() % 16 == 0;
      const model base_model = verify_base ? m : model();
      const int n = 1 + static_cast<int>(rng() % 64);
      for (int i = 0; i < n; ++i) {
        const std::string& k = pick();
        if (rng() % 100 < (grow ? 65u : 30u)) {
          const std::string v = random_value(rng);
          tr.insert_or_assign(k, v);
          m[k] = v;
        } else {
          tr.erase(k);
          m.erase(k);
        }
        QUICK_REQUIRE(tr.size() == m.size());
        const std::string& probe = pick();
        const auto* e = tr.find(probe);
        QUICK_REQUIRE((e != nullptr) == m.contains(probe));
      }
      t = std::move(tr).persist();
      if (verify_base) check_equal(base, base_model);
    } else if (r < (grow ? 65u : 40u)) {
      const std::string& k = pick();
      const std::string v = random_value(rng);
      if (rng() % 2) {
        t = t.with(k, v);
      } else {
        persistent_btree::transient tr(t);
        tr.insert_or_assign(k, v);
        t = std::move(tr).persist();
      }
      m[k] = v;
    } else {
      const std::string& k = pick();
      if (rng() % 2) {
        t = t.without(k);
      } else {
        persistent_btree::transient tr(t);
        tr.erase(k);
        t = std::move(tr).persist();
      }
      m.erase(k);
    }

    QUICK_REQUIRE(t.size() == m.size());
    check_find(t, m, pick());
    check_find(t, m, pick());
    if (step % 7 == 0) check_seek(t, m, pick(), rng);
    if (rng() % 2000 == 0 || step % 25000 == 24999) {
      check_equal(t, m);
      max_prefix = std::max(max_prefix, t.longest_node_prefix());
    }
    if (step % 4000 == 1999) old.emplace_back(t, m);
    if (rng() % 1000 == 0 && !old.empty()) {
      const auto& [ot, om] = old[rng() % old.size()];
      check_equal(ot, om);
    }
    max_size = std::max(max_size, t.size());
    max_height = std::max(max_height, t.height());
  }
  check_equal(t, m);
  QUICK_REQUIRE(old.size() == 50);
  for (const auto& [ot, om] : old) check_equal(ot, om);
  MESSAGE("max size " << max_size << ", max height " << max_height << ", longest node prefix " << max_prefix);
  CHECK(max_height >= 3);
  CHECK(max_prefix >= 9);   // nodes inside the keys sharing 9 bytes truncate them
}

// Reuse mode, as the memory backend drives it: the owner holds the current
// version; a reuse-mode transient edits it; the result replaces it, the
// retirement is settled with the old handle still held, and finished once
// that handle is gone (sometimes several versions later: readers without
// handles may still be in them, so retired versions are read until then).
// Handles to the base taken during the edit (and versions edited from them)
// must make settle() undo the takeover; abandoned transients must leave the
// base whole. Node blocks go through a node_pool, as in the memory backend.
// Under ASan this is also the use-after-free check (pooled blocks are
// poisoned).
TEST_CASE("reuse-mode transients: takeover, undo on a handle taken meanwhile, abandon, deferred frees") {
  std::mt19937_64 rng(0xca11'ab1e);
  const auto pool = make_key_pool(rng, 6000);
  std::uniform_int_distribution<std::size_t> any_key(0, pool.size() - 1);
  auto pick = [&]() -> const std::string& { return pool[any_key(rng)]; };

  struct retired {
    persistent_btree version;
    persistent_btree::retirement moved;
    model m;
  };
  persistent_btree::node_pool blocks;
  unsigned most_pooled = 0;
  persistent_btree cur;
  model m;
  persistent_btree::retirement spare;
  std::vector<retired> pending;                            // replaced, not yet finished
  std::vector<std::pair<persistent_btree, model>> held;    // handles that outlive their version
  int undone = 0, kept = 0, abandoned = 0;
  std::size_t max_height = 0;
  for (int step = 0; step < 6000; ++step) {
    const bool grow = (step / 1000) % 2 == 0;
    if (rng() % 50 == 0) held.emplace_back(cur, m);   // a handle taken before the edit
    model next_m = m;
    persistent_btree::transient tr(cur, std::move(spare), &blocks);
    spare = persistent_btree::retirement();
    const int n = rng() % 4 == 0 ? 1 + static_cast<int>(rng() % 100) : 1;
    const int handle_at = rng() % 20 == 0 ? static_cast<int>(rng() % n) : -1;
    bool base_handle_held = false;   // a handle on the base, taken during the edit, held through settle()
    for (int i = 0; i < n; ++i) {
      if (i == handle_at) {
        // A handle on the base taken while it is edited (the race settle()
        // catches); half the time a private edit of it, whose copies take
        // references to the base's (maybe hollowed) nodes, outlives it.
        if (rng() % 2) {
          held.emplace_back(cur, m);
          base_handle_held = true;
        } else {
          persistent_btree::transient side(cur);
          model side_m = m;
          for (int j = 0; j < 5; ++j) {
            const std::string& k = pick();
            side.insert_or_assign(k, "side");
            side_m[k] = "side";
          }
          held.emplace_back(std::move(side).persist(), std::move(side_m));
        }
      }
      const std::string& k = pick();
      if (rng() % 100 < (grow ? 70u : 35u)) {
        const std::string v = random_value(rng);
        tr.insert_or_assign(k, v);
        next_m[k] = v;
      } else {
        tr.erase(k);
        next_m.erase(k);
      }
    }
    QUICK_REQUIRE(tr.size() == next_m.size());
    if (rng() % 25 == 0) {   // abandoned: the base must be whole
      { persistent_btree::transient gone = std::move(tr); }
      ++abandoned;
      check_find(cur, m, pick());
      if (rng() % 8 == 0) check_equal(cur, m);
      continue;
    }
    persistent_btree::retirement moved;
    persistent_btree next = std::move(tr).persist(moved);
    persistent_btree old = std::exchange(cur, std::move(next));
    const bool took_over = moved.took_over();
    const bool stands = moved.settle();
    // A held handle always undoes it; a private edit whose handle is gone
    // may leave it standing (its copies took their own references).
    QUICK_REQUIRE(!(stands && base_handle_held));
    QUICK_REQUIRE((stands == took_over || handle_at >= 0));
    if (took_over) ++(stands ? kept : undone);
    pending.push_back({std::move(old), std::move(moved), std::exchange(m, std::move(next_m))});
    // Retired versions stay readable until they are finished.
    if (rng() % 10 == 0) {
      const auto& r = pending[rng() % pending.size()];
      QUICK_REQUIRE(r.version.check_invariants());
      for (int j = 0; j < 20; ++j) check_find(r.version, r.m, pick());
    }
    // Finish the oldest ones, in order, as the epoch advances.
    while (!pending.empty() && (pending.size() > 4 || rng() % 3 == 0)) {
      retired r = std::move(pending.front());
      pending.erase(pending.begin());
      r.version = persistent_btree();   // the owner's handle goes first
      r.moved.finish(&blocks);
      if (spare.capacity() == 0) spare = std::move(r.moved);
    }
    most_pooled = std::max(most_pooled, blocks.leaves() + blocks.inners());
    QUICK_REQUIRE(blocks.leaves() <= persistent_btree::node_pool::kKeep);
    QUICK_REQUIRE(blocks.inners() <= persistent_btree::node_pool::kKeep);
    QUICK_REQUIRE(cur.size() == m.size());
    check_find(cur, m, pick());
    check_find(cur, m, pick());
    if (step % 500 == 0) check_equal(cur, m);
    if (rng() % 200 == 0 && !held.empty()) {
      const auto& [h, hm] = held[rng() % held.size()];
      check_equal(h, hm);
    }
    while (held.size() > 8) held.erase(held.begin() + static_cast<long>(rng() % held.size()));
    max_height = std::max(max_height, cur.height());
  }
  check_equal(cur, m);
  for (const auto& [h, hm] : held) check_equal(h, hm);
  for (auto& r : pending) {
    r.version = persistent_btree();
    r.moved.finish(&blocks);
  }
  MESSAGE("kept " << kept << ", undone " << undone << ", abandoned " << abandoned << ", max height " << max_height
                  << ", most blocks pooled " << most_pooled);
  CHECK(most_pooled > 0);
  CHECK(max_height >= 3);
  CHECK(abandoned > 50);
  CHECK(undone > 50);
  CHECK(kept > 3000);
}

TEST_CASE("keys sharing a long prefix: nodes truncate it, through splits, merges and rebalances") {
  // "user00000" + 7 digits, as in keys numbered within a table: every key
  // shares its first 9 bytes, and neighbours share more.
  auto key = [](std::uint64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "user00000%07llu", static_cast<unsigned long long>(i));
    return std::string(buf);
  };
  std::mt19937_64 rng(11);
  std::vector<std::uint64_t> ids(200000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i * 7;
  std::shuffle(ids.begin(), ids.end(), rng);
  persistent_btree t;
  model m;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string k = key(ids[i]);
    if (i % 4 == 0) {
      t = t.with(k, k);   // one path copy per key
    } else {
      persistent_btree::transient tr(t);
      tr.insert_or_assign(k, k);
      t = std::move(tr).persist();
    }
    m[k] = k;
  }
  check_equal(t, m);
  const std::size_t loaded_prefix = t.longest_node_prefix();
  MESSAGE("longest node prefix after the load: " << loaded_prefix << ", height " << t.height());
  CHECK(loaded_prefix >= 12);   // a leaf holds ~22 neighbours: "user00000" + 3 or more digits
  // Keys between and around the stored ones, outside the shared prefix too.
  for (const std::string& probe : {"user0000"s, "user00000"s, "user000000000000"s, "user000000000000\0"s, "user0000099999999"s,
                                   "user1"s, "usea"s, ""s, "\xff"s}) {
    check_find(t, m, probe);
    check_seek(t, m, probe, rng);
  }
  for (int i = 0; i < 2000; ++i) {
    const std::uint64_t id = rng() % (ids.size() * 7 + 10);
    check_find(t, m, key(id));
    check_seek(t, m, key(id), rng);
  }
  // Shrink to a few keys in random order, overwriting some on the way, so
  // nodes merge and rebalance across fences of every length; an old version
  // is kept to check that none of this changed it.
  const persistent_btree full = t;
  const model full_model = m;
  std::shuffle(ids.begin(), ids.end(), rng);
  for (std::size_t i = 0; i + 50 < ids.size(); ++i) {
    const std::string k = key(ids[i]);
    persistent_btree::transient tr(t);
    tr.erase(k);
    m.erase(k);
    if (i % 3 == 0) {
      const std::string o = key(ids[ids.size() - 1 - i % 50]);
      tr.insert_or_assign(o, "v" + std::to_string(i));
      m[o] = "v" + std::to_string(i);
    }
    t = std::move(tr).persist();
    if (i % 20000 == 0) check_equal(t, m);
  }
  check_equal(t, m);
  check_equal(full, full_model);
}

TEST_CASE("transients leave their base untouched") {
  std::mt19937_64 rng(42);
  persistent_btree base;
  model bm;
  {
    persistent_btree::transient tr(base);
    for (int i = 0; i < 5000; ++i) {
      const std::string k = "key" + std::to_string(rng() % 8000);
      tr.insert_or_assign(k, "base");
      bm[k] = "base";
    }
    base = std::move(tr).persist();
  }
  check_equal(base, bm);

  // Two interleaved transients on the same base, plus one that is abandoned.
  persistent_btree::transient a(base), b(base);
  model am = bm, bmod = bm;
  {
    persistent_btree::transient dropped(base);
    for (int i = 0; i < 3000; ++i) dropped.erase("key" + std::to_string(i));
    dropped.insert_or_assign("zzz", "dropped");
  }
  for (int i = 0; i < 20000; ++i) {
    const std::string k = "key" + std::to_string(rng() % 9000);
    switch (rng() % 4) {
      case 0: a.insert_or_assign(k, "a"); am[k] = "a"; break;
      case 1: a.erase(k); am.erase(k); break;
      case 2: b.insert_or_assign(k, "b"); bmod[k] = "b"; break;
      default: b.erase(k); bmod.erase(k); break;
    }
    if (i % 5000 == 0) check_equal(base, bm);
  }
  check_equal(base, bm);
  const persistent_btree av = std::move(a).persist();
  const persistent_btree bv = std::move(b).persist();
  check_equal(base, bm);
  check_equal(av, am);
  check_equal(bv, bmod);

  // A transient built from a persisted transient's result copies its nodes.
  persistent_btree::transient c(av);
  for (const auto& [k, v] : am) c.erase(k);
  CHECK(c.size() == 0);
  CHECK(std::move(c).persist().empty());
  check_equal(av, am);
}

TEST_CASE("heavy deletion shrinks the tree to empty") {
  std::mt19937_64 rng(7);
  for (int order = 0; order < 3; ++order) {
    CAPTURE(order);
    std::vector<std::string> keys;
    for (int i = 0; i < 100000; ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "k%08d", i);
      keys.emplace_back(buf);
    }
    persistent_btree t;
    {
      // Load ascending, descending or shuffled; erase (below) in the same order.
      std::vector<std::string> ins = keys;
      if (order == 1) std::reverse(ins.begin(), ins.end());
      if (order == 2) std::shuffle(ins.begin(), ins.end(), rng);
      persistent_btree::transient tr(t);
      for (const auto& k : ins) tr.insert_or_assign(k, k);
      t = std::move(tr).persist();
    }
    QUICK_REQUIRE(t.size() == keys.size());
    QUICK_REQUIRE(t.check_invariants());
    // Entries take a header and 18 bytes each here; sorted loads leave
    // nodes ~3/4 full.
    const double node_bytes = double(t.memory_bytes()) / double(t.size()) - double(sizeof(keel::detail::pb_entry) + 18);
    MESSAGE("order " << order << ": node bytes per entry " << node_bytes << ", height " << t.height());
    if (order < 2) CHECK(node_bytes < 26);
    const persistent_btree full = t;
    if (order == 1) std::reverse(keys.begin(), keys.end());
    if (order == 2) std::shuffle(keys.begin(), keys.end(), rng);
    std::size_t left = keys.size();
    for (const auto& k : keys) {
      // Mix batched and single erases.
      if (left % 3 == 0) {
        t = t.without(k);
      } else {
        persistent_btree::transient tr(t);
        tr.erase(k);
        tr.erase(k);   // second erase is a no-op
        t = std::move(tr).persist();
      }
      --left;
      QUICK_REQUIRE(t.size() == left);
      if (left % 5000 == 0 || left < 40) QUICK_REQUIRE(t.check_invariants());
      if (left == 100) {
        CHECK(t.height() <= 3);
        CHECK(t.memory_bytes() < 100 * 64 + 20 * 800);
      }
      if (left == 20) CHECK(t.height() <= 2);
    }
    CHECK(t.empty());
    CHECK(t.height() == 0);
    CHECK(t.memory_bytes() == 0);
    CHECK(full.size() == 100000);
    CHECK(full.check_invariants());
  }
}

TEST_CASE("cursor keeps its version alive") {
  std::unique_ptr<persistent_btree::cursor> c;
  {
    persistent_btree t;
    for (int i = 0; i < 1000; ++i) t = t.with("k" + std::to_string(i), std::to_string(i));
    c = std::make_unique<persistent_btree::cursor>(t);
    t = persistent_btree();
  }
  int n = 0;
  for (c->seek_first(); c->valid(); c->next()) ++n;
  CHECK(n == 1000);
  c->seek("k500");
  QUICK_REQUIRE(c->valid());
  CHECK(c->value() == "500");
  c->seek_before("k500");
  QUICK_REQUIRE(c->valid());
  CHECK(c->key() == "k50");   // "k50" < "k500"
  persistent_btree::cursor moved(std::move(*c));
  CHECK_FALSE(c->valid());
  CHECK(moved.valid());
  c.reset();
  moved.next();
  CHECK(moved.key() == "k500");
}

TEST_CASE("versions shared across threads") {
  // One writer publishes versions; readers copy, iterate, edit privately and
  // destroy them. Key "#n" always holds the number of other keys.
  std::mutex mu;
  persistent_btree published = persistent_btree().with("#n", "0");
  std::atomic<bool> done{false};
  std::atomic<long> reader_checks{0};

  auto snapshot = [&] {
    std::lock_guard lock(mu);
    return published;
  };
  auto reader = [&](unsigned seed) {
    std::mt19937_64 rng(seed);
    std::vector<persistent_btree> held;
    while (!done.load(std::memory_order_relaxed)) {
      persistent_btree v = snapshot();
      const auto* meta = v.find("#n");
      QUICK_REQUIRE(meta != nullptr);
      const std::size_t n = std::stoul(std::string(meta->value()));
      QUICK_REQUIRE(v.size() == n + 1);
      if (rng() % 4 == 0) {   // full scan
        persistent_btree::cursor c(v);
        std::size_t count = 0;
        std::string prev;
        for (c.seek_first(); c.valid(); c.next(), ++count) {
          if (count) QUICK_REQUIRE(prev < c.key());
          prev = c.key();
        }
        QUICK_REQUIRE(count == n + 1);
      } else {   // private edits on a shared version
        persistent_btree::transient tr(v);
        for (int i = 0; i < 8; ++i) tr.insert_or_assign("r" + std::to_string(rng() % 500), "mine");
        tr.erase("w" + std::to_string(rng() % 3000));
        persistent_btree mine = std::move(tr).persist();
        QUICK_REQUIRE(mine.size() >= v.size() - 1);
        held.push_back(std::move(mine));
      }
      held.push_back(std::move(v));
      while (held.size() > 6) held.erase(held.begin() + static_cast<long>(rng() % held.size()));
      reader_checks.fetch_add(1, std::memory_order_relaxed);
    }
  };

  std::vector<std::thread> readers;
  for (unsigned i = 0; i < 3; ++i) readers.emplace_back(reader, 100 + i);

  std::mt19937_64 rng(1);
  persistent_btree cur = snapshot();
  model m;
  for (int step = 0; step < 6000; ++step) {
    persistent_btree::transient tr(cur);
    for (int i = 0; i < 6; ++i) {
      const std::string k = "w" + std::to_string(rng() % 3000);
      if (rng() % 3) {
        tr.insert_or_assign(k, "v");
        m[k] = "v";
      } else {
        tr.erase(k);
        m.erase(k);
      }
    }
    tr.insert_or_assign("#n", std::to_string(m.size()));
    cur = std::move(tr).persist();
    std::lock_guard lock(mu);
    published = cur;
  }
  done = true;
  for (auto& th : readers) th.join();
  m["#n"] = std::to_string(m.size());
  check_equal(cur, m);
  MESSAGE("reader iterations: " << reader_checks.load());
}
