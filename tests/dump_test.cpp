// The dump format, export/import and copy: round trips on every backend,
// binary-safe records, and refusal of truncated, damaged and foreign files
// before anything is written.
#include <doctest/doctest.h>

#include <fstream>
#include <keel/copy.hpp>
#include <keel/dump.hpp>
#include <keel/dump_rocksdb.hpp>
#include <keel/keel.hpp>
#include <map>
#include <string>
#include <vector>

#include "support/cli_run.hpp"
#include "support/fake_clock.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::errc;
using keel::test::temp_dir;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

template <class Store>
std::map<std::string, std::string> contents(const Store& s) {
  std::map<std::string, std::string> m;
  auto c = s.scan();
  for (const auto& e : c) m.emplace(std::string(e.key), std::string(e.value));
  REQUIRE_FALSE(c.error());
  return m;
}

// Awkward records: empty value, NUL, 0xFF runs, a value spanning blocks.
std::map<std::string, std::string> sample(std::size_t n = 1000) {
  std::map<std::string, std::string> m;
  m[std::string("\0", 1)] = "nul key";
  m["\xff\xff\xff"] = std::string("\0\xff\0", 3);
  m["empty"] = "";
  m["big"] = std::string(200000, 'x');
  for (std::size_t i = 0; i < n; ++i) m["k" + std::to_string(i)] = "value " + std::to_string(i * 7);
  return m;
}

template <class Store>
void fill(Store& s, const std::map<std::string, std::string>& m) {
  keel::write_batch b;
  for (const auto& [k, v] : m) b.put(k, v);
  REQUIRE(s.write(b));
}

keel::rocks_store open_rocks(const fs::path& p) {
  auto r = keel::rocks_store::open({.path = p});
  REQUIRE(r);
  return std::move(*r);
}

// A destination that keeps the size of every write_batch it is given.
struct batch_recorder {
  std::vector<std::size_t> sizes;
  std::map<std::string, std::string> data;
  keel::result<void> write(const keel::write_batch& b) {
    sizes.push_back(b.size());
    for (const auto& op : b) data.insert_or_assign(std::string(op.key), std::string(op.value));
    return {};
  }
};

// Keyspace name -> its entries, every keyspace of a store with keyspaces.
template <class Store>
std::map<std::string, std::map<std::string, std::string>> all_keyspaces(Store& s) {
  std::map<std::string, std::map<std::string, std::string>> out;
  auto names = s.keyspaces();
  REQUIRE(names);
  for (const auto& n : *names) {
    auto ks = s.keyspace(n);
    REQUIRE(ks);
    out[n] = contents(*ks);
  }
  return out;
}

// Keyspaces with awkward names (NUL, 0xFF, one byte, 255 bytes), the same
// keys in several of them, and an empty one.
std::map<std::string, std::map<std::string, std::string>> keyspace_sample() {
  std::map<std::string, std::map<std::string, std::string>> m;
  m[""] = sample(50);
  m[std::string("\0", 1)] = {{"k1", "in nul"}, {"only-nul", "x"}};
  m["\xff\xff"] = {{"k1", "in ff"}, {std::string("\0\xff", 2), std::string(70000, 'f')}};
  m["users"] = sample(30);
  m[std::string(255, 'n')] = {{"a", "long name"}};
  m["empty"] = {};
  return m;
}

template <class Store>
void fill_keyspaces(Store& s, const std::map<std::string, std::map<std::string, std::string>>& m) {
  keel::write_batch b;
  for (const auto& [name, entries] : m) {
    REQUIRE(s.keyspace(name));
    for (const auto& [k, v] : entries) b.put(keel::keyspace_name(name), k, v);
  }
  REQUIRE(s.write(b));
}

// A version-2 dump written byte by byte (valid checksums), for records a
// writer would not produce: (keyspace index, key, value).
struct raw_record {
  std::uint64_t keyspace;
  std::string key, value;
};
std::string raw_v2_dump(const std::vector<std::string>& table, const std::vector<raw_record>& records) {
  using namespace keel::detail;
  std::string f(keel::dump_magic);
  put_u32(f, 2);
  put_u32(f, crc32c(f));
  std::string names;
  for (const auto& n : table) {
    put_varint(names, n.size());
    names += n;
  }
  f += "KSP2";
  put_u32(f, static_cast<std::uint32_t>(table.size()));
  put_u32(f, static_cast<std::uint32_t>(names.size()));
  put_u32(f, crc32c(names));
  f += names;
  std::string block;
  std::uint64_t payload = 0;
  for (const auto& r : records) {
    put_varint(block, r.keyspace);
    put_varint(block, r.key.size());
    block += r.key;
    put_varint(block, r.value.size());
    block += r.value;
    payload += r.key.size() + r.value.size();
  }
  if (!records.empty()) {
    f += "BLK1";
    put_u32(f, static_cast<std::uint32_t>(records.size()));
    put_u32(f, static_cast<std::uint32_t>(block.size()));
    put_u32(f, crc32c(block));
    f += block;
  }
  f += "END1";
  put_u64(f, records.size());
  put_u64(f, payload);
  put_u32(f, 0);
  put_u32(f, crc32c(f));
  return f;
}

}  // namespace

