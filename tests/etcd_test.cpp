// The cluster backend's own suite (EtcdPolicy, <keel/etcd.hpp>): the gateway
// client, the key mapping, errors and limits, against one etcd member shared
// by the test binary. The conformance suite runs every common case on it too.
// Expiry (issue 29) on etcd is here too, with real seconds (leases).
#include <curl/curl.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <thread>
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
    // The default keyspace ends where the reserved area of the other
    // keyspaces begins (codec.hpp; before keyspaces it ended at the prefix's
    // successor).
    const std::string end = pre + std::string(8, '\xff') + "\x01";
    auto all = p.etcd_range(key_range::all());
    REQUIRE(all);
    CHECK(all->first == pre);
    CHECK(all->second == end);
    auto ff = p.etcd_range(key_range::prefix("\xff\xff"));
    REQUIRE(ff);
    CHECK(ff->first == pre + "\xff\xff");
    CHECK(ff->second == end);  // stays inside the store's prefix
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
    CHECK(r->second == ff.prefix + std::string(8, '\xff') + "\x01");  // the default keyspace's end, inside the prefix
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

// Keyspaces on etcd (issue 27; layout in codec.hpp and docs/cluster.md). The
// semantics common to every backend are in keyspace_test.cpp; these cases
// check what is etcd's own: the layout under the prefix, the list kept in
// etcd (a second client), generations, guards, revisions and paging.
namespace {
const std::string marker(8, '\xff');

template <class Store>
auto keyspace_of(Store& store, std::string_view name) {
  auto ks = store.keyspace(name);
  REQUIRE_MESSAGE(ks, (ks ? "" : ks.error().message()));
  return std::move(*ks);
}

// Every etcd key under `prefix`, read past keel (a raw range request).
std::vector<std::string> raw_keys(const std::string& prefix) {
  keel::detail::etcd_transport_config c;
  c.endpoints = keel::test::shared_etcd().endpoints();
  keel::detail::etcd_transport t(c);
  auto r = keel::detail::read_etcd_range(t, prefix, key_range::prefix_successor(prefix).value(), 0, 0, false, "raw");
  REQUIRE(r);
  std::vector<std::string> keys;
  for (const auto& kv : r->kvs) keys.push_back(kv.etcd_key);
  return keys;
}

// Compacts the shared etcd's whole history, as another process would.
void compact_cluster_now(const etcd_store& store) {
  keel::detail::etcd_transport_config c;
  c.endpoints = keel::test::shared_etcd().endpoints();
  keel::detail::etcd_transport t(c);
  auto rev = store.policy().current_revision();
  REQUIRE(rev);
  REQUIRE(t.call("kv/compaction", keel::detail::json_object().integer("revision", *rev).boolean("physical", true).str(),
                 keel::detail::call_kind::read, "compact"));
}
}  // namespace

