// Keyspaces (issue 27): every backend of KEEL_KEYSPACE_BACKENDS runs every
// case with the same results (keyspace.hpp and contract.hpp state the
// semantics).
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/backends.hpp"
#include "support/scale.hpp"
#include "support/temp_dir.hpp"
#include <keel/dump.hpp>

using namespace std::string_literals;
using keel::errc;
using keel::key_range;
using keel::keyspace_name;
using keel::write_batch;
using keel::test::collect;
using keel::test::keys_of;
using keel::test::keyspace_or_fail;
using keel::test::open_or_fail;

namespace {

template <class Reader>
std::string value_in(const Reader& r, std::string_view key) {
  auto v = r.get(key);
  REQUIRE(v);
  return v->value_or("<absent>");
}

}  // namespace

TEST_SUITE("keyspaces") {
  TEST_CASE_TEMPLATE("keyspace: the same key in two keyspaces is two entries", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto users = keyspace_or_fail(store, "users");
    auto orders = keyspace_or_fail(store, "orders");
    REQUIRE(store.put("k", "default"));
    REQUIRE(users.put("k", "user"));
    REQUIRE(orders.put("k", "order"));
    CHECK(value_in(store, "k") == "default");
    CHECK(value_in(users, "k") == "user");
    CHECK(value_in(orders, "k") == "order");
    CHECK(*users.contains("k"));
    CHECK_FALSE(*users.contains("other"));

    REQUIRE(users.erase("k"));
    CHECK(value_in(users, "k") == "<absent>");
    CHECK(value_in(store, "k") == "default");
    CHECK(value_in(orders, "k") == "order");

    auto many = orders.multi_get({"k", "missing"});
    REQUIRE(many);
    REQUIRE(many->size() == 2);
    CHECK((*many)[0] == "order");
    CHECK_FALSE((*many)[1].has_value());

    // A second handle to the same name reaches the same keyspace.
    auto users_again = keyspace_or_fail(store, "users");
    REQUIRE(users_again.put("x", "1"));
    CHECK(value_in(users, "x") == "1");
    // The default keyspace as a handle is the store's own keys.
    auto default_ks = keyspace_or_fail(store, "");
    CHECK(value_in(default_ks, "k") == "default");
    REQUIRE(default_ks.put("d", "2"));
    CHECK(value_in(store, "d") == "2");
  }

  TEST_CASE_TEMPLATE("keyspace: scans never cross keyspaces", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    for (const char* k : {"1", "2", "3"}) REQUIRE(a.put(k, "a"));
    for (const char* k : {"0", "2", "4"}) REQUIRE(b.put(k, "b"));
    REQUIRE(store.put("5", "d"));
    CHECK(keys_of(a.scan()) == std::vector<std::string>{"1", "2", "3"});
    CHECK(keys_of(b.scan()) == std::vector<std::string>{"0", "2", "4"});
    CHECK(keys_of(store.scan()) == std::vector<std::string>{"5"});
    CHECK(keys_of(b.scan(key_range::all().reversed())) == std::vector<std::string>{"4", "2", "0"});
    CHECK(keys_of(a.scan(key_range::between("2", "9"))) == std::vector<std::string>{"2", "3"});
    for (const auto& [k, v] : collect(b.scan())) CHECK(v == "b");

    REQUIRE(a.erase_range(key_range::between("1", "3")));
    CHECK(keys_of(a.scan()) == std::vector<std::string>{"3"});
    CHECK(keys_of(b.scan()) == std::vector<std::string>{"0", "2", "4"});
    CHECK(a.erase_range(key_range::between("9", "1")).error().code() == errc::invalid_argument);
    CHECK(a.compact());
  }

  TEST_CASE_TEMPLATE("keyspace: a batch across keyspaces is atomic", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    REQUIRE(a.put("gone", "x"));
    REQUIRE(b.put("r1", "x"));
    REQUIRE(b.put("r2", "x"));

    REQUIRE(store.write(write_batch{}
                            .put(a, "k", "a1")
                            .put("k", "d1")
                            .put(b, "k", "b1")
                            .erase(a, "gone")
                            .erase_range(b, key_range::between("r", "s"))
                            .put(b, "r3", "kept")));
    CHECK(value_in(a, "k") == "a1");
    CHECK(value_in(b, "k") == "b1");
    CHECK(value_in(store, "k") == "d1");
    CHECK(value_in(a, "gone") == "<absent>");
    CHECK(keys_of(b.scan()) == std::vector<std::string>{"k", "r3"});

    // A batch naming a missing keyspace writes nothing in any keyspace.
    auto r = store.write(write_batch{}
                             .put(a, "k", "a2")
                             .put("k", "d2")
                             .put(keyspace_name("missing"), "k", "m")
                             .put(b, "k", "b2"));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::not_found);
    CHECK(value_in(a, "k") == "a1");
    CHECK(value_in(b, "k") == "b1");
    CHECK(value_in(store, "k") == "d1");
    auto names = store.keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{"", "a", "b"});

    // So does one with a bad range in one keyspace, or a name too long.
    r = store.write(write_batch{}.put(a, "k", "a3").erase_range(b, key_range::between("z", "a")));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::invalid_argument);
    const std::string long_name(256, 'n');
    r = store.write(write_batch{}.put(a, "k", "a4").put(keyspace_name(long_name), "k", "v"));
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::invalid_argument);
    CHECK(value_in(a, "k") == "a1");
  }

  TEST_CASE_TEMPLATE("keyspace: a snapshot covers every keyspace and survives a drop", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    REQUIRE(a.put("k", "a1"));
    REQUIRE(b.put("k", "b1"));
    REQUIRE(store.put("k", "d1"));
    auto snap = store.snapshot();
    REQUIRE(snap.valid());

    REQUIRE(store.write(write_batch{}.put(a, "k", "a2").put(b, "k", "b2").put("k", "d2")));
    REQUIRE(store.drop_keyspace("b"));
    auto later = keyspace_or_fail(store, "later");
    REQUIRE(later.put("k", "l"));

    CHECK(value_in(a, "k") == "a2");
    auto sa = snap.get(a, "k");
    REQUIRE(sa);
    CHECK(*sa == "a1");
    auto sb = snap.get(b, "k");
    REQUIRE(sb);
    CHECK(*sb == "b1");   // dropped after the snapshot: still readable through it
    CHECK(*snap.contains(b, "k"));
    CHECK(keys_of(snap.scan(b)) == std::vector<std::string>{"k"});
    CHECK(value_in(snap, "k") == "d1");
    // A keyspace created after the snapshot is not in it.
    CHECK(snap.get(later, "k").error().code() == errc::not_found);
  }

  TEST_CASE_TEMPLATE("keyspace: drop, then old handles give not_found and a recreated name is empty", B,
                     KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    REQUIRE(a.put("k", "v"));
    REQUIRE(store.put("k", "d"));
    auto cursor_before = a.scan();
    REQUIRE(store.drop_keyspace("a"));

    CHECK(a.get("k").error().code() == errc::not_found);
    CHECK(a.contains("k").error().code() == errc::not_found);
    CHECK(a.put("k", "v2").error().code() == errc::not_found);
    CHECK(a.erase("k").error().code() == errc::not_found);
    CHECK(a.erase_range(key_range::all()).error().code() == errc::not_found);
    CHECK(a.multi_get({"k"}).error().code() == errc::not_found);
    CHECK(a.compact().error().code() == errc::not_found);
    auto c = a.scan();
    CHECK_FALSE(c.valid());
    REQUIRE(c.error());
    CHECK(c.error()->code() == errc::not_found);
    CHECK(store.write(write_batch{}.put(a, "k", "v3")).error().code() == errc::not_found);
    // A cursor opened before the drop reads on.
    CHECK(collect(cursor_before) == std::vector<std::pair<std::string, std::string>>{{"k", "v"}});
    CHECK(value_in(store, "k") == "d");

    auto names = store.keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{""});

    auto again = keyspace_or_fail(store, "a");
    CHECK(value_in(again, "k") == "<absent>");
    REQUIRE(again.put("new", "1"));
    // The old handle does not reach the new keyspace of that name.
    CHECK(a.get("new").error().code() == errc::not_found);
    CHECK(a.put("k", "old").error().code() == errc::not_found);
    CHECK(keys_of(again.scan()) == std::vector<std::string>{"new"});
  }

  TEST_CASE_TEMPLATE("keyspace: readers during cross-keyspace batches, creates and drops see whole batches", B,
                     KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    const long rounds = keel::test::scaled("KEEL_TEST_KEYSPACE_ROUNDS", 20000);
    auto number = [](std::size_t i) {
      std::string s = std::to_string(i);
      return std::string(8 - s.size(), '0') + s;   // ordered as numbers
    };
    REQUIRE(store.write(write_batch{}.put(a, "k", number(0)).put("k", number(0))));
    std::atomic<bool> done{false};
    std::atomic<long> torn{0}, backwards{0}, failed{0};
    auto reader = [&] {
      std::string last;
      while (!done.load()) {
        auto snap = store.snapshot();
        auto in_a = snap.get(a, "k");
        auto in_default = snap.get("k");
        if (!in_a || !in_default || !*in_a || !*in_default) {
          failed.fetch_add(1);
          continue;
        }
        if (**in_a != **in_default) torn.fetch_add(1);
        auto now = a.get("k");   // a point read through the handle, no snapshot
        if (!now || !*now) {
          failed.fetch_add(1);
          continue;
        }
        if (**now < last) backwards.fetch_add(1);
        last = **now;
        auto c = a.scan();
        if (!c.valid() || c.error()) failed.fetch_add(1);
      }
    };
    std::thread r1(reader), r2(reader);
    std::thread churn([&] {   // creates and drops other keyspaces meanwhile
      for (long i = 0; !done.load(); ++i) {
        auto t = store.keyspace("tmp" + std::to_string(i % 4));
        if (!t || !t->put("x", "y")) failed.fetch_add(1);
        if (i % 2 && !store.drop_keyspace("tmp" + std::to_string(i % 4))) failed.fetch_add(1);
      }
    });
    for (long i = 1; i <= rounds; ++i) {
      if (!store.write(write_batch{}.put(a, "k", number(i)).put("k", number(i)).put(a, number(i), "v")))
        failed.fetch_add(1);
      if (i % 64 == 0 && !a.erase_range(key_range::between(number(i - 64), number(i - 32)))) failed.fetch_add(1);
    }
    done.store(true);
    r1.join();
    r2.join();
    churn.join();
    CHECK(torn.load() == 0);
    CHECK(backwards.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(value_in(a, "k") == number(rounds));
  }

  TEST_CASE_TEMPLATE("keyspace: names", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    const std::string longest(255, 'x');
    const std::string too_long(256, 'x');
    const std::string binary("a\0b\xff", 4);
    auto l = keyspace_or_fail(store, longest);
    auto bin = keyspace_or_fail(store, binary);
    auto prefix = keyspace_or_fail(store, "a");   // a prefix of binary: a distinct keyspace
    REQUIRE(l.put("k", "long"));
    REQUIRE(bin.put("k", "binary"));
    REQUIRE(prefix.put("k", "prefix"));
    CHECK(l.name() == longest);
    CHECK(bin.name() == binary);
    CHECK(value_in(bin, "k") == "binary");
    CHECK(value_in(prefix, "k") == "prefix");
    CHECK(value_in(l, "k") == "long");

    auto bad = store.keyspace(too_long);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);

    auto names = store.keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{"", "a", binary, longest});

    auto d = store.drop_keyspace("");
    REQUIRE_FALSE(d);
    CHECK(d.error().code() == errc::invalid_argument);
    d = store.drop_keyspace("missing");
    REQUIRE_FALSE(d);
    CHECK(d.error().code() == errc::not_found);
    d = store.drop_keyspace(too_long);
    REQUIRE_FALSE(d);
    CHECK(d.error().code() == errc::invalid_argument);
    REQUIRE(store.drop_keyspace(binary));
    names = store.keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{"", "a", longest});
    CHECK(value_in(prefix, "k") == "prefix");
  }

  TEST_CASE_TEMPLATE("keyspace: after close, handles give closed", B, KEEL_KEYSPACE_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    auto a = keyspace_or_fail(store, "a");
    auto d = keyspace_or_fail(store, "");
    REQUIRE(a.put("k", "v"));
    auto snap = store.snapshot();
    REQUIRE(store.close());
    CHECK(a.get("k").error().code() == errc::closed);
    CHECK(a.contains("k").error().code() == errc::closed);
    CHECK(a.put("k", "v").error().code() == errc::closed);
    CHECK(a.erase("k").error().code() == errc::closed);
    CHECK(a.erase_range(key_range::all()).error().code() == errc::closed);
    CHECK(a.multi_get({"k"}).error().code() == errc::closed);
    CHECK(a.compact().error().code() == errc::closed);
    CHECK(d.get("k").error().code() == errc::closed);
    auto c = a.scan();
    REQUIRE(c.error());
    CHECK(c.error()->code() == errc::closed);
    CHECK(snap.get(a, "k").error().code() == errc::closed);
    CHECK(store.keyspaces().error().code() == errc::closed);
    CHECK(store.keyspace("a").error().code() == errc::closed);
    CHECK(store.drop_keyspace("a").error().code() == errc::closed);
  }
}

