// Read-only open of the RocksDB backend (rocks_options::read_only): reads
// while another process writes (a helper run by exec), never disturbs that
// process's lock, refuses every write with errc::read_only, creates nothing,
// and follows the in-process registry rule (one writer, or any number of
// read-only stores, never both).
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <keel/doctor.hpp>
#include <keel/rocksdb.hpp>
#include <map>
#include <sstream>
#include <string>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::rocks_options;
using keel::rocks_store;
using keel::test::child_process;
using keel::test::contains;
using keel::test::helper_path;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

keel::result<rocks_store> open_read_only(const fs::path& p) {
  rocks_options o;
  o.path = p;
  o.read_only = true;
  return rocks_store::open(o);
}

// A raw-RocksDB writer in another process (tests/lock_holder.cpp).
child_process start_writer(const fs::path& db) {
  child_process child(helper_path("lock_holder"), {db.string()});
  auto line = child.read_line(30s);
  REQUIRE(line.has_value());
  REQUIRE(*line == "ready " + std::to_string(child.pid()));
  return child;
}

void writer_put(child_process& w, const std::string& k, const std::string& v) {
  w.write_line("put " + k + " " + v);
  auto line = w.read_line(30s);
  REQUIRE(line.has_value());
  REQUIRE(*line == "ok");
}

// Every file of a directory with its bytes (directories: empty).
std::map<std::string, std::string> files_of(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    out[e.path().filename().string()] = bytes.str();
  }
  return out;
}

}  // namespace

