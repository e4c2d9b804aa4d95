// Expiry (issue 29): every backend of KEEL_EXPIRY_BACKENDS runs every case
// with the same results (expiry.hpp and docs/expiry.md state the
// semantics). Time is a fake clock each backend owns (backend.clock), moved
// by the case: nothing sleeps.
#include <doctest/doctest.h>

#include <chrono>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "support/backends.hpp"

using namespace std::chrono_literals;
using keel::errc;
using keel::key_range;
using keel::put_options;
using keel::write_batch;
using keel::test::keys_of;
using keel::test::keyspace_or_fail;
using keel::test::open_or_fail;

namespace {

put_options ttl(std::chrono::milliseconds t) { return put_options{t}; }

template <class Reader>
std::string value_in(Reader&& r, std::string_view key) {
  auto v = r.get(key);
  REQUIRE_MESSAGE(v, (v ? "" : v.error().message()));
  return v->value_or("<absent>");
}

template <class Store>
keel::key_expiry expiry_of(const Store& s, std::string_view key) {
  auto e = s.expiry(key);
  REQUIRE_MESSAGE(e, (e ? "" : e.error().message()));
  return *e;
}

}  // namespace

TEST_SUITE("expiry") {
  TEST_CASE_TEMPLATE("expiry: every read path leaves a key out from its deadline on", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    const auto t0 = backend.clock.now();
    REQUIRE(store.put("a", "1", ttl(10s)));
    REQUIRE(store.put("b", "2"));
    REQUIRE(store.put("c", "3", ttl(20s)));
    REQUIRE(store.put("d", "4"));

    CHECK(value_in(store, "a") == "1");
    CHECK(*store.contains("a"));
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"a", "b", "c", "d"});
    CHECK(expiry_of(store, "a") == keel::key_expiry{true, t0 + 10000});
    CHECK(expiry_of(store, "b") == keel::key_expiry{true, std::nullopt});
    auto before = store.snapshot();
    REQUIRE(before.valid());

    backend.clock.advance(9999ms);
    CHECK(value_in(store, "a") == "1");  // one ms before the deadline

    backend.clock.advance(1ms);  // at the deadline: expired
    CHECK(value_in(store, "a") == "<absent>");
    CHECK_FALSE(*store.contains("a"));
    auto many = store.multi_get({"a", "b", "c"});
    REQUIRE(many);
    CHECK_FALSE((*many)[0].has_value());
    CHECK((*many)[1] == std::optional<std::string>("2"));
    CHECK((*many)[2] == std::optional<std::string>("3"));
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"b", "c", "d"});
    CHECK(keys_of(store.scan(key_range::all().reversed())) == std::vector<std::string>{"d", "c", "b"});
    CHECK(keys_of(store.scan(key_range::between("a", "c"))) == std::vector<std::string>{"b"});
    CHECK(keys_of(store.scan(key_range::between("a", "c").reversed())) == std::vector<std::string>{"b"});
    CHECK(expiry_of(store, "a") == keel::key_expiry{});

    auto after = store.snapshot();
    REQUIRE(after.valid());
    CHECK(after.get("a")->value_or("<absent>") == "<absent>");
    CHECK_FALSE(*after.contains("a"));
    CHECK(keys_of(after.scan(key_range::all())) == std::vector<std::string>{"b", "c", "d"});
    // A snapshot reads at the time it was taken: a key live then stays.
    CHECK(before.get("a")->value_or("<absent>") == "1");
    CHECK(keys_of(before.scan(key_range::all())) == std::vector<std::string>{"a", "b", "c", "d"});

    backend.clock.advance(10s);  // c's deadline too
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"b", "d"});
    CHECK(keys_of(store.scan(key_range::all().reversed())) == std::vector<std::string>{"d", "b"});
    CHECK(keys_of(after.scan(key_range::all())) == std::vector<std::string>{"b", "c", "d"});
  }

  TEST_CASE_TEMPLATE("expiry: scans over many keys skip every expired one, both ways", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    write_batch batch;
    std::vector<std::string> live;
    for (int i = 0; i < 300; ++i) {
      char key[8];
      std::snprintf(key, sizeof key, "k%03d", i);
      if (i % 3 == 0) {
        batch.put(key, "permanent");
        live.emplace_back(key);
      } else {
        batch.put(key, "short", ttl(std::chrono::milliseconds(1000 + i)));
      }
    }
    REQUIRE(store.write(batch));
    CHECK(keys_of(store.scan(key_range::all())).size() == 300);
    backend.clock.advance(2s);
    CHECK(keys_of(store.scan(key_range::all())) == live);
    std::vector<std::string> back(live.rbegin(), live.rend());
    CHECK(keys_of(store.scan(key_range::all().reversed())) == back);
    CHECK(keys_of(store.scan(key_range::prefix("k1"))).size() == 33);
  }

  TEST_CASE_TEMPLATE("expiry: a put without ttl makes the key permanent again", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("k", "short", ttl(5s)));
    REQUIRE(store.put("k", "long"));
    CHECK(expiry_of(store, "k") == keel::key_expiry{true, std::nullopt});
    backend.clock.advance(1h);
    CHECK(value_in(store, "k") == "long");

    // And through a batch.
    REQUIRE(store.write(write_batch{}.put("j", "short", ttl(5s))));
    REQUIRE(store.write(write_batch{}.put("j", "long")));
    backend.clock.advance(1h);
    CHECK(value_in(store, "j") == "long");
  }

  TEST_CASE_TEMPLATE("expiry: erase and overwrite of an expired key behave as for an absent key", B,
                     KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("e", "old", ttl(1s)));
    REQUIRE(store.put("o", "old", ttl(1s)));
    backend.clock.advance(2s);
    REQUIRE(store.erase("e"));
    CHECK(value_in(store, "e") == "<absent>");
    REQUIRE(store.put("o", "new"));
    CHECK(value_in(store, "o") == "new");
    CHECK(expiry_of(store, "o") == keel::key_expiry{true, std::nullopt});
    REQUIRE(store.put("o", "newer", ttl(3s)));
    CHECK(expiry_of(store, "o") == keel::key_expiry{true, backend.clock.now() + 3000});
    REQUIRE(store.erase_range(key_range::all()));
    CHECK(keys_of(store.scan(key_range::all())).empty());
  }

  TEST_CASE_TEMPLATE("expiry: a bad ttl writes nothing", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("k", "before"));
    const auto huge = std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max() / 2);
    for (std::chrono::milliseconds bad : {0ms, -1ms, std::chrono::milliseconds(-1h), huge}) {
      CAPTURE(bad.count());
      auto r = store.put("k", "after", ttl(bad));
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::invalid_argument);
      r = store.put("new", "v", ttl(bad));
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::invalid_argument);
      // A batch with one bad ttl writes nothing, its good ops included.
      r = store.write(write_batch{}.put("x", "1").put("y", "2", ttl(1s)).put("k", "after", ttl(bad)).erase("k"));
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::invalid_argument);
    }
    CHECK(value_in(store, "k") == "before");
    CHECK(expiry_of(store, "k") == keel::key_expiry{true, std::nullopt});
    CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"k"});
  }

  TEST_CASE_TEMPLATE("expiry: keyspaces, each with its own deadlines", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto users = keyspace_or_fail(store, "users");
    REQUIRE(users.put("k", "user", ttl(10s)));
    REQUIRE(store.put("k", "default"));
    REQUIRE(store.write(write_batch{}.put(keel::keyspace_name("users"), "b", "batch", ttl(30s)).put("d", "x", ttl(10s))));
    auto e = users.expiry("k");
    REQUIRE(e);
    CHECK(*e == keel::key_expiry{true, backend.clock.now() + 10000});
    CHECK(value_in(users, "k") == "user");
    backend.clock.advance(10s);
    CHECK(value_in(users, "k") == "<absent>");
    CHECK_FALSE(*users.contains("k"));
    CHECK(value_in(store, "k") == "default");
    CHECK(value_in(store, "d") == "<absent>");
    CHECK(keys_of(users.scan(key_range::all())) == std::vector<std::string>{"b"});
    auto many = users.multi_get({"k", "b"});
    REQUIRE(many);
    CHECK_FALSE((*many)[0].has_value());
    CHECK(*users.expiry("k") == keel::key_expiry{});
    auto snap = store.snapshot();
    CHECK(snap.get(users, "k")->value_or("<absent>") == "<absent>");
    CHECK(snap.get(users, "b")->value_or("<absent>") == "batch");
    backend.clock.advance(20s);
    CHECK(keys_of(users.scan(key_range::all())).empty());
    CHECK(keys_of(snap.scan(users, key_range::all())) == std::vector<std::string>{"b"});
  }

  TEST_CASE_TEMPLATE("expiry: a transaction puts with a ttl counted from its commit", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto users = keyspace_or_fail(store, "users");
    auto tx = store.transaction();
    REQUIRE(tx.put("k", "v", ttl(10s)));
    REQUIRE(tx.put(users, "u", "v", ttl(20s)));
    REQUIRE(tx.put("p", "permanent", ttl(1s)));
    REQUIRE(tx.put("p", "permanent"));  // the later put wins: no ttl
    CHECK(tx.put("bad", "v", ttl(0ms)).error().code() == errc::invalid_argument);
    CHECK(tx.put(users, "bad", "v", ttl(-1ms)).error().code() == errc::invalid_argument);
    CHECK(value_in(tx, "k") == "v");  // its own writes
    backend.clock.advance(5s);
    const auto committed = backend.clock.now();
    REQUIRE(tx.commit());
    CHECK(expiry_of(store, "k") == keel::key_expiry{true, committed + 10000});
    CHECK(*users.expiry("u") == keel::key_expiry{true, committed + 20000});
    CHECK(expiry_of(store, "p") == keel::key_expiry{true, std::nullopt});
    CHECK(value_in(store, "bad") == "<absent>");
    backend.clock.advance(10s);
    CHECK(value_in(store, "k") == "<absent>");
    CHECK(value_in(users, "u") == "v");
    CHECK(value_in(store, "p") == "permanent");
    // A transaction begun after the deadline does not see it.
    auto later = store.transaction();
    CHECK(value_in(later, "k") == "<absent>");
    CHECK(keys_of(later.scan(key_range::all())) == std::vector<std::string>{"p"});
  }

  TEST_CASE_TEMPLATE("expiry: a transaction that read a key which expired before its commit conflicts", B,
                     KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto users = keyspace_or_fail(store, "users");
    REQUIRE(store.put("a", "1", ttl(10s)));
    REQUIRE(store.put("r1", "1", ttl(10s)));
    REQUIRE(users.put("u", "1", ttl(10s)));

    SUBCASE("a key read by get") {
      auto tx = store.transaction();
      CHECK(value_in(tx, "a") == "1");
      REQUIRE(tx.put("out", "x"));
      backend.clock.advance(10s);
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::conflict);
      CHECK(value_in(store, "out") == "<absent>");
    }
    SUBCASE("a key seen in a scanned range") {
      auto tx = store.transaction();
      CHECK(keys_of(tx.scan(key_range::prefix("r"))) == std::vector<std::string>{"r1"});
      REQUIRE(tx.put("out", "x"));
      backend.clock.advance(10s);
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::conflict);
    }
    SUBCASE("a key read in another keyspace") {
      auto tx = store.transaction();
      auto v = tx.get(users, "u");
      REQUIRE(v);
      CHECK(v->value_or("<absent>") == "1");
      REQUIRE(tx.put("out", "x"));
      backend.clock.advance(10s);
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::conflict);
    }
    SUBCASE("still live at commit, or already expired when it began: no conflict") {
      auto tx = store.transaction();
      CHECK(value_in(tx, "a") == "1");
      REQUIRE(tx.put("out", "x"));
      backend.clock.advance(9s);
      REQUIRE(tx.commit());
      backend.clock.advance(1s);
      auto late = store.transaction();
      CHECK(value_in(late, "a") == "<absent>");
      CHECK(keys_of(late.scan(key_range::prefix("r"))).empty());
      REQUIRE(late.put("out", "y"));
      backend.clock.advance(1h);
      REQUIRE(late.commit());
      CHECK(value_in(store, "out") == "y");
    }
    SUBCASE("the expired key reclaimed (compact) before the commit") {
      auto tx = store.transaction();
      CHECK(value_in(tx, "a") == "1");
      REQUIRE(tx.put("out", "x"));
      backend.clock.advance(10s);
      REQUIRE(store.compact());
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::conflict);
    }
  }

  // Found by the differential harness on the hybrid store: a commit refused
  // because a key it read had expired wrote nothing, but the hybrid store
  // recorded its writes, and a live transaction that had read one of those
  // keys conflicted with a write that never happened.
  TEST_CASE_TEMPLATE("expiry: a commit refused for an expired read is no write to live transactions", B,
                     KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    REQUIRE(store.put("a", "1", ttl(10s)));
    REQUIRE(store.put("y", "1"));
    auto refused = store.transaction();
    CHECK(value_in(refused, "a") == "1");
    REQUIRE(refused.put("y", "refused"));
    auto reader = store.transaction();
    CHECK(value_in(reader, "y") == "1");
    REQUIRE(reader.put("z", "reader"));
    backend.clock.advance(10s);
    auto r = refused.commit();
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::conflict);
    auto committed = reader.commit();
    CHECK_MESSAGE(committed, (committed ? std::string() : committed.error().message()));
    CHECK(value_in(store, "y") == "1");
    CHECK(value_in(store, "z") == (committed ? "reader" : "<absent>"));
  }

  TEST_CASE_TEMPLATE("expiry: deadlines hold across close and reopen", B, KEEL_EXPIRY_BACKENDS) {
    if constexpr (!B::persistent) {
      return;  // nothing survives close
    } else {
      B backend;
      const auto t0 = backend.clock.now();
      {
        auto store = open_or_fail(backend);
        auto users = keyspace_or_fail(store, "users");
        REQUIRE(store.put("short", "1", ttl(10s)));
        REQUIRE(store.put("long", "2", ttl(100s)));
        REQUIRE(store.put("permanent", "3"));
        REQUIRE(store.put("again", "4", ttl(10s)));
        REQUIRE(store.put("again", "5"));
        REQUIRE(users.put("u", "6", ttl(10s)));
        REQUIRE(store.close());
      }
      backend.clock.advance(50s);
      {
        auto store = open_or_fail(backend);
        CHECK(value_in(store, "short") == "<absent>");
        CHECK(value_in(store, "long") == "2");
        CHECK(expiry_of(store, "long") == keel::key_expiry{true, t0 + 100000});
        CHECK(value_in(store, "permanent") == "3");
        CHECK(value_in(store, "again") == "5");
        auto users = keyspace_or_fail(store, "users");
        CHECK(value_in(users, "u") == "<absent>");
        CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"again", "long", "permanent"});
        REQUIRE(store.close());
      }
      backend.clock.advance(50s);
      auto store = open_or_fail(backend);
      CHECK(keys_of(store.scan(key_range::all())) == std::vector<std::string>{"again", "permanent"});
    }
  }

  TEST_CASE_TEMPLATE("expiry: expiry(key) reports absent, permanent or the deadline", B, KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    CHECK(expiry_of(store, "never") == keel::key_expiry{});
    REQUIRE(store.put("p", "v"));
    CHECK(expiry_of(store, "p") == keel::key_expiry{true, std::nullopt});
    REQUIRE(store.put("t", "v", ttl(std::chrono::minutes(30))));
    CHECK(expiry_of(store, "t") == keel::key_expiry{true, backend.clock.now() + 30 * 60 * 1000});
    REQUIRE(store.erase("t"));
    CHECK(expiry_of(store, "t") == keel::key_expiry{});
    REQUIRE(store.close());
    CHECK(store.expiry("p").error().code() == errc::closed);
  }

  // Issue 28 with 29 (docs/watch.md, "Expiry"): an expired key is one erase
  // change, when the store reclaims it (here compact(); a background sweep
  // may come first: still once), none for a key overwritten or erased before
  // its deadline, none outside the watched range.
  TEST_CASE_TEMPLATE("expiry: a watch gets one erase change per expired key when it is reclaimed", B,
                     KEEL_EXPIRY_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto w = store.watch(key_range::prefix("t/"), keel::watch_options{});
    REQUIRE_MESSAGE(w, (w ? "" : w.error().message()));
    auto next_change = [&](std::chrono::milliseconds within) -> std::optional<keel::change> {
      auto c = w->next(within);
      REQUIRE_MESSAGE(c, (c ? "" : c.error().message()));
      return *c;
    };
    REQUIRE(store.put("t/a", "1", ttl(10s)));
    REQUIRE(store.put("t/b", "2", ttl(10s)));
    REQUIRE(store.put("t/c", "3"));
    REQUIRE(store.put("t/d", "4", ttl(10s)));
    REQUIRE(store.put("t/d", "4p"));  // permanent again before its deadline
    REQUIRE(store.put("t/e", "5", ttl(10s)));
    REQUIRE(store.erase("t/e"));      // erased before its deadline
    REQUIRE(store.put("u/x", "6", ttl(10s)));  // outside the range
    for (int i = 0; i < 7; ++i) {
      auto c = next_change(5s);
      REQUIRE(c.has_value());
    }
    backend.clock.advance(15s);
    CHECK(value_in(store, "t/a") == "<absent>");
    REQUIRE(store.compact());
    std::vector<std::string> erased;
    while (erased.size() < 2) {
      auto c = next_change(5s);
      REQUIRE(c.has_value());
      CHECK_FALSE(c->value.has_value());
      erased.push_back(c->key);
    }
    CHECK(erased == std::vector<std::string>{"t/a", "t/b"});
    REQUIRE(store.compact());
    CHECK_FALSE(next_change(200ms).has_value());  // nothing twice, nothing for t/d, t/e, u/x
    CHECK(value_in(store, "t/d") == "4p");
  }
}
