// The watch conformance suite (issue 28; include/keel/watch.hpp has the
// semantics, docs/watch.md the page): every backend that has watch
// (KEEL_WATCH_BACKENDS, tests/support/backends.hpp) passes every case here,
// with the same results. Backend-only behaviour (history sizes, resuming
// across a restart or the hybrid move, etcd failover) lives in each
// backend's own tests.
//
// No case sleeps to synchronise: a case that waits for changes reads them
// with next() under a generous deadline (`due`), which a working backend
// never reaches; a case that expects nothing ends its history with a
// sentinel change, so that a stray change shows up before it.
#include <doctest/doctest.h>

#include "support/backends.hpp"

// Without a backend that has watch (none yet in this build) the suite is
// empty.
#ifdef KEEL_WATCH_BACKENDS

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/scale.hpp"

using namespace std::chrono_literals;
using keel::change;
using keel::errc;
using keel::key_range;
using keel::watch_options;
using keel::write_batch;
using keel::test::keyspace_or_fail;
using keel::test::open_or_fail;
using std::chrono::steady_clock;

namespace {

// How long a case waits for changes that are due: long enough for a loaded
// CI machine, never reached when the backend works.
constexpr auto due = 30s;

// The backends whose data lives in a server (they say so with no_checkpoint,
// tests/support/backends.hpp): every write is a round trip, so the loops
// that write many keys write fewer there; the checks are the same.
template <class B>
inline constexpr bool networked = requires { B::no_checkpoint; };

// Whether stores of type Store have keyspaces: basic_store<P> with
// keel::keyspace_policy<P>, and any_store (whose backends in this suite all
// have them).
template <class Store>
inline constexpr bool keyspaced = requires(Store& s) { s.keyspace(std::string_view{}); };

// A change as one line, for messages and comparisons.
std::string describe(const change& c) {
  std::string s = std::to_string(c.seq) + " [" + c.keyspace + "] " + c.key;
  s += c.value ? " = " + *c.value : std::string(" erased");
  return s;
}

// A change without its seq (what a case knows before the commit).
std::string op_of(const change& c) { return "[" + c.keyspace + "] " + c.key + (c.value ? " = " + *c.value : " erased"); }
std::string put_op(const std::string& key, const std::string& value, const std::string& ks = "") {
  return "[" + ks + "] " + key + " = " + value;
}
std::string erase_op(const std::string& key, const std::string& ks = "") { return "[" + ks + "] " + key + " erased"; }

template <class T>
std::string error_text(const keel::result<T>& r) {
  return r ? std::string() : std::string(keel::to_string(r.error().code())) + ": " + r.error().message();
}

// Opens a watch of `target` (a store or a keyspace handle) or fails the case.
template <class Target>
auto watch_or_fail(const Target& target, const key_range& range = key_range::all(), const watch_options& o = {}) {
  auto w = target.watch(range, o);
  REQUIRE_MESSAGE(w, error_text(w));
  return std::move(*w);
}

// The next `n` changes of `w`, or fails the case (an error, or fewer than `n`
// within `due`).
template <class Watch>
std::vector<change> read_changes(Watch& w, std::size_t n) {
  std::vector<change> out;
  const auto deadline = steady_clock::now() + due;
  while (out.size() < n && steady_clock::now() < deadline) {
    auto c = w.next(100ms);
    REQUIRE_MESSAGE(c, "after " << out.size() << " changes: " << error_text(c));
    if (*c) out.push_back(std::move(**c));
  }
  REQUIRE_MESSAGE(out.size() == n, "got " << out.size() << " of " << n << " changes within " << due.count() << " s");
  return out;
}

// Changes of `w` up to and including the first one with key `last`.
template <class Watch>
std::vector<change> read_until(Watch& w, const std::string& last) {
  std::vector<change> out;
  const auto deadline = steady_clock::now() + due;
  while (steady_clock::now() < deadline) {
    auto c = w.next(100ms);
    REQUIRE_MESSAGE(c, "after " << out.size() << " changes: " << error_text(c));
    if (!*c) continue;
    out.push_back(std::move(**c));
    if (out.back().key == last) return out;
  }
  FAIL("no change of key '" << last << "' within " << due.count() << " s (got " << out.size() << " changes)");
  return out;
}

// Checks that `got` is `want`, naming the first difference.
void check_same(const std::vector<change>& got, const std::vector<change>& want) {
  for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] != want[i]) {
      CHECK_MESSAGE(got[i] == want[i], "change " << i << ": got " << describe(got[i]) << ", want " << describe(want[i]));
      return;
    }
  }
  CHECK_MESSAGE(got.size() == want.size(), "got " << got.size() << " changes, want " << want.size());
}

