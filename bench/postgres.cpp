// keel_postgres_bench: the PostgreSQL backend against a raw libpq client
// doing the same work with prepared statements and binary parameters (same
// server, same run, same table shape).
//
// Starts its own server (tests/support/pg_server.hpp: Unix socket in a
// temporary directory on /dev/shm, fsync off) unless KEEL_BENCH_PG names a
// conninfo. Every benchmark reports p50/p99 latency (µs, averaged over
// threads) next to Google Benchmark's own time.
//
//   build/bench/keel_postgres_bench --benchmark_min_time=2
//
// --scan-memory[=KEYS] runs a separate measurement instead (no Google
// Benchmark): client memory of a scan over KEYS rows (default 1,000,000; an
// 8-byte key and a 100-byte value each, loaded by the server itself with
// generate_series, so loading costs this process nothing). For each scan it
// returns freed heap to the system (malloc_trim), resets the process's peak
// RSS (writing 5 to /proc/self/clear_refs), takes VmRSS as the baseline,
// opens a store and scans, and reports VmHWM - baseline: the peak growth the
// scan (with its store's open) caused. A warm-up scan first brings libpq's
// and keel's code into memory. Scans: keel's cursor at page_size 1000 (the
// default) and 10000, reversed, a range of a tenth of the keys, and, for
// comparison, a raw libpq SELECT of the whole table in one result (what a
// client without keyset paging holds).
//
// Expiry (issue 29): BM_get_keel<store_half_ttl> and
// BM_scan1000_keel<store_half_ttl> read a table where every second key has a
// ttl (the deadline column, reads filtered by it), against BM_get_keel<store>
// (a table that never saw a ttl: the guarded statements of today) and the raw
// client (today's statements without the guard).
#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <keel/postgres.hpp>

#include "../tests/support/pg_server.hpp"

#include "latencies.hpp"

namespace {

std::unique_ptr<keel::test::pg_server> g_server;
std::string g_conninfo;
constexpr int keys = 10000;
const std::string value256(256, 'v');

std::string key(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "k%06d", i);
  return buf;
}

using keel_bench::latencies;  // bench/latencies.hpp

// ---- keel ------------------------------------------------------------------
// A store on `table` filled with the benchmark's keys; with `half_ttl`,
// every second key carries a ttl of an hour (expiry, issue 29: the table
// then has its deadline column, and reads filter by it).
keel::postgres_store open_filled(const char* table, bool half_ttl) {
  keel::postgres_options o;
  o.conninfo = g_conninfo;
  o.table = table;
  o.pool_size = 16;
  auto st = keel::postgres_store::open(o);
  if (!st) {
    std::fprintf(stderr, "open: %s\n", st.error().message().c_str());
    std::exit(1);
  }
  keel::write_batch b;
  for (int i = 0; i < keys; ++i) {
    if (half_ttl && i % 2 == 0)
      b.put(key(i), value256, keel::put_options{.ttl = std::chrono::hours(1)});
    else
      b.put(key(i), value256);
  }
  if (!st->write(b)) std::exit(1);
  return std::move(*st);
}

keel::postgres_store& store() {
  static keel::postgres_store s = open_filled("bench_keel", false);
  return s;
}

keel::postgres_store& store_half_ttl() {
  static keel::postgres_store s = open_filled("bench_keel_half_ttl", true);
  return s;
}

