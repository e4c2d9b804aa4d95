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
#include <algorithm>
#include <atomic>
#include <keel/rocksdb.hpp>
#include <string>
#include <thread>
#include <vector>

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

// Keyspaces as column families (issue 27): what only RocksDB has to show.
TEST_SUITE("rocksdb keyspaces") {
  // The column families in `db`, by RocksDB's names (the store is closed).
  std::vector<std::string> column_families(const fs::path& db) {
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db.string(), &names).ok());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<std::string> all_keys(rocks_store::cursor c) {
    std::vector<std::string> out;
    for (; c.valid(); c.advance()) out.emplace_back(c.current().key);
    REQUIRE_FALSE(c.error());
    return out;
  }

  TEST_CASE("keyspaces survive close and reopen: every column family is opened at open") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = open_at(db);
      REQUIRE(s);
      auto users = s->keyspace("users");
      auto index = s->keyspace("index");
      REQUIRE(users);
      REQUIRE(index);
      REQUIRE(users->put("k", "user"));
      REQUIRE(index->put("k", "index"));
      REQUIRE(s->put("k", "default"));
      REQUIRE(s->close());
    }
    CHECK(column_families(db) == std::vector<std::string>{"default", "keel:index", "keel:users"});
    auto s = open_at(db);
    REQUIRE(s);  // RocksDB refuses a read-write open that leaves a column family out
    CHECK(*s->keyspaces() == std::vector<std::string>{"", "index", "users"});
    auto users = s->keyspace("users");
    REQUIRE(users);
    CHECK(users->get("k")->value() == "user");
    CHECK(s->keyspace("index")->get("k")->value() == "index");
    CHECK(s->get("k")->value() == "default");
    CHECK(all_keys(s->scan()) == std::vector<std::string>{"k"});  // a scan never leaves its keyspace
    CHECK(*s->keyspaces() == std::vector<std::string>{"", "index", "users"});  // opening created nothing
  }

  TEST_CASE("a read-only open sees every keyspace and creates none") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = open_at(db);
      REQUIRE(s);
      REQUIRE(s->keyspace("a")->put("k", "1"));
      REQUIRE(s->close());
    }
    rocks_options o;
    o.path = db;
    o.read_only = true;
    auto s = rocks_store::open(o);
    REQUIRE(s);
    CHECK(*s->keyspaces() == std::vector<std::string>{"", "a"});
    auto a = s->keyspace("a");
    REQUIRE(a);
    CHECK(a->get("k")->value() == "1");
    auto missing = s->keyspace("b");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code() == errc::not_found);
    CHECK(a->put("k", "2").error().code() == errc::read_only);
    CHECK(s->drop_keyspace("a").error().code() == errc::read_only);
    REQUIRE(s->close());
    CHECK(column_families(db) == std::vector<std::string>{"default", "keel:a"});
  }

  TEST_CASE("after close() the path reopens at once with its keyspaces, here and in another process") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    auto s = open_at(db);
    REQUIRE(s);
    auto a = s->keyspace("a");
    REQUIRE(a);
    REQUIRE(a->put("k1", "v1"));
    REQUIRE(a->put("k2", "v2"));
    auto cursor = a->scan();  // a live iterator on the column family at close
    REQUIRE(cursor.valid());
    auto snap = s->snapshot();
    REQUIRE(s->drop_keyspace("a"));  // its handle is kept by the cursor until close
    auto b = s->keyspace("b");
    REQUIRE(b);
    REQUIRE(b->put("k", "v"));
    REQUIRE(s->close());
    CHECK(b->get("k").error().code() == errc::closed);
    CHECK(b->put("k", "w").error().code() == errc::closed);
    cursor.advance();
    CHECK_FALSE(cursor.valid());
    {
      child_process probe(helper_path("keel_probe"), {db.string()});
      auto line = probe.read_line(30s);
      REQUIRE(line);
      CHECK(contains(*line, "opened"));
      CHECK(probe.wait() == 0);
    }
    auto again = open_at(db);
    REQUIRE(again);
    CHECK(*again->keyspaces() == std::vector<std::string>{"", "b"});
    CHECK(again->keyspace("b")->get("k")->value() == "v");
  }

  TEST_CASE("dropping a keyspace of 100k keys is one step and removes its data") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    auto s = open_at(db);
    REQUIRE(s);
    auto big = s->keyspace("big");
    REQUIRE(big);
    constexpr int n = 100000;
    for (int i = 0; i < n; i += 1000) {
      keel::write_batch b;
      for (int j = i; j < i + 1000; ++j) b.put(*big, "key" + std::to_string(j), std::string(50, 'v'));
      REQUIRE(s->write(b));
    }
    REQUIRE(s->put("key1", "default"));
    REQUIRE(s->policy().with_db([](rocksdb::DB& d) { return d.Flush(rocksdb::FlushOptions()).ok(); }).value());
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(s->drop_keyspace("big"));
    const auto took = std::chrono::steady_clock::now() - start;
    MESSAGE("drop_keyspace of " << n << " keys: "
                                << std::chrono::duration_cast<std::chrono::microseconds>(took).count() << " us");
    CHECK(took < 2s);  // a scan-and-delete of 100k keys under sanitizers takes longer than this
    CHECK(big->get("key1").error().code() == errc::not_found);
    CHECK(big->put("key1", "x").error().code() == errc::not_found);
    CHECK(big->scan().error()->code() == errc::not_found);
    CHECK(*s->keyspaces() == std::vector<std::string>{""});
    CHECK(s->drop_keyspace("big").error().code() == errc::not_found);
    CHECK(s->get("key1")->value() == "default");
    auto recreated = s->keyspace("big");
    REQUIRE(recreated);
    CHECK_FALSE(recreated->get("key1")->has_value());  // a new, empty keyspace
    CHECK(big->get("key1").error().code() == errc::not_found);  // the old handle does not reach it
    REQUIRE(recreated->put("key1", "new"));
    CHECK(big->get("key1").error().code() == errc::not_found);
    REQUIRE(s->close());
    // The dropped column family's files are gone: a fresh compaction-free
    // reopen lists only the new one, and the SSTs left are small.
    CHECK(column_families(db) == std::vector<std::string>{"default", "keel:big"});
    std::uintmax_t sst_bytes = 0;
    for (const auto& e : fs::directory_iterator(db))
      if (e.path().extension() == ".sst") sst_bytes += e.file_size();
    CHECK(sst_bytes < 100000);  // 100k keys of 50-byte values were about 5 MB (1 MB compressed)
  }

  TEST_CASE("a batch across keyspaces is atomic; one naming a missing keyspace writes nothing") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = open_at(db);
      REQUIRE(s);
      auto a = s->keyspace("a");
      auto b = s->keyspace("b");
      REQUIRE(a);
      REQUIRE(b);
      keel::write_batch bad;
      bad.put(*a, "k", "a").put("k", "default").put(keel::keyspace_name("nope"), "k", "x").put(*b, "k", "b");
      auto r = s->write(bad);
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::not_found);
      CHECK_FALSE(a->get("k")->has_value());
      CHECK_FALSE(b->get("k")->has_value());
      CHECK_FALSE(s->get("k")->has_value());
      CHECK(*s->keyspaces() == std::vector<std::string>{"", "a", "b"});  // the batch created nothing

      REQUIRE(s->put("gone", "1"));
      REQUIRE(a->put("gone", "1"));
      auto snap = s->policy().snapshot();
      REQUIRE(snap);
      keel::write_batch good;
      good.put(*a, "k", "a").put("k", "default").put(*b, "k", "b").erase(*a, "gone").erase_range(*b, keel::key_range::all());
      good.put(*b, "k2", "b2");
      REQUIRE(s->write(good));
      CHECK(a->get("k")->value() == "a");
      CHECK_FALSE(a->get("gone")->has_value());
      CHECK(s->get("gone")->value() == "1");  // erase(*a, ...) did not touch the default keyspace
      CHECK_FALSE(b->get("k")->has_value());  // the open-ended erase_range after put, in b only
      CHECK(b->get("k2")->value() == "b2");
      CHECK(s->get("k")->value() == "default");
      // One snapshot covers every keyspace, as of its creation.
      CHECK(snap->get(a->handle(), "gone")->value() == "1");
      CHECK_FALSE(snap->get(a->handle(), "k")->has_value());
      CHECK_FALSE(snap->get(b->handle(), "k2")->has_value());
      REQUIRE(s->close());
    }
    auto s = open_at(db);
    REQUIRE(s);
    CHECK(s->keyspace("a")->get("k")->value() == "a");
    CHECK(s->keyspace("b")->get("k2")->value() == "b2");
    CHECK(s->get("k")->value() == "default");
  }

  TEST_CASE("keyspace names are any bytes: NUL, 0xFF, 255 bytes, \"default\"; encoded as column family names") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    const std::string nul("a\0b", 3), high("\xff\xfe", 2), longest(255, '\x80'), like_default("default");
    {
      auto s = open_at(db);
      REQUIRE(s);
      for (const std::string& n : {nul, high, longest, like_default}) REQUIRE(s->keyspace(n)->put("k", n));
      CHECK(s->keyspace(std::string(256, 'x')).error().code() == errc::invalid_argument);
      CHECK(s->drop_keyspace(std::string(256, 'x')).error().code() == errc::invalid_argument);
      CHECK(s->drop_keyspace("").error().code() == errc::invalid_argument);
      CHECK_FALSE(s->get("k")->has_value());  // "default" is not the default keyspace
      REQUIRE(s->close());
    }
    CHECK(column_families(db) == std::vector<std::string>{"default", "keel:%80" + [] {
            std::string t;
            for (int i = 1; i < 255; ++i) t += "%80";
            return t;
          }(), "keel:%FF%FE", "keel:a%00b", "keel:default"});
    auto s = open_at(db);
    REQUIRE(s);
    std::vector<std::string> expected{"", high, longest, nul, like_default};
    std::sort(expected.begin(), expected.end());
    CHECK(*s->keyspaces() == expected);
    for (const std::string& n : {nul, high, longest, like_default}) CHECK(s->keyspace(n)->get("k")->value() == n);
    CHECK(s->keyspace("a")->get("k")->has_value() == false);  // "a\0b" is not "a"
  }

  TEST_CASE("column families another program made are opened, not listed, not written") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      rocksdb::Options o;
      o.create_if_missing = true;
      rocksdb::DB* raw = nullptr;
      REQUIRE(rocksdb::DB::Open(o, db.string(), &raw).ok());
      rocksdb::ColumnFamilyHandle* cf = nullptr;
      REQUIRE(raw->CreateColumnFamily(rocksdb::ColumnFamilyOptions(o), "theirs", &cf).ok());
      REQUIRE(raw->Put(rocksdb::WriteOptions(), cf, "k", "v").ok());
      REQUIRE(raw->DestroyColumnFamilyHandle(cf).ok());
      REQUIRE(raw->Close().ok());
      delete raw;
    }
    auto s = open_at(db);
    REQUIRE(s);
    CHECK(*s->keyspaces() == std::vector<std::string>{""});
    auto theirs = s->keyspace("theirs");  // keel's "theirs" is "keel:theirs"
    REQUIRE(theirs);
    CHECK_FALSE(theirs->get("k")->has_value());
    REQUIRE(s->close());
    CHECK(column_families(db) == std::vector<std::string>{"default", "keel:theirs", "theirs"});
  }

  TEST_CASE("a checkpoint carries every keyspace") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    REQUIRE(s->keyspace("a")->put("k", "in a"));
    REQUIRE(s->keyspace(std::string("\0", 1))->put("k", "in NUL"));
    REQUIRE(s->put("k", "in default"));
    REQUIRE(s->checkpoint(tmp.path() / "copy"));
    REQUIRE(s->close());
    auto copy = open_at(tmp.path() / "copy", false);
    REQUIRE(copy);
    CHECK(*copy->keyspaces() == std::vector<std::string>{"", std::string("\0", 1), "a"});
    CHECK(copy->keyspace("a")->get("k")->value() == "in a");
    CHECK(copy->keyspace(std::string("\0", 1))->get("k")->value() == "in NUL");
    CHECK(copy->get("k")->value() == "in default");
  }

  TEST_CASE("writes in another keyspace do not conflict with a default-keyspace transaction") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    auto a = s->keyspace("a");
    REQUIRE(a);
    {
      auto tx = s->transaction();
      REQUIRE(tx.get("k"));
      REQUIRE(a->put("k", "1"));                                          // the same key, keyspace a
      REQUIRE(s->write(keel::write_batch{}.put(*a, "k", "2").erase(*a, "j")));  // and a batch there
      REQUIRE(tx.put("k", "tx"));
      REQUIRE(tx.commit());
    }
    {
      auto tx = s->transaction();
      REQUIRE(tx.get("k"));
      REQUIRE(s->write(keel::write_batch{}.put(*a, "x", "1").put("k", "3")));  // the default keyspace's k
      REQUIRE(tx.put("k", "tx2"));
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::conflict);
    }
    CHECK(s->get("k")->value() == "3");
    CHECK(a->get("k")->value() == "2");
  }

  TEST_CASE("drops, recreations and close race with operations through keyspace handles") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    REQUIRE(s->keyspace("a"));
    std::atomic<bool> stop{false};
    std::atomic<long> done{0}, unexpected{0};
    auto expected = [&](const keel::error& e) {
      if (e.code() != errc::not_found && e.code() != errc::closed) ++unexpected;
    };
    std::vector<std::thread> workers;
    for (int t = 0; t < 3; ++t) {
      workers.emplace_back([&, t] {
        for (long i = 0; !stop.load(); ++i) {
          auto a = s->keyspace("a");  // the current one, or a fresh one (racing the drops)
          if (!a) {
            expected(a.error());
            if (a.error().code() == errc::closed) return;
            continue;
          }
          const std::string key = "k" + std::to_string(t) + "-" + std::to_string(i % 50);
          if (auto r = a->put(key, "v"); !r) expected(r.error());
          if (auto r = a->get(key); !r) expected(r.error());
          if (auto r = s->write(keel::write_batch{}.put(*a, key, "w").put(key, "w")); !r) expected(r.error());
          auto c = a->scan();
          for (int n = 0; c.valid() && n < 20; ++n) c.advance();
          if (c.error()) expected(*c.error());
          ++done;
        }
      });
    }
    auto at_least = [&](long n) {  // polls the workers' progress, with a deadline
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      while (done.load() < n && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      return done.load() >= n;
    };
    for (int round = 0; round < 20; ++round) {
      CHECK(at_least(done.load() + 5));
      auto dropped = s->drop_keyspace("a");
      if (!dropped) CHECK(dropped.error().code() == errc::not_found);  // never missing for long: workers recreate it
    }
    CHECK(at_least(done.load() + 5));
    REQUIRE(s->close());  // with workers in flight
    stop = true;
    for (auto& w : workers) w.join();
    CHECK(unexpected.load() == 0);
    auto again = open_at(tmp.path() / "db");  // the close promise, with keyspaces dropped under cursors
    REQUIRE(again);
  }

  TEST_CASE("handles: not_found after drop, a cursor from before the drop reads on, a snapshot says expired") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    auto a = s->keyspace("a");
    REQUIRE(a);
    for (int i = 0; i < 300; ++i) REQUIRE(a->put("k" + std::to_string(1000 + i), "v"));
    auto snap = s->policy().snapshot();
    REQUIRE(snap);
    auto cursor = a->scan();
    REQUIRE(s->drop_keyspace("a"));
    std::size_t n = 0;
    for (; cursor.valid(); cursor.advance()) ++n;
    CHECK_FALSE(cursor.error());
    CHECK(n == 300);  // reads on past the drop (a live iterator keeps the dropped column family's data)
    CHECK(snap->get(a->handle(), "k1000").error().code() == errc::snapshot_expired);
    CHECK(snap->scan(a->handle(), keel::key_range::all()).error()->code() == errc::snapshot_expired);
    CHECK(a->contains("k1000").error().code() == errc::not_found);
    CHECK(a->erase_range(keel::key_range::all()).error().code() == errc::not_found);
    CHECK(a->compact().error().code() == errc::not_found);
    CHECK(a->multi_get({"k1000"}).error().code() == errc::not_found);
    keel::write_batch b;
    b.put(*a, "k", "v");
    CHECK(s->write(b).error().code() == errc::not_found);
    { auto gone = std::move(cursor); }  // the last reader: keel destroys the column family handle now
    REQUIRE(s->close());
  }

  TEST_CASE("a snapshot does not have a keyspace created after it, nor one dropped before it") {
    temp_dir tmp;
    auto s = open_at(tmp.path() / "db");
    REQUIRE(s);
    auto old = s->keyspace("old");
    REQUIRE(old);
    REQUIRE(old->put("k", "old"));
    auto before = s->policy().snapshot();  // "old" exists, "new" not yet
    REQUIRE(before);
    auto fresh = s->keyspace("new");
    REQUIRE(fresh);
    REQUIRE(fresh->put("k", "v"));
    CHECK(before->get(fresh->handle(), "k").error().code() == errc::not_found);  // not an empty keyspace
    CHECK(before->contains(fresh->handle(), "k").error().code() == errc::not_found);
    CHECK(before->scan(fresh->handle(), keel::key_range::all()).error()->code() == errc::not_found);
    CHECK(before->get(old->handle(), "k").value() == std::optional<std::string>("old"));
    auto with_new = s->policy().snapshot();
    REQUIRE(with_new);
    CHECK(with_new->get(fresh->handle(), "k").value() == std::optional<std::string>("v"));
    REQUIRE(s->drop_keyspace("old"));
    auto after = s->policy().snapshot();  // taken after the drop: the old handle is stale there
    REQUIRE(after);
    CHECK(after->get(old->handle(), "k").error().code() == errc::not_found);
    CHECK(before->get(old->handle(), "k").error().code() == errc::snapshot_expired);  // dropped after `before`
    REQUIRE(s->close());
  }
}