TEST_SUITE("dump") {
  TEST_CASE("crc32c matches the standard check value") {
    CHECK(keel::detail::crc32c("123456789") == 0xE3069283u);
    CHECK(keel::detail::crc32c("") == 0u);
    std::string long_input(1000, 'a');
    std::uint32_t split =
        keel::detail::crc32c_extend(keel::detail::crc32c(long_input.substr(0, 333)), long_input.data() + 333, 667);
    CHECK(split == keel::detail::crc32c(long_input));
  }

  TEST_CASE("export then import round-trips memory -> memory and rocksdb -> rocksdb") {
    temp_dir tmp;
    const auto data = sample();
    auto mem = keel::memory_store::open({});
    REQUIRE(mem);
    fill(*mem, data);
    auto info = keel::export_dump(*mem, tmp.path() / "m.dump");
    REQUIRE(info);
    CHECK(info->records == data.size());
    CHECK(info->sorted);
    CHECK(info->file_bytes == fs::file_size(tmp.path() / "m.dump"));
    CHECK_FALSE(fs::exists(tmp.path() / ("m.dump.tmp-" + std::to_string(::getpid()))));

    auto verified = keel::verify_dump(tmp.path() / "m.dump");
    REQUIRE(verified);
    CHECK(verified->records == data.size());

    auto mem2 = keel::memory_store::open({});
    REQUIRE(mem2);
    std::uint64_t last = 0;
    keel::import_options io;
    io.progress = [&](const keel::progress_info& p) { last = p.records; };
    auto imported = keel::import_dump(*mem2, tmp.path() / "m.dump", io);
    REQUIRE(imported);
    CHECK(last == data.size());
    CHECK(contents(*mem2) == data);

    // RocksDB: the SST path (sorted dump), into a store that already has data.
    auto rocks = open_rocks(tmp.path() / "db");
    REQUIRE(rocks.put("zzz-existing", "kept"));
    REQUIRE(rocks.put("k1", "overwritten"));
    auto r = keel::import_dump(rocks, tmp.path() / "m.dump");
    REQUIRE(r);
    auto expected = data;
    expected["zzz-existing"] = "kept";
    CHECK(contents(rocks) == expected);
    CHECK_FALSE(fs::exists(tmp.path() / "db" / ("keel-import-" + std::to_string(::getpid()))));
    // Survives a reopen.
    REQUIRE(rocks.close());
    auto again = open_rocks(tmp.path() / "db");
    CHECK(contents(again) == expected);

    // And back out of RocksDB, through any_store.
    REQUIRE(again.close());
    keel::store_config cfg;
    cfg.path = tmp.path() / "db";
    cfg.log = [](std::string_view) {};
    auto any = keel::open_store(cfg);
    REQUIRE(any);
    REQUIRE(keel::export_dump(*any, tmp.path() / "r.dump"));
    auto mem3 = keel::memory_store::open({});
    REQUIRE(keel::import_dump(*mem3, tmp.path() / "r.dump"));
    CHECK(contents(*mem3) == expected);
  }

  TEST_CASE("an empty store exports to a valid, empty dump") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    auto info = keel::export_dump(*mem, tmp.path() / "e.dump");
    REQUIRE(info);
    CHECK(info->records == 0);
    auto rocks = open_rocks(tmp.path() / "db");
    auto r = keel::import_dump(rocks, tmp.path() / "e.dump");
    REQUIRE(r);
    CHECK(contents(rocks).empty());
  }

  TEST_CASE("an unsorted dump imports into RocksDB through write batches") {
    temp_dir tmp;
    keel::dump_writer w;
    REQUIRE(w.open(tmp.path() / "u.dump"));
    REQUIRE(w.add("b", "2"));
    REQUIRE(w.add("a", "1"));
    REQUIRE(w.add("b", "3"));  // a later record wins, as in a batch
    auto info = w.finish();
    REQUIRE(info);
    CHECK_FALSE(info->sorted);
    auto rocks = open_rocks(tmp.path() / "db");
    REQUIRE(keel::import_dump(rocks, tmp.path() / "u.dump"));
    CHECK(contents(rocks) == std::map<std::string, std::string>{{"a", "1"}, {"b", "3"}});
  }

  TEST_CASE("a truncated dump is refused at every length, and nothing is imported") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    fill(*mem, sample(50));
    REQUIRE(keel::export_dump(*mem, tmp.path() / "full.dump"));
    const std::string full = slurp(tmp.path() / "full.dump");
    const fs::path cut = tmp.path() / "cut.dump";
    auto rocks = open_rocks(tmp.path() / "db");
    std::size_t step = 1;
    for (std::size_t len = 0; len < full.size(); len += step) {
      if (len > 300 && len < full.size() - 300)
        step = 997;
      else
        step = 1;
      CAPTURE(len);
      spit(cut, full.substr(0, len));
      auto dst = keel::memory_store::open({});
      auto r = keel::import_dump(*dst, cut);
      REQUIRE_FALSE(r);
      CHECK((r.error().code() == errc::corruption || r.error().code() == errc::invalid_argument));
      CHECK(contents(*dst).empty());
      auto rr = keel::import_dump(rocks, cut);
      REQUIRE_FALSE(rr);
      CHECK(contents(rocks).empty());
    }
    spit(cut, full.substr(0, full.size() - 1));
    auto dst = keel::memory_store::open({});
    auto r = keel::import_dump(*dst, cut);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::corruption);
    CHECK(r.error().message().find("truncated") != std::string::npos);
    // Extra bytes after the end marker are refused too.
    spit(cut, full + "x");
    CHECK_FALSE(keel::verify_dump(cut));
  }

  TEST_CASE("a truncated dump's message says where the file ends; source_name replaces the path (issue 25)") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    fill(*mem, sample(50));
    REQUIRE(keel::export_dump(*mem, tmp.path() / "full.dump"));
    const std::string full = slurp(tmp.path() / "full.dump");
    const fs::path cut = tmp.path() / "cut.dump";
    for (std::size_t len : {std::size_t(20), std::size_t(150), full.size() / 2}) {
      CAPTURE(len);
      spit(cut, full.substr(0, len));
      auto v = keel::verify_dump(cut);
      REQUIRE_FALSE(v);
      CHECK(v.error().code() == errc::corruption);
      CHECK(v.error().message().find("ends at byte " + std::to_string(len) + ",") != std::string::npos);
      CHECK(v.error().message().find("'" + cut.string() + "'") != std::string::npos);
    }
    // A source name (a copy of stdin) is named instead of the file.
    auto named = keel::verify_dump(cut, {}, "standard input");
    REQUIRE_FALSE(named);
    CHECK(named.error().message().find("the dump on standard input is truncated") != std::string::npos);
    CHECK(named.error().message().find(cut.string()) == std::string::npos);
    spit(tmp.path() / "text", "not a dump, not at all, not even close");
    keel::import_options io;
    io.source_name = "standard input";
    auto dst = keel::memory_store::open({});
    auto text = keel::import_dump(*dst, tmp.path() / "text", io);
    REQUIRE_FALSE(text);
    CHECK(text.error().message() == "standard input is not a keel dump (it does not start with KEELDUMP)");
    auto rocks = open_rocks(tmp.path() / "db");
    auto rtext = keel::import_dump(rocks, tmp.path() / "text", io);
    REQUIRE_FALSE(rtext);
    CHECK(rtext.error().message() == text.error().message());
  }

  TEST_CASE("import_options::check_record refuses a record before anything is written (issue 25)") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    fill(*mem, sample(300));
    REQUIRE(keel::export_dump(*mem, tmp.path() / "full.dump"));
    keel::import_options io;
    io.batch_records = 10;  // batches before the refused record would be written by a one-pass import
    std::uint64_t checked = 0;
    io.check_record = [&](std::uint64_t index, std::string_view key,
                          std::string_view) -> std::optional<keel::error> {
      ++checked;
      if (key != "k99") return std::nullopt;  // after more than 10 records in byte order
      return keel::error(errc::invalid_argument, "record " + std::to_string(index) + " key " + std::string(key));
    };
    auto dst = keel::memory_store::open({});
    auto r = keel::import_dump(*dst, tmp.path() / "full.dump", io);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("key k99") != std::string::npos);
    CHECK(contents(*dst).empty());
    auto rocks = open_rocks(tmp.path() / "db");
    checked = 0;
    auto rr = keel::import_dump(rocks, tmp.path() / "full.dump", io);
    REQUIRE_FALSE(rr);
    CHECK(rr.error().message() == r.error().message());
    CHECK(checked > 0);
    CHECK(contents(rocks).empty());
  }

  TEST_CASE("a damaged byte anywhere is detected") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    fill(*mem, sample(30));
    REQUIRE(keel::export_dump(*mem, tmp.path() / "full.dump"));
    const std::string full = slurp(tmp.path() / "full.dump");
    const fs::path bad = tmp.path() / "bad.dump";
    for (std::size_t at = 0; at < full.size(); at += (at < 200 || at > full.size() - 200) ? 1 : 211) {
      CAPTURE(at);
      std::string s = full;
      s[at] = static_cast<char>(s[at] ^ 0x10);
      spit(bad, s);
      auto dst = keel::memory_store::open({});
      auto r = keel::import_dump(*dst, bad);
      REQUIRE_FALSE(r);
      CHECK(contents(*dst).empty());
    }
  }

  TEST_CASE("files that are not dumps, and missing files") {
    temp_dir tmp;
    spit(tmp.path() / "text", "hello, world, this is not a dump at all");
    auto r = keel::verify_dump(tmp.path() / "text");
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::invalid_argument);
    CHECK(r.error().message().find("not a keel dump") != std::string::npos);
    auto missing = keel::verify_dump(tmp.path() / "nope");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code() == errc::not_found);
    // A future version is named as such (4: version 2 has keyspaces, issue
    // 27, version 3 deadlines, issue 29; a keel before 3 refuses it the same way).
    std::string h(keel::dump_magic);
    keel::detail::put_u32(h, 4);
    keel::detail::put_u32(h, keel::detail::crc32c(h));
    spit(tmp.path() / "v4", h);
    auto v4 = keel::verify_dump(tmp.path() / "v4");
    REQUIRE_FALSE(v4);
    CHECK(v4.error().code() == errc::not_supported);
    CHECK(v4.error().message().find("format version 4; this keel reads versions 1 to 3") != std::string::npos);
  }

  TEST_CASE("import and copy cap their batches at batch_records (for etcd's operations per txn)") {
    temp_dir tmp;
    std::map<std::string, std::string> data;
    for (int i = 0; i < 250; ++i) data["k" + std::to_string(1000 + i)] = "v";
    auto mem = keel::memory_store::open({});
    fill(*mem, data);
    const auto file = tmp.path() / "d.keeldump";
    REQUIRE(keel::export_dump(*mem, file));

    batch_recorder imported;
    keel::import_options io;
    io.batch_records = 100;
    REQUIRE(keel::import_dump(imported, file, io));
    CHECK(imported.sizes == std::vector<std::size_t>{100, 100, 50});
    CHECK(imported.data == data);

    batch_recorder copied;
    keel::copy_options co;
    co.batch_records = 100;
    REQUIRE(keel::copy(*mem, copied, co));
    CHECK(copied.sizes == std::vector<std::size_t>{100, 100, 50});
    CHECK(copied.data == data);

    batch_recorder unlimited;  // 0: only batch_bytes closes a batch
    REQUIRE(keel::copy(*mem, unlimited));
    CHECK(unlimited.sizes == std::vector<std::size_t>{250});
  }

  TEST_CASE("copy between any two stores, with progress") {
    temp_dir tmp;
    const auto data = sample(20000);
    auto mem = keel::memory_store::open({});
    fill(*mem, data);
    auto rocks = open_rocks(tmp.path() / "db");
    std::uint64_t calls = 0, last = 0;
    auto n = keel::copy(*mem, rocks, [&](const keel::progress_info& p) {
      ++calls;
      last = p.records;
    });
    REQUIRE(n);
    CHECK(n->records == data.size());
    CHECK(calls >= 2);
    CHECK(last == data.size());
    CHECK(contents(rocks) == data);

    auto back = keel::memory_store::open({});
    keel::copy_options o;
    o.range = keel::key_range::prefix("k1");
    o.batch_bytes = 100;
    REQUIRE(keel::copy(rocks, *back, o));
    for (const auto& [k, v] : contents(*back)) CHECK(k.rfind("k1", 0) == 0);
    CHECK(contents(*back).size() == 11111);

    // From a snapshot: later writes are not copied.
    auto snap = mem->snapshot();
    REQUIRE(mem->put("later", "x"));
    auto from_snap = keel::memory_store::open({});
    REQUIRE(keel::copy(snap, *from_snap));
    CHECK(contents(*from_snap) == data);

    // A closed destination reports closed.
    auto closed = keel::memory_store::open({});
    REQUIRE(closed->close());
    auto failed = keel::copy(*mem, *closed);
    REQUIRE_FALSE(failed);
    CHECK(failed.error().code() == errc::closed);
  }
}