// Checks that the changes without their seqs are `want`, in order.
void check_ops(const std::vector<change>& got, const std::vector<std::string>& want) {
  std::vector<std::string> ops;
  for (const auto& c : got) ops.push_back(op_of(c));
  for (std::size_t i = 0; i < std::min(ops.size(), want.size()); ++i) {
    if (ops[i] != want[i]) {
      CHECK_MESSAGE(ops[i] == want[i], "change " << i << ": got " << ops[i] << ", want " << want[i]);
      return;
    }
  }
  CHECK_MESSAGE(ops.size() == want.size(), "got " << ops.size() << " changes, want " << want.size());
}

// The ops of got[from, from + n), sorted (one commit's changes: their order
// within the commit is the backend's).
std::vector<std::string> sorted_ops(const std::vector<change>& got, std::size_t from, std::size_t n) {
  std::vector<std::string> ops;
  for (std::size_t i = from; i < from + n && i < got.size(); ++i) ops.push_back(op_of(got[i]));
  std::sort(ops.begin(), ops.end());
  return ops;
}

std::string key_of(int writer, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "w%d/%05d", writer, i);
  return buf;
}

// Waits until `flag` is set, up to `due`; whether it was.
bool wait_for_flag(const std::atomic<bool>& flag) {
  const auto deadline = steady_clock::now() + due;
  while (!flag.load() && steady_clock::now() < deadline) std::this_thread::yield();
  return flag.load();
}

}  // namespace

