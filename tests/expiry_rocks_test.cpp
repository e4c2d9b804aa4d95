// Expiry on the RocksDB backend (issue 29; rocksdb/expiry.hpp, docs/expiry.md
// "RocksDB"): the encoding (untouched stores, escaped values), every read
// path by a fake clock, stores made without ttl, reclamation by compact(),
// reopen and read-only opens with the clock moved, keyspaces, transactions.
// Never sleeps: the clock is a fake one the test moves.
#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <keel/rocksdb.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/backends.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::put_options;
using keel::rocks_options;
using keel::rocks_store;
using keel::test::child_process;
using keel::test::collect;
using keel::test::helper_path;
using keel::test::keys_of;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

// A clock the test moves (ms since the epoch); thread-safe.
struct fake_clock {
  std::shared_ptr<std::atomic<std::int64_t>> ms = std::make_shared<std::atomic<std::int64_t>>(1'700'000'000'000);
  keel::clock_source source() const {
    auto p = ms;
    return [p] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(p->load())); };
  }
  void advance(std::chrono::milliseconds d) const { ms->fetch_add(d.count()); }
  std::int64_t now() const { return ms->load(); }
};

rocks_store open_with(const rocks_options& o) {
  auto s = rocks_store::open(o);
  REQUIRE_MESSAGE(s, (s ? "" : s.error().message()));
  return std::move(*s);
}

rocks_store open_store(const fs::path& p, const fake_clock& c, bool read_only = false) {
  rocks_options o;
  o.path = p;
  o.clock = c.source();
  o.read_only = read_only;
  return open_with(o);
}

// The column families of the database at `p` (closed).
std::vector<std::string> families(const fs::path& p) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), p.string(), &names).ok());
  return names;
}

// The bytes RocksDB holds for `key` in the default column family.
std::optional<std::string> raw(rocks_store& s, std::string_view key) {
  auto v = s.policy().with_db([&](rocksdb::DB& db) -> std::optional<std::string> {
    std::string out;
    if (!db.Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &out).ok()) return std::nullopt;
    return out;
  });
  REQUIRE(v);
  return *v;
}

std::uint64_t sst_bytes(rocks_store& s) {
  auto v = s.policy().with_db([](rocksdb::DB& db) {
    std::uint64_t total = 0, n = 0;
    for (auto* cf : {db.DefaultColumnFamily()}) {
      if (db.GetIntProperty(cf, "rocksdb.total-sst-files-size", &n)) total += n;
    }
    return total;
  });
  REQUIRE(v);
  return *v;
}

// Every read path of `s` agrees that "a" (ttl 10 s) and "c" (ttl 20 s) are
// present or absent as `a_live`/`c_live` say, and "b" (permanent) present.
template <class Store>
void check_reads(Store& s, bool a_live, bool c_live) {
  CAPTURE(a_live);
  CAPTURE(c_live);
  auto a = s.get("a");
  REQUIRE(a);
  CHECK(a->has_value() == a_live);
  if (a_live) CHECK(**a == "va");
  CHECK(*s.contains("a") == a_live);
  CHECK(*s.contains("c") == c_live);
  CHECK(*s.get("b") == std::optional<std::string>("vb"));
  auto m = s.multi_get({"a", "b", "c"});
  REQUIRE(m);
  CHECK((*m)[0].has_value() == a_live);
  CHECK((*m)[1] == std::optional<std::string>("vb"));
  CHECK((*m)[2].has_value() == c_live);
  if (c_live) CHECK((*m)[2] == std::optional<std::string>("vc"));
  std::vector<std::pair<std::string, std::string>> want;
  if (a_live) want.emplace_back("a", "va");
  want.emplace_back("b", "vb");
  if (c_live) want.emplace_back("c", "vc");
  CHECK(collect(s.scan()) == want);
  std::vector<std::pair<std::string, std::string>> back(want.rbegin(), want.rend());
  CHECK(collect(s.scan(keel::key_range::all().reversed())) == back);
  auto snap = s.snapshot();
  CHECK(snap.get("a")->has_value() == a_live);
  CHECK(*snap.contains("c") == c_live);
  CHECK(collect(snap.scan()) == want);
}

