// Expiry on the memory backend (issue 29; docs/expiry.md, "Memory"): what
// the conformance suite (expiry_test.cpp) cannot see from outside:
// reclamation (key count and bytes), the files of stores without ttl, the
// compression pass keeping deadlines, and SIGKILL rounds of a writer using
// ttl. Time is a fake clock the case moves; the background sweep is polled
// for with a deadline, never slept for.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <keel/dump.hpp>
#include <keel/memory.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/fake_clock.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using keel::key_range;
using keel::put_options;
using keel::write_batch;
using keel::test::fake_clock;
using keel::test::temp_dir;
namespace fs = std::filesystem;

namespace {

keel::memory_store open_with(const fake_clock& clock, keel::memory_options o = {}) {
  o.clock = clock.source();
  auto s = keel::memory_store::open(o);
  REQUIRE_MESSAGE(s, (s ? "" : s.error().message()));
  return std::move(*s);
}

std::string key_of(int i) {
  char k[16];
  std::snprintf(k, sizeof k, "key%07d", i);
  return k;
}

// n keys, every other one with a ttl of `ttl`, values of 100 bytes.
void fill_half_expiring(keel::memory_store& s, int n, std::chrono::milliseconds ttl) {
  write_batch b;
  for (int i = 0; i < n; ++i) {
    if (i % 2 == 0)
      b.put(key_of(i), std::string(100, 'v'), put_options{ttl});
    else
      b.put(key_of(i), std::string(100, 'p'));
  }
  REQUIRE(s.write(b));
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_SUITE("expiry") {
  TEST_CASE("expiry memory: compact() removes the expired entries: key count and bytes drop") {
    fake_clock clock;
    keel::memory_options o;
    o.expiry_interval = 0ms;  // compact() only
    auto s = open_with(clock, o);
    fill_half_expiring(s, 4000, 10s);
    const std::size_t bytes_before = s.policy().memory_bytes();
    CHECK(s.policy().size() == 4000);
    REQUIRE(s.compact());  // nothing due yet
    CHECK(s.policy().size() == 4000);
    clock.advance(10s);
    CHECK(s.policy().size() == 4000);  // expired, not reclaimed yet (no background sweep)
    REQUIRE(s.compact());
    CHECK(s.policy().size() == 2000);
    const std::size_t bytes_after = s.policy().memory_bytes();
    CAPTURE(bytes_before);
    CAPTURE(bytes_after);
    CHECK(bytes_after < bytes_before * 6 / 10);
    auto first = s.get(key_of(1));
    REQUIRE(first);
    CHECK(first->value_or("") == std::string(100, 'p'));
  }

  TEST_CASE("expiry memory: a mostly expired tree is rebuilt from its live entries, in every keyspace") {
    fake_clock clock;
    keel::memory_options o;
    o.expiry_interval = 0ms;
    auto s = open_with(clock, o);
    auto users = s.keyspace("users");
    REQUIRE(users);
    write_batch b;
    for (int i = 0; i < 3000; ++i) {
      const bool lasts = i % 10 == 0;
      b.put(key_of(i), "v" + std::to_string(i), lasts ? put_options{} : put_options{1s});
      b.put(keel::keyspace_name("users"), key_of(i), "u" + std::to_string(i), lasts ? put_options{1h} : put_options{1s});
    }
    REQUIRE(s.write(b));
    SUBCASE("nothing else going on: rebuilt") { clock.advance(1s); }
    SUBCASE("a transaction live: erased in chunks, and it conflicts") {
      auto tx = s.transaction();
      CHECK(tx.get(key_of(1))->value_or("") == "v1");
      REQUIRE(tx.put("x", "y"));
      clock.advance(1s);
      REQUIRE(s.compact());
      CHECK(s.policy().size() == 600);
      CHECK(tx.commit().error().code() == keel::errc::conflict);
    }
    REQUIRE(s.compact());
    CHECK(s.policy().size() == 600);
    for (int i = 0; i < 3000; i += 10) {
      CHECK(s.get(key_of(i))->value_or("") == "v" + std::to_string(i));
      CHECK(*users->expiry(key_of(i)) == keel::key_expiry{true, clock.now() - 1000 + 3600 * 1000});
    }
    CHECK_FALSE(s.get(key_of(1))->has_value());
    CHECK(s.policy().memory_bytes() > 0);
  }

  TEST_CASE("expiry memory: the sweep reaches the keyspace written last through a handle (the hot keyspace)") {
    fake_clock clock;
    keel::memory_options o;
    o.expiry_interval = 0ms;
    auto s = open_with(clock, o);
    auto users = s.keyspace("users");
    auto other = s.keyspace("other");
    REQUIRE(users);
    REQUIRE(other);
    REQUIRE(other->put("o", "1", put_options{1s}));
    for (int i = 0; i < 100; ++i) REQUIRE(users->put(key_of(i), "u", put_options{1s}));
    // Plain puts through the handle: "users" becomes the hot keyspace (its tree held by the
    // version, edited in place from the second put on).
    for (int i = 100; i < 110; ++i) REQUIRE(users->put(key_of(i), "p"));
    CHECK(s.policy().size() == 111);
    clock.advance(1s);
    SUBCASE("mostly expired: rebuilt") {}
    SUBCASE("few expired: erased in chunks") {
      for (int i = 110; i < 400; ++i) REQUIRE(users->put(key_of(i), "p"));
    }
    const std::size_t left = s.policy().size() - 101;
    REQUIRE(s.compact());
    CHECK(s.policy().size() == left);
    CHECK_FALSE(users->get(key_of(0))->has_value());
    CHECK_FALSE(other->get("o")->has_value());
    // The sweep's publish keeps the keyspaces consistent: more puts through the handle, then every key is there.
    for (int i = 1000; i < 1010; ++i) REQUIRE(users->put(key_of(i), "q"));
    REQUIRE(other->put("o2", "2"));
    CHECK(s.policy().size() == left + 11);
    CHECK(users->get(key_of(105))->value_or("") == "p");
    CHECK(users->get(key_of(1009))->value_or("") == "q");
    CHECK(other->get("o2")->value_or("") == "2");
  }

  TEST_CASE("expiry memory: the background sweep removes them, readers keep their versions") {
    fake_clock clock;
    keel::memory_options o;
    o.expiry_interval = 5ms;
    auto s = open_with(clock, o);
    fill_half_expiring(s, 20000, 10s);
    auto snap = s.snapshot();
    auto cursor = s.scan(key_range::all());
    clock.advance(10s);
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (s.policy().size() != 10000 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    CHECK(s.policy().size() == 10000);
    // Taken before the deadline: they still read every key.
    auto v = snap.get(key_of(0));
    REQUIRE(v);
    CHECK(v->has_value());
    std::size_t seen = 0;
    for (const auto& e : cursor) {
      (void)e;
      ++seen;
    }
    CHECK(seen == 20000);
  }

  TEST_CASE("expiry memory: a store that never used ttl keeps its files as before") {
    fake_clock clock;
    temp_dir dir;
    const fs::path file = dir.path() / "store.keeldump";
    keel::memory_options o;
    o.persist_path = file;
    {
      auto s = open_with(clock, o);
      for (int i = 0; i < 100; ++i) REQUIRE(s.put(key_of(i), "value " + std::to_string(i)));
      REQUIRE(s.close());
    }
    // The snapshot is the dump keel's dump_writer writes for the same records.
    const fs::path expected = dir.path() / "expected.keeldump";
    {
      keel::dump_writer w;
      REQUIRE(w.open(expected));
      for (int i = 0; i < 100; ++i) REQUIRE(w.add(key_of(i), "value " + std::to_string(i)));
      REQUIRE(w.finish());
    }
    CHECK(file_bytes(file) == file_bytes(expected));
    // With keyspaces: the keyspaced snapshot of version 1.
    {
      auto s = open_with(clock, o);
      auto ks = s.keyspace("users");
      REQUIRE(ks);
      REQUIRE(ks->put("u", "v"));
      REQUIRE(s.close());
    }
    std::string bytes = file_bytes(file);
    REQUIRE(bytes.size() > 16);
    CHECK(bytes.substr(0, 8) == "KEELMKS1");
    CHECK(bytes[8] == 1);
    // A store that used ttl saves version 2 (deadlines with the entries).
    {
      auto s = open_with(clock, o);
      REQUIRE(s.put("t", "v", put_options{1h}));
      REQUIRE(s.close());
    }
    bytes = file_bytes(file);
    CHECK(bytes.substr(0, 8) == "KEELMKS1");
    CHECK(bytes[8] == 2);
    // Once its deadlines have passed, the next save is version 1 again.
    clock.advance(2h);
    {
      auto s = open_with(clock, o);
      CHECK_FALSE(s.get("t")->has_value());
      REQUIRE(s.close());
    }
    bytes = file_bytes(file);
    CHECK(bytes[8] == 1);
  }

  TEST_CASE("expiry memory: the compression pass keeps the deadlines") {
#if KEEL_HAVE_ZSTD || KEEL_HAVE_LZ4
    fake_clock clock;
    keel::memory_options o;
#if KEEL_HAVE_ZSTD
    o.compression = keel::compression::zstd;
#else
    o.compression = keel::compression::lz4;
#endif
    auto s = open_with(clock, o);
    write_batch b;
    for (int i = 0; i < 3000; ++i) {
      const std::string value = "{\"user\":" + std::to_string(i) + ",\"name\":\"someone\",\"plan\":\"basic\"," +
                                std::string(200, 'x') + "}";
      if (i % 2 == 0)
        b.put(key_of(i), value, put_options{10s});
      else
        b.put(key_of(i), value);
    }
    REQUIRE(s.write(b));
    const auto deadline = clock.now() + 10000;
    REQUIRE(s.compact());  // compresses
    auto st = s.stats();
    REQUIRE(st);
    CHECK(st->size_bytes < st->uncompressed_bytes / 2);
    auto e = s.expiry(key_of(0));
    REQUIRE(e);
    CHECK(*e == keel::key_expiry{true, deadline});
    auto p = s.expiry(key_of(1));
    REQUIRE(p);
    CHECK(*p == keel::key_expiry{true, std::nullopt});
    clock.advance(10s);
    CHECK_FALSE(s.get(key_of(0))->has_value());
    CHECK(s.get(key_of(1))->has_value());
    REQUIRE(s.compact());
    CHECK(s.policy().size() == 1500);
#endif
  }

  TEST_CASE("expiry memory: SIGKILL rounds of a writer using ttl") {
    // The helper's clock stands at `start`; after each kill the store is
    // opened with the clock 10 s later: the rounds with ttl 1 s are absent,
    // those with 1000 s present with their deadline, keys without ttl present.
    temp_dir dir;
    const fs::path file = dir.path() / "store.keeldump";
    const long long start = fake_clock::start_ms;
    std::mt19937 rng(29);
    std::uniform_int_distribution<int> delay_us(0, 30000);
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::string prefix = "a" + std::to_string(attempt);
      long last_ack = -1;
      {
        keel::test::child_process w(keel::test::helper_path("memory_log_writer"),
                                    {"expiry", file.string(), prefix, std::to_string(start)});
        auto first = w.read_line(30s);
        REQUIRE(first.has_value());
        REQUIRE(first->rfind("ack ", 0) == 0);
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));  // a random moment, not a sync
        w.kill(keel::test::kill_signal);
        CHECK(w.wait() == 128 + keel::test::kill_signal);
        while (auto line = w.read_line(1s)) {
          if (line->rfind("ack ", 0) == 0) last_ack = std::stol(line->substr(4));
        }
        if (last_ack < 0) last_ack = std::stol(first->substr(4));
      }
      fake_clock later;
      later.set(start + 10000);
      keel::memory_options o;
      o.persist_path = file;
      auto s = open_with(later, o);
      CAPTURE(attempt);
      CAPTURE(last_ack);
      for (long r = 0; r <= last_ack; ++r) {
        const std::string key = prefix + "/" + std::to_string(r);
        auto e = s.expiry(key);
        REQUIRE(e);
        if (r % 2 == 0) {
          CHECK(*e == keel::key_expiry{});
        } else {
          CHECK(*e == keel::key_expiry{true, start + 1000000});
          CHECK(s.get(key + "/p")->has_value());
        }
      }
      REQUIRE(s.close());
    }
  }

