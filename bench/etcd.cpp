// keel_etcd_bench: the etcd backend against a raw libcurl client doing the
// same gateway requests with no keel layer (and, with --python=SCRIPT,
// python3-etcd3 over gRPC through bench/etcd_python.py, same cluster, same run).
//
// Starts one etcd member (tests/support/etcd_cluster.hpp: 127.0.0.1, data
// directory on /dev/shm, i.e. tmpfs) unless KEEL_BENCH_ETCD names an endpoint.
// Every benchmark reports p50/p99 latency (µs, averaged over threads) next to
// Google Benchmark's own time; run with --benchmark_min_time=... as needed.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <keel/etcd.hpp>

#include "../tests/support/etcd_cluster.hpp"

#include "latencies.hpp"

namespace {

std::unique_ptr<keel::test::etcd_cluster> g_cluster;
std::string g_endpoint;

const std::string value256(256, 'v');

std::string key(const char* space, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s/%06d", space, i);
  return buf;
}

using keel_bench::latencies;  // bench/latencies.hpp

// ---- keel ------------------------------------------------------------------
keel::etcd_store& store(bool serializable = false) {
  static auto make = [](bool ser) {
    keel::etcd_options o;
    o.endpoints = {g_endpoint};
    o.prefix = "bench/";
    o.serializable_reads = ser;
    auto s = keel::etcd_store::open(o);
    if (!s) {
      std::fprintf(stderr, "open: %s\n", s.error().message().c_str());
      std::exit(1);
    }
    return std::move(*s);
  };
  static keel::etcd_store lin = make(false);
  static keel::etcd_store ser = make(true);
  return serializable ? ser : lin;
}

void check(bool ok, benchmark::State& s) {
  if (!ok) s.SkipWithError("operation failed");
}

void setup_data() {
  keel::write_batch b;
  for (int i = 0; i < 1000; ++i) {
    b.put(key("get", i), value256);
    if (b.size() == 100) {
      (void)store().write(b);
      b.clear();
    }
  }
  for (int i = 0; i < 1000; ++i) {
    b.put(key("scan", i), std::string(100, 's'));
    if (b.size() == 100) {
      (void)store().write(b);
      b.clear();
    }
  }
}

void keel_put(benchmark::State& s) {
  latencies l(s);
  int i = int(s.thread_index()) * 100000;
  for (auto _ : s) l.time([&] { check(bool(store().put(key("put", i++ % 1000), value256)), s); });
}
void keel_get(benchmark::State& s) {
  latencies l(s);
  int i = int(s.thread_index()) * 7;
  const bool ser = s.range(0) != 0;
  for (auto _ : s) l.time([&] { check(bool(store(ser).get(key("get", i++ % 1000))), s); });
}
void keel_scan1000(benchmark::State& s) {
  latencies l(s);
  for (auto _ : s)
    l.time([&] {
      std::size_t n = 0;
      auto c = store().scan(keel::key_range::prefix("scan/"));
      for (const auto& e : c) n += e.value.size() != 0;
      check(n == 1000 && !c.error(), s);
    });
}
void keel_batch100(benchmark::State& s) {
  latencies l(s);
  int round = 0;
  const std::string space = "batch" + std::to_string(s.thread_index());
  for (auto _ : s) {
    keel::write_batch b;
    for (int i = 0; i < 100; ++i) b.put(key(space.c_str(), i), value256);
    ++round;
    l.time([&] { check(bool(store().write(b)), s); });
  }
}
void keel_tx2r2w(benchmark::State& s) {
  latencies l(s);
  const std::string space = "tx" + std::to_string(s.thread_index());
  for (auto _ : s)
    l.time([&] {
      auto r = store().run_transaction([&](auto& tx) -> keel::result<void> {
        auto a = tx.get(key(space.c_str(), 0));
        auto b = tx.get(key(space.c_str(), 1));
        if (!a || !b) return keel::error(keel::errc::io_error, "read");
        if (auto p = tx.put(key(space.c_str(), 2), value256); !p) return p;
        return tx.put(key(space.c_str(), 3), value256);
      });
      check(bool(r), s);
    });
}

// ---- raw libcurl client: the same requests, one CURL handle per thread ----
struct raw_client {
  CURL* h = curl_easy_init();
  curl_slist* headers = nullptr;
  std::string response;
  raw_client() {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, +[](char* d, size_t sz, size_t n, void* u) {
      static_cast<std::string*>(u)->append(d, sz * n);
      return sz * n;
    });
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
  }
  ~raw_client() {
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
  }
  // POSTs and parses; null on failure.
  nlohmann::json post(const char* path, const std::string& body) {
    response.clear();
    const std::string url = g_endpoint + "/v3/" + path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(body.size()));
    long status = 0;
    if (curl_easy_perform(h) != CURLE_OK) return nullptr;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) return nullptr;
    return nlohmann::json::parse(response, nullptr, false);
  }
};
raw_client& raw() {
  thread_local raw_client c;
  return c;
}
using keel::detail::json_object;