// The memory store's persisted keyspaces (issue 27): the log and the
// snapshot file carry every keyspace; a checkpoint carries them all.
namespace {

keel::result<keel::memory_store> open_persisted(const std::filesystem::path& file) {
  keel::memory_options o;
  o.persist_path = file;
  return keel::memory_store::open(o);
}

// Copies the store's files (snapshot and logs, not the lock) from one
// directory to another: what a crash of the writing process leaves.
void copy_store_files(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  for (const auto& e : std::filesystem::directory_iterator(from)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.ends_with(".lock")) continue;
    std::filesystem::copy_file(e.path(), to / name, std::filesystem::copy_options::overwrite_existing);
  }
}

// Every keyspace's entries, by keyspace name.
std::map<std::string, std::vector<std::pair<std::string, std::string>>> contents(keel::memory_store& store) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
  auto names = store.keyspaces();
  REQUIRE(names);
  for (const auto& n : *names) {
    auto ks = store.keyspace(n);
    REQUIRE(ks);
    auto& entries = out[n];
    for (const auto& e : ks->scan(key_range::all())) entries.emplace_back(e.key, e.value);
  }
  return out;
}

const std::string odd_name = "n\0ul\xff"s;  // NUL and 0xFF inside

// Fills a store with keyspaces: "", "a", odd_name (with entries), "empty"
// (created, never written), "gone" (dropped), "again" (dropped, created
// again, left empty). Mixed batches, erases and erase_range included.
void fill_keyspaces(keel::memory_store& store) {
  auto a = keyspace_or_fail(store, "a");
  auto odd = keyspace_or_fail(store, odd_name);
  (void)keyspace_or_fail(store, "empty");
  auto gone = keyspace_or_fail(store, "gone");
  auto again = keyspace_or_fail(store, "again");
  REQUIRE(store.put("k", "default"));
  REQUIRE(a.put("k", "in a"));
  REQUIRE(a.put("x1", "1"));
  REQUIRE(a.put("x2", "2"));
  REQUIRE(a.erase_range(key_range::prefix("x")));
  REQUIRE(a.put("dead", "1"));
  REQUIRE(a.erase("dead"));
  REQUIRE(odd.put("k\0"s, "odd\xff"s));
  REQUIRE(gone.put("k", "gone"));
  REQUIRE(again.put("k", "old"));
  REQUIRE(store.write(write_batch{}.put(a, "b1", "x").put(odd, "b1", "y").put("b1", "z").erase(a, "k").put(a, "k", "in a 2")));
  REQUIRE(store.drop_keyspace("gone"));
  REQUIRE(store.drop_keyspace("again"));
  REQUIRE(store.keyspace("again"));
}