TEST_SUITE("watch") {
  TEST_CASE_TEMPLATE("watch: every change exactly once, in commit order (4 writers, 2 watches)", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    const std::uint64_t start = store.last_seq();
    // One watch with the default buffer, one with a tiny one (it reads on
    // from the store's history most of the time).
    watch_options tiny;
    tiny.buffer = 3;
    auto w_default = watch_or_fail(store);
    auto w_tiny = watch_or_fail(store, key_range::all(), tiny);

    constexpr int writers = 4;
    const int per_writer = static_cast<int>(keel::test::scaled("KEEL_WATCH_OPS", networked<B> ? 60 : 400));
    const std::size_t total = static_cast<std::size_t>(writers * per_writer);
    // What each writer did, in its order: a put of a new key, and every
    // fifth op an erase of the key it put before.
    std::vector<std::vector<std::string>> done(writers);
    std::vector<std::string> write_errors(writers);

    // Both watches are read while the writers write (errors collected: no
    // assertion off the main thread).
    struct reader {
      std::vector<change> got;
      std::string error;
    };
    reader r_default, r_tiny;
    auto read_all = [total](auto& w, reader& r) {
      const auto deadline = steady_clock::now() + due;
      while (r.got.size() < total && steady_clock::now() < deadline) {
        auto c = w.next(100ms);
        if (!c) {
          r.error = error_text(c);
          return;
        }
        if (*c) r.got.push_back(std::move(**c));
      }
    };
    std::thread reader_default([&] { read_all(w_default, r_default); });
    std::thread reader_tiny([&] { read_all(w_tiny, r_tiny); });
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < per_writer; ++i) {
          keel::result<void> r;
          if (i % 5 == 4) {
            r = store.erase(key_of(t, i - 1));
            done[t].push_back(erase_op(key_of(t, i - 1)));
          } else {
            r = store.put(key_of(t, i), "v" + std::to_string(i));
            done[t].push_back(put_op(key_of(t, i), "v" + std::to_string(i)));
          }
          if (!r) {
            write_errors[t] = r.error().message();
            return;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    reader_default.join();
    reader_tiny.join();
    for (const auto& e : write_errors) REQUIRE_MESSAGE(e.empty(), e);
    const std::uint64_t last = store.last_seq();

    for (const reader* r : {&r_default, &r_tiny}) {
      INFO((r == &r_default ? "the watch with the default buffer" : "the watch with buffer 3"));
      REQUIRE_MESSAGE(r->error.empty(), r->error);
      REQUIRE_MESSAGE(r->got.size() == total, "got " << r->got.size() << " of " << total << " changes");
      // Each op was a commit of its own: seqs strictly increase, all after
      // the watch began and none after last_seq().
      std::map<std::string, std::vector<std::string>> per_writer_ops;
      for (std::size_t i = 0; i < total; ++i) {
        const auto& c = r->got[i];
        if (i > 0) CHECK_MESSAGE(c.seq > r->got[i - 1].seq, describe(r->got[i - 1]) << " then " << describe(c));
        CHECK(c.seq > start);
        CHECK(c.seq <= last);
        CHECK(c.keyspace.empty());
        per_writer_ops[c.key.substr(0, 2)].push_back(op_of(c));
      }
      // Every op of every writer, once, in the writer's order (a writer's
      // ops commit in the order it made them).
      for (int t = 0; t < writers; ++t) {
        INFO("writer " << t);
        CHECK(per_writer_ops["w" + std::to_string(t)] == done[t]);
      }
    }
    // Both watches saw the same history, seqs included.
    bool same = r_default.got == r_tiny.got;
    CHECK_MESSAGE(same, "the two watches saw different histories");
    // And nothing more.
    auto more = w_default.next(50ms);
    REQUIRE_MESSAGE(more, error_text(more));
    CHECK_MESSAGE(!*more, "an extra change: " << describe(**more));
  }

  TEST_CASE_TEMPLATE("watch: a batch and a transaction are consecutive changes with one seq", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto w = watch_or_fail(store);
    REQUIRE(store.put("a", "1"));
    write_batch batch;
    batch.put("b", "2").put("c", "3").erase("a").put("d", "4");
    REQUIRE(store.write(batch));
    auto tx = store.transaction();
    REQUIRE(tx.put("e", "5"));
    REQUIRE(tx.erase("b"));
    REQUIRE(tx.commit());
    REQUIRE(store.put("f", "6"));

    const auto got = read_changes(w, 8);
    for (const auto& c : got) INFO(describe(c));
    CHECK(op_of(got[0]) == put_op("a", "1"));
    // The batch: four changes, one seq, after the put's.
    CHECK(got[1].seq > got[0].seq);
    for (std::size_t i = 2; i <= 4; ++i) CHECK_MESSAGE(got[i].seq == got[1].seq, describe(got[i]));
    CHECK(sorted_ops(got, 1, 4) ==
          std::vector<std::string>{erase_op("a"), put_op("b", "2"), put_op("c", "3"), put_op("d", "4")});
    // The transaction: two changes, one seq.
    CHECK(got[5].seq > got[4].seq);
    CHECK(got[6].seq == got[5].seq);
    CHECK(sorted_ops(got, 5, 2) == std::vector<std::string>{erase_op("b"), put_op("e", "5")});
    // The put after it: a commit of its own.
    CHECK(got[7].seq > got[6].seq);
    CHECK(op_of(got[7]) == put_op("f", "6"));
    CHECK(store.last_seq() >= got[7].seq);
  }

  TEST_CASE_TEMPLATE("watch: erase_range is one erase per key it removed, none for absent keys", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (const char* k : {"k1", "k2", "k3", "l1", "m/a", "m/b"}) REQUIRE(store.put(k, "x"));
    auto w = watch_or_fail(store);
    // k0 and k9 (the bounds) were never there; l1 is outside.
    REQUIRE(store.erase_range(key_range::between("k0", "k9")));
    // A range with nothing in it: no change at all.
    REQUIRE(store.erase_range(key_range::prefix("nothing/")));
    // In a batch, beside a put: the erases and the put, one seq.
    write_batch batch;
    batch.erase_range(key_range::prefix("m/")).put("m/new", "n");
    REQUIRE(store.write(batch));
    // In a transaction.
    REQUIRE(store.put("t/1", "x"));
    auto tx = store.transaction();
    REQUIRE(tx.erase_range(key_range::prefix("t/")));
    REQUIRE(tx.commit());
    REQUIRE(store.put("sentinel", "s"));

    const auto got = read_changes(w, 3 + 3 + 1 + 1 + 1);
    for (const auto& c : got) INFO(describe(c));
    for (std::size_t i = 1; i < 3; ++i) CHECK(got[i].seq == got[0].seq);
    CHECK(sorted_ops(got, 0, 3) == std::vector<std::string>{erase_op("k1"), erase_op("k2"), erase_op("k3")});
    CHECK(got[3].seq > got[2].seq);
    for (std::size_t i = 4; i < 6; ++i) CHECK(got[i].seq == got[3].seq);
    CHECK(sorted_ops(got, 3, 3) == std::vector<std::string>{erase_op("m/a"), erase_op("m/b"), put_op("m/new", "n")});
    CHECK(op_of(got[6]) == put_op("t/1", "x"));
    CHECK(op_of(got[7]) == erase_op("t/1"));
    CHECK(got[7].seq > got[6].seq);
    CHECK(op_of(got[8]) == put_op("sentinel", "s"));
    CHECK(got[8].seq > got[7].seq);
  }

  TEST_CASE_TEMPLATE("watch: only the keys of its range, in commit order; the range's direction is ignored", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto w_prefix = watch_or_fail(store, key_range::prefix("p/"));
    auto w_between = watch_or_fail(store, key_range::between("b", "d"));
    auto w_reversed = watch_or_fail(store, key_range::between("b", "d").reversed());
    auto w_from = watch_or_fail(store, key_range::from("p/2"));

    REQUIRE(store.put("a", "1"));
    REQUIRE(store.put("b", "2"));
    REQUIRE(store.put("p/1", "3"));
    REQUIRE(store.put("c", "4"));
    REQUIRE(store.put("d", "5"));  // the upper bound: outside
    write_batch batch;
    batch.put("p/2", "6").put("bb", "7").put("z", "8");
    REQUIRE(store.write(batch));
    REQUIRE(store.erase("c"));
    REQUIRE(store.erase("a"));
    REQUIRE(store.erase_range(key_range::all()));
    // The sentinels: one per watch, the last change each gets.
    REQUIRE(store.put("p/zz", "end"));
    REQUIRE(store.put("cz", "end"));

    // erase_range(all) is one commit: its erases in each range, their order
    // within the commit the backend's.
    auto prefixed = read_changes(w_prefix, 5);
    check_ops(std::vector<change>(prefixed.begin(), prefixed.begin() + 2), {put_op("p/1", "3"), put_op("p/2", "6")});
    CHECK(sorted_ops(prefixed, 2, 2) == std::vector<std::string>{erase_op("p/1"), erase_op("p/2")});
    CHECK(prefixed[3].seq == prefixed[2].seq);
    CHECK(op_of(prefixed[4]) == put_op("p/zz", "end"));

    auto between = read_changes(w_between, 7);
    check_ops(std::vector<change>(between.begin(), between.begin() + 4),
              {put_op("b", "2"), put_op("c", "4"), put_op("bb", "7"), erase_op("c")});
    CHECK(sorted_ops(between, 4, 2) == std::vector<std::string>{erase_op("b"), erase_op("bb")});
    CHECK(op_of(between[6]) == put_op("cz", "end"));
    check_same(read_changes(w_reversed, 7), between);

    // From "p/2" on: the batch's p/2 and z (one seq), the erase_range's, the sentinel.
    auto from = read_changes(w_from, 5);
    CHECK(sorted_ops(from, 0, 2) == std::vector<std::string>{put_op("p/2", "6"), put_op("z", "8")});
    CHECK(from[1].seq == from[0].seq);
    CHECK(sorted_ops(from, 2, 2) == std::vector<std::string>{erase_op("p/2"), erase_op("z")});
    CHECK(op_of(from[4]) == put_op("p/zz", "end"));
    // Every watch saw each commit with the same seq.
    CHECK(from[2].seq == between[4].seq);
    CHECK(prefixed[2].seq == between[4].seq);
    CHECK(prefixed[1].seq == between[2].seq);
  }

  TEST_CASE_TEMPLATE("watch: resume after S, at every point of one history: nothing skipped, nothing repeated", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    const std::uint64_t s0 = store.last_seq();
    auto w = watch_or_fail(store);
    // A history of every kind of commit: puts, overwrites, erases, batches,
    // erase_range, transactions.
    for (int i = 0; i < 40; ++i) {
      const std::string k = "h/" + std::to_string(i % 9);
      if (i % 7 == 3) {
        write_batch b;
        b.put(k, "batch" + std::to_string(i)).put("h/x" + std::to_string(i), "y").erase("h/" + std::to_string((i + 1) % 9));
        REQUIRE(store.write(b));
      } else if (i % 11 == 5) {
        REQUIRE(store.erase_range(key_range::between("h/2", "h/5")));
      } else if (i % 13 == 6) {
        auto tx = store.transaction();
        REQUIRE(tx.put(k, "tx" + std::to_string(i)));
        REQUIRE(tx.put("h/t" + std::to_string(i), "t"));
        REQUIRE(tx.commit());
      } else if (i % 5 == 2) {
        REQUIRE(store.erase(k));
      } else {
        REQUIRE(store.put(k, "v" + std::to_string(i)));
      }
    }
    REQUIRE(store.put("h/end", "end"));
    const auto history = read_until(w, "h/end");
    REQUIRE(history.size() >= 41);
    CHECK(history.front().seq > s0);
    CHECK(store.last_seq() >= history.back().seq);
    std::vector<std::uint64_t> points = {s0};
    for (std::size_t i = 0; i < history.size(); ++i) {
      if (i > 0) CHECK(history[i].seq >= history[i - 1].seq);
      if (i + 1 == history.size() || history[i + 1].seq != history[i].seq) points.push_back(history[i].seq);
    }
    points.pop_back();  // after the last: nothing to read
    for (std::uint64_t s : points) {
      INFO("after = " << s);
      watch_options o;
      o.after = s;
      auto resumed = watch_or_fail(store, key_range::all(), o);
      std::vector<change> want;
      for (const auto& c : history)
        if (c.seq > s) want.push_back(c);
      check_same(read_changes(resumed, want.size()), want);
    }
    // A resumed watch goes on with live changes after the history.
    watch_options o;
    o.after = points.back();
    auto resumed = watch_or_fail(store, key_range::all(), o);
    REQUIRE(store.put("h/live", "1"));
    const auto rest = read_until(resumed, "h/live");
    CHECK(rest.size() >= 2);
    CHECK(rest[rest.size() - 2].key == "h/end");
  }

  TEST_CASE_TEMPLATE("watch: from now starts after last_seq(); after > last_seq() and buffer 0 are invalid", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("before", "1"));
    const std::uint64_t s = store.last_seq();
    CHECK(s > 0);
    auto w = watch_or_fail(store);
    REQUIRE(store.put("after", "2"));
    CHECK(store.last_seq() > s);
    const auto got = read_changes(w, 1);
    CHECK(op_of(got[0]) == put_op("after", "2"));  // not "before"
    CHECK(got[0].seq > s);
    CHECK(store.last_seq() >= got[0].seq);

    // after = last_seq(): valid, nothing to read yet.
    watch_options at_end;
    at_end.after = store.last_seq();
    auto w_end = watch_or_fail(store, key_range::all(), at_end);
    REQUIRE(store.put("next", "3"));
    CHECK(op_of(read_changes(w_end, 1)[0]) == put_op("next", "3"));

    watch_options too_far;
    too_far.after = store.last_seq() + 1;
    auto bad = store.watch(key_range::all(), too_far);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);
    too_far.after = store.last_seq() + 1000000;
    bad = store.watch(key_range::prefix("x"), too_far);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);

    watch_options no_buffer;
    no_buffer.buffer = 0;
    bad = store.watch(key_range::all(), no_buffer);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);
    if constexpr (keyspaced<typename B::store_type>) {
      auto ks = keyspace_or_fail(store, "ks");
      auto bad_ks = ks.watch(key_range::all(), no_buffer);
      REQUIRE_FALSE(bad_ks);
      CHECK(bad_ks.error().code() == errc::invalid_argument);
      bad_ks = ks.watch(key_range::all(), too_far);
      REQUIRE_FALSE(bad_ks);
      CHECK(bad_ks.error().code() == errc::invalid_argument);
    }
  }

  TEST_CASE_TEMPLATE("watch: a keyspace's watch sees only that keyspace, its changes carry the name", B,
                     KEEL_WATCH_BACKENDS) {
    if constexpr (keyspaced<typename B::store_type>) {
      B backend;
      auto store = open_or_fail(backend);
      // Names with a NUL and 0xFF, one a prefix of the other.
      const std::string one(keel::test::keyspace_view_name), two(keel::test::keyspace_decoy_name);
      auto ks1 = keyspace_or_fail(store, one);
      auto ks2 = keyspace_or_fail(store, two);
      auto w1 = watch_or_fail(ks1);
      auto w1_prefix = watch_or_fail(ks1, key_range::prefix("b"));
      auto w0 = watch_or_fail(store);
      auto w2 = watch_or_fail(ks2);

      REQUIRE(ks1.put("a", "1"));
      REQUIRE(store.put("a", "0"));
      REQUIRE(ks2.put("a", "2"));
      write_batch batch;  // one commit across three keyspaces
      batch.put(keel::keyspace_name(one), "b", "1").put("b", "0").put(keel::keyspace_name(two), "b", "2");
      REQUIRE(store.write(batch));
      REQUIRE(ks1.erase("a"));
      REQUIRE(ks2.erase_range(key_range::all()));
      REQUIRE(ks1.put("z", "end"));
      REQUIRE(ks1.put("bz", "end"));
      REQUIRE(store.put("z", "end"));
      REQUIRE(ks2.put("z", "end"));

      auto got1 = read_changes(w1, 5);
      check_ops(got1, {put_op("a", "1", one), put_op("b", "1", one), erase_op("a", one), put_op("z", "end", one),
                       put_op("bz", "end", one)});
      for (const auto& c : got1) CHECK(c.keyspace == one);
      check_ops(read_changes(w1_prefix, 2), {put_op("b", "1", one), put_op("bz", "end", one)});
      check_ops(read_changes(w0, 3), {put_op("a", "0"), put_op("b", "0"), put_op("z", "end")});
      auto got2 = read_changes(w2, 5);
      check_ops(std::vector<change>(got2.begin(), got2.begin() + 2), {put_op("a", "2", two), put_op("b", "2", two)});
      CHECK(sorted_ops(got2, 2, 2) == std::vector<std::string>{erase_op("a", two), erase_op("b", two)});
      CHECK(op_of(got2[4]) == put_op("z", "end", two));
      // The batch was one commit: one seq in every keyspace's watch.
      CHECK(got1[1].seq == got2[1].seq);
    } else {
      MESSAGE(std::string(B::name) << " has no keyspaces");
    }
  }

  TEST_CASE_TEMPLATE("watch: dropping the keyspace ends its watch with not_found; other watches go on", B,
                     KEEL_WATCH_BACKENDS) {
    if constexpr (keyspaced<typename B::store_type>) {
      B backend;
      auto store = open_or_fail(backend);
      auto ks = keyspace_or_fail(store, "doomed");
      auto w = watch_or_fail(ks);
      auto w_default = watch_or_fail(store);
      REQUIRE(ks.put("a", "1"));
      REQUIRE(ks.put("b", "2"));
      REQUIRE(store.drop_keyspace("doomed"));
      REQUIRE(store.put("after-drop", "x"));
      // The changes committed before the drop, then not_found (no erase
      // changes for the drop).
      check_ops(read_changes(w, 2), {put_op("a", "1", "doomed"), put_op("b", "2", "doomed")});
      const auto deadline = steady_clock::now() + due;
      keel::result<std::optional<change>> r = std::optional<change>();
      while (r && !*r && steady_clock::now() < deadline) r = w.next(100ms);
      REQUIRE_MESSAGE(!r, (r && *r ? "a change after the drop: " + describe(**r) : "no end within the deadline"));
      CHECK(r.error().code() == errc::not_found);
      check_ops(read_changes(w_default, 1), {put_op("after-drop", "x")});
    } else {
      MESSAGE(std::string(B::name) << " has no keyspaces");
    }
  }

  TEST_CASE_TEMPLATE("watch: a watch that is not read never blocks the writer; then every change or snapshot_expired",
                     B, KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    // Two rounds: a few writes (within any sane history: typically all
    // delivered) and many (past the default history of the in-process
    // backends: typically expired). Either outcome is allowed in both; a gap,
    // a repeat, another error, or a writer that waits is not.
    const long many = keel::test::scaled("KEEL_WATCH_UNREAD_WRITES", networked<B> ? 2000 : 100000);
    int round = 0;
    for (const long n : {200L, many}) {
      ++round;
      CAPTURE(n);
      watch_options small;
      small.buffer = 16;
      auto w = watch_or_fail(store, key_range::all(), small);

      // The writer: n puts while nobody reads the watch. It must finish on
      // its own (a writer that waited for the watch would wait forever).
      std::atomic<bool> finished{false};
      std::string write_error;
      std::thread writer([&] {
        for (long i = 0; i < n; ++i) {
          if (auto r = store.put(key_of(round, static_cast<int>(i % 100000)), std::to_string(i)); !r) {
            write_error = r.error().message();
            break;
          }
        }
        finished = true;
      });
      const bool on_its_own = wait_for_flag(finished);
      if (!on_its_own) {
        // Unblock it by reading, so that the case ends (and fails).
        while (!finished.load()) (void)w.next(10ms);
      }
      writer.join();
      CHECK_MESSAGE(on_its_own, "the writer did not finish " << n << " puts within " << due.count()
                                                             << " s while a watch was not read");
      REQUIRE_MESSAGE(write_error.empty(), write_error);

      // Now read: the changes in order, with no gap, until all n or
      // snapshot_expired, which then stays.
      long i = 0;
      std::uint64_t last_seq = 0;
      std::optional<keel::error> ended;
      const auto deadline = steady_clock::now() + due;
      while (i < n && steady_clock::now() < deadline) {
        auto c = w.next(100ms);
        if (!c) {
          ended = c.error();
          break;
        }
        if (!*c) continue;
        const change& ch = **c;
        if (ch.key != key_of(round, static_cast<int>(i % 100000)) || ch.value != std::to_string(i) ||
            ch.seq <= last_seq) {
          FAIL("change " << i << ": got " << describe(ch) << " (a gap or a repeat)");
        }
        last_seq = ch.seq;
        ++i;
      }
      if (ended) {
        INFO(keel::to_string(ended->code()) << ": " << ended->message());
        REQUIRE(ended->code() == errc::snapshot_expired);
        CHECK_FALSE(ended->message().empty());
        // It stays expired: never a later change in place of the lost ones.
        for (int k = 0; k < 3; ++k) {
          auto again = w.next(10ms);
          REQUIRE_FALSE(again);
          CHECK(again.error().code() == errc::snapshot_expired);
        }
        MESSAGE(std::string(B::name) << ": snapshot_expired after " << i << " of " << n << " changes");
      } else {
        REQUIRE_MESSAGE(i == n, "read " << i << " of " << n << " changes within " << due.count() << " s");
        auto more = w.next(20ms);
        REQUIRE_MESSAGE(more, error_text(more));
        CHECK_FALSE(*more);
        MESSAGE(std::string(B::name) << ": all " << n << " changes delivered");
      }
    }
  }

  TEST_CASE_TEMPLATE("watch: close while a watch waits in next(): it ends with closed, promptly", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto w = watch_or_fail(store);
    std::atomic<bool> waiting{false}, returned{false};
    keel::result<std::optional<change>> outcome = std::optional<change>();
    std::thread t([&] {
      waiting = true;
      outcome = w.next(120s);
      returned = true;
    });
    REQUIRE(wait_for_flag(waiting));
    REQUIRE(store.close());
    const auto closed_at = steady_clock::now();
    const bool prompt = wait_for_flag(returned);
    const auto took = steady_clock::now() - closed_at;
    t.join();
    CHECK_MESSAGE(prompt, "next() did not return within " << due.count() << " s of close()");
    CHECK(took < 10s);
    REQUIRE_FALSE(outcome);
    CHECK(outcome.error().code() == errc::closed);
    // And after the close, at once.
    auto again = w.next(60s);
    REQUIRE_FALSE(again);
    CHECK(again.error().code() == errc::closed);
    // A closed store makes no watch.
    auto none = store.watch();
    REQUIRE_FALSE(none);
    CHECK(none.error().code() == errc::closed);
  }

  TEST_CASE_TEMPLATE("watch: next(timeout) gives nothing after about the timeout when nothing comes", B,
                     KEEL_WATCH_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("k", "v"));  // before the watch: not delivered
    auto w = watch_or_fail(store);
    REQUIRE(store.put("other", "v"));
    auto ranged = watch_or_fail(store, key_range::prefix("quiet/"));  // nothing ever in its range
    for (auto timeout : {50ms, 200ms}) {
      INFO("timeout " << timeout.count() << " ms");
      const auto t0 = steady_clock::now();
      auto r = ranged.next(timeout);
      const auto took = steady_clock::now() - t0;
      REQUIRE_MESSAGE(r, error_text(r));
      CHECK_FALSE(*r);
      CHECK(took >= timeout * 9 / 10);
      CHECK(took < timeout + 5s);
    }
    // A change that is there comes at once, whatever the timeout.
    const auto t0 = steady_clock::now();
    auto r = w.next(60s);
    REQUIRE_MESSAGE(r, error_text(r));
    REQUIRE(*r);
    CHECK(op_of(**r) == put_op("other", "v"));
    CHECK(steady_clock::now() - t0 < 30s);
    auto nothing = w.next(0ms);
    REQUIRE_MESSAGE(nothing, error_text(nothing));
    CHECK_FALSE(*nothing);
  }

  TEST_CASE_TEMPLATE("watch: seq continues across close and reopen; resuming from before the close", B,
                     KEEL_WATCH_BACKENDS) {
    if constexpr (B::persistent) {
      B backend;
      std::vector<change> history;
      std::uint64_t before_close = 0, s0 = 0;
      {
        auto store = open_or_fail(backend);
        s0 = store.last_seq();
        auto w = watch_or_fail(store);
        for (int i = 0; i < 10; ++i) REQUIRE(store.put("r/" + std::to_string(i), "v"));
        history = read_changes(w, 10);
        before_close = store.last_seq();
        CHECK(before_close >= history.back().seq);
        REQUIRE(store.close());
      }
      auto store = open_or_fail(backend);
      CHECK(store.last_seq() >= before_close);
      auto w = watch_or_fail(store);
      REQUIRE(store.put("r/after", "v"));
      const auto after = read_changes(w, 1);
      CHECK(after[0].seq > before_close);
      // From before the close: the rest of the history (what the backend
      // still keeps), or snapshot_expired; never a gap.
      for (std::uint64_t s : {s0, history[4].seq}) {
        INFO("after = " << s);
        watch_options o;
        o.after = s;
        auto resumed = store.watch(key_range::all(), o);
        REQUIRE_MESSAGE(resumed, error_text(resumed));
        std::vector<change> want;
        for (const auto& c : history)
          if (c.seq > s) want.push_back(c);
        want.push_back(after[0]);
        std::vector<change> got;
        const auto deadline = steady_clock::now() + due;
        while (got.size() < want.size() && steady_clock::now() < deadline) {
          auto c = resumed->next(100ms);
          if (!c) {
            CHECK_MESSAGE(c.error().code() == errc::snapshot_expired, error_text(c));
            MESSAGE(std::string(B::name) << ": history before the reopen not kept: " << c.error().message());
            break;
          }
          if (*c) got.push_back(std::move(**c));
        }
        if (got.size() == want.size() || got.empty()) {
          if (!got.empty()) check_same(got, want);
        } else {
          CHECK_MESSAGE(got.size() == want.size(), "got " << got.size() << " of " << want.size() << " changes");
          check_same(got, std::vector<change>(want.begin(), want.begin() + static_cast<std::ptrdiff_t>(got.size())));
        }
      }
    } else {
      MESSAGE(std::string(B::name) << " keeps nothing across close");
    }
  }
}

#endif  // KEEL_WATCH_BACKENDS
