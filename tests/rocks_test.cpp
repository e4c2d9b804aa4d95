// RocksDB-only behaviour: the in-process registry, lock diagnosis across
// processes (helpers run by exec), lock-less filesystems, bad paths, close.
#include <doctest/doctest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <keel/rocksdb.hpp>
#include <string>

#include "support/child_process.hpp"
#include "support/no_lock_fs.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::rocks_options;
using keel::rocks_store;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::no_lock_fs;
using keel::test::temp_dir;
using namespace std::chrono_literals;

using keel::test::contains;

namespace {

keel::result<rocks_store> open_at(const fs::path& p, bool create = true) {
  rocks_options o;
  o.path = p;
  o.create_if_missing = create;
  return rocks_store::open(o);
}


}  // namespace

TEST_SUITE("rocksdb") {
  TEST_CASE("a second open of one directory in this process fails, whatever the spelling") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    auto first = open_at(db);
    REQUIRE(first);
    fs::create_directory_symlink(db, tmp.path() / "link");
    for (const fs::path& spelling : {db, fs::path(db.string() + "/"), tmp.path() / "." / "db",
                                     tmp.path() / "db" / ".." / "db", tmp.path() / "link", tmp.path() / "link/"}) {
      CAPTURE(spelling);
      auto second = open_at(spelling);
      REQUIRE_FALSE(second);
      CHECK(second.error().code() == errc::already_open_in_process);
      CHECK(contains(second.error().message(), db.string()));
    }
    // The first store is unharmed and, once closed, any spelling opens.
    REQUIRE(first->put("k", "v"));
    REQUIRE(first->close());
    auto again = open_at(tmp.path() / "link/");
    REQUIRE(again);
    CHECK(again->get("k")->value() == "v");
  }

  TEST_CASE("close releases the lock at once for another process") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    auto store = open_at(db);
    REQUIRE(store);
    REQUIRE(store->put("k", "v"));
    auto cursor = store->scan();  // live iterator and snapshot at close
    auto snap = store->snapshot();
    {
      // While we hold it, another process is told who holds it: us.
      child_process probe(helper_path("keel_probe"), {db.string()});
      auto line = probe.read_line(30s);
      REQUIRE(line);
      CHECK(contains(*line, "error lock_held_by_other_process"));
      CHECK(contains(*line, "process " + std::to_string(getpid())));
      CHECK(probe.wait() == 1);
    }
    REQUIRE(store->close());
    child_process probe(helper_path("keel_probe"), {db.string()});
    auto line = probe.read_line(30s);
    REQUIRE(line);
    CHECK(contains(*line, "opened"));
    CHECK(probe.wait() == 0);
    CHECK(fs::exists(db / "LOCK"));  // keel never deletes LOCK
  }

  TEST_CASE("a lock held by another process is diagnosed with its PID") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    child_process holder(helper_path("lock_holder"), {db.string()});
    auto ready = holder.read_line(30s);
    REQUIRE(ready);
    REQUIRE(contains(*ready, "ready"));

    auto store = open_at(db);
    REQUIRE_FALSE(store);
    CHECK(store.error().code() == errc::lock_held_by_other_process);
    CHECK(contains(store.error().message(), "process " + std::to_string(holder.pid())));
    CHECK(contains(store.error().message(), "lock_holder"));
    CHECK(contains(store.error().message(), (db / "LOCK").string()));
    CHECK(fs::exists(db / "LOCK"));

    // A failed open leaves no registry entry behind: once the holder is done,
    // the same process opens at once.
    holder.write_line("quit");
    CHECK(holder.wait() == 0);
    auto after = open_at(db);
    REQUIRE(after);
  }

  TEST_CASE("a LOCK left by a killed process does not block an open") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    child_process holder(helper_path("lock_holder"), {db.string()});
    REQUIRE(holder.read_line(30s));
    holder.kill(SIGKILL);
    CHECK(holder.wait() == 128 + SIGKILL);
    REQUIRE(fs::exists(db / "LOCK"));
    auto store = open_at(db);
    REQUIRE(store);
    REQUIRE(store->put("k", "v"));
    REQUIRE(store->close());
    CHECK(fs::exists(db / "LOCK"));
  }

  TEST_CASE("a filesystem without locks gives locks_unsupported, naming the filesystem") {
    temp_dir tmp;
    auto fs_ptr = std::make_shared<no_lock_fs>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs_ptr);
    rocks_options o;
    o.path = tmp.path() / "db";
    o.env = env.get();
    auto store = rocks_store::open(o);
    REQUIRE_FALSE(store);
    CHECK(store.error().code() == errc::locks_unsupported);
    CHECK(contains(store.error().message(), "does not support file locks"));
    CHECK(contains(store.error().message(), keel::detail::filesystem_name(tmp.path())));
    CHECK(contains(store.error().message(), o.path.string()));
    // The failed open released its claim.
    auto plain = open_at(o.path);
    CHECK(plain);
  }

  TEST_CASE("bad paths give precise errors naming the path") {
    temp_dir tmp;
    SUBCASE("missing directory with create_if_missing = false") {
      auto s = open_at(tmp.path() / "missing" / "db", false);
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::not_found);
      CHECK(contains(s.error().message(), (tmp.path() / "missing" / "db").string()));
    }
    SUBCASE("existing empty directory with create_if_missing = false") {
      fs::create_directory(tmp.path() / "empty");
      auto s = open_at(tmp.path() / "empty", false);
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::not_found);
      CHECK(contains(s.error().message(), (tmp.path() / "empty").string()));
    }
    SUBCASE("missing parents are created when create_if_missing is true") {
      auto s = open_at(tmp.path() / "a" / "b" / "db");
      CHECK(s);
    }
    SUBCASE("a regular file") {
      std::ofstream(tmp.path() / "file") << "not a db";
      auto s = open_at(tmp.path() / "file");
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::invalid_argument);
      CHECK(contains(s.error().message(), (tmp.path() / "file").string()));
      auto under = open_at(tmp.path() / "file" / "db");
      REQUIRE_FALSE(under);
      CHECK(under.error().code() == errc::invalid_argument);
    }
    SUBCASE("an empty path") {
      auto s = open_at("");
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::invalid_argument);
    }
    SUBCASE("an unwritable directory") {
      const fs::path db = tmp.path() / "db";
      REQUIRE(open_at(db));  // create a database, then close it
      if (geteuid() == 0) {
        // root ignores permissions: ask an unprivileged helper (nobody).
        fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                        fs::perms::others_read | fs::perms::others_exec);
        child_process probe(helper_path("keel_probe"), {"--drop-privileges", "65534", db.string()});
        auto line = probe.read_line(30s);
        REQUIRE(line);
        CHECK(contains(*line, "error permission_denied"));
        CHECK(contains(*line, db.string()));
        CHECK(probe.wait() == 1);
      } else {
        fs::permissions(db, fs::perms::owner_read | fs::perms::owner_exec);
        auto s = open_at(db);
        fs::permissions(db, fs::perms::owner_all);
        REQUIRE_FALSE(s);
        CHECK(s.error().code() == errc::permission_denied);
        CHECK(contains(s.error().message(), db.string()));
      }
    }
  }

  TEST_CASE("data written before close survives a reopen, and the LOCK file stays") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = open_at(db);
      REQUIRE(s);
      for (int i = 0; i < 1000; ++i) REQUIRE(s->put("k" + std::to_string(i), std::string(100, 'x')));
      REQUIRE(s->close());
    }
    CHECK(fs::exists(db / "LOCK"));
    auto s = open_at(db);
    REQUIRE(s);
    CHECK(s->get("k999")->value() == std::string(100, 'x'));
  }

  TEST_CASE("the destructor closes: reopen right after scope exit") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    for (int i = 0; i < 20; ++i) {
      auto s = open_at(db);
      REQUIRE(s);
      auto c = s->scan();
      auto snap = s->snapshot();
      REQUIRE(s->put("i", std::to_string(i)));
    }
    auto s = open_at(db);
    REQUIRE(s);
    CHECK(s->get("i")->value() == "19");
  }

  TEST_CASE("with_db gives RocksDB calls keel does not wrap, and closed after close") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    auto n = s->policy().with_db([](rocksdb::DB& db) {
      std::string v;
      db.GetProperty("rocksdb.estimate-num-keys", &v);
      return v;
    });
    REQUIRE(n);
    CHECK(*n == "0");
    REQUIRE(s->close());
    CHECK(s->policy().with_db([](rocksdb::DB&) {}).error() == errc::closed);
  }

  TEST_CASE("the info log is keel's (a full disk cannot abort through it); previous LOG kept; read-only writes none") {
    temp_dir tmp;
    const fs::path dir = tmp.path() / "db";
    auto count_logs = [&] {
      int n = 0;
      for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().rfind("LOG", 0) == 0 ? 1 : 0;
      return n;
    };
    auto is_keels = [](rocks_store& s) {
      auto r = s.policy().with_db([](rocksdb::DB& db) {
        return dynamic_cast<keel::detail::rocks_info_log*>(db.GetOptions().info_log.get()) != nullptr;
      });
      REQUIRE(r);
      return *r;
    };
    {
      auto s = open_at(dir);
      REQUIRE(s);
      CHECK(is_keels(*s));
      REQUIRE(s->put("k", "v"));
      REQUIRE(s->close());
    }
    CHECK(fs::file_size(dir / "LOG") > 0);  // RocksDB's options and events, as before
    CHECK(count_logs() == 1);
    {
      auto s = open_at(dir);
      REQUIRE(s);
      REQUIRE(s->close());
    }
    CHECK(count_logs() == 2);  // LOG and LOG.old.<microseconds>
    {
      rocks_options o;
      o.path = dir;
      o.read_only = true;
      auto s = rocks_store::open(o);
      REQUIRE(s);
      CHECK(!is_keels(*s));
      REQUIRE(s->close());
    }
    CHECK(count_logs() == 2);  // a read-only open writes no LOG
    {
      rocks_options o;
      o.path = dir;
      o.customize = [](rocksdb::Options& ro) { ro.info_log = nullptr; };  // RocksDB's own logger back
      auto s = rocks_store::open(o);
      REQUIRE(s);
      CHECK(!is_keels(*s));
      REQUIRE(s->close());
    }
    CHECK(count_logs() >= 3);  // RocksDB's own logger rotated LOG too (its naming, its count)
  }
}
