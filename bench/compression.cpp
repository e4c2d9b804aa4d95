// keel_compression_bench: the memory backend's value compression
// (memory_options::compression, docs/compression.md) on real values found on
// this machine, none / lz4 / zstd in the same run.
//
//   build-bench/bench/keel_compression_bench [--keel-max=N] [benchmark flags]
//
// Corpora (never random bytes, never repeated strings):
//   json        Debian package records as one-line JSON objects, 175-840
//               bytes: the paragraphs of /var/lib/dpkg/status and of apt's
//               package lists (/var/lib/apt/lists/*_Packages.lz4, through
//               lz4cat, when present), fields as in the file
//   json_short  the same packages' Package, Version, Architecture and
//               Installed-Size fields as JSON, up to 200 bytes
//   paths       file paths under /usr (std::filesystem, sorted order)
// Keys are "k%08d" in corpus order; at most --keel-max values (default
// 50000) per corpus.
//
// Benchmarks:
//   get/<corpus>/<compression>      store.get() of a random key, values
//                                   compressed by compact() beforehand.
//                                   Counters: held_ratio = stats().size_bytes /
//                                   uncompressed_bytes (entries, keys and
//                                   nodes included), value_ratio = bytes of
//                                   the values as held / raw, value_bytes =
//                                   mean raw value size
//   compact/<corpus>/<compression>  compact() of a store that holds every
//                                   value raw: dictionary training plus
//                                   compressing each value (the background
//                                   pass's work); items = values
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <keel/memory.hpp>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

std::size_t max_values = 50000;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_compression_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o;
}

using paragraph = std::vector<std::pair<std::string, std::string>>;

// Debian control paragraphs ("Field: value", continuation lines start with a
// space, blank line between paragraphs).
void read_paragraphs(std::FILE* f, std::vector<paragraph>& out, std::size_t limit) {
  paragraph p;
  char* line = nullptr;
  std::size_t cap = 0;
  ssize_t n;
  while (out.size() < limit && (n = getline(&line, &cap, f)) >= 0) {
    std::string l(line, static_cast<std::size_t>(n));
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (l.empty()) {
      if (!p.empty()) out.push_back(std::move(p));
      p.clear();
    } else if ((l[0] == ' ' || l[0] == '\t') && !p.empty()) {
      p.back().second += "\n" + l.substr(1);
    } else if (auto colon = l.find(':'); colon != std::string::npos) {
      std::string v = l.substr(colon + 1);
      if (!v.empty() && v[0] == ' ') v.erase(0, 1);
      p.emplace_back(l.substr(0, colon), v);
    }
  }
  if (!p.empty() && out.size() < limit) out.push_back(std::move(p));
  std::free(line);
}

std::string to_json(const paragraph& p, const std::vector<std::string>* only) {
  std::string j = "{";
  for (const auto& [k, v] : p) {
    if (only && std::find(only->begin(), only->end(), k) == only->end()) continue;
    if (j.size() > 1) j += ',';
    j += "\"" + json_escape(k) + "\":\"" + json_escape(v) + "\"";
  }
  return j + "}";
}

struct corpora {
  std::vector<std::string> json, json_short, paths;
};

const corpora& load() {
  static const corpora c = [] {
    corpora c;
    std::vector<paragraph> ps;
    const std::size_t want = 4 * max_values;
    if (std::FILE* f = std::fopen("/var/lib/dpkg/status", "r")) {
      read_paragraphs(f, ps, want);
      std::fclose(f);
    }
    if (std::FILE* f = popen("lz4cat /var/lib/apt/lists/*_Packages.lz4 2>/dev/null", "r")) {
      read_paragraphs(f, ps, want);
      pclose(f);
    }
    const std::vector<std::string> short_fields{"Package", "Version", "Architecture", "Installed-Size"};
    for (const auto& p : ps) {
      std::string j = to_json(p, nullptr);
      if (j.size() >= 175 && j.size() <= 840 && c.json.size() < max_values) c.json.push_back(std::move(j));
      std::string s = to_json(p, &short_fields);
      if (s.size() <= 200 && c.json_short.size() < max_values) c.json_short.push_back(std::move(s));
    }
    std::error_code ec;
    for (std::filesystem::recursive_directory_iterator it("/usr", std::filesystem::directory_options::skip_permission_denied, ec), end;
         !ec && it != end && c.paths.size() < max_values; it.increment(ec)) {
      c.paths.push_back(it->path().string());
    }
    if (c.json.empty() || c.paths.empty()) die("no corpus: /var/lib/dpkg/status or /usr unreadable");
    return c;
  }();
  return c;
}

