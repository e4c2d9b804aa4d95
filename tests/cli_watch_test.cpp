// `keel watch` (issue 28; docs/cli.md "watch", docs/watch.md): the tool run
// as a child process (tests/support/cli_run.hpp, child_process.hpp): its
// flags, its output (text and --json), SIGINT / SIGTERM, and on etcd the
// changes another client makes while it watches.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <keel/memory.hpp>

#include "support/child_process.hpp"
#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"
#if KEEL_HAS_ETCD
#include <keel/etcd.hpp>

#include "support/etcd_cluster.hpp"
#endif

namespace fs = std::filesystem;
using keel::test::child_process;
using keel::test::run_cli;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {


// `keel ARGS...` as a child whose stdout and stderr both come through the
// pipe (read_line), so that a test sees keel's note and its lines in order.
child_process start_cli(const std::vector<std::string>& args) {
  std::vector<std::string> sh_args = {"-c", "exec \"$@\" 2>&1", "sh", keel::test::keel_cli_path().string()};
  sh_args.insert(sh_args.end(), args.begin(), args.end());
  return child_process("/bin/sh", std::move(sh_args));
}

}  // namespace

TEST_SUITE("cli") {
  TEST_CASE("keel watch: bad flags are usage errors; a missing store or keyspace is not created") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "put", "k", "v"}).status == 0);

    struct bad {
      std::vector<std::string> args;
      std::string says;
    };
    for (const auto& b : std::vector<bad>{
             {{"watch", "--after"}, "--after needs a SEQ"},
             {{"watch", "--after", "x"}, "--after needs a SEQ (a number), not 'x'"},
             {{"watch", "--after", "-1"}, "--after needs a SEQ (a number), not '-1'"},
             {{"watch", "--after", "18446744073709551616"}, "not '18446744073709551616'"},  // 2^64
             {{"watch", "--after", "12abc"}, "not '12abc'"},
             {{"watch", "--reverse"}, "--reverse is for scan"},
             {{"watch", "extra"}, "watch takes no argument 'extra'"},
             {{"watch", "--limit", "many"}, "--limit needs a number"},
             {{"watch", "--prefix", "a", "--from", "b"}, "--prefix cannot be combined"},
             {{"watch", "--bogus"}, "unknown option --bogus"},
             {{"--after", "3", "watch"}, "unknown option --after"},  // watch's own option: after the command
         }) {
      std::vector<std::string> args = {"--db", db};
      args.insert(args.end(), b.args.begin(), b.args.end());
      CAPTURE(b.says);
      auto r = run_cli(args);
      CHECK(r.status == 2);
      CHECK(r.says(b.says));
      CHECK(r.out.empty());
    }
    // A memory store that is not persisted: nothing to watch.
    auto r = run_cli({"--memory", "watch", "--after", "0"});
    CHECK(r.status == 2);
    CHECK(r.says("watch needs a store that outlives keel"));
    // No store there: exit 3, nothing created (watch never creates).
    r = run_cli({"--db", (tmp.path() / "none").string(), "watch", "--after", "0"});
    CHECK(r.status == 3);
    CHECK(r.says("no database at"));
    CHECK_FALSE(fs::exists(tmp.path() / "none"));
    r = run_cli({"--memory-file", (tmp.path() / "none.keel").string(), "watch", "--after", "0"});
    CHECK(r.status == 3);
    CHECK_FALSE(fs::exists(tmp.path() / "none.keel"));
    // A keyspace that is not there: exit 1, not created.
    r = run_cli({"--db", db, "-k", "nope", "watch", "--after", "0"});
    CHECK(r.status == 1);
    CHECK(r.says("no keyspace 'nope'"));
    CHECK(run_cli({"--db", db, "keyspaces"}).out.find("nope") == std::string::npos);
  }

  TEST_CASE("keel watch: SIGINT and SIGTERM end it with exit 0, and it lets go of the store") {
    temp_dir tmp;
    const std::string file = (tmp.path() / "store.keel").string(), db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--memory-file", file, "put", "k", "v"}).status == 0);
    REQUIRE(run_cli({"--db", db, "put", "k", "v"}).status == 0);
    for (const std::string store_option : {"--memory-file", "--db"})
    for (int sig : {SIGINT, SIGTERM}) {
      CAPTURE(store_option);
      CAPTURE(sig);
      const std::string& file_or_db = store_option == "--db" ? db : file;
      auto child = start_cli({store_option, file_or_db, "watch"});
      // From now, on a store it holds: it says that nothing will change (its
      // handlers are in place by then), and waits.
      auto note = child.read_line(60s);
      REQUIRE(note.has_value());
      CHECK(note->find("keel: this keel holds the store open") == 0);
      child.kill(sig);
      auto status = child.wait_for(30s);
      REQUIRE(status.has_value());
      CHECK(*status == 0);
      CHECK_FALSE(child.read_line(1s).has_value());  // nothing more was printed
      // The store was closed: another command opens it at once.
      auto r = run_cli({store_option, file_or_db, "put", "k2", "v2"});
      CHECK(r.status == 0);
      CHECK(r.err.empty());
    }
  }

  TEST_CASE("keel watch --after on RocksDB: replays the changes its WAL keeps, in every keel run; -k, --json") {
    temp_dir tmp;
    const std::string db = (tmp.path() / "db").string();
    REQUIRE(run_cli({"--db", db, "put", "a", "1"}).status == 0);
    REQUIRE(run_cli({"--db", db, "put", "b", "tab\\there"}).status == 0);
    REQUIRE(run_cli({"--db", db, "del", "a"}).status == 0);
    REQUIRE(run_cli({"--db", db, "-k", "ks", "put", "x", "y"}).status == 0);
    REQUIRE(run_cli({"--db", db, "del", "--prefix", ""}).status == 0);  // one erase_range: one line per key
    // seq = RocksDB's sequence number: 1, 2, ... in a new database.
    const std::string history = "1\tput\ta\t1\n2\tput\tb\ttab\\there\n3\terase\ta\n5\terase\tb\n";
    for (int run = 0; run < 2; ++run) {  // a keel run that only watched keeps the history for the next
      CAPTURE(run);
      auto r = run_cli({"--db", db, "watch", "--after", "0", "--limit", "4"});
      CHECK(r.status == 0);
      CHECK(r.err.empty());
      CHECK(r.out == history);
    }
    auto r = run_cli({"--db", db, "watch", "--after", "2", "--limit", "2", "--keys-only"});
    CHECK(r.status == 0);
    CHECK(r.out == "3\terase\ta\n5\terase\tb\n");
    r = run_cli({"--db", db, "-k", "ks", "--json", "watch", "--after", "0", "--limit", "1"});
    CHECK(r.status == 0);
    CHECK(r.out == "{\"seq\":4,\"op\":\"put\",\"key\":\"x\",\"value\":\"y\"}\n");
    r = run_cli({"--db", db, "watch", "--after", "6"});
    CHECK(r.status == 5);
    CHECK(r.says("beyond the latest commit, seq 5"));
  }

  TEST_CASE("keel watch --after: replays what a persisted memory store keeps, text, --json, -k; expired: exit 5") {
    temp_dir tmp;
    // A store written by a program that watched it while it wrote: the
    // store keeps that history in its log across the close (docs/watch.md,
    // Memory). Each keel run below gets a fresh copy of it (same history,
    // same seqs): this case is about the tool, not about how long a memory
    // store keeps its history across several sessions.
    int copies = 0;
    auto recorded_store = [&] {
      const std::string file = (tmp.path() / ("store" + std::to_string(++copies) + ".keel")).string();
      keel::memory_options o;
      o.persist_path = file;
      auto store = keel::memory_store::open(o);
      REQUIRE(store);
      auto w = store->watch();
      REQUIRE(w);
      REQUIRE(store->put("user/alice", "admin"));
      REQUIRE(store->put("other", "x"));
      keel::write_batch batch;
      batch.put("user/bob", "tab\there").erase("user/alice");
      REQUIRE(store->write(batch));
      REQUIRE(store->put("user/bin", std::string("\x00\xff", 2)));
      auto ks = store->keyspace("people");
      REQUIRE(ks);
      REQUIRE(ks->put("carol", "c"));
      REQUIRE(store->close());
      return file;
    };
    std::string file = recorded_store();
    auto r = run_cli({"--memory-file", file, "watch", "--after", "0", "--prefix", "user/", "--limit", "4"});
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());
    // SEQ<TAB>put<TAB>KEY<TAB>VALUE / SEQ<TAB>erase<TAB>KEY, escaped as scan
    // prints; the batch's two changes have one seq, in the batch's order.
    std::vector<std::string> seqs, rest;
    for (std::size_t at = 0; at < r.out.size();) {
      const auto nl = r.out.find('\n', at);
      REQUIRE(nl != std::string::npos);
      const std::string line = r.out.substr(at, nl - at);
      seqs.push_back(line.substr(0, line.find('\t')));
      rest.push_back(line.substr(line.find('\t')));
      at = nl + 1;
    }
    REQUIRE(rest.size() == 4);
    CHECK(rest == std::vector<std::string>{"\tput\tuser/alice\tadmin", "\tput\tuser/bob\ttab\\there",
                                           "\terase\tuser/alice", "\tput\tuser/bin\t\\x00\\xff"});
    CHECK(seqs[1] == seqs[2]);
    CHECK(std::stoull(seqs[0]) < std::stoull(seqs[1]));
    CHECK(std::stoull(seqs[2]) < std::stoull(seqs[3]));

    // --after the first change: the rest; --keys-only leaves out the values.
    r = run_cli({"--memory-file", recorded_store(), "watch", "--after", seqs[0], "--prefix", "user/", "--limit", "3",
                 "--keys-only"});
    REQUIRE(r.status == 0);
    CHECK(r.out == seqs[1] + "\tput\tuser/bob\n" + seqs[2] + "\terase\tuser/alice\n" + seqs[3] +
                       "\tput\tuser/bin\n");

    // --json: one object per line, bytes that are not UTF-8 in base64.
    r = run_cli({"--memory-file", recorded_store(), "--json", "watch", "--after", seqs[0], "--prefix", "user/", "--limit", "3"});
    REQUIRE(r.status == 0);
    CHECK(r.out == "{\"seq\":" + seqs[1] + ",\"op\":\"put\",\"key\":\"user/bob\",\"value\":\"tab\\u0009here\"}\n" +
                       "{\"seq\":" + seqs[2] + ",\"op\":\"erase\",\"key\":\"user/alice\"}\n" +
                       "{\"seq\":" + seqs[3] + ",\"op\":\"put\",\"key\":\"user/bin\",\"value_base64\":\"AP8=\"}\n");

    // -k: that keyspace's changes only.
    r = run_cli({"--memory-file", recorded_store(), "-k", "people", "watch", "--after", "0", "--limit", "1"});
    REQUIRE(r.status == 0);
    CHECK(r.out.substr(r.out.find('\t')) == "\tput\tcarol\tc\n");

    // Past the store's last seq: exit 5, invalid_argument.
    r = run_cli({"--memory-file", recorded_store(), "watch", "--after", "999999"});
    CHECK(r.status == 5);
    CHECK(r.out.empty());

    // A later session that did not watch kept only its own commits: the
    // older history is gone, and watch says so (exit 5, the oldest seq).
    file = recorded_store();
    REQUIRE(run_cli({"--memory-file", file, "put", "later", "1"}).status == 0);
    r = run_cli({"--memory-file", file, "watch", "--after", "0"});
    CHECK(r.status == 5);
    CHECK(r.says("no longer kept"));
    CHECK(r.out.empty());
  }

