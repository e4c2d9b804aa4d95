// Watch on the hybrid store (issue 28; hybrid/watch.hpp): one seq across the
// move to RocksDB, with no gap and no repeat; watches made before the move
// keep delivering after it; resume after S across the move and after a
// reopen; batches, transactions and erase_range in either tier; keyspace
// watches and drops. The common watch semantics are the conformance suite's
// (tests/watch_test.cpp).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <keel/hybrid.hpp>
#include <keel/open_store.hpp>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/scale.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using keel::change;
using keel::errc;
using keel::hybrid_options;
using keel::hybrid_store;
using keel::key_range;
using keel::test::temp_dir;
using tier = keel::HybridPolicy<>::tier;

namespace {

hybrid_options no_auto_move(const fs::path& path) {
  hybrid_options o;
  o.path = path;
  o.spill_bytes = std::numeric_limits<std::size_t>::max();
  return o;
}

// Reads `w` until it gave `n` changes, or fails the case after 20 s without
// one (an error from next() fails it at once).
template <class Watch>
std::vector<change> read_n(Watch& w, std::size_t n) {
  std::vector<change> out;
  auto last_progress = std::chrono::steady_clock::now();
  while (out.size() < n) {
    auto c = w.next(200ms);
    REQUIRE_MESSAGE(c, c.error().message());
    if (*c) {
      out.push_back(std::move(**c));
      last_progress = std::chrono::steady_clock::now();
    } else {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() - last_progress < 20s,
                      "no change for 20 s after " << out.size() << " of " << n);
    }
  }
  return out;
}

// What `w` has now, up to a quiet `quiet` (for "nothing more" checks).
template <class Watch>
std::vector<change> read_rest(Watch& w, std::chrono::milliseconds quiet = 100ms) {
  std::vector<change> out;
  for (;;) {
    auto c = w.next(quiet);
    REQUIRE_MESSAGE(c, c.error().message());
    if (!*c) return out;
    out.push_back(std::move(**c));
  }
}

// The move's hook (plain function pointer: global state): once the memory
// snapshot is copied, wait until the writers made 100 more writes (or all
// wait for the move).
struct {
  std::atomic<int>* done = nullptr;
  std::atomic<int>* parked = nullptr;
  int writers = 0;
  int seen = -1;                   // writes done when the hook was reached
  std::atomic<bool> copied{false};  // the hook was reached
} hook_state;
void wait_for_writes(keel::detail::hybrid_move_step step) {
  if (step != keel::detail::hybrid_move_step::copied || hook_state.done == nullptr) return;
  hook_state.seen = hook_state.done->load();
  hook_state.copied = true;
  while (hook_state.done->load() < hook_state.seen + 100 && hook_state.parked->load() < hook_state.writers)
    std::this_thread::yield();
}
class move_hook {
 public:
  explicit move_hook(void (*f)(keel::detail::hybrid_move_step)) { keel::detail::hybrid_move_hook().store(f); }
  ~move_hook() {
    keel::detail::hybrid_move_hook().store(nullptr);
    hook_state.done = hook_state.parked = nullptr;
    hook_state.writers = 0;
    hook_state.seen = -1;
    hook_state.copied = false;
  }
  move_hook(const move_hook&) = delete;
  move_hook& operator=(const move_hook&) = delete;
};