const std::vector<std::string>& corpus(const std::string& name) {
  const corpora& c = load();
  return name == "json" ? c.json : name == "json_short" ? c.json_short : c.paths;
}

std::string key_of(std::size_t i) {
  char b[32];
  std::snprintf(b, sizeof b, "k%08zu", i);
  return b;
}

keel::memory_store open_filled(const std::vector<std::string>& values, keel::compression c) {
  keel::memory_options o;
  o.compression = c;
  auto s = keel::memory_store::open(o);
  if (!s) die(s.error().message());
  keel::write_batch b;
  for (std::size_t i = 0; i < values.size(); ++i) b.put(key_of(i), values[i]);
  if (auto w = s->write(b); !w) die(w.error().message());
  return std::move(*s);
}

struct prepared {
  std::unique_ptr<keel::memory_store> store;
  std::vector<std::string> keys;  // shuffled
  double held_ratio = 1, value_ratio = 1, value_bytes = 0;
};

prepared& prepare(const std::string& name, keel::compression c) {
  static std::map<std::pair<std::string, int>, prepared> cache;
  auto [it, fresh] = cache.try_emplace({name, static_cast<int>(c)});
  prepared& p = it->second;
  if (!fresh) return p;
  const auto& values = corpus(name);
  p.store = std::make_unique<keel::memory_store>(open_filled(values, c));
  if (auto r = p.store->compact(); !r) die(r.error().message());
  auto st = p.store->stats();
  if (!st) die(st.error().message());
  double raw = 0;
  for (const auto& v : values) raw += static_cast<double>(v.size());
  // Keys, entry headers and nodes are the same with and without compression.
  const double overhead = static_cast<double>(st->uncompressed_bytes) - raw;
  p.held_ratio = static_cast<double>(st->size_bytes) / static_cast<double>(st->uncompressed_bytes);
  p.value_ratio = (static_cast<double>(st->size_bytes) - overhead) / raw;
  p.value_bytes = raw / static_cast<double>(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) p.keys.push_back(key_of(i));
  std::shuffle(p.keys.begin(), p.keys.end(), std::mt19937_64(42));
  return p;
}

void bm_get(benchmark::State& state, std::string name, keel::compression c) {
  prepared& p = prepare(name, c);
  std::size_t i = 0;
  for (auto _ : state) {
    auto v = p.store->get(p.keys[i]);
    if (!v || !v->has_value()) {
      state.SkipWithError("missing value");
      break;
    }
    benchmark::DoNotOptimize(*v);
    if (++i == p.keys.size()) i = 0;
  }
  state.counters["held_ratio"] = p.held_ratio;
  state.counters["value_ratio"] = p.value_ratio;
  state.counters["value_bytes"] = p.value_bytes;
  state.counters["dictionaries"] = static_cast<double>(p.store->policy().dictionaries());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void bm_compact(benchmark::State& state, std::string name, keel::compression c) {
  const auto& values = corpus(name);
  for (auto _ : state) {
    state.PauseTiming();
    auto s = open_filled(values, c);
    state.ResumeTiming();
    if (auto r = s.compact(); !r) die(r.error().message());
    state.PauseTiming();
    (void)s.close();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * values.size()));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--keel-max=", 0) == 0)
      max_values = std::stoul(a.substr(11));
    else
      args.push_back(argv[i]);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  const auto& c = load();
  std::fprintf(stderr, "corpora: json %zu values, json_short %zu, paths %zu\n", c.json.size(), c.json_short.size(),
               c.paths.size());
  std::vector<keel::compression> kinds{keel::compression::none};
#if KEEL_HAVE_LZ4
  kinds.push_back(keel::compression::lz4);
#endif
#if KEEL_HAVE_ZSTD
  kinds.push_back(keel::compression::zstd);
#endif
  for (const char* name : {"json", "json_short", "paths"}) {
    for (auto k : kinds) {
      const std::string suffix = std::string(name) + "/" + std::string(keel::to_string(k));
      benchmark::RegisterBenchmark(("get/" + suffix).c_str(), bm_get, std::string(name), k);
    }
  }
  for (const char* name : {"json", "json_short", "paths"}) {
    for (auto k : kinds) {
      if (k == keel::compression::none) continue;
      const std::string suffix = std::string(name) + "/" + std::string(keel::to_string(k));
      benchmark::RegisterBenchmark(("compact/" + suffix).c_str(), bm_compact, std::string(name), k)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(3);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
