// The keel command-line tool on an etcd cluster (--etcd, --etcd-prefix,
// KEEL_ETCD_ENDPOINTS, etcd: in migrate, doctor etcd://), run as a separate
// process against etcd members the tests start on 127.0.0.1
// (support/etcd_cluster.hpp). Built only with the etcd backend.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <keel/dump.hpp>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/refused_port.hpp"
#include "support/cli_run.hpp"
#include "support/etcd_cluster.hpp"
#include "support/temp_dir.hpp"

using keel::test::etcd_cluster;
using keel::test::run_cli;
using keel::test::temp_dir;

namespace {

// A dump file holding `entries`, written with keel's own dump writer.
void write_dump(const std::filesystem::path& file, const std::map<std::string, std::string>& entries) {
  keel::dump_writer w;
  REQUIRE(w.open(file));
  for (const auto& [k, v] : entries) REQUIRE(w.add(k, v));
  REQUIRE(w.finish());
}

std::map<std::string, std::string> read_dump(const std::filesystem::path& file) {
  std::map<std::string, std::string> out;
  keel::dump_reader r;
  REQUIRE(r.open(file));
  for (;;) {
    auto more = r.next();
    REQUIRE(more);
    if (!*more) break;
    out.emplace(std::string(r.key()), std::string(r.value()));
  }
  return out;
}

// The value of `name` in the output of `keel stats` ("name\tvalue" lines).
std::string stat(const std::string& stats_out, const std::string& name) {
  const std::string key = name + "\t";
  for (std::size_t at = 0; at < stats_out.size();) {
    const std::size_t nl = stats_out.find('\n', at);
    const std::string line = stats_out.substr(at, nl - at);
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return "";
}

// "127.0.0.1:PORT" of an endpoint "http://127.0.0.1:PORT".
std::string host_port(const std::string& endpoint) { return endpoint.substr(endpoint.find("://") + 3); }

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("cli on etcd: put, get, scan, count, del --prefix, stats; prefixes never meet") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    auto on = [&](const std::string& prefix, std::vector<std::string> args) {
      args.insert(args.begin(), {"--etcd", url, "--etcd-prefix", prefix});
      return run_cli(args);
    };

    CHECK(on("app/", {"put", "user/a", "alice"}).status == 0);
    CHECK(on("app/", {"put", "user/b\\x00\\xff", "tab\\there"}).status == 0);
    CHECK(on("app/", {"put", "other", ""}).status == 0);
    CHECK(on("app2/", {"put", "user/z", "zed"}).status == 0);

    auto g = on("app/", {"get", "user/a"});
    CHECK(g.status == 0);
    CHECK(g.out == "alice\n");
    g = on("app/", {"--json", "get", "user/b\\x00\\xff"});
    CHECK(g.out == "{\"key_base64\":\"dXNlci9iAP8=\",\"value\":\"tab\\u0009here\"}\n");  // not UTF-8: base64
    CHECK(on("app/", {"get", "user/z"}).status == 1);  // app2/'s key is not app/'s
    CHECK(on("app2/", {"get", "user/z"}).out == "zed\n");

    auto s = on("app/", {"scan"});
    CHECK(s.status == 0);
    CHECK(s.out == "other\t\nuser/a\talice\nuser/b\\x00\\xff\ttab\\there\n");
    CHECK(on("app/", {"scan", "--prefix", "user/", "--reverse", "--keys-only"}).out == "user/b\\x00\\xff\nuser/a\n");
    CHECK(on("app2/", {"scan"}).out == "user/z\tzed\n");
    CHECK(on("app/", {"count"}).out == "3\n");
    CHECK(on("app/", {"--json", "count", "--prefix", "user/"}).out == "{\"count\":2}\n");

    auto st = on("app/", {"stats"});
    CHECK(st.status == 0);
    CHECK(stat(st.out, "backend") == "etcd");
    CHECK(stat(st.out, "prefix") == "app/");
    CHECK(stat(st.out, "endpoints") == url);
    CHECK(stat(st.out, "keys") == "3");
    CHECK(stat(st.out, "etcd.members") == "1");
    CHECK(stat(st.out, "etcd.leader") != "0");
    CHECK(on("app/", {"--json", "stats"}).has("\"backend\":\"etcd\""));

    // del --prefix: etcd's own count; app2/ keeps its key.
    auto d = on("app/", {"--json", "del", "--prefix", "user/"});
    CHECK(d.status == 0);
    CHECK(d.out == "{\"erased\":2}\n");
    CHECK(on("app/", {"scan"}).out == "other\t\n");
    CHECK(on("app2/", {"count"}).out == "1\n");
    CHECK(on("app/", {"del", "other"}).status == 0);
    CHECK(on("app/", {"count"}).out == "0\n");
    CHECK(on("app2/", {"del", "--from", "user/", "--to", "user/zz"}).says("erased 1 keys"));
    CHECK(on("app2/", {"count"}).out == "0\n");

    // The environment names the cluster too; the options win over it.
    ::setenv("KEEL_ETCD_ENDPOINTS", url.c_str(), 1);
    ::setenv("KEEL_ETCD_PREFIX", "env/", 1);
    const auto env_put = run_cli({"put", "k", "from-env"});
    CHECK(env_put.status == 0);
    // The environment chose the store: stderr names it (issue 25).
    CHECK(env_put.says("KEEL_ETCD_ENDPOINTS chose the etcd cluster at " + url + ", prefix 'env/'"));
    CHECK(on("env/", {"get", "k"}).out == "from-env\n");
    CHECK(run_cli({"--etcd-prefix", "app/", "count"}).out == "0\n");
    ::unsetenv("KEEL_ETCD_PREFIX");
    auto no_prefix = run_cli({"count"});
    ::unsetenv("KEEL_ETCD_ENDPOINTS");
    CHECK(no_prefix.status == 3);
    CHECK(no_prefix.says("needs a key prefix"));

    // A store has no local files to checkpoint: a clear error, exit 5.
    temp_dir tmp;
    auto cp = on("app/", {"checkpoint", (tmp.path() / "cp").string()});
    CHECK(cp.status == 5);
    CHECK(cp.says("not supported"));
    CHECK_FALSE(std::filesystem::exists(tmp.path() / "cp"));
    CHECK(on("app/", {"compact"}).status == 0);

    // Usage: --etcd with --db or --memory, an empty value.
    CHECK(run_cli({"--etcd", url, "--db", (tmp.path() / "db").string(), "count"}).status == 2);
    CHECK(run_cli({"--etcd", url, "--memory", "count"}).status == 2);
    CHECK(run_cli({"--etcd", "", "count"}).status == 2);
    // --etcd-prefix without a cluster would be ignored by a RocksDB command.
    auto lone_prefix = run_cli({"--etcd-prefix", "app/", "--db", (tmp.path() / "db").string(), "count"});
    CHECK(lone_prefix.status == 2);
    CHECK(lone_prefix.says("--etcd-prefix needs a cluster"));
    CHECK_FALSE(std::filesystem::exists(tmp.path() / "db"));
  }

