// Watch on the RocksDB backend (issue 28; rocksdb/watch.hpp, docs/watch.md
// "RocksDB"): what the conformance suite (watch_test.cpp) does not cover:
// seq is RocksDB's sequence number, batches marked in the WAL, erase_range
// listed key by key, resume from the WAL (also archived, across close and
// reopen), snapshot_expired once the WAL is gone, read-only refusal, close
// while a watch waits, writers and watches on several threads.
//
// No case sleeps to synchronise: changes are read with next() under a
// generous deadline that a working store never reaches.
#include <doctest/doctest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <keel/rocksdb.hpp>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/scale.hpp"
#include "support/temp_dir.hpp"
#include "support/watch_crash.hpp"

namespace fs = std::filesystem;
using keel::change;
using keel::errc;
using keel::key_range;
using keel::rocks_options;
using keel::rocks_store;
using keel::watch_options;
using keel::write_batch;
using keel::test::temp_dir;
using namespace std::chrono_literals;
using std::chrono::steady_clock;

namespace {

constexpr auto due = 30s;

std::string describe(const change& c) {
  std::string s = std::to_string(c.seq) + " [" + c.keyspace + "] " + c.key;
  s += c.value ? " = " + *c.value : std::string(" erased");
  return s;
}
std::string op(const change& c) { return "[" + c.keyspace + "] " + c.key + (c.value ? " = " + *c.value : " erased"); }

template <class T>
std::string error_text(const keel::result<T>& r) {
  return r ? std::string() : std::string(keel::to_string(r.error().code())) + ": " + r.error().message();
}

rocks_store open_at(const fs::path& p, const std::function<void(rocks_options&)>& adjust = {}) {
  rocks_options o;
  o.path = p;
  if (adjust) adjust(o);
  auto s = rocks_store::open(o);
  REQUIRE_MESSAGE(s, error_text(s));
  return std::move(*s);
}

template <class Target>
auto watch_or_fail(const Target& t, const watch_options& o = {}, const key_range& r = key_range::all()) {
  auto w = t.watch(r, o);
  REQUIRE_MESSAGE(w, error_text(w));
  return std::move(*w);
}

// Reads exactly n changes (failing the case on an error or the deadline).
template <class W>
std::vector<change> read_n(W& w, std::size_t n) {
  std::vector<change> out;
  const auto deadline = steady_clock::now() + due;
  while (out.size() < n && steady_clock::now() < deadline) {
    auto c = w.next(200ms);
    REQUIRE_MESSAGE(c, error_text(c));
    if (*c) out.push_back(std::move(**c));
  }
  REQUIRE_MESSAGE(out.size() == n, "read " << out.size() << " of " << n << " changes");
  return out;
}

// read_n for another thread: no REQUIRE there; an error ends it, in `error`.
template <class W>
std::vector<change> collect(W& w, std::size_t n, std::string& error) {
  std::vector<change> out;
  const auto deadline = steady_clock::now() + due;
  while (out.size() < n && steady_clock::now() < deadline) {
    auto c = w.next(200ms);
    if (!c) {
      error = error_text(c);
      break;
    }
    if (*c) out.push_back(std::move(**c));
  }
  return out;
}

// Reads until the watch has nothing within `quiet`.
template <class W>
std::vector<change> read_all(W& w, std::chrono::milliseconds quiet = 300ms) {
  std::vector<change> out;
  for (;;) {
    auto c = w.next(quiet);
    REQUIRE_MESSAGE(c, error_text(c));
    if (!*c) return out;
    out.push_back(std::move(**c));
  }
}

std::vector<std::string> ops(const std::vector<change>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs) out.push_back(op(c));
  return out;
}

void flush_memtables(rocks_store& s) {
  auto r = s.policy().with_db([](rocksdb::DB& db) { return db.Flush(rocksdb::FlushOptions()).ok(); });
  REQUIRE(r);
  REQUIRE(*r);
}

