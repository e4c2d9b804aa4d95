// The cluster backend's own suite (EtcdPolicy, <keel/etcd.hpp>): the gateway
// client, the key mapping, errors and limits, against one etcd member shared
// by the test binary. The conformance suite runs every common case on it too.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "support/backends.hpp"

using namespace std::string_literals;
using keel::errc;
using keel::etcd_options;
using keel::etcd_store;
using keel::key_range;
using keel::write_batch;
using keel::test::etcd_backend;
using keel::test::keys_of;
using keel::test::open_or_fail;

namespace {
std::vector<std::string> collect_all(const etcd_store& s) {
  std::vector<std::string> values;
  for (const auto& [k, v] : keel::test::collect(s.scan())) values.push_back(v);
  return values;
}
}  // namespace

TEST_SUITE("etcd") {
  TEST_CASE("base64 is standard and padded, and decodes what it encodes") {
    using keel::detail::base64_decode;
    using keel::detail::base64_encode;
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode("\xff\xff\xfe"s) == "///+");  // standard alphabet, not URL-safe
    CHECK(base64_encode("\0"s) == "AA==");
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (std::size_t n = 0; n <= all.size(); n += 37) {
      auto d = base64_decode(base64_encode(all.substr(0, n)));
      REQUIRE(d);
      CHECK(*d == all.substr(0, n));
    }
    CHECK_FALSE(base64_decode("Zg"));     // unpadded
    CHECK_FALSE(base64_decode("Z-8="));   // URL-safe alphabet
    CHECK_FALSE(base64_decode("Zg==Zg=="));  // data after padding
  }

  TEST_CASE("int64 fields come as strings or numbers and default to 0") {
    auto j = nlohmann::json::parse(R"({"a":"18446744073709551615","b":7,"c":"-3"})");
    CHECK(keel::detail::json_int<std::uint64_t>(j, "a") == 18446744073709551615ull);
    CHECK(keel::detail::json_int(j, "b") == 7);
    CHECK(keel::detail::json_int(j, "c") == -3);
    CHECK(keel::detail::json_int(j, "missing") == 0);
  }

  TEST_CASE("request bodies use the gateway's field names") {
    std::string body = keel::detail::json_object()
                           .bytes("key", "a")
                           .bytes("range_end", "\0"s)
                           .integer("revision", 42)
                           .text("sort_order", "DESCEND")
                           .boolean("count_only", true)
                           .str();
    CHECK(body == R"({"key":"YQ==","range_end":"AA==","revision":"42","sort_order":"DESCEND","count_only":true})");
  }

  TEST_CASE("options are checked at open") {
    etcd_options o;
    o.prefix = "p/";
    CHECK(etcd_store::open(o).error() == errc::invalid_argument);  // no endpoints
    o.endpoints = keel::test::shared_etcd().endpoints();
    o.prefix = "";
    auto empty_prefix = etcd_store::open(o);
    REQUIRE_FALSE(empty_prefix);
    CHECK(empty_prefix.error() == errc::invalid_argument);
    CHECK(empty_prefix.error().message().find("prefix") != std::string::npos);
    o.prefix = "p/";
    o.endpoints = {"127.0.0.1:2379"};
    CHECK(etcd_store::open(o).error() == errc::invalid_argument);  // no scheme
  }

  TEST_CASE("an unreachable cluster is unavailable, within the operation timeout") {
    etcd_options o;
    // A port just bound and released: nothing listens there.
    o.endpoints = {"http://127.0.0.1:1"};
    o.prefix = "p/";
    o.operation_timeout = std::chrono::milliseconds(300);
    const auto start = std::chrono::steady_clock::now();
    auto s = etcd_store::open(o);
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(s);
    CHECK(s.error() == errc::unavailable);
    CHECK(s.error().message().find("not applied") != std::string::npos);
    CHECK(took < std::chrono::seconds(3));
  }

  TEST_CASE("the key mapping: prefix + key, ranges stay inside the prefix") {
    etcd_backend b;
    auto store = open_or_fail(b);
    const auto& p = store.policy();
    const std::string pre = b.prefix;
    auto all = p.etcd_range(key_range::all());
    REQUIRE(all);
    CHECK(all->first == pre);
    CHECK(all->second == key_range::prefix_successor(pre).value());
    auto ff = p.etcd_range(key_range::prefix("\xff\xff"));
    REQUIRE(ff);
    CHECK(ff->first == pre + "\xff\xff");
    CHECK(ff->second == key_range::prefix_successor(pre).value());  // stays inside the store's prefix
    auto bounded = p.etcd_range(key_range::between("a", "c"));
    REQUIRE(bounded);
    CHECK(bounded->first == pre + "a");
    CHECK(bounded->second == pre + "c");
    CHECK_FALSE(p.etcd_range(key_range::between("c", "a")));
    CHECK_FALSE(p.etcd_range(key_range::until("")));
  }

  TEST_CASE("a prefix of only 0xFF bytes has no successor and still isolates") {
    etcd_backend ff;
    ff.prefix = std::string(8, '\xff');  // used by this case only
    etcd_backend other;                  // "keel-test/N/": sorts below it
    auto s1 = open_or_fail(ff);
    auto s2 = open_or_fail(other);
    auto r = s1.policy().etcd_range(key_range::all());
    REQUIRE(r);
    CHECK(r->second == "\0"s);  // every etcd key >= 0xFF x 8 starts with it
    REQUIRE(s1.put("k", "v"));
    REQUIRE(s1.put("\xff", "w"));
    REQUIRE(s2.put("\xff\xff", "x"));
    CHECK(keys_of(s1.scan()) == std::vector<std::string>{"k", "\xff"});
    CHECK(keys_of(s1.scan(key_range::all().reversed())) == std::vector<std::string>{"\xff", "k"});
    CHECK(keys_of(s1.scan(key_range::prefix("\xff"))) == std::vector<std::string>{"\xff"});
    CHECK(keys_of(s2.scan()) == std::vector<std::string>{"\xff\xff"});
    for (const auto& k : keys_of(s1.scan())) REQUIRE(s1.erase(k));  // leave nothing for other cases
  }

  TEST_CASE("two prefixes never see each other's keys, whatever bytes the keys hold") {
    // Neighbours in etcd's key order: "P/a." < "P/a/..." < "P/a0".
    const std::string p = etcd_backend::next_prefix();
    etcd_backend below, mine, above;
    below.prefix = p + "a.";
    mine.prefix = p + "a/";
    above.prefix = p + "a0";
    auto sb = open_or_fail(below);
    auto sm = open_or_fail(mine);
    auto sa = open_or_fail(above);
    for (auto k : {""s, "\0"s, "x"s, "\xff"s, "\xff\xff\xff"s}) {
      REQUIRE(sb.put(k, "below"));
      REQUIRE(sm.put(k, "mine"));
      REQUIRE(sa.put(k, "above"));
    }
    const std::vector<std::string> expected = {""s, "\0"s, "x"s, "\xff"s, "\xff\xff\xff"s};
    CHECK(keys_of(sm.scan()) == expected);
    CHECK(keys_of(sm.scan(key_range::prefix("\xff\xff"))) == std::vector<std::string>{"\xff\xff\xff"});
    CHECK(keys_of(sm.scan(key_range::from("\xff"))) == std::vector<std::string>{"\xff"s, "\xff\xff\xff"s});
    CHECK(keys_of(sm.scan(key_range::all().reversed())).front() == "\xff\xff\xff");
    for (const auto& e : collect_all(sm)) CHECK(e == "mine");
    REQUIRE(sm.write(write_batch{}.erase("x").put("y", "mine")));
    CHECK(sb.get("x")->value() == "below");
    CHECK(sa.get("x")->value() == "above");
    CHECK_FALSE(sb.get("y")->has_value());
  }

  TEST_CASE("a batch over etcd's limits is refused whole, naming the limit") {
    etcd_backend b;
    auto store = open_or_fail(b);
    write_batch big;
    for (int i = 0; i < 129; ++i) big.put("k" + std::to_string(i), "v");
    auto r = store.write(big);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::invalid_argument);
    CHECK(r.error().message().find("--max-txn-ops") != std::string::npos);
    CHECK(keys_of(store.scan()).empty());  // nothing applied, nothing split

    // 129 ops on 128 distinct keys merge to 128: accepted.
    write_batch merged;
    for (int i = 0; i < 128; ++i) merged.put("k" + std::to_string(i), "v");
    merged.put("k0", "again");
    REQUIRE(store.write(merged));
    CHECK(keys_of(store.scan()).size() == 128);

    auto huge = store.put("big", std::string(1600 * 1000, 'x'));
    REQUIRE_FALSE(huge);
    CHECK(huge.error() == errc::invalid_argument);
    CHECK(huge.error().message().find("--max-request-bytes") != std::string::npos);
  }

  TEST_CASE("the server's own limit errors are classified and name the limit") {
    etcd_backend b;
    auto opts = b.options();
    opts.max_txn_ops = 1000;            // keel's check off: the server must answer
    opts.max_request_bytes = 1u << 30;
    auto store = etcd_store::open(opts);
    REQUIRE(store);
    write_batch big;
    for (int i = 0; i < 129; ++i) big.put("k" + std::to_string(i), "v");
    auto r = store->write(big);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::invalid_argument);
    CHECK(r.error().message().find("too many operations") != std::string::npos);
    CHECK(r.error().message().find("--max-txn-ops") != std::string::npos);
    auto huge = store->put("big", std::string(1600 * 1000, 'x'));
    REQUIRE_FALSE(huge);
    CHECK(huge.error() == errc::invalid_argument);
    CHECK(huge.error().message().find("--max-request-bytes") != std::string::npos);
    CHECK(keys_of(store->scan()).empty());
  }

  TEST_CASE("a scan reads page by page at one revision") {
    etcd_backend b;
    auto opts = b.options();
    opts.page_size = 3;
    auto store = etcd_store::open(opts);
    REQUIRE(store);
    for (int i = 0; i < 10; ++i) REQUIRE(store->put("k" + std::to_string(i), "old"));
    for (bool reversed : {false, true}) {
      auto c = store->scan(reversed ? key_range::all().reversed() : key_range::all());
      std::vector<std::string> keys;
      int step = 0;
      for (const auto& e : c) {
        CHECK(e.value == "old");
        keys.emplace_back(e.key);
        // Writes between pages are not seen: the cursor reads one revision.
        if (step++ == 1) {
          REQUIRE(store->put("k5", "new"));
          REQUIRE(store->put("k55", "inserted"));
          REQUIRE(store->erase("k8"));
        }
      }
      CHECK_FALSE(c.error());
      CHECK(keys.size() == 10);
      if (reversed) CHECK(keys.front() == "k9");
      REQUIRE(store->put("k5", "old"));
      REQUIRE(store->erase("k55"));
      REQUIRE(store->put("k8", "old"));
    }
  }

  TEST_CASE("compaction past a snapshot gives snapshot_expired, never a mix") {
    etcd_backend b;
    auto store = open_or_fail(b);
    REQUIRE(store.put("a", "1"));
    auto snap = store.snapshot();
    REQUIRE(snap.valid());
    REQUIRE(store.put("a", "2"));
    CHECK(snap.get("a")->value() == "1");
    // Another client compacts the whole history (etcd compaction is cluster-wide).
    keel::detail::etcd_transport_config c;
    c.endpoints = keel::test::shared_etcd().endpoints();
    keel::detail::etcd_transport t(c);
    auto rev = store.policy().current_revision();
    REQUIRE(rev);
    REQUIRE(t.call("kv/compaction",
                   keel::detail::json_object().integer("revision", *rev).boolean("physical", true).str(),
                   keel::detail::call_kind::read, "compact"));
    auto expired = snap.get("a");
    REQUIRE_FALSE(expired);
    CHECK(expired.error() == errc::snapshot_expired);
    auto c2 = snap.scan();
    CHECK_FALSE(c2.valid());
    REQUIRE(c2.error());
    CHECK(c2.error()->code() == errc::snapshot_expired);
    CHECK(store.get("a")->value() == "2");  // the store itself reads on
  }

  TEST_CASE("stats report the keys under the prefix and the cluster") {
    etcd_backend b;
    auto store = open_or_fail(b);
    for (int i = 0; i < 5; ++i) REQUIRE(store.put("k" + std::to_string(i), "v"));
    auto st = store.stats();
    REQUIRE(st);
    CHECK(st->backend == keel::backend::etcd);
    CHECK(st->keys == 5);
    CHECK(st->keys_exact);
    CHECK(st->size_bytes > 0);
    auto prop = [&](std::string_view name) -> std::uint64_t {
      for (const auto& [k, v] : st->properties)
        if (k == name) return v;
      FAIL("no property " << name);
      return 0;
    };
    CHECK(prop("etcd.members") == 1);
    CHECK(prop("etcd.leader") != 0);
    CHECK(prop("etcd.leader") == prop("etcd.member_id"));
    CHECK(prop("etcd.raft_index") > 0);
    CHECK(store.close());
    CHECK(store.stats().error() == errc::closed);
  }
}

