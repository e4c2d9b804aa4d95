// Memory stores persisted to a file: load at open, save on flush() and
// close(), atomic saves (a SIGKILL at any moment leaves a loadable file), and
// a damaged file refused at open.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <keel/memory.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

keel::result<keel::memory_store> open_persisted(const fs::path& file) {
  keel::memory_options o;
  o.persist_path = file;
  return keel::memory_store::open(o);
}

}  // namespace

TEST_SUITE("persist") {
  TEST_CASE("a persisted memory store survives close and reopen; flush saves") {
    temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    {
      auto s = open_persisted(file);
      REQUIRE(s);
      CHECK_FALSE(fs::exists(file));  // nothing saved yet
      REQUIRE(s->put("a", "1"));
      REQUIRE(s->put(std::string("\0\xff", 2), std::string(100000, 'v')));
      REQUIRE(s->flush());
      CHECK(fs::exists(file));
      auto verified = keel::verify_dump(file);
      REQUIRE(verified);
      CHECK(verified->records == 2);
      REQUIRE(s->put("b", "2"));
      REQUIRE(s->erase("a"));
      REQUIRE(s->close());
      REQUIRE(s->close());  // idempotent: does not save the dropped data
    }
    {
      auto s = open_persisted(file);
      REQUIRE(s);
      CHECK(s->get("a")->has_value() == false);
      CHECK(s->get("b")->value() == "2");
      CHECK(s->get(std::string("\0\xff", 2))->value() == std::string(100000, 'v'));
      // The destructor saves too.
      REQUIRE(s->put("c", "3"));
    }
    {
      auto s = open_persisted(file);
      REQUIRE(s);
      CHECK(s->get("c")->value() == "3");
      auto st = s->stats();
      REQUIRE(st);
      CHECK(st->keys == 3);
    }
    // No temporary file is left behind: the snapshot, the lock file and one
    // log without frames (its 24-byte header carries the store's seqs across
    // the reopen, docs/watch.md; before, no log was left).
    std::set<std::string> files;
    for (const auto& e : fs::directory_iterator(tmp.path())) {
      const std::string name = e.path().filename().string();
      if (name.rfind("store.keeldump.wal-", 0) == 0) {
        CHECK(fs::file_size(e.path()) == 24);
        files.insert("store.keeldump.wal-*");
      } else {
        files.insert(name);
      }
    }
    CHECK(files == std::set<std::string>{"store.keeldump", "store.keeldump.lock", "store.keeldump.wal-*"});
    // Without persist_path, flush() is a no-op and nothing is written.
    auto plain = keel::memory_store::open({});
    REQUIRE(plain->flush());
    REQUIRE(plain->close());
    CHECK_FALSE(plain->flush());
  }

  TEST_CASE("a damaged or truncated file fails the open: never a silently empty store") {
    temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    {
      auto s = open_persisted(file);
      for (int i = 0; i < 100; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
      REQUIRE(s->close());
    }
    std::string bytes;
    {
      std::ifstream in(file, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size() - 5));
    auto truncated = open_persisted(file);
    REQUIRE_FALSE(truncated);
    CHECK(truncated.error().code() == errc::corruption);
    bytes[bytes.size() / 2] ^= 0x40;
    std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
    auto damaged = open_persisted(file);
    REQUIRE_FALSE(damaged);
    CHECK(damaged.error().code() == errc::corruption);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << "some other file";
    auto foreign = open_persisted(file);
    REQUIRE_FALSE(foreign);
    CHECK(foreign.error().code() == errc::invalid_argument);
  }

  TEST_CASE("a store whose directory is missing fails the open (the log and lock cannot be created)") {
    temp_dir tmp;
    auto s = open_persisted(tmp.path() / "missing-dir" / "store.keeldump");
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == errc::not_found);
    CHECK(keel::test::contains(s.error().message(), "missing-dir"));
  }

  TEST_CASE("a save that cannot be written is reported; the log keeps every write") {
    temp_dir tmp;
    const fs::path dir = tmp.path() / "d";
    fs::create_directories(dir);
    auto s = open_persisted(dir / "store.keeldump");
    REQUIRE(s);
    REQUIRE(s->put("k", "v"));
    // A directory where the temporary file of the save would go.
    fs::create_directories(dir / ("store.keeldump.tmp-" + std::to_string(::getpid())));
    auto f = s->flush();
    REQUIRE_FALSE(f);
    REQUIRE(s->put("k2", "v2"));
    auto c = s->close();
    CHECK_FALSE(c);
    CHECK_FALSE(s->is_open());
    fs::remove(dir / ("store.keeldump.tmp-" + std::to_string(::getpid())));
    auto again = open_persisted(dir / "store.keeldump");
    REQUIRE(again);
    CHECK(again->get("k")->value() == "v");
    CHECK(again->get("k2")->value() == "v2");
  }

  TEST_CASE("flush() racing close() never saves the emptied store over the data") {
    // close() saves, then drops the data; a flush() that passed its own
    // is-open check just before must not save what close() left behind.
    const int rounds = 100;
    for (int round = 0; round < rounds; ++round) {
      CAPTURE(round);
      temp_dir tmp;
      const fs::path file = tmp.path() / "store.keeldump";
      auto s = open_persisted(file);
      REQUIRE(s);
      keel::write_batch b;
      for (int i = 0; i < 50; ++i) b.put("k" + std::to_string(i), "v");
      REQUIRE(s->write(b));
      std::atomic<bool> started{false};
      std::atomic<int> flushes{0};
      std::thread flusher([&] {
        for (;;) {
          auto r = s->flush();
          started.store(true);
          if (!r) {
            CHECK(r.error().code() == errc::closed);
            return;
          }
          flushes.fetch_add(1);
        }
      });
      while (!started.load()) std::this_thread::yield();
      REQUIRE(s->close());
      flusher.join();
      CHECK(flushes.load() > 0);
      auto again = open_persisted(file);
      REQUIRE(again);
      auto n = again->stats();
      REQUIRE(n);
      CHECK(n->keys == 50);
    }
  }

  TEST_CASE("SIGKILL during repeated saves always leaves the old or the new file") {
    temp_dir tmp;
    const fs::path file = tmp.path() / "store.keeldump";
    std::mt19937 rng(12345);
    std::uniform_real_distribution<double> fraction(0.0, 1.0);
    long last_round = -1;
    int killed_mid_save = 0;
    for (int attempt = 0; attempt < 25; ++attempt) {
      CAPTURE(attempt);
      {
        child_process helper(helper_path("persist_helper"), {file.string()});
        // Wait for two saves in this attempt (the time between them is one
        // round: write, fold), then kill at a random moment of the next
        // round, whatever the build's speed (sanitizers make rounds several
        // times longer).
        auto line = helper.read_line(30s);
        REQUIRE(line.has_value());
        REQUIRE(line->rfind("saved ", 0) == 0);
        const auto first_save = std::chrono::steady_clock::now();
        line = helper.read_line(30s);
        REQUIRE(line.has_value());
        REQUIRE(line->rfind("saved ", 0) == 0);
        const auto round_time = std::chrono::steady_clock::now() - first_save;
        std::this_thread::sleep_for(
            std::chrono::duration_cast<std::chrono::microseconds>(round_time * fraction(rng)));
        helper.kill(keel::test::kill_signal);  // Windows: TerminateProcess
        CHECK(helper.wait() == 128 + keel::test::kill_signal);
      }
      // A temporary file left behind: the kill landed inside a save. The
      // next open removes it (its process is gone).
      auto temporaries = [&] {
        int n = 0;
        for (const auto& e : fs::directory_iterator(tmp.path()))
          n += e.path().filename().string().find(".tmp-") != std::string::npos;
        return n;
      };
      if (temporaries() > 0) ++killed_mid_save;
      auto s = open_persisted(file);
      REQUIRE(s);  // loads: never a broken file
      // All 1000 keys hold the value of one round: old or new, never a mix.
      std::string first;
      int n = 0;
      auto c = s->scan();
      for (const auto& e : c) {
        if (n == 0) first = std::string(e.value);
        CHECK(e.value == first);
        ++n;
      }
      CHECK(n == 1000);
      CHECK(temporaries() == 0);
      long round = std::stol(first.substr(6));
      CHECK(round >= 0);
      last_round = round;
      // Closing (when s is reassigned) saves the same content back: harmless.
    }
    CHECK(last_round >= 0);
    MESSAGE("killed inside a save in " << killed_mid_save << " of 25 attempts");
    CHECK(killed_mid_save > 0);  // the test did exercise the crash window
  }
}


