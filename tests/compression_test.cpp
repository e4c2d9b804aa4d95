// Value compression of the memory backend (memory_options::compression,
// docs/compression.md): round trips, dictionaries, snapshots taken before a
// recompression, persistence, stats, and a compression keel lacks.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include <keel/any_store.hpp>
#include <keel/memory.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.hpp"

using keel::compression;
using keel::errc;
using keel::memory_options;
using keel::memory_store;

namespace {

// The compressions this build has (none always).
std::vector<compression> built_compressions() {
  std::vector<compression> c{compression::none};
#if KEEL_HAVE_LZ4
  c.push_back(compression::lz4);
#endif
#if KEEL_HAVE_ZSTD
  c.push_back(compression::zstd);
#endif
  return c;
}

// Package records in the shape of `dpkg --status` turned into JSON, 175-840
// bytes, from a fixed vocabulary and a fixed seed: like real records, they
// share field names and many words but differ in detail.
struct corpus_gen {
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  std::uint64_t next() {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  }
  std::string pick(const std::vector<std::string>& v) { return v[next() % v.size()]; }
  std::string record(int i) {
    static const std::vector<std::string> words = {
        "library", "development", "files", "for", "the", "GNU", "C", "compiler", "runtime", "shared",
        "utilities", "Python", "module", "documentation", "support", "data", "tools", "kernel", "headers",
        "network", "protocol", "implementation", "parser", "XML", "JSON", "fast", "compression", "SSL",
        "cryptographic", "graphical", "interface", "plugin", "server", "client", "daemon", "system"};
    static const std::vector<std::string> maint = {
        "Debian GCC Maintainers <debian-gcc@lists.debian.org>", "Debian Python Team <team+python@tracker.debian.org>",
        "GNU Libc Maintainers <debian-glibc@lists.debian.org>", "Debian X Strike Force <debian-x@lists.debian.org>"};
    static const std::vector<std::string> archs = {"amd64", "all"};
    std::string name = "lib" + pick(words) + std::to_string(next() % 40) + "-" + pick(words);
    std::string r = "{\"Package\":\"" + name + "\",\"Status\":\"install ok installed\",\"Priority\":\"optional\"," +
                    "\"Section\":\"libs\",\"Installed-Size\":\"" + std::to_string(next() % 90000) +
                    "\",\"Maintainer\":\"" + pick(maint) + "\",\"Architecture\":\"" + pick(archs) +
                    "\",\"Version\":\"" + std::to_string(next() % 12) + "." + std::to_string(next() % 30) + "-" +
                    std::to_string(i % 7) + "\",\"Depends\":\"libc6 (>= 2." + std::to_string(next() % 36) + ")";
    const int deps = static_cast<int>(next() % 6);
    for (int d = 0; d < deps; ++d) r += ", lib" + pick(words) + std::to_string(next() % 9);
    r += "\",\"Description\":\"";
    const int n = 6 + static_cast<int>(next() % 70);
    for (int w = 0; w < n; ++w) r += (w ? " " : "") + pick(words);
    r += "\"}";
    return r;
  }
};

std::string key_of(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "pkg/%06d", i);
  return b;
}

keel::result<memory_store> open_with(compression c, std::filesystem::path persist = {}) {
  memory_options o;
  o.compression = c;
  o.persist_path = std::move(persist);
  return memory_store::open(o);
}

// Every byte value, and the sizes named by the issue: empty, 1 byte, 1 MiB.
std::vector<std::pair<std::string, std::string>> edge_values() {
  std::vector<std::pair<std::string, std::string>> v;
  v.emplace_back("edge/empty", "");
  for (int b = 0; b < 256; ++b) v.emplace_back("edge/byte/" + std::to_string(b), std::string(1, static_cast<char>(b)));
  std::string all;
  for (int r = 0; r < 8; ++r)
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  v.emplace_back("edge/all-bytes", all);
  std::string mib;
  corpus_gen g;
  while (mib.size() < (std::size_t{1} << 20)) mib += g.record(static_cast<int>(mib.size()));
  mib.resize(std::size_t{1} << 20);
  v.emplace_back("edge/1MiB", mib);
  std::string zeros(std::size_t{1} << 20, '\0');
  v.emplace_back("edge/1MiB-zeros", zeros);
  return v;
}