#if KEEL_HAS_ROCKSDB
#include <cstdlib>

#include <keel/etcd_any_store.hpp>

TEST_SUITE("etcd") {
  TEST_CASE("store_config selects the etcd backend from the environment; etcd_any_store opens it") {
    const auto eps = keel::test::shared_etcd().endpoints();
    const std::string prefix = etcd_backend::next_prefix();
    ::setenv("KEELETCDTEST_ETCD_ENDPOINTS", (" " + eps[0] + " ,").c_str(), 1);
    ::setenv("KEELETCDTEST_ETCD_PREFIX", prefix.c_str(), 1);
    auto cfg = keel::store_config::from_env("KEELETCDTEST");
    ::setenv("KEELETCDTEST_ETCD_ENDPOINTS", " , ", 1);
    auto bad = keel::store_config::from_env("KEELETCDTEST");
    ::unsetenv("KEELETCDTEST_ETCD_ENDPOINTS");
    ::unsetenv("KEELETCDTEST_ETCD_PREFIX");
    REQUIRE(cfg);
    CHECK(cfg->preferred == keel::backend::etcd);
    CHECK(cfg->etcd.endpoints == eps);
    CHECK(cfg->etcd.prefix == prefix);
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == errc::invalid_argument);
    CHECK(bad.error().message().find("KEELETCDTEST_ETCD_ENDPOINTS") != std::string::npos);

    cfg->log = [](std::string_view) {};
    auto s = keel::open_store<keel::etcd_any_store>(*cfg);
    REQUIRE(s);
    CHECK(s->backend() == keel::backend::etcd);
    REQUIRE(s->put("k", "v"));
    CHECK(s->get("k")->value() == "v");
    CHECK(keys_of(s->scan()) == std::vector<std::string>{"k"});

    // A program built without the etcd backend in its store type is told so.
    auto plain = keel::open_store(*cfg);
    REQUIRE_FALSE(plain);
    CHECK(plain.error() == errc::invalid_argument);
    CHECK(plain.error().message().find("etcd_any_store") != std::string::npos);
  }
}
#endif