TEST_SUITE("etcd") {
  TEST_CASE("etcd keyspaces: the layout under the prefix keeps the default keyspace's keys where they were") {
    etcd_backend b;
    auto store = open_or_fail(b);
    const std::string& pre = b.prefix;
    auto a = keyspace_of(store, "a");
    auto ab = keyspace_of(store, "ab");
    REQUIRE(store.put("k", "d"));
    REQUIRE(store.put("\xff", "d"));
    REQUIRE(store.put(marker, "d"));            // default keys beginning with the marker are escaped
    REQUIRE(store.put(marker + "z", "d"));
    REQUIRE(a.put("k", "a"));
    REQUIRE(ab.put("k", "ab"));
    const std::vector<std::string> expected = {
        pre + "k",
        pre + "\xff",
        pre + marker + "\0"s,                     // default key M
        pre + marker + "\0z"s,                    // default key M + "z"
        pre + marker + "\x01" + "a",              // list entries
        pre + marker + "\x01" + "ab",
        pre + marker + "\x02\x01" + "a" + "k",    // key k of "a": length, name, key
        pre + marker + "\x02\x02" + "ab" + "k",
    };
    CHECK(raw_keys(pre) == expected);
    // The default keyspace sees its own keys, in their order, and nothing else.
    CHECK(keys_of(store.scan()) == std::vector<std::string>{"k", "\xff", marker, marker + "z"});
    CHECK(keys_of(store.scan(key_range::all().reversed())) == std::vector<std::string>{marker + "z", marker, "\xff", "k"});
    CHECK(keys_of(store.scan(key_range::from("\xff"))) == std::vector<std::string>{"\xff", marker, marker + "z"});
    CHECK(store.get(marker + "z")->value() == "d");
    // "a" is a prefix of "ab": its range never reaches "ab"'s keys.
    CHECK(keys_of(a.scan()) == std::vector<std::string>{"k"});
    REQUIRE(a.erase_range(key_range::all()));
    CHECK(keys_of(a.scan()).empty());
    CHECK(ab.get("k")->value() == "ab");
    // Erasing the whole default keyspace leaves the others and the list.
    REQUIRE(store.erase_range(key_range::all()));
    CHECK(keys_of(store.scan()).empty());
    CHECK(ab.get("k")->value() == "ab");
    CHECK(*store.keyspaces() == std::vector<std::string>{"", "a", "ab"});
    auto st = store.stats();
    REQUIRE(st);
    CHECK(st->keys == 0);  // the default keyspace's keys
  }

  TEST_CASE("etcd keyspaces: names with NUL and 0xFF, of 255 bytes, prefixes of each other") {
    etcd_backend b;
    auto store = open_or_fail(b);
    const std::vector<std::string> names = {"a"s, "a\0"s, "a\0b"s, "\xff"s, "\xff\xff"s, std::string(255, 'x'),
                                            std::string(255, '\xff'), "\0"s};
    std::vector<keel::basic_keyspace<keel::EtcdPolicy>> handles;
    for (const auto& n : names) handles.push_back(keyspace_of(store, n));
    for (std::size_t i = 0; i < names.size(); ++i) {
      REQUIRE(handles[i].put("k", "v" + std::to_string(i)));
      REQUIRE(handles[i].put("\xff" + std::to_string(i), "w"));
    }
    for (std::size_t i = 0; i < names.size(); ++i) {
      CHECK(handles[i].get("k")->value() == "v" + std::to_string(i));
      CHECK(keys_of(handles[i].scan()) == std::vector<std::string>{"k", "\xff" + std::to_string(i)});
      CHECK(keys_of(handles[i].scan(key_range::all().reversed())) ==
            std::vector<std::string>{"\xff" + std::to_string(i), "k"});
    }
    auto sorted = names;
    sorted.push_back("");
    std::sort(sorted.begin(), sorted.end());
    CHECK(*store.keyspaces() == sorted);
    CHECK(keys_of(store.scan()).empty());
    REQUIRE(store.drop_keyspace("\xff"));
    CHECK(handles[4].get("k")->value() == "v4");  // "\xff\xff" untouched by dropping "\xff"
    CHECK(handles[6].get("k")->value() == "v6");
    CHECK(handles[3].get("k").error() == errc::not_found);
  }

  TEST_CASE("etcd keyspaces: bad input") {
    etcd_backend b;
    auto store = open_or_fail(b);
    const std::string too_long(256, 'n');
    CHECK(store.keyspace(too_long).error() == errc::invalid_argument);
    CHECK(store.policy().open_keyspace(too_long, true).error() == errc::invalid_argument);
    CHECK(store.drop_keyspace("").error() == errc::invalid_argument);
    CHECK(store.policy().drop_keyspace("").error() == errc::invalid_argument);
    CHECK(store.drop_keyspace(too_long).error() == errc::invalid_argument);
    CHECK(store.drop_keyspace("missing").error() == errc::not_found);
    CHECK(store.policy().open_keyspace("missing", false).error() == errc::not_found);  // nothing created
    // A batch naming a 256-byte keyspace is refused before anything is sent.
    auto r = store.write(write_batch{}.put("d", "1").put(keel::keyspace_name(too_long), "k", "v"));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::invalid_argument);
    CHECK(*store.keyspaces() == std::vector<std::string>{""});
    CHECK(raw_keys(b.prefix).empty());
  }

  TEST_CASE("etcd keyspaces: a second client sees keyspaces, writes and drops; generations keep old handles out") {
    etcd_backend b;
    auto one = open_or_fail(b);
    auto two = open_or_fail(b);  // another store object: shares nothing with `one` but the cluster
    auto users = keyspace_of(one, "users");
    REQUIRE(users.put("alice", "1"));
    CHECK(*two.keyspaces() == std::vector<std::string>{"", "users"});
    auto users2 = keyspace_of(two, "users");
    CHECK(users2.get("alice")->value() == "1");
    REQUIRE(users2.put("bob", "2"));
    CHECK(keys_of(users.scan()) == std::vector<std::string>{"alice", "bob"});

    REQUIRE(two.drop_keyspace("users"));
    CHECK(*one.keyspaces() == std::vector<std::string>{""});
    CHECK(users.get("alice").error() == errc::not_found);
    CHECK(users.put("carol", "3").error() == errc::not_found);
    CHECK(users.erase_range(key_range::all()).error() == errc::not_found);
    CHECK(users.scan().error()->code() == errc::not_found);
    CHECK(one.drop_keyspace("users").error() == errc::not_found);

    // Recreated by the first client: empty, and the old handles stay out.
    auto again = keyspace_of(one, "users");
    CHECK(keys_of(again.scan()).empty());
    CHECK(users2.get("alice").error() == errc::not_found);
    CHECK(users2.put("dave", "4").error() == errc::not_found);
    CHECK(users2.multi_get({"alice"}).error() == errc::not_found);
    CHECK(users2.contains("alice").error() == errc::not_found);
    CHECK(users2.erase("alice").error() == errc::not_found);
    CHECK(users2.compact().error() == errc::not_found);
    CHECK(keys_of(again.scan()).empty());
    // Creating the same name from both clients gives one keyspace.
    auto again2 = keyspace_of(two, "users");
    REQUIRE(again2.put("erin", "5"));
    CHECK(again.get("erin")->value() == "5");
  }

  TEST_CASE("etcd keyspaces: a batch across keyspaces is one txn; a missing keyspace writes nothing") {
    etcd_backend b;
    auto store = open_or_fail(b);
    auto other_client = open_or_fail(b);
    auto a = keyspace_of(store, "a");
    auto c = keyspace_of(store, "c");
    REQUIRE(c.put("r1", "x"));
    REQUIRE(store.write(write_batch{}.put(a, "k", "a1").put("k", "d1").erase_range(c, key_range::all()).put(c, "k", "c1")));
    CHECK(a.get("k")->value() == "a1");
    CHECK(store.get("k")->value() == "d1");
    CHECK(keys_of(c.scan()) == std::vector<std::string>{"k"});

    // "c" dropped by another client: the batch fails whole, naming it.
    REQUIRE(other_client.drop_keyspace("c"));
    auto r = store.write(write_batch{}.put(a, "k", "a2").put("k", "d2").put(keel::keyspace_name("c"), "k", "c2"));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::not_found);
    CHECK(r.error().message().find("'c'") != std::string::npos);
    CHECK(a.get("k")->value() == "a1");
    CHECK(store.get("k")->value() == "d1");
    // Nothing of "c" was written (no orphaned keys in its area).
    for (const auto& k : raw_keys(b.prefix)) CHECK(k.find(marker + "\x02\x01" + "c") == std::string::npos);
    // An empty range erase in a missing keyspace is still not_found.
    r = store.write(write_batch{}.erase_range(keel::keyspace_name("zz"), key_range::between("b", "a")));
    CHECK(r.error() == errc::invalid_argument);
    r = store.write(write_batch{}.erase_range(keel::keyspace_name("zz"), key_range::between("a", "a")));
    CHECK(r.error() == errc::not_found);
  }

  TEST_CASE("etcd keyspaces: one snapshot covers every keyspace; a drop after it reads on until compaction") {
    etcd_backend b;
    auto store = open_or_fail(b);
    auto other_client = open_or_fail(b);
    auto a = keyspace_of(store, "a");
    auto gone = keyspace_of(store, "gone");
    auto dropped = keyspace_of(store, "dropped");
    REQUIRE(gone.put("k", "g"));
    REQUIRE(store.drop_keyspace("gone"));  // dropped before the snapshot
    REQUIRE(store.write(write_batch{}.put(a, "k", "a1").put(dropped, "k", "x1").put("k", "d1")));
    auto snap = store.snapshot();
    REQUIRE(snap.valid());
    REQUIRE(store.write(write_batch{}.put(a, "k", "a2").put(dropped, "k", "x2").put("k", "d2")));
    REQUIRE(other_client.drop_keyspace("dropped"));
    auto later = keyspace_of(store, "later");
    REQUIRE(later.put("k", "l"));

    CHECK(snap.get(a, "k")->value() == "a1");
    CHECK(snap.get("k")->value() == "d1");
    CHECK(snap.get(dropped, "k")->value() == "x1");  // dropped after the snapshot: read at its revision
    CHECK(*snap.contains(dropped, "k"));
    CHECK(keys_of(snap.scan(dropped)) == std::vector<std::string>{"k"});
    CHECK(snap.get(later, "k").error() == errc::not_found);  // created after the snapshot
    CHECK(snap.scan(later).error()->code() == errc::not_found);
    CHECK(snap.get(gone, "k").error() == errc::not_found);  // dropped before it
    CHECK(snap.contains(gone, "k").error() == errc::not_found);
    CHECK(dropped.get("k").error() == errc::not_found);  // but not through the store

    // Once a compaction (here another client's) passes the snapshot's
    // revision, its reads give snapshot_expired, in every keyspace.
    compact_cluster_now(other_client);
    CHECK(snap.get(dropped, "k").error() == errc::snapshot_expired);
    CHECK(snap.get(a, "k").error() == errc::snapshot_expired);
    CHECK(snap.scan(dropped).error()->code() == errc::snapshot_expired);
    CHECK(a.get("k")->value() == "a2");
  }

  TEST_CASE("etcd keyspaces: a transaction's keyspace reads and writes are validated per keyspace") {
    etcd_backend b;
    auto store = open_or_fail(b);
    auto other_client = open_or_fail(b);
    auto a = keyspace_of(store, "a");
    auto r = keyspace_of(store, "r");
    auto& policy = store.policy();
    REQUIRE(a.put("k", "1"));
    REQUIRE(r.put("m", "1"));
    auto record = [&](std::int64_t start) {
      keel::tx_record tx;
      tx.start = static_cast<std::uint64_t>(start);
      tx.keyspace_reads.push_back({"a", {"k"}, {}});
      tx.keyspace_reads.push_back({"r", {}, {key_range::between("a", "z")}});
      tx.writes.put(keel::keyspace_name("a"), "k", "2").put("out", "1");
      return tx;
    };
    auto now = [&] { return *policy.current_revision(); };

    // Writes to the same keys in other keyspaces do not conflict.
    auto start = now();
    REQUIRE(store.put("k", "default"));
    REQUIRE(store.put("n", "default"));
    REQUIRE(policy.commit_transaction(record(start)));
    CHECK(a.get("k")->value() == "2");
    CHECK(store.get("out")->value() == "1");

    // A key read in "a", changed by another client: conflict, nothing written.
    start = now();
    REQUIRE(keyspace_of(other_client, "a").put("k", "other"));
    auto c = policy.commit_transaction(record(start));
    REQUIRE_FALSE(c);
    CHECK(c.error() == errc::conflict);
    CHECK(a.get("k")->value() == "other");

    // A key added inside a range scanned in "r": conflict; one erased: too.
    start = now();
    REQUIRE(keyspace_of(other_client, "r").put("n", "new"));
    CHECK(policy.commit_transaction(record(start)).error() == errc::conflict);
    start = now();
    REQUIRE(keyspace_of(other_client, "r").erase("m"));
    CHECK(policy.commit_transaction(record(start)).error() == errc::conflict);

    // A written keyspace dropped meanwhile: not_found, nothing written.
    start = now();
    auto tx = record(start);
    tx.keyspace_reads.clear();
    tx.writes.put(keel::keyspace_name("w"), "k", "1");
    REQUIRE(store.keyspace("w"));
    REQUIRE(other_client.drop_keyspace("w"));
    REQUIRE(store.put("out", "before"));
    auto m = policy.commit_transaction(tx);
    REQUIRE_FALSE(m);
    CHECK(m.error() == errc::not_found);
    CHECK(store.get("out")->value() == "before");
  }

  TEST_CASE("etcd keyspaces: transactions through handles; a keyspace another client recreated since is not_found") {
    etcd_backend b;
    auto one = open_or_fail(b);
    auto two = open_or_fail(b);
    auto a = keyspace_of(one, "a");
    REQUIRE(a.put("k", "1"));

    // A key read in "a" and changed by the other client: conflict.
    auto tx = one.transaction();
    REQUIRE(tx.get(a, "k")->value() == "1");
    REQUIRE(tx.put(a, "k", "2"));
    REQUIRE(keyspace_of(two, "a").put("k", "other"));
    CHECK(tx.commit().error() == errc::conflict);
    CHECK(a.get("k")->value() == "other");

    // Read only in "a" (a key that stays absent), written only in "":
    // "a" dropped and created again by the other client meanwhile is
    // not_found, nothing written.
    auto tx2 = one.transaction();
    CHECK_FALSE(tx2.get(a, "absent")->has_value());
    REQUIRE(tx2.put("out", "1"));
    REQUIRE(two.drop_keyspace("a"));
    auto a_again = keyspace_of(two, "a");
    auto c = tx2.commit();
    REQUIRE_FALSE(c);
    CHECK(c.error() == errc::not_found);
    CHECK_FALSE(one.get("out")->has_value());

    // Across keyspaces, untouched meanwhile: commits whole.
    auto fresh = keyspace_of(one, "a");
    auto tx3 = one.transaction();
    REQUIRE(tx3.put(fresh, "k", "3"));
    REQUIRE(tx3.put("out", "3"));
    REQUIRE(tx3.commit());
    CHECK(a_again.get("k")->value() == "3");
    CHECK(one.get("out")->value() == "3");
  }

  TEST_CASE("etcd keyspaces: scans and the list are paged; the request size limit holds") {
    etcd_backend b;
    auto opts = b.options();
    opts.page_size = 3;
    opts.max_request_bytes = 4096;
    auto store = etcd_store::open(opts);
    REQUIRE(store);
    auto ks = keyspace_of(*store, "paged");
    std::vector<std::string> expected;
    for (int i = 0; i < 10; ++i) {
      expected.push_back("k" + std::to_string(i));
      REQUIRE(ks.put(expected.back(), "old"));
    }
    for (bool reversed : {false, true}) {
      auto c = ks.scan(reversed ? key_range::all().reversed() : key_range::all());
      std::vector<std::string> keys;
      int step = 0;
      for (const auto& e : c) {
        CHECK(e.value == "old");
        keys.emplace_back(e.key);
        if (step++ == 1) REQUIRE(ks.put("k5", "new"));  // not seen: one revision
      }
      CHECK_FALSE(c.error());
      auto want = expected;
      if (reversed) std::reverse(want.begin(), want.end());
      CHECK(keys == want);
      REQUIRE(ks.put("k5", "old"));
    }
    for (int i = 0; i < 7; ++i) REQUIRE(store->keyspace("n" + std::to_string(i)));
    auto names = store->keyspaces();
    REQUIRE(names);
    CHECK(names->size() == 9);
    CHECK(names->back() == "paged");
    auto big = ks.put("big", std::string(5000, 'v'));
    REQUIRE_FALSE(big);
    CHECK(big.error() == errc::invalid_argument);
    auto big_batch = store->write(write_batch{}.put(ks, "big", std::string(5000, 'v')));
    REQUIRE_FALSE(big_batch);
    CHECK(big_batch.error() == errc::invalid_argument);
    CHECK_FALSE(ks.get("big")->has_value());
  }
}