TEST_SUITE("dump") {
  TEST_CASE("keyspaces round-trip through a version-2 dump: memory -> memory, RocksDB -> RocksDB, any_store") {
    temp_dir tmp;
    const auto data = keyspace_sample();
    auto mem = keel::memory_store::open({});
    REQUIRE(mem);
    fill_keyspaces(*mem, data);
    const auto file = tmp.path() / "ks.dump";
    auto info = keel::export_dump(*mem, file);
    REQUIRE(info);
    CHECK(info->version == 2);
    CHECK(info->sorted);
    CHECK(info->keyspaces.size() == data.size());
    std::uint64_t records = 0;
    for (const auto& [n, e] : data) records += e.size();
    CHECK(info->records == records);
    auto verified = keel::verify_dump(file);
    REQUIRE(verified);
    CHECK(verified->version == 2);
    CHECK(verified->records == records);
    CHECK(verified->keyspaces == info->keyspaces);

    auto mem2 = keel::memory_store::open({});
    REQUIRE(mem2);
    REQUIRE(mem2->put("k1", "overwritten"));
    REQUIRE(mem2->put("kept", "yes"));
    REQUIRE(keel::import_dump(*mem2, file));
    auto expected = data;
    expected[""]["kept"] = "yes";
    CHECK(all_keyspaces(*mem2) == expected);

    // Into RocksDB (column families; a reopen keeps them), then out again
    // through any_store.
    {
      auto rocks = open_rocks(tmp.path() / "db");
      REQUIRE(keel::import_dump(rocks, file));
      REQUIRE(rocks.close());
    }
    auto rocks = open_rocks(tmp.path() / "db");
    CHECK(all_keyspaces(rocks) == data);
    keel::any_store any(std::move(rocks));
    auto again = keel::export_dump(any, tmp.path() / "ks2.dump");
    REQUIRE(again);
    CHECK(slurp(tmp.path() / "ks2.dump") == slurp(file));  // the same bytes from either backend
  }

  TEST_CASE("a store with only the default keyspace still writes version 1; a version-1 dump imports into \"\"") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    REQUIRE(mem);
    fill(*mem, sample(20));
    const auto file = tmp.path() / "v1.dump";
    auto info = keel::export_dump(*mem, file);
    REQUIRE(info);
    CHECK(info->version == 1);
    CHECK((info->keyspaces == std::vector<std::string>{""}));
    const std::string bytes = slurp(file);
    REQUIRE(bytes.size() > 16);
    CHECK(keel::detail::get_u32(bytes.data() + 8) == 1);
    CHECK(bytes.substr(16, 4) == "BLK1");  // no keyspace table

    // Into a store that has keyspaces: everything lands in "", the others stay.
    auto dst = keel::memory_store::open({});
    REQUIRE(dst);
    auto users = dst->keyspace("users");
    REQUIRE(users);
    REQUIRE(users->put("k1", "users' own"));
    REQUIRE(keel::import_dump(*dst, file));
    auto got = all_keyspaces(*dst);
    CHECK(got[""] == sample(20));
    CHECK((got["users"] == std::map<std::string, std::string>{{"k1", "users' own"}}));
    CHECK(got.size() == 2);
    // And into RocksDB's default column family (the SST path).
    auto rocks = open_rocks(tmp.path() / "db");
    REQUIRE(keel::import_dump(rocks, file));
    CHECK((*rocks.keyspaces() == std::vector<std::string>{""}));
    CHECK(contents(rocks) == sample(20));
  }

  TEST_CASE("copy carries every keyspace: memory -> RocksDB, RocksDB -> any_store, with a range in each") {
    temp_dir tmp;
    const auto data = keyspace_sample();
    auto mem = keel::memory_store::open({});
    REQUIRE(mem);
    fill_keyspaces(*mem, data);
    auto rocks = open_rocks(tmp.path() / "db");
    auto n = keel::copy(*mem, rocks);
    REQUIRE(n);
    CHECK(all_keyspaces(rocks) == data);

    auto back = keel::memory_store::open({});
    REQUIRE(back);
    keel::any_store dst(std::move(*back));
    keel::copy_options o;
    o.range = keel::key_range::prefix("k1");
    o.batch_bytes = 64;
    REQUIRE(keel::copy(rocks, dst, o));
    auto got = all_keyspaces(dst);
    CHECK(got.size() == data.size());  // every keyspace, the empty ones too
    for (const auto& [name, entries] : data) {
      std::map<std::string, std::string> want;
      for (const auto& [k, v] : entries)
        if (k.rfind("k1", 0) == 0) want[k] = v;
      CHECK(got[name] == want);
    }
  }

  TEST_CASE("a destination without keyspaces refuses a dump or a copy that has them: not_supported, nothing written") {
    temp_dir tmp;
    auto mem = keel::memory_store::open({});
    REQUIRE(mem);
    fill_keyspaces(*mem, keyspace_sample());
    const auto file = tmp.path() / "ks.dump";
    REQUIRE(keel::export_dump(*mem, file));

    batch_recorder plain;  // write() only, no keyspace()
    auto imported = keel::import_dump(plain, file);
    REQUIRE_FALSE(imported);
    CHECK(imported.error().code() == errc::not_supported);
    CHECK(imported.error().message().find("no keyspaces") != std::string::npos);
    CHECK(plain.sizes.empty());
    auto copied = keel::copy(*mem, plain);
    REQUIRE_FALSE(copied);
    CHECK(copied.error().code() == errc::not_supported);
    CHECK(plain.sizes.empty());
    // A version-1 dump and a store with only "" still go anywhere.
    auto flat = keel::memory_store::open({});
    fill(*flat, sample(5));
    REQUIRE(keel::copy(*flat, plain));
    CHECK(plain.data == sample(5));
    // A const source cannot open its keyspaces: refused, not cut down to "".
    const keel::memory_store& const_mem = *mem;
    batch_recorder other;
    auto from_const = keel::copy(const_mem, other);
    REQUIRE_FALSE(from_const);
    CHECK(from_const.error().code() == errc::not_supported);
    CHECK(other.sizes.empty());
  }

  TEST_CASE("a damaged version-2 dump is refused: keyspace table, record keyspace index, unsorted table") {
    temp_dir tmp;
    const fs::path f = tmp.path() / "raw.dump";
    auto import_into_fresh = [&](const std::string& bytes) {
      spit(f, bytes);
      auto dst = keel::memory_store::open({});
      REQUIRE(dst);
      auto r = keel::import_dump(*dst, f);
      if (r) return std::optional<keel::error>();
      CHECK(all_keyspaces(*dst).size() == 1);  // no keyspace created
      CHECK(contents(*dst).empty());
      return std::optional<keel::error>(r.error());
    };
    const std::vector<std::string> table{"", "a"};
    // The well-formed file imports (so the cases below fail for their reason only).
    CHECK_FALSE(import_into_fresh(raw_v2_dump(table, {{0, "k", "v"}, {1, "k", "w"}})));
    // A record naming keyspace #2 of a table of 2 (checksums all valid).
    auto bad_index = import_into_fresh(raw_v2_dump(table, {{0, "k", "v"}, {2, "k", "w"}}));
    REQUIRE(bad_index);
    CHECK(bad_index->code() == errc::corruption);
    CHECK(bad_index->message().find("keyspace #2") != std::string::npos);
    // A table out of order, or with a duplicate.
    auto unsorted = import_into_fresh(raw_v2_dump({"b", "a"}, {{0, "k", "v"}}));
    REQUIRE(unsorted);
    CHECK(unsorted->code() == errc::corruption);
    auto duplicate = import_into_fresh(raw_v2_dump({"a", "a"}, {{0, "k", "v"}}));
    REQUIRE(duplicate);
    CHECK(duplicate->code() == errc::corruption);
    // A name over 255 bytes.
    auto long_name = import_into_fresh(raw_v2_dump({std::string(256, 'x')}, {{0, "k", "v"}}));
    REQUIRE(long_name);
    CHECK(long_name->code() == errc::corruption);
    // A flipped bit in the table, or a version-2 header without a table.
    std::string flipped = raw_v2_dump(table, {{1, "k", "v"}});
    flipped[16 + 16 + 2] ^= 0x01;  // in the names
    auto bad_crc = import_into_fresh(flipped);
    REQUIRE(bad_crc);
    CHECK(bad_crc->code() == errc::corruption);
    std::string no_table = raw_v2_dump(table, {});
    no_table.erase(16, 16 + 3);
    auto missing_table = import_into_fresh(no_table);
    REQUIRE(missing_table);
    CHECK(missing_table->code() == errc::corruption);
  }

  TEST_CASE("dump_writer: version 2 only for keyspaces other than \"\", undeclared keyspaces refused, sorted per keyspace") {
    temp_dir tmp;
    keel::dump_writer w;
    REQUIRE(w.open(tmp.path() / "w.dump"));
    REQUIRE(w.set_keyspaces({"b", "a", "", "a"}));
    auto undeclared = w.add(keel::keyspace_name("c"), "k", "v");
    REQUIRE_FALSE(undeclared);
    CHECK(undeclared.error().code() == errc::invalid_argument);
    REQUIRE(w.add("z", "in default"));
    REQUIRE(w.add(keel::keyspace_name("a"), "a", "1"));  // a new keyspace may start below the last key
    REQUIRE(w.add(keel::keyspace_name("b"), "a", "2"));
    CHECK(w.set_keyspaces({"x"}).error().code() == errc::invalid_argument);  // after a record
    auto info = w.finish();
    REQUIRE(info);
    CHECK(info->version == 2);
    CHECK(info->sorted);
    CHECK((info->keyspaces == std::vector<std::string>{"", "a", "b"}));
    keel::dump_reader r;
    REQUIRE(r.open(tmp.path() / "w.dump"));
    std::vector<std::string> seen;
    for (;;) {
      auto more = r.next();
      REQUIRE(more);
      if (!*more) break;
      seen.push_back(std::string(r.keyspace()) + "/" + std::string(r.key()) + "=" + std::string(r.value()));
    }
    CHECK((seen == std::vector<std::string>{"/z=in default", "a/a=1", "b/a=2"}));

    // Keyspaces out of table order: not sorted (RocksDB then imports through batches).
    keel::dump_writer u;
    REQUIRE(u.open(tmp.path() / "u.dump"));
    REQUIRE(u.set_keyspaces({"a", "b"}));
    REQUIRE(u.add(keel::keyspace_name("b"), "k", "1"));
    REQUIRE(u.add(keel::keyspace_name("a"), "k", "2"));
    auto uinfo = u.finish();
    REQUIRE(uinfo);
    CHECK_FALSE(uinfo->sorted);
    auto rocks = open_rocks(tmp.path() / "db");
    REQUIRE(keel::import_dump(rocks, tmp.path() / "u.dump"));
    CHECK(all_keyspaces(rocks) == std::map<std::string, std::map<std::string, std::string>>{
                                      {"", {}}, {"a", {{"k", "2"}}}, {"b", {{"k", "1"}}}});

    // Only "" declared: version 1.
    keel::dump_writer flat;
    REQUIRE(flat.open(tmp.path() / "f.dump"));
    REQUIRE(flat.set_keyspaces({""}));
    REQUIRE(flat.add("k", "v"));
    CHECK(flat.add(keel::keyspace_name("a"), "k", "v").error().code() == errc::invalid_argument);
    auto finfo = flat.finish();
    REQUIRE(finfo);
    CHECK(finfo->version == 1);
  }
}

