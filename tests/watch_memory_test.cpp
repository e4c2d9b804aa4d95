// Watch on the memory store (issue 28): the memory-specific cases (the
// cross-backend semantics are the conformance suite's, tests/watch_test.cpp):
// exactly-once under concurrent writers, grouping, erase_range expansion,
// resume at every point of a history, a watch left unread, persisted seqs
// and history across close and reopen, close and keyspace drop ending a
// watch, compressed values, and detail::change_feed's bounds.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/fake_clock.hpp"
#include "support/scale.hpp"
#include "support/temp_dir.hpp"
#include "support/watch_crash.hpp"
#include <keel/memory.hpp>

using namespace std::chrono_literals;
using keel::change;
using keel::errc;
using keel::key_range;
using keel::memory_options;
using keel::memory_store;
using keel::put_options;
using keel::watch_options;
using keel::write_batch;
namespace fs = std::filesystem;

namespace doctest {
template <>
struct StringMaker<change> {
  static String convert(const change& c) {
    return (std::to_string(c.seq) + " '" + c.keyspace + "' " + c.key + (c.value ? " = " + *c.value : " erased")).c_str();
  }
};
template <>
struct StringMaker<std::vector<change>> {
  static String convert(const std::vector<change>& v) {
    std::string out = "[";
    for (const auto& c : v) out += std::string(StringMaker<change>::convert(c).c_str()) + "; ";
    return (out + "]").c_str();
  }
};
}  // namespace doctest

namespace {

memory_store open_memory(memory_options o = {}) {
  auto s = memory_store::open(o);
  REQUIRE(s);
  return std::move(*s);
}

memory_store open_persisted(const fs::path& file, std::size_t history = 65536) {
  memory_options o;
  o.persist_path = file;
  o.watch_history = history;
  auto s = memory_store::open(o);
  REQUIRE(s);
  return std::move(*s);
}

watch_options after(std::uint64_t s) {
  watch_options o;
  o.after = s;
  return o;
}

// Every change the watch has now (reads until one next() finds nothing
// within `quiet`); fails the test on an error.
template <class Watch>
std::vector<change> drain(Watch& w, std::chrono::milliseconds quiet = 0ms) {
  std::vector<change> out;
  for (;;) {
    auto c = w.next(quiet);
    REQUIRE(c);
    if (!*c) return out;
    out.push_back(std::move(**c));
  }
}

// The writes the unread-watch case makes (the 200k; a tenth under
// the sanitizers, about 10x slower: 18 s under TSan otherwise).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr long unread_writes = 20000;
#else
constexpr long unread_writes = 200000;
#endif

change put_change(std::uint64_t seq, std::string key, std::string value, std::string ks = "") {
  return change{seq, std::move(ks), std::move(key), std::move(value)};
}
change erase_change(std::uint64_t seq, std::string key, std::string ks = "") {
  return change{seq, std::move(ks), std::move(key), std::nullopt};
}

}  // namespace

