// The hybrid store's own behaviour (the conformance suite runs every common
// case on it too, kept in memory and moving while the case runs): the online
// move, the layout a crash at each step of it leaves, the lock, transactions
// across a move.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <keel/hybrid.hpp>
#include <keel/open_store.hpp>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/fake_clock.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using keel::errc;
using keel::hybrid_options;
using keel::hybrid_store;
using keel::key_range;
using keel::detail::hybrid_move_step;
using keel::test::child_process;
using keel::test::contains;
using keel::test::helper_path;
using keel::test::temp_dir;
using tier = keel::HybridPolicy<>::tier;

namespace {

hybrid_options no_auto_move(const fs::path& path) {
  hybrid_options o;
  o.path = path;
  o.spill_bytes = std::numeric_limits<std::size_t>::max();
  return o;
}

// Files in PATH/memory other than the memory tier's lock file.
bool memory_files_left(const fs::path& path) {
  for (const auto& e : fs::directory_iterator(path / "memory"))
    if (e.path().filename() != "store.lock") return true;
  return false;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

// Runs a hook at one step of the moves in this process, for one test case.
class move_hook {
 public:
  explicit move_hook(void (*f)(hybrid_move_step)) { keel::detail::hybrid_move_hook().store(f); }
  ~move_hook() { keel::detail::hybrid_move_hook().store(nullptr); }
  move_hook(const move_hook&) = delete;
  move_hook& operator=(const move_hook&) = delete;
};

// A latch the hooks signal (hooks are plain function pointers: state is global).
struct step_signal {
  std::mutex m;
  std::condition_variable cv;
  bool reached = false, released = false;
};
step_signal* current_signal = nullptr;

}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("a move is online: writers and readers go on, snapshots and cursors keep their version, nothing is lost") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    constexpr int preload = 5000;
    for (int i = 0; i < preload; i += 500) {
      keel::write_batch b;
      for (int j = i; j < i + 500; ++j) b.put("pre/" + std::to_string(j), "v1");
      REQUIRE(s->write(b));
    }
    CHECK(s->stats()->tier == "memory");
    auto before = s->snapshot();
    auto cursor = s->scan(key_range::prefix("pre/"));
    int cursor_seen = 0;
    for (; cursor_seen < 10 && cursor.valid(); ++cursor_seen) cursor.advance();