const std::map<std::string, std::vector<std::pair<std::string, std::string>>> filled = {
    {"", {{"b1", "z"}, {"k", "default"}}},
    {"a", {{"b1", "x"}, {"k", "in a 2"}}},
    {"again", {}},
    {"empty", {}},
    {odd_name, {{"b1", "y"}, {"k\0"s, "odd\xff"s}}},
};

}  // namespace

TEST_SUITE("keyspaces") {
  TEST_CASE("keyspace: a persisted memory store reopens with every keyspace (from the log, then from the snapshot)") {
    keel::test::temp_dir dir;
    const auto file = dir.path() / "src" / "store.keeldump";
    std::filesystem::create_directories(file.parent_path());
    auto store = open_persisted(file);
    REQUIRE(store);
    fill_keyspaces(*store);
    CHECK(contents(*store) == filled);
    copy_store_files(file.parent_path(), dir.path() / "crash1");  // what a crash now leaves: only logs
    {
      auto reopened = open_persisted(dir.path() / "crash1" / "store.keeldump");
      REQUIRE(reopened);
      CHECK(contents(*reopened) == filled);
      auto gone = reopened->drop_keyspace("gone");
      REQUIRE_FALSE(gone);
      CHECK(gone.error().code() == errc::not_found);
    }
    REQUIRE(store->close());  // folds into the keyspaced snapshot
    store = open_persisted(file);
    REQUIRE(store);
    CHECK(contents(*store) == filled);  // from the snapshot file
    // Writes after the reopen go to the log on top of the snapshot.
    auto a = keyspace_or_fail(*store, "a");
    REQUIRE(a.put("after", "1"));
    REQUIRE(store->drop_keyspace("empty"));
    copy_store_files(file.parent_path(), dir.path() / "crash2");
    auto reopened = open_persisted(dir.path() / "crash2" / "store.keeldump");
    REQUIRE(reopened);
    auto expected = filled;
    expected.erase("empty");
    expected["a"].insert(expected["a"].begin(), {"after", "1"});
    CHECK(contents(*reopened) == expected);  // snapshot + log
  }

  TEST_CASE("keyspace: a persisted store that never used a keyspace writes the same files as before") {
    keel::test::temp_dir dir;
    const auto file = dir.path() / "store.keeldump";
    {
      auto store = open_persisted(file);
      REQUIRE(store);
      REQUIRE(store->write(write_batch{}.put("a", "1").put("b", "2").erase_range(key_range::prefix("c"))));
      REQUIRE(store->close());
    }
    // The snapshot is a plain dump (keel::dump_reader reads it) ... (the
    // reader closed before the store saves again: on Windows an open file
    // cannot be replaced)
    {
      keel::dump_reader r;
      REQUIRE(r.open(file));
      int records = 0;
      for (;;) {
        auto more = r.next();
        REQUIRE(more);
        if (!*more) break;
        ++records;
      }
      CHECK(records == 2);
    }
    // ... and so it is again once every keyspace but "" was dropped.
    {
      auto store = open_persisted(file);
      REQUIRE(store);
      auto a = keyspace_or_fail(*store, "a");
      REQUIRE(a.put("k", "v"));
      REQUIRE(store->flush());
      {
        keel::dump_reader not_a_dump;
        CHECK_FALSE(not_a_dump.open(file));
      }
      REQUIRE(store->drop_keyspace("a"));
      REQUIRE(store->close());
    }
    keel::dump_reader again;
    CHECK(again.open(file));
  }

  TEST_CASE("keyspace: a memory checkpoint carries every keyspace") {
    keel::test::temp_dir dir;
    auto store = open_or_fail(keel::test::memory_backend{});
    fill_keyspaces(store);
    REQUIRE(store.checkpoint(dir.path() / "copy"));
    auto copy = open_persisted(dir.path() / "copy");
    REQUIRE(copy);
    CHECK(contents(*copy) == filled);
  }

  TEST_CASE("keyspace: a released persisted memory store creates no keyspace (not_found)") {
    keel::test::temp_dir dir;
    keel::memory_options o;
    o.persist_path = dir.path() / "store.keeldump";
    auto policy = keel::MemoryPolicy::open(o);
    REQUIRE(policy);
    REQUIRE((*policy)->open_keyspace("a", true));
    REQUIRE((*policy)->release_persistence());
    for (bool create : {false, true}) {
      auto missing = (*policy)->open_keyspace("b", create);
      REQUIRE_FALSE(missing);
      CHECK(missing.error().code() == errc::not_found);
    }
    auto names = (*policy)->keyspaces();
    REQUIRE(names);
    CHECK(*names == std::vector<std::string>{""});  // the data went with the release
    REQUIRE((*policy)->close());
  }

  TEST_CASE("keyspace: a damaged keyspaced snapshot fails the open (corruption)") {
    keel::test::temp_dir dir;
    const auto file = dir.path() / "store.keeldump";
    {
      auto store = open_persisted(file);
      REQUIRE(store);
      fill_keyspaces(*store);
      REQUIRE(store->close());
    }
    std::string bytes;
    {
      std::ifstream in(file, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    REQUIRE(bytes.substr(0, 8) == "KEELMKS1");
    for (std::size_t at : {std::size_t{30}, bytes.size() - 10, bytes.size() - 1}) {
      CAPTURE(at);
      std::string damaged = bytes;
      damaged[at] = static_cast<char>(damaged[at] ^ 0x40);
      std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged;
      auto store = open_persisted(file);
      REQUIRE_FALSE(store);
      CHECK(store.error().code() == errc::corruption);
    }
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 3);  // cut short
    auto store = open_persisted(file);
    REQUIRE_FALSE(store);
    CHECK(store.error().code() == errc::corruption);
  }
  TEST_CASE("keyspace: transactions stay on the default keyspace; keyspace writes do not conflict with them") {
    auto store = open_or_fail(keel::test::memory_backend{});
    auto a = keyspace_or_fail(store, "a");
    REQUIRE(store.put("k", "1"));
    auto tx = store.transaction();
    auto v = tx.get("k");
    REQUIRE(v);
    REQUIRE(a.put("k", "other keyspace"));   // same key, another keyspace: no conflict
    REQUIRE(store.write(write_batch{}.put(a, "k", "again").put(a, "j", "x")));
    REQUIRE(tx.put("k", "2"));
    REQUIRE(tx.commit());
    CHECK(value_in(store, "k") == "2");
    CHECK(value_in(a, "k") == "again");

    // A default-keyspace write inside a mixed batch still conflicts.
    auto tx2 = store.transaction();
    REQUIRE(tx2.get("k"));
    REQUIRE(store.write(write_batch{}.put(a, "z", "1").put("k", "3")));
    REQUIRE(tx2.put("k", "4"));
    auto c = tx2.commit();
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::conflict);
    CHECK(value_in(store, "k") == "3");
  }
}

