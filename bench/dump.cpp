// keel_dump_bench: moving data in bulk (issue 6), against raw RocksDB
// iterate-and-put loops in the same run. Google Benchmark; docs/dump-format.md
// ("Throughput") has the results.
//
//   build-bench/bench/keel_dump_bench [--keel-records=N] [--keel-value-bytes=B]
//                                     [--keel-dir=DIR] [benchmark flags]
//
// A source RocksDB of N keys ("key%012d", B pseudo-random bytes each; default
// 1,000,000 x 100) is built once, flushed. Each benchmark iteration moves all
// of it into a fresh destination (its creation and removal are not timed;
// closing it, which syncs its WAL, is):
//   raw_put        raw RocksDB: iterate the source, DB::Put every entry
//   raw_batch      raw RocksDB: iterate the source, WriteBatch of 1000 entries
//   export         keel::export_dump (source -> file, fsynced)
//   verify         keel::verify_dump (read the dump, check every checksum)
//   import_batches keel::import_dump_batches into RocksDB (verify pass + 4 MiB batches)
//   import_sst     keel::import_dump into RocksDB (verify pass + SstFileWriter + IngestExternalFile)
//   copy           keel::copy RocksDB -> RocksDB (4 MiB batches)
//   import_memory  keel::import_dump into a memory store
// Times are wall-clock (manual timing around the timed part); the
// records_per_second counter is N over that time.
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <keel/copy.hpp>
#include <keel/dump.hpp>
#include <keel/dump_rocksdb.hpp>
#include <keel/keel.hpp>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::uint64_t records = 1000000;
std::size_t value_bytes = 100;
fs::path base;  // everything goes below it; removed at exit

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_dump_bench: %s\n", what.c_str());
  std::exit(1);
}

rocksdb::DB* raw_open(const fs::path& p) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  if (auto s = rocksdb::DB::Open(o, p.string(), &db); !s.ok()) die("open " + p.string() + ": " + s.ToString());
  return db;
}

void raw_close(rocksdb::DB* db) {
  (void)db->FlushWAL(true);
  (void)db->Close();
  delete db;
}

template <class R>
void must(const R& r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
}

const fs::path& source() {
  static const fs::path src = [] {
    fs::path p = base / "src";
    rocksdb::DB* db = raw_open(p);
    std::mt19937_64 rng(42);
    rocksdb::WriteBatch wb;
    std::string v(value_bytes, '\0');
    char k[32];
    for (std::uint64_t i = 0; i < records; ++i) {
      std::snprintf(k, sizeof k, "key%012llu", static_cast<unsigned long long>(i));
      for (auto& c : v) c = static_cast<char>(rng());
      wb.Put(k, v);
      if (wb.Count() == 1000) {
        if (!db->Write(rocksdb::WriteOptions(), &wb).ok()) die("fill source");
        wb.Clear();
      }
    }
    if (!db->Write(rocksdb::WriteOptions(), &wb).ok() || !db->Flush(rocksdb::FlushOptions()).ok()) die("fill source");
    raw_close(db);
    return p;
  }();
  return src;
}

// The dump of the source, written once (by keel::export_dump).
const fs::path& source_dump() {
  static const fs::path dump = [] {
    fs::path p = base / "src.dump";
    auto src = keel::rocks_store::open({.path = source()});
    must(src, "open source");
    must(keel::export_dump(*src, p), "export");
    must(src->close(), "close source");
    return p;
  }();
  return dump;
}

// Runs `timed` once per iteration into a fresh path; only `timed` is timed.
void run(benchmark::State& st, const std::function<void(const fs::path& dst)>& timed) {
  int round = 0;
  for (auto _ : st) {
    const fs::path dst = base / ("dst-" + std::to_string(round++));
    auto t0 = std::chrono::steady_clock::now();
    timed(dst);
    st.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::error_code ec;
    fs::remove_all(dst, ec);
  }
  st.counters["records_per_second"] = benchmark::Counter(static_cast<double>(records) * static_cast<double>(st.iterations()),
                                                         benchmark::Counter::kIsRate);
  st.counters["records"] = static_cast<double>(records);
}