rocks_store open_swept(const fs::path& p, const fake_clock& c, std::chrono::milliseconds interval) {
  rocks_options o;
  o.path = p;
  o.clock = c.source();
  o.expiry_interval = interval;
  return open_with(o);
}

// The next `n` changes of `w` (each within 5 s), then none within 100 ms.
template <class Watch>
std::vector<keel::change> take(Watch& w, std::size_t n) {
  std::vector<keel::change> got;
  while (got.size() < n) {
    auto c = w.next(5s);
    REQUIRE(c);
    if (!*c) break;
    got.push_back(std::move(**c));
  }
  auto extra = w.next(100ms);
  REQUIRE(extra);
  if (*extra) got.push_back(std::move(**extra));
  return got;
}

bool erase_of(const keel::change& c, std::string_view key, std::string_view ks = "") {
  return c.key == key && c.keyspace == ks && !c.value;
}

}  // namespace

TEST_SUITE("expiry_rocks") {
  // Issue 28 with 29 (docs/watch.md, "Expiry"): a watched store deletes
  // expired keys itself (its compaction filter is off), one erase change each.
  TEST_CASE("rocksdb expiry: a watched store's sweep gives one erase change per expired key, none for overwritten "
            "or erased ones") {
    temp_dir d;
    fake_clock clock;
    auto s = open_swept(d.path() / "db", clock, 0ms);
    auto users = s.keyspace("users");
    REQUIRE(users);
    auto w = s.watch(keel::key_range::prefix("t/"), {});
    REQUIRE(w);
    auto wu = users->watch(keel::key_range::all(), {});
    REQUIRE(wu);
    REQUIRE(s.put("t/a", "1", put_options{.ttl = 10s}));
    REQUIRE(s.put("t/b", "2", put_options{.ttl = 10s}));
    REQUIRE(s.put("t/c", "3", put_options{.ttl = 20s}));
    REQUIRE(s.put("t/d", "4", put_options{.ttl = 10s}));
    REQUIRE(s.put("t/d", "4p"));  // permanent before its deadline: no erase
    REQUIRE(s.put("t/e", "5", put_options{.ttl = 10s}));
    REQUIRE(s.erase("t/e"));
    REQUIRE(s.put("u/x", "6", put_options{.ttl = 10s}));  // outside the range
    REQUIRE(users->put("u1", "7", put_options{.ttl = 10s}));
    REQUIRE(take(*w, 7).size() == 7);
    REQUIRE(take(*wu, 1).size() == 1);
    clock.advance(15s);
    CHECK_FALSE(s.get("t/a")->has_value());
    REQUIRE(s.compact());  // the default keyspace
    auto got = take(*w, 2);
    REQUIRE(got.size() == 2);
    CHECK(erase_of(got[0], "t/a"));
    CHECK(erase_of(got[1], "t/b"));
    CHECK(got[0].seq == got[1].seq);  // one commit
    CHECK(got[0].seq <= s.last_seq());
    CHECK_FALSE(raw(s, "t/a").has_value());  // deleted, not only hidden
    CHECK(raw(s, "t/d").has_value());
    REQUIRE(users->compact());
    auto gu = take(*wu, 1);
    REQUIRE(gu.size() == 1);
    CHECK(erase_of(gu[0], "u1", "users"));
    REQUIRE(s.compact());
    CHECK(take(*w, 0).empty());  // nothing twice
    clock.advance(10s);
    REQUIRE(s.compact());
    got = take(*w, 1);
    REQUIRE(got.size() == 1);
    CHECK(erase_of(got[0], "t/c"));
  }

  TEST_CASE("rocksdb expiry: a watched store's background sweep delivers the erase changes by itself") {
    temp_dir d;
    fake_clock clock;
    auto s = open_swept(d.path() / "db", clock, 5ms);
    auto w = s.watch(keel::key_range::all(), {});
    REQUIRE(w);
    for (int i = 0; i < 20; ++i) REQUIRE(s.put("k" + std::to_string(10 + i), "v", put_options{.ttl = 1s}));
    REQUIRE(s.put("p", "permanent"));
    REQUIRE(take(*w, 21).size() == 21);
    clock.advance(2s);
    auto got = take(*w, 20);  // the sweep runs every 5 ms of real time
    REQUIRE(got.size() == 20);
    for (const auto& c : got) CHECK_FALSE(c.value.has_value());
    CHECK(s.get("p")->value() == "permanent");
  }

  // The marker of a watched store survives the close: the next open never
  // lets a compaction drop expired keys silently, so a watch resuming after
  // the restart gets their erases, from the WAL, once.
  TEST_CASE("rocksdb expiry: expired keys' erase changes reach a watch that resumes after a restart") {
    temp_dir d;
    fake_clock clock;
    std::uint64_t seen = 0;
    {
      auto s = open_swept(d.path() / "db", clock, 0ms);
      auto w = s.watch(keel::key_range::all(), {});
      REQUIRE(w);
      REQUIRE(s.put("x", "1", put_options{.ttl = 10s}));
      REQUIRE(s.put("y", "2"));
      auto got = take(*w, 2);
      REQUIRE(got.size() == 2);
      seen = got.back().seq;
      REQUIRE(s.close());
    }
    clock.advance(20s);
    std::uint64_t erase_seq = 0;
    {
      auto s = open_swept(d.path() / "db", clock, 0ms);
      REQUIRE(s.compact());  // before any watch of this open: keel's sweep, not the compaction filter
      CHECK_FALSE(raw(s, "x").has_value());
      keel::watch_options o;
      o.after = seen;
      auto w = s.watch(keel::key_range::all(), o);
      REQUIRE(w);
      auto got = take(*w, 1);
      REQUIRE(got.size() == 1);
      CHECK(erase_of(got[0], "x"));
      erase_seq = got[0].seq;
      REQUIRE(s.close());
    }
    auto s = open_swept(d.path() / "db", clock, 0ms);
    keel::watch_options o;
    o.after = seen;
    auto w = s.watch(keel::key_range::all(), o);
    REQUIRE(w);
    auto got = take(*w, 1);
    REQUIRE(got.size() == 1);
    CHECK(erase_of(got[0], "x"));
    CHECK(got[0].seq == erase_seq);
    CHECK(s.get("y")->value() == "2");
  }

  TEST_CASE("rocksdb expiry: every read path, before and after each deadline, by the store's clock") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("a", "va", put_options{.ttl = 10s}));
    REQUIRE(s.put("b", "vb"));
    keel::write_batch batch;
    batch.put("c", "vc", put_options{.ttl = 20s});
    REQUIRE(s.write(batch));
    check_reads(s, true, true);
    CHECK(*s.expiry("a") == keel::key_expiry{true, clock.now() + 10'000});
    CHECK(*s.expiry("b") == keel::key_expiry{true, std::nullopt});
    auto before = s.snapshot();  // reads at the time it was taken
    clock.advance(9'999ms);
    check_reads(s, true, true);
    clock.advance(1ms);  // a's deadline: absent from that moment
    check_reads(s, false, true);
    CHECK(*s.expiry("a") == keel::key_expiry{});
    CHECK(*before.get("a") == std::optional<std::string>("va"));
    REQUIRE(s.compact());  // the compaction filter keeps what a live snapshot shows
    CHECK(*before.get("a") == std::optional<std::string>("va"));
    CHECK(keys_of(before.scan()) == std::vector<std::string>{"a", "b", "c"});
    clock.advance(10s);
    check_reads(s, false, false);
    // erase and overwrite behave as for an absent key
    REQUIRE(s.erase("a"));
    REQUIRE(s.put("c", "again"));
    CHECK(*s.get("c") == std::optional<std::string>("again"));
  }

  TEST_CASE("rocksdb expiry: a put without ttl makes the key permanent again; a ttl put over a permanent key") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("k", "1", put_options{.ttl = 5s}));
    REQUIRE(s.put("k", "2"));
    REQUIRE(s.put("p", "perm"));
    REQUIRE(s.put("p", "short", put_options{.ttl = 5s}));
    clock.advance(1h);
    CHECK(*s.get("k") == std::optional<std::string>("2"));
    CHECK(*s.expiry("k") == keel::key_expiry{true, std::nullopt});
    CHECK_FALSE(s.get("p")->has_value());
  }

  TEST_CASE("rocksdb expiry: a bad ttl writes nothing, the whole batch") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    keel::write_batch b;
    b.put("good", "1", put_options{.ttl = 5s});
    b.put("plain", "2");
    b.put("bad", "3", put_options{.ttl = -1s});
    auto r = s.write(b);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::invalid_argument);
    CHECK_FALSE(s.get("good")->has_value());
    CHECK_FALSE(s.get("plain")->has_value());
    auto z = s.put("zero", "v", put_options{.ttl = 0ms});
    REQUIRE_FALSE(z);
    CHECK(z.error() == errc::invalid_argument);
    keel::write_batch far;
    far.put("far", "v", put_options{.ttl = std::chrono::milliseconds(INT64_MAX)});
    auto f = s.write(far);
    REQUIRE_FALSE(f);
    CHECK(f.error() == errc::invalid_argument);
    CHECK(keys_of(s.scan()).empty());
  }

  TEST_CASE("rocksdb expiry: a store that never used ttl keeps its values and column families as they are") {
    temp_dir d;
    const fs::path p = d.path() / "db";
    fake_clock clock;
    {
      auto s = open_store(p, clock);
      REQUIRE(s.put("k", "value"));
      REQUIRE(s.put("bin", std::string("\0\xff", 2)));
      CHECK(raw(s, "k") == std::optional<std::string>("value"));  // stored as given: no header
      REQUIRE(s.close());
    }
    CHECK(families(p) == std::vector<std::string>{"default"});
  }

  TEST_CASE("rocksdb expiry: a store made by plain RocksDB (no keel, no ttl) opens and reads unchanged, and takes ttl") {
    temp_dir d;
    const fs::path p = d.path() / "db";
    std::vector<std::pair<std::string, std::string>> want;
    {
      rocksdb::Options o;
      o.create_if_missing = true;
      rocksdb::DB* raw_db = nullptr;
      REQUIRE(rocksdb::DB::Open(o, p.string(), &raw_db).ok());
      std::unique_ptr<rocksdb::DB> db(raw_db);
      for (int i = 0; i < 200; ++i) {
        std::string k = "k" + std::to_string(1000 + i);
        std::string v(static_cast<std::size_t>(i % 40), static_cast<char>(i));  // arbitrary bytes, some empty
        REQUIRE(db->Put(rocksdb::WriteOptions(), k, v).ok());
        want.emplace_back(k, v);
      }
      REQUIRE(db->Flush(rocksdb::FlushOptions()).ok());
      REQUIRE(db->Close().ok());
    }
    fake_clock clock;
    {
      auto s = open_store(p, clock);
      CHECK(collect(s.scan()) == want);
      CHECK(*s.get("k1005") == std::optional<std::string>(want[5].second));
      // ttl in the old store: the old values still read unchanged beside it
      REQUIRE(s.put("new", "v", put_options{.ttl = 1s}));
      CHECK(collect(s.scan(keel::key_range::prefix("k"))) == want);
      clock.advance(1s);
      CHECK_FALSE(s.contains("new").value());
      REQUIRE(s.close());
    }
    auto s = open_store(p, clock, true);
    CHECK(collect(s.scan()) == want);
  }

  TEST_CASE("rocksdb expiry: a plain value that begins with the keyspace's tag reads back as written") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("t", "x", put_options{.ttl = 1h}));
    auto tag = s.policy().with_db([](rocksdb::DB& db) {
      std::vector<rocksdb::ColumnFamilyHandle*> none;
      std::string v;
      // the tag is the first 8 bytes of any tagged value
      (void)db.Get(rocksdb::ReadOptions(), "t", &v);
      return v.substr(0, 8);
    });
    REQUIRE(tag);
    REQUIRE(tag->size() == 8);
    const std::string tricky = *tag + "d\x01\x02\x03\x04\x05\x06\x07\x08rest";
    REQUIRE(s.put("tricky", tricky));
    REQUIRE(s.put("short", *tag));  // exactly the tag
    keel::write_batch b;
    b.put("batched", tricky);
    REQUIRE(s.write(b));
    clock.advance(24h);
    CHECK(*s.get("tricky") == std::optional<std::string>(tricky));
    CHECK(*s.get("short") == std::optional<std::string>(*tag));
    CHECK(*s.get("batched") == std::optional<std::string>(tricky));
    CHECK(*s.expiry("tricky") == keel::key_expiry{true, std::nullopt});
    CHECK(collect(s.scan()) == std::vector<std::pair<std::string, std::string>>{
                                   {"batched", tricky}, {"short", *tag}, {"tricky", tricky}});
  }

  TEST_CASE("rocksdb expiry: reopen and read-only open with the clock moved past some deadlines") {
    temp_dir d;
    const fs::path p = d.path() / "db";
    fake_clock clock;
    {
      auto s = open_store(p, clock);
      for (int i = 0; i < 20; ++i)
        REQUIRE(s.put("k" + std::to_string(10 + i), "v", put_options{.ttl = std::chrono::seconds(i + 1)}));
      REQUIRE(s.put("perm", "v"));
      REQUIRE(s.close());
    }
    clock.advance(10s);  // k10..k19 (ttl 1..10 s) are past their deadline, k20..k29 live
    auto check = [&](rocks_store& s) {
      auto keys = keys_of(s.scan());
      CHECK(keys.size() == 11);
      CHECK(keys.front() == "k20");
      CHECK_FALSE(s.contains("k19").value());
      CHECK(s.contains("k20").value());
      CHECK(s.contains("perm").value());
    };
    {
      auto s = open_store(p, clock);
      check(s);
      REQUIRE(s.close());
    }
    auto ro = open_store(p, clock, true);
    check(ro);
  }

  TEST_CASE("rocksdb expiry: keyspaces each with ttl, tagged on their own; the default one stays untouched") {
    temp_dir d;
    const fs::path p = d.path() / "db";
    fake_clock clock;
    {
      auto s = open_store(p, clock);
      auto one = keel::test::keyspace_or_fail(s, "one");
      auto two = keel::test::keyspace_or_fail(s, "two");
      REQUIRE(s.put("plain", "v"));
      REQUIRE(one.put("x", "1", put_options{.ttl = 5s}));
      REQUIRE(two.put("x", "2", put_options{.ttl = 50s}));
      keel::write_batch b;  // one batch across keyspaces
      b.put(keel::keyspace_name("one"), "y", "1y", put_options{.ttl = 50s});
      b.put(keel::keyspace_name("two"), "y", "2y");
      REQUIRE(s.write(b));
      CHECK(*one.expiry("x") == keel::key_expiry{true, clock.now() + 5'000});
      clock.advance(5s);
      CHECK_FALSE(one.get("x")->has_value());
      CHECK(*two.get("x") == std::optional<std::string>("2"));
      CHECK(keys_of(one.scan()) == std::vector<std::string>{"y"});
      CHECK((*one.multi_get({"x", "y"}))[1] == std::optional<std::string>("1y"));
      CHECK(raw(s, "plain") == std::optional<std::string>("v"));  // the default keyspace has no tag
      REQUIRE(s.close());
    }
    auto fams = families(p);
    CHECK(std::find(fams.begin(), fams.end(), "keel.expiry") != fams.end());
    clock.advance(45s);
    auto s = open_store(p, clock);
    auto one = keel::test::keyspace_or_fail(s, "one");
    auto two = keel::test::keyspace_or_fail(s, "two");
    CHECK(keys_of(one.scan()).empty());
    CHECK(keys_of(two.scan()) == std::vector<std::string>{"y"});
    CHECK(*s.keyspaces() == std::vector<std::string>{"", "one", "two"});  // keel.expiry is no keyspace
  }

  TEST_CASE("rocksdb expiry: compact() reclaims the bytes of expired keys (compaction filter)") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    const int n = 4000;
    const std::string value(100, 'v');
    for (int i = 0; i < n; i += 100) {
      keel::write_batch b;
      for (int j = i; j < i + 100; ++j) b.put("e" + std::to_string(100000 + j), value, put_options{.ttl = 1min});
      REQUIRE(s.write(b));
    }
    for (int i = 0; i < 40; ++i) REQUIRE(s.put("p" + std::to_string(i), value));
    REQUIRE(s.compact());  // flushed and compacted before the deadline: every key kept
    const std::uint64_t full = sst_bytes(s);
    CHECK(keys_of(s.scan()).size() == n + 40);
    clock.advance(1min);
    REQUIRE(s.compact());
    const std::uint64_t after = sst_bytes(s);
    CAPTURE(full);
    CAPTURE(after);
    CHECK(after * 20 < full);  // over 95% of the bytes gone (40 of 4040 keys remain)
    auto left = s.policy().with_db([](rocksdb::DB& db) {
      std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
      int count = 0;
      for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
      return count;
    });
    CHECK(*left == 40);  // RocksDB itself holds only the permanent keys now
  }

  TEST_CASE("rocksdb expiry: compact() keeps what a live snapshot shows, and reclaims it once the snapshot goes") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("k", "v", put_options{.ttl = 10s}));
    REQUIRE(s.put("p", "v"));
    auto raw_count = [&] {
      auto n = s.policy().with_db([](rocksdb::DB& db) {
        std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(rocksdb::ReadOptions()));
        int count = 0;
        for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
        return count;
      });
      REQUIRE(n);
      return *n;
    };
    {
      auto snap = s.snapshot();
      clock.advance(10s);
      REQUIRE(s.compact());
      CHECK(*snap.get("k") == std::optional<std::string>("v"));
      CHECK_FALSE(s.get("k")->has_value());
      CHECK(raw_count() == 2);
    }
    REQUIRE(s.compact());
    CHECK(raw_count() == 1);
  }

  TEST_CASE("rocksdb expiry: a watch delivers a ttl put, and an escaped plain value, as the value written") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("first", "x", put_options{.ttl = 1h}));  // the keyspace has its tag from here
    const std::string tag = raw(s, "first")->substr(0, 8);
    auto w = s.watch(keel::key_range::all(), {});
    REQUIRE(w);
    REQUIRE(s.put("t", "with ttl", put_options{.ttl = 1h}));
    REQUIRE(s.put("p", tag + "plain"));
    std::vector<keel::change> got;
    for (int i = 0; i < 50 && got.size() < 2; ++i) {  // next() waits up to 200 ms each (no sleep)
      auto c = w->next(200ms);
      REQUIRE(c);
      if (*c) got.push_back(std::move(**c));
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].key == "t");
    CHECK(got[0].value == std::optional<std::string>("with ttl"));
    CHECK(got[1].key == "p");
    CHECK(got[1].value == std::optional<std::string>(tag + "plain"));
  }

  TEST_CASE("rocksdb expiry: a transaction that read a key which expires before its commit conflicts") {
    temp_dir d;
    fake_clock clock;
    auto s = open_store(d.path() / "db", clock);
    REQUIRE(s.put("k", "v", put_options{.ttl = 10s}));
    REQUIRE(s.put("r", "v", put_options{.ttl = 10s}));
    {
      auto tx = s.transaction();
      CHECK(*tx.get("k") == std::optional<std::string>("v"));
      REQUIRE(tx.put("out", "1"));
      clock.advance(10s);
      auto r = tx.commit();
      REQUIRE_FALSE(r);
      CHECK(r.error() == errc::conflict);
      CHECK_FALSE(s.get("out")->has_value());
    }
    REQUIRE(s.put("k2", "v", put_options{.ttl = 10s}));
    {  // a scanned range counts too
      auto tx = s.transaction();
      CHECK(keys_of(tx.scan(keel::key_range::prefix("k2"))) == std::vector<std::string>{"k2"});
      REQUIRE(tx.put("out", "2"));
      clock.advance(10s);
      CHECK(tx.commit().error() == errc::conflict);
    }
    REQUIRE(s.put("k3", "v", put_options{.ttl = 10s}));
    {  // the control: no deadline passes, the commit succeeds
      auto tx = s.transaction();
      CHECK(*tx.get("k3") == std::optional<std::string>("v"));
      REQUIRE(tx.put("out", "3"));
      clock.advance(9s);
      REQUIRE(tx.commit());
      CHECK(*s.get("out") == std::optional<std::string>("3"));
    }
    {  // a key already expired when read does not conflict
      clock.advance(1s);
      auto tx = s.transaction();
      CHECK_FALSE(tx.get("k3")->has_value());
      REQUIRE(tx.put("out", "4"));
      clock.advance(1h);
      REQUIRE(tx.commit());
    }
  }

  TEST_CASE("rocksdb expiry: SIGKILL rounds of a writer using ttl; reopened with the clock moved, expired keys absent") {
    // crash_writer --ttl (its clock stands still at 1'700'000'000'000 ms)
    // puts r<ROUND>/<SEQ>/t with a ttl of 1 + SEQ % 10 s beside permanent
    // keys; reopened with the clock 5 s later, t is present iff SEQ % 10 >= 5.
    temp_dir d;
    const fs::path p = d.path() / "db";
    fake_clock clock;
    clock.ms->store(1'700'000'000'000 + 5'000);
    std::vector<long> acked_by_round;
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      child_process writer(helper_path("crash_writer"), {"--ttl", p.string(), std::to_string(round)});
      const long target = 12 + 7L * round;
      long acked = -1;
      while (acked < target) {
        auto line = writer.read_line(60s);
        REQUIRE_MESSAGE(line, "crash_writer stopped talking");
        if (line->rfind("ack ", 0) == 0) acked = std::stol(line->substr(4));
        else REQUIRE_MESSAGE(*line == "ready", "crash_writer said: " << *line);
      }
      writer.kill(SIGKILL);
      CHECK(writer.wait() == 128 + SIGKILL);
      while (auto line = writer.read_line(10s))
        if (line->rfind("ack ", 0) == 0) acked = std::stol(line->substr(4));
      acked_by_round.push_back(acked);
      auto s = open_store(p, clock);
      for (int r = 0; r <= round; ++r) {
        for (long seq = 0; seq <= acked_by_round[static_cast<std::size_t>(r)]; ++seq) {
          const std::string prefix = "r" + std::to_string(r) + "/" + std::to_string(seq) + "/";
          CAPTURE(prefix);
          CHECK(s.contains(prefix + "k0").value());
          CHECK(s.contains(prefix + "t").value() == (seq % 10 >= 5));
        }
      }
      REQUIRE(s.close());
    }
  }
}
