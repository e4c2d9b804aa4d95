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

TEST_SUITE("cli") {
  TEST_CASE("cli doctor on postgres: postgres://, --postgres, KEEL_POSTGRES; text and --json; missing table, another shape, no server") {
    if (auto why = keel::test::pg_server::unavailable()) return skip("cli postgres: " + *why);
    const std::string server = shared_pg().conninfo();
    const std::string dir = shared_pg().dir().string();
    const std::string table = keel::test::postgres_backend::next_table();

    // A missing table: a write would succeed (keel creates it); none is left behind.
    auto missing = run_cli({"--postgres", server, "--table", table, "doctor"});
    CHECK_MESSAGE(missing.status == 0, missing.out << missing.err);
    CHECK(missing.has("The server is a primary"));
    CHECK(missing.has("does not exist"));
    CHECK(missing.has("Verdict: a write would succeed now."));
    CHECK(shared_pg().query("SELECT to_regclass('" + table + "') IS NULL") == "t");

    CHECK(run_cli({"--postgres", server, "--table", table, "put", "k", "v"}).status == 0);
    // A URI (socket directory as a query parameter), --json.
    auto json = run_cli({"--json", "--table", table, "doctor", "postgresql:///postgres?host=" + dir + "&user=postgres"});
    CHECK_MESSAGE(json.status == 0, json.out << json.err);
    CHECK(json.has("\"reachable\":true"));
    CHECK(json.has("\"standby\":false"));
    CHECK(json.has("\"table\":\"" + table + "\""));
    CHECK(json.has("\"table_exists\":true"));
    CHECK(json.has("\"table_shape_ok\":true"));
    CHECK(json.has("\"rows\":1,\"rows_exact\":true"));
    CHECK(json.has("\"write_would_succeed\":true"));
    CHECK(json.has("\"server_version\":1"));  // 1xxxxx: PostgreSQL 10 or later

    // KEEL_POSTGRES and KEEL_POSTGRES_TABLE: `keel doctor` alone.
    ::setenv("KEEL_POSTGRES", server.c_str(), 1);
    ::setenv("KEEL_POSTGRES_TABLE", table.c_str(), 1);
    auto env = run_cli({"doctor"});
    ::unsetenv("KEEL_POSTGRES_TABLE");
    ::unsetenv("KEEL_POSTGRES");
    CHECK_MESSAGE(env.status == 0, env.out << env.err);
    CHECK(env.has("It holds 1 row"));

    // Another shape: exit 1, the columns named.
    shared_pg().query("CREATE TABLE cli_doctor_other (id integer PRIMARY KEY, payload text)");
    auto wrong = run_cli({"--postgres", server, "--table", "cli_doctor_other", "doctor"});
    CHECK(wrong.status == 1);
    CHECK(wrong.has("columns (id integer not null, payload text)"));
    CHECK(wrong.has("Verdict: a write would NOT succeed now."));
    CHECK(wrong.has("What to do: "));

    // No server in that socket directory: exit 1, the host and libpq's message.
    keel::test::temp_dir nowhere;
    auto down = run_cli({"--json", "--postgres", "host=" + nowhere.path().string() + " user=postgres", "doctor"});
    CHECK(down.status == 1);
    CHECK(down.has("\"reachable\":false"));
    CHECK(down.has(nowhere.path().string()));
    CHECK(down.has("\"connect_error_code\":\"unavailable\""));
    CHECK(down.has("\"write_would_succeed\":false"));
    // Two hosts, the first down: each reported, the write check on the second.
    auto two = run_cli({"--json", "--postgres", "host=" + nowhere.path().string() + "," + dir + " user=postgres",
                        "--table", table, "doctor"});
    CHECK_MESSAGE(two.status == 0, two.out << two.err);
    CHECK(two.has("\"each_host\":[{\"host\":\"" + nowhere.path().string() + "\",\"port\":\"\",\"reachable\":false"));
    CHECK(two.has("{\"host\":\"" + dir + "\",\"port\":\"\",\"reachable\":true,\"server_version\":"));
    CHECK(two.has("\"write_would_succeed\":true"));
    // A failed open suggests the doctor with the same server and table.
    auto get = run_cli({"--postgres", "host=" + nowhere.path().string(), "--table", "t1", "get", "k"});
    CHECK(get.status == 3);
    CHECK(get.says("run: keel doctor --postgres 'host=" + nowhere.path().string() + "' --table 't1'"));

    // Usage errors: two targets; a conninfo libpq cannot parse.
    CHECK(run_cli({"--postgres", server, "doctor", "some/path"}).status == 2);
    auto bad = run_cli({"--postgres", "nosuchkeyword=1", "doctor"});
    CHECK(bad.status == 2);
    CHECK(bad.has("nosuchkeyword"));
  }
}
