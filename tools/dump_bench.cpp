// keel_dump_bench: export/import throughput against a raw RocksDB
// iterate-and-put loop (docs/dump-format.md, "Throughput").
//
//   keel_dump_bench [N=1000000] [VALUE_BYTES=100] [DIR=/tmp]
//
// Fills a source RocksDB with N keys ("key%012d", VALUE_BYTES of pseudo-random
// bytes), then times, each into a fresh database:
//   raw-put        raw RocksDB: iterate the source, DB::Put every entry
//   raw-batch      raw RocksDB: iterate the source, WriteBatch of 1000 entries
//   export         keel::export_dump (source -> file, fsynced)
//   verify         keel::verify_dump (read + check every checksum)
//   import-batch   keel::import_dump_batches (verify pass + 4 MiB write batches)
//   import-sst     keel::import_dump on RocksDB (verify pass + SstFileWriter + IngestExternalFile)
//   copy           keel::copy (source -> destination store, 4 MiB batches)
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <keel/copy.hpp>
#include <keel/dump.hpp>
#include <keel/dump_rocksdb.hpp>
#include <keel/keel.hpp>
#include <random>
#include <string>

namespace fs = std::filesystem;

namespace {

struct timer {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

void report(const char* name, double secs, std::uint64_t n, std::uint64_t bytes) {
  std::printf("%-14s %8.3f s  %10.0f records/s  %8.1f MB/s\n", name, secs, static_cast<double>(n) / secs,
              static_cast<double>(bytes) / secs / 1e6);
  std::fflush(stdout);
}

rocksdb::DB* raw_open(const fs::path& p) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  auto s = rocksdb::DB::Open(o, p.string(), &db);
  if (!s.ok()) {
    std::fprintf(stderr, "open %s: %s\n", p.c_str(), s.ToString().c_str());
    std::exit(1);
  }
  return db;
}

void raw_close(rocksdb::DB* db) {
  (void)db->FlushWAL(true);
  (void)db->Close();
  delete db;
}

template <class F>
void must(const F& r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, r.error().message().c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  std::size_t vbytes = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100;
  fs::path base = fs::path(argc > 3 ? argv[3] : "/tmp") / ("keel-dump-bench-" + std::to_string(::getpid()));
  fs::create_directories(base);
  std::printf("%llu records, 15-byte keys, %zu-byte values, in %s\n", static_cast<unsigned long long>(n), vbytes,
              base.c_str());

  // Source.
  {
    rocksdb::DB* src = raw_open(base / "src");
    std::mt19937_64 rng(42);
    rocksdb::WriteBatch wb;
    std::string v(vbytes, '\0');
    char k[32];
    for (std::uint64_t i = 0; i < n; ++i) {
      std::snprintf(k, sizeof k, "key%012llu", static_cast<unsigned long long>(i));
      for (auto& c : v) c = static_cast<char>(rng());
      wb.Put(k, v);
      if (wb.Count() == 1000) {
        src->Write(rocksdb::WriteOptions(), &wb);
        wb.Clear();
      }
    }
    src->Write(rocksdb::WriteOptions(), &wb);
    src->Flush(rocksdb::FlushOptions());
    raw_close(src);
  }
  const std::uint64_t bytes = n * (15 + vbytes);

  // raw RocksDB iterate-and-put loops.
  for (int batched = 0; batched < 2; ++batched) {
    rocksdb::DB* src = raw_open(base / "src");
    rocksdb::DB* dst = raw_open(base / (batched ? "raw-batch" : "raw-put"));
    timer t;
    std::unique_ptr<rocksdb::Iterator> it(src->NewIterator(rocksdb::ReadOptions()));
    rocksdb::WriteBatch wb;
    std::uint64_t count = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (batched) {
        wb.Put(it->key(), it->value());
        if (wb.Count() == 1000) {
          dst->Write(rocksdb::WriteOptions(), &wb);
          wb.Clear();
        }
      } else {
        dst->Put(rocksdb::WriteOptions(), it->key(), it->value());
      }
      ++count;
    }
    if (batched) dst->Write(rocksdb::WriteOptions(), &wb);
    it.reset();
    raw_close(dst);
    report(batched ? "raw-batch" : "raw-put", t.seconds(), count, bytes);
    raw_close(src);
  }

  auto src = keel::rocks_store::open({.path = base / "src"});
  must(src, "open src");
  const fs::path dump = base / "all.dump";
  {
    timer t;
    auto info = keel::export_dump(*src, dump);
    must(info, "export");
    report("export", t.seconds(), info->records, bytes);
    std::printf("               dump file: %llu bytes\n", static_cast<unsigned long long>(info->file_bytes));
  }
  {
    timer t;
    auto info = keel::verify_dump(dump);
    must(info, "verify");
    report("verify", t.seconds(), info->records, bytes);
  }
  {
    auto dst = keel::rocks_store::open({.path = base / "import-batch"});
    must(dst, "open");
    timer t;
    auto info = keel::import_dump_batches(*dst, dump);
    must(info, "import-batch");
    must(dst->close(), "close");
    report("import-batch", t.seconds(), info->records, bytes);
  }
  {
    auto dst = keel::rocks_store::open({.path = base / "import-sst"});
    must(dst, "open");
    timer t;
    auto info = keel::import_dump(*dst, dump);
    must(info, "import-sst");
    must(dst->close(), "close");
    report("import-sst", t.seconds(), info->records, bytes);
  }
  {
    auto dst = keel::rocks_store::open({.path = base / "copy"});
    must(dst, "open");
    timer t;
    auto info = keel::copy(*src, *dst);
    must(info, "copy");
    must(dst->close(), "close");
    report("copy", t.seconds(), info->records, bytes);
  }
  {
    auto dst = keel::memory_store::open({});
    timer t;
    auto info = keel::import_dump(*dst, dump);
    must(info, "import-memory");
    report("import-memory", t.seconds(), info->records, bytes);
  }
  must(src->close(), "close");
  std::error_code ec;
  fs::remove_all(base, ec);
}
