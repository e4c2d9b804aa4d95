// Concurrency: readers, writers, snapshot holders and a closer racing on one
// store, on every backend (and through any_store). No crash, no torn batch,
// every error is errc::closed, and once close() has returned every call gives
// errc::closed. Built to run under ThreadSanitizer (.ci/run: the memory cases
// run under TSan; see the comment there for RocksDB).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/backends.hpp"
#include "support/scale.hpp"

using keel::errc;
using keel::key_range;
using keel::write_batch;
using keel::test::open_or_fail;

namespace {

constexpr int batch_keys = 16;
std::string bkey(int i) { return "b/" + std::to_string(100 + i); }

struct race_result {
  long ops = 0;
  long closed_seen = 0;
};

template <class Backend>
race_result race_once(Backend& backend, long ops_before_close) {
  auto store = open_or_fail(backend);
  {
    write_batch b;
    for (int i = 0; i < batch_keys; ++i) b.put(bkey(i), "0");
    REQUIRE(store.write(b));
  }
  std::atomic<long> ops{0}, closed_seen{0}, torn{0}, bad_error{0}, worked_after_close{0};
  std::atomic<bool> close_returned{false};
  std::atomic<int> started{0};

  // Classifies one result: ok, closed, or a failure of the test. `after` is
  // whether close() had returned before the call began.
  auto account = [&](bool ok, const keel::error* e, bool after) {
    ops.fetch_add(1, std::memory_order_relaxed);
    if (ok) {
      if (after) worked_after_close++;
      return true;
    }
    if (e->code() == errc::closed) {
      closed_seen++;
      return false;
    }
    bad_error++;
    return true;  // keep going: the count fails the test
  };

  auto writer = [&](int id) {
    started++;
    for (long round = 1;; ++round) {
      const bool after = close_returned.load();
      write_batch b;
      const std::string v = std::to_string(id) + "." + std::to_string(round);
      for (int i = 0; i < batch_keys; ++i) b.put(bkey(i), v);
      auto r = store.write(b);
      if (!account(r.has_value(), r ? nullptr : &r.error(), after)) return;
      const bool after2 = close_returned.load();
      auto p = round % 2 ? store.put("w/" + std::to_string(id) + "/" + std::to_string(round % 50), v)
                         : store.erase("w/" + std::to_string(id) + "/" + std::to_string(round % 50));
      if (!account(p.has_value(), p ? nullptr : &p.error(), after2)) return;
    }
  };

  // A batch is whole: every b/ key has one value.
  auto check_scan = [&](auto&& cursor) {
    std::string first;
    int n = 0;
    for (const auto& e : cursor) {
      if (e.key.substr(0, 2) != "b/") continue;
      if (n++ == 0) first = std::string(e.value);
      if (e.value != first) torn++;
    }
    if (!cursor.error() && n != batch_keys) torn++;  // a full pass sees every key
    return cursor.error();
  };

  auto reader = [&] {
    started++;
    for (int i = 0;; ++i) {
      const bool after = close_returned.load();
      if (i % 2) {
        auto c = store.scan(i % 4 == 1 ? key_range::prefix("b/") : key_range::prefix("b/").reversed());
        auto err = check_scan(c);
        if (!account(!err, err ? &*err : nullptr, after)) return;
      } else {
        auto g = store.get(bkey(i % batch_keys));
        if (!account(g.has_value(), g ? nullptr : &g.error(), after)) return;
        if (g && !g->has_value()) torn++;
        auto c = store.contains(bkey(0));
        if (!account(c.has_value(), c ? nullptr : &c.error(), after)) return;
      }
    }
  };

  // Holds snapshots (and cursors over them) across writes and across close.
  auto snapshot_holder = [&] {
    started++;
    std::vector<typename decltype(store)::snapshot_type> held;
    for (int i = 0;; ++i) {
      const bool after = close_returned.load();
      auto s = store.snapshot();
      if (!s.valid()) {
        auto g = s.get(bkey(0));
        account(false, &g.error(), after);
        break;
      }
      if (after) worked_after_close++;
      std::string first;
      bool stop = false;
      for (int k = 0; k < batch_keys; ++k) {
        auto g = s.get(bkey(k));
        if (!account(g.has_value(), g ? nullptr : &g.error(), after)) {
          stop = true;
          break;
        }
        if (!g->has_value()) {
          torn++;
          continue;
        }
        if (k == 0) first = **g;
        if (**g != first) torn++;  // a snapshot never shows half a batch
      }
      if (stop) break;
      auto err = check_scan(s.scan(key_range::prefix("b/")));
      if (!account(!err, err ? &*err : nullptr, after)) break;
      held.push_back(std::move(s));
      if (held.size() > 3) held.erase(held.begin());
    }
    // After close every held snapshot says closed.
    for (auto& s : held) {
      auto g = s.get(bkey(0));
      if (g || g.error().code() != errc::closed) bad_error++;
      auto c = s.scan();
      for (const auto& e : c) (void)e;
      if (!c.error() || c.error()->code() != errc::closed) bad_error++;
    }
  };

  auto closer = [&] {
    started++;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (ops.load(std::memory_order_relaxed) < ops_before_close && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    auto r = store.close();
    CHECK_MESSAGE(r.has_value(), (r ? std::string() : r.error().message()));
    close_returned = true;
    auto again = store.close();  // idempotent, also under the race
    CHECK(again.has_value());
  };

  std::vector<std::thread> pool;
  pool.emplace_back(writer, 1);
  pool.emplace_back(writer, 2);
  pool.emplace_back(reader);
  pool.emplace_back(reader);
  pool.emplace_back(snapshot_holder);
  pool.emplace_back(closer);
  for (auto& t : pool) t.join();

  CHECK(torn.load() == 0);
  CHECK(bad_error.load() == 0);
  CHECK(worked_after_close.load() == 0);
  CHECK_FALSE(store.is_open());
  CHECK(store.put("x", "y").error() == errc::closed);
  CHECK(closed_seen.load() >= 5);  // every worker stopped on closed
  return {ops.load(), closed_seen.load()};
}

template <class Backend>
void race(int rounds) {
  Backend backend;
  long total = 0;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    // Close at a different moment each round.
    total += race_once(backend, 200 + 300L * (round % 7)).ops;
  }
  MESSAGE("race (" << std::string(Backend::name) << "): " << rounds << " rounds, " << total << " operations");
}

}  // namespace

TEST_SUITE("race") {
  TEST_CASE("race with a closer: memory") { race<keel::test::memory_backend>(static_cast<int>(keel::test::scaled("KEEL_RACE_ROUNDS", 20))); }
  TEST_CASE("race with a closer: any_store(memory)") { race<keel::test::any_memory_backend>(static_cast<int>(keel::test::scaled("KEEL_RACE_ROUNDS", 20))); }
  TEST_CASE("race with a closer: rocksdb") { race<keel::test::rocks_default_backend>(static_cast<int>(keel::test::scaled("KEEL_RACE_ROUNDS", 20))); }
  TEST_CASE("race with a closer: any_store(rocksdb)") { race<keel::test::any_rocks_backend>(static_cast<int>(keel::test::scaled("KEEL_RACE_ROUNDS", 20))); }
}
