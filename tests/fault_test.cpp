// Fault injection through a rocksdb::FileSystemWrapper (support/fault_fs.hpp):
// ENOSPC and EIO on append, on sync, and on creating files (including during
// open). keel must report no_space / io_error, keep every acknowledged write,
// release the directory on close() even while the disk is failing, and
// recover once the fault clears: in place (DB::Resume through with_db) or by
// close + reopen.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <keel/rocksdb.hpp>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "support/fault_fs.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::rocks_options;
using keel::rocks_store;
using keel::write_batch;
using keel::test::fault;
using keel::test::fault_fs;
using keel::test::temp_dir;

namespace {

int fault_cases = 0;  // reported at the end

std::string name_of(fault f) {
  switch (f) {
    case fault::append: return "append";
    case fault::sync: return "sync";
    case fault::new_writable: return "new_writable";
    default: return "none";
  }
}

struct faulty_db {
  temp_dir tmp;
  std::shared_ptr<fault_fs> fs = std::make_shared<fault_fs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  fs::path path() const { return tmp.path() / "db"; }
  keel::result<rocks_store> open(bool with_faults = true) const {
    rocks_options o;
    o.path = path();
    o.sync_writes = true;
    if (with_faults) o.env = env.get();
    return rocks_store::open(o);
  }
};

// Every acknowledged key has its value.
void check_acked(const rocks_store& store, const std::map<std::string, std::string>& acked) {
  for (const auto& entry : acked) {
    const std::string& k = entry.first;  // not a structured binding: clang 14
    const std::string& v = entry.second;  // cannot capture one in doctest's lambdas
    auto got = store.get(k);
    REQUIRE_MESSAGE(got, "get " << k << ": " << got.error().message());
    REQUIRE_MESSAGE(got->has_value(), "acknowledged key " << k << " is lost");
    CHECK(**got == v);
  }
}

// A failed batch is visible whole or not at all.
void check_batches_whole(const rocks_store& store, int batches) {
  for (int b = 0; b < batches; ++b) {
    int present = 0;
    for (int i = 0; i < 3; ++i) present += *store.contains("f/" + std::to_string(b) + "/" + std::to_string(i)) ? 1 : 0;
    CAPTURE(b);
    CHECK((present == 0 || present == 3));
  }
}

enum class recovery { resume_in_place, close_and_reopen };

void run_fault_case(fault what, int err, recovery how) {
  const std::string fault_name = name_of(what);
  CAPTURE(fault_name);
  CAPTURE(err);
  ++fault_cases;
  const errc expected = err == ENOSPC ? errc::no_space : errc::io_error;
  faulty_db d;
  auto opened = d.open();
  REQUIRE(opened);
  rocks_store store = std::move(*opened);
  std::map<std::string, std::string> acked;
  for (int i = 0; i < 50; ++i) {
    const std::string k = "a/" + std::to_string(i);
    REQUIRE(store.put(k, "before-" + std::to_string(i)));
    acked[k] = "before-" + std::to_string(i);
  }

  d.fs->set(what, err);
  if (what == fault::new_writable) {
    // Nothing creates a file until the memtable is flushed (or the WAL
    // switched): force a flush, which must fail.
    auto flushed = store.policy().with_db([](rocksdb::DB& db) { return db.Flush(rocksdb::FlushOptions()); });
    REQUIRE(flushed);
    CHECK_FALSE(flushed->ok());
  }
  std::optional<keel::error> first_failure;
  int batches = 0;
  for (int i = 0; i < 20; ++i) {
    write_batch b;
    for (int j = 0; j < 3; ++j) b.put("f/" + std::to_string(i) + "/" + std::to_string(j), "during");
    ++batches;
    auto r = store.write(b);
    if (r) {
      for (int j = 0; j < 3; ++j) acked["f/" + std::to_string(i) + "/" + std::to_string(j)] = "during";
      continue;
    }
    if (!first_failure) first_failure = r.error();
    CHECK_MESSAGE((r.error() == errc::no_space || r.error() == errc::io_error), r.error().message());
  }
  REQUIRE_MESSAGE(first_failure, "no write failed while the fault was on");
  CHECK_MESSAGE(first_failure->code() == expected, first_failure->message());
  CHECK(first_failure->message().find(d.path().string()) != std::string::npos);
  CHECK(d.fs->injected() > 0);
  // Reads keep working while writes fail.
  check_acked(store, acked);

  if (how == recovery::resume_in_place) {
    d.fs->clear();
    // DB::Resume() reports Busy while RocksDB's own auto-recovery runs; poll
    // it (bounded), never sleeping for a fixed time.
    rocksdb::Status resumed;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    do {
      auto r = store.policy().with_db([](rocksdb::DB& db) { return db.Resume(); });
      REQUIRE(r);
      resumed = *r;
      if (!resumed.IsBusy()) break;
      std::this_thread::yield();
    } while (std::chrono::steady_clock::now() < deadline);
    auto after = resumed.ok() ? store.put("after", "resume") : keel::result<void>();
    if (resumed.ok() && after) {
      acked["after"] = "resume";
      check_acked(store, acked);
      REQUIRE(store.close());
    } else if (resumed.ok()) {
      // RocksDB resumed onto the WAL file whose write failed (its memtable
      // was empty, so the resume switched to no new WAL; RocksDB 7.8 aborts
      // the process on the next write there): keel refuses the write and
      // says to reopen (docs/durability.md, "Full disk"), as below.
      CHECK_MESSAGE((after.error() == errc::no_space || after.error() == errc::io_error), after.error().message());
      CHECK_MESSAGE(after.error().message().find("open it again") != std::string::npos, after.error().message());
      MESSAGE("in-place resume after " << name_of(what) << "/" << err << " kept the failed WAL: reopened");
      (void)store.close();
    } else {
      // RocksDB classed the error as unrecoverable in place (a fatal
      // background error): then close + reopen is the way, as below.
      MESSAGE("in-place resume after " << name_of(what) << "/" << err << " refused: " << resumed.ToString());
      (void)store.close();
    }
  } else {
    // Close while the disk still fails: the WAL sync in close() may fail,
    // but the directory must be released all the same.
    auto closed = store.close();
    if (!closed) CHECK((closed.error() == errc::no_space || closed.error() == errc::io_error));
    CHECK_FALSE(store.is_open());
    // Not already_open_in_process, not lock_held: close released both.
    auto while_failing = d.open();
    if (!while_failing) {
      CHECK_MESSAGE((while_failing.error() == errc::no_space || while_failing.error() == errc::io_error),
                    while_failing.error().message());
    } else {
      (void)while_failing->close();  // it opened (nothing it needed failed): close it again
    }
    {
      auto plain = d.open(/*with_faults=*/false);
      REQUIRE_MESSAGE(plain, "reopen without faults failed: " << plain.error().message());
      check_acked(*plain, acked);
      REQUIRE(plain->close());
    }
    d.fs->clear();
  }
  // Reopened on the (now healthy) faulty filesystem: everything acknowledged
  // is there, failed batches are whole or absent, writes work.
  auto again = d.open();
  REQUIRE_MESSAGE(again, "reopen after the fault cleared failed: " << again.error().message());
  check_acked(*again, acked);
  check_batches_whole(*again, batches);
  REQUIRE(again->put("later", "ok"));
  CHECK(again->get("later")->value() == "ok");
  REQUIRE(again->close());
}

}  // namespace