    std::atomic<bool> moved{false};
    std::atomic<int> read_errors{0}, missing{0}, write_errors{0};
    constexpr int writers = 2, per_writer_min = 3000;
    std::vector<std::map<std::string, std::string>> acked(writers);
    std::vector<std::thread> threads;
    std::atomic<int> writes_done{0};
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < per_writer_min || !moved.load(); ++i) {
          // New keys, and overwrites of the preloaded ones.
          const std::string key = i % 2 ? "w" + std::to_string(w) + "/" + std::to_string(i)
                                        : "pre/" + std::to_string((i * 7 + w) % preload);
          const std::string value = "v2-" + std::to_string(w) + "-" + std::to_string(i);
          if (s->put(key, value))
            acked[w][key] = value;
          else
            ++write_errors;
          writes_done.fetch_add(1);
        }
      });
    }
    threads.emplace_back([&] {
      std::mt19937 rng(5);
      while (!moved.load()) {
        auto v = s->get("pre/" + std::to_string(rng() % preload));
        if (!v)
          ++read_errors;
        else if (!*v)
          ++missing;
      }
    });
    while (writes_done.load() < 200) std::this_thread::yield();  // the move starts among writes
    auto m = s->policy().move_to_large();
    moved = true;
    for (auto& t : threads) t.join();
    REQUIRE_MESSAGE(m, m.error().message());
    CHECK(read_errors.load() == 0);
    CHECK(write_errors.load() == 0);
    CHECK(missing.load() == 0);
    CHECK(s->policy().current_tier() == tier::large);
    CHECK(s->stats()->tier == "rocksdb");

    // Every acknowledged write, with its last value (keys written by one writer only
    // hold that writer's last value; preloaded keys overwritten by both: either's).
    int checked = 0;
    for (int w = 0; w < writers; ++w) {
      for (const auto& [k, v] : acked[w]) {
        auto got = s->get(k);
        REQUIRE(got);
        REQUIRE(got->has_value());
        if (k.rfind("w", 0) == 0) CHECK(**got == v);
        ++checked;
      }
    }
    CHECK(checked > 0);
    // The snapshot and the cursor taken before the move read their version.
    int in_snapshot = 0;
    for (const auto& e : before.scan(key_range::prefix("pre/"))) {
      CHECK(e.value == "v1");
      ++in_snapshot;
    }
    CHECK(in_snapshot == preload);
    CHECK_FALSE(before.get("w0/1")->has_value());
    for (; cursor.valid(); cursor.advance()) {
      CHECK(cursor.current().value == "v1");
      ++cursor_seen;
    }
    CHECK_FALSE(cursor.error());
    CHECK(cursor_seen == preload);
    // The memory tier's files are gone; RocksDB holds the data; close, reopen at once.
    CHECK_FALSE(memory_files_left(tmp.path() / "h"));
    REQUIRE(s->close());
    CHECK(before.get("pre/1").error() == errc::closed);
    auto again = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(again);
    CHECK(again->stats()->tier == "rocksdb");
    CHECK(again->policy().current_tier() == tier::large);
    int n = 0;
    for (const auto& e : again->scan()) {
      (void)e;
      ++n;
    }
    std::size_t new_keys = 0;
    for (const auto& per_writer : acked)
      for (const auto& kv : per_writer) new_keys += kv.first.rfind("w", 0) == 0;
    CHECK(static_cast<std::size_t>(n) == preload + new_keys);
    CHECK(again->get("w1/1")->value() == acked[1]["w1/1"]);
  }

  TEST_CASE("the store moves by itself past spill_bytes, and stays in RocksDB") {
    temp_dir tmp;
    static step_signal done;
    done.reached = false;
    current_signal = &done;
    move_hook hook([](hybrid_move_step step) {
      if (step != hybrid_move_step::released) return;
      std::lock_guard l(current_signal->m);
      current_signal->reached = true;
      current_signal->cv.notify_all();
    });
    hybrid_options o;
    o.path = tmp.path() / "h";
    o.spill_bytes = 64 << 10;
    auto s = hybrid_store::open(o);
    REQUIRE(s);
    CHECK(s->stats()->tier == "memory");
    for (int i = 0; i < 2000; ++i) REQUIRE(s->put("k" + std::to_string(i), std::string(100, 'x')));
    {
      std::unique_lock l(done.m);
      REQUIRE(done.cv.wait_for(l, 60s, [] { return done.reached; }));
    }
    CHECK(s->stats()->tier == "rocksdb");
    CHECK_FALSE(s->policy().last_move_error());
    for (int i = 0; i < 2000; i += 97) CHECK(s->get("k" + std::to_string(i))->value() == std::string(100, 'x'));
    REQUIRE(s->close());
    // Reopened with a larger spill_bytes: it never moves back.
    o.spill_bytes = std::size_t{1} << 30;
    auto again = hybrid_store::open(o);
    REQUIRE(again);
    CHECK(again->stats()->tier == "rocksdb");
    CHECK(again->stats()->keys > 0);
  }

  TEST_CASE("close() during a move stops it; the path reopens at once, in memory, with every write") {
    temp_dir tmp;
    static step_signal sig;
    static std::atomic<keel::HybridPolicy<>*> store_closing{nullptr};
    sig.reached = sig.released = false;
    current_signal = &sig;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    store_closing = &s->policy();
    // The move holds after its bulk copy until close() has begun; it must
    // then stop before it commits.
    move_hook hook([](hybrid_move_step step) {
      if (step != hybrid_move_step::copied) return;
      {
        std::unique_lock l(current_signal->m);
        current_signal->reached = true;
        current_signal->cv.notify_all();
      }
      while (!store_closing.load()->closing()) std::this_thread::yield();
    });
    for (int i = 0; i < 3000; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
    keel::result<void> moved;
    std::thread mover([&] { moved = s->policy().move_to_large(); });
    {
      std::unique_lock l(sig.m);
      sig.cv.wait(l, [] { return sig.reached; });
    }
    REQUIRE(s->put("during", "the move"));
    keel::result<void> closed;
    std::thread closer([&] { closed = s->close(); });  // waits for the move to give up
    closer.join();
    mover.join();
    CHECK(closed);
    REQUIRE_FALSE(moved);
    CHECK(moved.error() == errc::closed);
    auto again = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(again);
    CHECK(again->stats()->tier == "memory");
    CHECK(again->stats()->keys == 3001);
    CHECK(again->get("during")->value() == "the move");
    CHECK_FALSE(fs::exists(tmp.path() / "h" / "rocksdb"));
  }

  TEST_CASE("transactions span a move: validated across it, conflicts found on either side") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    REQUIRE(s->put("a", "1"));
    REQUIRE(s->put("b", "1"));
    auto clean = s->transaction();      // reads a, nobody writes it
    auto before = s->transaction();     // reads b, written before the move
    auto after = s->transaction();      // reads a, written after the move
    CHECK(clean.get("a")->value() == "1");
    CHECK(before.get("b")->value() == "1");
    CHECK(after.get("a")->value() == "1");
    REQUIRE(clean.put("x", "clean"));
    REQUIRE(before.put("y", "before"));
    REQUIRE(after.put("z", "after"));
    REQUIRE(s->put("b", "2"));
    REQUIRE(s->policy().move_to_large());
    CHECK(s->stats()->tier == "rocksdb");
    // A view begun in memory still reads memory's version.
    CHECK(before.get("b")->value() == "1");
    auto committed = clean.commit();
    CHECK_MESSAGE(committed, (committed ? "" : committed.error().message()));
    CHECK(before.commit().error() == errc::conflict);
    REQUIRE(s->put("a", "2"));
    CHECK(after.commit().error() == errc::conflict);
    CHECK(s->get("x")->value() == "clean");
    CHECK_FALSE(s->get("y")->has_value());
    CHECK_FALSE(s->get("z")->has_value());
  }

  TEST_CASE("open repairs what an interrupted move left, and refuses a TIER it cannot read") {
    temp_dir tmp;
    const fs::path path = tmp.path() / "h";
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      REQUIRE(s->put("k", "memory"));
    }
    // A move that did not commit: rocksdb/ beside TIER = memory.
    fs::create_directories(path / "rocksdb");
    write_file(path / "rocksdb" / "000001.log", "partial");
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      CHECK(s->stats()->tier == "memory");
      CHECK(s->get("k")->value() == "memory");
      CHECK_FALSE(fs::exists(path / "rocksdb"));
      REQUIRE(s->policy().move_to_large());
    }
    // A move that committed but had not removed the memory tier's files.
    write_file(path / "memory" / "store", "stale");
    write_file(path / "memory" / "store.wal-000000000001", "stale");
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      CHECK(s->stats()->tier == "rocksdb");
      CHECK(s->get("k")->value() == "memory");
      CHECK_FALSE(memory_files_left(path));
      CHECK(fs::exists(path / "memory" / "store.lock"));
    }
    // TIER naming no tier, or RocksDB without its directory: corruption, nothing touched.
    write_file(path / "TIER", "disk\n");
    auto bad = hybrid_store::open(no_auto_move(path));
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == errc::corruption);
    CHECK(contains(bad.error().message(), "TIER"));
    CHECK(fs::exists(path / "rocksdb" / "CURRENT"));
    write_file(path / "TIER", "rocksdb\n");
    fs::rename(path / "rocksdb", tmp.path() / "elsewhere");
    auto lost = hybrid_store::open(no_auto_move(path));
    REQUIRE_FALSE(lost);
    CHECK(lost.error() == errc::corruption);
    CHECK(contains(lost.error().message(), "rocksdb"));
    CHECK_FALSE(fs::exists(path / "rocksdb"));
    CHECK_FALSE(hybrid_store::open(hybrid_options{}));
  }

  TEST_CASE("open_store opens a hybrid store into a basic_any_store that holds HybridPolicy, never falls back") {
    temp_dir tmp;
    using hybrid_any = keel::basic_any_store<keel::RocksPolicy<keel::NativeTuning>, keel::MemoryPolicy, keel::HybridPolicy<>>;
    keel::store_config c;
    c.preferred = keel::backend::hybrid;
    c.path = tmp.path() / "h";
    c.fallback_to_memory = true;
    std::vector<std::string> lines;
    c.log = [&](std::string_view l) { lines.emplace_back(l); };
    {
      auto s = keel::open_store<hybrid_any>(c);
      REQUIRE_MESSAGE(s, s.error().message());
      CHECK(s->backend() == keel::backend::hybrid);
      REQUIRE(s->put("k", "v"));
      CHECK(s->stats()->tier == "memory");
      REQUIRE(lines.size() == 1);
      CHECK(contains(lines[0], "hybrid"));
      // Held by this store: the second open fails, with no fallback to memory.
      auto twice = keel::open_store<hybrid_any>(c);
      REQUIRE_FALSE(twice);
      CHECK(twice.error() == errc::already_open_in_process);
      CHECK(contains(twice.error().message(), "no fallback"));
    }
    auto again = keel::open_store<hybrid_any>(c);
    REQUIRE(again);
    CHECK(again->get("k")->value() == "v");
    auto plain = keel::open_store<keel::any_store>(c);
    REQUIRE_FALSE(plain);
    CHECK(plain.error() == errc::invalid_argument);
  }

  TEST_CASE("checkpoint in each tier opens as a hybrid store") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    REQUIRE(s->put("k", "v"));
    REQUIRE(s->checkpoint(tmp.path() / "cp-memory"));
    REQUIRE(s->policy().move_to_large());
    REQUIRE(s->put("k2", "v2"));
    REQUIRE(s->checkpoint(tmp.path() / "cp-rocksdb"));
    REQUIRE(s->flush());
    auto m = hybrid_store::open(no_auto_move(tmp.path() / "cp-memory"));
    REQUIRE(m);
    CHECK(m->stats()->tier == "memory");
    CHECK(m->get("k")->value() == "v");
    CHECK_FALSE(m->get("k2")->has_value());
    auto r = hybrid_store::open(no_auto_move(tmp.path() / "cp-rocksdb"));
    REQUIRE(r);
    CHECK(r->stats()->tier == "rocksdb");
    CHECK(r->get("k2")->value() == "v2");
  }

  TEST_CASE("the tier gate: a pending exclusive request lets no new shared holder in") {
    keel::detail::writer_preferring_gate gate;
    gate.lock_shared();  // a call inside the gate
    std::atomic<bool> exclusive_held{false}, shared_saw_exclusive{false}, shared_in{false};
    std::thread exclusive([&] {
      gate.lock();  // waits for the holder above
      exclusive_held = true;
      gate.unlock();
    });
    // Once the request is pending, the gate refuses new shared holders (a
    // reader-preferring std::shared_mutex keeps letting them in).
    bool closed = false;
    for (const auto give_up = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < give_up;) {
      if (!gate.try_lock_shared()) {
        closed = true;
        break;
      }
      gate.unlock_shared();
      std::this_thread::yield();
    }
    CHECK(closed);
    CHECK_FALSE(exclusive_held.load());  // the first shared holder is still inside
    std::thread shared([&] {
      gate.lock_shared();  // gets in only after the exclusive holder left
      shared_saw_exclusive = exclusive_held.load();
      shared_in = true;
      gate.unlock_shared();
    });
    gate.unlock_shared();
    exclusive.join();
    shared.join();
    CHECK(exclusive_held.load());
    CHECK(shared_in.load());
    CHECK(shared_saw_exclusive.load());
    // Free again: both kinds get in.
    CHECK(gate.try_lock());
    CHECK_FALSE(gate.try_lock_shared());
    gate.unlock();
    CHECK(gate.try_lock_shared());
    CHECK_FALSE(gate.try_lock());
    gate.unlock_shared();
  }

  // Issue 24 (3): synced writers that never pause held the tier gate shared
  // without a gap (std::shared_mutex prefers readers on glibc), so the move
  // waited seconds for its exclusive steps. The gate now lets no new shared
  // holder in once the move asks for it; the move commits while they write.
  TEST_CASE("a move commits while synced writers write without pause") {
    temp_dir tmp;
    auto o = no_auto_move(tmp.path() / "h");
    o.sync_writes = true;
    auto s = hybrid_store::open(o);
    REQUIRE(s);
    for (int i = 0; i < 2000; ++i) REQUIRE(s->put("pre/" + std::to_string(i), "v"));
    // Writers stop at the move's commit or at the deadline, whichever comes
    // first: the move must come first, with a generous margin.
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    std::atomic<bool> moved{false};
    std::atomic<long> writes{0}, write_errors{0};
    constexpr int writers = 4;
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        for (long i = 0; !moved.load() && std::chrono::steady_clock::now() < give_up; ++i) {
          if (!s->put("w" + std::to_string(w) + "/" + std::to_string(i % 500), std::to_string(i))) ++write_errors;
          writes.fetch_add(1);
        }
      });
    }
    while (writes.load() < 200 * writers) std::this_thread::yield();  // every writer is in its loop
    const auto asked = std::chrono::steady_clock::now();
    auto m = s->policy().move_to_large();
    const auto took = std::chrono::steady_clock::now() - asked;
    const bool before_deadline = std::chrono::steady_clock::now() < give_up;
    moved = true;
    for (auto& t : threads) t.join();
    REQUIRE_MESSAGE(m, m.error().message());
    MESSAGE("move under " << writers << " synced writers took "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms ("
                          << writes.load() << " writes in all)");
    CHECK(before_deadline);
    CHECK(write_errors.load() == 0);
    CHECK(s->policy().current_tier() == tier::large);
  }

  // The same for transactions: their begin and commit take the write gate
  // exclusively, which synced writers held shared without a gap (no commit
  // within 100 s under 4 such writers before).
  TEST_CASE("a transaction commits while synced writers write without pause") {
    temp_dir tmp;
    auto o = no_auto_move(tmp.path() / "h");
    o.sync_writes = true;
    auto s = hybrid_store::open(o);
    REQUIRE(s);
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    std::atomic<bool> done{false};
    std::atomic<long> writes{0};
    constexpr int writers = 4;
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w] {
        for (long i = 0; !done.load() && std::chrono::steady_clock::now() < give_up; ++i) {
          (void)s->put("w" + std::to_string(w) + "/" + std::to_string(i % 100), "v");
          writes.fetch_add(1);
        }
      });
    }
    while (writes.load() < 200 * writers) std::this_thread::yield();
    const auto asked = std::chrono::steady_clock::now();
    auto tx = s->transaction();
    REQUIRE(tx.put("tx", "committed"));
    auto c = tx.commit();
    const auto took = std::chrono::steady_clock::now() - asked;
    const bool before_deadline = std::chrono::steady_clock::now() < give_up;
    done = true;
    for (auto& t : threads) t.join();
    REQUIRE_MESSAGE(c, c.error().message());
    MESSAGE("transaction under " << writers << " synced writers took "
                                 << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    CHECK(before_deadline);
    CHECK(s->get("tx")->value() == "committed");
  }

  TEST_CASE("one process per path, whichever tier: lock_held_by_other_process with the PID") {
    temp_dir tmp;
    const fs::path path = tmp.path() / "h";
    for (const bool moved : {false, true}) {
      CAPTURE(moved);
      if (moved) {
        auto s = hybrid_store::open(no_auto_move(path));
        REQUIRE(s);
        REQUIRE(s->policy().move_to_large());
      }
      {
        child_process holder(helper_path("hybrid_writer"), {"hold", path.string()});
        auto line = holder.read_line(30s);
        REQUIRE(line.has_value());
        REQUIRE(line->rfind("ready ", 0) == 0);
        auto s = hybrid_store::open(no_auto_move(path));
        REQUIRE_FALSE(s);
        CHECK(s.error() == errc::lock_held_by_other_process);
        CHECK(contains(s.error().message(), "process " + std::to_string(holder.pid())));
        CHECK(contains(s.error().message(), "keel.lock"));
        holder.close_stdin();
        CHECK(holder.wait() == 0);
      }
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      auto twice = hybrid_store::open(no_auto_move(path / "."));
      REQUIRE_FALSE(twice);
      CHECK(twice.error() == errc::already_open_in_process);
      child_process other(helper_path("hybrid_writer"), {"hold", path.string()});
      auto line = other.read_line(30s);
      REQUIRE(line.has_value());
      CHECK(line->rfind("error lock_held_by_other_process", 0) == 0);
      CHECK(contains(*line, "process " + std::to_string(::getpid())));
      CHECK(other.wait() == 1);
    }
  }
}