// Files written by keel before keyspaces (issue 27; by the ks27 branch at
// 3c0e031): the log of put a=1, put b=<300 x>, erase a, a batch (put c=3,
// erase b, erase_range prefix z, put d=4) and erase_range [c, cz); and the
// snapshot (a dump) closing that store wrote. Both still load, and such a
// store then takes keyspaces.
namespace {

std::string from_hex(std::string_view hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string old_log() {
  return from_hex(
    "4b45454c57414c31010000000000000002000000f2e5bf944b57463205000000010000000000000000000000000000005708"
    "6cf2a2ff652d01016101314b5746323101000002000000000000000000000000000000d879522bbfb65639010162ac02") +
         std::string(300, 'x') +
         from_hex(
    "4b5746320300000003000000000000000000000000000000617904afac57352a0201614b5746321300000004000000000000"
    "00000000000000000068d5dc4620373ff101016301330201620303017a017b01016401344b57463207000000050000000000"
    "00000000000000000000b1da59f05801ade40303016302637a");
}

const char* const old_snapshot_hex =
    "4b45454c44554d50010000001e695e04424c4b310100000004000000717806c901640134454e443101000000000000000200"
    "00000000000001000000250d4684";

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace

TEST_SUITE("persist") {
  TEST_CASE("persist: a log and a snapshot written before keyspaces still load, and the store then takes keyspaces") {
    for (const bool from_log : {true, false}) {
      CAPTURE(from_log);
      temp_dir tmp;
      const fs::path file = tmp.path() / "store";
      if (from_log)
        write_file(tmp.path() / "store.wal-000000000001", old_log());
      else
        write_file(file, from_hex(old_snapshot_hex));
      keel::memory_options o;
      o.persist_path = file;
      {
        auto s = keel::memory_store::open(o);
        REQUIRE(s);
        std::vector<std::pair<std::string, std::string>> all;
        for (const auto& e : s->scan()) all.emplace_back(e.key, e.value);
        CHECK(all == std::vector<std::pair<std::string, std::string>>{{"d", "4"}});
        auto ks = s->keyspace("new");
        REQUIRE(ks);
        REQUIRE(ks->put("k", "v"));
        REQUIRE(s->close());
      }
      auto s = keel::memory_store::open(o);
      REQUIRE(s);
      CHECK(s->get("d")->value_or("") == "4");
      auto names = s->keyspaces();
      REQUIRE(names);
      CHECK(*names == std::vector<std::string>{"", "new"});
      auto ks = s->keyspace("new");
      REQUIRE(ks);
      CHECK(ks->get("k")->value_or("") == "v");
    }
  }
}