// ---- raw libpq ---------------------------------------------------------------
// One connection per thread, statements prepared once, binary parameters and
// results: what a hand-written client does.
struct raw_client {
  PGconn* c = nullptr;
  raw_client() {
    c = PQconnectdb(g_conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::fprintf(stderr, "raw connect: %s", PQerrorMessage(c));
      std::exit(1);
    }
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
    exec("CREATE TABLE IF NOT EXISTS bench_raw (key bytea PRIMARY KEY, value bytea NOT NULL)");
    prepare("get", "SELECT value FROM bench_raw WHERE key = $1", {17});
    prepare("put", "INSERT INTO bench_raw (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            {17, 17});
    prepare("put_many",
            "INSERT INTO bench_raw (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (key) DO UPDATE "
            "SET value = EXCLUDED.value",
            {1001, 1001});
    prepare("scan", "SELECT key, value FROM bench_raw WHERE key >= $1 ORDER BY key LIMIT $2", {17, 23});
  }
  ~raw_client() { PQfinish(c); }
  void exec(const char* sql) {
    PGresult* r = PQexec(c, sql);
    PQclear(r);
  }
  void prepare(const char* name, const char* sql, std::vector<Oid> types) {
    PQclear(PQprepare(c, name, sql, int(types.size()), types.data()));
  }
  PGresult* run(const char* name, std::vector<std::string_view> args) {
    const char* v[2];
    int l[2], f[2];
    for (std::size_t i = 0; i < args.size(); ++i) {
      v[i] = args[i].data();
      l[i] = int(args[i].size());
      f[i] = 1;
    }
    return PQexecPrepared(c, name, int(args.size()), v, l, f, 1);
  }
  bool ok(PGresult* r) {
    const auto st = PQresultStatus(r);
    PQclear(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  }
};
raw_client& raw() {
  thread_local raw_client client;
  return client;
}
void fill_raw() {
  static bool done = [] {
    keel::write_batch b;
    std::vector<std::string> k, v;
    for (int i = 0; i < keys; ++i) {
      k.push_back(key(i));
      v.push_back(value256);
    }
    std::string ka = keel::detail::pg::encode_bytea_array(k), va = keel::detail::pg::encode_bytea_array(v);
    return raw().ok(raw().run("put_many", {ka, va}));
  }();
  (void)done;
}

void check(bool ok, benchmark::State& s) {
  if (!ok) s.SkipWithError("operation failed");
}

// ---- benchmarks ----------------------------------------------------------------
template <keel::postgres_store& (*Store)()>
void BM_get_keel(benchmark::State& s) {
  auto& st = Store();
  latencies lat(s);
  int i = int(s.thread_index()) * 997;
  for (auto _ : s) lat.time([&] { check(st.get(key(i++ % keys)).has_value(), s); });
}
void BM_get_raw(benchmark::State& s) {
  fill_raw();
  auto& r = raw();
  latencies lat(s);
  int i = int(s.thread_index()) * 997;
  for (auto _ : s) lat.time([&] { const std::string k = key(i++ % keys); check(r.ok(r.run("get", {k})), s); });
}
void BM_put_keel(benchmark::State& s) {
  auto& st = store();
  latencies lat(s);
  int i = int(s.thread_index()) * 997;
  for (auto _ : s) lat.time([&] { check(st.put(key(i++ % keys), value256).has_value(), s); });
}
void BM_put_raw(benchmark::State& s) {
  fill_raw();
  auto& r = raw();
  latencies lat(s);
  int i = int(s.thread_index()) * 997;
  for (auto _ : s) lat.time([&] { const std::string k = key(i++ % keys); check(r.ok(r.run("put", {k, value256})), s); });
}
// 100 puts: one batch vs 100 single puts (keel), and the raw batch.
void BM_batch100_keel(benchmark::State& s) {
  auto& st = store();
  latencies lat(s);
  int at = 0;
  for (auto _ : s) {
    keel::write_batch b;
    for (int i = 0; i < 100; ++i) b.put(key((at + i) % keys), value256);
    at += 100;
    lat.time([&] { check(st.write(b).has_value(), s); });
  }
}
void BM_100puts_keel(benchmark::State& s) {
  auto& st = store();
  latencies lat(s);
  int at = 0;
  for (auto _ : s) {
    lat.time([&] {
      for (int i = 0; i < 100; ++i) check(st.put(key((at + i) % keys), value256).has_value(), s);
    });
    at += 100;
  }
}
void BM_batch100_raw(benchmark::State& s) {
  fill_raw();
  auto& r = raw();
  latencies lat(s);
  int at = 0;
  for (auto _ : s) {
    std::vector<std::string> k, v;
    for (int i = 0; i < 100; ++i) {
      k.push_back(key((at + i) % keys));
      v.push_back(value256);
    }
    at += 100;
    const std::string ka = keel::detail::pg::encode_bytea_array(k), va = keel::detail::pg::encode_bytea_array(v);
    lat.time([&] { check(r.ok(r.run("put_many", {ka, va})), s); });
  }
}
// 1000 keys in key order: keel's cursor vs a raw keyset-paged query (pages of 1000).
template <keel::postgres_store& (*Store)()>
void BM_scan1000_keel(benchmark::State& s) {
  auto& st = Store();
  latencies lat(s);
  for (auto _ : s) {
    lat.time([&] {
      std::size_t n = 0, bytes = 0;
      auto c = st.scan(keel::key_range::between(key(2000), key(3000)));
      for (const auto& e : c) {
        ++n;
        bytes += e.value.size();
      }
      check(n == 1000 && !c.error(), s);
      benchmark::DoNotOptimize(bytes);
    });
  }
}
void BM_scan1000_raw(benchmark::State& s) {
  fill_raw();
  auto& r = raw();
  latencies lat(s);
  std::string limit(4, '\0');
  limit[2] = char(1000 >> 8);
  limit[3] = char(1000 & 0xff);
  for (auto _ : s) {
    lat.time([&] {
      const std::string lo = key(2000);
      PGresult* res = r.run("scan", {lo, limit});
      std::size_t bytes = 0;
      for (int i = 0; i < PQntuples(res); ++i) bytes += std::size_t(PQgetlength(res, i, 1));
      check(PQntuples(res) == 1000, s);
      benchmark::DoNotOptimize(bytes);
      PQclear(res);
    });
  }
}
// A transaction: 2 gets, 2 puts (keel: run_transaction; raw: SERIALIZABLE BEGIN .. COMMIT).
void BM_tx_keel(benchmark::State& s) {
  auto& st = store();
  latencies lat(s);
  int i = int(s.thread_index()) * 4999;
  for (auto _ : s) {
    lat.time([&] {
      const std::string a = key(i % keys), b = key((i + 1) % keys);
      i += 2;
      auto r = st.run_transaction([&](auto& tx) -> keel::result<void> {
        if (auto v = tx.get(a); !v) return std::move(v).error();
        if (auto v = tx.get(b); !v) return std::move(v).error();
        if (auto w = tx.put(a, value256); !w) return w;
        return tx.put(b, value256);
      });
      check(r.has_value(), s);
    });
  }
}
void BM_tx_raw(benchmark::State& s) {
  fill_raw();
  auto& r = raw();
  latencies lat(s);
  int i = int(s.thread_index()) * 4999;
  for (auto _ : s) {
    lat.time([&] {
      const std::string a = key(i % keys), b = key((i + 1) % keys);
      i += 2;
      for (;;) {
        r.exec("BEGIN ISOLATION LEVEL SERIALIZABLE");
        bool ok = r.ok(r.run("get", {a})) && r.ok(r.run("get", {b})) && r.ok(r.run("put", {a, value256})) &&
                  r.ok(r.run("put", {b, value256}));
        PGresult* c = PQexec(r.c, ok ? "COMMIT" : "ROLLBACK");
        ok = ok && PQresultStatus(c) == PGRES_COMMAND_OK;
        PQclear(c);
        if (ok) break;
      }
    });
  }
}

BENCHMARK(BM_get_keel<store>)->UseRealTime();
BENCHMARK(BM_get_raw)->UseRealTime();
BENCHMARK(BM_get_keel<store_half_ttl>)->UseRealTime();  // expiry: half the keys with a ttl
BENCHMARK(BM_get_keel<store>)->Threads(8)->UseRealTime();
BENCHMARK(BM_get_raw)->Threads(8)->UseRealTime();
BENCHMARK(BM_put_keel)->UseRealTime();
BENCHMARK(BM_put_raw)->UseRealTime();
BENCHMARK(BM_put_keel)->Threads(8)->UseRealTime();
BENCHMARK(BM_put_raw)->Threads(8)->UseRealTime();
BENCHMARK(BM_batch100_keel)->UseRealTime();
BENCHMARK(BM_100puts_keel)->UseRealTime();
BENCHMARK(BM_batch100_raw)->UseRealTime();
BENCHMARK(BM_scan1000_keel<store>)->UseRealTime();
BENCHMARK(BM_scan1000_raw)->UseRealTime();
BENCHMARK(BM_scan1000_keel<store_half_ttl>)->UseRealTime();  // expiry: half the keys with a ttl
BENCHMARK(BM_tx_keel)->UseRealTime();
BENCHMARK(BM_tx_raw)->UseRealTime();

// ---- --scan-memory -------------------------------------------------------------
// A /proc/self/status field in KiB (VmRSS, VmHWM); -1 when missing.
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}
// Resets VmHWM to the current RSS (Linux 4.0+); false when not possible.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

struct scan_memory {
  long baseline_kib = 0, peak_kib = 0;
  std::size_t rows = 0;
  double seconds = 0;
  bool in_order = true;
};

// Runs `scan` (which returns the rows it read and whether they were in
// order) between a peak reset and a VmHWM read.
template <class F>
scan_memory measure(F&& scan) {
  scan_memory m;
  ::malloc_trim(0);  // memory freed by earlier scans goes back to the system: not in the baseline
  reset_peak_rss();
  m.baseline_kib = status_kib("VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  auto [rows, ordered] = scan();
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.peak_kib = status_kib("VmHWM");
  m.rows = rows;
  m.in_order = ordered;
  return m;
}

std::string scan_key(long i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "k%07ld", i);
  return buf;
}

int run_scan_memory(long n) {
  if (!reset_peak_rss() || status_kib("VmHWM") < 0) {
    std::fprintf(stderr, "keel_postgres_bench: --scan-memory needs Linux's /proc/self/clear_refs and VmHWM\n");
    return 1;
  }
  keel::postgres_options o;
  o.conninfo = g_conninfo;
  o.table = "bench_scan_memory";
  {
    auto created = keel::postgres_store::open(o);  // creates the table
    if (!created) {
      std::fprintf(stderr, "open: %s\n", created.error().message().c_str());
      return 1;
    }
  }
  {
    PGconn* c = PQconnectdb(g_conninfo.c_str());
    const std::string load =
        "TRUNCATE bench_scan_memory; INSERT INTO bench_scan_memory SELECT convert_to('k' || lpad(g::text, 7, '0'), "
        "'UTF8'), convert_to(repeat('v', 100), 'UTF8') FROM generate_series(0, " + std::to_string(n - 1) +
        ") g";
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    for (const std::string& sql : {load, std::string("VACUUM ANALYZE bench_scan_memory")}) {
      PGresult* r = PQexec(c, sql.c_str());
      if (ok && PQresultStatus(r) != PGRES_COMMAND_OK) {
        ok = false;
        std::fprintf(stderr, "load: %s", PQresultErrorMessage(r));
      }
      PQclear(r);
    }
    PQfinish(c);
    if (!ok) return 1;
    std::printf("loaded %ld rows (8-byte keys, 100-byte values) in %.1f s, server-side\n", n,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  auto keel_scan = [&](std::size_t page_size, keel::key_range range) {
    return [&o, page_size, range] {
      keel::postgres_options po = o;
      po.page_size = page_size;
      auto st = keel::postgres_store::open(po);
      if (!st) std::exit(1);
      std::size_t rows = 0;
      bool ordered = true;
      std::string last;
      auto c = st->scan(range);
      for (const auto& e : c) {
        if (rows > 0 && (range.is_reversed() ? !(std::string_view(last) > e.key) : !(std::string_view(last) < e.key)))
          ordered = false;
        last.assign(e.key);
        ++rows;
      }
      if (c.error()) {
        std::fprintf(stderr, "scan: %s\n", c.error()->message().c_str());
        std::exit(1);
      }
      return std::pair<std::size_t, bool>(rows, ordered);
    };
  };
  // Warm-up: libpq, the pool, and one statement of each kind are in memory
  // before the first measurement.
  (void)measure(keel_scan(1000, keel::key_range::until(scan_key(2000))));

  struct line {
    const char* what;
    scan_memory m;
    long expected;
  };
  std::vector<line> lines;
  lines.push_back({"keel scan, all keys, page_size 1000 (default)", measure(keel_scan(1000, keel::key_range::all())), n});
  lines.push_back({"keel scan, all keys, page_size 10000", measure(keel_scan(10000, keel::key_range::all())), n});
  lines.push_back({"keel scan, all keys reversed, page_size 1000",
                   measure(keel_scan(1000, keel::key_range::all().reversed())), n});
  lines.push_back({"keel scan, a tenth of the keys, page_size 1000",
                   measure(keel_scan(1000, keel::key_range::until(scan_key(n / 10)))), n / 10});
  lines.push_back({"raw libpq, one SELECT of the whole table (no paging)", measure([&] {
                     PGconn* c = PQconnectdb(g_conninfo.c_str());
                     PGresult* r = PQexecParams(c, "SELECT key, value FROM bench_scan_memory ORDER BY key", 0, nullptr,
                                                nullptr, nullptr, nullptr, 1);
                     std::size_t rows = static_cast<std::size_t>(PQntuples(r));
                     PQclear(r);
                     PQfinish(c);
                     return std::pair<std::size_t, bool>(rows, true);
                   }),
                   n});
  std::printf("%-56s %10s %12s %12s %8s\n", "scan", "rows", "baseline", "peak growth", "seconds");
  bool all_ok = true;
  for (const auto& l : lines) {
    const bool ok = static_cast<long>(l.m.rows) == l.expected && l.m.in_order;
    all_ok = all_ok && ok;
    std::printf("%-56s %10zu %9ld KiB %9ld KiB %8.2f%s\n", l.what, l.m.rows, l.m.baseline_kib,
                l.m.peak_kib - l.m.baseline_kib, l.m.seconds, ok ? "" : "  WRONG ROWS OR ORDER");
  }
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  long scan_memory_keys = 0;  // --scan-memory[=KEYS]
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--scan-memory" || a.rfind("--scan-memory=", 0) == 0) {
      scan_memory_keys = a.size() > 14 ? std::atol(argv[i] + 14) : 1000000;
      for (int k = i; k + 1 < argc; ++k) argv[k] = argv[k + 1];
      --argc;
      --i;
    }
  }
  if (const char* c = std::getenv("KEEL_BENCH_PG"); c && *c) {
    g_conninfo = c;
  } else {
    if (auto why = keel::test::pg_server::unavailable()) {
      std::fprintf(stderr, "keel_postgres_bench: %s\n", why->c_str());
      return 1;
    }
    g_server = std::make_unique<keel::test::pg_server>();
    g_conninfo = g_server->conninfo();
  }
  if (scan_memory_keys > 0) {
    const int rc = run_scan_memory(scan_memory_keys);
    g_server.reset();
    return rc;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_server.reset();
  return 0;
}