TEST_SUITE("stats") {
  TEST_CASE("stats() counts operations and reports keys and size on every store") {
    temp_dir tmp;
    auto check_counts = [](const keel::store_stats& s) {
      CHECK(s.puts == 2);
      CHECK(s.gets == 3);      // two on the store, one through the snapshot
      CHECK(s.contains == 1);  // through the snapshot
      CHECK(s.erases == 1);
      CHECK(s.writes == 1);
      CHECK(s.batch_ops == 2);
      CHECK(s.scans == 3);  // full, partial, and one through the snapshot
      CHECK(s.snapshots == 1);
      CHECK(s.cursor_entries == 3 + 1 + 1);
      // get: "one" (the hit; nothing for the miss); full scan: b+two, c, d;
      // snapshot get: "two"; snapshot scan: c; partial scan: b+two.
      CHECK(s.bytes_read == 3 + 6 + 3 + 1 + 4);
      CHECK(s.bytes_written == 4 + 4 + 1 + 2);  // a+one, b+two, erase "a", batch c + d
    };
    auto exercise = [&](auto& store) {
      REQUIRE(store.put("a", "one"));
      REQUIRE(store.put("b", "two"));
      REQUIRE(store.get("a"));
      REQUIRE(store.get("zz"));
      REQUIRE(store.erase("a"));
      keel::write_batch b;
      b.put("c", "").put("d", "");
      REQUIRE(store.write(b));
      {
        auto c = store.scan();
        for (const auto& e : c) (void)e;
      }
      auto snap = store.snapshot();
      CHECK(snap.get("b")->value() == "two");
      CHECK(snap.contains("c").value());
      {
        auto c = snap.scan(keel::key_range::prefix("c"));
        for (const auto& e : c) (void)e;
      }
      {
        auto partial = store.scan();  // dropped after its first entry
        REQUIRE(partial.valid());
      }
    };
    auto mem = keel::memory_store::open({});
    exercise(*mem);
    auto ms = mem->stats();
    REQUIRE(ms);
    check_counts(*ms);
    CHECK(ms->backend == keel::backend::memory);
    CHECK(ms->keys == 3);
    CHECK(ms->keys_exact);
    CHECK(ms->size_bytes > 0);

    auto rocks = open_rocks(tmp.path() / "db");
    exercise(rocks);
    auto rs = rocks.stats();
    REQUIRE(rs);
    check_counts(*rs);
    CHECK(rs->backend == keel::backend::rocksdb);
    CHECK_FALSE(rs->keys_exact);
    CHECK(rs->size_bytes > 0);
    bool has_estimate = false;
    for (const auto& [name, value] : rs->properties) has_estimate |= name == "rocksdb.estimate-num-keys";
    CHECK(has_estimate);

    // any_store forwards, and a moved store keeps its counters.
    REQUIRE(rocks.close());
    keel::store_config cfg;
    cfg.path = tmp.path() / "db";
    cfg.log = [](std::string_view) {};
    auto any = keel::open_store(cfg);
    REQUIRE(any);
    REQUIRE(any->put("x", "y"));
    keel::any_store moved = std::move(*any);
    {
      auto c = moved.scan(keel::key_range::prefix("x"));
      for (const auto& e : c) (void)e;
      auto sc = moved.snapshot().scan(keel::key_range::prefix("x"));
      for (const auto& e : sc) (void)e;
    }
    auto as = moved.stats();
    REQUIRE(as);
    CHECK(as->puts == 1);
    CHECK(as->scans == 2);
    CHECK(as->cursor_entries == 2);
    CHECK(as->bytes_read == 4);
    CHECK(as->keys >= 1);
    REQUIRE(moved.close());
    auto closed = moved.stats();
    REQUIRE_FALSE(closed);
    CHECK(closed.error().code() == errc::closed);
  }
}