TEST_SUITE("watch_memory") {
  TEST_CASE("watch memory: 4 writer threads, 2 watches: every seq exactly once, in order") {
    auto s = open_memory();
    const std::uint64_t start = s.last_seq();
    auto w1 = s.watch();
    auto w2 = s.watch(key_range::all(), [] { watch_options o; o.buffer = 7; return o; }());
    REQUIRE(w1);
    REQUIRE(w2);
    const int per_writer = static_cast<int>(keel::test::scaled("KEEL_TEST_WATCH_WRITES", 4000));
    const std::size_t total = 4 * static_cast<std::size_t>(per_writer);
    // Each watch is read by its own thread while the writers write.
    auto reader = [&](auto& w, std::vector<change>& got, std::atomic<bool>& failed) {
      const auto deadline = std::chrono::steady_clock::now() + 120s;
      while (got.size() < total && std::chrono::steady_clock::now() < deadline) {
        auto c = w.next(100ms);
        if (!c) {
          failed = true;
          return;
        }
        if (*c) got.push_back(std::move(**c));
      }
    };
    std::vector<change> got1, got2;
    std::atomic<bool> failed1{false}, failed2{false};
    std::thread r1([&] { reader(*w1, got1, failed1); });
    std::thread r2([&] { reader(*w2, got2, failed2); });
    std::vector<std::thread> writers;
    std::atomic<int> write_errors{0};
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&, t] {
        for (int i = 0; i < per_writer; ++i)
          if (!s.put("w" + std::to_string(t) + "/" + std::to_string(i), std::to_string(i))) ++write_errors;
      });
    }
    for (auto& t : writers) t.join();
    r1.join();
    r2.join();
    CHECK(write_errors == 0);
    CHECK_FALSE(failed1);
    CHECK_FALSE(failed2);
    CHECK(s.last_seq() == start + total);
    for (const auto* got : {&got1, &got2}) {
      REQUIRE(got->size() == total);
      // One put per commit: the seqs are start+1 .. start+total, each once, rising.
      std::set<std::string> keys;
      std::vector<int> next_of_writer(4, 0);
      for (std::size_t i = 0; i < got->size(); ++i) {
        const change& c = (*got)[i];
        CHECK(c.seq == start + 1 + i);
        keys.insert(c.key);
        // A writer's own puts arrive in its order.
        const int t = c.key[1] - '0';
        CHECK(c.key == "w" + std::to_string(t) + "/" + std::to_string(next_of_writer[t]));
        CHECK(c.value == std::to_string(next_of_writer[t]));
        ++next_of_writer[t];
      }
      CHECK(keys.size() == total);
    }
    // Nothing more comes.
    auto more = w1->next(0ms);
    REQUIRE(more);
    CHECK_FALSE(*more);
  }

  TEST_CASE("watch memory: a batch and a transaction are consecutive changes with one seq") {
    auto s = open_memory();
    REQUIRE(s.put("x", "0"));
    auto w = s.watch();
    REQUIRE(w);
    write_batch b;
    b.put("a", "1").put("b", "2").erase("x").erase("never-there");
    REQUIRE(s.write(b));
    auto tx = s.transaction();
    REQUIRE(tx.put("c", "3"));
    REQUIRE(tx.erase("a"));
    REQUIRE(tx.commit());
    REQUIRE(s.put("d", "4"));
    REQUIRE(s.erase("absent"));  // changes nothing: no commit, no change
    REQUIRE(s.erase("d"));
    auto got = drain(*w);
    // A transaction's writes come in the order its record keeps them (by key).
    REQUIRE(got.size() == 7);
    std::sort(got.begin() + 3, got.begin() + 5, [](const change& a, const change& b) { return a.key < b.key; });
    const std::vector<change> want{put_change(2, "a", "1"), put_change(2, "b", "2"), erase_change(2, "x"),
                                   erase_change(3, "a"), put_change(3, "c", "3"),
                                   put_change(4, "d", "4"), erase_change(5, "d")};
    CHECK(got == want);
    CHECK(s.last_seq() == 5);
  }

  TEST_CASE("watch memory: erase_range is one erase per key it removed, in key order, in its commit") {
    auto s = open_memory();
    for (const char* k : {"a1", "a2", "a3", "b1", "c1"}) REQUIRE(s.put(k, "v"));
    auto w = s.watch();
    REQUIRE(w);
    REQUIRE(s.erase_range(key_range::prefix("a")));
    REQUIRE(s.erase_range(key_range::prefix("a")));  // nothing left there: no change
    write_batch b;  // inside a batch: keys the batch put count, keys it erased do not
    b.put("b2", "x").erase("b1").put("b0", "y").erase_range(key_range::prefix("b")).put("b5", "z");
    REQUIRE(s.write(b));
    auto got = drain(*w);
    REQUIRE(got.size() == 9);
    for (std::size_t i = 0; i < 3; ++i) CHECK(got[i] == erase_change(got[0].seq, "a" + std::to_string(i + 1)));
    const std::uint64_t batch_seq = got[3].seq;
    CHECK(batch_seq > got[0].seq);
    const std::vector<change> batch{put_change(batch_seq, "b2", "x"), erase_change(batch_seq, "b1"),
                                    put_change(batch_seq, "b0", "y"), erase_change(batch_seq, "b0"),
                                    erase_change(batch_seq, "b2"), put_change(batch_seq, "b5", "z")};
    // b0 and b2 were put by the batch, b1 erased by it before the range.
    CHECK(std::vector<change>(got.begin() + 3, got.end()) == batch);
  }

  TEST_CASE("watch memory: resume after S at every point of a history gives exactly the changes after S") {
    auto s = open_memory();
    auto all = s.watch(key_range::all(), after(0));
    REQUIRE(all);
    for (int i = 0; i < 120; ++i) {
      const std::string k = "k" + std::to_string(i % 17);
      switch (i % 5) {
        case 0: REQUIRE(s.put(k, std::to_string(i))); break;
        case 1: {
          write_batch b;
          b.put(k, "b").put(k + "x", "b").erase("k" + std::to_string((i + 3) % 17));
          REQUIRE(s.write(b));
          break;
        }
        case 2: REQUIRE(s.erase(k)); break;
        case 3: REQUIRE(s.erase_range(key_range::between("k1", "k2"))); break;
        default: {
          auto tx = s.transaction();
          REQUIRE(tx.put(k, "t"));
          REQUIRE(tx.put("t" + std::to_string(i), "t"));
          REQUIRE(tx.commit());
        }
      }
    }
    const auto history = drain(*all);
    REQUIRE_FALSE(history.empty());
    const std::uint64_t last = s.last_seq();
    CHECK(history.back().seq == last);
    for (std::uint64_t at = 0; at <= last; ++at) {
      auto w = s.watch(key_range::all(), after(at));
      REQUIRE(w);
      std::vector<change> want;
      std::copy_if(history.begin(), history.end(), std::back_inserter(want), [&](const change& c) { return c.seq > at; });
      CHECK(drain(*w) == want);
      // With a range: the same, filtered.
      auto r = s.watch(key_range::prefix("k1"), after(at));
      REQUIRE(r);
      std::erase_if(want, [](const change& c) { return !key_range::prefix("k1").contains(c.key); });
      CHECK(drain(*r) == want);
    }
    auto beyond = s.watch(key_range::all(), after(last + 1));
    REQUIRE_FALSE(beyond);
    CHECK(beyond.error().code() == errc::invalid_argument);
  }

  TEST_CASE("watch memory: a watch left unread while many writes happen: no gap, then all or snapshot_expired") {
    const long writes = keel::test::scaled("KEEL_TEST_WATCH_UNREAD_WRITES", unread_writes);
    for (const std::size_t history : {std::size_t{1000}, static_cast<std::size_t>(writes)}) {
      CAPTURE(history);
      memory_options o;
      o.watch_history = history;
      auto s = open_memory(o);
      REQUIRE(s.put("first", "0"));
      auto w = s.watch(key_range::all(), [] { watch_options wo; wo.buffer = 16; return wo; }());
      REQUIRE(w);
      // Read a few, so the watch holds a buffer, then leave it.
      REQUIRE(s.put("k", "0"));
      auto one = w->next(0ms);
      REQUIRE(one);
      REQUIRE(*one);
      std::uint64_t expect = (*one)->seq + 1;
      for (long i = 0; i < writes; ++i) REQUIRE(s.put("k" + std::to_string(i % 1000), std::to_string(i)));
      const std::uint64_t last = s.last_seq();
      bool expired = false;
      for (;;) {
        auto c = w->next(0ms);
        if (!c) {
          CHECK(c.error().code() == errc::snapshot_expired);
          CHECK(c.error().message().find("oldest seq still available is") != std::string::npos);
          expired = true;
          // Sticky.
          auto again = w->next(0ms);
          REQUIRE_FALSE(again);
          CHECK(again.error().code() == errc::snapshot_expired);
          break;
        }
        if (!*c) break;
        REQUIRE((*c)->seq == expect);  // no gap
        ++expect;
      }
      if (history >= static_cast<std::size_t>(writes)) {
        CHECK_FALSE(expired);
        CHECK(expect == last + 1);  // every change
      } else {
        CHECK(expired);
        // The history holds the last `history` changes: a resume there works.
        auto tail = s.watch(key_range::all(), after(last - history));
        REQUIRE(tail);
        CHECK(drain(*tail).size() == history);
        auto older = s.watch(key_range::all(), after(last - history - 1));
        REQUIRE(older);
        auto e = older->next(0ms);
        REQUIRE_FALSE(e);
        CHECK(e.error().code() == errc::snapshot_expired);
      }
    }
  }

  TEST_CASE("watch memory: readers racing a writer that evicts under them get whole changes, no gap, or snapshot_expired") {
    // A tiny history, so that the writer reuses the slots and frees the
    // blocks the readers are copying from (change_feed.hpp's seqlock on
    // begin): every change a reader gets must be one the writer made, whole
    // (value = the key's number, 200 bytes), and each run of changes between
    // two expirations must have consecutive seqs.
    long delivered_in_all = 0;
    for (const std::size_t history : {std::size_t{1}, std::size_t{8}, std::size_t{300}}) {
      CAPTURE(history);
      memory_options o;
      o.watch_history = history;
      auto s = open_memory(o);
      const long writes = keel::test::scaled("KEEL_TEST_WATCH_RACE_WRITES", 20000);
      std::atomic<bool> done{false};
      std::atomic<long> bad{0}, delivered{0}, expirations{0};
      // The watches are made before the writes start (a watch from now made
      // in its thread could miss them all).
      auto make = [&](std::size_t buffer) {
        watch_options wo;
        wo.buffer = buffer;
        auto w = s.watch(key_range::all(), wo);
        REQUIRE(w);
        return std::move(*w);
      };
      // Each reader's position: the seq of the last change it read, or where
      // its new watch started after an expiration.
      std::atomic<std::uint64_t> position[2] = {0, 0};
      long stalls = 0;
      auto reader = [&](keel::basic_watch<keel::MemoryPolicy> first, std::size_t buffer, int me) {
        watch_options wo;
        wo.buffer = buffer;
        keel::result<keel::basic_watch<keel::MemoryPolicy>> w(std::move(first));
        std::uint64_t last = 0;
        while (!done.load() || last < s.last_seq()) {
          auto c = w->next(1ms);
          if (!c) {
            if (c.error().code() != errc::snapshot_expired) return (void)++bad;
            ++expirations;
            w = s.watch(key_range::all(), wo);  // from now
            if (!w) return (void)++bad;
            position[me] = s.last_seq();
            last = 0;
            continue;
          }
          if (!*c) {
            if (done.load()) break;
            continue;
          }
          const change& ch = **c;
          const std::string n = ch.key.substr(1);
          if (ch.key[0] != 'k' || !ch.value || *ch.value != std::string(200, static_cast<char>('a' + std::stoi(n) % 26)) + n)
            ++bad;
          if (last != 0 && ch.seq != last + 1) ++bad;
          last = ch.seq;
          position[me] = ch.seq;
          ++delivered;
        }
      };
      std::thread r1(reader, make(1), 1, 0), r2(reader, make(64), 64, 1);
      // In rounds of 100 puts, each after both readers caught up with the
      // last (read it, or expired and started again from now), so that they
      // read while the writer writes; every fourth round is 2000 puts, more
      // than the ring's first 1024 slots, so that slots a reader has not
      // copied yet are reused.
      long in_round = 0, round = 0;
      for (long i = 0; i < writes; ++i) {
        const std::string n = std::to_string(i % 5000);
        REQUIRE(s.put("k" + n, std::string(200, static_cast<char>('a' + std::stoi(n) % 26)) + n));
        if (++in_round == (round % 4 == 3 ? 2000 : 100)) {
          in_round = 0;
          ++round;
          const std::uint64_t target = s.last_seq();
          const auto deadline = std::chrono::steady_clock::now() + 10s;
          while ((position[0] < target || position[1] < target) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::yield();
          if (position[0] < target || position[1] < target) ++stalls;
        }
      }
      done = true;
      r1.join();
      r2.join();
      CHECK(bad == 0);
      CHECK(stalls == 0);
      delivered_in_all += delivered;
      MESSAGE("history " << history << ": " << delivered.load() << " changes delivered, " << expirations.load()
                         << " expirations");
    }
    CHECK(delivered_in_all > 0);
  }

  TEST_CASE("watch memory: nothing is kept before the first watch") {
    auto s = open_memory();
    REQUIRE(s.put("a", "1"));
    REQUIRE(s.put("b", "2"));
    CHECK(s.last_seq() == 2);
    auto w = s.watch(key_range::all(), after(0));
    REQUIRE(w);
    auto e = w->next(0ms);
    REQUIRE_FALSE(e);
    CHECK(e.error().code() == errc::snapshot_expired);
    auto now = s.watch(key_range::all(), after(2));
    REQUIRE(now);
    REQUIRE(s.put("c", "3"));
    CHECK(drain(*now) == std::vector<change>{put_change(3, "c", "3")});
  }

  TEST_CASE("watch memory: persisted seqs and history go on across close and reopen") {
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::vector<change> seen;
    std::uint64_t last = 0;
    {
      auto s = open_persisted(file);
      REQUIRE(s.put("before", "watch"));
      auto w = s.watch();
      REQUIRE(w);
      for (int i = 0; i < 10; ++i) REQUIRE(s.put("k" + std::to_string(i), std::to_string(i)));
      write_batch b;
      b.put("b", "1").erase("k0").erase("nope").erase_range(key_range::between("k5", "k8"));
      REQUIRE(s.write(b));
      REQUIRE(s.erase_range(key_range::prefix("k9")));
      seen = drain(*w);
      last = s.last_seq();
      REQUIRE(s.close());
      auto closed = w->next(0ms);
      REQUIRE_FALSE(closed);
      CHECK(closed.error().code() == errc::closed);
    }
    REQUIRE(seen.size() == 10 + 5 + 1);
    {
      auto s = open_persisted(file);
      CHECK(s.last_seq() == last);
      // Every point since the first watch: the log kept at close holds it.
      for (const auto& from : seen) {
        auto w = s.watch(key_range::all(), after(from.seq - 1));
        REQUIRE(w);
        std::vector<change> want;
        std::copy_if(seen.begin(), seen.end(), std::back_inserter(want), [&](const change& c) { return c.seq >= from.seq; });
        CHECK(drain(*w) == want);
      }
      auto w = s.watch(key_range::all(), after(last));
      REQUIRE(w);
      REQUIRE(s.put("after", "reopen"));
      auto got = drain(*w);
      REQUIRE(got.size() == 1);
      CHECK(got[0].seq > last);
      REQUIRE(s.close());
    }
    {
      // The data is what it was (the kept log replays over the snapshot).
      auto s = open_persisted(file);
      CHECK(s.get("k1").value() == std::optional<std::string>("1"));
      CHECK(s.get("k0").value() == std::nullopt);
      CHECK(s.get("k6").value() == std::nullopt);
      CHECK(s.get("k9").value() == std::nullopt);
      CHECK(s.get("after").value() == std::optional<std::string>("reopen"));
      CHECK(s.last_seq() > last);
      // A fold: the history restarts after it; older positions are expired.
      REQUIRE(s.flush());
      const std::uint64_t folded = s.last_seq();
      REQUIRE(s.close());
      auto r = open_persisted(file);
      CHECK(r.last_seq() == folded);
      auto old = r.watch(key_range::all(), after(last));
      REQUIRE(old);
      auto e = old->next(0ms);
      REQUIRE_FALSE(e);
      CHECK(e.error().code() == errc::snapshot_expired);
    }
  }

  TEST_CASE("watch memory: puts through one keyspace handle in a row (the hot keyspace's edits) are delivered, "
            "and logged as changes in a persisted store") {
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::vector<change> want;
    {
      auto s = open_persisted(file);
      auto x = s.keyspace("x");
      auto y = s.keyspace("y");
      REQUIRE(x);
      REQUIRE(y);
      auto wx = x->watch();
      REQUIRE(wx);
      // The first put makes x the hot keyspace; the next ones edit its tree in place
      // (versions.hpp's edit_hot); a put to y and back switches it.
      for (int i = 0; i < 5; ++i) REQUIRE(x->put("k" + std::to_string(i), std::to_string(i)));
      REQUIRE(y->put("other", "y"));
      for (int i = 5; i < 8; ++i) REQUIRE(x->put("k" + std::to_string(i), std::to_string(i)));
      auto got = drain(*wx);
      REQUIRE(got.size() == 8);
      for (int i = 0; i < 8; ++i) {
        CHECK(got[static_cast<std::size_t>(i)] ==
              put_change(got[static_cast<std::size_t>(i)].seq, "k" + std::to_string(i), std::to_string(i), "x"));
        if (i > 0) CHECK(got[static_cast<std::size_t>(i)].seq > got[static_cast<std::size_t>(i) - 1].seq);
      }
      want = got;
      REQUIRE(s.close());
    }
    auto s = open_persisted(file);
    auto x = s.keyspace("x");
    REQUIRE(x);
    CHECK(x->get("k7").value() == std::optional<std::string>("7"));
    auto w = x->watch(key_range::all(), after(want.front().seq - 1));
    REQUIRE(w);
    CHECK(drain(*w) == want);
  }

  TEST_CASE("watch memory: a persisted store that never watched leaves no frame at close") {
    // Behaviour change (seqs go on across close for every persisted store):
    // close leaves one log holding no frame, only its header (which carries
    // the next seq); before, it left no log at all.
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    {
      auto s = open_persisted(file);
      REQUIRE(s.put("a", "1"));
      REQUIRE(s.close());
    }
    int logs = 0;
    for (const auto& e : fs::directory_iterator(tmp.path())) {
      if (e.path().filename().string().find(".wal-") == std::string::npos) continue;
      ++logs;
      CHECK(fs::file_size(e.path()) == 24);  // the log file header (memory/log_format.hpp), no frame
    }
    CHECK(logs == 1);
  }

  TEST_CASE("watch memory: a persisted store that never watched: last_seq goes on across close, reopen and folds") {
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::uint64_t first = 0, second = 0;
    {
      auto s = open_persisted(file);
      REQUIRE(s.put("a", "1"));
      first = s.last_seq();
      REQUIRE(first > 0);
      REQUIRE(s.close());
    }
    {
      auto s = open_persisted(file);
      CHECK(s.last_seq() == first);  // was 0: seqs went down across the reopen
      REQUIRE(s.close());            // a session that writes nothing
    }
    {
      auto s = open_persisted(file);
      CHECK(s.last_seq() == first);
      REQUIRE(s.put("b", "2"));
      CHECK(s.last_seq() > first);
      REQUIRE(s.flush());  // a fold
      REQUIRE(s.put("c", "3"));
      second = s.last_seq();
      REQUIRE(s.close());
    }
    {
      auto s = open_persisted(file);
      CHECK(s.last_seq() == second);
      REQUIRE(s.flush());  // a fold of nothing, then close
      REQUIRE(s.close());
    }
    auto s = open_persisted(file);
    CHECK(s.last_seq() == second);
    CHECK(s.get("c").value() == std::optional<std::string>("3"));
    // A consumer that read last_seq() before the restarts resumes there.
    auto w = s.watch(key_range::all(), after(second));
    REQUIRE(w);
    REQUIRE(s.put("d", "4"));
    auto got = drain(*w);
    REQUIRE(got.size() == 1);
    CHECK(got[0].seq > second);
    CHECK(got[0].key == "d");
  }

  TEST_CASE("watch memory: sessions that only watch, or do nothing, keep the persisted history for the next one") {
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::vector<change> seen;
    {
      auto s = open_persisted(file);
      auto w = s.watch();
      REQUIRE(w);
      for (int i = 0; i < 5; ++i) REQUIRE(s.put("k" + std::to_string(i), std::to_string(i)));
      seen = drain(*w);
      REQUIRE(s.close());
    }
    REQUIRE(seen.size() == 5);
    const std::uint64_t from = seen.front().seq - 1;
    for (int session = 0; session < 3; ++session) {
      CAPTURE(session);
      auto s = open_persisted(file);
      if (session == 1) {  // opens and closes, no watch, no write
        REQUIRE(s.close());
        continue;
      }
      auto w = s.watch(key_range::all(), after(from));  // like `keel --memory-file F watch --after 0`
      REQUIRE(w);
      auto got = w->next(0ms);
      REQUIRE(got);  // was snapshot_expired from the second watching session on
      REQUIRE(*got);
      std::vector<change> all{std::move(**got)};
      for (auto& c : drain(*w)) all.push_back(std::move(c));
      CHECK(all == seen);
      REQUIRE(s.close());
    }
  }

  TEST_CASE("watch memory: close wakes a waiting watch with closed") {
    auto s = open_memory();
    auto w = s.watch();
    REQUIRE(w);
    std::optional<keel::error> got;
    const auto started = std::chrono::steady_clock::now();
    std::thread waiter([&] {
      auto c = w->next(60s);
      if (!c) got = c.error();
    });
    REQUIRE(s.close());
    waiter.join();
    REQUIRE(got);
    CHECK(got->code() == errc::closed);
    CHECK(std::chrono::steady_clock::now() - started < 30s);  // woken, not timed out
    auto again = s.watch();
    REQUIRE_FALSE(again);
    CHECK(again.error().code() == errc::closed);
  }

  TEST_CASE("watch memory: keyspace watches carry the name; a drop ends them after the changes before it") {
    auto s = open_memory();
    auto x = s.keyspace("x");
    REQUIRE(x);
    auto wx = x->watch();
    auto wall = s.watch();
    REQUIRE(wx);
    REQUIRE(wall);
    REQUIRE(x->put("a", "1"));
    REQUIRE(s.put("a", "default"));
    REQUIRE(x->erase_range(key_range::all()));
    REQUIRE(x->put("b", "2"));
    REQUIRE(s.drop_keyspace("x"));
    std::vector<change> got;
    for (;;) {
      auto c = wx->next(0ms);
      if (!c) {
        CHECK(c.error().code() == errc::not_found);
        break;
      }
      REQUIRE(*c);
      got.push_back(std::move(**c));
    }
    REQUIRE(got.size() == 3);
    CHECK(got[0] == put_change(got[0].seq, "a", "1", "x"));
    CHECK(got[1] == erase_change(got[1].seq, "a", "x"));
    CHECK(got[2] == put_change(got[2].seq, "b", "2", "x"));
    auto sticky = wx->next(0ms);
    REQUIRE_FALSE(sticky);
    CHECK(sticky.error().code() == errc::not_found);
    // The default keyspace's watch sees its own change only, and goes on.
    CHECK(drain(*wall) == std::vector<change>{put_change(got[0].seq + 1, "a", "default")});
    // A dropped keyspace's handle makes no watch; the keyspace made again is a new one.
    auto late = x->watch();
    REQUIRE_FALSE(late);
    CHECK(late.error().code() == errc::not_found);
    auto x2 = s.keyspace("x");
    REQUIRE(x2);
    auto w2 = x2->watch(key_range::all(), after(got[0].seq - 1));  // from before the drop
    REQUIRE(w2);
    REQUIRE(x2->put("c", "3"));
    auto again = drain(*w2);
    REQUIRE(again.size() == 4);  // the old x's changes (same name), then the new one's; not ended by the old drop
    CHECK(again[3].key == "c");
  }

  TEST_CASE("watch memory: values come decompressed from a compressed store") {
    memory_options o;
    o.compression = keel::compression::none;
#if KEEL_HAVE_LZ4
    o.compression = keel::compression::lz4;
#elif KEEL_HAVE_ZSTD
    o.compression = keel::compression::zstd;
#endif
    auto s = open_memory(o);
    auto w = s.watch();
    REQUIRE(w);
    const std::string big(4000, 'z');
    for (int i = 0; i < 200; ++i) REQUIRE(s.put("k" + std::to_string(i), big + std::to_string(i)));
    REQUIRE(s.compact());  // compresses what is held
    write_batch b;
    b.put("k1", big + "again").erase_range(key_range::between("k10", "k11"));
    REQUIRE(s.write(b));
    const auto got = drain(*w);
    REQUIRE(got.size() == 200 + 1 + 11);  // k10, k100..k109
    for (int i = 0; i < 200; ++i) CHECK(got[i].value == big + std::to_string(i));
    CHECK(got[200].value == big + "again");
    CHECK(got[201] == erase_change(got[201].seq, "k10"));
  }

  TEST_CASE("watch memory: options") {
    auto s = open_memory();
    watch_options zero;
    zero.buffer = 0;
    auto w = s.watch(key_range::all(), zero);
    REQUIRE_FALSE(w);
    CHECK(w.error().code() == errc::invalid_argument);
    // Nothing within the timeout: nullopt after about that long.
    auto quiet = s.watch();
    REQUIRE(quiet);
    const auto t0 = std::chrono::steady_clock::now();
    auto none = quiet->next(20ms);
    REQUIRE(none);
    CHECK_FALSE(*none);
    CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  }

  // Issue 28 with 29 (docs/watch.md, "Expiry"): a key that expires is one
  // erase change, when a sweep (here compact(); the background sweep in the
  // next case) removes it: none while it is only seen expired, none for a
  // key overwritten or erased before its deadline.
  TEST_CASE("watch memory: the sweep gives one erase change per expired key, in commit order") {
    keel::test::fake_clock clock;
    memory_options o;
    o.clock = clock.source();
    o.expiry_interval = 0ms;  // compact() only
    auto s = open_memory(o);
    auto users = s.keyspace("users");
    REQUIRE(users);
    auto w = s.watch(key_range::prefix("t/"));
    REQUIRE(w);
    auto wu = users->watch();
    REQUIRE(wu);
    REQUIRE(s.put("t/a", "1", put_options{10s}));
    REQUIRE(s.put("t/b", "2", put_options{10s}));
    REQUIRE(s.put("t/c", "3", put_options{20s}));
    REQUIRE(s.put("t/d", "4", put_options{10s}));
    REQUIRE(s.put("t/d", "4p"));  // permanent again before its deadline: no erase
    REQUIRE(s.put("t/e", "5", put_options{10s}));
    REQUIRE(s.erase("t/e"));  // erased before its deadline: that erase only
    REQUIRE(s.put("u/x", "6", put_options{10s}));  // outside the range
    REQUIRE(users->put("u1", "7", put_options{10s}));
    REQUIRE(drain(*w).size() == 7);
    REQUIRE(drain(*wu).size() == 1);
    clock.advance(15s);
    CHECK_FALSE(s.get("t/a")->has_value());
    CHECK(drain(*w).empty());  // seen expired is no change yet
    const std::uint64_t before = s.last_seq();
    REQUIRE(s.compact());  // most of the default tree expired: the rebuild path
    const auto first = drain(*w);
    REQUIRE(first.size() == 2);
    CHECK(first[0] == erase_change(first[0].seq, "t/a"));
    CHECK(first[1] == erase_change(first[0].seq, "t/b"));  // one published version: one seq
    CHECK(first[0].seq > before);
    const auto ku = drain(*wu);
    REQUIRE(ku.size() == 1);
    CHECK(ku[0] == erase_change(ku[0].seq, "u1", "users"));
    CHECK(ku[0].seq != first[0].seq);  // each keyspace's removal is its own commit
    CHECK(std::max(ku[0].seq, first[0].seq) == s.last_seq());
    REQUIRE(s.compact());
    CHECK(drain(*w).empty());  // nothing twice
    clock.advance(10s);
    REQUIRE(s.put("t/f", "8"));
    REQUIRE(s.compact());  // 1 of 3 expired: erased in chunks
    const auto second = drain(*w);
    REQUIRE(second.size() == 2);
    CHECK(second[0] == put_change(second[0].seq, "t/f", "8"));
    CHECK(second[1] == erase_change(second[1].seq, "t/c"));
    CHECK(second[1].seq > second[0].seq);
    CHECK(second[1].seq == s.last_seq());
  }

  TEST_CASE("watch memory: the background sweep delivers the erase changes by itself") {
    keel::test::fake_clock clock;
    memory_options o;
    o.clock = clock.source();
    o.expiry_interval = 5ms;
    auto s = open_memory(o);
    auto w = s.watch();
    REQUIRE(w);
    for (int i = 0; i < 50; ++i) REQUIRE(s.put("k" + std::to_string(100 + i), "v", put_options{1s}));
    REQUIRE(s.put("p", "permanent"));
    REQUIRE(drain(*w).size() == 51);
    clock.advance(2s);
    std::set<std::string> erased;
    while (erased.size() < 50) {
      auto c = w->next(10s);  // the sweep runs every 5 ms of real time
      REQUIRE(c);
      REQUIRE(c->has_value());
      CHECK_FALSE((*c)->value.has_value());
      CHECK(erased.insert((*c)->key).second);
    }
    CHECK(s.get("p")->value() == "permanent");
    CHECK(drain(*w, 50ms).empty());
  }

  // A persisted store logs the sweep's erases (whether or not it records):
  // a watch that resumes after a restart gets them once, at the seqs the
  // first session gave them; keys that expired but were not swept before the
  // close are reclaimed by the next open, one erase each.
  TEST_CASE("watch memory: expired keys' erase changes survive a restart: resumed, nothing missed or repeated") {
    keel::test::fake_clock clock;
    keel::test::temp_dir dir;
    memory_options o;
    o.clock = clock.source();
    o.expiry_interval = 0ms;
    o.persist_path = dir.path() / "store.keeldump";
    auto open_at = [&] {
      auto s = memory_store::open(o);
      REQUIRE(s);
      return std::move(*s);
    };
    std::vector<change> seen;  // what the watches of every session delivered, in order
    std::uint64_t start = 0;
    {
      auto s = open_at();
      start = s.last_seq();
      auto w = s.watch();
      REQUIRE(w);
      REQUIRE(s.put("a", "1", put_options{10s}));
      REQUIRE(s.put("b", "2", put_options{10s}));
      REQUIRE(s.put("c", "3"));
      REQUIRE(s.put("d", "4", put_options{30s}));
      REQUIRE(s.put("e", "5", put_options{60s}));
      clock.advance(15s);
      REQUIRE(s.compact());  // a, b: logged erases
      clock.advance(20s);    // d expires, not swept before the close
      seen = drain(*w);
      REQUIRE(seen.size() == 7);
      CHECK(seen[5] == erase_change(seen[5].seq, "a"));
      CHECK(seen[6] == erase_change(seen[5].seq, "b"));
      REQUIRE(s.close());
    }
    const std::uint64_t first_session = seen.back().seq;
    {
      // Reopen: d is reclaimed at load (one erase, a new seq); e expires and
      // a sweep removes it before any watch is made.
      auto s = open_at();
      clock.advance(30s);
      REQUIRE(s.compact());
      auto w = s.watch(key_range::all(), after(first_session));
      REQUIRE(w);
      const auto later = drain(*w);
      REQUIRE(later.size() == 2);
      CHECK(later[0] == erase_change(later[0].seq, "d"));
      CHECK(later[1] == erase_change(later[1].seq, "e"));
      CHECK(later[0].seq > first_session);
      CHECK(later[1].seq > later[0].seq);
      seen.insert(seen.end(), later.begin(), later.end());
      auto all = s.watch(key_range::all(), after(start));  // the whole history, replayed and new
      REQUIRE(all);
      CHECK(drain(*all) == seen);
      REQUIRE(s.close());
    }
    auto s = open_at();  // a third session: the same history again, nothing added
    auto w = s.watch(key_range::all(), after(start));
    REQUIRE(w);
    CHECK(drain(*w) == seen);
    REQUIRE(s.compact());
    CHECK(drain(*w).empty());
    CHECK(s.get("c")->value() == "3");
    CHECK(s.policy().size() == 1);
  }

  TEST_CASE("watch memory: a synced writer SIGKILLed at random points: every printed seq survives; resumes neither "
            "skip nor repeat; seqs go on") {
    // memory_log_writer watch: sync_writes, a watch, "ack <round> <seq>"
    // per commit (the seq its watch delivered), a fold every 50 rounds
    // ("folded <round> <last_seq>": a reopen's history starts there).
    using keel::test::watched_commit;
    keel::test::temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::vector<watched_commit> known;  // every commit so far, printed, found in flight or the test's own
    std::uint64_t kept_from = 0;        // the oldest `after` a reopen must serve: the last fold's seq
    std::mt19937 rng(28);
    std::uniform_int_distribution<int> acks_before_kill(1, 90);
    int expired = 0, resumes = 0, in_flight = 0, folds = 0;
    // The commit of round r of writer `prefix`: its puts (the helper's value_for).
    auto round_commit = [](const std::string& prefix, long r, std::uint64_t seq) {
      const std::string value = "round " + std::to_string(r) + " " + std::string(90, 'v');
      watched_commit c{seq, {}};
      if (r % 3 == 0) {
        for (int i = 0; i < 3; ++i) c.changes.push_back("[] " + prefix + "/" + std::to_string(r) + "/" + std::to_string(i) + " = " + value);
      } else {
        c.changes.push_back("[] " + prefix + "/" + std::to_string(r) + " = " + value);
      }
      return c;
    };
    auto last_known = [&] { return known.empty() ? std::uint64_t{0} : known.back().seq; };
    for (int kill = 0; kill < 4; ++kill) {
      CAPTURE(kill);
      const std::string prefix = "w" + std::to_string(kill);
      // The second kill comes right after round 49's ack: during its fold.
      const int wanted = kill == 1 ? 50 : acks_before_kill(rng);
      long last_round = -1;
      bool fold_unconfirmed = false;  // killed between a fold's start and its "folded" line
      {
        keel::test::child_process w(keel::test::helper_path("memory_log_writer"), {"watch", file.string(), prefix});
        auto ready = w.read_line(30s);
        REQUIRE(ready);
        REQUIRE_MESSAGE(ready->rfind("ready ", 0) == 0, *ready);
        CHECK(std::stoull(ready->substr(6)) >= last_known());  // seqs go on after the reopen
        auto take = [&](const std::string& line) {
          REQUIRE_MESSAGE(line.rfind("error", 0) != 0, line);
          std::istringstream in(line);
          std::string word;
          long r = -1;
          std::uint64_t seq = 0;
          in >> word >> r >> seq;
          if (word == "ack") {
            CHECK(r == last_round + 1);
            CHECK(seq > last_known());
            known.push_back(round_commit(prefix, r, seq));
            last_round = r;
            fold_unconfirmed = r % 50 == 49;
          } else {
            REQUIRE_MESSAGE(word == "folded", line);
            CHECK(seq == last_known());  // a fold commits nothing
            kept_from = seq;
            fold_unconfirmed = false;
            ++folds;
          }
        };
        for (int acked = 0; acked < wanted;) {
          auto line = w.read_line(30s);
          REQUIRE(line);
          take(*line);
          acked += line->rfind("ack ", 0) == 0;
        }
        w.kill(keel::test::kill_signal);  // somewhere in a later round: its write, sync, watch or print
        CHECK(w.wait() == 128 + keel::test::kill_signal);
        while (auto line = w.read_line(5s)) take(*line);  // printed before it died: synced
      }
      if (fold_unconfirmed) kept_from = last_known();  // that fold may have run
      auto s = open_persisted(file);
      CHECK(s.last_seq() >= last_known());
      // After the last printed seq: at most the round in flight, there iff its keys are.
      const auto tail = keel::test::resume_from(s, last_known());
      REQUIRE_MESSAGE(tail.other_error.empty(), tail.other_error);
      CHECK_FALSE(tail.expired_resume_after);
      REQUIRE(tail.commits.size() <= 1);
      const long next_round = last_round + 1;
      const std::string next_key = prefix + "/" + std::to_string(next_round) + (next_round % 3 == 0 ? "/0" : "");
      const bool landed = s.get(next_key).value().has_value();
      CHECK(landed == (tail.commits.size() == 1));
      if (!tail.commits.empty()) {
        CHECK(tail.commits[0] == round_commit(prefix, next_round, tail.commits[0].seq));
        CHECK(tail.commits[0].seq > last_known());
        known.push_back(tail.commits[0]);
        ++in_flight;
      }
      // After 0, after each of up to 30 known seqs and the last: the known
      // commits after it, or snapshot_expired before the last fold.
      std::vector<std::uint64_t> points{0};
      const std::size_t step = std::max<std::size_t>(1, known.size() / 30);
      for (std::size_t i = 0; i < known.size(); i += step) points.push_back(known[i].seq);
      points.push_back(last_known());
      for (const std::uint64_t p : points) {
        expired += keel::test::check_resume(s, known, p, kept_from);
        ++resumes;
      }
      // A commit of this process: above everything printed.
      REQUIRE(s.put(prefix + "/after", "reopen"));
      const auto mine = keel::test::resume_from(s, last_known());
      REQUIRE(mine.commits.size() == 1);
      CHECK(mine.commits[0].seq > last_known());
      CHECK(mine.commits[0].changes == std::vector<std::string>{"[] " + prefix + "/after = reopen"});
      known.push_back(mine.commits[0]);
      REQUIRE(s.close());
    }
    MESSAGE("watch memory crash: " << known.size() << " commits known, " << resumes << " resumes checked (" << expired
                                   << " snapshot_expired before a fold), " << folds << " folds, " << in_flight
                                   << " unprinted commits found");
    CHECK(resumes > 0);
  }
}