void raw_put(benchmark::State& s) {
  latencies l(s);
  int i = int(s.thread_index()) * 100000;
  for (auto _ : s)
    l.time([&] {
      auto j = raw().post("kv/put", json_object().bytes("key", "bench/" + key("put", i++ % 1000)).bytes("value", value256).str());
      check(!j.is_null(), s);
    });
}
void raw_get(benchmark::State& s) {
  latencies l(s);
  int i = int(s.thread_index()) * 7;
  const bool ser = s.range(0) != 0;
  for (auto _ : s)
    l.time([&] {
      json_object o;
      o.bytes("key", "bench/" + key("get", i++ % 1000));
      if (ser) o.boolean("serializable", true);
      auto j = raw().post("kv/range", o.str());
      bool ok = !j.is_null() && j.contains("kvs");
      if (ok) benchmark::DoNotOptimize(keel::detail::json_bytes(j["kvs"][0], "value"));
      check(ok, s);
    });
}
void raw_scan1000(benchmark::State& s) {
  latencies l(s);
  for (auto _ : s)
    l.time([&] {
      auto j = raw().post("kv/range", json_object()
                                          .bytes("key", "bench/scan/")
                                          .bytes("range_end", "bench/scan0")
                                          .integer("limit", 1000)
                                          .str());
      std::size_t n = 0;
      if (!j.is_null() && j.contains("kvs"))
        for (const auto& kv : j["kvs"]) {
          auto k = keel::detail::json_bytes(kv, "key");
          auto v = keel::detail::json_bytes(kv, "value");
          n += !v.empty() && !k.empty();
        }
      check(n == 1000, s);
    });
}
void raw_batch100(benchmark::State& s) {
  latencies l(s);
  const std::string space = "batch" + std::to_string(s.thread_index());
  for (auto _ : s) {
    // The body is built inside the timed part, as keel builds its own.
    l.time([&] {
      std::string body = "{\"success\":[";
      for (int i = 0; i < 100; ++i) {
        if (i) body += ',';
        body += json_object().raw("request_put", json_object().bytes("key", "bench/" + key(space.c_str(), i)).bytes("value", value256).str()).str();
      }
      body += "]}";
      check(!raw().post("kv/txn", body).is_null(), s);
    });
  }
}
// A hand-written optimistic transaction: two gets (the first fixes the
// revision), then one txn comparing their mod revisions and writing two keys.
void raw_tx2r2w(benchmark::State& s) {
  latencies l(s);
  const std::string space = "bench/tx" + std::to_string(s.thread_index());
  for (auto _ : s)
    l.time([&] {
      auto a = raw().post("kv/range", json_object().bytes("key", key(space.c_str(), 0)).str());
      if (a.is_null()) return check(false, s);
      const auto rev = keel::detail::json_int(a["header"], "revision");
      auto b = raw().post("kv/range", json_object().bytes("key", key(space.c_str(), 1)).integer("revision", rev).str());
      if (b.is_null()) return check(false, s);
      auto mod = [](const nlohmann::json& j) {
        return j.contains("kvs") ? keel::detail::json_int(j["kvs"][0], "mod_revision") : 0;
      };
      std::string body = "{\"compare\":[";
      body += json_object().bytes("key", key(space.c_str(), 0)).text("target", "MOD").text("result", "EQUAL").integer("mod_revision", mod(a)).str();
      body += ',';
      body += json_object().bytes("key", key(space.c_str(), 1)).text("target", "MOD").text("result", "EQUAL").integer("mod_revision", mod(b)).str();
      body += "],\"success\":[";
      body += json_object().raw("request_put", json_object().bytes("key", key(space.c_str(), 2)).bytes("value", value256).str()).str();
      body += ',';
      body += json_object().raw("request_put", json_object().bytes("key", key(space.c_str(), 3)).bytes("value", value256).str()).str();
      body += "]}";
      auto t = raw().post("kv/txn", body);
      check(!t.is_null() && t.value("succeeded", false), s);
    });
}

void register_all() {
  auto both = [](const char* name, void (*fn)(benchmark::State&), bool arg) {
    auto* b = benchmark::RegisterBenchmark(name, fn)->UseRealTime()->Unit(benchmark::kMicrosecond);
    if (arg) b->Arg(0)->Arg(1);
    b->Threads(1)->Threads(8);
  };
  both("keel/put", keel_put, false);
  both("raw/put", raw_put, false);
  both("keel/get(serializable=arg)", keel_get, true);
  both("raw/get(serializable=arg)", raw_get, true);
  both("keel/scan1000", keel_scan1000, false);
  both("raw/scan1000", raw_scan1000, false);
  both("keel/batch100", keel_batch100, false);
  both("raw/batch100", raw_batch100, false);
  both("keel/tx2r2w", keel_tx2r2w, false);
  both("raw/tx2r2w", raw_tx2r2w, false);
}

}  // namespace

int main(int argc, char** argv) {
  std::string python;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--python=", 0) == 0)
      python = a.substr(9);
    else
      args.push_back(argv[i]);
  }
  int n = int(args.size());
  if (const char* e = std::getenv("KEEL_BENCH_ETCD"); e && *e) {
    g_endpoint = e;
  } else {
    g_cluster = std::make_unique<keel::test::etcd_cluster>(1);
    g_endpoint = g_cluster->endpoint(0);
  }
  std::fprintf(stderr, "etcd endpoint %s (data directory on tmpfs unless KEEL_BENCH_ETCD)\n", g_endpoint.c_str());
  setup_data();
  register_all();
  benchmark::Initialize(&n, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!python.empty()) {
    const std::string cmd = "/usr/bin/python3 '" + python + "' '" + g_endpoint + "'";
    std::fflush(stdout);
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "python peer failed: %s\n", cmd.c_str());
  }
  g_cluster.reset();
  return 0;
}