// Compression and stats of a memory store's keyspaces (issue 27): one codec
// table for the store (a dictionary trained on a sample of every keyspace),
// a pass compresses every keyspace; stats() counts every keyspace.
namespace {

// Records of two shapes, with a fixed seed: users (JSON) and log lines.
struct record_gen {
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  std::uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  std::string user(int i) {
    static const char* const cities[] = {"Lisbon", "Oslo", "Quito", "Accra", "Hanoi", "Perth"};
    std::string r = "{\"id\":" + std::to_string(i) + ",\"name\":\"user" + std::to_string(next() % 100000) +
                    "\",\"city\":\"" + cities[next() % 6] + "\",\"plan\":\"" + (next() % 2 ? "free" : "paid") +
                    "\",\"tags\":[";
    for (int t = 0, n = int(next() % 8); t < n; ++t) r += (t ? ",\"t" : "\"t") + std::to_string(next() % 30) + "\"";
    return r + "],\"created\":\"2026-" + std::to_string(1 + next() % 12) + "-01T00:00:00Z\"}";
  }
  std::string log_line(int i) {
    static const char* const levels[] = {"INFO", "WARN", "ERROR", "DEBUG"};
    return "2026-12-07T10:" + std::to_string(10 + i % 50) + ":00Z " + levels[next() % 4] +
           " request handled path=/api/v1/items/" + std::to_string(next() % 5000) +
           " status=" + std::to_string(200 + next() % 4 * 100) + " duration_ms=" + std::to_string(next() % 900) +
           " client=10.0.0." + std::to_string(next() % 255);
  }
};

}  // namespace

