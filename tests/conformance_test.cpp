// The conformance suite: every backend must pass every case here, with the
// same results. Backend-only behaviour lives in memory_test.cpp and
// rocks_test.cpp.
//
// Keyed cases list KEEL_KEYED_BACKENDS: every backend, and every backend with
// keyspaces once more through a non-default keyspace (keyspace_of<B>,
// tests/support/backends.hpp: the same case, with decoys in the other
// keyspaces that make a leak fail it). Cases about the store as a whole
// list KEEL_BACKENDS and say why.
#include <doctest/doctest.h>

#include <algorithm>

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/backends.hpp"
#include "support/scale.hpp"

using namespace std::string_literals;
using keel::errc;
using keel::key_range;
using keel::write_batch;
using keel::test::collect;
using keel::test::keys_of;
using keel::test::open_or_fail;

TEST_SUITE("conformance") {
  TEST_CASE_TEMPLATE("put, get, contains, erase", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    CHECK(store.is_open());

    auto missing = store.get("absent");
    REQUIRE(missing);
    CHECK_FALSE(missing->has_value());
    CHECK(*store.contains("absent") == false);

    REQUIRE(store.put("k", "v1"));
    CHECK(store.get("k")->value() == "v1");
    CHECK(*store.contains("k"));
    REQUIRE(store.put("k", "v2"));
    CHECK(store.get("k")->value() == "v2");

    REQUIRE(store.erase("k"));
    CHECK_FALSE(store.get("k")->has_value());
    CHECK_FALSE(*store.contains("k"));
    CHECK(store.erase("k"));  // erasing a missing key is fine
    CHECK(store.erase("never-there"));
  }

  TEST_CASE_TEMPLATE("keys and values are arbitrary bytes", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    const std::vector<std::pair<std::string, std::string>> data = {
        {""s, "empty key"s},
        {"\0"s, "nul"s},
        {"a\0b"s, "embedded\0nul"s},
        {"\xff"s, ""s},  // empty value
        {"\xff\xff\xff"s, "\xff\x00\xff"s},
        {"\x80"s, "high bit"s},
        {"\x7f"s, "del"s},
    };
    for (const auto& [k, v] : data) REQUIRE(store.put(k, v));
    for (const auto& [k, v] : data) {
      auto got = store.get(k);
      REQUIRE(got);
      REQUIRE(got->has_value());
      CHECK(**got == v);
      CHECK(*store.contains(k));
    }
    // An empty value is a present key, not a missing one.
    CHECK(store.get("\xff"s)->value().empty());

    // Bytewise (unsigned) order: 0x00 < 0x7f < 0x80 < 0xff.
    CHECK(keys_of(store.scan()) == std::vector<std::string>{""s, "\0"s, "a\0b"s, "\x7f"s, "\x80"s, "\xff"s,
                                                            "\xff\xff\xff"s});
  }

  TEST_CASE_TEMPLATE("prefix scans, including 0xFF prefixes", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (auto k : {"a"s, "ab"s, "ab\xff"s, "ab\xff\xff"s, "ac"s, "b"s, "\xff"s, "\xfe\xff"s, "\xff\xfe"s, "\xff\xff"s,
                   "\xff\xff\0"s, "\xff\xff\xff"s, "\xff\xff\xff\xff"s}) {
      REQUIRE(store.put(k, "v:" + k));
    }
    CHECK(keys_of(store.scan(key_range::prefix("ab"))) == std::vector<std::string>{"ab"s, "ab\xff"s, "ab\xff\xff"s});
    CHECK(keys_of(store.scan(key_range::prefix("\xff\xff"))) ==
          std::vector<std::string>{"\xff\xff"s, "\xff\xff\0"s, "\xff\xff\xff"s, "\xff\xff\xff\xff"s});
    CHECK(keys_of(store.scan(key_range::prefix("\xff\xff").reversed())) ==
          std::vector<std::string>{"\xff\xff\xff\xff"s, "\xff\xff\xff"s, "\xff\xff\0"s, "\xff\xff"s});
    CHECK(keys_of(store.scan(key_range::prefix("\xff"))).size() == 6);
    CHECK(keys_of(store.scan(key_range::prefix("zz"))).empty());
    CHECK(keys_of(store.scan(key_range::prefix(""))).size() == 13);
    auto with_values = collect(store.scan(key_range::prefix("ab\xff")));
    REQUIRE(with_values.size() == 2);
    CHECK(with_values[0].second == "v:ab\xff"s);
  }

  TEST_CASE_TEMPLATE("bounded and reversed scans", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (char c = 'a'; c <= 'j'; ++c) REQUIRE(store.put(std::string(1, c), std::string(3, c)));

    CHECK(keys_of(store.scan(key_range::between("c", "f"))) == std::vector<std::string>{"c", "d", "e"});
    CHECK(keys_of(store.scan(key_range::between("c", "f").reversed())) == std::vector<std::string>{"e", "d", "c"});
    CHECK(keys_of(store.scan(key_range::between("bb", "dd"))) == std::vector<std::string>{"c", "d"});
    CHECK(keys_of(store.scan(key_range::between("bb", "dd").reversed())) == std::vector<std::string>{"d", "c"});
    CHECK(keys_of(store.scan(key_range::between("f", "c"))).empty());
    CHECK(keys_of(store.scan(key_range::between("c", "c").reversed())).empty());
    CHECK(keys_of(store.scan(key_range::from("h"))) == std::vector<std::string>{"h", "i", "j"});
    CHECK(keys_of(store.scan(key_range::until("c").reversed())) == std::vector<std::string>{"b", "a"});
    CHECK(keys_of(store.scan(key_range::all().reversed())).front() == "j");
    CHECK(keys_of(store.scan(key_range::all().reversed().reversed())).front() == "a");
    CHECK(keys_of(store.scan(key_range::between("k", "z"))).empty());
    CHECK(keys_of(store.scan(key_range::between("0", "a").reversed())).empty());

    auto entries = collect(store.scan(key_range::between("b", "c")));
    REQUIRE(entries.size() == 1);
    CHECK(entries[0] == std::pair<std::string, std::string>{"b", "bbb"});
  }

  TEST_CASE_TEMPLATE("a write_batch applies in order and atomically", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("gone", "x"));
    write_batch batch;
    batch.put("a", "1").put("b", "2").erase("gone").put("a", "3").put("c", "4").erase("c");
    CHECK(batch.size() == 6);
    REQUIRE(store.write(batch));
    CHECK(collect(store.scan()) == std::vector<std::pair<std::string, std::string>>{{"a", "3"}, {"b", "2"}});
    REQUIRE(store.write(write_batch{}));  // an empty batch is fine
    batch.clear();
    CHECK(batch.empty());
  }

  TEST_CASE_TEMPLATE("scans return keys and values of growing sizes whole, both ways", B, KEEL_KEYED_BACKENDS) {
    // Each entry is larger than the last: a cursor that buffers entries
    // (RocksDB's read-ahead) outgrows its buffer in the middle of a chunk
    // and must move the entries already taken with it.
    B backend;
    auto store = open_or_fail(backend);
    std::vector<std::pair<std::string, std::string>> expected;
    for (int i = 0; i < 200; ++i) {
      std::string k = "g" + std::string(static_cast<std::size_t>(i % 23), 'k') + std::to_string(1000 + i);
      k = "g" + std::to_string(1000 + i) + k.substr(1);   // ordered by i, 5 to 27 bytes
      std::string v(static_cast<std::size_t>(i) * 29 + static_cast<std::size_t>(i % 5), static_cast<char>('a' + i % 26));
      REQUIRE(store.put(k, v));
      expected.emplace_back(std::move(k), std::move(v));
    }
    CHECK(collect(store.scan(key_range::prefix("g"))) == expected);
    std::reverse(expected.begin(), expected.end());
    CHECK(collect(store.scan(key_range::prefix("g").reversed())) == expected);
  }

  TEST_CASE_TEMPLATE("readers see a batch whole or not at all", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    constexpr int keys = 50;
    constexpr int rounds = 300;
    auto key = [](int i) { return "k" + std::to_string(1000 + i); };
    {
      write_batch b;
      for (int i = 0; i < keys; ++i) b.put(key(i), "0");
      REQUIRE(store.write(b));
    }
    std::atomic<bool> done{false};
    std::atomic<int> torn{0}, reads{0}, started{0};
    auto reader = [&](bool use_snapshot) {
      started++;
      while (!done.load()) {
        std::map<std::string, int> seen;
        if (use_snapshot) {
          auto snap = store.snapshot();
          std::string first = snap.get(key(0))->value();
          for (int i = 1; i < keys; ++i)
            if (snap.get(key(i))->value() != first) torn++;
        } else {
          auto c = store.scan(key_range::prefix("k"));
          std::string first;
          int n = 0;
          for (const auto& e : c) {
            if (n++ == 0) first = std::string(e.value);
            if (e.value != first) torn++;
          }
          if (n != keys) torn++;
        }
        reads++;
      }
    };
    std::thread r1(reader, false), r2(reader, true);
    while (started.load() < 2) std::this_thread::yield();
    // At least `rounds` batches, and on until the readers have overlapped
    // with the writer a fair number of times.
    int round = 0;
    while (++round <= rounds || (reads.load() < 50 && round < 100000)) {
      write_batch b;
      for (int i = 0; i < keys; ++i) b.put(key(i), std::to_string(round));
      REQUIRE(store.write(b));
    }
    const int last_round = round - 1;
    done = true;
    r1.join();
    r2.join();
    CHECK(torn.load() == 0);
    CHECK(reads.load() >= 50);
    CHECK(store.get(key(keys - 1))->value() == std::to_string(last_round));
  }

  TEST_CASE_TEMPLATE("snapshots are isolated from later writes", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("a", "1"));
    REQUIRE(store.put("b", "2"));
    auto snap = store.snapshot();
    REQUIRE(snap.valid());
    REQUIRE(store.put("a", "changed"));
    REQUIRE(store.erase("b"));
    REQUIRE(store.put("c", "new"));
    write_batch batch;
    batch.put("d", "4").erase("a");
    REQUIRE(store.write(batch));

    CHECK(snap.get("a")->value() == "1");
    CHECK(snap.get("b")->value() == "2");
    CHECK_FALSE(snap.get("c")->has_value());
    CHECK(*snap.contains("b"));
    CHECK_FALSE(*snap.contains("d"));
    CHECK(collect(snap.scan()) == std::vector<std::pair<std::string, std::string>>{{"a", "1"}, {"b", "2"}});
    CHECK(keys_of(snap.scan(key_range::all().reversed())) == std::vector<std::string>{"b", "a"});
    CHECK(keys_of(store.scan()) == std::vector<std::string>{"c", "d"});

    auto copy = snap;  // copies share the view
    CHECK(copy.get("a")->value() == "1");
  }

  TEST_CASE_TEMPLATE("a cursor reads the view as of its creation", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (int i = 0; i < 10; ++i) REQUIRE(store.put("k" + std::to_string(i), "old"));
    auto cursor = store.scan();
    REQUIRE(store.put("k5", "new"));
    REQUIRE(store.put("k55", "inserted"));
    REQUIRE(store.erase("k7"));
    std::vector<std::string> keys;
    for (const auto& e : cursor) {
      CHECK(e.value == "old");
      keys.emplace_back(e.key);
    }
    CHECK_FALSE(cursor.error());
    CHECK(keys.size() == 10);
  }

  TEST_CASE_TEMPLATE("every operation after close reports closed", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (int i = 0; i < 5; ++i) REQUIRE(store.put("k" + std::to_string(i), "v"));
    auto snap = store.snapshot();
    auto cursor = store.scan();
    REQUIRE(cursor.valid());
    auto snap_cursor = snap.scan();

    REQUIRE(store.close());
    CHECK_FALSE(store.is_open());
    CHECK(store.close());  // idempotent

    CHECK(store.put("a", "b").error() == errc::closed);
    CHECK(store.get("a").error() == errc::closed);
    CHECK(store.contains("a").error() == errc::closed);
    CHECK(store.erase("a").error() == errc::closed);
    CHECK(store.write(write_batch{}.put("a", "b")).error() == errc::closed);
    auto after = store.scan();
    CHECK_FALSE(after.valid());
    REQUIRE(after.error());
    CHECK(after.error()->code() == errc::closed);
    auto late_snap = store.snapshot();
    CHECK_FALSE(late_snap.valid());
    CHECK(late_snap.get("a").error() == errc::closed);

    CHECK(snap.get("k1").error() == errc::closed);
    CHECK(snap.contains("k1").error() == errc::closed);
    auto from_snap = snap.scan();
    CHECK_FALSE(from_snap.valid());
    CHECK(from_snap.error()->code() == errc::closed);

    // Cursors opened before close stop at their next step.
    int steps = 0;
    for ([[maybe_unused]] const auto& e : cursor) ++steps;
    CHECK(steps <= 1);
    REQUIRE(cursor.error());
    CHECK(cursor.error()->code() == errc::closed);
    for ([[maybe_unused]] const auto& e : snap_cursor) {
    }
    REQUIRE(snap_cursor.error());
    CHECK(snap_cursor.error()->code() == errc::closed);
  }

  // A cursor assigned over a live one ends the live one's pass and walks the
  // other's; close() then stops it like any cursor. (RocksDB: the replaced
  // cursor stayed registered for close() after it was freed, a
  // heap-use-after-free that the ASan step reports.)
  TEST_CASE_TEMPLATE("a cursor move-assigned over a live cursor, then close", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (int i = 0; i < 5; ++i) REQUIRE(store.put("k" + std::to_string(i), "v" + std::to_string(i)));
    auto first = store.scan(key_range::prefix("k"));
    REQUIRE(first.valid());
    CHECK(first.current().key == "k0");
    auto second = store.scan(key_range::from("k3"));
    REQUIRE(second.valid());
    first = std::move(second);
    REQUIRE(first.valid());
    CHECK(first.current().key == "k3");
    CHECK(first.current().value == "v3");
    auto third = store.scan(key_range::prefix("k"));  // the store still hands out cursors
    REQUIRE(third.valid());
    CHECK(third.current().key == "k0");
    REQUIRE(store.close());
    int after_close = 0;
    for ([[maybe_unused]] const auto& e : first) ++after_close;
    CHECK(after_close <= 2);  // at most the current entry and the one after it
    if (first.error()) CHECK(first.error()->code() == errc::closed);
  }

  // About the store object itself (moves), not its keys: KEEL_BACKENDS only.
  TEST_CASE_TEMPLATE("a moved-from store is closed; move assignment closes the target", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("a", "1"));
    auto moved = std::move(store);
    CHECK(moved.get("a")->value() == "1");
    CHECK_FALSE(store.is_open());  // NOLINT(bugprone-use-after-move): the contract under test
    CHECK(store.get("a").error() == errc::closed);
    CHECK(store.close());
    store = std::move(moved);
    CHECK(store.get("a")->value() == "1");
  }

  TEST_CASE_TEMPLATE("many threads at once", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    constexpr int threads = 4, per_thread = 500;
    std::vector<std::thread> pool;
    std::atomic<int> failures{0};
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          std::string k = "t" + std::to_string(t) + "/" + std::to_string(i);
          if (!store.put(k, k)) failures++;
          auto got = store.get(k);
          if (!got || !got->has_value() || **got != k) failures++;
          if (i % 50 == 0) {
            auto c = store.scan(key_range::prefix("t" + std::to_string(t) + "/"));
            int n = 0;
            for ([[maybe_unused]] const auto& e : c) ++n;
            if (n < i + 1 || c.error()) failures++;
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    CHECK(failures.load() == 0);
    CHECK(keys_of(store.scan()).size() == threads * per_thread);
  }

  TEST_CASE_TEMPLATE("random operations agree with a std::map model", B, KEEL_KEYED_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    std::map<std::string, std::string> model;
    std::mt19937 rng(12345);
    const std::vector<std::string> alphabet = {""s, "\0"s, "a"s, "ab"s, "\xff"s, "\xff\xff"s, "b\0"s, "\x80"s};
    auto random_key = [&] {
      return alphabet[rng() % alphabet.size()] + alphabet[rng() % alphabet.size()];
    };
    for (int step = 0; step < 3000; ++step) {
      std::string k = random_key();
      switch (rng() % 6) {
        case 0:
        case 1: {
          std::string v = std::to_string(step);
          REQUIRE(store.put(k, v));
          model[k] = v;
          break;
        }
        case 2:
          REQUIRE(store.erase(k));
          model.erase(k);
          break;
        case 3: {
          auto got = store.get(k);
          REQUIRE(got);
          auto it = model.find(k);
          CHECK(got->has_value() == (it != model.end()));
          if (it != model.end() && got->has_value()) CHECK(**got == it->second);
          break;
        }
        case 4: {
          write_batch b;
          for (int i = 0; i < 4; ++i) {
            std::string bk = random_key();
            if (rng() % 3 == 0) {
              b.erase(bk);
              model.erase(bk);
            } else {
              b.put(bk, "b" + std::to_string(step));
              model[bk] = "b" + std::to_string(step);
            }
          }
          REQUIRE(store.write(b));
          break;
        }
        case 5: {
          std::string p = alphabet[rng() % alphabet.size()];
          std::vector<std::string> expected;
          for (const auto& [mk, mv] : model)
            if (mk.compare(0, p.size(), p) == 0) expected.push_back(mk);
          CHECK(keys_of(store.scan(key_range::prefix(p))) == expected);
          break;
        }
      }
    }
    std::vector<std::pair<std::string, std::string>> all(model.begin(), model.end());
    CHECK(collect(store.scan()) == all);
  }
}

