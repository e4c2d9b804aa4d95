// The keel command-line tool, run as a separate process: every command, its
// escaping, exit codes, damaged dumps, progress output, and doctor on a free,
// held, stale-LOCK, non-database and missing directory.
// The binary is found through $KEEL_TEST_CLI (set by meson), else next to
// the helpers as ../tools/keel.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <unistd.h>
#include <optional>
#include <keel/dump.hpp>
#include <keel/memory.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::cli_result;
using keel::test::run_cli;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

fs::path cli_path() { return keel::test::keel_cli_path(); }

struct run_result {
  int status = -1;
  std::string out;  // stdout
  bool has(const std::string& s) const { return out.find(s) != std::string::npos; }
};

// Runs the tool to completion with `args`; stdout is captured, stderr goes to
// the test log.
run_result run(std::vector<std::string> args) {
  child_process child(cli_path(), std::move(args));
  child.close_stdin();
  run_result r;
  while (auto line = child.read_line(60s)) r.out += *line + "\n";
  auto status = child.wait_for(60s);
  REQUIRE(status.has_value());
  r.status = *status;
  return r;
}

// Runs a shell command line (for redirections); returns its exit status.
int sh(const std::string& cmd) {
  child_process child("/bin/sh", {"-c", cmd});
  child.close_stdin();
  while (child.read_line(60s)) {
  }
  auto status = child.wait_for(60s);
  REQUIRE(status.has_value());
  return *status;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

child_process start_holder(const fs::path& db) {
  child_process child(helper_path("lock_holder"), {db.string()});
  auto line = child.read_line(30s);
  REQUIRE(line.has_value());
  REQUIRE(*line == "ready " + std::to_string(child.pid()));
  return child;
}

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("put, get, del, scan and count, binary-safe") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    CHECK(run({"--db", db, "put", "user/a", "alice"}).status == 0);
    CHECK(run({"--db", db, "put", "user/b\\x00\\xff", "tab\\there\\nnewline\\\\"}).status == 0);
    CHECK(run({"--db", db, "put", "other", ""}).status == 0);

    auto g = run({"--db", db, "get", "user/a"});
    CHECK(g.status == 0);
    CHECK(g.out == "alice\n");
    g = run({"--db", db, "get", "user/b\\x00\\xFF"});
    CHECK(g.out == "tab\\there\\nnewline\\\\\n");
    g = run({"--db", db, "--json", "get", "user/b\\x00\\xff"});
    // Issue 25: a key that is not UTF-8 comes as base64, in key_base64.
    CHECK(g.out == "{\"key_base64\":\"dXNlci9iAP8=\",\"value\":\"tab\\u0009here\\u000anewline\\\\\"}\n");
    auto missing = run({"--db", db, "get", "nope"});
    CHECK(missing.status == 1);
    CHECK(missing.out.empty());
    CHECK(run({"--db", db, "--json", "get", "nope"}).out == "null\n");

    auto s = run({"--db", db, "scan"});
    CHECK(s.status == 0);
    CHECK(s.out == "other\t\nuser/a\talice\nuser/b\\x00\\xff\ttab\\there\\nnewline\\\\\n");
    s = run({"--db", db, "scan", "--prefix", "user/", "--reverse", "--limit", "1"});
    CHECK(s.out == "user/b\\x00\\xff\ttab\\there\\nnewline\\\\\n");
    s = run({"--db", db, "scan", "--prefix", "user/", "--keys-only"});
    CHECK(s.out == "user/a\nuser/b\\x00\\xff\n");
    s = run({"--db", db, "--json", "scan", "--limit", "1"});
    CHECK(s.out == "{\"key\":\"other\",\"value\":\"\"}\n");
    s = run({"--db", db, "scan", "--from", "user/", "--to", "user/b"});
    CHECK(s.out == "user/a\talice\n");

    CHECK(run({"--db", db, "count"}).out == "3\n");
    CHECK(run({"--db", db, "count", "--prefix", "user/"}).out == "2\n");
    CHECK(run({"--db", db, "--json", "count"}).out == "{\"count\":3}\n");

    CHECK(run({"--db", db, "del", "user/a"}).status == 0);
    CHECK(run({"--db", db, "del", "user/a"}).status == 0);  // absent: still success
    CHECK(run({"--db", db, "count"}).out == "2\n");

    // The database path may come from KEEL_DB too.
    ::setenv("KEEL_DB", db.c_str(), 1);
    CHECK(run({"count"}).out == "2\n");
    ::unsetenv("KEEL_DB");
  }

  TEST_CASE("usage errors exit 2 and touch nothing") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    CHECK(run({}).status == 2);
    CHECK(run({"--db", db, "frobnicate"}).status == 2);
    CHECK(run({"--db", db, "get"}).status == 2);
    CHECK(run({"--db", db, "put", "k"}).status == 2);
    CHECK(run({"--db", db, "put", "bad\\x4", "v"}).status == 2);
    CHECK(run({"--db", db, "scan", "--limit", "many"}).status == 2);
    CHECK(run({"--bogus"}).status == 2);
    CHECK_FALSE(fs::exists(db));
    CHECK(run({"count"}).status == 3);  // no database given
    auto help = run({"--help"});
    CHECK(help.status == 0);
    CHECK(help.has("Exit codes"));
    CHECK(help.has("doctor PATH"));
  }

  TEST_CASE("del --prefix / --from / --to erase a range and count it; compact; checkpoint") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    for (const char* k : {"a/1", "a/2", "a/3", "b/1", "c\\x00", "c\\xff", "d"}) {
      CHECK(run({"--db", db, "put", k, "v"}).status == 0);
    }
    auto r = run({"--db", db, "--json", "del", "--prefix", "a/"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"erased\":3}\n");
    CHECK(run({"--db", db, "count"}).out == "4\n");
    // Binary bounds; --to is excluded.
    r = run({"--db", db, "--json", "del", "--from", "b", "--to", "c\\xff"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"erased\":2}\n");
    CHECK(run({"--db", db, "scan", "--keys-only"}).out == "c\\xff\nd\n");
    // An empty range erases nothing.
    r = run({"--db", db, "--json", "del", "--from", "x", "--to", "x"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"erased\":0}\n");
    // --to alone: from the first key; --no-count skips the count.
    r = run({"--db", db, "--json", "del", "--no-count", "--to", "d"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"erased\":null}\n");
    CHECK(run({"--db", db, "scan", "--keys-only"}).out == "d\n");
    r = run({"--db", db, "del", "--from", "d"});
    CHECK(r.status == 0);
    CHECK(r.out.empty());  // the summary goes to stderr
    CHECK(run({"--db", db, "count"}).out == "0\n");

    // Usage errors: nothing is opened or erased.
    CHECK(run({"--db", db, "put", "k", "v"}).status == 0);
    CHECK(run({"--db", db, "del", "--from", "z", "--to", "a"}).status == 2);
    CHECK(run({"--db", db, "del", "--prefix"}).status == 2);
    CHECK(run({"--db", db, "del", "--no-count"}).status == 2);
    CHECK(run({"--db", db, "del", "--prefix", "k", "--from", "a"}).status == 2);
    CHECK(run({"--db", db, "del", "--prefix", "k", "--reverse"}).status == 2);
    CHECK(run({"--db", db, "del", "--prefix", "k", "extra"}).status == 2);
    CHECK(run({"--db", db, "compact", "extra"}).status == 2);
    CHECK(run({"--db", db, "checkpoint"}).status == 2);
    CHECK(run({"--db", db, "checkpoint", "a", "b"}).status == 2);
    CHECK(run({"--db", db, "count"}).out == "1\n");
    const std::string never = (tmp.path() / "never").string();
    CHECK(run({"--db", never, "del", "--from", "z", "--to", "a"}).status == 2);
    CHECK_FALSE(fs::exists(never));

    // compact, whole or a range; reports the sizes.
    r = run({"--db", db, "--json", "compact"});
    CHECK(r.status == 0);
    CHECK(r.has("\"size_bytes_after\":"));
    CHECK(run({"--db", db, "compact", "--prefix", "k"}).status == 0);
    CHECK(run({"--db", db, "get", "k"}).out == "v\n");

    // checkpoint: a copy that opens as a store; an existing path is refused
    // (exit 5) and left as it was.
    const fs::path cp = tmp.path() / "cp";
    r = run({"--db", db, "--json", "checkpoint", cp.string()});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"checkpoint\":\"" + cp.string() + "\"}\n");
    CHECK(run({"--db", db, "put", "later", "x"}).status == 0);  // not in the checkpoint
    CHECK(run({"--db", cp.string(), "scan"}).out == "k\tv\n");
    CHECK(run({"--db", db, "checkpoint", cp.string()}).status == 5);
    CHECK(run({"--db", cp.string(), "scan"}).out == "k\tv\n");
    CHECK(run({"--db", db, "checkpoint", (tmp.path() / "no" / "such").string()}).status == 5);
    CHECK_FALSE(fs::exists(tmp.path() / "no"));

    // The memory backend: the checkpoint is a file that --memory-file opens.
    const std::string mem = (tmp.path() / "mem.dump").string();
    const std::string mem_cp = (tmp.path() / "mem-cp.dump").string();
    CHECK(run({"--memory-file", mem, "put", "m", "1"}).status == 0);
    CHECK(run({"--memory-file", mem, "put", "n", "2"}).status == 0);
    CHECK(run({"--memory-file", mem, "--json", "del", "--prefix", "n"}).out == "{\"erased\":1}\n");
    CHECK(run({"--memory-file", mem, "compact"}).status == 0);
    CHECK(run({"--memory-file", mem, "checkpoint", mem_cp}).status == 0);
    CHECK(run({"--memory-file", mem_cp, "scan"}).out == "m\t1\n");
    CHECK(run({"--memory-file", mem, "checkpoint", mem_cp}).status == 5);

    auto help = run({"--help"});
    CHECK(help.has("del --prefix P"));
    CHECK(help.has("compact"));
    CHECK(help.has("checkpoint DIR"));
  }

  TEST_CASE("export, verify, import and migrate; damaged and truncated dumps are refused") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const fs::path dump = tmp.path() / "all.dump";
    // 10000 records through a dump written by the library.
    {
      keel::dump_writer w;
      REQUIRE(w.open(tmp.path() / "seed.dump"));
      for (int i = 0; i < 10000; ++i) {
        char k[32];
        std::snprintf(k, sizeof k, "key%06d", i);
        REQUIRE(w.add(k, std::string(50, static_cast<char>('a' + i % 26))));
      }
      REQUIRE(w.finish());
    }
    auto imp = run({"--db", db, "--json", "import", (tmp.path() / "seed.dump").string()});
    CHECK(imp.status == 0);
    CHECK(imp.out == "{\"records\":10000,\"payload_bytes\":590000}\n");
    CHECK(run({"--db", db, "count"}).out == "10000\n");

    auto exp = run({"--db", db, "export", dump.string()});
    CHECK(exp.status == 0);
    CHECK(slurp(dump) == slurp(tmp.path() / "seed.dump"));
    auto ver = run({"--json", "verify", dump.string()});
    CHECK(ver.status == 0);
    CHECK(ver.has("\"records\":10000"));

    // export to stdout
    CHECK(sh(q(cli_path()) + " --db " + q(db) + " export --prefix key0000 - > " + q(tmp.path() / "part.dump")) == 0);
    auto part = run({"verify", (tmp.path() / "part.dump").string()});
    CHECK(part.status == 0);
    CHECK(part.has("ok: 100 records"));

    // Truncated and damaged dumps: exit 4, nothing written.
    const std::string full = slurp(dump);
    const std::string db2 = (tmp.path() / "db2").string();
    for (std::size_t len : {std::size_t(0), std::size_t(10), full.size() / 2, full.size() - 1}) {
      CAPTURE(len);
      std::ofstream(tmp.path() / "cut.dump", std::ios::binary | std::ios::trunc)
          .write(full.data(), std::streamsize(len));
      auto r = run({"--db", db2, "import", (tmp.path() / "cut.dump").string()});
      CHECK(r.status == 4);
      CHECK_FALSE(fs::exists(db2));  // nothing written, and no new, empty store left (issue 25)
      CHECK(run({"verify", (tmp.path() / "cut.dump").string()}).status == 4);
    }
    std::string damaged = full;
    damaged[full.size() / 3] ^= 0x01;
    std::ofstream(tmp.path() / "bad.dump", std::ios::binary).write(damaged.data(), std::streamsize(damaged.size()));
    CHECK(run({"--db", db2, "import", (tmp.path() / "bad.dump").string()}).status == 4);
    CHECK_FALSE(fs::exists(db2));
    CHECK(run({"--db", db2, "import", (tmp.path() / "missing.dump").string()}).status == 5);

    // migrate
    const std::string db3 = (tmp.path() / "db3").string();
    auto mig = run({"--json", "migrate", db, db3});
    CHECK(mig.status == 0);
    CHECK(mig.out == "{\"records\":10000,\"payload_bytes\":590000}\n");
    CHECK(run({"--db", db3, "scan", "--limit", "1"}).out == "key000000\t" + std::string(50, 'a') + "\n");
    // Into a memory store that is not persisted: refused (issue 25: the copy
    // would be gone when keel exits).
    CHECK(run({"migrate", db, "memory:"}).status == 2);
    CHECK(run({"migrate", db, db}).status == 2);  // the same store twice: a usage error (issue 25)

    // Progress: quiet when stderr is not a terminal, a bar when forced.
    CHECK(sh(q(cli_path()) + " --db " + q(db) + " export " + q(tmp.path() / "p.dump") + " 2> " +
             q(tmp.path() / "quiet.err")) == 0);
    CHECK(slurp(tmp.path() / "quiet.err").find('\r') == std::string::npos);
    CHECK(sh(q(cli_path()) + " --progress --db " + q(db) + " export " + q(tmp.path() / "p.dump") + " 2> " +
             q(tmp.path() / "bar.err")) == 0);
    CHECK(slurp(tmp.path() / "bar.err").find("\rexporting") != std::string::npos);
  }

  TEST_CASE("import - and verify - read a dump from a pipe; a truncated pipe writes nothing") {
    temp_dir tmp;
    const std::string src = (tmp.path() / "src").string();
    const std::string dst = (tmp.path() / "dst").string();
    const fs::path spool_dir = tmp.path() / "spool";  // TMPDIR: where the copy of stdin goes
    fs::create_directory(spool_dir);
    const std::string env = "TMPDIR=" + q(spool_dir) + " ";
    for (int i = 0; i < 5; ++i) {  // five keys by the CLI, the rest through a library dump
      char k[32];
      std::snprintf(k, sizeof k, "k%05d", i);
      REQUIRE(run({"--db", src, "put", k, std::to_string(i)}).status == 0);
    }
    {
      keel::dump_writer w;
      REQUIRE(w.open(tmp.path() / "more.dump"));
      for (int i = 5; i < 2000; ++i) {
        char k[32];
        std::snprintf(k, sizeof k, "k%05d", i);
        REQUIRE(w.add(k, std::to_string(i)));
      }
      REQUIRE(w.finish());
    }
    REQUIRE(run({"--db", src, "import", (tmp.path() / "more.dump").string()}).status == 0);

    // export - | import -: the same entries end up in dst.
    const std::string cli = q(cli_path());
    CHECK(sh(cli + " --db " + q(src) + " export - | " + env + cli + " --db " + q(dst) + " import -") == 0);
    CHECK(run({"--db", dst, "count"}).out == "2000\n");
    CHECK(run({"--db", dst, "scan"}).out == run({"--db", src, "scan"}).out);
    CHECK(sh(cli + " --db " + q(src) + " export - | " + env + cli + " verify -") == 0);
    CHECK(fs::is_empty(spool_dir));  // the copies of stdin are gone

    // A dump cut short in the pipe: refused (exit 4), nothing imported.
    const std::string db2 = (tmp.path() / "db2").string();
    CHECK(sh(cli + " --db " + q(src) + " export - | head -c 5000 | " + env + cli + " --db " + q(db2) +
             " import -") == 4);
    CHECK_FALSE(fs::exists(db2));  // no new, empty store left either (issue 25)
    CHECK(sh("printf '' | " + env + cli + " verify -") == 4);
    CHECK(fs::is_empty(spool_dir));

    // No room for the copy of stdin: exit 5, with the reason.
    CHECK(sh(cli + " --db " + q(src) + " export - | TMPDIR=" + q(tmp.path() / "missing") + " " + cli +
             " --db " + q(db2) + " import - 2> " + q(tmp.path() / "err")) == 5);
    CHECK(slurp(tmp.path() / "err").find("temporary file") != std::string::npos);
  }

  TEST_CASE("stats, and backend selection through the environment") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run({"--db", db, "put", "k", "v"}).status == 0);
    auto st = run({"--db", db, "--json", "stats"});
    CHECK(st.status == 0);
    CHECK(st.has("\"backend\":\"rocksdb\""));
    CHECK(st.has("\"rocksdb.estimate-num-keys\":"));
    auto text = run({"--db", db, "stats"});
    CHECK(text.has("backend\trocksdb\n"));

    // --db wins over KEEL_USE_MEMORY_STORAGE (issue 25: an option wins over
    // every variable); without an option the variable chooses memory.
    ::setenv("KEEL_USE_MEMORY_STORAGE", "yes", 1);
    auto explicit_db = run({"--db", db, "--json", "stats"});
    ::setenv("KEEL_DB", db.c_str(), 1);
    auto mem = run({"--json", "stats"});
    ::unsetenv("KEEL_DB");
    ::unsetenv("KEEL_USE_MEMORY_STORAGE");
    CHECK(explicit_db.has("\"backend\":\"rocksdb\""));
    CHECK(mem.has("\"backend\":\"memory\""));
    CHECK(mem.has("\"keys\":0"));
    CHECK(run({"--memory", "--json", "stats"}).has("\"backend\":\"memory\""));

    // A persisted memory store: state carries from one command to the next.
    const std::string mf = (tmp.path() / "mem.keeldump").string();
    CHECK(run({"--memory-file", mf, "put", "m", "1"}).status == 0);
    CHECK(run({"--memory-file", mf, "put", "n", "2"}).status == 0);
    CHECK(run({"--memory-file", mf, "scan"}).out == "m\t1\nn\t2\n");
    // Memory stores report the bytes held against the uncompressed bytes
    // (the tool opens them without compression: ratio 1).
    auto mem_stats = run({"--memory-file", mf, "stats"});
    CHECK(mem_stats.has("\nuncompressed_bytes\t"));
    CHECK(mem_stats.has("\ncompression_ratio\t1.000\n"));
    CHECK(run({"verify", mf}).status == 0);
    CHECK(run({"migrate", "memory:" + mf, db}).status == 0);
    CHECK(run({"--db", db, "get", "n"}).out == "2\n");
    CHECK(run({"migrate", db, "memory:" + (tmp.path() / "copy.keeldump").string()}).status == 0);
    CHECK(run({"--memory-file", (tmp.path() / "copy.keeldump").string(), "count"}).out == "3\n");

    ::setenv("KEEL_FALLBACK_MEMORY", "maybe", 1);
    auto bad = run({"--db", db, "count"});
    ::unsetenv("KEEL_FALLBACK_MEMORY");
    CHECK(bad.status == 3);
  }

  TEST_CASE("a store held by another process: reads work (read-only), writes exit 3, no fallback") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    REQUIRE(run({"--db", db.string(), "put", "k", "v"}).status == 0);
    child_process holder = start_holder(db);
    holder.write_line("put k2 v2");
    REQUIRE(holder.read_line(30s) == std::optional<std::string>("ok"));
    // Every read command works beside the writer, and says the view is as of its open.
    const fs::path err = tmp.path() / "err";
    const std::string pre = q(cli_path()) + " --db " + q(db) + " ";
    CHECK(sh(pre + "get k2 > " + q(tmp.path() / "out") + " 2> " + q(err)) == 0);
    CHECK(slurp(tmp.path() / "out") == "v2\n");
    CHECK(slurp(err).find("process " + std::to_string(holder.pid())) != std::string::npos);
    CHECK(slurp(err).find("read-only view as of now") != std::string::npos);
    CHECK(run({"--db", db.string(), "count"}).out == "2\n");
    CHECK(run({"--db", db.string(), "scan", "--keys-only"}).out == "k\nk2\n");
    CHECK(run({"--db", db.string(), "--json", "stats"}).has("\"backend\":\"rocksdb\""));
    CHECK(run({"--db", db.string(), "export", (tmp.path() / "x.dump").string()}).status == 0);
    CHECK(run({"verify", (tmp.path() / "x.dump").string()}).has("ok: 2 records"));
    // Writes need the lock: exit 3. With fallback enabled for every kind the
    // config allows by default, lock_held_by_other_process still does not
    // fall back.
    CHECK(run({"--db", db.string(), "put", "k3", "v"}).status == 3);
    CHECK(run({"--fallback", "--db", db.string(), "put", "k3", "v"}).status == 3);
    // The reads did not disturb the holder's lock.
    CHECK(run({"--db", db.string(), "del", "k"}).status == 3);
    holder.write_line("quit");
    CHECK(holder.wait() == 0);
    CHECK(run({"--db", db.string(), "count"}).out == "2\n");
    CHECK(run({"--db", db.string(), "put", "k3", "v"}).status == 0);
  }

  TEST_CASE("read commands on a missing path exit 3 and create nothing; write commands create and say so") {
    temp_dir tmp;
    const fs::path missing = tmp.path() / "typo" / "db";
    const fs::path err = tmp.path() / "err";
    const std::string pre = q(cli_path()) + " --db " + q(missing) + " ";
    for (const std::string& cmd : {std::string("get k"), std::string("scan"), std::string("count"),
                                   std::string("stats"), std::string("export -"),
                                   std::string("export ") + q(tmp.path() / "out.dump"), std::string("--fallback count"),
                                   std::string("--json get k")}) {
      CAPTURE(cmd);
      CHECK(sh(pre + cmd + " > " + q(tmp.path() / "out") + " 2> " + q(err)) == 3);
      CHECK(slurp(err).find("no database at '" + missing.string() + "'") != std::string::npos);
      CHECK(slurp(tmp.path() / "out").empty());
      CHECK_FALSE(fs::exists(tmp.path() / "typo"));
      CHECK_FALSE(fs::exists(tmp.path() / "out.dump"));
    }
    CHECK(run({"migrate", missing.string(), (tmp.path() / "dst").string()}).status == 3);
    CHECK_FALSE(fs::exists(tmp.path() / "typo"));
    CHECK_FALSE(fs::exists(tmp.path() / "dst"));
    // verify reads dumps, never stores: a missing file is a failed operation, and nothing appears.
    CHECK(run({"verify", missing.string()}).status == 5);
    CHECK_FALSE(fs::exists(tmp.path() / "typo"));
    // Nor does a missing memory store file.
    CHECK(run({"--memory-file", (tmp.path() / "m.keeldump").string(), "count"}).status == 3);
    CHECK(run({"migrate", "memory:" + (tmp.path() / "m.keeldump").string(), (tmp.path() / "dst").string()}).status == 3);
    CHECK_FALSE(fs::exists(tmp.path() / "m.keeldump"));
    CHECK_FALSE(fs::exists(tmp.path() / "dst"));
    // An empty directory holds no database either, and stays empty.
    fs::create_directory(tmp.path() / "empty");
    CHECK(run({"--db", (tmp.path() / "empty").string(), "count"}).status == 3);
    CHECK(fs::is_empty(tmp.path() / "empty"));

    // A write command creates the database (only the last component of its
    // path: issue 25) and says so, once.
    CHECK(sh(pre + "put k v 2> " + q(err)) == 3);
    CHECK(slurp(err).find("parent directory '" + (tmp.path() / "typo").string() + "' does not exist") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(tmp.path() / "typo"));
    fs::create_directory(tmp.path() / "typo");
    CHECK(sh(pre + "put k v 2> " + q(err)) == 0);
    CHECK(slurp(err) == "keel: created a new database at '" + missing.string() + "'\n");
    CHECK(sh(pre + "put k2 v 2> " + q(err)) == 0);
    CHECK(slurp(err).empty());
    CHECK(run({"--db", missing.string(), "count"}).out == "2\n");
    CHECK(sh(q(cli_path()) + " migrate " + q(missing) + " " + q(tmp.path() / "dst") + " 2> " + q(err)) == 0);
    CHECK(slurp(err).find("created a new database at '" + (tmp.path() / "dst").string() + "'") != std::string::npos);
  }

  TEST_CASE("a damaged database: every command exits 3 with the reason, --fallback or not, files untouched") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    REQUIRE(run({"--db", db.string(), "put", "k", "v"}).status == 0);
    std::string manifest;
    std::getline(std::ifstream(db / "CURRENT"), manifest);
    REQUIRE(manifest.rfind("MANIFEST-", 0) == 0);
    SUBCASE("missing MANIFEST") { fs::remove(db / manifest); }
    SUBCASE("MANIFEST is a directory") {
      fs::remove(db / manifest);
      fs::create_directory(db / manifest);
    }
    auto listing = [&] {
      std::string l;
      for (const auto& e : fs::directory_iterator(db))
        l += e.path().filename().string() + " " + (e.is_directory() ? "(dir)" : slurp(e.path())) + "\n";
      return l;
    };
    const std::string before = listing();
    const fs::path err = tmp.path() / "err";
    for (const std::string& args : {std::string("get k"), std::string("count"), std::string("--fallback get k"),
                                    std::string("--fallback count"), std::string("put k2 v"),
                                    std::string("--fallback put k2 v")}) {
      CAPTURE(args);
      ::setenv("KEEL_DB", db.c_str(), 1);
      const int status = sh(q(cli_path()) + " " + args + " > " + q(tmp.path() / "out") + " 2> " + q(err));
      ::unsetenv("KEEL_DB");
      CHECK(status == 3);
      CHECK(slurp(tmp.path() / "out").empty());
      CHECK(slurp(err).find("damaged") != std::string::npos);
      CHECK(slurp(err).find(manifest) != std::string::npos);
      CHECK(slurp(err).find("falling back") == std::string::npos);
      CHECK(listing() == before);
    }
    ::setenv("KEEL_FALLBACK_MEMORY", "1", 1);
    CHECK(run({"--db", db.string(), "count"}).status == 3);
    ::unsetenv("KEEL_FALLBACK_MEMORY");
    auto doc = run({"doctor", db.string()});
    CHECK(doc.status == 1);
    CHECK(doc.has("would NOT succeed"));
    CHECK_FALSE(doc.has("would succeed now"));
    CHECK(listing() == before);
  }

  TEST_CASE("doctor: free, held, stale LOCK, not a database, missing, a file") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    REQUIRE(run({"--db", db.string(), "put", "k", "v"}).status == 0);

    // doctor only reads: the directory is the same afterwards (no LOG rotated).
    auto listing = [&] {
      std::string l;
      for (const auto& e : fs::directory_iterator(db))
        l += e.path().filename().string() + " " + std::to_string(e.last_write_time().time_since_epoch().count()) + "\n";
      return l;
    };
    const std::string before = listing();
    auto free_ = run({"doctor", db.string()});
    CHECK(listing() == before);
    CHECK(free_.status == 0);
    CHECK(free_.has("is a RocksDB database"));
    CHECK(free_.has("no process holds a lock"));
    CHECK(free_.has("File locks work here"));
    CHECK(free_.has("an open would succeed now"));
    auto json = run({"--json", "doctor", db.string()});
    CHECK(json.has("\"verdict\":\"opens\""));
    CHECK(json.has("\"locked\":false"));
    CHECK(json.has("\"locks_work\":true"));

    {
      child_process holder = start_holder(db);
      auto held = run({"doctor", db.string()});
      CHECK(held.status == 1);
      CHECK(held.has("process " + std::to_string(holder.pid())));
      CHECK(held.has("lock_holder"));
      CHECK(held.has("would NOT succeed"));
      CHECK(held.has("Do not delete the LOCK file"));
      auto hj = run({"--json", "doctor", db.string()});
      CHECK(hj.has("\"holder_pid\":" + std::to_string(holder.pid())));
      CHECK(hj.has("\"verdict\":\"will_not_open\""));
      // doctor did not disturb the holder's lock.
      CHECK(run({"--db", db.string(), "put", "k2", "v2"}).status == 3);

      // Killed: the LOCK file stays, the lock is gone.
      holder.kill(SIGKILL);
      CHECK(holder.wait() == 128 + SIGKILL);
    }
    CHECK(fs::exists(db / "LOCK"));
    auto stale = run({"doctor", db.string()});
    CHECK(stale.status == 0);
    CHECK(stale.has("no process holds a lock"));
    CHECK(fs::exists(db / "LOCK"));  // doctor never deletes it
    CHECK(run({"--db", db.string(), "get", "k"}).out == "v\n");

    fs::create_directory(tmp.path() / "notdb");
    std::ofstream(tmp.path() / "notdb" / "readme.txt") << "hello";
    auto notdb = run({"doctor", (tmp.path() / "notdb").string()});
    CHECK(notdb.status == 3);
    CHECK(notdb.has("not a RocksDB database"));
    CHECK(fs::directory_iterator(tmp.path() / "notdb")->path().filename() == "readme.txt");

    fs::create_directory(tmp.path() / "empty");
    auto empty = run({"doctor", (tmp.path() / "empty").string()});
    CHECK(empty.status == 3);
    CHECK(empty.has("empty directory"));
    CHECK(fs::is_empty(tmp.path() / "empty"));

    auto missing = run({"doctor", (tmp.path() / "missing").string()});
    CHECK(missing.status == 3);
    CHECK(missing.has("does not exist"));
    CHECK_FALSE(fs::exists(tmp.path() / "missing"));

    auto file = run({"doctor", (tmp.path() / "notdb" / "readme.txt").string()});
    CHECK(file.status == 1);
    CHECK(file.has("not a directory"));

    CHECK(run({"doctor"}).status == 2);
  }

  // Issue 25, bugs 1 and 2: an option names the store and wins over the
  // environment; two options are a usage error; a write to a memory store
  // that forgets it is refused; a store the environment chose is named.
  TEST_CASE("store choice: options win over the environment; no write to a store that forgets it") {
    using keel::test::run_cli;
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string mf = (tmp.path() / "m.keeldump").string();

    // Two options naming two stores: exit 2, nothing created.
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--db", db, "--memory", "put", "k", "v"},
          std::vector<std::string>{"--memory", "--db", db, "get", "k"},
          std::vector<std::string>{"--db", db, "--memory-file", mf, "put", "k", "v"},
          std::vector<std::string>{"--hybrid", (tmp.path() / "h").string(), "--memory-file", mf, "count"}}) {
      const auto r = run_cli(args);
      CHECK(r.status == 2);
      CHECK(r.says("name two different stores"));
    }
    CHECK_FALSE(fs::exists(db));
    CHECK_FALSE(fs::exists(mf));

    // --memory: a write is refused (exit 2), saying why and what to use.
    auto r = run_cli({"--memory", "put", "k", "v"});
    CHECK(r.status == 2);
    // The words docs/cli.md shows.
    CHECK(r.err ==
          "keel: put would write to a memory store that is not persisted (chosen by --memory): the data would be gone "
          "when keel exits, so nothing was written. Use --memory-file FILE for a memory store kept in FILE, or --db "
          "PATH for a RocksDB database\nRun 'keel --help' for usage.\n");
    CHECK(run_cli({"--db", db, "--memory", "put", "k", "v"}).err ==
          "keel: --db and --memory name two different stores; give one of them\nRun 'keel --help' for usage.\n");
    CHECK(run_cli({"--memory", "del", "--prefix", "a"}).status == 2);
    CHECK(run_cli({"--memory", "import", "x.dump"}).status == 2);
    CHECK(run_cli({"--memory", "count"}).out == "0\n");  // a read is fine

    // KEEL_USE_MEMORY_STORAGE: --db wins (the write lands in the database) ...
    ::setenv("KEEL_USE_MEMORY_STORAGE", "1", 1);
    r = run_cli({"--db", db, "put", "k", "v"});
    CHECK(r.status == 0);
    CHECK_FALSE(r.says("KEEL_USE_MEMORY_STORAGE"));
    // ... and without an option the variable chooses memory, named on stderr;
    // a write is refused naming the variable.
    ::setenv("KEEL_DB", db.c_str(), 1);
    auto w = run_cli({"put", "k2", "v2"});
    auto g = run_cli({"get", "k"});
    ::unsetenv("KEEL_DB");
    ::unsetenv("KEEL_USE_MEMORY_STORAGE");
    CHECK(w.status == 2);
    CHECK(w.says("chosen by KEEL_USE_MEMORY_STORAGE=1"));
    CHECK(w.says("unset KEEL_USE_MEMORY_STORAGE"));
    CHECK(g.status == 1);
    CHECK(g.says("KEEL_USE_MEMORY_STORAGE=1 chose a memory store"));
    CHECK(run_cli({"--db", db, "get", "k"}).out == "v\n");
    CHECK(run_cli({"--db", db, "get", "k2"}).status == 1);

    // --memory-file persists: writes work.
    CHECK(run_cli({"--memory-file", mf, "put", "k", "v"}).status == 0);
    CHECK(run_cli({"--memory-file", mf, "get", "k"}).out == "v\n");

    // A write command never falls back to memory: it would lose the write.
    fs::create_directory(tmp.path() / "ro");
    fs::permissions(tmp.path() / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    if (::geteuid() != 0) {
      r = run_cli({"--fallback", "--db", (tmp.path() / "ro" / "db").string(), "put", "k", "v"});
      CHECK(r.status == 3);
      CHECK(r.says("never falls back to memory"));
      CHECK_FALSE(r.says("falling back"));
    }
    fs::permissions(tmp.path() / "ro", fs::perms::owner_all);
  }

  // Issue 25, bug 3: a write command that fails before writing anything
  // leaves no store it created.
  TEST_CASE("a failed import or checkpoint leaves no new store behind; an existing one stays") {
    using keel::test::run_cli;
    temp_dir tmp;
    const fs::path garbage = tmp.path() / "garbage.bin";
    std::ofstream(garbage, std::ios::binary) << std::string(1000, '\x5a');
    const fs::path missing = tmp.path() / "missing.dump";
    const auto entries = [&] {
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(tmp.path())) names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
      return names;
    };
    const auto before = entries();
    struct attempt {
      std::vector<std::string> args;
      int status;
    };
    const std::string db = (tmp.path() / "new").string(), mf = (tmp.path() / "new.keeldump").string(),
                      h = (tmp.path() / "newh").string();
    for (const attempt& a : {attempt{{"--db", db, "import", garbage.string()}, 4},
                             attempt{{"--db", db, "import", missing.string()}, 5},
                             attempt{{"--memory-file", mf, "import", garbage.string()}, 4},
                             attempt{{"--memory-file", mf, "import", missing.string()}, 5},
                             attempt{{"--hybrid", h, "import", garbage.string()}, 4},
                             attempt{{"--hybrid", h, "import", missing.string()}, 5},
                             attempt{{"--db", db, "checkpoint", tmp.path().string()}, 5},
                             attempt{{"migrate", (tmp.path() / "nosrc").string(), db}, 3}}) {
      CAPTURE(a.args);
      const auto r = run_cli(a.args);
      CHECK(r.status == a.status);
      CHECK(entries() == before);
      CHECK_FALSE(r.says("created a new"));  // refused before the store was opened: nothing to remove
    }
    // An empty directory given as the database stays, and stays empty.
    fs::create_directory(tmp.path() / "empty");
    CHECK(run_cli({"--db", (tmp.path() / "empty").string(), "import", garbage.string()}).status == 4);
    CHECK(fs::is_empty(tmp.path() / "empty"));
    // An existing store is never removed, even when empty.
    CHECK(run_cli({"--db", db, "put", "k", "v"}).status == 0);
    CHECK(run_cli({"--db", db, "del", "k"}).status == 0);
    CHECK(run_cli({"--db", db, "import", garbage.string()}).status == 4);
    CHECK(fs::exists(fs::path(db) / "CURRENT"));
  }

  // Issue 25, bug 4: a database is created only as the last component of its
  // path, and never among other files.
  TEST_CASE("a write refuses a directory of other files and a missing parent, creating nothing") {
    using keel::test::run_cli;
    temp_dir tmp;
    const fs::path dir = tmp.path() / "photos";
    fs::create_directory(dir);
    std::ofstream(dir / "b.jpg") << "b";
    std::ofstream(dir / "a.jpg") << "a";
    auto r = run_cli({"--db", dir.string(), "put", "k", "v"});
    CHECK(r.status == 3);
    CHECK(r.says("holds no database but 2 other entries ('a.jpg', 'b.jpg')"));
    CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);
    r = run_cli({"--hybrid", dir.string(), "put", "k", "v"});
    CHECK(r.status == 3);
    CHECK(r.says("holds no hybrid store"));
    CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 2);

    const fs::path deep = tmp.path() / "a" / "b" / "db";
    r = run_cli({"--db", deep.string(), "put", "k", "v"});
    CHECK(r.status == 3);
    CHECK(r.says("parent directory '" + (tmp.path() / "a" / "b").string() + "' does not exist"));
    CHECK(run_cli({"--hybrid", deep.string(), "put", "k", "v"}).status == 3);
    CHECK(run_cli({"migrate", (tmp.path() / "none").string(), deep.string()}).status == 3);
    CHECK_FALSE(fs::exists(tmp.path() / "a"));

    // What a failed first open leaves (LOCK, LOG) is no reason to refuse.
    fs::create_directory(tmp.path() / "left");
    std::ofstream(tmp.path() / "left" / "LOCK");
    CHECK(run_cli({"--db", (tmp.path() / "left").string(), "put", "k", "v"}).status == 0);
    // A trailing slash names the same directory.
    CHECK(run_cli({"--db", (tmp.path() / "slash").string() + "/", "put", "k", "v"}).status == 0);
    CHECK(run_cli({"--db", (tmp.path() / "slash").string(), "get", "k"}).out == "v\n");
  }

  // Issue 25, bug 9 and the "Noise" friction.
  TEST_CASE("migrate of a store into itself says so; errors carry a fallback note only when it matters") {
    using keel::test::run_cli;
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "put", "k", "v"}).status == 0);
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"migrate", db, db + "/"}, std::vector<std::string>{"migrate", db, db + "/./"}}) {
      const auto r = run_cli(args);
      CHECK(r.status == 2);
      CHECK(r.says("are the same store"));
      CHECK_FALSE(r.says("read-only store"));
    }
    const std::string mf = (tmp.path() / "m.keeldump").string();
    REQUIRE(run_cli({"--memory-file", mf, "put", "k", "v"}).status == 0);
    CHECK(run_cli({"migrate", "memory:" + mf, "memory:" + mf}).says("are the same store"));

    // Errors where a fallback could not have helped carry no fallback note.
    fs::create_directory(tmp.path() / "photos");
    std::ofstream(tmp.path() / "photos" / "a.jpg") << "a";
    std::ofstream(tmp.path() / "file") << "x";
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--db", (tmp.path() / "file").string(), "put", "k", "v"},
          std::vector<std::string>{"--db", (tmp.path() / "file").string(), "get", "k"},
          std::vector<std::string>{"--db", (tmp.path() / "photos").string(), "put", "k", "v"},
          std::vector<std::string>{"--db", (tmp.path() / "nope").string(), "get", "k"}}) {
      CAPTURE(args);
      const auto r = run_cli(args);
      CHECK(r.status == 3);
      CHECK_FALSE(r.says("fallback"));
    }
  }

  // Issue 25, bug 11: doctor explains a persisted memory store (a
  // --memory-file FILE): its snapshot, its logs, who holds FILE.lock.
  TEST_CASE("doctor on a --memory-file store: snapshot, logs, the lock's holder") {
    using keel::test::run_cli;
    temp_dir tmp;
    const fs::path mf = tmp.path() / "m.keeldump";
    REQUIRE(run_cli({"--memory-file", mf.string(), "put", "k", "v"}).status == 0);
    auto free_ = run_cli({"doctor", mf.string()});
    CHECK(free_.status == 0);
    CHECK(free_.has("'" + mf.string() + "' is a persisted memory store (memory_options::persist_path; keel "
                    "--memory-file): its snapshot, a keel dump of "));
    CHECK(free_.has("a keel dump of"));
    CHECK(free_.has("Nobody holds its lock file"));
    CHECK(free_.has("an open would succeed now"));
    CHECK_FALSE(free_.has("RocksDB"));
    auto json = run_cli({"--json", "doctor", mf.string()});
    CHECK(json.has("\"memory_store\":true"));
    CHECK(json.has("\"verdict\":\"opens\""));
    {
      child_process holder(helper_path("memory_log_writer"), {"hold", mf.string()});
      auto line = holder.read_line(30s);
      REQUIRE(line.has_value());
      REQUIRE(*line == "ready " + std::to_string(holder.pid()));
      auto held = run_cli({"doctor", mf.string()});
      CHECK(held.status == 1);
      CHECK(held.has("process " + std::to_string(holder.pid())));
      CHECK(held.has("memory_log_writer"));
      CHECK(held.has("holds its lock file '" + mf.string() + ".lock'."));
      CHECK(held.has("An open now fails with lock_held_by_other_process (a memory store has no read-only open)."));
      CHECK(held.has("would NOT succeed"));
      // The holder writes into a new log; the one before it is the log
      // without frames that the put's close left (its header carries the
      // seqs across the reopen, docs/watch.md; before, there was none).
      CHECK(held.has("2 logs ("));
      CHECK(run_cli({"--json", "doctor", mf.string()}).has("\"holder_pid\":" + std::to_string(holder.pid())));
      holder.close_stdin();
      CHECK(holder.wait() == 0);
    }
    // A store whose writes are all still in its log (no snapshot yet).
    const fs::path logs_only = tmp.path() / "fresh.keeldump";
    fs::copy_file(mf, tmp.path() / "keep");
    {
      keel::memory_options o;
      o.persist_path = logs_only;
      auto s = keel::memory_store::open(o);
      REQUIRE(s);
      REQUIRE(s->put("a", "b"));
      // Left open while doctor looks: this process holds the lock.
      auto open_here = run_cli({"doctor", logs_only.string()});
      CHECK(open_here.has("is a persisted memory store"));
      CHECK(open_here.has("process " + std::to_string(::getpid())));
    }
    // Any other file is still "not a directory".
    std::ofstream(tmp.path() / "notes.txt") << "hello";
    auto other = run_cli({"doctor", (tmp.path() / "notes.txt").string()});
    CHECK(other.status == 1);
    CHECK(other.has("not a directory"));
  }

  TEST_CASE("verify and import say where a truncated dump ends, and call stdin standard input (issue 25)") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    for (int i = 0; i < 50; ++i) REQUIRE(run({"--db", db, "put", "key" + std::to_string(i), "value"}).status == 0);
    const fs::path dump = tmp.path() / "d.keeldump";
    REQUIRE(run({"--db", db, "export", dump.string()}).status == 0);
    const std::string full = slurp(dump);
    REQUIRE(full.size() > 200);
    // 150 bytes: the header (16), a block header (16) and part of the block.
    const fs::path cut = tmp.path() / "t";
    std::ofstream(cut, std::ios::binary).write(full.data(), 150);
    auto v = run_cli({"verify", cut.string()});
    CHECK(v.status == 4);
    INFO(v.err);
    CHECK(v.says("ends at byte 150,"));
    CHECK(v.says("the block that starts at byte 16"));
    CHECK_FALSE(v.says("byte 32"));

    // From standard input: no temporary file named, "standard input" instead.
    const fs::path spool_dir = tmp.path() / "spool";
    fs::create_directory(spool_dir);
    const std::string pre = "TMPDIR=" + q(spool_dir) + " " + q(cli_path());
    const fs::path err = tmp.path() / "err";
    CHECK(sh("head -c 100 /dev/urandom | " + pre + " --db " + q(tmp.path() / "x") + " import - 2> " + q(err)) == 4);
    CHECK(slurp(err).find("standard input is not a keel dump") != std::string::npos);
    CHECK(slurp(err).find("keel-stdin") == std::string::npos);
    CHECK(sh("head -c 150 " + q(dump) + " | " + pre + " verify - 2> " + q(err)) == 4);
    CHECK(slurp(err).find("the dump on standard input is truncated (it ends at byte 150,") != std::string::npos);
    CHECK(slurp(err).find(spool_dir.string()) == std::string::npos);
    CHECK(fs::is_empty(spool_dir));
  }

  TEST_CASE("--version, options after the command, -- ends the options (issue 25)") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    auto v = run({"--version"});
    CHECK(v.status == 0);
    CHECK(v.out.rfind("keel 0.", 0) == 0);
    CHECK(v.has("dump format 3"));  // issue 29: dumps with deadlines (versions 1 and 2 still written and read)

    CHECK(run({"put", "--db", db, "k", "v"}).status == 0);
    CHECK(run({"get", "--db", db, "k"}).out == "v\n");
    CHECK(run({"get", "k", "--db", db, "--json"}).out == "{\"key\":\"k\",\"value\":\"v\"}\n");
    CHECK(run({"scan", "--prefix", "k", "--db", db}).out == "k\tv\n");
    // A key or value starting with '-' after "--"; without it, an option.
    CHECK(run({"--db", db, "put", "--", "-k", "--v"}).status == 0);
    CHECK(run({"--db", db, "get", "--", "-k"}).out == "--v\n");
    CHECK(run({"--db", db, "get", "--bogus"}).status == 2);
    CHECK(run({"--db", db, "scan", "--keys-only", "--", "extra"}).status == 2);  // scan takes no word
    CHECK(run({"--db", db, "del", "--", "--prefix"}).status == 0);  // the key "--prefix", not a range
    CHECK(run({"--db", db, "count"}).out == "2\n");
    CHECK(run({"--db", db, "put", "--", "--prefix", "x"}).status == 0);
    CHECK(run({"--db", db, "del", "--", "--prefix"}).status == 0);
    CHECK(run({"--db", db, "scan", "--keys-only"}).out == "-k\nk\n");
    CHECK(run({"--db", db, "del", "--", "-k"}).status == 0);
    CHECK(run({"--db", db, "scan", "--keys-only"}).out == "k\n");
    // A value of "-" after a range option is its value, not an option.
    CHECK(run({"--db", db, "count", "--prefix", "-"}).out == "0\n");
  }

  TEST_CASE("put KEY - and put KEY --value-file F: values of any size, their exact bytes (issue 25)") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    // 1 MiB of every byte value: far over what a command line carries (~128 KiB per argument).
    std::string big;
    for (int i = 0; i < (1 << 20); ++i) big.push_back(static_cast<char>((i * 7 + i / 256) & 0xff));
    const fs::path file = tmp.path() / "value.bin";
    std::ofstream(file, std::ios::binary).write(big.data(), std::streamsize(big.size()));
    CHECK(run({"--db", db, "put", "from-file", "--value-file", file.string()}).status == 0);
    const std::string pre = q(cli_path()) + " --db " + q(db);
    CHECK(sh(pre + " put from-stdin - < " + q(file)) == 0);
    CHECK(sh(pre + " --raw get from-file > " + q(tmp.path() / "out1")) == 0);
    CHECK(sh(pre + " --raw get from-stdin > " + q(tmp.path() / "out2")) == 0);
    CHECK(slurp(tmp.path() / "out1") == big);
    CHECK(slurp(tmp.path() / "out2") == big);
    // No escapes in a value from a file or stdin; the newline stays.
    CHECK(sh("printf 'a\\\\x41\\n' | " + pre + " put k -") == 0);
    CHECK(run({"--db", db, "--escape", "get", "k"}).out == "a\\\\x41\\n\n");
    // Usage errors: nothing is written.
    CHECK(run({"--db", db, "put", "k2", "v", "--value-file", file.string()}).status == 2);
    CHECK(run({"--db", db, "put", "k2", "--value-file"}).status == 2);
    CHECK(run({"--db", db, "put", "k2", "--value-file", (tmp.path() / "missing").string()}).status == 5);
    CHECK(run({"--db", db, "count"}).out == "3\n");
  }

  TEST_CASE("text output: UTF-8 text as it is on a UTF-8 locale, the rest escaped; --json strings or base64 (issue 25)") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string text = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82";  // café € (U+1F642)
    REQUIRE(run({"--db", db, "put", text, text + "\\t!"}).status == 0);
    REQUIRE(run({"--db", db, "put", "latin1-\\xe9", "\\xff\\xfe"}).status == 0);          // not UTF-8
    REQUIRE(run({"--db", db, "put", "c1-\\xc2\\x9b", "overlong-\\xc0\\xaf"}).status == 0);  // a C1 control; invalid
    struct locale_env {
      explicit locale_env(const char* v) { ::setenv("LC_ALL", v, 1); }
      ~locale_env() { ::unsetenv("LC_ALL"); }
    };
    {
      locale_env utf8("C.UTF-8");
      CHECK(run({"--db", db, "get", text}).out == text + "\\t!\n");
      CHECK(run({"--db", db, "scan"}).out == "c1-\\xc2\\x9b\toverlong-\\xc0\\xaf\n" + text + "\t" + text +
                                                   "\\t!\nlatin1-\\xe9\t\\xff\\xfe\n");
      // --escape: every byte outside printable ASCII as \xHH, as before.
      CHECK(run({"--db", db, "--escape", "get", text}).out ==
            "caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9f\\x99\\x82\\t!\n");
    }
    {
      locale_env c("C");
      CHECK(run({"--db", db, "get", text}).out == "caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9f\\x99\\x82\\t!\n");
    }
    // --json: valid UTF-8 as JSON strings (whatever the locale), anything else
    // as base64 in NAME_base64.
    auto j = run({"--db", db, "--json", "scan"});
    CHECK(j.out == "{\"key\":\"c1-\xc2\x9b\",\"value_base64\":\"b3ZlcmxvbmctwK8=\"}\n"
                   "{\"key\":\"" + text + "\",\"value\":\"" + text + "\\u0009!\"}\n"
                   "{\"key_base64\":\"bGF0aW4xLek=\",\"value_base64\":\"//4=\"}\n");
    CHECK(run({"--db", db, "--json", "get", "latin1-\\xe9"}).out ==
          "{\"key_base64\":\"bGF0aW4xLek=\",\"value_base64\":\"//4=\"}\n");
    CHECK(run({"--db", db, "--json", "scan", "--keys-only", "--prefix", "latin"}).out ==
          "{\"key_base64\":\"bGF0aW4xLek=\"}\n");
  }

  // Issue 27: keyspaces in the tool (docs/cli.md, "Keyspaces").
  TEST_CASE("keyspaces: --keyspace / -k on every data command; the same key in two keyspaces is two entries") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run({"--db", db, "put", "user/a", "default"}).status == 0);
    // Every form of the option: -k NAME, --keyspace NAME, --keyspace=NAME, before or after the command.
    CHECK(run({"--db", db, "-k", "users", "put", "user/a", "in users"}).status == 0);
    CHECK(run({"--db", db, "put", "--keyspace", "users", "user/b", "2"}).status == 0);
    CHECK(run({"--db", db, "--keyspace=users", "put", "other", "3"}).status == 0);
    CHECK(run({"--db", db, "-k", "logs", "put", "user/a", "in logs"}).status == 0);

    CHECK(run({"--db", db, "get", "user/a"}).out == "default\n");
    CHECK(run({"--db", db, "-k", "", "get", "user/a"}).out == "default\n");  // "" is the default keyspace
    CHECK(run({"--db", db, "get", "user/a", "-k", "users"}).out == "in users\n");
    CHECK(run({"--db", db, "--keyspace=logs", "get", "user/a"}).out == "in logs\n");
    CHECK(run({"--db", db, "-k", "logs", "get", "user/b"}).status == 1);  // only in users
    CHECK(run({"--db", db, "--json", "-k", "users", "get", "other"}).out == "{\"key\":\"other\",\"value\":\"3\"}\n");

    // A scan never leaves its keyspace.
    CHECK(run({"--db", db, "scan"}).out == "user/a\tdefault\n");
    CHECK(run({"--db", db, "-k", "users", "scan"}).out == "other\t3\nuser/a\tin users\nuser/b\t2\n");
    CHECK(run({"--db", db, "-k", "users", "scan", "--prefix", "user/", "--reverse", "--keys-only"}).out ==
          "user/b\nuser/a\n");
    CHECK(run({"--db", db, "-k", "users", "count"}).out == "3\n");
    CHECK(run({"--db", db, "-k", "users", "count", "--prefix", "user/"}).out == "2\n");
    CHECK(run({"--db", db, "count"}).out == "1\n");

    // del KEY and del with a range (its count is the keyspace's) touch one keyspace.
    CHECK(run({"--db", db, "-k", "logs", "del", "user/a"}).status == 0);
    CHECK(run({"--db", db, "-k", "logs", "count"}).out == "0\n");
    CHECK(run({"--db", db, "get", "user/a"}).out == "default\n");
    CHECK(run({"--db", db, "-k", "users", "get", "user/a"}).out == "in users\n");
    auto r = run({"--db", db, "--json", "-k", "users", "del", "--prefix", "user/"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"erased\":2}\n");
    CHECK(run({"--db", db, "-k", "users", "scan"}).out == "other\t3\n");
    CHECK(run({"--db", db, "scan"}).out == "user/a\tdefault\n");
    r = run({"--db", db, "--json", "-k", "users", "del", "--no-count", "--from", "a"});
    CHECK(r.out == "{\"erased\":null}\n");
    CHECK(run({"--db", db, "-k", "users", "count"}).out == "0\n");
    CHECK(run({"--db", db, "count"}).out == "1\n");

    // compact and stats of a keyspace.
    CHECK(run({"--db", db, "-k", "logs", "put", "x", "12345"}).status == 0);
    r = run({"--db", db, "--json", "-k", "logs", "compact"});
    CHECK(r.status == 0);
    CHECK(r.has("\"size_bytes_after\":"));
    CHECK(run({"--db", db, "-k", "logs", "get", "x"}).out == "12345\n");
    r = run({"--db", db, "-k", "logs", "stats"});
    CHECK(r.status == 0);
    CHECK(r.out == "backend\trocksdb\npath\t" + db + "\nkeyspace\tlogs\nkeys\t1\nkeys_exact\ttrue\nbytes\t6\n");
    CHECK(run({"--db", db, "--json", "-k", "logs", "stats"}).out ==
          "{\"backend\":\"rocksdb\",\"path\":\"" + db +
              "\",\"keyspace\":\"logs\",\"keys\":1,\"keys_exact\":true,\"bytes\":6}\n");
    r = run({"--db", db, "stats"});
    CHECK(r.has("\nkeyspaces\t3\n"));  // "", logs, users

    // A missing keyspace: every command but put and import exits 1 and creates nothing.
    for (std::vector<std::string> cmd : {std::vector<std::string>{"get", "k"}, {"scan"}, {"count"}, {"del", "k"},
                                         {"del", "--prefix", "k"}, {"compact"}, {"stats"},
                                         {"export", (tmp.path() / "none.dump").string()}}) {
      CAPTURE(cmd[0]);
      std::vector<std::string> args = {"--db", db, "-k", "nope"};
      args.insert(args.end(), cmd.begin(), cmd.end());
      const auto m = run_cli(args);
      CHECK(m.status == 1);
      CHECK(m.says("keel: no keyspace 'nope' in the store"));
    }
    CHECK_FALSE(fs::exists(tmp.path() / "none.dump"));
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t13\nlogs\t1\t6\nusers\t0\t0\n");
  }

  TEST_CASE("keyspaces lists every keyspace with its keys and bytes, text and --json") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run({"--db", db, "put", "k", "v"}).status == 0);
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t2\n");  // the default keyspace only
    REQUIRE(run({"--db", db, "-k", "b", "put", "key", "value"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "b", "put", "k2", ""}).status == 0);
    REQUIRE(run({"--db", db, "-k", "a", "put", "x", "y"}).status == 0);
    // Sorted by name, "" first; keys and the bytes of keys and values.
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t2\na\t1\t2\nb\t2\t10\n");
    CHECK(run({"--db", db, "--json", "keyspaces"}).out ==
          "{\"name\":\"\",\"keys\":1,\"bytes\":2}\n{\"name\":\"a\",\"keys\":1,\"bytes\":2}\n"
          "{\"name\":\"b\",\"keys\":2,\"bytes\":10}\n");
    // A read command: it creates nothing.
    CHECK(run({"--db", (tmp.path() / "missing").string(), "keyspaces"}).status == 3);
    CHECK_FALSE(fs::exists(tmp.path() / "missing"));
    CHECK(run({"--db", db, "keyspaces", "extra"}).status == 2);
  }

  TEST_CASE("drop-keyspace: refused without --yes and for \"\", exit 1 for a missing one, atomic with --yes") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run({"--db", db, "put", "k", "default"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "sessions", "put", "k", "s1"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "sessions", "put", "k2", "s2"}).status == 0);

    auto r = run_cli({"--db", db, "drop-keyspace", "sessions"});
    CHECK(r.status == 2);
    CHECK(r.says("add --yes to do it (nothing was dropped)"));
    CHECK(run({"--db", db, "-k", "sessions", "count"}).out == "2\n");
    r = run_cli({"--db", db, "drop-keyspace", "", "--yes"});
    CHECK(r.status == 2);
    CHECK(r.says("the default keyspace \"\" cannot be dropped"));
    CHECK(run({"--db", db, "count"}).out == "1\n");
    CHECK(run({"--db", db, "drop-keyspace"}).status == 2);
    CHECK(run({"--db", db, "drop-keyspace", "a", "b", "--yes"}).status == 2);
    CHECK(run({"--db", db, "drop-keyspace", "sessions", "--force"}).status == 2);
    CHECK(run({"--db", db, "-k", "sessions", "drop-keyspace", "sessions", "--yes"}).status == 2);
    r = run_cli({"--db", db, "drop-keyspace", "nope", "--yes"});
    CHECK(r.status == 1);
    CHECK(r.says("keel: no keyspace 'nope' in the store"));
    // A missing store: exit 3, nothing created.
    const std::string none = (tmp.path() / "none").string();
    CHECK(run({"--db", none, "drop-keyspace", "x", "--yes"}).status == 3);
    CHECK_FALSE(fs::exists(none));
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t8\nsessions\t2\t7\n");

    r = run_cli({"--db", db, "drop-keyspace", "sessions", "--yes"});
    CHECK(r.status == 0);
    CHECK(r.says("keel: dropped keyspace 'sessions'"));
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t8\n");
    CHECK(run({"--db", db, "-k", "sessions", "get", "k"}).status == 1);
    CHECK(run({"--db", db, "get", "k"}).out == "default\n");
    // Recreating the name gives an empty keyspace.
    REQUIRE(run({"--db", db, "-k", "sessions", "put", "new", "1"}).status == 0);
    CHECK(run({"--db", db, "-k", "sessions", "scan"}).out == "new\t1\n");
    CHECK(run({"--db", db, "--json", "drop-keyspace", "--yes", "sessions"}).out == "{\"dropped\":\"sessions\"}\n");
    CHECK(run({"--db", db, "drop-keyspace", "sessions", "--yes"}).status == 1);  // dropped twice
  }

  TEST_CASE("keyspace names: any bytes, given in the escaped form the tool prints them") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    ::setenv("LC_ALL", "C", 1);  // names printed escaped whatever the test's locale
    struct unset_locale {
      ~unset_locale() { ::unsetenv("LC_ALL"); }
    } restore;
    const std::string max_name(255, 'n');
    for (const std::string& name : {std::string("bin\\x00\\xff"), std::string("tab\\there\\\\"),
                                    std::string("caf\\xc3\\xa9"), std::string("\\xff"), max_name}) {
      CAPTURE(name);
      REQUIRE(run({"--db", db, "-k", name, "put", "k", name}).status == 0);
    }
    const auto listed = run({"--db", db, "keyspaces"});
    REQUIRE(listed.status == 0);
    CHECK(listed.out == "\t0\t0\nbin\\x00\\xff\t1\t6\ncaf\\xc3\\xa9\t1\t6\n" + max_name + "\t1\t256\n" +
                            "tab\\there\\\\\t1\t10\n\\xff\t1\t2\n");
    // Each name as printed goes back in as it is: the values were the names as given.
    std::istringstream lines(listed.out);
    int seen = 0;
    for (std::string line; std::getline(lines, line);) {
      const std::string printed = line.substr(0, line.find('\t'));
      if (printed.empty()) continue;
      CAPTURE(printed);
      CHECK(run({"--db", db, "-k", printed, "get", "k"}).out == printed + "\n");
      ++seen;
    }
    CHECK(seen == 5);
    // Hex digits in either case; JSON: a name that is not UTF-8 in base64.
    CHECK(run({"--db", db, "-k", "BIN\\x00\\xFF", "get", "k"}).status == 1);  // another name: BIN
    CHECK(run({"--db", db, "-k", "bin\\x00\\xFF", "get", "k"}).out == "bin\\x00\\xff\n");
    const auto json = run({"--db", db, "--json", "keyspaces"});
    CHECK(json.has("{\"name_base64\":\"YmluAP8=\",\"keys\":1,\"bytes\":6}\n"));
    CHECK(json.has("{\"name\":\"caf\xc3\xa9\",\"keys\":1,\"bytes\":6}\n"));
    CHECK(run({"--db", db, "drop-keyspace", "\\xff", "--yes"}).status == 0);
    CHECK(run({"--db", db, "-k", "\\xff", "count"}).status == 1);
    CHECK(run({"--db", db, "-k", "bin\\x00\\xff", "count"}).out == "1\n");
  }

  TEST_CASE("bad keyspace names and misplaced --keyspace exit 2 and open nothing") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string long_name(256, 'n');
    auto r = run_cli({"--db", db, "-k", long_name, "put", "k", "v"});
    CHECK(r.status == 2);
    CHECK(r.says("--keyspace: a keyspace name is at most 255 bytes; this one has 256"));
    // 255 bytes written as escapes are 255 bytes: the limit counts the name, not the argument.
    std::string escaped_256;
    for (int i = 0; i < 256; ++i) escaped_256 += "\\x01";
    CHECK(run({"--db", db, "-k", escaped_256, "get", "k"}).status == 2);
    r = run_cli({"--db", db, "drop-keyspace", long_name, "--yes"});
    CHECK(r.status == 2);
    CHECK(r.says("drop-keyspace NAME: a keyspace name is at most 255 bytes"));
    CHECK(run({"--db", db, "-k", "bad\\x4", "put", "k", "v"}).status == 2);  // a bad escape
    CHECK(run({"--db", db, "drop-keyspace", "bad\\q", "--yes"}).status == 2);
    CHECK(run({"--db", db, "put", "k", "v", "-k"}).status == 2);  // no NAME
    CHECK(run({"--db", db, "-k", "a", "--keyspace", "b", "put", "k", "v"}).status == 2);  // twice
    CHECK_FALSE(fs::exists(db));  // nothing was opened
    // Commands that work on the whole store (or none) take no --keyspace.
    REQUIRE(run({"--db", db, "put", "k", "v"}).status == 0);
    for (std::vector<std::string> cmd : {std::vector<std::string>{"checkpoint", (tmp.path() / "cp").string()},
                                         {"migrate", db, (tmp.path() / "db2").string()},
                                         {"verify", (tmp.path() / "x.dump").string()}, {"keyspaces"}, {"doctor", db}}) {
      CAPTURE(cmd[0]);
      std::vector<std::string> args = {"--db", db, "-k", "users"};
      args.insert(args.end(), cmd.begin(), cmd.end());
      r = run_cli(args);
      CHECK(r.status == 2);
      CHECK(r.says("--keyspace (-k) is for get, put, del, scan, count, ttl, compact, export, import, stats and watch"));
    }
    CHECK_FALSE(fs::exists(tmp.path() / "cp"));
    CHECK_FALSE(fs::exists(tmp.path() / "db2"));
    CHECK(run({"--db", db, "keyspaces"}).out == "\t1\t2\n");
    // A key "-k" still goes after "--".
    CHECK(run({"--db", db, "put", "--", "-k", "dash"}).status == 0);
    CHECK(run({"--db", db, "get", "--", "-k"}).out == "dash\n");
  }

  TEST_CASE("export -k and import -k move one keyspace's records through a dump") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string dump = (tmp.path() / "users.dump").string();
    REQUIRE(run({"--db", db, "put", "a", "default"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "users", "put", "a", "1"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "users", "put", "b\\x00", "2"}).status == 0);
    auto r = run({"--db", db, "--json", "-k", "users", "export", dump});
    CHECK(r.status == 0);
    CHECK(r.has("\"records\":2,"));
    // Into another keyspace of another store (created by the import), and into its default keyspace.
    const std::string db2 = (tmp.path() / "db2").string();
    r = run({"--db", db2, "--json", "-k", "people", "import", dump});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"records\":2,\"payload_bytes\":5}\n");
    CHECK(run({"--db", db2, "-k", "people", "scan"}).out == "a\t1\nb\\x00\t2\n");
    CHECK(run({"--db", db2, "count"}).out == "0\n");
    CHECK(run({"--db", db2, "import", dump}).status == 0);
    CHECK(run({"--db", db2, "scan"}).out == "a\t1\nb\\x00\t2\n");
    CHECK(run({"--db", db2, "keyspaces"}).out == "\t2\t5\npeople\t2\t5\n");
    // export -k --prefix, and to stdout.
    CHECK(sh(q(cli_path()) + " --db " + q(db) + " -k users export --prefix b - | " + q(cli_path()) + " --db " +
             q(db2) + " -k part import -") == 0);
    CHECK(run({"--db", db2, "-k", "part", "scan"}).out == "b\\x00\t2\n");
  }

  TEST_CASE("export, import and migrate carry every keyspace (dump format 2); import -k takes a dump of one") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string dump = (tmp.path() / "all.dump").string();
    REQUIRE(run({"--db", db, "put", "k", "default"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "users", "put", "k", "u1"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "users", "put", "k2", "u2"}).status == 0);
    REQUIRE(run({"--db", db, "-k", "bin\\x00\\xff", "put", "k", "b"}).status == 0);
    const std::string listing = "\t1\t8\nbin\\x00\\xff\t1\t2\nusers\t2\t7\n";
    REQUIRE(run({"--db", db, "keyspaces"}).out == listing);
    const std::string everything = "k\tdefault\n";
    auto r = run({"--db", db, "--json", "export", dump});
    CHECK(r.status == 0);
    CHECK(r.has("{\"records\":4,\"payload_bytes\":17,"));
    r = run({"verify", dump});
    CHECK(r.status == 0);
    CHECK(r.out == "ok: 4 records, 17 bytes of keys and values, format version 2, 3 keyspaces\n");
    CHECK(run({"--json", "verify", dump}).has(
        "\"version\":2,\"keyspaces\":[{\"name\":\"\"},{\"name_base64\":\"YmluAP8=\"},{\"name\":\"users\"}]}"));

    // Into a new store: every keyspace, every record in its own.
    const std::string db2 = (tmp.path() / "db2").string();
    CHECK(run({"--db", db2, "import", dump}).status == 0);
    CHECK(run({"--db", db2, "keyspaces"}).out == listing);
    CHECK(run({"--db", db2, "-k", "users", "scan"}).out == "k\tu1\nk2\tu2\n");
    CHECK(run({"--db", db2, "-k", "bin\\x00\\xff", "get", "k"}).out == "b\n");
    CHECK(run({"--db", db2, "scan"}).out == everything);
    // Through a pipe, and migrate: the same.
    const std::string db3 = (tmp.path() / "db3").string();
    CHECK(sh(q(cli_path()) + " --db " + q(db) + " export - | " + q(cli_path()) + " --db " + q(db3) + " import -") == 0);
    CHECK(run({"--db", db3, "keyspaces"}).out == listing);
    const std::string db4 = (tmp.path() / "db4").string();
    r = run({"--json", "migrate", db, db4});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"records\":4,\"payload_bytes\":17}\n");
    CHECK(run({"--db", db4, "keyspaces"}).out == listing);
    CHECK(run({"--db", db4, "-k", "users", "get", "k2"}).out == "u2\n");
    // export --prefix applies in every keyspace.
    const std::string part = (tmp.path() / "part.dump").string();
    CHECK(run({"--db", db, "export", "--prefix", "k2", part}).status == 0);
    CHECK(run({"verify", part}).out == "ok: 1 records, 4 bytes of keys and values, format version 2, 3 keyspaces\n");

    // import -k NAME of a dump holding several keyspaces: refused, nothing opened.
    const std::string db5 = (tmp.path() / "db5").string();
    auto refused = run_cli({"--db", db5, "-k", "users", "import", dump});
    CHECK(refused.status == 2);
    CHECK(refused.says("holds the keyspaces '', 'bin\\x00\\xff', 'users'; import it without --keyspace"));
    CHECK_FALSE(fs::exists(db5));
    // A store with only "" still writes version 1 (older keel reads it).
    CHECK(run({"--db", db5, "put", "a", "b"}).status == 0);
    CHECK(run({"--db", db5, "export", part}).status == 0);
    CHECK(run({"verify", part}).out == "ok: 1 records, 2 bytes of keys and values, format version 1\n");
  }

  TEST_CASE("--keyspace on a store whose backend has no keyspaces (yet): a clear error, or it works") {
    temp_dir tmp;
    // Backends gain keyspaces one by one (issue 27); either the command works,
    // or it exits 5 saying why, and the default keyspace is untouched.
    const std::vector<std::vector<std::string>> stores = {
        {"--hybrid", (tmp.path() / "h").string()}, {"--memory-file", (tmp.path() / "m.keeldump").string()}};
    for (const auto& store : stores) {
      CAPTURE(store[0]);
      auto with = [&](std::vector<std::string> args) {
        args.insert(args.begin(), store.begin(), store.end());
        return run_cli(args);
      };
      REQUIRE(with({"put", "k", "default"}).status == 0);
      const auto put = with({"-k", "ks", "put", "k", "in ks"});
      if (put.status == 0) {
        CHECK(with({"-k", "ks", "get", "k"}).out == "in ks\n");
        CHECK(with({"keyspaces"}).out == "\t1\t8\nks\t1\t6\n");
      } else {
        CHECK(put.status == 5);
        const bool says_why = put.says("has no keyspaces") || put.says("not persisted");
        CHECK(says_why);
        CHECK(with({"keyspaces"}).out == "\t1\t8\n");
      }
      CHECK(with({"get", "k"}).out == "default\n");
    }
  }
}