TEST_SUITE("keyspaces") {
  TEST_CASE("keyspace: memory compression covers every keyspace; stats count every keyspace") {
#if KEEL_HAVE_ZSTD || KEEL_HAVE_LZ4
    keel::memory_options o;
#if KEEL_HAVE_ZSTD
    o.compression = keel::compression::zstd;
#else
    o.compression = keel::compression::lz4;
#endif
    auto store = keel::memory_store::open(o);
    REQUIRE(store);
    auto users = keyspace_or_fail(*store, "users");
    auto logs = keyspace_or_fail(*store, "logs\xff"s);
    record_gen g;
    std::vector<std::string> user_values, log_values;
    std::size_t raw = 0;
    constexpr int n = 3000;
    for (int i = 0; i < n; ++i) {
      user_values.push_back(g.user(i));
      log_values.push_back(g.log_line(i));
      const std::string key = "k" + std::to_string(i);
      REQUIRE(store->write(write_batch{}.put(users, key, user_values.back()).put(logs, key, log_values.back())));
      raw += 2 * key.size() + user_values.back().size() + log_values.back().size();
    }
    REQUIRE(store->put("only", "one"));  // "" holds almost nothing: the dictionary comes from the keyspaces
    REQUIRE(users.compact());
    auto st = store->stats();
    REQUIRE(st);
    CHECK(st->keys == 2 * n + 1);
    CHECK(st->uncompressed_bytes >= raw);
    const double ratio = double(st->size_bytes) / double(st->uncompressed_bytes);
    MESSAGE("two keyspaces of " << n << " records each: held " << st->size_bytes << " of " << st->uncompressed_bytes
                                << " bytes (" << ratio << ")");
    CHECK(ratio < 0.6);
    CHECK(store->policy().dictionaries() >= 1);
    for (int i = 0; i < n; i += 7) {
      const std::string key = "k" + std::to_string(i);
      CHECK(value_in(users, key) == user_values[std::size_t(i)]);
      CHECK(value_in(logs, key) == log_values[std::size_t(i)]);
    }
    // A snapshot taken before a drop keeps reading compressed values.
    auto snap = store->snapshot();
    REQUIRE(store->drop_keyspace("users"));
    auto v = snap.get(users, "k1");
    REQUIRE(v);
    CHECK(v->value_or("") == user_values[1]);
    auto after = store->stats();
    REQUIRE(after);
    CHECK(after->keys == n + 1);
#else
    MESSAGE("built without zstd and lz4: nothing to check");
#endif
  }
}

