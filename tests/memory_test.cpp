// Memory-backend-only behaviour.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <keel/memory.hpp>
#include <string>
#include <thread>
#include <vector>

using keel::errc;
using keel::key_range;
using keel::memory_store;

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
}