#if KEEL_HAS_ETCD
  TEST_CASE("keel watch on etcd: another client's changes as they commit, text and --json; --limit ends it") {
    REQUIRE(keel::test::etcd_cluster::available());
    keel::test::etcd_cluster cluster(1);
    const std::string url = cluster.endpoint(0);
    keel::etcd_options o;
    o.endpoints = {url};
    o.prefix = "feed/";
    auto store = keel::etcd_store::open(o);
    REQUIRE_MESSAGE(store, (store ? "" : store.error().message()));

    for (bool json : {false, true}) {
      CAPTURE(json);
      std::vector<std::string> args = {"--etcd", url, "--etcd-prefix", "feed/", "watch", "--prefix", "user/",
                                       "--limit", "1000"};
      if (json) args.insert(args.begin(), "--json");
      auto child = start_cli(args);
      // Until the tool's watch is in place, nothing tells the test: it
      // writes a probe key until the tool prints one (a poll with a
      // deadline, no sleep).
      std::optional<std::string> first;
      const auto deadline = std::chrono::steady_clock::now() + 60s;
      for (int i = 0; !first && std::chrono::steady_clock::now() < deadline; ++i) {
        REQUIRE(store->put("user/probe", std::to_string(i)));
        first = child.read_line(200ms);
      }
      REQUIRE_MESSAGE(first.has_value(), "keel watch printed nothing within 60 s");
      CHECK(first->find("probe") != std::string::npos);
      // Then the probes still under way, then exactly this history.
      REQUIRE(store->put("user/alice", "admin"));
      REQUIRE(store->put("other/x", "not in the range"));
      keel::write_batch batch;
      batch.put("user/bob", "tab\there").erase("user/alice");
      REQUIRE(store->write(batch));
      REQUIRE(store->put("user/bin", std::string("\x00\xff", 2)));
      std::vector<std::string> lines;
      while (lines.size() < 4) {
        auto line = child.read_line(30s);
        REQUIRE(line.has_value());
        if (line->find("probe") != std::string::npos && lines.empty()) continue;
        lines.push_back(*line);
      }
      if (!json) {
        // SEQ<TAB>put<TAB>KEY<TAB>VALUE, SEQ<TAB>erase<TAB>KEY; the batch one seq.
        auto seq = [](const std::string& l) { return l.substr(0, l.find('\t')); };
        CHECK(lines[0].substr(lines[0].find('\t')) == "\tput\tuser/alice\tadmin");
        CHECK(seq(lines[1]) == seq(lines[2]));
        CHECK(std::stoull(seq(lines[1])) > std::stoull(seq(lines[0])));
        std::vector<std::string> batch_lines = {lines[1].substr(lines[1].find('\t')),
                                                lines[2].substr(lines[2].find('\t'))};
        std::sort(batch_lines.begin(), batch_lines.end());
        CHECK(batch_lines == std::vector<std::string>{"\terase\tuser/alice", "\tput\tuser/bob\ttab\\there"});
        CHECK(lines[3].substr(lines[3].find('\t')) == "\tput\tuser/bin\t\\x00\\xff");
      } else {
        auto body = [](const std::string& l) { return l.substr(l.find(",\"op\"")); };
        CHECK(lines[0].rfind("{\"seq\":", 0) == 0);
        CHECK(body(lines[0]) == ",\"op\":\"put\",\"key\":\"user/alice\",\"value\":\"admin\"}");
        std::vector<std::string> batch_lines = {body(lines[1]), body(lines[2])};
        std::sort(batch_lines.begin(), batch_lines.end());
        CHECK(batch_lines == std::vector<std::string>{",\"op\":\"erase\",\"key\":\"user/alice\"}",
                                                      ",\"op\":\"put\",\"key\":\"user/bob\",\"value\":\"tab\\u0009here\"}"});
        CHECK(body(lines[3]) == ",\"op\":\"put\",\"key\":\"user/bin\",\"value_base64\":\"AP8=\"}");
      }
      child.kill(SIGINT);
      auto status = child.wait_for(30s);
      REQUIRE(status.has_value());
      CHECK(*status == 0);
    }

    // --after replays etcd's history (never compacted here), --limit ends it.
    auto r = run_cli({"--etcd", url, "--etcd-prefix", "feed/", "watch", "--after", "0", "--prefix", "user/a",
                      "--limit", "2"});
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    REQUIRE(r.out.size() > 0);
    CHECK(r.out.find("\tput\tuser/alice\tadmin\n") != std::string::npos);
    CHECK(r.out.find("\terase\tuser/alice\n") != std::string::npos);
  }
#endif
}