// Snapshots and cursors taken before puts through a handle keep reading what
// they saw, through any number of puts (and through writes to another
// keyspace, which share the keyspace's table entry).
TEST_SUITE("keyspaces") {
  TEST_CASE("keyspace: memory snapshots and cursors taken before puts through a handle read on unchanged") {
    auto store = open_or_fail(keel::test::memory_backend{});
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    const int n = 3000;
    auto key = [](int i) { return "key" + std::to_string(100000 + i); };
    for (int i = 0; i < n; ++i) REQUIRE(a.put(key(i), "v0-" + std::to_string(i)));
    auto snap = store.snapshot();
    auto cursor = a.scan(key_range::all());
    for (int round = 1; round <= 3; ++round) {
      for (int i = 0; i < n; ++i) REQUIRE(a.put(key(i), "v" + std::to_string(round) + "-" + std::to_string(i)));
      REQUIRE(b.put("other", std::to_string(round)));  // another keyspace's write shares a's entry
    }
    int seen = 0;
    for (const auto& e : cursor) {
      CHECK(e.value == "v0-" + std::to_string(seen));
      ++seen;
    }
    CHECK(seen == n);
    for (int i = 0; i < n; i += 13) {
      auto v = snap.get(a, key(i));
      REQUIRE(v);
      CHECK(v->value_or("") == "v0-" + std::to_string(i));
      CHECK(value_in(a, key(i)) == "v3-" + std::to_string(i));
    }
    seen = 0;
    for (const auto& e : snap.scan(a, key_range::all())) {
      CHECK(e.value == "v0-" + std::to_string(seen));
      ++seen;
    }
    CHECK(seen == n);
  }
}