// Crashes during the move: the helper preloads 20,000 keys, then moves while
// it writes rounds (a 10-key batch or a put each), and dies at a step of the
// move (_exit from the move's hook) or at a random moment (SIGKILL). After
// each crash: one complete store opens, in the tier the commit point says;
// every acknowledged round is present, the round in flight is whole or
// absent, the preloaded keys are all there.
namespace {

struct crash_totals {
  int crashes = 0, in_memory = 0, in_rocksdb = 0, in_flight_present = 0, in_flight_absent = 0;
  long acked_checked = 0, lost = 0, torn = 0;
};

void crash_round(const fs::path& path, const std::string& step, bool sync, std::mt19937* kill_rng, crash_totals& t) {
  const std::string prefix = "p";
  long last_ack = -1;
  bool moved = false;
  {
    std::vector<std::string> args{"write", path.string(), prefix, step};
    if (sync) args.push_back("sync");
    child_process w(helper_path("hybrid_writer"), args);
    auto first = w.read_line(60s);
    REQUIRE(first.has_value());
    REQUIRE(*first == "loaded");
    if (kill_rng) {
      // A random moment after the move began.
      while (auto line = w.read_line(30s)) {
        // Acknowledgements may come before "moving" (the mover thread can
        // start late): they count like the later ones.
        if (line->rfind("ack ", 0) == 0) last_ack = std::stol(line->substr(4));
        if (*line == "moving") break;
        REQUIRE(line->rfind("error", 0) != 0);
      }
      std::this_thread::sleep_for(std::chrono::microseconds((*kill_rng)() % 300000));  // a random moment, not a sync
      w.kill(keel::test::kill_signal);
      CHECK(w.wait() == 128 + keel::test::kill_signal);
    }
    bool crashed = false;
    while (auto line = w.read_line(60s)) {
      if (line->rfind("ack ", 0) == 0) last_ack = std::stol(line->substr(4));
      if (*line == "moved") moved = true;
      if (*line == "crash") crashed = true;
      REQUIRE_MESSAGE(line->rfind("error", 0) != 0, *line);
    }
    if (!kill_rng) {
      CHECK(crashed);
      CHECK(w.wait() == 42);
    }
  }
  keel::test::fake_clock clock;  // starts where the writer's clock stands (ttl_clock_ms)
  hybrid_options reopen = no_auto_move(path);
  reopen.clock = clock.source();
  auto s = hybrid_store::open(reopen);
  REQUIRE_MESSAGE(s, s.error().message());
  const std::string tier_name = s->stats()->tier;
  // The keys put with a ttl before the move keep their deadline, whichever
  // tier holds them: live until it, absent from it on.
  for (int i = 0; i < 100; i += 33) {
    auto e = s->expiry("ttl/" + std::to_string(i));
    REQUIRE(e);
    CHECK(*e == keel::key_expiry{true, clock.now() + 3600000});
  }
  clock.advance(3599s);
  CHECK(s->get("ttl/99")->value_or("<absent>") == "t");
  clock.advance(1s);
  CHECK_FALSE(s->get("ttl/99")->has_value());
  CHECK_FALSE(s->scan(key_range::prefix("ttl/")).valid());
  if (tier_name == "memory") {
    ++t.in_memory;
    CHECK_FALSE(fs::exists(path / "rocksdb"));
    CHECK_FALSE(moved);
  } else {
    ++t.in_rocksdb;
    CHECK_FALSE(memory_files_left(path));
  }
  if (step == "copied" || step == "caught_up" || step == "synced") CHECK(tier_name == "memory");
  if (step == "committed" || step == "released") CHECK(tier_name == "rocksdb");
  int preloaded = 0;
  for (const auto& e : s->scan(key_range::prefix(prefix + "/pre/"))) {
    (void)e;
    ++preloaded;
  }
  CHECK(preloaded == 20000);
  std::map<long, int> keys_of_round;
  for (const auto& e : s->scan(key_range::prefix(prefix + "/"))) {
    std::string rest(e.key.substr(prefix.size() + 1));
    if (rest.rfind("pre/", 0) == 0) continue;
    const long r = std::stol(rest.substr(0, rest.find('/')));
    CHECK(e.value.substr(0, e.value.find(' ', 6)) == "round " + std::to_string(r));
    ++keys_of_round[r];
  }
  for (long r = 0; r <= last_ack; ++r) {
    ++t.acked_checked;
    if (keys_of_round.count(r) == 0) ++t.lost;
  }
  for (const auto& [r, n] : keys_of_round) {
    if (n != (r % 3 == 0 ? 10 : 1)) ++t.torn;
    CHECK(r <= last_ack + 1);
  }
  if (keys_of_round.count(last_ack + 1))
    ++t.in_flight_present;
  else
    ++t.in_flight_absent;
  ++t.crashes;
}

}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("a crash at each step of the move leaves one complete store") {
    crash_totals t;
    for (const char* step : {"copied", "caught_up", "synced", "committed", "released"}) {
      for (const bool sync : {false, true}) {
        CAPTURE(step);
        CAPTURE(sync);
        temp_dir tmp;
        crash_round(tmp.path() / "h", step, sync, nullptr, t);
      }
    }
    MESSAGE("crash at each step: " << t.crashes << " crashes (" << t.in_memory << " reopened in memory, "
                                   << t.in_rocksdb << " in RocksDB), " << t.acked_checked
                                   << " acknowledged writes checked, " << t.lost << " lost, " << t.torn << " torn");
    CHECK(t.lost == 0);
    CHECK(t.torn == 0);
    CHECK(t.in_memory == 6);
    CHECK(t.in_rocksdb == 4);
  }

  TEST_CASE("SIGKILL at random moments of the move leaves one complete store") {
    crash_totals t;
    std::mt19937 rng(13);
    for (int round = 0; round < 12; ++round) {
      CAPTURE(round);
      temp_dir tmp;
      crash_round(tmp.path() / "h", "none", round % 4 == 3, &rng, t);
    }
    MESSAGE("SIGKILL during moves: " << t.crashes << " kills (" << t.in_memory << " reopened in memory, "
                                     << t.in_rocksdb << " in RocksDB), " << t.acked_checked
                                     << " acknowledged writes checked, " << t.lost << " lost, " << t.torn
                                     << " torn; write in flight present " << t.in_flight_present << ", absent "
                                     << t.in_flight_absent);
    CHECK(t.lost == 0);
    CHECK(t.torn == 0);
  }

  // Issue 25, bug 10: a program that closes sooner than a move takes (keel's
  // tool) makes a due move happen with move_if_due() or compact().
  TEST_CASE("move_if_due() and compact() move a store past spill_bytes before returning; below it nothing moves") {
    temp_dir tmp;
    const fs::path path = tmp.path() / "h";
    {
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      for (int i = 0; i < 200; ++i) REQUIRE(s->put("key" + std::to_string(i), std::string(100, 'v')));
      auto due = s->policy().move_if_due();
      REQUIRE(due);
      CHECK_FALSE(*due);  // below spill_bytes: not due, nothing moved
      CHECK(s->policy().current_tier() == keel::HybridPolicy<>::tier::small);
      REQUIRE(s->compact(key_range::all()));
      CHECK(s->policy().current_tier() == keel::HybridPolicy<>::tier::small);
      REQUIRE(s->close());
    }
    hybrid_options small_spill;
    small_spill.path = path;
    small_spill.spill_bytes = 1000;  // the store holds ~20 KB: due at once
    {
      auto s = hybrid_store::open(small_spill);
      REQUIRE(s);
      auto moved = s->policy().move_if_due();
      REQUIRE_MESSAGE(moved, moved.error().message());
      CHECK(*moved);
      CHECK(s->policy().current_tier() == keel::HybridPolicy<>::tier::large);
      CHECK(s->get("key42")->value() == std::string(100, 'v'));
      REQUIRE(s->close());
    }
    // compact() does the same first.
    const fs::path path2 = tmp.path() / "h2";
    {
      auto s = hybrid_store::open(no_auto_move(path2));
      REQUIRE(s);
      for (int i = 0; i < 200; ++i) REQUIRE(s->put("key" + std::to_string(i), std::string(100, 'w')));
      REQUIRE(s->close());
    }
    small_spill.path = path2;
    auto s = hybrid_store::open(small_spill);
    REQUIRE(s);
    REQUIRE(s->compact(key_range::all()));
    CHECK(s->policy().current_tier() == keel::HybridPolicy<>::tier::large);
    CHECK(s->stats()->keys == 200);
  }
}

