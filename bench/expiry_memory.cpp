// Expiry on the memory backend (issue 29): the three targets, each with its
// baseline measured in the same run.
//
//   keel_expiry_memory_bench callgrind [keys]   (default 100000 keys)
//       m_put / m_get: puts then gets (shuffled) of 16-byte keys and 100-byte
//       values on a store that never uses ttl. Target 1 compares them with
//       the same file built against the code before expiry (main 178eafb):
//         git archive 178eafb include | tar -x -C /tmp/keel-base
//         g++ -std=c++20 -O2 -DNDEBUG -I/tmp/keel-base/include bench/expiry_memory.cpp -o base -pthread
//         g++ -std=c++20 -O2 -DNDEBUG -Iinclude bench/expiry_memory.cpp -o new -pthread
//         valgrind --tool=callgrind --callgrind-out-file=cg.X --toggle-collect='*m_*' ./X callgrind
//         callgrind_annotate --inclusive=yes cg.X | grep ' m_'
//   keel_expiry_memory_bench callgrind-half [keys]
//       m_get_none / m_get_half: gets on a store without ttl against one
//       where every other key has a ttl (1 h, not due; the default system
//       clock), target 2. Valgrind gives the clock no vDSO (its system call
//       is not counted): `timed` counts the clock's real cost.
//   keel_expiry_memory_bench timed [keys]
//       target 2 timed: the median of 7 passes of gets over each store.
//   keel_expiry_memory_bench reclaim [keys]      (default 1000000 keys)
//       target 3: `keys` keys with a ttl (and as many without, a tenth of
//       them), the store's fake clock moved past their deadlines, then the
//       bytes held (MemoryPolicy::memory_bytes(): entries and nodes of the
//       current version) polled until two background intervals
//       (memory_options::expiry_interval, 1 s) have passed.
#include <keel/memory.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<keel/memory/expiry.hpp>)
#define KEEL_BENCH_EXPIRY 1
#endif

namespace {

using steady = std::chrono::steady_clock;

std::vector<std::string> make_keys(std::size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    char k[17];
    std::snprintf(k, sizeof k, "user%012zu", i * 2654435761u % 1000000007u);
    keys.emplace_back(k, 16);
  }
  return keys;
}

keel::memory_store open_store(keel::memory_options o = {}) {
  auto s = keel::memory_store::open(o);
  if (!s) {
    std::fprintf(stderr, "open: %s\n", s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

[[gnu::noinline]] void m_put(keel::memory_store& s, const std::vector<std::string>& keys,
                                     const std::string& value) {
  for (const auto& k : keys)
    if (!s.put(k, value)) std::abort();
}

// Each m_ function has its own copy of the loop (no calls between them:
// callgrind's --toggle-collect then counts each alone).
[[gnu::always_inline]] inline std::size_t get_all(const keel::memory_store& s,
                                                          const std::vector<std::string>& keys) {
  std::size_t found = 0;
  for (const auto& k : keys) {
    auto v = s.get(k);
    found += v && v->has_value();
  }
  return found;
}
[[gnu::noinline]] std::size_t m_get(const keel::memory_store& s, const std::vector<std::string>& keys) {
  return get_all(s, keys);
}

#if KEEL_BENCH_EXPIRY
// The same loop under two names, so callgrind tells the stores apart.
// (Each counts its calls in its own variable, so that the compiler does not
// fold the two identical functions into one.)
std::atomic<int> calls_none{0}, calls_half{0};
[[gnu::noinline]] std::size_t m_get_none(const keel::memory_store& s, const std::vector<std::string>& keys) {
  calls_none.fetch_add(1, std::memory_order_relaxed);
  return get_all(s, keys);
}
[[gnu::noinline]] std::size_t m_get_half(const keel::memory_store& s, const std::vector<std::string>& keys) {
  calls_half.fetch_add(1, std::memory_order_relaxed);
  return get_all(s, keys);
}

// `keys` put into a new store; with half: every other one with a ttl of 1 h.
keel::memory_store filled(const std::vector<std::string>& keys, bool half, const std::string& value) {
  auto s = open_store();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto r = half && i % 2 == 0 ? s.put(keys[i], value, keel::put_options{std::chrono::hours(1)})
                                : s.put(keys[i], value);
    if (!r) std::abort();
  }
  return s;
}
#endif

int run_callgrind(std::size_t n) {
  const auto keys = make_keys(n);
  auto shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(1));
  const std::string value(100, 'v');
  auto s = open_store();
  m_put(s, keys, value);
  std::printf("m_get found %zu of %zu\n", m_get(s, shuffled), n);
  return 0;
}

#if KEEL_BENCH_EXPIRY
int run_callgrind_half(std::size_t n) {
  const auto keys = make_keys(n);
  auto shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(1));
  const std::string value(100, 'v');
  auto none = filled(keys, false, value);
  auto half = filled(keys, true, value);
  std::printf("m_get_none found %zu, m_get_half found %zu\n", m_get_none(none, shuffled), m_get_half(half, shuffled));
  return 0;
}
#endif