TEST_SUITE("read_only") {
  TEST_CASE("read-only beside a writer in another process: reads as of its open, the lock stays with the writer") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    child_process writer = start_writer(db);
    writer_put(writer, "a", "1");

    {
      auto ro = open_read_only(db);
      REQUIRE(ro);
      CHECK(ro->policy().read_only());
      CHECK(ro->get("a")->value() == "1");
      writer_put(writer, "b", "2");
      // The view is as of the open: the later write is not seen.
      CHECK_FALSE(ro->get("b")->has_value());
      auto snap = ro->snapshot();
      CHECK(snap.get("a")->value() == "1");
      int n = 0;
      for (const auto& e : ro->scan()) {
        CHECK(e.key == "a");
        ++n;
      }
      CHECK(n == 1);
      // A second read-only store of the same directory in this process is fine.
      auto ro2 = open_read_only(fs::path(db.string() + "/"));
      REQUIRE(ro2);
      CHECK(ro2->get("b")->value() == "2");  // opened later: sees the later write
      REQUIRE(ro2->close());
      REQUIRE(ro->close());
    }

    // The writer still holds its lock: /proc/locks names it, a read-write
    // open is refused, and the writer keeps writing.
    auto holder = keel::detail::find_lock_holder(db / "LOCK");
    REQUIRE(holder);
    CHECK(holder->pid == writer.pid());
    auto rw = rocks_store::open({.path = db});
    REQUIRE_FALSE(rw);
    CHECK(rw.error().code() == errc::lock_held_by_other_process);
    writer_put(writer, "c", "3");
    writer.write_line("quit");
    CHECK(writer.wait() == 0);

    auto after = open_read_only(db);
    REQUIRE(after);
    CHECK(after->get("c")->value() == "3");
  }

  TEST_CASE("every write on a read-only store is refused with read_only; nothing changes on disk") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = rocks_store::open({.path = db});
      REQUIRE(s);
      REQUIRE(s->put("k", "v"));
    }
    const auto before = files_of(db);
    auto ro = open_read_only(db);
    REQUIRE(ro);
    auto p = ro->put("k", "changed");
    REQUIRE_FALSE(p);
    CHECK(p.error().code() == errc::read_only);
    CHECK(contains(p.error().message(), db.string()));
    CHECK(contains(p.error().message(), "read-only"));
    auto e = ro->erase("k");
    REQUIRE_FALSE(e);
    CHECK(e.error().code() == errc::read_only);
    keel::write_batch b;
    b.put("x", "y");
    b.erase("k");
    auto w = ro->write(b);
    REQUIRE_FALSE(w);
    CHECK(w.error().code() == errc::read_only);
    CHECK(ro->erase_range(keel::key_range::all()).error().code() == errc::read_only);
    CHECK(ro->compact().error().code() == errc::read_only);
    // A transaction reads; its commit is refused when it wrote, allowed when it only read.
    auto tx = ro->transaction();
    CHECK(tx.get("k")->value() == "v");
    REQUIRE(tx.put("k", "from a transaction"));
    auto c = tx.commit();
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::read_only);
    auto reader = ro->transaction();
    CHECK(reader.get("k")->value() == "v");
    CHECK(reader.commit());
    CHECK(ro->multi_get({"k", "x"})->at(0) == std::optional<std::string>("v"));
    CHECK(ro->get("k")->value() == "v");
    CHECK_FALSE(ro->get("x")->has_value());
    REQUIRE(ro->close());  // no WAL sync attempted on a read-only DB
    auto closed = ro->put("k", "v");
    REQUIRE_FALSE(closed);
    CHECK(closed.error().code() == errc::closed);  // closed wins over read_only
    CHECK(files_of(db) == before);  // no LOG, no LOCK taken or created, nothing written
  }

  TEST_CASE("a read-only open creates nothing: a missing path or an empty directory is not_found") {
    temp_dir tmp;
    const fs::path missing = tmp.path() / "a" / "b" / "db";
    auto r = open_read_only(missing);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::not_found);
    CHECK(contains(r.error().message(), missing.string()));
    CHECK_FALSE(fs::exists(tmp.path() / "a"));

    const fs::path empty = tmp.path() / "empty";
    fs::create_directory(empty);
    auto e = open_read_only(empty);
    REQUIRE_FALSE(e);
    CHECK(e.error().code() == errc::not_found);
    CHECK(contains(e.error().message(), "no database"));
    CHECK(fs::is_empty(empty));

    // create_if_missing does not change that.
    rocks_options o;
    o.path = missing;
    o.read_only = true;
    o.create_if_missing = true;
    auto c = rocks_store::open(o);
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::not_found);
    CHECK_FALSE(fs::exists(tmp.path() / "a"));
  }

  TEST_CASE("in one process: a writer or read-only stores, never both; the writer's lock is never disturbed") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto writer = rocks_store::open({.path = db});
      REQUIRE(writer);
      REQUIRE(writer->put("k", "v"));
      for (const fs::path& spelling : {db, fs::path(db.string() + "/"), tmp.path() / "." / "db"}) {
        CAPTURE(spelling);
        auto ro = open_read_only(spelling);
        REQUIRE_FALSE(ro);
        CHECK(ro.error().code() == errc::already_open_in_process);
        CHECK(contains(ro.error().message(), "read-write"));
        CHECK(contains(ro.error().message(), "snapshot()"));
      }
      // The lock is still this process's: another process cannot open.
      auto holder = keel::detail::find_lock_holder(db / "LOCK");
      REQUIRE(holder);
      CHECK(holder->pid == ::getpid());
      child_process probe(helper_path("lock_holder"), {"--probe", db.string()});
      auto line = probe.read_line(30s);
      REQUIRE(line);
      CHECK(contains(*line, "error"));
      CHECK(probe.wait() == 1);
      REQUIRE(writer->put("k2", "v2"));
    }
    {
      auto ro = open_read_only(db);
      REQUIRE(ro);
      CHECK(ro->get("k2")->value() == "v2");
      auto rw = rocks_store::open({.path = db});
      REQUIRE_FALSE(rw);
      CHECK(rw.error().code() == errc::already_open_in_process);
      CHECK(contains(rw.error().message(), "read-only"));
    }
    // Once the read-only store is gone, a writer opens.
    auto rw = rocks_store::open({.path = db});
    REQUIRE(rw);
  }

  TEST_CASE("doctor: a missing MANIFEST or a MANIFEST that is a directory is never 'an open would succeed'") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = rocks_store::open({.path = db});
      REQUIRE(s);
      REQUIRE(s->put("k", "v"));
    }
    std::string manifest;
    std::getline(std::ifstream(db / "CURRENT"), manifest);
    REQUIRE(manifest.rfind("MANIFEST-", 0) == 0);
    SUBCASE("missing") { fs::remove(db / manifest); }
    SUBCASE("a directory") {
      fs::remove(db / manifest);
      fs::create_directory(db / manifest);
    }
    const auto before = files_of(db);
    keel::doctor_report r = keel::diagnose(db);
    CHECK(r.readable == false);
    CHECK(r.verdict == keel::doctor_verdict::will_not_open);
    std::string all;
    for (const auto& f : r.findings) all += f + "\n";
    CHECK(contains(all, "An open fails with corruption"));
    CHECK(contains(all, manifest));
    CHECK(contains(all, "would NOT succeed"));
    CHECK_FALSE(contains(all, "would succeed now"));
    CHECK(contains(r.advice, "damaged"));
    CHECK(files_of(db) == before);
  }
}