// Keyspaces (issue 27) before, during and after the move. A model of every
// keyspace's content is kept beside the store and compared, whole, in each
// phase: after the move (through handles taken before it), in a snapshot
// taken before it (the memory tier's version), and after a reopen.
namespace {

using keyspace_model = std::map<std::string, std::map<std::string, std::string>>;

// Every entry of a cursor, as the model holds a keyspace.
template <class Cursor>
std::map<std::string, std::string> entries(Cursor&& c) {
  std::map<std::string, std::string> out;
  for (; c.valid(); c.advance()) out.emplace(std::string(c.current().key), std::string(c.current().value));
  CHECK_FALSE(c.error());
  return out;
}

// The hook of the test below: holds the move at `pause_step` until released.
hybrid_move_step pause_step = hybrid_move_step::copied;
void pause_move(hybrid_move_step step) {
  if (step != pause_step) return;
  std::unique_lock l(current_signal->m);
  current_signal->reached = true;
  current_signal->cv.notify_all();
  current_signal->cv.wait(l, [] { return current_signal->released; });
}

}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("keyspaces before, during and after the move: every keyspace moved, handles keep working, drops stay") {
    for (const hybrid_move_step step : {hybrid_move_step::copied, hybrid_move_step::caught_up}) {
      CAPTURE(static_cast<int>(step));
      temp_dir tmp;
      const fs::path path = tmp.path() / "h";
      keyspace_model model;
      const std::string binary("b\0\xff", 3);
      auto s = hybrid_store::open(no_auto_move(path));
      REQUIRE(s);
      // Before: three keyspaces besides "", the same keys in each, one
      // dropped, one to be dropped during the move.
      auto users = s->keyspace("users");
      auto bin = s->keyspace(binary);
      auto gone = s->keyspace("gone");
      auto doomed = s->keyspace("doomed");
      REQUIRE_MESSAGE(users, users.error().message());
      REQUIRE(bin);
      REQUIRE(gone);
      REQUIRE(doomed);
      for (int i = 0; i < 2000; i += 250) {
        keel::write_batch b;
        for (int j = i; j < i + 250; ++j) {
          const std::string k = "k" + std::to_string(j);
          b.put(k, "d" + k).put(*users, k, "u" + k).put(*bin, k, "b" + k).put(*doomed, k, "x");
          model[""][k] = "d" + k;
          model["users"][k] = "u" + k;
          model[binary][k] = "b" + k;
        }
        REQUIRE(s->write(b));
      }
      REQUIRE(gone->put("k1", "old"));
      REQUIRE(s->drop_keyspace("gone"));
      CHECK(gone->get("k1").error() == errc::not_found);
      auto before = s->snapshot();

      // During: the move held at `step` (outside the tier gate) while
      // writes go to every keyspace, a keyspace is created, one dropped, a
      // dropped name created again.
      step_signal sig;
      current_signal = &sig;
      pause_step = step;
      move_hook hook(&pause_move);
      keel::result<void> moved;
      std::thread mover([&] { moved = s->policy().move_to_large(); });
      {
        std::unique_lock l(sig.m);
        sig.cv.wait(l, [&] { return sig.reached; });
      }
      REQUIRE(users->put("k5", "during"));
      model["users"]["k5"] = "during";
      REQUIRE(users->erase("k6"));
      model["users"].erase("k6");
      REQUIRE(s->write(keel::write_batch{}.put(*users, "k7", "batch").put(*bin, "k7", "batch").put("k7", "batch")));
      for (auto* m : {&model["users"], &model[binary], &model[""]}) (*m)["k7"] = "batch";
      REQUIRE(bin->erase_range(key_range::between("k10", "k11")));  // k10, k100..k109, k1000..k1099
      std::erase_if(model[binary], [](const auto& kv) { return kv.first >= "k10" && kv.first < "k11"; });
      auto late = s->keyspace("late");
      REQUIRE(late);
      REQUIRE(late->put("l", "new during the move"));
      model["late"]["l"] = "new during the move";
      REQUIRE(s->drop_keyspace("doomed"));
      auto gone_again = s->keyspace("gone");
      REQUIRE(gone_again);
      REQUIRE(gone_again->put("k2", "new"));
      model["gone"]["k2"] = "new";
      CHECK(s->policy().current_tier() == tier::small);
      {
        std::lock_guard l(sig.m);
        sig.released = true;
      }
      sig.cv.notify_all();
      mover.join();
      REQUIRE_MESSAGE(moved, moved.error().message());
      CHECK(s->policy().current_tier() == tier::large);

      // After: through the handles taken before the move.
      CHECK(*s->keyspaces() == std::vector<std::string>{"", binary, "gone", "late", "users"});
      CHECK(entries(users->scan()) == model["users"]);
      CHECK(entries(bin->scan()) == model[binary]);
      CHECK(entries(late->scan()) == model["late"]);
      CHECK(entries(gone_again->scan()) == model["gone"]);
      auto def = s->keyspace("");
      REQUIRE(def);
      CHECK(entries(def->scan()) == model[""]);
      CHECK(users->get("k5")->value() == "during");
      CHECK(bin->get("k7")->value() == "batch");
      CHECK(gone->get("k1").error() == errc::not_found);  // dropped before the move
      CHECK(gone->put("k1", "x").error() == errc::not_found);
      CHECK(doomed->get("k1").error() == errc::not_found);  // dropped during it
      REQUIRE(users->put("after", "1"));
      model["users"]["after"] = "1";
      REQUIRE(s->write(keel::write_batch{}.put(*late, "l2", "2").put("after", "2")));
      model["late"]["l2"] = "2";
      model[""]["after"] = "2";
      // The snapshot taken before the move reads the memory tier's version.
      CHECK(before.get(*users, "k5")->value() == "uk5");
      CHECK(before.get(*users, "k6")->value() == "uk6");
      CHECK(before.get(*late, "l").error() == errc::not_found);  // created after it
      auto after = s->snapshot();
      CHECK(entries(after.scan(*users)) == model["users"]);
      CHECK(after.get(*gone, "k1").error() == errc::not_found);
      REQUIRE(s->close());
      CHECK(users->get("k5").error() == errc::closed);

      // Reopen: RocksDB holds every keyspace.
      auto again = hybrid_store::open(no_auto_move(path));
      REQUIRE(again);
      CHECK(again->policy().current_tier() == tier::large);
      CHECK(*again->keyspaces() == std::vector<std::string>{"", binary, "gone", "late", "users"});
      for (const auto& entry : model) {  // (not a structured binding: clang 14 cannot CAPTURE one)
        const std::string& name = entry.first;
        CAPTURE(name);
        auto ks = again->keyspace(name);
        REQUIRE(ks);
        CHECK(entries(ks->scan()) == entry.second);
      }
    }
  }
}

