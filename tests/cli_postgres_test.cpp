// The keel command-line tool on a PostgreSQL table (--postgres, --table,
// KEEL_POSTGRES, KEEL_POSTGRES_TABLE, postgres:TABLE in migrate), run as a
// separate process against the test binary's shared server
// (support/pg_server.hpp). Built only with the PostgreSQL backend.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "support/backends.hpp"
#include "support/cli_run.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using keel::test::run_cli;
using keel::test::shared_pg;
using keel::test::skip;

TEST_SUITE("cli") {
  TEST_CASE("cli on postgres: put, get, scan, count; KEEL_POSTGRES; migrate to and from RocksDB") {
    if (auto why = keel::test::pg_server::unavailable()) return skip("cli postgres: " + *why);
    const std::string server = shared_pg().conninfo();
    const std::string table = keel::test::postgres_backend::next_table();
    auto on = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"--postgres", server, "--table", table});
      return run_cli(args);
    };
    CHECK(on({"put", "user/a", "alice"}).status == 0);
    CHECK(on({"put", "user/b\\x00\\xff", "bob"}).status == 0);
    auto g = on({"get", "user/a"});
    CHECK(g.status == 0);
    CHECK(g.out == "alice\n");
    auto sc = on({"scan", "--prefix", "user/"});
    CHECK(sc.out == "user/a\talice\nuser/b\\x00\\xff\tbob\n");
    CHECK(on({"count"}).out == "2\n");
    CHECK(shared_pg().query("SELECT count(*) FROM " + table) == "2");  // really in that table

    ::setenv("KEEL_POSTGRES", server.c_str(), 1);
    // The note on stderr names the table the command uses: --table's over the default.
    auto named = run_cli({"--table", table, "get", "user/a"});
    CHECK(named.out == "alice\n");
    CHECK_MESSAGE(named.says("KEEL_POSTGRES chose a PostgreSQL server, table '" + table + "' (--table)"), named.err);
    ::setenv("KEEL_POSTGRES_TABLE", table.c_str(), 1);
    auto env = run_cli({"get", "user/a"});
    CHECK_MESSAGE(env.says("table '" + table + "' (KEEL_POSTGRES_TABLE)"), env.err);
    ::unsetenv("KEEL_POSTGRES_TABLE");
    ::unsetenv("KEEL_POSTGRES");
    CHECK(env.status == 0);
    CHECK(env.out == "alice\n");

    keel::test::temp_dir dir;
    const std::string db = (dir.path() / "db").string();
    auto out = run_cli({"--postgres", server, "migrate", "postgres:" + table, db});
    CHECK_MESSAGE(out.status == 0, out.err);
    CHECK(run_cli({"--db", db, "scan"}).out == "user/a\talice\nuser/b\\x00\\xff\tbob\n");
    const std::string copy = table + "_copy";
    auto back = run_cli({"--postgres", server, "migrate", db, "postgres:" + copy});
    CHECK_MESSAGE(back.status == 0, back.err);
    CHECK(shared_pg().query("SELECT count(*) FROM " + copy) == "2");

    // No server there: exit 3, libpq's reason on one line.
    keel::test::temp_dir nowhere;
    auto down = run_cli({"--postgres", "host=" + nowhere.path().string(), "get", "k"});
    CHECK(down.status == 3);
    CHECK(down.says("cannot connect to host=" + nowhere.path().string()));
  }
}
