// The conformance suite's close guarantee under repetition: every backend
// closes so that its path reopens at once, 1000 times in a row, with a cursor
// and a snapshot alive at each close. A file of its own (shard "reopen",
// tests/meson.build) because it is the suite's longest case on RocksDB (about
// a minute per RocksDB backend), so that it runs beside the other cases.
#include <doctest/doctest.h>

#include <string>

#include "support/backends.hpp"
#include "support/scale.hpp"

using keel::errc;
using keel::test::open_or_fail;

TEST_SUITE("conformance") {
  TEST_CASE_TEMPLATE("1000 open/close/reopen cycles with a live cursor and snapshot", B, KEEL_BACKENDS) {
    B backend;
    // KEEL_TEST_CYCLES lowers the count for sanitizer builds (.ci/run); 1000 otherwise.
    const long cycles = keel::test::scaled("KEEL_TEST_CYCLES", 1000);
    for (int cycle = 0; cycle < cycles; ++cycle) {
      auto store = open_or_fail(backend);
      if constexpr (B::persistent) {
        auto count = store.get("count");
        REQUIRE(count);
        REQUIRE(count->value_or("0") == std::to_string(cycle));
      }
      REQUIRE(store.put("count", std::to_string(cycle + 1)));
      auto cursor = store.scan();
      REQUIRE(cursor.valid());
      auto snap = store.snapshot();
      REQUIRE(snap.valid());
      auto closed = store.close();
      if (!closed) FAIL("close failed at cycle " << cycle << ": " << closed.error().message());
      CHECK_FALSE(store.is_open());
      if (cycle % 100 == 0) CHECK(snap.get("count").error() == errc::closed);
    }
  }
}
