// The keel command-line tool built without the etcd backend (meson option
// etcd disabled, or libcurl / nlohmann-json missing): every way of asking for
// a cluster is refused with a clear error, and nothing is opened or created.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"

using keel::test::run_cli;

TEST_SUITE("cli") {
  TEST_CASE("cli without the etcd backend: --etcd, doctor etcd:// and KEEL_ETCD_ENDPOINTS are refused") {
    keel::test::temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    for (const auto& args : {std::vector<std::string>{"--etcd", "http://127.0.0.1:1", "count"},
                             std::vector<std::string>{"--etcd-prefix", "app/", "count"},
                             std::vector<std::string>{"doctor", "etcd://127.0.0.1:1"}}) {
      auto r = run_cli(args);
      CHECK(r.status == 2);
      CHECK(r.says("this keel was built without the etcd backend"));
    }
    auto m = run_cli({"migrate", "etcd:app/", db});
    CHECK(m.status == 3);
    CHECK(m.says("this keel was built without the etcd backend"));
    // The variable chooses the store only when no option does (issue 25:
    // --db wins over it).
    ::setenv("KEEL_ETCD_ENDPOINTS", "http://127.0.0.1:1", 1);
    ::setenv("KEEL_DB", db.c_str(), 1);
    auto e = run_cli({"put", "k", "v"});
    ::unsetenv("KEEL_DB");
    const bool created_by_env = std::filesystem::exists(db);
    auto explicit_db = run_cli({"--db", db, "put", "k", "v"});
    ::unsetenv("KEEL_ETCD_ENDPOINTS");
    CHECK(e.status == 3);
    CHECK(e.says("KEEL_ETCD_ENDPOINTS: this keel was built without the etcd backend"));
    CHECK_FALSE(created_by_env);
    CHECK(explicit_db.status == 0);
    CHECK(run_cli({"--db", db, "get", "k"}).out == "v\n");
  }
}