  // A store that a watch records logs each commit as its changes
  // (docs/watch.md, "Memory"); the puts among them must keep their
  // deadlines, or a reopen would bring expiring keys back as permanent.
  TEST_CASE("a watched persisted store logs its ttl puts with their deadlines") {
    temp_dir dir;
    fake_clock clock;
    keel::memory_options o;
    o.persist_path = dir.path() / "store.keeldump";
    const keel::deadline_ms t0 = clock.now();
    {
      auto s = open_with(clock, o);
      auto w = s.watch();
      REQUIRE(w);
      REQUIRE(s.put("a", "1", put_options{.ttl = 10s}));
      REQUIRE(s.write(write_batch{}.put("b", "2", put_options{.ttl = 20s}).put("c", "3").erase("absent")));
      auto tx = s.transaction();
      REQUIRE(tx.put("d", "4", put_options{.ttl = 30s}));
      REQUIRE(tx.put("e", "5"));
      REQUIRE(tx.commit());
      for (int i = 0; i < 5; ++i) {  // the watch saw the commits: it was recording
        auto c = w->next(1s);
        REQUIRE(c);
        REQUIRE(c->has_value());
      }
      REQUIRE(s.close());
    }
    auto s = open_with(clock, o);
    CHECK(s.expiry("a")->deadline == std::optional<keel::deadline_ms>(t0 + 10'000));
    CHECK(s.expiry("b")->deadline == std::optional<keel::deadline_ms>(t0 + 20'000));
    CHECK(s.expiry("d")->deadline == std::optional<keel::deadline_ms>(t0 + 30'000));
    CHECK(s.expiry("c")->present);
    CHECK_FALSE(s.expiry("c")->deadline.has_value());
    CHECK_FALSE(s.expiry("e")->deadline.has_value());
    clock.advance(15s);
    CHECK_FALSE(s.get("a")->has_value());
    CHECK(s.get("b")->value() == "2");
    clock.advance(20s);
    CHECK_FALSE(s.get("b")->has_value());
    CHECK_FALSE(s.get("d")->has_value());
    CHECK(s.get("c")->value() == "3");
    CHECK(s.get("e")->value() == "5");
  }
}