// Issue 29: keys with a ttl on etcd (etcd/leases.hpp, docs/expiry.md "etcd").
// etcd's time decides, in whole seconds, so these cases use real, short
// ttls (1 s: the shared etcd's minimum TTL with its 200 ms election timeout)
// and poll with a deadline for what the server does; the fake-clock cases of
// expiry_test.cpp cannot run here.
namespace {
using keel::put_options;
using keel::test::keyspace_or_fail;
using namespace std::chrono_literals;

put_options ttl(std::chrono::milliseconds t) { return put_options{t}; }

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How many /v3/lease/timetolive requests member 0 of `cluster` has served
// (its gRPC metrics: grpc_server_started_total of LeaseTimeToLive).
std::int64_t lease_lookups(const keel::test::etcd_cluster& cluster) {
  std::string body;
  CURL* h = curl_easy_init();
  REQUIRE(h);
  const std::string url = cluster.endpoint(0) + "/metrics";
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(
      h, CURLOPT_WRITEFUNCTION, +[](char* d, std::size_t n, std::size_t m, void* out) {
        static_cast<std::string*>(out)->append(d, n * m);
        return n * m;
      });
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  const auto rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  REQUIRE(rc == CURLE_OK);
  const std::string series = "grpc_server_started_total{grpc_method=\"LeaseTimeToLive\"";
  const auto at = body.find(series);
  REQUIRE(at != std::string::npos);
  const auto value = body.find("} ", at);
  REQUIRE(value != std::string::npos);
  return std::stoll(body.substr(value + 2, body.find('\n', value) - value - 2));
}

// Polls `done` every 20 ms until it holds or `limit` has passed; whether it held.
template <class F>
bool eventually(F&& done, std::chrono::milliseconds limit = 6000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// Talks to the shared etcd directly, under the store's keys.
struct raw_etcd {
  explicit raw_etcd(std::string prefix) : keys(std::move(prefix)), transport(config()) {}
  static keel::detail::etcd_transport_config config() {
    keel::detail::etcd_transport_config c;
    c.endpoints = keel::test::shared_etcd().endpoints();
    return c;
  }
  // The lease the etcd key `etcd_key` is attached to (0: none; -1: absent).
  std::int64_t lease_of_etcd_key(const std::string& etcd_key) {
    auto r = transport.call("kv/range", keel::detail::json_object().bytes("key", etcd_key).str(),
                            keel::detail::call_kind::read, "test");
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    auto kvs = r->find("kvs");
    if (kvs == r->end() || kvs->empty()) return -1;
    return keel::detail::json_int((*kvs)[0], "lease");
  }
  std::int64_t lease_of(std::string_view key, std::string_view keyspace = {}) {
    return lease_of_etcd_key(keyspace.empty() ? keys.key(key) : keys.named(keyspace).key(key));
  }
  void revoke(std::int64_t lease) {
    auto r = transport.call("lease/revoke", keel::detail::json_object().integer("ID", lease).str(),
                            keel::detail::call_kind::write, "test");
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
  }
  keel::detail::etcd_keyspace keys;
  keel::detail::etcd_transport transport;
};

template <class Reader>
bool absent(const Reader& r, std::string_view key) {
  auto v = r.get(key);
  REQUIRE_MESSAGE(v, (v ? "" : v.error().message()));
  return !v->has_value();
}
}  // namespace

TEST_SUITE("etcd") {
  TEST_CASE("etcd expiry: keys leave with their lease on every read path; one lease per deadline second; "
            "a watch sees one erase per key") {
    etcd_backend b;
    auto store = open_or_fail(b);
    raw_etcd raw(b.prefix);
    auto users = keyspace_or_fail(store, "users");
    auto w = store.watch(key_range::all());
    REQUIRE(w);
    auto uw = users.watch();
    REQUIRE(uw);
    const auto t0 = now_ms();
    // One batch: one reading of the clock, one deadline second, one lease.
    REQUIRE(store.write(write_batch{}
                            .put("a", "1", ttl(1s))
                            .put("b", "2", ttl(1s))
                            .put("p", "permanent")
                            .put(keel::keyspace_name("users"), "u", "3", ttl(1s))));
    REQUIRE(store.put("c", "4", ttl(1s)));
    REQUIRE(store.put("again", "5", ttl(1s)));
    REQUIRE(store.put("again", "6"));  // permanent again: detached from its lease
    auto tx = store.transaction();
    REQUIRE(tx.put("t", "7", ttl(1s)));
    REQUIRE(tx.commit());
    REQUIRE(store.put("long", "8", ttl(60s)));

    const auto lease = raw.lease_of("a");
    CHECK(lease > 0);
    CHECK(raw.lease_of("b") == lease);
    CHECK(raw.lease_of("u", "users") == lease);
    CHECK(raw.lease_of("p") == 0);
    CHECK(raw.lease_of("again") == 0);
    CHECK(raw.lease_of("c") > 0);
    CHECK(raw.lease_of("t") > 0);
    CHECK(raw.lease_of("long") > 0);
    CHECK(raw.lease_of("long") != lease);

    // expiry(): the lease's remaining TTL (whole seconds, rounded down).
    auto e = store.expiry("long");
    REQUIRE(e);
    CHECK(e->present);
    REQUIRE(e->deadline);
    CHECK(*e->deadline >= t0 + 58000);
    CHECK(*e->deadline <= now_ms() + 62000);
    e = store.expiry("a");
    REQUIRE(e);
    if (e->present) {  // etcd may have revoked it already on a slow machine
      REQUIRE(e->deadline);
      CHECK(*e->deadline >= t0 - 1000);
      CHECK(*e->deadline <= now_ms() + 3000);
    }
    CHECK(*store.expiry("p") == keel::key_expiry{true, std::nullopt});
    CHECK(*store.expiry("again") == keel::key_expiry{true, std::nullopt});
    CHECK(*store.expiry("never") == keel::key_expiry{});

    auto before = store.snapshot();
    REQUIRE(before.valid());
    auto reader = store.transaction();
    auto read = reader.get("a");
    REQUIRE(read);
    REQUIRE(reader.put("out", "x"));

    // etcd revokes the leases (each TTL rounded up to whole seconds, its
    // lessor checking every 500 ms): the keys go, in one revision per lease.
    REQUIRE(eventually([&] { return absent(store, "a") && absent(store, "c") && absent(store, "t"); }));
    CHECK(absent(store, "b"));
    CHECK(absent(users, "u"));
    CHECK_FALSE(*store.contains("a"));
    CHECK_FALSE(*users.contains("u"));
    auto many = store.multi_get({"a", "p", "long"});
    REQUIRE(many);
    CHECK_FALSE((*many)[0].has_value());
    CHECK((*many)[1] == std::optional<std::string>("permanent"));
    CHECK((*many)[2] == std::optional<std::string>("8"));
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"again", "long", "p"});
    CHECK(keys_of(store.scan(key_range::all().reversed())) == std::vector<std::string>{"p", "long", "again"});
    CHECK(keys_of(users.scan(key_range::all())).empty());
    CHECK(*store.expiry("a") == keel::key_expiry{});
    CHECK(*users.expiry("u") == keel::key_expiry{});
    CHECK(store.get("again")->value_or("<absent>") == "6");
    // A snapshot reads its revision: what was live then stays.
    CHECK(before.get("a")->value_or("<absent>") == "1");
    CHECK(keys_of(before.scan(key_range::all())) ==
          std::vector<std::string>{"a", "again", "b", "c", "long", "p", "t"});
    // A transaction that read a key whose lease was revoked before its commit.
    CHECK(read->value_or("<absent>") == "1");
    auto committed = reader.commit();
    REQUIRE_FALSE(committed);
    CHECK(committed.error() == errc::conflict);
    CHECK(absent(store, "out"));

