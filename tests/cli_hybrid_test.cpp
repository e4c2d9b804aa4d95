// The keel command-line tool on a hybrid store (--hybrid PATH, hybrid:PATH in
// migrate), run as a separate process: commands, stats with the tier in
// either tier, checkpoint, a store held by another process (the PID named,
// doctor explaining it), reads that create nothing, usage errors.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <keel/dump.hpp>
#include <keel/hybrid.hpp>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::test::child_process;
using keel::test::cli_result;
using keel::test::helper_path;
using keel::test::run_cli;
using keel::test::temp_dir;
using namespace std::chrono_literals;

TEST_SUITE("cli") {
  TEST_CASE("cli --hybrid: put, get, scan, count, del, stats with the tier, checkpoint, migrate both ways") {
    temp_dir tmp;
    const std::string h = (tmp.path() / "h").string();
    const cli_result created = run_cli({"--hybrid", h, "put", "k1", "v1"});
    CHECK(created.status == 0);
    CHECK(created.says("created a new hybrid store"));
    CHECK(fs::exists(fs::path(h) / "TIER"));
    CHECK(fs::exists(fs::path(h) / "keel.lock"));
    CHECK_FALSE(run_cli({"--hybrid", h, "put", "k2", "v2"}).says("created"));
    CHECK(run_cli({"--hybrid", h, "put", "x\\x00y", "z"}).status == 0);
    CHECK(run_cli({"--hybrid", h, "get", "k2"}).out == "v2\n");
    CHECK(run_cli({"--hybrid", h, "get", "nope"}).status == 1);
    CHECK(run_cli({"--hybrid", h, "scan"}).out == "k1\tv1\nk2\tv2\nx\\x00y\tz\n");
    CHECK(run_cli({"--hybrid", h, "count"}).out == "3\n");
    CHECK(run_cli({"--hybrid", h, "del", "x\\x00y"}).status == 0);

    const cli_result stats = run_cli({"--hybrid", h, "stats"});
    CHECK(stats.status == 0);
    CHECK(stats.has("backend\thybrid\n"));
    CHECK(stats.has("tier\tmemory\n"));
    CHECK(stats.has("path\t" + h + "\n"));
    CHECK(stats.has("keys\t2\n"));
    CHECK(stats.has("keel.hybrid.spill_bytes\t67108864\n"));
    CHECK(run_cli({"--hybrid", h, "--json", "stats"}).has("\"tier\":\"memory\""));

    // A checkpoint is a hybrid store of its own.
    const std::string cp = (tmp.path() / "cp").string();
    CHECK(run_cli({"--hybrid", h, "checkpoint", cp}).status == 0);
    CHECK(run_cli({"--hybrid", cp, "scan"}).out == "k1\tv1\nk2\tv2\n");
    CHECK(run_cli({"--hybrid", h, "checkpoint", cp}).status == 5);  // exists: refused

    // migrate: hybrid -> RocksDB -> another hybrid store.
    const std::string db = (tmp.path() / "db").string();
    const std::string h2 = (tmp.path() / "h2").string();
    CHECK(run_cli({"migrate", "hybrid:" + h, db}).status == 0);
    CHECK(run_cli({"--db", db, "scan"}).out == "k1\tv1\nk2\tv2\n");
    CHECK(run_cli({"--db", db, "put", "k3", "v3"}).status == 0);
    CHECK(run_cli({"migrate", db, "hybrid:" + h2}).status == 0);
    CHECK(run_cli({"--hybrid", h2, "scan", "--keys-only"}).out == "k1\nk2\nk3\n");
    CHECK(run_cli({"migrate", db, "hybrid:"}).status == 3);  // no PATH
  }

  TEST_CASE("cli --hybrid: the RocksDB tier shows in stats and doctor; its data reads back") {
    temp_dir tmp;
    const fs::path h = tmp.path() / "h";
    {
      auto s = keel::hybrid_store::open({.path = h, .spill_bytes = std::size_t(1) << 40});
      REQUIRE(s);
      for (int i = 0; i < 100; ++i) REQUIRE(s->put("key" + std::to_string(1000 + i), "value" + std::to_string(i)));
      REQUIRE(s->policy().move_to_large());
      REQUIRE(s->policy().current_tier() == keel::HybridPolicy<>::tier::large);
      REQUIRE(s->close());
    }
    const cli_result stats = run_cli({"--hybrid", h.string(), "stats"});
    CHECK(stats.status == 0);
    CHECK(stats.has("tier\trocksdb\n"));
    CHECK(stats.has("keys\t100\n"));
    CHECK(run_cli({"--hybrid", h.string(), "get", "key1042"}).out == "value42\n");
    CHECK(run_cli({"--hybrid", h.string(), "put", "key2000", "after"}).status == 0);
    CHECK(run_cli({"--hybrid", h.string(), "count"}).out == "101\n");

    const cli_result doctor = run_cli({"doctor", h.string()});
    CHECK(doctor.status == 0);
    CHECK(doctor.has("is a hybrid store"));
    CHECK(doctor.has("in its rocksdb tier"));
    CHECK(doctor.has("RocksDB tier: "));
    CHECK(doctor.has("an open would succeed now"));
    CHECK(run_cli({"--json", "doctor", h.string()}).has("\"hybrid_tier\":\"rocksdb\""));
  }

  TEST_CASE("cli --hybrid: a store held by another process exits 3 with its PID, whichever command; doctor says who") {
    temp_dir tmp;
    const std::string h = (tmp.path() / "h").string();
    REQUIRE(run_cli({"--hybrid", h, "put", "k", "v"}).status == 0);
    {
      child_process holder(helper_path("hybrid_writer"), {"hold", h});
      auto line = holder.read_line(30s);
      REQUIRE(line.has_value());
      REQUIRE(*line == "ready " + std::to_string(holder.pid()));
      for (const std::vector<std::string>& cmd :
           {std::vector<std::string>{"get", "k"}, {"put", "k", "w"}, {"stats"}, {"scan"}}) {
        std::vector<std::string> args = {"--hybrid", h};
        args.insert(args.end(), cmd.begin(), cmd.end());
        const cli_result r = run_cli(args);
        CHECK(r.status == 3);
        CHECK(r.says("process " + std::to_string(holder.pid())));
        CHECK(r.says("keel doctor " + h));
      }
      const cli_result doctor = run_cli({"doctor", h});
      CHECK(doctor.status == 1);
      CHECK(doctor.has("is a hybrid store"));
      CHECK(doctor.has("in its memory tier"));
      CHECK(doctor.has("process " + std::to_string(holder.pid())));
      CHECK(doctor.has("would NOT succeed"));
      CHECK(run_cli({"--json", "doctor", h}).has("\"holder_pid\":" + std::to_string(holder.pid())));
      holder.close_stdin();
      CHECK(holder.wait() == 0);
    }
    // Closed: the path opens at once, nothing was lost or changed by the refusals.
    CHECK(run_cli({"--hybrid", h, "get", "k"}).out == "v\n");
    const cli_result doctor = run_cli({"doctor", h});
    CHECK(doctor.status == 0);
    CHECK(doctor.has("Nobody holds its keel.lock"));
  }

  TEST_CASE("cli --hybrid: reads of a missing store exit 3 and create nothing; usage errors exit 2") {
    temp_dir tmp;
    const fs::path h = tmp.path() / "none";
    for (const std::vector<std::string>& cmd : {std::vector<std::string>{"get", "k"}, {"scan"}, {"stats"}, {"count"}}) {
      std::vector<std::string> args = {"--hybrid", h.string()};
      args.insert(args.end(), cmd.begin(), cmd.end());
      const cli_result r = run_cli(args);
      CHECK(r.status == 3);
      CHECK(r.says("no database at"));
    }
    CHECK_FALSE(fs::exists(h));
    const cli_result not_found = run_cli({"migrate", "hybrid:" + h.string(), (tmp.path() / "db").string()});
    CHECK(not_found.status == 3);
    CHECK_FALSE(fs::exists(h));
    CHECK_FALSE(fs::exists(tmp.path() / "db"));

    CHECK(run_cli({"--hybrid"}).status == 2);
    CHECK(run_cli({"--hybrid", "", "count"}).status == 2);
    CHECK(run_cli({"--hybrid", h.string(), "--db", (tmp.path() / "db").string(), "count"}).status == 2);
    CHECK(run_cli({"--hybrid", h.string(), "--memory", "count"}).status == 2);
    CHECK(run_cli({"--hybrid", h.string(), "--fallback", "put", "k", "v"}).status == 2);
    CHECK_FALSE(fs::exists(h));
  }

  // Issue 25, bug 10: a hybrid store filled through the tool moves to RocksDB
  // past spill_bytes (64 MiB) although each command lives shorter than a
  // background move; compact moves a store that is due; stats says when.
  TEST_CASE("cli --hybrid: past 64 MiB the data moves to RocksDB within the command; stats says when") {
    temp_dir tmp;
    const std::string h = (tmp.path() / "h").string();
    REQUIRE(run_cli({"--hybrid", h, "put", "small", "v"}).status == 0);
    const cli_result small = run_cli({"--hybrid", h, "stats"});
    CHECK(small.has("tier\tmemory\n"));
    CHECK(small.has("move\tto rocksdb once the memory tier holds 67108864 bytes"));

    // 66 values of 1 MiB, imported in one command.
    const fs::path big = tmp.path() / "big.keeldump";
    {
      keel::dump_writer w;
      REQUIRE(w.open(big));
      const std::string value(std::size_t(1) << 20, 'x');
      for (int i = 0; i < 66; ++i) REQUIRE(w.add("big/" + std::to_string(100 + i), value));
      REQUIRE(w.finish());
    }
    const cli_result imported = run_cli({"--hybrid", h, "import", big.string()});
    CHECK(imported.status == 0);
    CHECK(imported.says("moved its data to RocksDB"));
    const cli_result moved = run_cli({"--hybrid", h, "stats"});
    CHECK(moved.has("tier\trocksdb\n"));
    CHECK_FALSE(moved.has("move\t"));
    CHECK(moved.has("keys\t67\n"));
    CHECK(run_cli({"--hybrid", h, "get", "small"}).out == "v\n");

    // A store a program left past spill_bytes in memory: compact moves it.
    const fs::path h2 = tmp.path() / "h2";
    {
      auto s = keel::hybrid_store::open({.path = h2, .spill_bytes = std::size_t(1) << 40});
      REQUIRE(s);
      const std::string value(std::size_t(1) << 20, 'y');
      for (int i = 0; i < 66; ++i) REQUIRE(s->put("k" + std::to_string(i), value));
      REQUIRE(s->close());
    }
    CHECK(run_cli({"--hybrid", h2.string(), "stats"}).has("tier\tmemory\n"));
    const cli_result compacted = run_cli({"--hybrid", h2.string(), "compact"});
    CHECK(compacted.status == 0);
    CHECK(compacted.says("moved its data to RocksDB"));
    CHECK(run_cli({"--hybrid", h2.string(), "stats"}).has("tier\trocksdb\n"));
    CHECK(run_cli({"--hybrid", h2.string(), "count"}).out == "66\n");
  }
}