change put_change(std::uint64_t seq, std::string key, std::string value, std::string ks = "") {
  return change{seq, std::move(ks), std::move(key), std::move(value)};
}

}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("hybrid watch: a watch running while the store moves gets every change once, in order, seqs only growing") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    auto w = s->watch();  // from now (a memory store keeps no history before its first watch)
    REQUIRE_MESSAGE(w, w.error().message());
    REQUIRE(s->put("before", "0"));
    auto prefixed = s->watch(key_range::prefix("w1/"));
    REQUIRE(prefixed);

    // Two writers (distinct keys) write 100 each, wait for the move to have
    // copied its snapshot (its hook then waits for 100 more writes), write
    // until the move is done (at most `cap` each), then `after_move` more
    // each. A reader reads `w` meanwhile.
    constexpr int writers = 2;
    const int cap = static_cast<int>(keel::test::scaled("KEEL_TEST_WATCH_HYBRID_WRITES", 20000));
    constexpr int after_move = 200;
    std::atomic<bool> moved{false}, written_all{false};
    std::atomic<int> writes_done{0}, parked{0}, write_errors{0};
    std::vector<int> written(writers, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
      threads.emplace_back([&, t] {
        auto put = [&](int i) {
          if (!s->put("w" + std::to_string(t) + "/" + std::to_string(i), std::to_string(i))) ++write_errors;
          written[static_cast<std::size_t>(t)] = i + 1;
          writes_done.fetch_add(1);
        };
        int i = 0;
        for (; i < 100; ++i) put(i);
        while (!hook_state.copied.load()) std::this_thread::yield();
        for (; i < cap && !moved.load(); ++i) put(i);
        parked.fetch_add(1);
        while (!moved.load()) std::this_thread::yield();
        for (const int end = i + after_move; i < end; ++i) put(i);
      });
    }
    std::vector<change> got;
    std::optional<keel::error> read_error;
    std::thread reader([&] {
      for (;;) {
        auto c = w->next(50ms);
        if (!c) {
          read_error = c.error();
          return;
        }
        if (*c)
          got.push_back(std::move(**c));
        else if (written_all.load())
          return;  // every write returned before this wait began: nothing more
      }
    });
    while (writes_done.load() < 200) std::this_thread::yield();  // the move starts among writes
    hook_state.done = &writes_done;
    hook_state.parked = &parked;
    hook_state.writers = writers;
    move_hook hook(&wait_for_writes);
    auto m = s->policy().move_to_large();
    hook_state.copied = true;  // also when the move failed before it
    const int during = writes_done.load() - hook_state.seen;
    moved = true;
    for (auto& t : threads) t.join();
    written_all = true;
    reader.join();
    REQUIRE_MESSAGE(m, m.error().message());
    REQUIRE(write_errors.load() == 0);
    REQUIRE_MESSAGE(!read_error, read_error->message());
    REQUIRE(s->policy().current_tier() == tier::large);
    MESSAGE("hybrid watch across the move: " << writes_done.load() << " writes, " << during
                                             << " of them while the move ran, after its snapshot was copied");
    CHECK(during >= 100);

    CHECK(read_rest(*w, 50ms).empty());  // nothing twice
    REQUIRE(got.size() == 1 + static_cast<std::size_t>(written[0] + written[1]));
    CHECK(got.front() == put_change(got.front().seq, "before", "0"));
    std::vector<int> next_of(writers, 0);
    std::uint64_t prev = 0;
    for (const auto& c : got) {
      REQUIRE(c.seq > prev);  // one change per commit: strictly growing
      prev = c.seq;
      if (c.key == "before") continue;
      const auto t = static_cast<std::size_t>(c.key[1] - '0');
      REQUIRE(c.key == "w" + std::to_string(t) + "/" + std::to_string(next_of[t]));  // each writer's, in its order
      REQUIRE(c.value == std::to_string(next_of[t]));
      ++next_of[t];
    }
    CHECK(next_of == written);
    CHECK(s->last_seq() == got.back().seq);

    // The watch of w1/ made before the move: w1's changes only, the same seqs.
    auto w1 = read_n(*prefixed, static_cast<std::size_t>(written[1]));
    std::size_t j = 0;
    for (const auto& c : got)
      if (c.key.rfind("w1/", 0) == 0) CHECK(w1[j++] == c);

    // A later write comes after the last one, to both.
    REQUIRE(s->put("after", "1"));
    auto a = read_n(*w, 1);
    CHECK(a[0].key == "after");
    CHECK(a[0].seq > got.back().seq);
    CHECK(s->last_seq() == a[0].seq);
  }

  TEST_CASE("hybrid watch: resume after any S across the move, and after a reopen in RocksDB; seq continues") {
    temp_dir tmp;
    const auto path = tmp.path() / "h";
    std::vector<change> all;  // every change, in order, with its seq
    std::uint64_t m = 0;      // last seq in the memory tier
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      auto w = s->watch();
      REQUIRE(w);
      for (int i = 0; i < 20; ++i) REQUIRE(s->put("k" + std::to_string(i), "m" + std::to_string(i)));
      REQUIRE(s->erase("k3"));
      m = s->last_seq();
      REQUIRE(s->policy().move_to_large());
      CHECK(s->last_seq() == m);  // the move itself is no change
      for (int i = 0; i < 20; ++i) REQUIRE(s->put("r" + std::to_string(i), "v" + std::to_string(i)));
      REQUIRE(s->erase("k4"));
      all = read_n(*w, 42);
      CHECK(read_rest(*w, 50ms).empty());
      CHECK(all[20] == change{m, "", "k3", std::nullopt});
      CHECK(all[21].seq > m);  // the first write in RocksDB comes after M
      CHECK(all.back() == change{s->last_seq(), "", "k4", std::nullopt});

      // In this process the memory tier's history is still there: after any S.
      for (std::size_t i = 0; i < all.size(); ++i) {
        CAPTURE(i);
        auto r = s->watch(key_range::all(), {.after = all[i].seq});
        REQUIRE_MESSAGE(r, r.error().message());
        auto rest = read_n(*r, all.size() - i - 1);
        CHECK(std::equal(rest.begin(), rest.end(), all.begin() + static_cast<long>(i) + 1));
        CHECK(read_rest(*r, 10ms).empty());
      }
      auto beyond = s->watch(key_range::all(), {.after = s->last_seq() + 1});
      REQUIRE_FALSE(beyond);
      CHECK(beyond.error() == errc::invalid_argument);
      REQUIRE(s->close());
    }
    auto s = hybrid_store::open(no_auto_move(path));
    REQUIRE(s);
    REQUIRE(s->policy().current_tier() == tier::large);
    CHECK(s->last_seq() == all.back().seq);  // SEQ_BASE read again
    // After S >= M: from RocksDB's WAL, the same changes with the same seqs.
    for (std::size_t i = 20; i < all.size(); ++i) {
      CAPTURE(i);
      auto r = s->watch(key_range::all(), {.after = all[i].seq});
      REQUIRE_MESSAGE(r, r.error().message());
      auto rest = read_n(*r, all.size() - i - 1);
      CHECK(std::equal(rest.begin(), rest.end(), all.begin() + static_cast<long>(i) + 1));
      CHECK(read_rest(*r, 10ms).empty());
    }
    // After S < M: the memory tier's history went with it.
    auto old = s->watch(key_range::all(), {.after = all[5].seq});
    REQUIRE_FALSE(old);
    CHECK(old.error() == errc::snapshot_expired);
    CHECK(old.error().message().find("after >= " + std::to_string(m)) != std::string::npos);
    // New writes continue the seq.
    auto w = s->watch(key_range::all(), {.after = all.back().seq});
    REQUIRE(w);
    REQUIRE(s->put("x", "1"));
    auto x = read_n(*w, 1);
    CHECK(x[0].key == "x");
    CHECK(x[0].seq > all.back().seq);
    CHECK(s->last_seq() == x[0].seq);
  }

  TEST_CASE("hybrid watch: a batch and a transaction are consecutive changes with one seq, erase_range one per key, in either tier") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    auto w = s->watch();
    REQUIRE(w);
    std::uint64_t last_in_memory = 0;
    for (const tier t : {tier::small, tier::large}) {
      CAPTURE(static_cast<int>(t));
      if (t == tier::large) last_in_memory = s->last_seq();
      if (t == tier::large) REQUIRE(s->policy().move_to_large());
      REQUIRE(s->policy().current_tier() == t);
      const std::string p = t == tier::small ? "m/" : "r/";
      keel::write_batch b;
      b.put(p + "a", "1");
      b.put(p + "b", "2");
      b.put(p + "c", "3");
      b.erase(p + "a");
      REQUIRE(s->write(b));
      auto tx = s->transaction();
      REQUIRE(tx.put(p + "d", "4"));
      REQUIRE(tx.erase(p + "b"));
      REQUIRE(tx.commit());  // its writes in key order
      REQUIRE(s->erase_range(key_range::prefix(p)));  // removes c and d
      auto got = read_n(*w, 8);
      CHECK(read_rest(*w, 50ms).empty());
      const std::uint64_t b_seq = got[0].seq, tx_seq = got[4].seq, er_seq = got[6].seq;
      if (t == tier::large) CHECK(got[0].seq > last_in_memory);
      CHECK(b_seq < tx_seq);
      CHECK(tx_seq < er_seq);
      CHECK(got == std::vector<change>{put_change(b_seq, p + "a", "1"), put_change(b_seq, p + "b", "2"),
                                       put_change(b_seq, p + "c", "3"), change{b_seq, "", p + "a", std::nullopt},
                                       change{tx_seq, "", p + "b", std::nullopt}, put_change(tx_seq, p + "d", "4"),
                                       change{er_seq, "", p + "c", std::nullopt}, change{er_seq, "", p + "d", std::nullopt}});
    }
  }

  TEST_CASE("hybrid watch: keyspace watches across the move carry their name; a drop ends them with not_found") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    auto orders = s->keyspace("orders");
    auto early = s->keyspace("early");
    REQUIRE(orders);
    REQUIRE(early);
    auto wo = orders->watch();
    auto we = early->watch();
    REQUIRE_MESSAGE(wo, wo.error().message());
    REQUIRE(we);
    REQUIRE(orders->put("o1", "a"));
    REQUIRE(s->put("o1", "default"));  // the default keyspace: not in the orders watch
    REQUIRE(early->put("e1", "x"));
    REQUIRE(s->drop_keyspace("early"));  // in the memory tier
    REQUIRE(s->policy().move_to_large());
    REQUIRE(orders->put("o2", "b"));
    auto late = s->keyspace("late");  // made in RocksDB
    REQUIRE(late);
    auto wl = late->watch();
    REQUIRE(wl);
    REQUIRE(late->put("l1", "y"));

    auto o = read_n(*wo, 2);
    CHECK(o[0] == put_change(o[0].seq, "o1", "a", "orders"));
    CHECK(o[1] == put_change(o[1].seq, "o2", "b", "orders"));
    CHECK(read_rest(*wo, 50ms).empty());
    auto e = read_n(*we, 1);
    CHECK(e[0] == put_change(e[0].seq, "e1", "x", "early"));
    auto ended = we->next(1s);
    REQUIRE_FALSE(ended);
    CHECK(ended.error() == errc::not_found);
    CHECK(read_n(*wl, 1)[0] == put_change(s->last_seq(), "l1", "y", "late"));

    REQUIRE(s->drop_keyspace("orders"));  // in RocksDB: the watch made in memory ends too
    auto gone = wo->next(1s);
    REQUIRE_FALSE(gone);
    CHECK(gone.error() == errc::not_found);
    CHECK(wo->next(0ms).error() == errc::not_found);  // sticky
  }

  TEST_CASE("hybrid watch: close while a watch waits, in either tier, gives closed") {
    for (const bool move : {false, true}) {
      CAPTURE(move);
      temp_dir tmp;
      auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
      REQUIRE(s);
      auto w = s->watch();
      REQUIRE(w);
      if (move) REQUIRE(s->policy().move_to_large());
      std::atomic<bool> waiting{false};
      std::optional<keel::result<std::optional<change>>> result;
      std::thread reader([&] {
        waiting = true;
        auto c = w->next(30s);
        while (c && !*c) c = w->next(30s);
        result.emplace(std::move(c));
      });
      while (!waiting.load()) std::this_thread::yield();
      REQUIRE(s->close());
      reader.join();
      REQUIRE(result);
      REQUIRE_FALSE(*result);
      CHECK(result->error() == errc::closed);
      CHECK(s->watch().error() == errc::closed);
    }
  }

  TEST_CASE("hybrid watch through a basic_any_store that holds HybridPolicy: across the move, keyspaces too") {
    temp_dir tmp;
    using hybrid_any = keel::basic_any_store<keel::RocksPolicy<keel::NativeTuning>, keel::MemoryPolicy, keel::HybridPolicy<>>;
    keel::store_config c;
    c.preferred = keel::backend::hybrid;
    c.path = tmp.path() / "h";
    auto s = keel::open_store<hybrid_any>(c);
    REQUIRE_MESSAGE(s, s.error().message());
    REQUIRE(s->has_watch());
    auto w = s->watch(key_range::prefix("k"));
    REQUIRE_MESSAGE(w, w.error().message());
    auto ks = s->keyspace("users");
    REQUIRE(ks);
    auto kw = ks->watch();
    REQUIRE_MESSAGE(kw, kw.error().message());
    REQUIRE(s->put("k1", "memory"));
    REQUIRE(ks->put("u1", "memory"));
    auto* h = s->get_if<keel::HybridPolicy<>>();
    REQUIRE(h != nullptr);
    REQUIRE(h->policy().move_to_large());
    REQUIRE(s->put("k2", "rocksdb"));
    REQUIRE(ks->put("u2", "rocksdb"));
    auto got = read_n(*w, 2);
    CHECK(got[0] == put_change(got[0].seq, "k1", "memory"));
    CHECK(got[1] == put_change(got[1].seq, "k2", "rocksdb"));
    CHECK(got[1].seq > got[0].seq);
    auto users = read_n(*kw, 2);
    CHECK(users[0] == put_change(users[0].seq, "u1", "memory", "users"));
    CHECK(users[1] == put_change(users[1].seq, "u2", "rocksdb", "users"));
    CHECK(s->last_seq() == users[1].seq);
    CHECK(w->get_if<keel::HybridPolicy<>>() != nullptr);
  }

  TEST_CASE("hybrid watch: SEQ_BASE: a checkpoint in RocksDB keeps the seq; one that says something else is corruption") {
    temp_dir tmp;
    const auto path = tmp.path() / "h";
    std::uint64_t last = 0, m = 0;
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      auto w = s->watch();
      REQUIRE(w);
      for (int i = 0; i < 50; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
      m = read_n(*w, 50).back().seq;
      REQUIRE(s->policy().move_to_large());
      REQUIRE(s->put("r", "1"));
      last = s->last_seq();
      CHECK(last > m);
      REQUIRE(s->checkpoint(tmp.path() / "copy"));
      REQUIRE(s->close());
    }
    {
      auto copy = hybrid_store::open(no_auto_move(tmp.path() / "copy"));
      REQUIRE_MESSAGE(copy, copy.error().message());
      CHECK(copy->policy().current_tier() == tier::large);
      CHECK(copy->last_seq() == last);
    }
    const std::string kept = [&] {
      std::ifstream in(path / "SEQ_BASE");
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    CHECK(kept.rfind(std::to_string(m) + " ", 0) == 0);  // "M R": M, the memory tier's last seq
    for (const std::string bad : {"", "12", "x 3\n", "1 2 3\n", "99999999999999999999 1\n"}) {
      CAPTURE(bad);
      std::ofstream(path / "SEQ_BASE", std::ios::trunc) << bad;
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE_FALSE(s);
      CHECK(s.error() == errc::corruption);
      CHECK(s.error().message().find("SEQ_BASE") != std::string::npos);
    }
    std::ofstream(path / "SEQ_BASE", std::ios::trunc) << kept;
    auto s = hybrid_store::open(no_auto_move(path));
    REQUIRE_MESSAGE(s, s.error().message());
    CHECK(s->last_seq() == last);
    CHECK(s->get("r")->value() == "1");
  }
}