    // The watch: the puts, then one erase change per expired key, and none
    // for the keys that stay.
    std::map<std::string, int> erased;
    int puts = 0;
    REQUIRE(eventually([&] {
      auto c = w->next(100ms);
      REQUIRE(c);
      if (*c) {
        if ((*c)->value)
          ++puts;
        else
          ++erased[(*c)->key];
      }
      return erased.size() == 4 && puts == 8;
    }));
    CHECK(erased == std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}, {"t", 1}});
    auto quiet = w->next(300ms);
    REQUIRE(quiet);
    CHECK_FALSE(quiet->has_value());
    auto u1 = uw->next(5s);
    REQUIRE(u1);
    REQUIRE(*u1);
    CHECK((*u1)->value == std::optional<std::string>("3"));
    auto u2 = uw->next(5s);
    REQUIRE(u2);
    REQUIRE(*u2);
    CHECK((**u2 == keel::change{(*u2)->seq, "users", "u", std::nullopt}));
  }

  TEST_CASE("etcd expiry: a bad ttl is invalid_argument and writes nothing (put, keyspace, batch, transaction)") {
    etcd_backend b;
    auto store = open_or_fail(b);
    auto users = keyspace_or_fail(store, "users");
    REQUIRE(store.put("k", "before"));
    const auto past_etcd = std::chrono::milliseconds(keel::detail::etcd_max_lease_ttl_s * 1000 + 1000);
    const auto huge = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max() / 2);
    for (std::chrono::milliseconds bad : {0ms, -1ms, past_etcd, huge}) {
      CAPTURE(bad.count());
      auto r = store.put("k", "after", ttl(bad));
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::invalid_argument);
      r = users.put("n", "v", ttl(bad));
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::invalid_argument);
      r = store.write(write_batch{}.put("x", "1").put("y", "2", ttl(1h)).put("k", "after", ttl(bad)).erase("k"));
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::invalid_argument);
      if (bad.count() > 0) {  // refused at tx.put when not positive; else at the commit
        auto tx = store.transaction();
        REQUIRE(tx.put("k", "after", ttl(bad)));
        REQUIRE(tx.put("z", "1"));
        auto c = tx.commit();
        REQUIRE_FALSE(c);
        CHECK(c.error() == errc::invalid_argument);
      }
    }
    CHECK(store.get("k")->value_or("<absent>") == "before");
    CHECK(*store.expiry("k") == keel::key_expiry{true, std::nullopt});
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"k"});
    CHECK(keys_of(users.scan(key_range::all())).empty());
  }

  TEST_CASE("etcd expiry: a batch with ttls is one txn; a lease revoked under the cache is replaced") {
    etcd_backend b;
    auto store = open_or_fail(b);
    raw_etcd raw(b.prefix);
    auto users = keyspace_or_fail(store, "users");
    // A batch naming a keyspace that does not exist writes nothing, its ttl
    // puts included (the lease granted for them is left to expire).
    auto r = store.write(write_batch{}.put("a", "1", ttl(1h)).put(keel::keyspace_name("nope"), "b", "2", ttl(1h)));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::not_found);
    CHECK(absent(store, "a"));
    // A keyspace dropped under its handle: the ttl put is refused whole.
    REQUIRE(store.drop_keyspace("users"));
    r = users.put("u", "1", ttl(1h));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::not_found);

    // Put two keys with the same deadline second, revoking the first one's
    // lease in between: the second put names the cached lease, which etcd no
    // longer has ("requested lease not found", nothing applied), and is sent
    // again with a new lease. Begins early in a wall-clock second so that both
    // deadlines fall in the same one.
    REQUIRE(eventually([] { return now_ms() % 1000 < 300; }, 2000ms));
    REQUIRE(store.put("x", "1", ttl(1h)));
    const auto first = raw.lease_of("x");
    REQUIRE(first > 0);
    raw.revoke(first);
    CHECK(raw.lease_of("x") == -1);  // revoking deleted it
    REQUIRE(store.write(write_batch{}.put("y", "2", ttl(1h)).put("z", "3", ttl(1h))));
    const auto second = raw.lease_of("y");
    CHECK(second > 0);
    CHECK(second != first);
    CHECK(raw.lease_of("z") == second);
    auto e = store.expiry("y");
    REQUIRE(e);
    REQUIRE(e->deadline);
    CHECK(*e->deadline > now_ms() + 3590000);
  }
}

