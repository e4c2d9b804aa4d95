// Memory-backend-only behaviour.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <keel/any_store.hpp>
#include <keel/memory.hpp>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string>
#include <thread>
#include <vector>

using keel::errc;
using keel::key_range;
using keel::memory_store;
using namespace std::string_literals;

TEST_SUITE("memory") {
  TEST_CASE("each open is a new, empty store; close drops the data") {
    auto a = memory_store::open({});
    REQUIRE(a);
    REQUIRE(a->put("k", "v"));
    auto b = memory_store::open({});
    REQUIRE(b);
    CHECK_FALSE(b->get("k")->has_value());  // stores do not share data
    REQUIRE(a->close());
    auto c = memory_store::open({});
    REQUIRE(c);
    CHECK_FALSE(c->get("k")->has_value());
  }

  TEST_CASE("any_store cursors over memory walk runs: every entry once, close stops them inside a run, moves keep the run") {
    // basic_any_store takes a memory cursor's entries a run at a time
    // (fill(), store.hpp); the steps inside a run are its own.
    auto opened = memory_store::open({});
    REQUIRE(opened);
    keel::basic_any_store<keel::MemoryPolicy> any(std::move(*opened));
    std::map<std::string, std::string> model;
    for (int i = 0; i < 1000; ++i) {
      const std::string k = "k" + std::to_string(i), v = std::string(static_cast<std::size_t>(i % 50), 'v') + std::to_string(i);
      REQUIRE(any.put(k, v));
      model[k] = v;
    }
    auto it = model.begin();
    for (const auto& e : any.scan()) {
      REQUIRE(it != model.end());
      CHECK(e.key == it->first);
      CHECK(e.value == it->second);
      ++it;
    }
    CHECK(it == model.end());
    auto rit = model.rbegin();
    for (const auto& e : any.scan(key_range::all().reversed())) {
      REQUIRE(rit != model.rend());
      CHECK(e.key == rit->first);
      ++rit;
    }
    CHECK(rit == model.rend());

    // Bounded both ways: the run ends inside a leaf, at the bound.
    for (const auto& [lo, hi] : {std::pair{"k2"s, "k3"s}, std::pair{"k0"s, "k999"s}, std::pair{"k50"s, "k51"s}}) {
      std::vector<std::string> want, got, got_back;
      for (auto m = model.lower_bound(lo); m != model.end() && m->first < hi; ++m) want.push_back(m->first);
      for (const auto& e : any.scan(key_range::between(lo, hi))) got.emplace_back(e.key);
      for (const auto& e : any.scan(key_range::between(lo, hi).reversed())) got_back.emplace_back(e.key);
      std::reverse(got_back.begin(), got_back.end());
      CHECK(got == want);
      CHECK(got_back == want);
    }

    // Moved after a few steps: it goes on where it was, inside its run.
    auto first = any.scan(key_range::from("k5"));
    for (int i = 0; i < 3; ++i) first.advance();
    auto moved = std::move(first);
    REQUIRE(moved.valid());
    auto at = model.lower_bound("k5");
    std::advance(at, 3);
    CHECK(moved.current().key == at->first);
    CHECK(moved.current().value == at->second);

    // Closed in the middle of a run: the next step stops with errc::closed.
    auto cursor = any.scan();
    for (int i = 0; i < 5; ++i) cursor.advance();
    REQUIRE(cursor.valid());
    REQUIRE(any.close());
    cursor.advance();
    CHECK_FALSE(cursor.valid());
    REQUIRE(cursor.error());
    CHECK(cursor.error()->code() == errc::closed);
    moved.advance();
    CHECK_FALSE(moved.valid());
    REQUIRE(moved.error());
    CHECK(moved.error()->code() == errc::closed);
  }

  TEST_CASE("size is exact") {
    auto s = memory_store::open({});
    REQUIRE(s);
    for (int i = 0; i < 100; ++i) REQUIRE(s->put(std::to_string(i % 60), "v"));
    CHECK(s->policy().size() == 60);
    REQUIRE(s->erase("1"));
    CHECK(s->policy().size() == 59);
  }

  TEST_CASE("many snapshots of a changing store each keep their own view") {
    auto s = memory_store::open({});
    REQUIRE(s);
    std::vector<memory_store::snapshot_type> snaps;
    for (int i = 0; i < 200; ++i) {
      REQUIRE(s->put("k" + std::to_string(i % 37), std::to_string(i)));
      if (i % 20 == 0) REQUIRE(s->erase("k" + std::to_string((i / 20) % 37)));
      snaps.push_back(s->snapshot());
    }
    // Rebuild what each snapshot must contain by replaying the history.
    std::map<std::string, std::string> model;
    for (int i = 0; i < 200; ++i) {
      model["k" + std::to_string(i % 37)] = std::to_string(i);
      if (i % 20 == 0) model.erase("k" + std::to_string((i / 20) % 37));
      std::size_t n = 0;
      for (const auto& e : snaps[static_cast<std::size_t>(i)].scan()) {
        auto it = model.find(std::string(e.key));
        REQUIRE(it != model.end());
        CHECK(it->second == e.value);
        ++n;
      }
      CHECK(n == model.size());
    }
  }

  TEST_CASE("scans and snapshots run while a writer and a closer race") {
    for (int round = 0; round < 20; ++round) {
      auto s = memory_store::open({});
      REQUIRE(s);
      for (int i = 0; i < 200; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
      std::atomic<bool> stop{false};
      std::atomic<int> bad{0};
      std::thread writer([&] {
        for (int i = 0; !stop; ++i) {
          auto r = s->put("w" + std::to_string(i % 100), "x");
          if (!r && r.error().code() != errc::closed) bad++;
          if (!r) break;
        }
      });
      std::thread reader([&] {
        while (!stop) {
          auto c = s->scan(key_range::prefix("k"));
          int n = 0;
          for ([[maybe_unused]] const auto& e : c) ++n;
          if (c.error() ? c.error()->code() != errc::closed : n != 200) bad++;
          auto snap = s->snapshot();
          auto g = snap.get("k5");
          if (g ? !g->has_value() : g.error().code() != errc::closed) bad++;
          if (!s->is_open()) break;
        }
      });
      REQUIRE(s->put("last", "x"));
      REQUIRE(s->close());
      stop = true;
      writer.join();
      reader.join();
      CHECK(bad.load() == 0);
    }
  }

  // The structure behind the memory backend: point reads announce an epoch
  // and read the current version without a reference; replaced versions are
  // freed by writers once no reader can hold them. These tests stress the
  // reclamation (no use after free, nothing kept), concurrent writers and
  // scans during writes. Run them under -Db_sanitize=address,thread too.

  TEST_CASE("point reads racing writers never see a torn or freed value") {
    auto s = memory_store::open({});
    REQUIRE(s);
    auto value_of = [](int i) { return std::string(200, static_cast<char>('a' + i % 26)); };
    for (int k = 0; k < 64; ++k) REQUIRE(s->put("k" + std::to_string(k), value_of(0)));
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < 4000; ++i) {
          if (!s->put("k" + std::to_string((i * 7 + w) % 64), value_of(i))) bad++;
          if (i % 100 == 0 && !s->erase("tmp")) bad++;
        }
      });
    }
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        for (int i = 0; !stop; ++i) {
          auto g = s->get("k" + std::to_string((i + r) % 64));
          if (!g || !g->has_value() || (*g)->size() != 200 ||
              (*g)->find_first_not_of((**g)[0]) != std::string::npos)
            bad++;
          auto c = s->contains("k" + std::to_string(i % 64));
          if (!c || !*c) bad++;
        }
      });
    }
    threads[0].join();
    threads[1].join();
    stop = true;
    threads[2].join();
    threads[3].join();
    CHECK(bad.load() == 0);
    CHECK(s->policy().size() == 64);
  }

  TEST_CASE("snapshots taken while single puts replace versions stay whole and unchanged") {
    // Writes reuse the nodes only the current version holds (persistent_btree
    // reuse mode); a snapshot or cursor taken while a write replaces that
    // version must make the write leave it whole (MemoryPolicy::current()
    // and retirement::settle()). Readers take snapshots in a tight loop and
    // read each one twice with writes in between: the two reads must agree
    // and every value must name its own key. Under ASan/TSan this is also
    // the memory check of the handover.
    auto s = memory_store::open({});
    REQUIRE(s);
    constexpr int keys = 2000;   // three levels: path nodes below the root are reused too
    auto key = [](int i) { return "k" + std::to_string(10000 + i); };
    {
      keel::write_batch b;
      for (int i = 0; i < keys; ++i) b.put(key(i), key(i) + "=0");
      REQUIRE(s->write(b));
    }
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, snapshots{0};
    auto reader = [&](unsigned seed) {
      unsigned x = seed;
      while (!stop.load()) {
        auto snap = s->snapshot();
        std::vector<std::string> first;
        for (int j = 0; j < 16; ++j) {
          x = x * 1103515245u + 12345u;
          const std::string k = key(static_cast<int>((x >> 8) % keys));
          auto v = snap.get(k);
          if (!v || !v->has_value() || !(*v)->starts_with(k + "=")) bad++;
          first.push_back(v && v->has_value() ? **v : "");
        }
        long n = 0;
        for (const auto& e : snap.scan()) {
          if (!e.value.starts_with(std::string(e.key) + "=")) bad++;
          ++n;
        }
        if (n != keys) bad++;
        x = seed;   // the same keys again, after the writes the scan let through
        for (int j = 0; j < 16; ++j) {
          x = x * 1103515245u + 12345u;
          auto v = snap.get(key(static_cast<int>((x >> 8) % keys)));
          if (!v || !v->has_value() || **v != first[static_cast<std::size_t>(j)]) bad++;
        }
        seed = x;
        snapshots++;
      }
    };
    std::vector<std::thread> readers;
    for (unsigned r = 0; r < 2; ++r) readers.emplace_back(reader, 7 + r);
    int writes = 0;
    for (unsigned x = 1; writes < 20000 || (snapshots.load() < 100 && writes < 2000000); ++writes) {
      x = x * 1664525u + 1013904223u;
      const int i = static_cast<int>((x >> 8) % keys);
      if (!s->put(key(i), key(i) + "=" + std::to_string(writes))) bad++;
    }
    stop = true;
    for (auto& t : readers) t.join();
    CHECK(bad.load() == 0);
    CHECK(snapshots.load() >= 100);
    CHECK(s->policy().size() == static_cast<std::size_t>(keys));
  }

  TEST_CASE("concurrent writers: every write lands, batches stay whole for scans") {
    auto s = memory_store::open({});
    REQUIRE(s);
    constexpr int per_writer = 500;
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 3; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; i < per_writer; ++i) {
          keel::write_batch b;  // a/... and b/... always change together
          std::string id = std::to_string(w) + "-" + std::to_string(i);
          b.put("a/" + id, id).put("b/" + id, id);
          if (!s->write(b)) bad++;
        }
      });
    }
    std::thread scanner([&] {
      while (!stop) {
        for (bool reversed : {false, true}) {
          auto r = key_range::all();
          auto c = s->scan(reversed ? r.reversed() : r);
          long as = 0, bs = 0;
          std::string prev;
          bool first = true;
          for (const auto& e : c) {
            std::string k(e.key);
            if (!first && (reversed ? !(k < prev) : !(prev < k))) bad++;  // order
            first = false;
            prev = k;
            (k[0] == 'a' ? as : bs)++;
          }
          if (c.error() || as != bs) bad++;
        }
        auto snap = s->snapshot();  // released at once, by this thread
        auto c = snap.scan(key_range::prefix("a/"));
        long n = 0;
        for ([[maybe_unused]] const auto& e : c) ++n;
        long m = 0;
        for ([[maybe_unused]] const auto& e : snap.scan(key_range::prefix("b/"))) ++m;
        if (n != m) bad++;
      }
    });
    for (auto& t : writers) t.join();
    stop = true;
    scanner.join();
    CHECK(bad.load() == 0);
    CHECK(s->policy().size() == 2u * 3u * per_writer);
    for (int w = 0; w < 3; ++w) {
      for (int i = 0; i < per_writer; i += 97) {
        std::string id = std::to_string(w) + "-" + std::to_string(i);
        auto g = s->get("b/" + id);
        REQUIRE(g);
        CHECK(g->value_or("") == id);
      }
    }
  }