// SIGKILL rounds of a writer doing cross-keyspace batches across the move
// (hybrid_writer ks-write): after each crash one complete store opens, and
// every acknowledged batch is whole in every keyspace ("", "a", "b\0\xff"),
// none lost; the batch in flight is whole or absent.
namespace {

struct keyspace_crash_totals {
  int rounds = 0, in_memory = 0, in_rocksdb = 0;
  long acked_checked = 0, lost = 0, torn = 0;
};

void keyspace_crash_round(const fs::path& path, const std::string& step, bool sync, std::mt19937* kill_rng,
                          keyspace_crash_totals& t) {
  long last_ack = -1;
  {
    std::vector<std::string> args{"ks-write", path.string(), step};
    if (sync) args.push_back("sync");
    child_process w(helper_path("hybrid_writer"), args);
    auto first = w.read_line(60s);
    REQUIRE(first.has_value());
    REQUIRE_MESSAGE(*first == "loaded", *first);
    if (kill_rng) {
      while (auto line = w.read_line(30s)) {
        if (line->rfind("ack ", 0) == 0) last_ack = std::stol(line->substr(4));
        if (*line == "moving") break;
        REQUIRE(line->rfind("error", 0) != 0);
      }
      std::this_thread::sleep_for(std::chrono::microseconds((*kill_rng)() % 1000000));  // a random moment, not a sync
      w.kill(keel::test::kill_signal);
      CHECK(w.wait() == 128 + keel::test::kill_signal);
    }
    bool crashed = false;
    while (auto line = w.read_line(60s)) {
      if (line->rfind("ack ", 0) == 0) last_ack = std::stol(line->substr(4));
      if (*line == "crash") crashed = true;
      REQUIRE_MESSAGE(line->rfind("error", 0) != 0, *line);
    }
    if (!kill_rng) {
      CHECK(crashed);
      CHECK(w.wait() == 42);
    }
  }
  auto s = hybrid_store::open(no_auto_move(path));
  REQUIRE_MESSAGE(s, s.error().message());
  const bool large = s->policy().current_tier() == tier::large;
  ++(large ? t.in_rocksdb : t.in_memory);
  if (step == "copied" || step == "caught_up" || step == "synced") CHECK_FALSE(large);
  if (step == "committed" || step == "released") CHECK(large);
  const std::string binary("b\0\xff", 3);
  CHECK(*s->keyspaces() == std::vector<std::string>{"", "a", binary});
  // Per round, in how many of the four places ("", "a", "a" r/<r>/x when r
  // is odd, "b\0\xff") it is.
  std::map<long, int> places_of_round;
  for (const std::string& name : {std::string(), std::string("a"), binary}) {
    auto ks = s->keyspace(name);
    REQUIRE(ks);
    int preloaded = 0;
    for (const auto& e : ks->scan(key_range::prefix("pre/"))) {
      (void)e;
      ++preloaded;
    }
    CHECK(preloaded == 5000);
    for (const auto& e : ks->scan(key_range::prefix("r/"))) {
      const std::string rest(e.key.substr(2));
      const long r = std::stol(rest.substr(0, rest.find('/')));
      CHECK(e.value.substr(0, e.value.find(' ', 6)) == "round " + std::to_string(r));
      ++places_of_round[r];
    }
  }
  auto whole = [](long r) { return r % 2 == 1 ? 4 : 3; };
  for (long r = 0; r <= last_ack; ++r) {
    ++t.acked_checked;
    if (places_of_round.count(r) == 0) ++t.lost;
  }
  for (const auto& [r, n] : places_of_round) {
    if (n != whole(r)) ++t.torn;
    CHECK(r <= last_ack + 1);
  }
  ++t.rounds;
}

}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("SIGKILL rounds of cross-keyspace batches across the move: every acknowledged batch whole in every keyspace") {
    keyspace_crash_totals t;
    for (const char* step : {"copied", "caught_up", "synced", "committed", "released"}) {
      CAPTURE(step);
      temp_dir tmp;
      keyspace_crash_round(tmp.path() / "h", step, false, nullptr, t);
    }
    std::mt19937 rng(27);
    for (int round = 0; round < 8; ++round) {
      CAPTURE(round);
      temp_dir tmp;
      keyspace_crash_round(tmp.path() / "h", "none", round % 4 == 3, &rng, t);
    }
    KEEL_REPORT("hybrid keyspace crash rounds: " << t.rounds << " rounds (5 at the move's steps, 8 SIGKILLs; "
                                                 << t.in_memory << " reopened in memory, " << t.in_rocksdb
                                                 << " in RocksDB), " << t.acked_checked
                                                 << " acknowledged batches checked, " << t.lost << " lost, " << t.torn
                                                 << " torn");
    CHECK(t.lost == 0);
    CHECK(t.torn == 0);
    CHECK(t.in_memory >= 3);
    CHECK(t.in_rocksdb >= 2);
  }
}