  TEST_CASE("cli on etcd: import and export round trip, in batches etcd accepts; migrate to and from etcd") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    temp_dir tmp;

    // 300 small records: more than etcd's 128 operations per txn. 20 of
    // 200 KiB: 4 MiB, more than its 1.5 MiB per request. One batch each
    // would be refused.
    std::map<std::string, std::string> entries;
    for (int i = 0; i < 300; ++i) entries["small/" + std::to_string(1000 + i)] = "v" + std::to_string(i);
    for (int i = 0; i < 20; ++i)
      entries["big/" + std::to_string(10 + i)] = std::string(200 << 10, static_cast<char>('a' + i));
    const auto dump = tmp.path() / "in.keeldump";
    write_dump(dump, entries);

    auto imp = run_cli({"--etcd", url, "--etcd-prefix", "imp/", "--json", "import", dump.string()});
    CHECK(imp.status == 0);
    CHECK(imp.out == "{\"records\":320,\"payload_bytes\":" + std::to_string([&] {
                       std::size_t n = 0;
                       for (const auto& [k, v] : entries) n += k.size() + v.size();
                       return n;
                     }()) +
                         "}\n");
    INFO(imp.err);
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "count"}).out == "320\n");

    const auto out = tmp.path() / "out.keeldump";
    auto exp = run_cli({"--etcd", url, "--etcd-prefix", "imp/", "export", out.string()});
    CHECK(exp.status == 0);
    CHECK(exp.says("exported 320 records"));
    CHECK(read_dump(out) == entries);

    // etcd -> etcd (another prefix), etcd -> RocksDB, RocksDB -> etcd.
    CHECK(run_cli({"--etcd", url, "migrate", "etcd:imp/", "etcd:copy/"}).status == 0);
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "copy/", "count"}).out == "320\n");
    const std::string db = (tmp.path() / "db").string();
    CHECK(run_cli({"--etcd", url, "migrate", "etcd:copy/", db}).status == 0);
    CHECK(run_cli({"--db", db, "count"}).out == "320\n");
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "back/", "migrate", db, "etcd:"}).status == 0);
    const auto back = tmp.path() / "back.keeldump";
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "back/", "export", back.string()}).status == 0);
    CHECK(read_dump(back) == entries);
    // del --prefix of 300 keys: one request, counted by etcd (a counting
    // transaction would need 300 compares, past etcd's 128).
    auto d = run_cli({"--etcd", url, "--etcd-prefix", "imp/", "--json", "del", "--prefix", "small/"});
    CHECK(d.status == 0);
    CHECK(d.out == "{\"erased\":300}\n");
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "count"}).out == "20\n");
    // `etcd:` needs a cluster.
    auto none = run_cli({"migrate", db, "etcd:x/"});
    CHECK(none.status == 3);
    CHECK(none.says("no etcd cluster given"));
  }

  TEST_CASE(
      "cli doctor etcd://: a healthy member exits 0 and writes nothing; a stopped member or a closed port exits 1") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    const std::string target = "etcd://" + host_port(url);
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "d/", "put", "k", "v"}).status == 0);
    const std::string revision_before =
        stat(run_cli({"--etcd", url, "--etcd-prefix", "d/", "stats"}).out, "etcd.revision");

    auto ok = run_cli({"doctor", target});
    INFO(ok.out);
    CHECK(ok.status == 0);
    CHECK(ok.has("The cluster has 1 member: m0"));
    CHECK(ok.has("Leader: m0"));
    CHECK(ok.has("raft term"));
    CHECK(ok.has("Database size"));
    CHECK(ok.has("No alarms."));
    CHECK(ok.has("Verdict: a write would succeed now."));
    auto js = run_cli({"--json", "doctor", target});
    CHECK(js.status == 0);
    CHECK(js.has("\"write_would_succeed\":true"));
    CHECK(js.has("\"name\":\"m0\""));
    // The write check wrote nothing: no new revision, no key anywhere.
    CHECK(stat(run_cli({"--etcd", url, "--etcd-prefix", "d/", "stats"}).out, "etcd.revision") == revision_before);

    // Usage errors.
    CHECK(run_cli({"doctor", "etcd://"}).status == 2);
    CHECK(run_cli({"doctor", "etcd://127.0.0.1"}).status == 2);
    CHECK(run_cli({"doctor", target, "extra"}).status == 2);

    // Stopped: nothing listens there any more.
    cluster.stop(0);
    auto down = run_cli({"doctor", target});
    INFO(down.out);
    CHECK(down.status == 1);
    CHECK(down.has(url + " does not answer"));
    CHECK(down.has("No member answered"));
    CHECK(down.has("Verdict: a write would NOT succeed now."));
    CHECK(down.has("What to do:"));
    auto jd = run_cli({"--json", "doctor", target});
    CHECK(jd.status == 1);
    CHECK(jd.has("\"write_would_succeed\":false"));
    CHECK(jd.has("\"answered\":false"));
    // A store command on it: exit 3, pointing at the doctor.
    auto open = run_cli({"--etcd", url, "--etcd-prefix", "d/", "count"});
    CHECK(open.status == 3);
    CHECK(open.says("keel doctor " + target));
  }

  TEST_CASE("cli doctor etcd://: a member without quorum runs, but a write would not succeed") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(3);
    const int survivor = 0;
    cluster.stop(1);
    cluster.stop(2);
    // Until the survivor notices (CheckQuorum: a leader without a majority
    // steps down after an election timeout, 200 ms here).
    for (int i = 0; i < 500 && cluster.leader() != -1; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
    REQUIRE(cluster.leader() == -1);
    std::string target = "etcd://";
    for (int i = 0; i < 3; ++i) target += (i ? "," : "") + host_port(cluster.endpoint(i));
    auto r = run_cli({"doctor", target});
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(r.has(cluster.endpoint(1) + " does not answer"));
    CHECK(r.has(cluster.endpoint(2) + " does not answer"));
    CHECK(r.has(cluster.endpoint(survivor) + " runs, but has no leader"));
    CHECK(r.has("Verdict: a write would NOT succeed now."));
    CHECK(r.has("No member that answered knows a leader"));
    CHECK(r.has("What to do: The cluster has no leader"));
    auto js = run_cli({"--json", "doctor", target});
    CHECK(js.status == 1);
    CHECK(js.has("\"no_leader\":true"));
  }

  // Issue 25, bug 1: with KEEL_ETCD_ENDPOINTS and KEEL_ETCD_PREFIX set, --db
  // (or --memory-file, --hybrid) still chooses the store: an option wins over
  // every variable, and nothing goes to etcd.
  TEST_CASE("cli on etcd: --db wins over KEEL_ETCD_ENDPOINTS; two store options are a usage error") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    const std::string mf = (tmp.path() / "m.keeldump").string();
    ::setenv("KEEL_ETCD_ENDPOINTS", url.c_str(), 1);
    ::setenv("KEEL_ETCD_PREFIX", "app/", 1);
    const auto put = run_cli({"--db", db, "put", "w", "1"});
    const auto mem_put = run_cli({"--memory-file", mf, "put", "m", "2"});
    const auto on_etcd = run_cli({"count"});
    const auto both = run_cli({"--db", db, "--etcd-prefix", "app/", "count"});
    ::unsetenv("KEEL_ETCD_PREFIX");
    ::unsetenv("KEEL_ETCD_ENDPOINTS");
    CHECK(put.status == 0);
    CHECK_FALSE(put.says("KEEL_ETCD"));
    const auto get = run_cli({"--db", db, "get", "w"});  // the variables unset: the database alone
    CHECK(get.status == 0);
    CHECK(get.out == "1\n");
    CHECK(mem_put.status == 0);
    CHECK(run_cli({"--memory-file", mf, "get", "m"}).out == "2\n");
    CHECK(on_etcd.out == "0\n");  // nothing went to etcd
    CHECK(on_etcd.says("KEEL_ETCD_ENDPOINTS chose the etcd cluster"));
    CHECK(both.status == 2);
    CHECK(both.says("--db and --etcd-prefix name two different stores"));
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "app/", "count"}).out == "0\n");
  }

  TEST_CASE("cli on etcd: a record over etcd's request limit is named, exit 5, nothing written; HOST:PORT in the "
            "variable; the leader in hex (issue 25)") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    temp_dir tmp;
    // A record of 2 MiB: no single etcd request (1.5 MiB) carries it.
    std::map<std::string, std::string> bad;
    for (int i = 0; i < 50; ++i) bad["a/" + std::to_string(100 + i)] = "v";
    bad["b/huge"] = std::string(2 << 20, 'x');
    write_dump(tmp.path() / "bad.keeldump", bad);
    auto r = run_cli({"--etcd", url, "--etcd-prefix", "imp/", "import", (tmp.path() / "bad.keeldump").string()});
    INFO(r.err);
    CHECK(r.status == 5);  // a store's limit, not a damaged dump (4)
    CHECK(r.says("record 51 of the dump (key 'b/huge', 2097152 bytes of value)"));
    CHECK(r.says("--max-request-bytes"));
    CHECK(r.says("nothing was imported"));
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "count"}).out == "0\n");

    // Records under the limit whose batch would pass it (500 KiB of records,
    // then one of 1.2 MiB) go in as requests that fit.
    std::map<std::string, std::string> ok;
    for (int i = 0; i < 5; ++i) ok["a/" + std::to_string(i)] = std::string(100 << 10, static_cast<char>('a' + i));
    ok["b/large"] = std::string(1200 << 10, 'y');
    write_dump(tmp.path() / "ok.keeldump", ok);
    auto o = run_cli({"--etcd", url, "--etcd-prefix", "imp/", "import", (tmp.path() / "ok.keeldump").string()});
    INFO(o.err);
    CHECK(o.status == 0);
    const auto back = tmp.path() / "back.keeldump";
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "export", back.string()}).status == 0);
    CHECK(read_dump(back) == ok);
    // migrate writes such batches as requests that fit too.
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "import", (tmp.path() / "ok.keeldump").string()}).status == 0);
    auto m = run_cli({"--etcd", url, "migrate", db, "etcd:copy/"});
    INFO(m.err);
    CHECK(m.status == 0);
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "copy/", "count"}).out == "6\n");

    // KEEL_ETCD_ENDPOINTS takes HOST:PORT as --etcd does.
    ::setenv("KEEL_ETCD_ENDPOINTS", host_port(url).c_str(), 1);
    ::setenv("KEEL_ETCD_PREFIX", "imp/", 1);
    auto env = run_cli({"count"});
    ::unsetenv("KEEL_ETCD_ENDPOINTS");
    ::unsetenv("KEEL_ETCD_PREFIX");
    INFO(env.err);
    CHECK(env.status == 0);
    CHECK(env.out == "6\n");

    // The leader's id in stats is the one doctor names (hex).
    const std::string leader = stat(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "stats"}).out, "etcd.leader");
    CHECK(leader.size() > 4);
    CHECK(leader.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(run_cli({"doctor", "etcd://" + host_port(url)}).has("Leader: m0 (id " + leader + ")"));
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "--json", "stats"}).has("\"etcd.leader\":\"" + leader + "\""));
    // The answering member's id is written the same way: on one member, the leader's.
    CHECK(stat(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "stats"}).out, "etcd.member_id") == leader);
    CHECK(run_cli({"--etcd", url, "--etcd-prefix", "imp/", "--json", "stats"}).has("\"etcd.member_id\":\"" + leader + "\""));
  }

  TEST_CASE("cli on etcd: an endpoint nobody listens on is reported within the connect timeout, by name (issue 25)") {
    // A socket bound to a port but not listening: connections are refused,
    // and nothing else takes the port meanwhile.
    keel::test::refused_port closed;
    const std::string where = closed.host_port();
    const auto start = std::chrono::steady_clock::now();
    auto r = run_cli({"--etcd", where, "--etcd-prefix", "p/", "count"});
    const auto took = std::chrono::steady_clock::now() - start;
    INFO(r.err);
    CHECK(r.status == 3);
    CHECK(r.says("http://" + where + ": "));
    CHECK(r.says("connect_timeout"));
    CHECK(r.says("keel doctor etcd://" + where));
    CHECK(took < std::chrono::seconds(4));  // the 1 s connect timeout and a process start, not 10 s
  }

  TEST_CASE("cli on etcd: --etcd-connect-timeout and --etcd-max-request-bytes are checked: a bad value or no cluster "
            "is a usage error (issue 25)") {
    keel::test::refused_port closed;  // never connected to: every case below stops at the options
    const std::string url = "http://" + closed.host_port();
    auto with = [&](std::vector<std::string> args) {
      args.insert(args.begin(), {"--etcd", url, "--etcd-prefix", "p/"});
      return run_cli(args);
    };
    for (const std::string bad : {"0", "-5", "abc", "1.5", "10001", "+7", "", "99999999999999999999"}) {
      CAPTURE(bad);
      auto r = with({"--etcd-connect-timeout", bad, "count"});
      CHECK(r.status == 2);
      CHECK_MESSAGE(r.says("--etcd-connect-timeout needs a number of milliseconds, from 1 to 10000, not '" + bad + "'"),
                    r.err);
    }
    for (const std::string bad : {"0", "1023", "1.5MiB", "2147483648", "-1"}) {
      CAPTURE(bad);
      auto r = with({"--etcd-max-request-bytes", bad, "count"});
      CHECK(r.status == 2);
      CHECK_MESSAGE(r.says("--etcd-max-request-bytes needs a number of bytes, from 1024 to 2147483647, not '" + bad + "'"),
                    r.err);
    }
    auto missing = with({"count", "--etcd-max-request-bytes"});
    CHECK(missing.status == 2);
    CHECK(missing.says("--etcd-max-request-bytes needs a number of bytes"));
    // Without a cluster they would be ignored: refused like --etcd-prefix.
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    auto lone = run_cli({"--db", db, "--etcd-max-request-bytes", "4096", "put", "k", "v"});
    CHECK(lone.status == 2);
    CHECK_MESSAGE(lone.says("--etcd-max-request-bytes needs a cluster"), lone.err);
    CHECK(run_cli({"--etcd-connect-timeout", "50", "--db", db, "count"}).status == 2);
    CHECK_FALSE(std::filesystem::exists(db));
  }

  TEST_CASE("cli on etcd: --etcd-connect-timeout is the connect timeout of commands and of doctor etcd:// (issue 25)") {
    keel::test::refused_port closed;
    const std::string where = closed.host_port();
    auto r = run_cli({"--etcd", where, "--etcd-prefix", "p/", "--etcd-connect-timeout", "250", "count"});
    CHECK(r.status == 3);
    CHECK_MESSAGE(r.says("no endpoint accepted a connection within 250 ms (etcd_options::connect_timeout)"), r.err);
    auto d = run_cli({"doctor", "--etcd-connect-timeout", "300", "etcd://" + where});
    CHECK(d.status == 1);
    CHECK_MESSAGE(d.has("within 300 ms (etcd_options::connect_timeout)"), d.out);
    auto byenv = [&] {  // KEEL_ETCD_ENDPOINTS is a cluster too
      ::setenv("KEEL_ETCD_ENDPOINTS", where.c_str(), 1);
      ::setenv("KEEL_ETCD_PREFIX", "p/", 1);
      auto e = run_cli({"--etcd-connect-timeout", "200", "get", "k"});
      ::unsetenv("KEEL_ETCD_PREFIX");
      ::unsetenv("KEEL_ETCD_ENDPOINTS");
      return e;
    }();
    CHECK(byenv.status == 3);
    CHECK_MESSAGE(byenv.says("within 200 ms"), byenv.err);
  }

  TEST_CASE("cli on etcd: import and migrate check records against --etcd-max-request-bytes, not etcd's default "
            "(issue 25)") {
    REQUIRE(etcd_cluster::available());
    etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    temp_dir tmp;
    // 200 KiB of value: under etcd's default 1.5 MiB, over a limit of 100000 bytes.
    std::map<std::string, std::string> entries{{"a/small", "v"}, {"b/big", std::string(200 << 10, 'x')}};
    const auto dump = (tmp.path() / "big.keeldump").string();
    write_dump(dump, entries);
    auto on = [&](const std::string& prefix, std::vector<std::string> args) {
      args.insert(args.begin(), {"--etcd", url, "--etcd-prefix", prefix});
      return run_cli(args);
    };
    auto r = on("lim/", {"--etcd-max-request-bytes", "100000", "import", dump});
    CHECK(r.status == 5);
    CHECK_MESSAGE(r.says("record 2 of the dump (key 'b/big', 204800 bytes of value)"), r.err);
    CHECK_MESSAGE(r.says("over the limit of 100000 bytes of --etcd-max-request-bytes"), r.err);
    CHECK(r.says("nothing was imported"));
    CHECK(on("lim/", {"count"}).out == "0\n");
    // Without the option the default applies, and the record fits.
    auto fits = on("def/", {"import", dump});
    CHECK_MESSAGE(fits.status == 0, fits.err);
    CHECK(on("def/", {"count"}).out == "2\n");
    // A limit large enough: batches are sized by it too (a third of it), all of it goes in.
    auto large = on("large/", {"--etcd-max-request-bytes", "1048576", "import", dump});
    CHECK_MESSAGE(large.status == 0, large.err);
    CHECK(on("large/", {"count"}).out == "2\n");

    // migrate into etcd: the record is refused against the same limit, exit 5.
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "import", dump}).status == 0);
    auto m = run_cli({"--etcd", url, "--etcd-max-request-bytes", "100000", "migrate", db, "etcd:mig/"});
    CHECK(m.status == 5);
    CHECK_MESSAGE(m.says("request size limit of 100000 bytes"), m.err);
    auto m2 = run_cli({"--etcd", url, "migrate", db, "etcd:mig2/"});
    CHECK_MESSAGE(m2.status == 0, m2.err);
  }
}
