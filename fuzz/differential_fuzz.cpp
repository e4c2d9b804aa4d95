// libFuzzer target: the differential harness (tests/support/differential.hpp)
// driven by the fuzzer's bytes. Each input is one sequence of operations
// (plain reads and writes, erase_range, multi_get, snapshots, several
// interleaved transactions checked against a serial model in commit order,
// keyspaces: create, drop, reads and writes through handles, batches
// across keyspaces, snapshots and cursors across drops; and expiry: puts,
// batches and transaction puts with ttls, bad ttls, moves of the fake clock
// both stores read, expiry(key), the sweep) on
// a fresh memory store and a fresh RocksDB store; the RocksDB store lives in an
// in-memory rocksdb::Env (a new one per input, so inputs are independent and
// nothing touches the disk but an empty directory keel needs for its
// registry). A disagreement prints the operation history and aborts.
//
//   meson setup build-fuzz -Dfuzz=true -Dbench=false   (with CXX=clang++)
//   meson compile -C build-fuzz differential_fuzz
//   build-fuzz/fuzz/differential_fuzz -max_total_time=60 corpus-dir fuzz/corpus
//
// Seed inputs (fuzz/corpus/): seed-ttl-* are recorded seeded runs of 400
// operations with transactions, keyspaces and expiry (KEEL_DIFF_WRITE_SEEDS=
// fuzz/corpus build/tests/keel_tests -tc='*recorded run*' writes them
// again); seed-tx-* are such runs recorded before expiry (with keyspaces),
// which still decode exactly as recorded (expiry took choices they never
// make). The other seeds are arbitrary bytes.
#include <rocksdb/env.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "support/differential.hpp"
#include "support/temp_dir.hpp"

namespace diff = keel::test::differential;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static keel::test::temp_dir tmp;  // removed at exit
  std::unique_ptr<rocksdb::Env> env(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  {
    diff::config cfg;
    cfg.rocks_path = tmp.path() / "db";
    cfg.rocks_env = env.get();
    cfg.reopen_per_mille = 10;
    diff::harness h(cfg);
    if (auto e = h.start()) {
      std::fprintf(stderr, "differential_fuzz: %s\n", e->c_str());
      std::abort();
    }
    diff::byte_source src(data, size);
    if (auto mismatch = h.run(src, 4096)) {
      std::fprintf(stderr, "differential_fuzz: mismatch: %s\n", mismatch->c_str());
      std::abort();
    }
  }  // the stores close before the Env goes
  return 0;
}