TEST_SUITE("fault") {
  TEST_CASE("ENOSPC and EIO on append, sync and file creation: errors, no acknowledged write lost, recovery") {
    for (fault what : {fault::append, fault::sync, fault::new_writable}) {
      for (int err : {ENOSPC, EIO}) {
        for (recovery how : {recovery::resume_in_place, recovery::close_and_reopen}) {
          run_fault_case(what, err, how);
        }
      }
    }
    MESSAGE("fault injection: " << fault_cases << " write-fault cases (3 faults x 2 errnos x 2 recoveries)");
  }

  TEST_CASE("a failing open reports no_space or io_error and leaves the directory free") {
    for (fault what : {fault::new_writable, fault::append, fault::sync}) {
      for (int err : {ENOSPC, EIO}) {
        const std::string fault_name = name_of(what);
  CAPTURE(fault_name);
        CAPTURE(err);
        ++fault_cases;
        faulty_db d;
        {
          // An existing database, so that open has to recover it.
          auto s = d.open();
          REQUIRE(s);
          REQUIRE(s->put("k", "v"));
          REQUIRE(s->close());
        }
        d.fs->set(what, err);
        auto failed = d.open();
        REQUIRE_FALSE(failed);
        CHECK_MESSAGE(failed.error().code() == (err == ENOSPC ? errc::no_space : errc::io_error),
                      failed.error().message());
        CHECK(failed.error().message().find(d.path().string()) != std::string::npos);
        d.fs->clear();
        auto ok = d.open();
        REQUIRE_MESSAGE(ok, ok.error().message());
        CHECK(ok->get("k")->value() == "v");
        REQUIRE(ok->close());
      }
    }
    MESSAGE("fault injection: " << fault_cases << " fault cases so far (6 failing opens)");
  }
}

TEST_SUITE("fault") {
  TEST_CASE("close() syncs the WAL when sync_on_close is on, and reports a failed sync") {
    for (bool sync_on_close : {true, false}) {
      CAPTURE(sync_on_close);
      faulty_db d;
      rocks_options o;
      o.path = d.path();
      o.env = d.env.get();
      o.sync_on_close = sync_on_close;
      auto s = rocks_store::open(o);
      REQUIRE(s);
      REQUIRE(s->put("k", "v"));  // not synced: sync_writes is off
      d.fs->set(fault::sync, EIO);
      const long before = d.fs->injected();
      auto closed = s->close();
      d.fs->clear();
      if (sync_on_close) {
        CHECK(d.fs->injected() > before);  // close tried to sync
        REQUIRE_FALSE(closed);
        CHECK(closed.error() == errc::io_error);
      } else {
        CHECK(d.fs->injected() == before);
        CHECK(closed);
      }
      CHECK_FALSE(s->is_open());
      // Released either way; the write reached the OS, so it is there.
      auto again = rocks_store::open(o);
      REQUIRE_MESSAGE(again, again.error().message());
      CHECK(again->get("k")->value() == "v");
    }
  }
}