// The WAL files in the database directory (not those archived).
int wal_files(const fs::path& db) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(db)) n += e.path().extension() == ".log";
  return n;
}

}  // namespace

TEST_SUITE("rocksdb watch") {
  TEST_CASE("rocksdb watch: seq is RocksDB's sequence number; a batch or transaction is one seq") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto w = watch_or_fail(store);
    REQUIRE(store.put("a", "1"));
    write_batch b;
    b.put("b", "2").put("c", "3").erase("a");
    REQUIRE(store.write(b));
    auto tx = store.transaction();
    REQUIRE(tx.put("d", "4"));
    REQUIRE(tx.erase("b"));
    REQUIRE(tx.commit());
    REQUIRE(store.put("e", "5"));
    auto got = read_n(w, 7);
    CHECK(ops(got) == std::vector<std::string>{"[] a = 1", "[] b = 2", "[] c = 3", "[] a erased", "[] b erased",
                                               "[] d = 4", "[] e = 5"});  // a transaction's writes: in key order
    // seq: RocksDB's: the put is one record, the batch three (one seq, its
    // first), the transaction two.
    CHECK(got[1].seq == got[0].seq + 1);
    CHECK(got[2].seq == got[1].seq);
    CHECK(got[3].seq == got[1].seq);
    CHECK(got[4].seq == got[1].seq + 3);
    CHECK(got[5].seq == got[4].seq);
    CHECK(got[6].seq == got[4].seq + 2);
    CHECK(store.last_seq() == got[6].seq);
    auto latest = store.policy().with_db([](rocksdb::DB& db) { return db.GetLatestSequenceNumber(); });
    REQUIRE(latest);
    CHECK(*latest == got[6].seq);
  }

  TEST_CASE("rocksdb watch: concurrent single writes (merged by group commit in the WAL) keep their own seqs") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto w = watch_or_fail(store);
    const int per = static_cast<int>(keel::test::scaled("KEEL_WATCH_ROCKS_WRITES", 2000));
    std::vector<std::thread> writers;
    std::atomic<int> failed_writes{0};
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&store, &failed_writes, t, per] {
        for (int i = 0; i < per; ++i) {
          const std::string key = "t" + std::to_string(t) + "/" + std::to_string(i);
          if (i % 5 == 0) {
            write_batch b;
            b.put(key, "x").put("t" + std::to_string(t) + "/b" + std::to_string(i), "y");
            if (!store.write(b)) ++failed_writes;
          } else if (!store.put(key, "x")) {
            ++failed_writes;
          }
        }
      });
    }
    for (auto& t : writers) t.join();
    REQUIRE(failed_writes.load() == 0);
    const std::size_t n = static_cast<std::size_t>(4 * (per + per / 5));
    auto got = read_n(w, n);
    // Each batch: its two changes together with one seq; every other change
    // a seq of its own; seqs grow.
    std::set<std::uint64_t> seqs;
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (got[i].key.find("/b") != std::string::npos) {
        REQUIRE(i > 0);
        CHECK(got[i - 1].seq == got[i].seq);
        CHECK(got[i].key == got[i - 1].key.substr(0, got[i - 1].key.find('/') + 1) + "b" +
                                got[i - 1].key.substr(got[i - 1].key.find('/') + 1));
      } else {
        CHECK(seqs.insert(got[i].seq).second);
        if (i > 0) CHECK(got[i].seq > got[i - 1].seq);
      }
    }
    CHECK(seqs.size() == static_cast<std::size_t>(4 * per));
  }

  TEST_CASE("rocksdb watch: erase_range is one erase change per key it removed") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto users = store.keyspace("users");
    REQUIRE(users);
    for (std::string k : {"a", "b", "c", "d", "x"}) REQUIRE(store.put(k, "v"));
    REQUIRE(users->put("b", "u"));
    auto w = watch_or_fail(store);
    auto wu = watch_or_fail(*users);
    auto wrange = watch_or_fail(store, {}, key_range::between("c", "z"));
    REQUIRE(store.erase_range(key_range::between("a", "c")));  // a, b (not users' b)
    REQUIRE(store.erase_range(key_range::between("e", "w")));  // nothing there: no change
    write_batch b;
    b.put("c2", "n").erase("d").erase_range(key_range::from("c")).put("y", "1");  // c, c2, x (d erased before)
    REQUIRE(store.write(b));
    REQUIRE(users->erase_range(key_range::all()));
    REQUIRE(store.put("end", "1"));
    auto got = read_n(w, 9);
    CHECK(ops(got) == std::vector<std::string>{"[] a erased", "[] b erased", "[] c2 = n", "[] d erased", "[] c erased",
                                               "[] c2 erased", "[] x erased", "[] y = 1", "[] end = 1"});
    CHECK(got[0].seq == got[1].seq);
    for (int i = 3; i < 8; ++i) CHECK(got[i].seq == got[2].seq);
    CHECK(got[2].seq > got[0].seq);
    // The keyspace's watch sees only its own.
    auto gu = read_n(wu, 1);
    CHECK(op(gu[0]) == "[users] b erased");
    CHECK(gu[0].seq > got[2].seq);
    CHECK(gu[0].seq < got[8].seq);
    // A range watch: only the keys in it.
    auto gr = read_n(wrange, 6);
    CHECK(ops(gr) == std::vector<std::string>{"[] c2 = n", "[] d erased", "[] c erased", "[] c2 erased",
                                              "[] x erased", "[] y = 1"});
  }

  TEST_CASE("rocksdb watch: an erase_range made before the first watch is snapshot_expired naming the seq after it") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto users = store.keyspace("users");
    REQUIRE(users);
    for (std::string k : {"a", "b", "c"}) REQUIRE(store.put(k, "v"));
    REQUIRE(users->put("u", "1"));
    const std::uint64_t before_erase = store.last_seq();
    REQUIRE(store.erase_range(key_range::between("a", "c")));  // no watch yet: its keys are not listed
    const std::uint64_t erased_at = store.last_seq();
    REQUIRE(erased_at == before_erase + 1);
    REQUIRE(store.put("d", "v"));
    watch_options o;
    o.after = 0;
    auto w = watch_or_fail(store, o);
    auto got = read_n(w, 3);  // the commits before it, then the error
    CHECK(ops(got) == std::vector<std::string>{"[] a = v", "[] b = v", "[] c = v"});
    auto c = w.next(1s);
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::snapshot_expired);
    const std::string& message = c.error().message();
    CAPTURE(message);
    CHECK(message.find("erase_range removed at seq " + std::to_string(erased_at)) != std::string::npos);
    CHECK(message.find("oldest seq still available is " + std::to_string(erased_at + 1)) != std::string::npos);
    auto again = w.next(0ms);  // sticky
    REQUIRE_FALSE(again);
    CHECK(again.error().code() == errc::snapshot_expired);
    // Watches it does not concern: another keyspace, a range it does not touch.
    watch_options from_start;
    from_start.after = 0;
    auto wu = watch_or_fail(*users, from_start);
    CHECK(ops(read_all(wu)) == std::vector<std::string>{"[users] u = 1"});
    auto wd = watch_or_fail(store, from_start, key_range::between("c", "z"));
    CHECK(ops(read_all(wd)) == std::vector<std::string>{"[] c = v", "[] d = v"});
    // Resuming where the error says: fine.
    o.after = erased_at;
    auto resumed = watch_or_fail(store, o);
    CHECK(ops(read_all(resumed)) == std::vector<std::string>{"[] d = v"});
    // Now that the store has watches, an erase_range lists its keys.
    REQUIRE(store.erase_range(key_range::all()));  // c, d
    CHECK(ops(read_n(resumed, 2)) == std::vector<std::string>{"[] c erased", "[] d erased"});
  }

  TEST_CASE("rocksdb watch: watch_list_erased_keys lets a watch after a restart replay earlier erase_ranges") {
    for (const bool list_always : {true, false}) {
      CAPTURE(list_always);
      temp_dir tmp;
      const fs::path db = tmp.path() / "db";
      std::uint64_t erased_at = 0;
      {
        auto store = open_at(db, [&](rocks_options& o) { o.watch_list_erased_keys = list_always; });
        for (std::string k : {"a", "b", "c"}) REQUIRE(store.put(k, "v"));
        write_batch b;
        b.put("a2", "v").erase_range(key_range::until("b2"));  // a, a2, b
        REQUIRE(store.write(b));
        erased_at = store.last_seq();
        REQUIRE(store.close());
      }
      auto store = open_at(db);  // the flag is not needed to read what was listed
      REQUIRE(store.put("e", "v"));
      watch_options o;
      o.after = 0;
      auto w = watch_or_fail(store, o);
      if (list_always) {
        auto got = read_n(w, 8);
        CHECK(ops(got) == std::vector<std::string>{"[] a = v", "[] b = v", "[] c = v", "[] a2 = v", "[] a erased",
                                                   "[] a2 erased", "[] b erased", "[] e = v"});
        CHECK(got[3].seq == got[6].seq);
        auto none = w.next(0ms);
        REQUIRE_MESSAGE(none, error_text(none));
        CHECK_FALSE(*none);
      } else {
        CHECK(ops(read_n(w, 3)) == std::vector<std::string>{"[] a = v", "[] b = v", "[] c = v"});
        auto c = w.next(1s);
        REQUIRE_FALSE(c);
        CHECK(c.error().code() == errc::snapshot_expired);
        CAPTURE(c.error().message());
        // the batch's commit (the put, then the DeleteRange) has seq erased_at
        CHECK(c.error().message().find("removed at seq " + std::to_string(erased_at) + " ") != std::string::npos);
        CHECK(c.error().message().find("available is " + std::to_string(erased_at + 1)) != std::string::npos);
        o.after = erased_at;  // as the error says: skips the whole batch
        auto resumed = watch_or_fail(store, o);
        CHECK(ops(read_all(resumed)) == std::vector<std::string>{"[] e = v"});
      }
    }
  }

  TEST_CASE("rocksdb watch: a watch made while erase_ranges run never meets one without its keys") {
    for (int round = 0; round < 5; ++round) {
      temp_dir tmp;
      auto store = open_at(tmp.path() / "db");
      std::atomic<int> done{0};
      std::atomic<bool> watching{false};
      std::string writer_error;
      std::thread writer([&] {  // put k, erase_range of k's prefix; until 20 rounds after the watch exists
        const auto deadline = steady_clock::now() + due;
        int after_watch = 0;
        for (int i = 0; after_watch < 20 && steady_clock::now() < deadline; ++i) {
          const std::string k = "k" + std::to_string(i % 10);
          if (!store.put(k, "v") || !store.erase_range(key_range::prefix(k))) {
            writer_error = "write failed";
            return;
          }
          done.store(i + 1);
          if (watching.load()) ++after_watch;
        }
      });
      while (done.load() < 1 + round * 3) std::this_thread::yield();  // made at various points
      auto w = store.watch(key_range::all(), {});
      watching.store(true);
      writer.join();
      REQUIRE_MESSAGE(w, error_text(w));
      REQUIRE(writer_error.empty());
      const auto got = read_all(*w);  // fails on snapshot_expired
      REQUIRE(got.size() >= 20);
      CHECK(got.back().seq == store.last_seq());
      for (std::size_t i = 0; i + 1 < got.size(); ++i) {
        if (got[i].value) CHECK(op(got[i + 1]) == "[] " + got[i].key + " erased");  // each put is erased next
      }
    }
  }

  TEST_CASE("rocksdb watch: resume after any seq of a history, nothing skipped, nothing repeated") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto all = watch_or_fail(store, watch_options{0, 1024});
    for (int i = 0; i < 60; ++i) {
      if (i % 7 == 3) {
        write_batch b;
        b.put("k" + std::to_string(i), "a").put("k" + std::to_string(i) + "b", "b");
        REQUIRE(store.write(b));
      } else if (i % 11 == 5) {
        REQUIRE(store.erase_range(key_range::between("k1", "k2")));
      } else {
        REQUIRE(store.put("k" + std::to_string(i), std::to_string(i)));
      }
    }
    auto history = read_all(all);
    REQUIRE(history.size() > 60);
    // Every seq from 0 to the last (also those inside a batch).
    for (std::uint64_t s = 0; s <= history.back().seq; ++s) {
      CAPTURE(s);
      std::vector<std::string> expected;
      for (const auto& c : history)
        if (c.seq > s) expected.push_back(describe(c));
      watch_options o;
      o.after = s;
      o.buffer = 1 + s % 5;  // small buffers too
      auto w = watch_or_fail(store, o);
      std::vector<std::string> got;
      for (const auto& c : read_n(w, expected.size())) got.push_back(describe(c));
      CHECK(got == expected);
      auto more = w.next(0ms);
      REQUIRE(more);
      CHECK_FALSE(*more);
    }
    watch_options too_far;
    too_far.after = store.last_seq() + 1;
    auto refused = store.watch(key_range::all(), too_far);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code() == errc::invalid_argument);
  }

  TEST_CASE("rocksdb watch: resume across close and reopen from the archived WAL; seq goes on") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    std::vector<change> first;
    std::uint64_t before_close = 0;
    {
      auto store = open_at(db);
      auto w = watch_or_fail(store, watch_options{0, 1024});
      for (int i = 0; i < 20; ++i) REQUIRE(store.put("a" + std::to_string(i), std::to_string(i)));
      flush_memtables(store);  // its WAL is now obsolete: archived, not deleted
      write_batch b;
      b.put("b", "1").erase("a3");
      REQUIRE(store.write(b));
      first = read_n(w, 22);
      before_close = store.last_seq();
      REQUIRE(store.close());
      auto c = w.next(0ms);
      REQUIRE_FALSE(c);
      CHECK(c.error().code() == errc::closed);
    }
    CHECK(fs::exists(db / "archive"));
    auto store = open_at(db);
    CHECK(store.last_seq() >= before_close);
    REQUIRE(store.put("c", "after reopen"));
    for (std::size_t i = 0; i < first.size(); i += 3) {
      watch_options o;
      o.after = first[i].seq;
      auto w = watch_or_fail(store, o);
      std::vector<std::string> expected;
      for (const auto& c : first)
        if (c.seq > first[i].seq) expected.push_back(describe(c));
      auto got = read_n(w, expected.size() + 1);
      std::vector<std::string> head;
      for (std::size_t k = 0; k + 1 < got.size(); ++k) head.push_back(describe(got[k]));
      CHECK(head == expected);
      CHECK(op(got.back()) == "[] c = after reopen");
      CHECK(got.back().seq > before_close);
    }
  }

  TEST_CASE("rocksdb watch: without archived WAL, a resume before what is kept is snapshot_expired naming the oldest") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db", [](rocks_options& o) { o.watch_history_mb = 0; });
    for (int i = 0; i < 10; ++i) REQUIRE(store.put("k" + std::to_string(i), "v"));
    flush_memtables(store);  // the WAL with seqs 1..10 becomes obsolete: deleted (not archived)
    const auto gone_by = steady_clock::now() + due;
    while (wal_files(tmp.path() / "db") > 1 && steady_clock::now() < gone_by) std::this_thread::yield();
    REQUIRE(wal_files(tmp.path() / "db") == 1);
    CHECK_FALSE(fs::exists(tmp.path() / "db" / "archive"));
    REQUIRE(store.put("later", "v"));
    watch_options o;
    o.after = 0;
    auto w = watch_or_fail(store, o);
    auto c = w.next(1s);
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::snapshot_expired);
    CHECK(c.error().message().find("oldest seq still available is 11") != std::string::npos);
    auto again = w.next(0ms);
    REQUIRE_FALSE(again);
    CHECK(again.error().code() == errc::snapshot_expired);
    // From the oldest kept on: fine.
    o.after = 10;
    auto ok = watch_or_fail(store, o);
    auto got = read_n(ok, 1);
    CHECK(op(got[0]) == "[] later = v");
    CHECK(got[0].seq == 11);
  }

  TEST_CASE("rocksdb watch: a watch not read while many writes happen: no gap, then all or snapshot_expired") {
    const long n = keel::test::scaled("KEEL_WATCH_UNREAD_WRITES", 100000);
    for (bool keep : {true, false}) {
      CAPTURE(keep);
      temp_dir tmp;
      auto store = open_at(tmp.path() / "db", [keep](rocks_options& o) {
        o.watch_history_mb = keep ? 64 : 0;
        o.customize = [](rocksdb::Options& ro) { ro.write_buffer_size = 256 << 10; };  // many WAL switches
      });
      watch_options small;
      small.buffer = 16;
      auto w = watch_or_fail(store, small);
      for (long i = 0; i < n; ++i) REQUIRE(store.put("k" + std::to_string(i % 1000), std::to_string(i)));
      // Whatever n is: the memtable flushed, so that the WAL up to here is
      // obsolete (archived when kept, else deleted: wait until it is gone).
      flush_memtables(store);
      if (!keep) {
        const auto gone_by = steady_clock::now() + due;
        while (wal_files(tmp.path() / "db") > 1 && steady_clock::now() < gone_by) std::this_thread::yield();
        REQUIRE(wal_files(tmp.path() / "db") == 1);
      }
      long i = 0;
      std::uint64_t last = 0;
      std::optional<keel::error> ended;
      const auto deadline = steady_clock::now() + due;
      while (i < n && steady_clock::now() < deadline) {
        auto c = w.next(200ms);
        if (!c) {
          ended = c.error();
          break;
        }
        if (!*c) continue;
        REQUIRE_MESSAGE(((*c)->key == "k" + std::to_string(i % 1000) && (*c)->value == std::to_string(i) && (*c)->seq > last),
                        "change " << i << ": " << describe(**c));
        last = (*c)->seq;
        ++i;
      }
      if (keep) {
        CHECK_MESSAGE(!ended, (ended ? ended->message() : ""));
        CHECK(i == n);
      } else {
        // The WAL with the first change is gone: expired before any change.
        REQUIRE(ended);
        CHECK(ended->code() == errc::snapshot_expired);
        CHECK(i == 0);
        auto again = w.next(0ms);
        REQUIRE_FALSE(again);
        CHECK(again.error().code() == errc::snapshot_expired);
        MESSAGE("snapshot_expired after " << i << " of " << n << ": " << ended->message());
      }
    }
  }

  TEST_CASE("rocksdb watch: close while a watch waits ends its wait with closed") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto w = watch_or_fail(store);
    std::atomic<bool> waiting{false};
    keel::result<std::optional<change>> got = std::optional<change>();
    steady_clock::duration took{};
    std::thread reader([&] {
      waiting = true;
      const auto t0 = steady_clock::now();
      got = w.next(20s);
      took = steady_clock::now() - t0;
    });
    while (!waiting.load()) std::this_thread::yield();
    REQUIRE(store.close());
    reader.join();
    REQUIRE_FALSE(got);
    CHECK(got.error().code() == errc::closed);
    CHECK(took < 10s);
  }

  TEST_CASE("rocksdb watch: read-only stores refuse with not_supported; last_seq is the database's") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    std::uint64_t last = 0;
    {
      auto store = open_at(db);
      REQUIRE(store.put("a", "1"));
      REQUIRE(store.put("b", "1"));
      last = store.last_seq();
      REQUIRE(store.close());
    }
    auto ro = open_at(db, [](rocks_options& o) { o.read_only = true; });
    CHECK(ro.last_seq() == last);
    auto w = ro.watch();
    REQUIRE_FALSE(w);
    CHECK(w.error().code() == errc::not_supported);
  }

  TEST_CASE("rocksdb watch: dropping a keyspace ends its watches after the changes before the drop") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto ks = store.keyspace("doomed");
    REQUIRE(ks);
    auto w = watch_or_fail(*ks);
    REQUIRE(ks->put("a", "1"));
    REQUIRE(store.put("a", "default"));
    REQUIRE(store.drop_keyspace("doomed"));
    REQUIRE(store.put("b", "default"));
    auto got = read_n(w, 1);
    CHECK(op(got[0]) == "[doomed] a = 1");
    auto end = w.next(5s);
    REQUIRE_FALSE(end);
    CHECK(end.error().code() == errc::not_found);
  }

  TEST_CASE("rocksdb watch: 4 writers and 2 watches: every change exactly once, in seq order") {
    temp_dir tmp;
    auto store = open_at(tmp.path() / "db");
    auto w1 = watch_or_fail(store);
    watch_options tiny;
    tiny.buffer = 3;
    auto w2 = watch_or_fail(store, tiny, key_range::prefix("w1/"));
    const int per = static_cast<int>(keel::test::scaled("KEEL_WATCH_ROCKS_WRITES", 2000));
    std::vector<change> all, only1;
    std::string e1, e2;
    std::thread r1([&] { all = collect(w1, static_cast<std::size_t>(4 * per), e1); });
    std::thread r2([&] { only1 = collect(w2, static_cast<std::size_t>(per), e2); });
    std::vector<std::thread> writers;
    std::atomic<int> failed_writes{0};
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&store, &failed_writes, t, per] {
        for (int i = 0; i < per; ++i)
          if (!store.put("w" + std::to_string(t) + "/" + std::to_string(i), "v")) ++failed_writes;
      });
    }
    for (auto& t : writers) t.join();
    r1.join();
    r2.join();
    CHECK(failed_writes.load() == 0);
    CHECK_MESSAGE(e1.empty(), e1);
    CHECK_MESSAGE(e2.empty(), e2);
    REQUIRE(all.size() == static_cast<std::size_t>(4 * per));
    std::set<std::string> keys;
    std::map<int, int> next_of;  // per writer, its next index: each writer's changes in its order
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (i > 0) CHECK(all[i].seq > all[i - 1].seq);
      CHECK(keys.insert(all[i].key).second);
      const int t = all[i].key[1] - '0';
      CHECK(all[i].key == "w" + std::to_string(t) + "/" + std::to_string(next_of[t]++));
    }
    std::vector<change> expected1;
    for (const auto& c : all)
      if (c.key.starts_with("w1/")) expected1.push_back(c);
    CHECK(only1 == expected1);
  }

  TEST_CASE("rocksdb watch: a synced writer SIGKILLed at random points: every printed seq survives; resumes "
            "neither skip nor repeat; seqs go on") {
    // crash_writer --watch: sync_writes, a watch of the default keyspace,
    // "ack SEQ <seq>" per batch (the seq its watch delivered). The WAL is
    // the history (64 MiB archived by default): nothing written here may
    // expire, so every resume must reach back to the first batch.
    using keel::test::watched_commit;
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    std::vector<watched_commit> known;
    std::mt19937 rng(28);
    std::uniform_int_distribution<int> acks_before_kill(1, 60);
    int resumes = 0, in_flight = 0;
    // Batch b of writer round `round` (crash_writer's batch, default keyspace).
    auto batch_commit = [](int round, long b, std::uint64_t seq) {
      const std::string base = "r" + std::to_string(round) + "/", prefix = base + std::to_string(b) + "/";
      const std::string value = std::to_string(round) + "/" + std::to_string(b);
      watched_commit c{seq, {}};
      for (int k = 0; k < 4; ++k) c.changes.push_back("[] " + prefix + "k" + std::to_string(k) + " = " + value);
      c.changes.push_back("[] " + base + "last = " + std::to_string(b));
      c.changes.push_back("[] " + prefix + "tmp = " + std::to_string(b));
      if (b > 0) c.changes.push_back("[] " + base + std::to_string(b - 1) + "/tmp erased");
      std::sort(c.changes.begin(), c.changes.end());
      return c;
    };
    auto last_known = [&] { return known.empty() ? std::uint64_t{0} : known.back().seq; };
    for (int round = 0; round < 4; ++round) {
      CAPTURE(round);
      const int wanted = acks_before_kill(rng);
      long last_batch = -1;
      {
        keel::test::child_process w(keel::test::helper_path("crash_writer"),
                                    {"--watch", db.string(), std::to_string(round)});
        auto ready = w.read_line(30s);
        REQUIRE(ready);
        REQUIRE_MESSAGE(ready->rfind("ready ", 0) == 0, *ready);
        CHECK(std::stoull(ready->substr(6)) >= last_known());  // seqs go on after the reopen
        auto take = [&](const std::string& line) {
          REQUIRE_MESSAGE(line.rfind("ack ", 0) == 0, line);
          std::istringstream in(line.substr(4));
          long b = -1;
          std::uint64_t seq = 0;
          in >> b >> seq;
          CHECK(b == last_batch + 1);
          CHECK(seq > last_known());
          known.push_back(batch_commit(round, b, seq));
          last_batch = b;
        };
        for (int acked = 0; acked < wanted; ++acked) {
          auto line = w.read_line(30s);
          REQUIRE(line);
          take(*line);
        }
        w.kill(keel::test::kill_signal);  // somewhere in a later batch: its write, sync, watch or print
        CHECK(w.wait() == 128 + keel::test::kill_signal);
        while (auto line = w.read_line(5s)) take(*line);  // printed before it died: synced
      }
      auto store = open_at(db);
      CHECK(store.last_seq() >= last_known());
      // After the last printed seq: at most the batch in flight, there iff its keys are.
      const auto tail = keel::test::resume_from(store, last_known());
      REQUIRE_MESSAGE(tail.other_error.empty(), tail.other_error);
      CHECK_FALSE(tail.expired_resume_after);
      REQUIRE(tail.commits.size() <= 1);
      const long next_batch = last_batch + 1;
      const std::string next_key = "r" + std::to_string(round) + "/" + std::to_string(next_batch) + "/k0";
      const bool landed = store.get(next_key).value().has_value();
      CHECK(landed == (tail.commits.size() == 1));
      if (!tail.commits.empty()) {
        CHECK(tail.commits[0] == batch_commit(round, next_batch, tail.commits[0].seq));
        CHECK(tail.commits[0].seq > last_known());
        known.push_back(tail.commits[0]);
        ++in_flight;
      }
      // After 0, after each of up to 20 known seqs and the last: exactly the
      // known commits after it (the retained WAL holds them all).
      std::vector<std::uint64_t> points{0};
      const std::size_t step = std::max<std::size_t>(1, known.size() / 20);
      for (std::size_t i = 0; i < known.size(); i += step) points.push_back(known[i].seq);
      points.push_back(last_known());
      for (const std::uint64_t p : points) {
        CHECK_FALSE(keel::test::check_resume(store, known, p, /*kept_from=*/0));
        ++resumes;
      }
      // A commit of this process: above everything printed.
      REQUIRE(store.put("after/" + std::to_string(round), "reopen"));
      const auto mine = keel::test::resume_from(store, last_known());
      REQUIRE(mine.commits.size() == 1);
      CHECK(mine.commits[0].seq > last_known());
      CHECK(mine.commits[0].changes == std::vector<std::string>{"[] after/" + std::to_string(round) + " = reopen"});
      known.push_back(mine.commits[0]);
      REQUIRE(store.close());
    }
    MESSAGE("rocksdb watch crash: " << known.size() << " commits known, " << resumes << " resumes checked, "
                                    << in_flight << " unprinted batches found");
    CHECK(resumes > 0);
  }
}