void raw_loop(benchmark::State& st, bool batched) {
  rocksdb::DB* src = raw_open(source());
  run(st, [&](const fs::path& d) {
    rocksdb::DB* dst = raw_open(d);
    std::unique_ptr<rocksdb::Iterator> it(src->NewIterator(rocksdb::ReadOptions()));
    rocksdb::WriteBatch wb;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (batched) {
        wb.Put(it->key(), it->value());
        if (wb.Count() == 1000) {
          if (!dst->Write(rocksdb::WriteOptions(), &wb).ok()) die("raw_batch write");
          wb.Clear();
        }
      } else if (!dst->Put(rocksdb::WriteOptions(), it->key(), it->value()).ok()) {
        die("raw_put write");
      }
    }
    if (batched && !dst->Write(rocksdb::WriteOptions(), &wb).ok()) die("raw_batch write");
    it.reset();
    raw_close(dst);
  });
  raw_close(src);
}

void bm_raw_put(benchmark::State& st) { raw_loop(st, false); }
void bm_raw_batch(benchmark::State& st) { raw_loop(st, true); }

void bm_export(benchmark::State& st) {
  auto src = keel::rocks_store::open({.path = source()});
  must(src, "open source");
  run(st, [&](const fs::path& d) { must(keel::export_dump(*src, d), "export"); });
  must(src->close(), "close source");
}

void bm_verify(benchmark::State& st) {
  const fs::path& dump = source_dump();
  run(st, [&](const fs::path&) { must(keel::verify_dump(dump), "verify"); });
}

// The source dump into a fresh RocksDB store through `import`.
template <class Import>
void import_into_rocks(benchmark::State& st, Import import, const char* what) {
  const fs::path& dump = source_dump();
  run(st, [&](const fs::path& d) {
    auto dst = keel::rocks_store::open({.path = d});
    must(dst, "open destination");
    must(import(*dst, dump), what);
    must(dst->close(), "close destination");
  });
}

void bm_import_batches(benchmark::State& st) {
  import_into_rocks(
      st, [](auto& s, const fs::path& f) { return keel::import_dump_batches(s, f); }, "import_dump_batches");
}

void bm_import_sst(benchmark::State& st) {
  import_into_rocks(st, [](auto& s, const fs::path& f) { return keel::import_dump(s, f); }, "import_dump");
}

void bm_copy(benchmark::State& st) {
  auto src = keel::rocks_store::open({.path = source()});
  must(src, "open source");
  run(st, [&](const fs::path& d) {
    auto dst = keel::rocks_store::open({.path = d});
    must(dst, "open destination");
    must(keel::copy(*src, *dst), "copy");
    must(dst->close(), "close destination");
  });
  must(src->close(), "close source");
}

void bm_import_memory(benchmark::State& st) {
  const fs::path& dump = source_dump();
  run(st, [&](const fs::path&) {
    auto dst = keel::memory_store::open({});
    must(dst, "open memory");
    must(keel::import_dump(*dst, dump), "import_dump (memory)");
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  fs::path dir = fs::temp_directory_path();
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.rfind("--keel-records=", 0) == 0) {
      records = std::strtoull(argv[i] + 15, nullptr, 10);
    } else if (a.rfind("--keel-value-bytes=", 0) == 0) {
      value_bytes = std::strtoul(argv[i] + 19, nullptr, 10);
    } else if (a.rfind("--keel-dir=", 0) == 0) {
      dir = std::string(a.substr(11));
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (records == 0) die("--keel-records must be a positive number");
  base = dir / ("keel-dump-bench-" + std::to_string(::getpid()));
  fs::create_directories(base);

  for (auto [name, fn] : std::initializer_list<std::pair<const char*, void (*)(benchmark::State&)>>{
           {"raw_put", bm_raw_put},
           {"raw_batch", bm_raw_batch},
           {"export", bm_export},
           {"verify", bm_verify},
           {"import_batches", bm_import_batches},
           {"import_sst", bm_import_sst},
           {"copy", bm_copy},
           {"import_memory", bm_import_memory},
       }) {
    benchmark::RegisterBenchmark(name, fn)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::AddCustomContext("records", std::to_string(records));
  benchmark::AddCustomContext("value_bytes", std::to_string(value_bytes));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(base, ec);
}