TEST_SUITE("conformance") {
  // keyspace_of's decoys sit where a leak would meet them (else the keyed
  // cases above could not fail on one): under the same keys in "", under
  // "\xff" + key in "k\0"; erases through the view leave them.
  TEST_CASE_TEMPLATE("keyspace views plant decoys in the other keyspaces", B, KEEL_KEYSPACE_VIEW_BACKENDS) {
    B backend;
    auto view = open_or_fail(backend);
    REQUIRE(view.put("p", "1"));
    REQUIRE(view.write(write_batch{}.put("b", "2").erase("p")));
    auto& store = view.store();
    auto decoys = store.keyspace(keel::test::keyspace_decoy_name);
    REQUIRE(decoys);
    for (const std::string k : {"p", "b"}) {
      CAPTURE(k);
      CHECK(store.get(k)->value_or("") == keel::test::keyspace_decoy_value);
      CHECK(decoys->get("\xff" + k)->value_or("") == keel::test::keyspace_decoy_value);
    }
    CHECK_FALSE(view.get("p")->has_value());
    CHECK(view.get("b")->value_or("") == "2");
    CHECK(keys_of(view.scan()) == std::vector<std::string>{"b"});
    auto names = store.keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{""s, "k\0"s, "k\0\xff"s});
  }
}