// The memory store keeps the tree of the keyspace written last through a
// handle in the version itself (versions.hpp, "the hot keyspace"), not in the
// table of keyspaces: every operation on the whole store still sees it.
TEST_SUITE("keyspaces") {
  TEST_CASE("keyspace: memory operations on the whole store see the keyspace written last through a handle") {
    keel::test::temp_dir dir;
    auto store = open_or_fail(keel::test::memory_backend{});
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    REQUIRE(b.put("k", "in b"));
    for (int i = 0; i < 100; ++i) REQUIRE(a.put("k" + std::to_string(100 + i), "v" + std::to_string(i)));
    // "a" is the hot keyspace now: stats, checkpoints and snapshots count it.
    auto st = store.stats();
    REQUIRE(st);
    CHECK(st->keys == 101);
    REQUIRE(store.checkpoint(dir.path() / "copy"));
    {
      auto copy = open_persisted(dir.path() / "copy");
      REQUIRE(copy);
      auto all = contents(*copy);
      CHECK(all["a"].size() == 100);
      CHECK(all["b"] == std::vector<std::pair<std::string, std::string>>{{"k", "in b"}});
    }
    auto snap = store.snapshot();
    REQUIRE(a.put("k100", "changed"));
    REQUIRE(a.erase("k101"));
    REQUIRE(a.erase_range(key_range::prefix("k19")));
    CHECK(value_in(a, "k100") == "changed");
    CHECK(value_in(a, "k101") == "<absent>");
    CHECK(collect(a.scan(key_range::all())).size() == 89);
    {
      auto old = snap.get(a, "k100");
      REQUIRE(old);
      CHECK(old->value_or("") == "v0");
      CHECK(collect(snap.scan(a, key_range::all())).size() == 100);
    }
    // Creating a keyspace and a batch across keyspaces keep "a" whole.
    auto c = keyspace_or_fail(store, "c");
    CHECK(collect(a.scan(key_range::all())).size() == 89);
    REQUIRE(a.put("k102", "hot again"));
    REQUIRE(store.write(write_batch{}.erase(a, "k103").put(c, "k", "in c").put(a, "k104", "batch")));
    CHECK(value_in(a, "k102") == "hot again");
    CHECK(value_in(a, "k103") == "<absent>");
    CHECK(value_in(a, "k104") == "batch");
    CHECK(value_in(a, "k105") == "v5");
    CHECK(value_in(c, "k") == "in c");
    // Writing "b" makes it the hot one and puts "a" back in the table.
    REQUIRE(a.put("k106", "before b"));
    REQUIRE(b.put("k2", "b2"));
    CHECK(value_in(a, "k106") == "before b");
    CHECK(value_in(b, "k") == "in b");
    st = store.stats();
    REQUIRE(st);
    CHECK(st->keys == 88 + 2 + 1);
    // Dropping the hot keyspace: its handle reaches nothing, a snapshot taken
    // before reads on, the name created again is empty.
    auto before_drop = store.snapshot();
    REQUIRE(store.drop_keyspace("b"));
    auto gone = b.get("k");
    REQUIRE_FALSE(gone);
    CHECK(gone.error().code() == errc::not_found);
    auto kept = before_drop.get(b, "k2");
    REQUIRE(kept);
    CHECK(kept->value_or("") == "b2");
    auto b2 = keyspace_or_fail(store, "b");
    CHECK(value_in(b2, "k") == "<absent>");
    REQUIRE(b2.put("k", "new b"));
    CHECK(value_in(b2, "k") == "new b");
    CHECK(value_in(a, "k104") == "batch");
  }
}