#if defined(__GLIBC__)
  TEST_CASE("replaced versions, snapshots and cursors are all freed") {
    auto heap = [] {
      struct mallinfo2 mi = mallinfo2();
      return static_cast<long long>(mi.uordblks + mi.hblkhd);
    };
    const std::string big(16 * 1024, 'v');
    auto warm = memory_store::open({});  // first use allocates this thread's epoch slot
    REQUIRE(warm);
    REQUIRE(warm->put("k", "v"));
    REQUIRE(warm->get("k"));
    const long long before = heap();
    {
      auto s = memory_store::open({});
      REQUIRE(s);
      std::atomic<bool> stop{false};
      std::thread reader([&] {
        while (!stop) {
          (void)s->get("k1");
          auto snap = s->snapshot();  // a snapshot and a cursor die in another thread
          auto c = snap.scan();
          if (c.valid()) c.advance();
        }
      });
      std::vector<memory_store::snapshot_type> kept;
      for (int i = 0; i < 2000; ++i) {  // 2000 versions of 16 KiB values: 32 MiB if leaked
        REQUIRE(s->put("k" + std::to_string(i % 8), big));
        if (i % 500 == 0) kept.push_back(s->snapshot());
      }
      stop = true;
      reader.join();
      kept.clear();
      REQUIRE(s->close());
    }
    // The reader thread's slot is returned; everything else must be gone.
    CHECK(heap() - before < 256 * 1024);
  }
#endif
}