namespace {
// The code of `r`'s error; nullopt when it succeeded (so a check fails instead of crashing).
std::optional<errc> error_of(const keel::result<void>& r) {
  if (r) return std::nullopt;
  return r.error().code();
}
}  // namespace

TEST_SUITE("hybrid") {
  TEST_CASE("transactions across keyspaces span the move: conflicts per (keyspace, key), a drop fails the commit") {
    temp_dir tmp;
    auto s = hybrid_store::open(no_auto_move(tmp.path() / "h"));
    REQUIRE(s);
    auto a = s->keyspace("a");
    REQUIRE_MESSAGE(a, a.error().message());
    auto b = s->keyspace("b");
    REQUIRE(b);
    auto c = s->keyspace("c");
    REQUIRE(c);
    REQUIRE(s->write(keel::write_batch{}.put(*a, "k", "1").put(*b, "k", "1").put("k", "1")));
    auto clean = s->transaction();     // reads a:k; only "":k and b:k are written
    auto conflicted = s->transaction();  // reads b:k, written after the move
    auto in_dropped = s->transaction();  // writes c, dropped after the move
    CHECK(clean.get(*a, "k")->value() == "1");
    REQUIRE(clean.put(*b, "from-clean", "1"));
    REQUIRE(clean.put("from-clean", "1"));
    CHECK(conflicted.get(*b, "k")->value() == "1");
    REQUIRE(conflicted.put(*a, "from-conflicted", "1"));
    REQUIRE(in_dropped.put(*c, "from-dropped", "1"));
    REQUIRE(s->policy().move_to_large());
    CHECK(s->policy().current_tier() == tier::large);
    // The same key in other keyspaces: no conflict for `clean`.
    REQUIRE(s->write(keel::write_batch{}.put(*b, "k", "2").put("k", "2")));
    REQUIRE(s->drop_keyspace("c"));
    auto c_again = s->keyspace("c");  // a new keyspace: the transaction's writes must not land in it
    REQUIRE(c_again);
    auto committed = clean.commit();
    CHECK_MESSAGE(committed, (committed ? "" : committed.error().message()));
    CHECK(error_of(conflicted.commit()) == errc::conflict);
    CHECK(error_of(in_dropped.commit()) == errc::not_found);
    CHECK(b->get("from-clean")->value() == "1");
    CHECK(s->get("from-clean")->value() == "1");
    CHECK_FALSE(a->get("from-conflicted")->has_value());
    CHECK_FALSE(c_again->get("from-dropped")->has_value());
    // A transaction begun after the move: the same rules in RocksDB.
    auto late = s->transaction();
    CHECK(late.get(*a, "k")->value() == "1");
    REQUIRE(late.put(*b, "late", "1"));
    REQUIRE(a->put("k", "3"));
    CHECK(error_of(late.commit()) == errc::conflict);
    CHECK_FALSE(b->get("late")->has_value());
  }
}