// Puts through one handle are reuse-mode edits of the hot keyspace's tree
// (versions.hpp): readers holding snapshots and cursors of earlier versions,
// and point reads in flight, must keep reading what they saw.
TEST_SUITE("keyspaces") {
  TEST_CASE("keyspace: memory puts through a handle with concurrent snapshots, cursors and point reads") {
    auto store = open_or_fail(keel::test::memory_backend{});
    auto a = keyspace_or_fail(store, "a");
    auto b = keyspace_or_fail(store, "b");
    const long rounds = keel::test::scaled("KEEL_TEST_KEYSPACE_ROUNDS", 20000);
    constexpr long keys = 64;
    auto number = [](long i) {
      std::string s = std::to_string(i);
      return std::string(8 - s.size(), '0') + s;  // ordered as numbers
    };
    auto key = [&](long k) { return "key" + number(k); };
    for (long k = 0; k < keys; ++k) REQUIRE(a.put(key(k), number(0)));
    std::atomic<bool> done{false};
    std::atomic<long> changed{0}, backwards{0}, failed{0}, snapshots{0};
    auto reader = [&](long salt) {
      std::string last;
      for (long i = salt; !done.load(); ++i) {
        auto snap = store.snapshot();
        const std::string k = key(i % keys);
        auto first = snap.get(a, k);
        long seen = 0;
        std::string in_scan;
        for (const auto& e : snap.scan(a, key_range::all())) {
          if (e.key == k) in_scan = e.value;
          ++seen;
        }
        auto again = snap.get(a, k);
        if (!first || !*first || !again || !*again || seen != keys) {
          failed.fetch_add(1);
          continue;
        }
        if (**again != **first || in_scan != **first) changed.fetch_add(1);
        auto now = a.get(key(0));  // a point read, no snapshot
        if (!now || !*now) {
          failed.fetch_add(1);
          continue;
        }
        if (**now < last) backwards.fetch_add(1);
        last = **now;
        snapshots.fetch_add(1);
      }
    };
    std::thread r1(reader, 0), r2(reader, 7);
    for (long i = 1; i <= rounds; ++i) {
      if (!a.put(key(i % keys), number(i))) failed.fetch_add(1);
      if (i % 1000 == 0 && !b.put("switch", number(i))) failed.fetch_add(1);  // "b" hot, then "a" again
    }
    done.store(true);
    r1.join();
    r2.join();
    MESSAGE(snapshots.load() << " snapshots read during " << rounds << " puts");
    CHECK(changed.load() == 0);
    CHECK(backwards.load() == 0);
    CHECK(failed.load() == 0);
    CHECK(value_in(a, key(rounds % keys)) == number(rounds));
  }
}
