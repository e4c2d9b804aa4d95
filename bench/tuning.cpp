// Which RocksDB settings keel's DefaultTuning uses, and why: raw RocksDB
// (no keel code) with RocksDB's own defaults, then one setting changed at a
// time, then keel::DefaultTuning and keel::MacOSTuning, all in one process.
//
//   build-bench/bench/keel_tuning_bench [--keel-keys=N] [Google Benchmark flags]
//
// Workloads (each variant its own DB of N keys, default 1M; 16-byte keys,
// 100-byte incompressible values, bulk loaded in key order, flushed and fully
// compacted):
//   get_miss/<variant>   get of an absent key that sorts between present ones
//   get_hit/<variant>    get of a random present key, value copied out
//   scan1000/<variant>   a prefix scan visiting 1000 entries
//   put/<variant>        overwrite a random key (runs after the reads)
//   amp/<variant>        a fresh DB per variant: N puts in random order, then N
//                        random overwrites, in 100-put batches, then flushes and
//                        waits for compactions to settle. Counters: write_amp = bytes
//                        RocksDB wrote to SST files (flush + compaction, from
//                        its statistics) / user bytes written; space_amp = SST
//                        bytes / (N * 116) live bytes; cf_wamp = the "Sum"
//                        W-Amp of RocksDB's compaction stats (rocksdb.cfstats).
// docs/benchmarks.md ("RocksDB tuning") has the results and the reasoning.
#include <benchmark/benchmark.h>
#include <keel/rocksdb.hpp>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kKeyLen = 16, kValueLen = 100, kScanLen = 1000;
std::size_t g_keys = 1000000;
fs::path g_dir;

void die(const std::string& what) {
  std::fprintf(stderr, "keel tuning bench: %s\n", what.c_str());
  std::exit(2);
}
void must(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.ToString());
}