#if KEEL_BENCH_EXPIRY
int run_timed(std::size_t n) {
  const auto keys = make_keys(n);
  auto shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(1));
  const std::string value(100, 'v');
  auto none = filled(keys, false, value);
  auto half = filled(keys, true, value);
  std::vector<double> t_none, t_half;
  for (int pass = 0; pass < 7; ++pass) {
    for (int which = 0; which < 2; ++which) {
      const auto start = steady::now();
      const std::size_t found = which == 0 ? m_get_none(none, shuffled) : m_get_half(half, shuffled);
      const double ns = std::chrono::duration<double, std::nano>(steady::now() - start).count() / n;
      if (found != n) std::abort();
      (which == 0 ? t_none : t_half).push_back(ns);
    }
  }
  std::sort(t_none.begin(), t_none.end());
  std::sort(t_half.begin(), t_half.end());
  std::printf("get, %zu keys: no ttl %.1f ns, half with ttl %.1f ns (median of 7): %.3fx\n", n, t_none[3], t_half[3],
              t_half[3] / t_none[3]);
  return 0;
}

int run_reclaim(std::size_t n) {
  auto now_ms = std::make_shared<std::atomic<std::int64_t>>(1767225600000);
  keel::memory_options o;
  o.clock = [now_ms] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms->load())); };
  auto s = open_store(o);
  const auto keys = make_keys(n + n / 10);
  const std::string value(100, 'v');
  keel::write_batch b;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i < n)
      b.put(keys[i], value, keel::put_options{std::chrono::hours(1)});
    else
      b.put(keys[i], value);
    if (b.size() == 1000 || i + 1 == keys.size()) {
      if (!s.write(b)) std::abort();
      b.clear();
    }
  }
  const std::size_t held = s.policy().memory_bytes();
  // The bytes the keys without ttl take alone: a store holding only them.
  std::size_t permanent = 0;
  {
    auto p = open_store();
    for (std::size_t i = n; i < keys.size(); ++i)
      if (!p.put(keys[i], value)) std::abort();
    permanent = p.policy().memory_bytes();
  }
  const std::size_t expiring = held - permanent;
  now_ms->fetch_add(2 * 3600 * 1000);  // past every deadline
  const auto moved = steady::now();
  const auto interval = o.expiry_interval;
  double done_ms = -1;
  while (steady::now() - moved < 2 * interval) {
    if (done_ms < 0 && s.policy().size() == keys.size() - n)
      done_ms = std::chrono::duration<double, std::milli>(steady::now() - moved).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::size_t after = s.policy().memory_bytes();
  const double reclaimed = expiring ? double(held - after) / double(expiring) : 0;
  std::printf("reclaim: %zu keys with ttl (+%zu without): %zu bytes held, %zu of them the expiring keys'; "
              "%zu held after two intervals (%lld ms each): %.1f%% of the expiring bytes reclaimed; "
              "all removed after %.0f ms\n",
              n, keys.size() - n, held, expiring, after, static_cast<long long>(interval.count()), 100 * reclaimed,
              done_ms);
  return reclaimed >= 0.95 ? 0 : 2;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::size_t keys = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
  if (mode == "callgrind") return run_callgrind(keys ? keys : 100000);
#if KEEL_BENCH_EXPIRY
  if (mode == "callgrind-half") return run_callgrind_half(keys ? keys : 100000);
  if (mode == "timed") return run_timed(keys ? keys : 100000);
  if (mode == "reclaim") return run_reclaim(keys ? keys : 1000000);
#endif
  std::fprintf(stderr, "usage: keel_expiry_memory_bench callgrind|callgrind-half|timed|reclaim [keys]\n");
  return 64;
}