// Expiry (issue 29): deadlines travel in the dump format (version 3), in
// copy, and stores without ttl keep the bytes of before.
namespace {

using namespace std::chrono_literals;
using keel::test::fake_clock;

// A dump of version 1 (table empty) or 2, byte by byte as the format of
// before deadlines lays it out (docs/dump-format.md): the fixture the
// exports of stores without ttl must equal.
std::string fixture_dump(std::uint32_t version, const std::vector<std::string>& table,
                         const std::vector<raw_record>& records) {
  if (version == 2) return raw_v2_dump(table, records);
  using namespace keel::detail;
  std::string f(keel::dump_magic);
  put_u32(f, 1);
  put_u32(f, crc32c(f));
  std::string block;
  std::uint64_t payload = 0;
  for (const auto& r : records) {
    put_varint(block, r.key.size());
    block += r.key;
    put_varint(block, r.value.size());
    block += r.value;
    payload += r.key.size() + r.value.size();
  }
  f += "BLK1";
  put_u32(f, static_cast<std::uint32_t>(records.size()));
  put_u32(f, static_cast<std::uint32_t>(block.size()));
  put_u32(f, crc32c(block));
  f += block;
  f += "END1";
  put_u64(f, records.size());
  put_u64(f, payload);
  put_u32(f, keel::dump_flag_sorted);
  put_u32(f, crc32c(f));
  return f;
}

// What a store says of keys a, b, c, d (present, deadline).
template <class Store>
std::vector<keel::key_expiry> expiries(const Store& s, std::initializer_list<const char*> keys) {
  std::vector<keel::key_expiry> out;
  for (const char* k : keys) {
    auto e = s.expiry(k);
    REQUIRE(e);
    out.push_back(*e);
  }
  return out;
}

// a: ttl 10 s, b: permanent, c: ttl 1 s (expired when the clock has moved 2 s), d: ttl 60 s.
template <class Store>
void fill_ttl(Store& s) {
  REQUIRE(s.put("a", "1", {.ttl = 10s}));
  REQUIRE(s.put("b", "2"));
  REQUIRE(s.put("c", "3", {.ttl = 1s}));
  REQUIRE(s.put("d", "4", {.ttl = 60s}));
}

keel::rocks_store open_rocks_clock(const fs::path& p, const fake_clock& clock) {
  auto r = keel::rocks_store::open({.path = p, .clock = clock.source()});
  REQUIRE(r);
  return std::move(*r);
}
keel::memory_store open_memory_clock(const fake_clock& clock) {
  auto r = keel::memory_store::open({.clock = clock.source()});
  REQUIRE(r);
  return std::move(*r);
}

}  // namespace

