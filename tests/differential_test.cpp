// Differential testing: the same random sequence of operations on a memory
// store, a RocksDB store and std::map models must give the same observable
// results (tests/support/differential.hpp). Seeded and deterministic; the
// libFuzzer target fuzz/differential_fuzz.cpp drives the same harness.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "support/differential.hpp"
#include "support/scale.hpp"
#include "support/temp_dir.hpp"

namespace diff = keel::test::differential;

TEST_SUITE("differential") {
  TEST_CASE("memory, RocksDB and a std::map model agree on random operation sequences") {
    // KEEL_DIFF_OPS: operations per seed (sanitizer builds lower it).
    const long ops_per_seed = keel::test::scaled("KEEL_DIFF_OPS", 4000);
    constexpr std::uint64_t seeds = 12;
    diff::stats total;
    for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
      CAPTURE(seed);
      keel::test::temp_dir tmp;
      diff::config cfg;
      cfg.rocks_path = tmp.path() / "db";
      diff::harness h(cfg);
      auto started = h.start();
      REQUIRE_MESSAGE(!started, *started);
      diff::prng_source src(0x6b65656c0000ULL + seed);
      auto mismatch = h.run(src, static_cast<std::uint64_t>(ops_per_seed));
      if (mismatch) FAIL("seed " << seed << ": " << *mismatch);
      total += h.counts();
    }
    CHECK(total.ops == static_cast<std::uint64_t>(ops_per_seed) * seeds);
    // The run exercised every kind of operation (the harness is not vacuous).
    CHECK(total.reopens > 0);
    CHECK(total.snapshot_reads > 0);
    CHECK(total.held_cursors > 0);
    MESSAGE("differential: " << total.ops << " operations (" << total.puts << " puts, " << total.erases
                             << " erases, " << total.batches << " batches, " << total.point_reads << " point reads, "
                             << total.scans << " scans, " << total.snapshots << " snapshots, "
                             << total.snapshot_reads << " snapshot reads, " << total.held_cursors
                             << " held cursors, " << total.reopens << " close+reopen)");
  }

  TEST_CASE("the harness detects a disagreement") {
    // A harness that could not fail would prove nothing: write behind its
    // back to the RocksDB store and check that the next full scan disagrees.
    keel::test::temp_dir tmp;
    diff::config cfg;
    cfg.rocks_path = tmp.path() / "db";
    cfg.reopen_per_mille = 0;
    diff::harness h(cfg);
    REQUIRE_FALSE(h.start());
    diff::prng_source src(7);
    REQUIRE_FALSE(h.run(src, 200));
    REQUIRE(h.sneak_put_rocks("\xff\xff\xff\xff\xff", "intruder"));
    auto mismatch = h.run(src, 0);  // only the final full comparison
    REQUIRE(mismatch);
    CHECK(mismatch->find("rocksdb scan") != std::string::npos);
  }
}