// Expiry in the tool on a hybrid store (issue 29): while the hybrid backend
// has no expiry, put --ttl, ttl and scan --show-ttl exit 5 naming it and
// write nothing; once it has (keel::expiry_policy), they work as on RocksDB.
TEST_SUITE("cli") {
  TEST_CASE("cli --hybrid: put --ttl, ttl, scan --show-ttl follow whether the hybrid backend has expiry") {
    temp_dir tmp;
    const std::string h = (tmp.path() / "h").string();
    REQUIRE(run_cli({"--hybrid", h, "put", "k", "old"}).status == 0);
    const cli_result put = run_cli({"--hybrid", h, "put", "k", "new", "--ttl", "1h"});
    const cli_result ttl = run_cli({"--hybrid", h, "ttl", "k"});
    const cli_result scan = run_cli({"--hybrid", h, "scan", "--show-ttl"});
    if constexpr (keel::expiry_policy<keel::HybridPolicy<>>) {
      CHECK(put.status == 0);
      CHECK(ttl.status == 0);
      const long long left = keel::test::ttl_text_ms(ttl.out);
      CHECK(left > 3500'000);
      CHECK(left <= 3600'000);
      CHECK(scan.out.rfind("k\tnew\t", 0) == 0);
    } else {
      CHECK(put.status == 5);
      CHECK(put.says("the hybrid backend has no expiry"));
      CHECK(ttl.status == 5);
      CHECK(ttl.says("the hybrid backend has no expiry"));
      CHECK(scan.status == 5);
      CHECK(scan.out.empty());
      CHECK(run_cli({"--hybrid", h, "get", "k"}).out == "old\n");  // nothing written
    }
    // Without --ttl: a plain put either way.
    CHECK(run_cli({"--hybrid", h, "put", "k", "plain"}).status == 0);
    CHECK(run_cli({"--hybrid", h, "get", "k"}).out == "plain\n");
  }
}