TEST_SUITE("dump") {
  TEST_CASE("deadlines round-trip through a version-3 dump: memory and RocksDB, each way, exactly") {
    temp_dir tmp;
    fake_clock clock;
    const keel::deadline_ms t0 = clock.now();
    const std::vector<keel::key_expiry> want = {
        {true, t0 + 10000}, {true, std::nullopt}, {false, std::nullopt}, {true, t0 + 60000}};
    auto mem = open_memory_clock(clock);
    auto rocks = open_rocks_clock(tmp.path() / "src", clock);
    fill_ttl(mem);
    fill_ttl(rocks);
    clock.advance(2s);  // c expires: not exported
    clock.advance(1ms);
    int n = 0;
    for (const auto& file : {tmp.path() / "mem.dump", tmp.path() / "rocks.dump"}) {
      auto info = n++ == 0 ? keel::export_dump(mem, file) : keel::export_dump(rocks, file);
      REQUIRE(info);
      CHECK(info->version == 3);
      CHECK(info->records == 3);
      CHECK(info->deadlines == 2);
      CHECK(keel::detail::get_u32(slurp(file).data() + 8) == 3);
      // The reader hands out each record's deadline.
      keel::dump_reader r;
      REQUIRE(r.open(file));
      std::map<std::string, std::optional<keel::deadline_ms>> seen;
      for (;;) {
        auto more = r.next();
        REQUIRE(more);
        if (!*more) break;
        seen[std::string(r.key())] = r.deadline();
      }
      CHECK((seen == std::map<std::string, std::optional<keel::deadline_ms>>{
                         {"a", t0 + 10000}, {"b", std::nullopt}, {"d", t0 + 60000}}));
      // Into memory and into RocksDB (sorted, only "": formerly the SST path):
      // the same deadlines, to the millisecond.
      auto to_mem = open_memory_clock(clock);
      auto in_mem = keel::import_dump(to_mem, file);
      REQUIRE(in_mem);
      CHECK(in_mem->expired_skipped == 0);
      CHECK(expiries(to_mem, {"a", "b", "c", "d"}) == want);
      auto to_rocks = open_rocks_clock(tmp.path() / ("dst" + std::to_string(n)), clock);
      auto in_rocks = keel::import_dump(to_rocks, file);
      REQUIRE(in_rocks);
      CHECK(expiries(to_rocks, {"a", "b", "c", "d"}) == want);
      CHECK((contents(to_rocks) == std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}, {"d", "4"}}));
      // They keep expiring there: past a's deadline, only b and d.
      clock.advance(8s);
      CHECK((contents(to_mem) == std::map<std::string, std::string>{{"b", "2"}, {"d", "4"}}));
      CHECK((contents(to_rocks) == std::map<std::string, std::string>{{"b", "2"}, {"d", "4"}}));
      clock.set(t0 + 2001);
    }
  }

  TEST_CASE("deadlines round-trip in keyspaces (version 3 with a keyspace table), through any_store too") {
    temp_dir tmp;
    fake_clock clock;
    const keel::deadline_ms t0 = clock.now();
    auto rocks = open_rocks_clock(tmp.path() / "src", clock);
    auto users = rocks.keyspace("users");
    REQUIRE(users);
    REQUIRE(users->put("u1", "x", {.ttl = 5s}));
    REQUIRE(users->put("u2", "y"));
    REQUIRE(rocks.put("plain", "z"));
    keel::any_store any(std::move(rocks));
    const auto file = tmp.path() / "ks.dump";
    auto info = keel::export_dump(any, file);
    REQUIRE(info);
    CHECK(info->version == 3);
    CHECK(info->deadlines == 1);
    CHECK((info->keyspaces == std::vector<std::string>{"", "users"}));
    auto dst = open_memory_clock(clock);
    REQUIRE(keel::import_dump(dst, file));
    auto dusers = dst.keyspace("users");
    REQUIRE(dusers);
    CHECK(*dusers->expiry("u1") == keel::key_expiry{true, t0 + 5000});
    CHECK(*dusers->expiry("u2") == keel::key_expiry{true, std::nullopt});
    CHECK(*dst.expiry("plain") == keel::key_expiry{true, std::nullopt});
  }

  TEST_CASE("stores that never used ttl export byte for byte the format of before; old dumps import unchanged") {
    temp_dir tmp;
    fake_clock clock;
    const std::vector<raw_record> flat = {{0, "a", "1"}, {0, "b", "22"}, {0, std::string("\0", 1), "nul"}};
    std::vector<raw_record> sorted_flat = {flat[2], flat[0], flat[1]};
    const std::string v1 = fixture_dump(1, {}, sorted_flat);
    auto mem = open_memory_clock(clock);
    auto rocks = open_rocks_clock(tmp.path() / "db", clock);
    for (const auto& r : flat) {
      REQUIRE(mem.put(r.key, r.value));
      REQUIRE(rocks.put(r.key, r.value));
    }
    REQUIRE(keel::export_dump(mem, tmp.path() / "mem.dump"));
    REQUIRE(keel::export_dump(rocks, tmp.path() / "rocks.dump"));
    CHECK(slurp(tmp.path() / "mem.dump") == v1);
    CHECK(slurp(tmp.path() / "rocks.dump") == v1);
    // With keyspaces: version 2, as before. A ttl in keyspace "other" of
    // RocksDB (its own tag) leaves the export of keyspace "users" alone.
    auto users = rocks.keyspace("users");
    REQUIRE(users);
    REQUIRE(users->put("u", "v"));
    std::vector<raw_record> v2_records = {sorted_flat[0], sorted_flat[1], sorted_flat[2], {1, "u", "v"}};
    std::string v2 = fixture_dump(2, {"", "users"}, v2_records);
    v2.replace(v2.size() - 8, 4, std::string("\x01\0\0\0", 4));  // the sorted flag, and the CRC again
    v2.resize(v2.size() - 4);
    keel::detail::put_u32(v2, keel::detail::crc32c(v2));
    REQUIRE(keel::export_dump(rocks, tmp.path() / "rocks2.dump"));
    CHECK(slurp(tmp.path() / "rocks2.dump") == v2);
    auto other = rocks.keyspace("other");
    REQUIRE(other);
    REQUIRE(other->put("o", "1", {.ttl = 1h}));
    keel::dump_writer w;
    REQUIRE(w.open(tmp.path() / "users.dump"));
    REQUIRE(keel::export_to(*users, w));
    CHECK(slurp(tmp.path() / "users.dump") == fixture_dump(1, {}, {{0, "u", "v"}}));

    // The fixtures (what keel wrote before deadlines) import into stores
    // with expiry: every key permanent.
    spit(tmp.path() / "v1.dump", v1);
    spit(tmp.path() / "v2.dump", v2);
    auto dst = open_memory_clock(clock);
    auto in1 = keel::import_dump(dst, tmp.path() / "v1.dump");
    REQUIRE(in1);
    CHECK(in1->version == 1);
    CHECK(in1->deadlines == 0);
    auto dst_rocks = open_rocks_clock(tmp.path() / "dst", clock);
    REQUIRE(keel::import_dump(dst_rocks, tmp.path() / "v2.dump"));
    for (const auto& r : flat) {
      CHECK(*dst.expiry(r.key) == keel::key_expiry{true, std::nullopt});
      CHECK(*dst_rocks.expiry(r.key) == keel::key_expiry{true, std::nullopt});
    }
    auto dusers = dst_rocks.keyspace("users");
    REQUIRE(dusers);
    CHECK(*dusers->expiry("u") == keel::key_expiry{true, std::nullopt});
  }

  TEST_CASE("a record whose deadline has passed at import is skipped and counted; copy does the same") {
    temp_dir tmp;
    fake_clock src_clock, dst_clock;
    const keel::deadline_ms t0 = src_clock.now();
    auto mem = open_memory_clock(src_clock);
    fill_ttl(mem);  // c (1 s) is live at the export
    const auto file = tmp.path() / "ttl.dump";
    auto info = keel::export_dump(mem, file);
    REQUIRE(info);
    CHECK(info->deadlines == 3);
    dst_clock.advance(10s);  // the destination's clock is 10 s on: a (10 s) and c (1 s) have passed
    for (int rocks_side = 0; rocks_side < 2; ++rocks_side) {
      CAPTURE(rocks_side);
      auto check = [&](auto& dst, std::uint64_t skipped) {
        CHECK(skipped == 2);
        CHECK((contents(dst) == std::map<std::string, std::string>{{"b", "2"}, {"d", "4"}}));
        CHECK(*dst.expiry("d") == keel::key_expiry{true, t0 + 60000});
        CHECK(*dst.expiry("a") == keel::key_expiry{});
      };
      if (rocks_side) {
        auto dst = open_rocks_clock(tmp.path() / "imp", dst_clock);
        auto in = keel::import_dump(dst, file);
        REQUIRE(in);
        CHECK(in->records == 4);
        check(dst, in->expired_skipped);
        auto cdst = open_rocks_clock(tmp.path() / "copy", dst_clock);
        auto n = keel::copy(mem, cdst);
        REQUIRE(n);
        check(cdst, n->expired_skipped);
      } else {
        auto dst = open_memory_clock(dst_clock);
        auto in = keel::import_dump(dst, file);
        REQUIRE(in);
        check(dst, in->expired_skipped);
        auto cdst = open_memory_clock(dst_clock);
        auto n = keel::copy(mem, cdst);
        REQUIRE(n);
        CHECK(n->records == 4);
        check(cdst, n->expired_skipped);
      }
    }
  }

  TEST_CASE("copy carries deadlines: memory -> RocksDB in keyspaces, RocksDB -> any_store on memory") {
    temp_dir tmp;
    fake_clock clock;
    const keel::deadline_ms t0 = clock.now();
    auto mem = open_memory_clock(clock);
    auto sessions = mem.keyspace("sessions");
    REQUIRE(sessions);
    REQUIRE(sessions->put("s1", "tok", {.ttl = 30s}));
    REQUIRE(mem.put("p", "perm"));
    REQUIRE(mem.put("t", "temp", {.ttl = 2s}));
    auto rocks = open_rocks_clock(tmp.path() / "db", clock);
    auto n = keel::copy(mem, rocks);
    REQUIRE(n);
    CHECK(n->records == 3);
    auto rs = rocks.keyspace("sessions");
    REQUIRE(rs);
    CHECK(*rs->expiry("s1") == keel::key_expiry{true, t0 + 30000});
    CHECK(*rocks.expiry("t") == keel::key_expiry{true, t0 + 2000});
    CHECK(*rocks.expiry("p") == keel::key_expiry{true, std::nullopt});
    keel::any_store dst(open_memory_clock(clock));
    REQUIRE(keel::copy(rocks, dst));
    auto* live = dst.get_if<keel::MemoryPolicy>();
    REQUIRE(live);
    CHECK(*live->expiry("t") == keel::key_expiry{true, t0 + 2000});
    auto ds = live->keyspace("sessions");
    REQUIRE(ds);
    CHECK(*ds->expiry("s1") == keel::key_expiry{true, t0 + 30000});
  }

  TEST_CASE("deadlines into a destination without expiry: refused with not_supported, nothing written") {
    temp_dir tmp;
    fake_clock clock;
    auto mem = open_memory_clock(clock);
    fill_ttl(mem);
    const auto file = tmp.path() / "ttl.dump";
    REQUIRE(keel::export_dump(mem, file));
    // A destination that keeps no ttl (as a backend without expiry: etcd,
    // PostgreSQL, hybrid before its expiry) says so by takes_ttl().
    struct no_expiry {
      std::map<std::string, std::string> data;
      bool takes_ttl() const { return false; }
      keel::result<void> write(const keel::write_batch& b) {
        for (const auto& op : b) data.insert_or_assign(std::string(op.key), std::string(op.value));
        return {};
      }
    };
    for (bool skip_verify : {false, true}) {
      no_expiry dst;
      keel::import_options o;
      o.skip_verify = skip_verify;
      auto r = keel::import_dump(dst, file, o);
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::not_supported);
      CHECK(r.error().message().find("holds 3 records with a deadline") != std::string::npos);
      CHECK(dst.data.empty());
    }
    no_expiry cdst;
    auto c = keel::copy(mem, cdst);
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::not_supported);
    CHECK(cdst.data.empty());
    // A dump without deadlines goes into it as before.
    auto plain = keel::memory_store::open({});
    REQUIRE(plain);
    REQUIRE(plain->put("k", "v"));
    REQUIRE(keel::export_dump(*plain, tmp.path() / "plain.dump"));
    no_expiry pdst;
    REQUIRE(keel::import_dump(pdst, tmp.path() / "plain.dump"));
    CHECK(pdst.data.size() == 1);
    if constexpr (!keel::expiry_policy<keel::HybridPolicy<>>) {  // the hybrid store before its expiry
      auto hy = keel::hybrid_store::open({.path = tmp.path() / "hy"});
      REQUIRE(hy);
      auto r = keel::import_dump(*hy, file);
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == errc::not_supported);
      CHECK(contents(*hy).empty());
    }
  }

  TEST_CASE("dump_writer and dump_reader: a deadline needs allow_deadlines(); a cut deadline is damage") {
    temp_dir tmp;
    keel::dump_writer w;
    REQUIRE(w.open(tmp.path() / "w.dump"));
    auto bad = w.add(keel::keyspace_name(""), "k", "v", keel::deadline_ms{5});
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code() == errc::invalid_argument);
    REQUIRE(w.allow_deadlines());
    REQUIRE(w.add(keel::keyspace_name(""), "k", "v", keel::deadline_ms{-5}));
    REQUIRE(w.add("l", "w"));
    CHECK_FALSE(w.allow_deadlines());  // after a record
    auto info = w.finish();
    REQUIRE(info);
    CHECK(info->version == 3);
    CHECK(info->deadlines == 1);
    // Layout: header, table {""}, one block: (0*2+1, deadline, k, v), (0, l, w).
    std::string bytes = slurp(tmp.path() / "w.dump");
    const std::size_t block = 16 + 16 + 1;
    REQUIRE(bytes.substr(block, 4) == "BLK1");
    const std::string payload = bytes.substr(block + 16, keel::detail::get_u32(bytes.data() + block + 8));
    std::string want;
    keel::detail::put_varint(want, 1);
    keel::detail::put_u64(want, static_cast<std::uint64_t>(std::int64_t{-5}));
    want += std::string("\x01k\x01v\x00\x01l\x01w", 9);
    CHECK(payload == want);
    auto v = keel::verify_dump(tmp.path() / "w.dump");
    REQUIRE(v);
    CHECK(v->deadlines == 1);
    // A record whose deadline is cut short by the block's end: corruption.
    std::string cut(1, '\x01');
    cut += std::string(3, '\0');
    std::string f(keel::dump_magic);
    keel::detail::put_u32(f, 3);
    keel::detail::put_u32(f, keel::detail::crc32c(f));
    std::string names(1, '\0');
    f += "KSP2";
    keel::detail::put_u32(f, 1);
    keel::detail::put_u32(f, 1);
    keel::detail::put_u32(f, keel::detail::crc32c(names));
    f += names + "BLK1";
    keel::detail::put_u32(f, 1);
    keel::detail::put_u32(f, static_cast<std::uint32_t>(cut.size()));
    keel::detail::put_u32(f, keel::detail::crc32c(cut));
    f += cut;
    spit(tmp.path() / "cut.dump", f);
    auto c = keel::verify_dump(tmp.path() / "cut.dump");
    REQUIRE_FALSE(c);
    CHECK(c.error().code() == errc::corruption);
  }

  TEST_CASE("keel import, export and migrate carry deadlines and print the expired ones skipped") {
    using keel::test::run_cli;
    temp_dir tmp;
    const keel::deadline_ms now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    const keel::deadline_ms later = now + 3600 * 1000;
    const std::string dump = (tmp.path() / "ttl.dump").string();
    {
      keel::dump_writer w;
      REQUIRE(w.open(dump));
      REQUIRE(w.allow_deadlines());
      REQUIRE(w.add(keel::keyspace_name(""), "gone", "1", keel::deadline_ms{1000}));  // 1970: passed
      REQUIRE(w.add(keel::keyspace_name(""), "kept", "22", later));
      REQUIRE(w.add("plain", "333"));
      REQUIRE(w.finish());
    }
    const std::string db = (tmp.path() / "db").string();
    auto imp = run_cli({"--db", db, "--json", "import", dump});
    CHECK(imp.status == 0);
    CHECK(imp.out == "{\"records\":3,\"payload_bytes\":19,\"expired_skipped\":1}\n");
    auto text = run_cli({"--db", (tmp.path() / "db2").string(), "import", dump});
    CHECK(text.status == 0);
    CHECK(text.says("imported 3 records from " + dump + " (1 of them had expired"));
    {
      auto rocks = open_rocks(db);
      CHECK((contents(rocks) == std::map<std::string, std::string>{{"kept", "22"}, {"plain", "333"}}));
      auto e = rocks.expiry("kept");
      REQUIRE(e);
      REQUIRE(e->deadline);
      CHECK(*e->deadline >= later);
      CHECK(*e->deadline <= later + 5000);  // the ttl counts from the write: a few ms later at most
      CHECK(*rocks.expiry("plain") == keel::key_expiry{true, std::nullopt});
    }
    const std::string out = (tmp.path() / "out.dump").string();
    auto exp = run_cli({"--db", db, "export", out});
    CHECK(exp.status == 0);
    CHECK(exp.says("exported 2 records to " + out));
    CHECK(exp.says("; 1 with a ttl)"));
    auto v = keel::verify_dump(out);
    REQUIRE(v);
    CHECK(v->version == 3);
    CHECK(v->deadlines == 1);
    auto mig = run_cli({"--json", "migrate", db, (tmp.path() / "moved").string()});
    CHECK(mig.status == 0);
    CHECK(mig.out == "{\"records\":2,\"payload_bytes\":14}\n");
    {
      auto moved = open_rocks(tmp.path() / "moved");
      auto e = moved.expiry("kept");
      REQUIRE(e);
      REQUIRE(e->deadline);
      CHECK(*e->deadline >= later);
      CHECK(*e->deadline <= later + 5000);
    }
    if constexpr (!keel::expiry_policy<keel::HybridPolicy<>>) {  // a store without expiry: refused, exit 5
      auto hy = run_cli({"--hybrid", (tmp.path() / "hy").string(), "import", dump});
      CHECK(hy.status == 5);
      CHECK(hy.says("holds 2 records with a deadline"));
      CHECK(hy.says("nothing was written"));
      auto hm = run_cli({"migrate", db, "hybrid:" + (tmp.path() / "hy2").string()});
      CHECK(hm.status == 5);
      CHECK(hm.says("the destination has no expiry"));
    }
  }
}