// Expiry (issue 29): the move carries deadlines (hybrid/expiry.hpp).
TEST_SUITE("hybrid") {
  TEST_CASE("expiry: the move carries every key's deadline in every keyspace; they hold after it and across a reopen") {
    temp_dir tmp;
    keel::test::fake_clock clock;
    hybrid_options o = no_auto_move(tmp.path() / "h");
    o.clock = clock.source();
    const keel::deadline_ms t0 = clock.now();
    auto ttl = [](std::chrono::milliseconds t) { return keel::put_options{t}; };
    auto keys = [](auto&& cursor) {
      std::vector<std::string> out;
      for (; cursor.valid(); cursor.advance()) out.emplace_back(cursor.current().key);
      return out;
    };
    // Each key's deadline (0: absent, -1: permanent), in "" and in "users".
    using deadlines = std::map<std::string, keel::deadline_ms>;
    auto deadlines_in = [](const auto& reader, const deadlines& expected) {
      deadlines got;
      for (const auto& [k, d] : expected) {
        auto e = reader.expiry(k);
        REQUIRE(e);
        got[k] = !e->present ? 0 : e->deadline ? *e->deadline : -1;
      }
      return got;
    };
    const deadlines plain{{"short", t0 + 10000}, {"long", t0 + 2000 + 7200000}, {"forever", -1}, {"gone", 0},
                          {"b-short", t0 + 10000}, {"t-short", t0 + 10000}, {"d-short", t0 + 12000}};
    const deadlines in_users{{"u-short", t0 + 10000}, {"u-long", t0 + 3600000}, {"b-long", t0 + 3600000},
                             {"d-long", t0 + 3602000}};
    {
      auto s = hybrid_store::open(o);
      REQUIRE(s);
      auto users = s->keyspace("users");
      REQUIRE(users);
      REQUIRE(s->put("short", "1", ttl(10s)));
      REQUIRE(s->put("long", "2", ttl(1h)));
      REQUIRE(s->put("forever", "3"));
      REQUIRE(s->put("gone", "4", ttl(1s)));
      REQUIRE(users->put("u-short", "5", ttl(10s)));
      REQUIRE(users->put("u-long", "6", ttl(1h)));
      REQUIRE(s->write(keel::write_batch{}.put("b-short", "7", ttl(10s)).put(*users, "b-long", "8", ttl(1h))));
      auto tx = s->transaction();
      REQUIRE(tx.put("t-short", "9", ttl(10s)));
      REQUIRE(tx.commit());
      clock.advance(2s);  // "gone" expired before the move: not carried, absent either way

      // During the move (held after its first copy), more puts with a ttl:
      // the move's catch-up carries them, and the new deadline of "long".
      step_signal sig;
      current_signal = &sig;
      pause_step = hybrid_move_step::copied;
      move_hook hook(&pause_move);
      keel::result<void> moved;
      std::thread mover([&] { moved = s->policy().move_to_large(); });
      {
        std::unique_lock l(sig.m);
        sig.cv.wait(l, [&] { return sig.reached; });
      }
      REQUIRE(s->put("d-short", "10", ttl(10s)));
      REQUIRE(users->put("d-long", "11", ttl(1h)));
      REQUIRE(s->put("long", "2", ttl(2h)));
      {
        std::lock_guard l(sig.m);
        sig.released = true;
      }
      sig.cv.notify_all();
      mover.join();
      REQUIRE_MESSAGE(moved, moved.error().message());
      REQUIRE(s->policy().current_tier() == tier::large);

      CHECK(deadlines_in(*s, plain) == plain);
      CHECK(deadlines_in(*users, in_users) == in_users);
      clock.advance(9s);  // t0 + 11 s: the 10 s keys put at t0 expired, "d-short" (t0 + 12 s) not yet
      CHECK(keys(s->scan(key_range::all())) == std::vector<std::string>{"d-short", "forever", "long"});
      CHECK(keys(users->scan(key_range::all())) == std::vector<std::string>{"b-long", "d-long", "u-long"});
      CHECK_FALSE(s->get("short")->has_value());
      CHECK(s->get("d-short")->value_or("<absent>") == "10");
      REQUIRE(s->close());
    }
    auto s = hybrid_store::open(o);
    REQUIRE(s);
    CHECK(s->policy().current_tier() == tier::large);
    auto users = s->keyspace("users");
    REQUIRE(users);
    CHECK(keys(s->scan(key_range::all())) == std::vector<std::string>{"d-short", "forever", "long"});
    deadlines in_users_now = in_users;
    in_users_now["u-short"] = 0;  // expired at t0 + 10 s
    CHECK(deadlines_in(*users, in_users_now) == in_users_now);
    CHECK(s->expiry("long")->deadline == t0 + 2000 + 7200000);
    clock.set(t0 + 3602000);  // past every 1 h deadline
    CHECK(keys(s->scan(key_range::all())) == std::vector<std::string>{"forever", "long"});
    CHECK(keys(users->scan(key_range::all())).empty());
    CHECK_FALSE(users->get("d-long")->has_value());
    CHECK(s->get("long")->value_or("<absent>") == "2");
  }
}