void put_corpus(memory_store& s, int n, int first = 0) {
  corpus_gen g;
  for (int i = 0; i < first; ++i) g.record(i);
  for (int i = first; i < first + n; ++i) REQUIRE(s.put(key_of(i), g.record(i)));
}

void check_corpus(const memory_store& s, int n, int first = 0) {
  corpus_gen g;
  for (int i = 0; i < first; ++i) g.record(i);
  for (int i = first; i < first + n; ++i) {
    auto v = s.get(key_of(i));
    REQUIRE(v);
    REQUIRE(v->has_value());
    CHECK(**v == g.record(i));
  }
}

}  // namespace

TEST_SUITE("compression") {
  TEST_CASE("round trip of every byte value and of empty, 1-byte and 1 MiB values, before and after training") {
    for (compression c : built_compressions()) {
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      const auto edges = edge_values();
      for (const auto& [k, v] : edges) REQUIRE(s->put(k, v));
      put_corpus(*s, 600);  // about 300 KiB: enough to train a dictionary
      auto check_all = [&] {
        for (const auto& [k, v] : edges) {
          auto got = s->get(k);
          REQUIRE(got);
          REQUIRE(got->has_value());
          CHECK(**got == v);
        }
        check_corpus(*s, 600);
        std::vector<std::string_view> keys{"edge/empty", "edge/1MiB", "pkg/000007", "missing"};
        auto many = s->multi_get(keys);
        REQUIRE(many);
        CHECK((*many)[0] == std::optional<std::string>(""));
        CHECK((*many)[1] == std::optional<std::string>(edges[edges.size() - 2].second));  // edge/1MiB
        CHECK((*many)[2] == std::optional<std::string>(**s->get("pkg/000007")));
        CHECK_FALSE((*many)[3].has_value());
        std::size_t n = 0;
        for (const auto& e : s->scan()) {
          ++n;
          auto got = s->get(e.key);
          REQUIRE(got);
          CHECK(**got == e.value);
        }
        CHECK(n == edges.size() + 600);
      };
      check_all();  // raw, before any dictionary
      REQUIRE(s->compact());
      CHECK(s->policy().dictionaries() == (c == compression::none ? 0u : 1u));
      check_all();  // compressed with the dictionary
      auto st = s->stats();
      REQUIRE(st);
      if (c == compression::none)
        CHECK(st->size_bytes == st->uncompressed_bytes);
      else
        CHECK(st->size_bytes < st->uncompressed_bytes / 2);
      // Overwrite some compressed values with raw ones, compress again.
      for (const auto& [k, v] : edges) REQUIRE(s->put(k, v + "x"));
      for (const auto& [k, v] : edges) CHECK(**s->get(k) == v + "x");
      REQUIRE(s->compact());
      for (const auto& [k, v] : edges) CHECK(**s->get(k) == v + "x");
    }
  }

  TEST_CASE("size_bytes shrinks for JSON records with a dictionary: zstd to at most 0.4x, lz4 to at most 0.6x") {
    for (compression c : built_compressions()) {
      if (c == compression::none) continue;
      CAPTURE(keel::to_string(c));
      {
        // Puts store raw: 500 records (about 330 KB) stay below the 1 MiB
        // after which the background pass starts, so nothing compresses them.
        auto small = open_with(c);
        REQUIRE(small);
        put_corpus(*small, 500);
        auto st = small->stats();
        REQUIRE(st);
        CHECK(st->size_bytes == st->uncompressed_bytes);
      }
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 5000);
      auto before = s->stats();
      REQUIRE(before);
      // About 3.3 MB: the background pass may have compressed part of it
      // already (it did, now and then, on a loaded machine), so only "not
      // more than raw" holds here; compact() below compresses the rest.
      CHECK(before->size_bytes <= before->uncompressed_bytes);
      REQUIRE(s->compact());
      auto after = s->stats();
      REQUIRE(after);
      // The same entries; only node splits on the way may differ.
      CHECK(after->uncompressed_bytes == doctest::Approx(before->uncompressed_bytes).epsilon(0.01));
      const double ratio = double(after->size_bytes) / double(after->uncompressed_bytes);
      MESSAGE(keel::to_string(c), ": held ", after->size_bytes, " of ", after->uncompressed_bytes, " bytes (", ratio, ")");
      CHECK(ratio <= (c == compression::zstd ? 0.4 : 0.6));
      check_corpus(*s, 5000);
    }
  }

  TEST_CASE("an any_store cursor reads compressed values run by run, both ways") {
    // basic_any_store walks a memory cursor's runs (fill()): each run's
    // compressed values are decompressed side by side and must stay intact
    // until the run is used up.
    for (compression c : built_compressions()) {
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 3000);
      REQUIRE(s->compact());
      auto st = s->stats();
      REQUIRE(st);
      if (c != compression::none) REQUIRE(st->size_bytes < st->uncompressed_bytes);  // values are held compressed
      keel::basic_any_store<keel::MemoryPolicy> any(std::move(*s));
      corpus_gen g;
      std::vector<std::string> records;
      for (int i = 0; i < 3000; ++i) records.push_back(g.record(i));
      int i = 0;
      for (const auto& e : any.scan()) {
        REQUIRE(i < 3000);
        CHECK(e.key == key_of(i));
        CHECK(e.value == records[static_cast<std::size_t>(i)]);
        ++i;
      }
      CHECK(i == 3000);
      i = 2499;
      for (const auto& e : any.scan(keel::key_range::between(key_of(1000), key_of(2500)).reversed())) {
        CHECK(e.key == key_of(i));
        CHECK(e.value == records[static_cast<std::size_t>(i)]);
        --i;
      }
      CHECK(i == 999);
    }
  }

  TEST_CASE("snapshots and cursors taken before a recompression read the right values") {
    for (compression c : built_compressions()) {
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 2000);
      auto snap = s->snapshot();
      auto cur = s->scan();
      for (int i = 0; i < 10; ++i) cur.advance();
      REQUIRE(s->compact());  // republishes every value compressed
      REQUIRE(s->put("pkg/000001", "new"));
      corpus_gen g;
      for (int i = 0; i < 2000; ++i) {
        auto v = snap.get(key_of(i));
        REQUIRE(v);
        CHECK(**v == g.record(i));
      }
      corpus_gen g2;
      for (int i = 0; i < 10; ++i) g2.record(i);
      int i = 10;
      for (const auto& e : cur) {
        CHECK(e.key == key_of(i));
        CHECK(e.value == g2.record(i));
        ++i;
      }
      CHECK(i == 2000);
      CHECK(**s->get("pkg/000001") == "new");
      // A snapshot taken after it reads the compressed values.
      auto later = s->snapshot();
      CHECK(**later.get("pkg/000002") == **snap.get("pkg/000002"));
    }
  }

  TEST_CASE("writes racing with compression passes: the last write wins, readers see whole values") {
    for (compression c : built_compressions()) {
      if (c == compression::none) continue;
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 3000);
      std::atomic<bool> done{false};
      std::atomic<int> bad{0};
      std::thread compactor([&] {
        while (!done.load()) {
          if (!s->compact()) bad.fetch_add(1);
        }
      });
      std::thread reader([&] {
        corpus_gen g;
        std::vector<std::string> want;
        for (int i = 0; i < 3000; ++i) want.push_back(g.record(i));
        while (!done.load()) {
          for (int i = 0; i < 3000; i += 7) {
            auto v = s->get(key_of(i));
            // Either the original record or a rewrite ("v2:" + record).
            if (!v || !v->has_value() || (**v != want[i] && **v != "v2:" + want[i])) bad.fetch_add(1);
          }
        }
      });
      corpus_gen g;
      for (int i = 0; i < 3000; ++i) {
        const std::string r = g.record(i);
        if (i % 3 == 0) REQUIRE(s->put(key_of(i), "v2:" + r));
      }
      done.store(true);
      compactor.join();
      reader.join();
      CHECK(bad.load() == 0);
      REQUIRE(s->compact());
      corpus_gen g3;
      for (int i = 0; i < 3000; ++i) {
        const std::string r = g3.record(i);
        CHECK(**s->get(key_of(i)) == (i % 3 == 0 ? "v2:" + r : r));
      }
    }
  }

  TEST_CASE("the background pass compresses once enough was written, without compact()") {
    for (compression c : built_compressions()) {
      if (c == compression::none) continue;
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 6000);  // about 3 MiB: passes start past 1 MiB
      // Wait for the compressor by watching the stat (no sleep: the
      // compressor publishes versions; give up after many polls).
      bool shrank = false;
      for (int polls = 0; polls < 200000 && !shrank; ++polls) {
        auto st = s->stats();
        REQUIRE(st);
        shrank = st->size_bytes < st->uncompressed_bytes * 3 / 4;
        if (!shrank) std::this_thread::yield();
      }
      CHECK(shrank);
      check_corpus(*s, 6000);
    }
  }

  TEST_CASE("a persisted compressed store reopens with every value, stored uncompressed in its file") {
    for (compression c : built_compressions()) {
      CAPTURE(keel::to_string(c));
      keel::test::temp_dir dir;
      const auto file = dir.path() / "store.keeldump";
      {
        auto s = open_with(c, file);
        REQUIRE(s);
        put_corpus(*s, 1500);
        REQUIRE(s->compact());
        REQUIRE(s->put("after", "compact"));  // in the log only
        REQUIRE(s->flush());                  // snapshot file from compressed entries
        REQUIRE(s->put("logged", std::string(3000, 'z')));
        REQUIRE(s->close());
      }
      // The file is a plain dump: readable by any reader, with no compression.
      {
        auto plain = open_with(compression::none, file);
        REQUIRE(plain);
        check_corpus(*plain, 1500);
        CHECK(**plain->get("after") == "compact");
        CHECK(**plain->get("logged") == std::string(3000, 'z'));
        REQUIRE(plain->close());
      }
      auto s = open_with(c, file);
      REQUIRE(s);
      check_corpus(*s, 1500);
      REQUIRE(s->compact());  // trains again from the reloaded values
      check_corpus(*s, 1500);
      CHECK(**s->get("logged") == std::string(3000, 'z'));
      auto st = s->stats();
      REQUIRE(st);
      if (c != compression::none) CHECK(st->size_bytes < st->uncompressed_bytes / 2);
      // checkpoint() writes values uncompressed too.
      REQUIRE(s->checkpoint(dir.path() / "copy.keeldump"));
      auto copy = open_with(compression::none, dir.path() / "copy.keeldump");
      REQUIRE(copy);
      check_corpus(*copy, 1500);
    }
  }

  TEST_CASE("the dictionary is saved beside the snapshot: a reopened store compresses with it, without training") {
    for (compression c : built_compressions()) {
      if (c == compression::none) continue;
      CAPTURE(keel::to_string(c));
      keel::test::temp_dir dir;
      const auto file = dir.path() / "store.keeldump";
      const auto dict = dir.path() / "store.keeldump.dict";
      {
        auto s = open_with(c, file);
        REQUIRE(s);
        put_corpus(*s, 1500);
        REQUIRE(s->compact());
        REQUIRE(s->policy().dictionaries() == 1);
        REQUIRE(s->close());
      }
      REQUIRE(std::filesystem::exists(dict));
      {
        auto s = open_with(c, file);
        REQUIRE(s);
        CHECK(s->policy().dictionary_loaded());
        CHECK(s->policy().dictionaries() == 1);  // loaded, not trained
        REQUIRE(s->compact());
        CHECK(s->policy().dictionaries() == 1);
        auto st = s->stats();
        REQUIRE(st);
        CHECK(st->size_bytes < st->uncompressed_bytes / 2);
        check_corpus(*s, 1500);
        // A checkpoint carries it too.
        REQUIRE(s->checkpoint(dir.path() / "copy.keeldump"));
        CHECK(std::filesystem::exists(dir.path() / "copy.keeldump.dict"));
      }
      // Damaged (one flipped bit), or saved by another compression: ignored, the data is whole.
      {
        std::string bytes;
        {
          std::ifstream in(dict, std::ios::binary);
          bytes.assign(std::istreambuf_iterator<char>(in), {});
        }
        bytes[bytes.size() / 2] ^= 0x10;
        std::ofstream(dict, std::ios::binary | std::ios::trunc) << bytes;
        auto s = open_with(c, file);
        REQUIRE(s);
        CHECK_FALSE(s->policy().dictionary_loaded());  // (its background pass may train one by now)
        check_corpus(*s, 1500);
        REQUIRE(s->compact());  // trains anew (unless the background pass did), and saves it at close
        CHECK(s->policy().dictionaries() == 1);
      }
      const compression other = c == compression::zstd ? compression::lz4 : compression::zstd;
      if (keel::detail::compression_missing(other)) continue;
      auto s = open_with(other, file);
      REQUIRE(s);
      CHECK_FALSE(s->policy().dictionary_loaded());
      check_corpus(*s, 1500);
    }
  }

  TEST_CASE("a new dictionary is trained once the values grew 8-fold; older values keep theirs") {
    for (compression c : built_compressions()) {
      if (c == compression::none) continue;
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 200);  // ~100 KiB: the first dictionary
      REQUIRE(s->compact());
      CHECK(s->policy().dictionaries() == 1);
      put_corpus(*s, 500, 200);  // ~250 KiB raw: not yet 8-fold the first sample
      REQUIRE(s->compact());
      CHECK(s->policy().dictionaries() == 1);
      put_corpus(*s, 2500, 700);  // 8-fold: a second dictionary
      REQUIRE(s->compact());
      CHECK(s->policy().dictionaries() == 2);
      check_corpus(*s, 3200);
      auto st = s->stats();
      REQUIRE(st);
      CHECK(st->size_bytes < st->uncompressed_bytes / 2);
    }
  }

  TEST_CASE("too little data trains no dictionary: values stay raw and readable") {
    for (compression c : built_compressions()) {
      CAPTURE(keel::to_string(c));
      auto s = open_with(c);
      REQUIRE(s);
      put_corpus(*s, 20);
      REQUIRE(s->compact());
      CHECK(s->policy().dictionaries() == 0);
      check_corpus(*s, 20);
      auto st = s->stats();
      REQUIRE(st);
      CHECK(st->size_bytes == st->uncompressed_bytes);
    }
  }

  TEST_CASE("a compression keel was built without, or no compression at all, fails open()") {
    auto zstd = open_with(compression::zstd);
#if KEEL_HAVE_ZSTD
    CHECK(zstd);
#else
    REQUIRE_FALSE(zstd);
    CHECK(zstd.error() == errc::not_supported);
    CHECK(zstd.error().message().find("libzstd") != std::string::npos);
#endif
    auto lz4 = open_with(compression::lz4);
#if KEEL_HAVE_LZ4
    CHECK(lz4);
#else
    REQUIRE_FALSE(lz4);
    CHECK(lz4.error() == errc::not_supported);
    CHECK(lz4.error().message().find("liblz4") != std::string::npos);
#endif
    auto bogus = open_with(static_cast<compression>(42));
    REQUIRE_FALSE(bogus);
    CHECK(bogus.error() == errc::invalid_argument);
  }
}