struct key_buf {
  char b[kKeyLen];
  rocksdb::Slice slice() const { return {b, kKeyLen}; }
};
key_buf make_key(std::uint64_t i, char last = '0') {
  key_buf k;
  std::memcpy(k.b, "user", 4);
  for (int d = 14; d >= 4; --d) {
    k.b[d] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
  k.b[15] = last;
  return k;
}
const std::string& value_pool() {
  static const std::string pool = [] {
    std::string p(1 << 20, '\0');
    std::mt19937_64 rng(42);
    for (auto& c : p) c = static_cast<char>(rng());
    return p;
  }();
  return pool;
}
rocksdb::Slice value_for(std::uint64_t i) {
  return {value_pool().data() + (i * 104729u) % (value_pool().size() - kValueLen), kValueLen};
}
struct rng_t {
  std::uint64_t s;
  explicit rng_t(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t below(std::uint64_t n) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (s * 0x2545F4914F6CDD1Dull) % n;
  }
};

// ---------------------------------------------------------------------------
// Variants: RocksDB defaults plus one change each, then keel's tunings.
// ---------------------------------------------------------------------------
rocksdb::BlockBasedTableOptions table_defaults() { return {}; }
void set_table(rocksdb::Options& o, const rocksdb::BlockBasedTableOptions& t) {
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
}
struct variant {
  const char* name;
  std::function<void(rocksdb::Options&)> apply;
};
const std::vector<variant>& variants() {
  static const std::vector<variant> v = {
      {"rocks_defaults", [](rocksdb::Options&) {}},
      {"bloom10",
       [](rocksdb::Options& o) {
         auto t = table_defaults();
         t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
         set_table(o, t);
       }},
      {"bloom10_hits",  // optimize_filters_for_hits: no filter on the last level
       [](rocksdb::Options& o) {
         auto t = table_defaults();
         t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
         set_table(o, t);
         o.optimize_filters_for_hits = true;
       }},
      {"cache64M",
       [](rocksdb::Options& o) {
         auto t = table_defaults();
         t.block_cache = rocksdb::NewLRUCache(64 << 20);
         set_table(o, t);
       }},
      {"block16k",
       [](rocksdb::Options& o) {
         auto t = table_defaults();
         t.block_size = 16 * 1024;
         set_table(o, t);
       }},
      {"index_in_cache",  // cache_index_and_filter_blocks + pin L0
       [](rocksdb::Options& o) {
         auto t = table_defaults();
         t.cache_index_and_filter_blocks = true;
         t.pin_l0_filter_and_index_blocks_in_cache = true;
         set_table(o, t);
       }},
      {"dynamic_levels", [](rocksdb::Options& o) { o.level_compaction_dynamic_level_bytes = true; }},
      {"lz4_zstd",  // the tuning guide's compression: LZ4, ZSTD on the last level
       [](rocksdb::Options& o) {
         o.compression = rocksdb::kLZ4Compression;
         o.bottommost_compression = rocksdb::kZSTD;
       }},
      {"keel_default", [](rocksdb::Options& o) { keel::DefaultTuning::apply(o); }},
      {"keel_macos", [](rocksdb::Options& o) { keel::MacOSTuning::apply(o); }},
  };
  return v;
}

struct db_handle {
  rocksdb::DB* db = nullptr;
  fs::path path;
  ~db_handle() {
    if (db) {
      (void)db->Close();
      delete db;
    }
    fs::remove_all(path);
  }
};

std::unique_ptr<db_handle> open_db(const variant& v, const std::string& tag,
                                   std::shared_ptr<rocksdb::Statistics> stats = nullptr) {
  auto h = std::make_unique<db_handle>();
  h->path = g_dir / (tag + "-" + v.name);
  fs::remove_all(h->path);
  rocksdb::Options o;
  v.apply(o);
  o.create_if_missing = true;
  o.statistics = std::move(stats);
  must(rocksdb::DB::Open(o, h->path.string(), &h->db), "open");
  return h;
}

// The read datasets: built on first use, kept until main() ends.
std::map<std::string, std::unique_ptr<db_handle>> g_datasets;
rocksdb::DB& dataset(const variant& v) {
  auto& h = g_datasets[v.name];
  if (!h) {
    h = open_db(v, "read");
    for (std::size_t i = 0; i < g_keys; i += 10000) {
      rocksdb::WriteBatch b;
      for (std::size_t j = i; j < std::min(g_keys, i + 10000); ++j) b.Put(make_key(j).slice(), value_for(j));
      must(h->db->Write(rocksdb::WriteOptions(), &b), "load");
    }
    must(h->db->Flush(rocksdb::FlushOptions()), "flush");
    must(h->db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr), "compact");
  }
  return *h->db;
}

void bm_get(benchmark::State& st, const variant& v, bool hit) {
  rocksdb::DB& db = dataset(v);
  rng_t rng(hit ? 1 : 2);
  std::string value;
  std::int64_t found = 0;
  for (auto _ : st) {
    rocksdb::Status s = db.Get(rocksdb::ReadOptions(), make_key(rng.below(g_keys), hit ? '0' : '1').slice(), &value);
    benchmark::DoNotOptimize(value);
    found += s.ok();
  }
  if (found != (hit ? std::int64_t(st.iterations()) : 0)) st.SkipWithError("wrong get result");
}

void bm_scan(benchmark::State& st, const variant& v) {
  rocksdb::DB& db = dataset(v);
  rng_t rng(5);
  std::size_t seen = 0;
  for (auto _ : st) {
    key_buf lo = make_key(rng.below(g_keys / kScanLen) * kScanLen);
    std::string l(lo.b, 12), h = *keel::key_range::prefix_successor(l);
    rocksdb::Slice ls(l), hs(h);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &ls;
    ro.iterate_upper_bound = &hs;
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(ro));
    for (it->Seek(ls); it->Valid(); it->Next()) {
      benchmark::DoNotOptimize(it->key().data());
      benchmark::DoNotOptimize(it->value().data());
      ++seen;
    }
  }
  if (seen != st.iterations() * kScanLen) st.SkipWithError("scan did not see 1000 keys");
}

void bm_put(benchmark::State& st, const variant& v) {
  rocksdb::DB& db = dataset(v);
  rng_t rng(3);
  for (auto _ : st) {
    std::uint64_t i = rng.below(g_keys);
    must(db.Put(rocksdb::WriteOptions(), make_key(i).slice(), value_for(i + 1)), "put");
  }
}