TEST_SUITE("etcd") {
  // A cluster of its own: whether any lease exists is cluster-wide, and the
  // shared etcd holds the other cases' leases. Fails when export asks every
  // key of a store without leases (the dump then is version 3) or when it
  // drops the deadline of a key that has one.
  TEST_CASE("etcd expiry: an export without leases is the dump format of before; with one, version 3 and its deadline") {
    keel::test::etcd_cluster cluster(1);
    etcd_options o;
    o.endpoints = cluster.endpoints();
    o.prefix = "dump/";
    auto store = etcd_store::open(o);
    REQUIRE_MESSAGE(store, (store ? "" : store.error().message()));
    keel::test::temp_dir tmp;
    REQUIRE(store->put("a", "1"));
    REQUIRE(store->put("b", "2"));
    auto plain = keel::export_dump(*store, tmp.path() / "plain.dump");
    REQUIRE_MESSAGE(plain, (plain ? "" : plain.error().message()));
    CHECK(plain->version == keel::dump_version_flat);
    CHECK(plain->records == 2);
    CHECK(plain->deadlines == 0);

    const auto before = now_ms();
    REQUIRE(store->put("t", "3", ttl(1h)));
    auto timed = keel::export_dump(*store, tmp.path() / "timed.dump");
    REQUIRE_MESSAGE(timed, (timed ? "" : timed.error().message()));
    CHECK(timed->version == keel::dump_version_deadlines);
    CHECK(timed->records == 3);
    CHECK(timed->deadlines == 1);
    auto mem = keel::memory_store::open(keel::memory_options{});
    REQUIRE(mem);
    auto in = keel::import_dump(*mem, tmp.path() / "timed.dump");
    REQUIRE_MESSAGE(in, (in ? "" : in.error().message()));
    auto e = mem->expiry("t");
    REQUIRE(e);
    REQUIRE(e->deadline);
    CHECK(*e->deadline > before + 3500 * 1000);
    CHECK(*e->deadline <= now_ms() + 3602 * 1000);
    auto p = mem->expiry("a");
    REQUIRE(p);
    CHECK(p->present);
    CHECK_FALSE(p->deadline);
  }

  // The etcd cursor reports each key's deadline from the lease its range
  // answer names, one /v3/lease/timetolive per distinct lease of the scan
  // (counted by the member's own gRPC metrics, which the gateway's requests
  // go through): 3 leases, not one per key as when export asked expiry(key)
  // of every key. Deadlines: those expiry(key) reports, to within etcd's
  // rounding of the remaining TTL to whole seconds.
  TEST_CASE("etcd expiry: an export looks up each lease once, not each key, and reports expiry(key)'s deadlines") {
    keel::test::etcd_cluster cluster(1);
    etcd_options o;
    o.endpoints = cluster.endpoints();
    o.prefix = "leases/";
    o.page_size = 64;  // several pages: the lookups are cached across pages
    auto store = etcd_store::open(o);
    REQUIRE_MESSAGE(store, (store ? "" : store.error().message()));
    // Three batches, each one txn with one clock reading: one lease each.
    const int per_lease = 100;
    std::map<std::string, std::chrono::hours> ttl_of;
    for (int l = 1; l <= 3; ++l) {
      write_batch batch;
      for (int i = 0; i < per_lease; ++i) {
        const std::string key = "k" + std::to_string(l) + "-" + std::to_string(1000 + i);
        batch.put(key, "v", ttl(std::chrono::hours(l)));
        ttl_of[key] = std::chrono::hours(l);
      }
      REQUIRE(store->write(batch));
    }
    REQUIRE(store->put("permanent", "p"));
    keel::test::temp_dir tmp;
    const auto lookups_before = lease_lookups(cluster);
    auto info = keel::export_dump(*store, tmp.path() / "leases.dump");
    REQUIRE_MESSAGE(info, (info ? "" : info.error().message()));
    const auto lookups = lease_lookups(cluster) - lookups_before;
    CHECK(info->version == keel::dump_version_deadlines);
    CHECK(info->records == 3 * per_lease + 1);
    CHECK(info->deadlines == 3 * per_lease);
    CHECK(lookups == 3);

    keel::dump_reader r;
    REQUIRE(r.open(tmp.path() / "leases.dump"));
    int read = 0;
    for (;;) {
      auto more = r.next();
      REQUIRE_MESSAGE(more, (more ? "" : more.error().message()));
      if (!*more) break;
      ++read;
      const std::string key(r.key());
      CAPTURE(key);
      auto e = store->expiry(key);
      REQUIRE(e);
      REQUIRE(e->present);
      REQUIRE(e->deadline.has_value() == r.deadline().has_value());
      CHECK(r.deadline().has_value() == ttl_of.contains(key));
      // Both are the client's clock at a timetolive answer + the TTL in whole
      // seconds rounded down: they differ by less than a second, plus the
      // answers' delivery.
      if (e->deadline) CHECK(std::abs(*e->deadline - *r.deadline()) < 1500);
    }
    CHECK(read == 3 * per_lease + 1);

    // A snapshot as the source: the same, at its revision.
    auto snap = store->snapshot();
    REQUIRE(snap.valid());
    const auto snap_lookups_before = lease_lookups(cluster);
    auto from_snap = keel::export_dump(snap, tmp.path() / "snap.dump");
    REQUIRE_MESSAGE(from_snap, (from_snap ? "" : from_snap.error().message()));
    CHECK(lease_lookups(cluster) - snap_lookups_before == 3);
    CHECK(from_snap->records == 3 * per_lease + 1);
    CHECK(from_snap->deadlines == 3 * per_lease);

    // A lease revoked after the scan's revision (its keys are still in the
    // scan's view): they get the time of the lookup as deadline, passed.
    auto cursor = store->scan_impl(key_range::prefix("k1-"));
    REQUIRE(cursor.valid());
    CHECK(cursor.key() == "k1-1000");
    keel::detail::etcd_transport_config tc;
    tc.endpoints = cluster.endpoints();
    keel::detail::etcd_transport raw(tc);
    auto kv = raw.call("kv/range", keel::detail::json_object().bytes("key", "leases/k1-1000").str(),
                       keel::detail::call_kind::read, "test");
    REQUIRE(kv);
    REQUIRE(kv->contains("kvs"));
    const auto lease = keel::detail::json_int((*kv)["kvs"][0], "lease");
    REQUIRE(raw.call("lease/revoke", keel::detail::json_object().integer("ID", lease).str(),
                     keel::detail::call_kind::write, "test"));
    const auto revoked_at = now_ms();
    REQUIRE(cursor.holds_deadlines());
    REQUIRE(cursor.valid());
    REQUIRE(cursor.deadline());
    CHECK(*cursor.deadline() >= revoked_at);
    CHECK(*cursor.deadline() <= now_ms());
    CHECK(*store->expiry("k1-1000") == keel::key_expiry{});
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

  // Issue 28: etcd's watch through etcd_any_store (basic_any_watch).
  TEST_CASE("etcd_any_store: watch and keyspace watch through it, seq = the revision of the write") {
    keel::store_config cfg;
    cfg.preferred = keel::backend::etcd;
    cfg.etcd.endpoints = keel::test::shared_etcd().endpoints();
    cfg.etcd.prefix = etcd_backend::next_prefix();
    auto s = keel::open_store<keel::etcd_any_store>(cfg);
    REQUIRE_MESSAGE(s, s.error().message());
    REQUIRE(s->has_watch());
    auto w = s->watch(key_range::prefix("w/"));
    REQUIRE_MESSAGE(w, w.error().message());
    auto ks = s->keyspace("users");
    REQUIRE_MESSAGE(ks, ks.error().message());
    auto kw = ks->watch();
    REQUIRE_MESSAGE(kw, kw.error().message());
    REQUIRE(s->put("w/1", "a"));
    const std::uint64_t put_seq = s->last_seq();
    REQUIRE(ks->put("u", "b"));
    auto c = w->next(std::chrono::seconds(10));
    REQUIRE_MESSAGE(c, c.error().message());
    REQUIRE(*c);
    CHECK(**c == keel::change{put_seq, "", "w/1", "a"});
    auto u = kw->next(std::chrono::seconds(10));
    REQUIRE_MESSAGE(u, u.error().message());
    REQUIRE(*u);
    CHECK(**u == keel::change{s->last_seq(), "users", "u", "b"});
    CHECK(w->get_if<keel::EtcdPolicy>() != nullptr);
    REQUIRE(s->close());
    CHECK(w->next(std::chrono::seconds(1)).error() == errc::closed);
  }
}
#endif