// Expiry in the tool (issue 29): put --ttl, ttl KEY, scan --show-ttl. The
// remaining time is by the real clock, so the cases use long ttls and check
// ranges; the one key that must expire has a 1 ms ttl and is polled.
TEST_SUITE("cli") {
  TEST_CASE("cli put --ttl, ttl and scan --show-ttl: remaining time, no ttl, absent, keyspaces, JSON, reopen") {
    using keel::test::ttl_text_ms;
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    auto keel = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"--db", db});
      return run_cli(args);
    };
    // Checks that `text` is a time as `keel ttl` prints it, within [low, high] ms.
    auto left_within = [](const std::string& text, long long low, long long high) {
      const long long ms = ttl_text_ms(text);
      CHECK_MESSAGE((ms >= low && ms <= high), "printed: '" << text << "', expected " << low << " to " << high << " ms");
    };
    REQUIRE(keel({"put", "a", "1", "--ttl", "1h"}).status == 0);
    REQUIRE(keel({"put", "b", "2"}).status == 0);
    REQUIRE(keel({"put", "--ttl=1h30m", "c", "3"}).status == 0);  // before the KEY, and with '='
    REQUIRE(keel({"-k", "users", "put", "u", "v", "--ttl", "2h"}).status == 0);

    auto a = keel({"ttl", "a"});
    CHECK(a.status == 0);
    left_within(a.out, 3500'000, 3600'000);
    left_within(keel({"ttl", "c"}).out, 5300'000, 5400'000);
    auto b = keel({"ttl", "b"});
    CHECK(b.status == 0);
    CHECK(b.out == "no ttl\n");
    auto absent = keel({"ttl", "nope"});
    CHECK(absent.status == 1);  // as get of an absent key
    CHECK(absent.out == "absent\n");
    auto u = keel({"-k", "users", "ttl", "u"});
    CHECK(u.status == 0);
    left_within(u.out, 7100'000, 7200'000);
    CHECK(keel({"ttl", "u"}).out == "absent\n");  // the default keyspace has no u
    CHECK(keel({"-k", "nobody", "ttl", "u"}).status == 1);

    // --json: present, ttl_ms, deadline_ms.
    auto j = keel({"--json", "ttl", "a"});
    CHECK(j.status == 0);
    REQUIRE(j.out.rfind("{\"key\":\"a\",\"present\":true,\"ttl_ms\":", 0) == 0);
    const long long ttl_ms = std::stoll(j.out.substr(j.out.find("\"ttl_ms\":") + 9));
    CHECK(ttl_ms > 3500'000);
    CHECK(ttl_ms <= 3600'000);
    CHECK(j.out.find(",\"deadline_ms\":") != std::string::npos);
    CHECK(keel({"--json", "ttl", "b"}).out == "{\"key\":\"b\",\"present\":true,\"ttl_ms\":null,\"deadline_ms\":null}\n");
    auto jn = keel({"--json", "ttl", "nope"});
    CHECK(jn.status == 1);
    CHECK(jn.out == "{\"key\":\"nope\",\"present\":false,\"ttl_ms\":null,\"deadline_ms\":null}\n");

    // scan --show-ttl: a third column (second with --keys-only).
    auto s = keel({"scan", "--show-ttl"});
    CHECK(s.status == 0);
    std::vector<std::string> lines;
    std::istringstream in(s.out);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].rfind("a\t1\t", 0) == 0);
    left_within(lines[0].substr(4), 3500'000, 3600'000);
    CHECK(lines[1] == "b\t2\tnone");
    left_within(lines[2].substr(lines[2].rfind('\t') + 1), 5300'000, 5400'000);
    CHECK(keel({"scan", "--show-ttl", "--keys-only", "--from", "b", "--limit", "1"}).out == "b\tnone\n");
    CHECK(keel({"scan"}).out == "a\t1\nb\t2\nc\t3\n");  // without it: as before
    auto us = keel({"-k", "users", "scan", "--show-ttl"});
    CHECK(us.out.rfind("u\tv\t", 0) == 0);
    left_within(us.out.substr(4), 7100'000, 7200'000);
    CHECK(keel({"--json", "scan", "--show-ttl", "--prefix", "b"}).out ==
          "{\"key\":\"b\",\"value\":\"2\",\"ttl_ms\":null,\"deadline_ms\":null}\n");
    CHECK(keel({"--json", "scan", "--show-ttl", "--prefix", "a"}).out.rfind("{\"key\":\"a\",\"value\":\"1\",\"ttl_ms\":", 0) == 0);

    // A put without --ttl makes the key permanent again; a new --ttl replaces the old one.
    REQUIRE(keel({"put", "a", "1"}).status == 0);
    CHECK(keel({"ttl", "a"}).out == "no ttl\n");
    REQUIRE(keel({"put", "b", "2", "--ttl", "1d"}).status == 0);
    left_within(keel({"ttl", "b"}).out, 86300'000, 86400'000);

    // A key with a 1 ms ttl is gone by the clock: every read leaves it out.
    REQUIRE(keel({"put", "e", "x", "--ttl", "1ms"}).status == 0);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    cli_result gone;
    do gone = keel({"ttl", "e"});
    while (gone.status == 0 && std::chrono::steady_clock::now() < deadline);
    CHECK(gone.status == 1);
    CHECK(gone.out == "absent\n");
    CHECK(keel({"get", "e"}).status == 1);
    CHECK(keel({"scan", "--keys-only"}).out == "a\nb\nc\n");

    // A persisted memory store keeps deadlines across commands too.
    const std::string mf = (tmp.path() / "mem").string();
    REQUIRE(run_cli({"--memory-file", mf, "put", "m", "1", "--ttl", "2h"}).status == 0);
    left_within(run_cli({"--memory-file", mf, "ttl", "m"}).out, 7100'000, 7200'000);
  }

  TEST_CASE("cli put --ttl: a bad DURATION is a usage error that writes and creates nothing") {
    temp_dir tmp;
    const std::string fresh = (tmp.path() / "fresh").string();
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "put", "k", "old"}).status == 0);
    for (const std::string bad : {"0s", "0ms", "0d0h", "-5s", "5x", "", "5", "s", "1.5h", " 5s", "+5s", "5S", "1h1h",
                                  "1m1h", "5 s", "99999999999999999999d", "106751991167d", "1000000d"}) {
      CAPTURE(bad);
      for (const std::string& path : {fresh, db}) {
        auto r = run_cli({"--db", path, "put", "k", "new", "--ttl", bad});
        CHECK(r.status == 2);
        CHECK(r.says("--ttl"));
        CHECK(r.says("Run 'keel --help'"));
      }
      CHECK_FALSE(fs::exists(fresh));
      CHECK(run_cli({"--db", db, "get", "k"}).out == "old\n");
    }
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "0s"}).says("--ttl must be positive, not '0s'"));
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "-5s"}).says("--ttl must be positive, not '-5s'"));
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "5x"}).says("--ttl needs a DURATION"));
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "1000000d"}).says("is too long"));
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "99999999999999999999d"}).says("is too long"));
    // The option itself misused.
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl"}).status == 2);
    CHECK(run_cli({"--db", db, "put", "k", "new", "--ttl", "1h", "--ttl", "2h"}).status == 2);
    CHECK(run_cli({"--db", db, "--ttl", "1h", "put", "k", "new"}).status == 2);  // an option of put, after it
    CHECK(run_cli({"--db", db, "get", "k"}).out == "old\n");
    CHECK(run_cli({"--db", db, "ttl", "k"}).out == "no ttl\n");
    // ttl and --show-ttl misused.
    CHECK(run_cli({"--db", db, "ttl"}).status == 2);
    CHECK(run_cli({"--db", db, "ttl", "a", "b"}).status == 2);
    CHECK(run_cli({"--db", db, "ttl", "--bogus"}).status == 2);
    CHECK(run_cli({"--db", db, "count", "--show-ttl"}).status == 2);
    CHECK(run_cli({"--db", fresh, "ttl", "k"}).status == 3);  // a read creates nothing
    CHECK_FALSE(fs::exists(fresh));
    // Every unit of the grammar, alone and together.
    for (const auto& given : std::vector<std::pair<std::string, long long>>{
             {"30s", 30'000}, {"5m", 300'000}, {"2h", 7'200'000}, {"1d", 86'400'000}, {"1d12h", 129'600'000},
             {"1h30m15s", 5'415'000}, {"90000ms", 90'000}}) {
      const std::string& text = given.first;
      const long long ms = given.second;
      CAPTURE(text);
      REQUIRE(run_cli({"--db", db, "put", "g", "v", "--ttl", text}).status == 0);
      const long long left = keel::test::ttl_text_ms(run_cli({"--db", db, "ttl", "g"}).out);
      CHECK(left <= ms);
      CHECK(left > ms - std::min(ms / 2, 60'000LL));
    }
  }
}