std::uint64_t int_property(rocksdb::DB& db, const std::string& name) {
  std::uint64_t v = 0;
  db.GetIntProperty(name, &v);
  return v;
}

void bm_amp(benchmark::State& st, const variant& v) {
  for (auto _ : st) {
    auto stats = rocksdb::CreateDBStatistics();
    auto h = open_db(v, "amp", stats);
    std::vector<std::uint64_t> order(g_keys);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    rng_t rng(9);
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t i = 0; i < g_keys; i += 100) {
        rocksdb::WriteBatch b;
        for (std::size_t j = i; j < std::min(g_keys, i + 100); ++j) {
          std::uint64_t k = pass == 0 ? order[j] : rng.below(g_keys);
          b.Put(make_key(k).slice(), value_for(k + pass));
        }
        must(h->db->Write(rocksdb::WriteOptions(), &b), "amp write");
      }
    }
    // Everything into SST files, then let compactions settle.
    must(h->db->Flush(rocksdb::FlushOptions()), "amp flush");
    for (int i = 0; i < 600; ++i) {
      if (int_property(*h->db, "rocksdb.compaction-pending") == 0 &&
          int_property(*h->db, "rocksdb.num-running-compactions") == 0 &&
          int_property(*h->db, "rocksdb.num-running-flushes") == 0)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const double user = double(stats->getTickerCount(rocksdb::BYTES_WRITTEN));
    const double written =
        double(stats->getTickerCount(rocksdb::FLUSH_WRITE_BYTES) + stats->getTickerCount(rocksdb::COMPACT_WRITE_BYTES));
    const double sst = double(int_property(*h->db, "rocksdb.total-sst-files-size"));
    const double mem = double(int_property(*h->db, "rocksdb.cur-size-all-mem-tables"));
    std::map<std::string, std::string> cf;
    h->db->GetMapProperty(rocksdb::DB::Properties::kCFStats, &cf);
    st.counters["write_amp"] = written / user;
    st.counters["space_amp"] = sst / double(g_keys * (kKeyLen + kValueLen));
    st.counters["memtable_MB"] = mem / 1048576.0;
    st.counters["cf_wamp"] = cf.count("compaction.Sum.WriteAmp") ? std::atof(cf["compaction.Sum.WriteAmp"].c_str()) : -1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = {argv[0]};
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("--keel-keys="))
      g_keys = std::stoull(std::string(a.substr(12)));
    else if (a.starts_with("--keel-dir="))
      dir = a.substr(11);
    else
      rest.push_back(argv[i]);
  }
  if (g_keys < kScanLen || g_keys % kScanLen) die("--keel-keys must be a multiple of 1000");
  bool own = dir.empty();
  if (own) {
    char tmpl[] = "/tmp/keel-tuning-XXXXXX";
    if (!mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
  }
  g_dir = dir;
  fs::create_directories(g_dir);
  const std::string n = std::to_string(g_keys);
  auto name = [&](const char* w, const variant& v) { return std::string(w) + "/" + v.name + "/" + n; };
  for (const auto& v : variants())
    benchmark::RegisterBenchmark(name("get_miss", v).c_str(),
                                 [&v](benchmark::State& st) { bm_get(st, v, false); });
  for (const auto& v : variants())
    benchmark::RegisterBenchmark(name("get_hit", v).c_str(),
                                 [&v](benchmark::State& st) { bm_get(st, v, true); });
  for (const auto& v : variants())
    benchmark::RegisterBenchmark(name("scan1000", v).c_str(),
                                 [&v](benchmark::State& st) { bm_scan(st, v); })
        ->Unit(benchmark::kMicrosecond);
  for (const auto& v : variants())
    benchmark::RegisterBenchmark(name("put", v).c_str(),
                                 [&v](benchmark::State& st) { bm_put(st, v); });
  for (const auto& v : variants())
    benchmark::RegisterBenchmark(name("amp", v).c_str(),
                                 [&v](benchmark::State& st) { bm_amp(st, v); })
        ->Iterations(1)
        ->Unit(benchmark::kSecond);
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_datasets.clear();
  if (own) fs::remove_all(g_dir);
  return 0;
}
