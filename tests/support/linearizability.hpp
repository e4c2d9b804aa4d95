// tests/support/linearizability.hpp - a WGL-style linearizability checker for
// single-key registers (Wing & Gong's search with Lowe's memoisation).
//
//   keel::test::register_history h;
//   h.push_back({op_kind::write, "v1", t0, t1, op_outcome::ok});
//   h.push_back({op_kind::read, "v1", t2, t3, op_outcome::ok});   // value "" + found=false: absent
//   auto r = keel::test::check_register(h);   // r.linearizable, r.why
//
// One history holds the operations on one key, from any number of clients,
// each with the time it was invoked and the time its answer came (one
// steady clock for all clients). The key starts absent. Outcomes:
//   ok       the operation took effect between invoke and response (reads:
//            `value`/`found` is what it returned)
//   unknown  a write whose outcome is unknown (timeout after sending): it may
//            have taken effect at any time after invoke, or never
//   failed   certainly not applied (writes), or failed (reads): ignored
// Linearizable means: some order of the ok operations and a subset of the
// unknown writes respects real time (an operation that answered before
// another was invoked comes first) and register semantics (every read sees
// the latest write before it in that order, or absent). That rules out a
// lost acknowledged write and a stale read after a later acknowledged write.
//
// Cost: exponential in the worst case, but linear-ish for histories with few
// concurrent operations (the search only branches among operations whose
// intervals overlap); memoised on (operations linearised, register value).
// Intended for a few hundred operations per key with a handful of clients.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace keel::test {

enum class op_kind { read, write };
enum class op_outcome { ok, unknown, failed };

struct register_op {
  op_kind kind = op_kind::read;
  std::string value;  // written, or read (when found)
  std::chrono::steady_clock::time_point invoked{};
  std::chrono::steady_clock::time_point answered{};
  op_outcome outcome = op_outcome::ok;
  bool found = true;  // reads: whether the key existed; writes: always true (erase is not modelled)
  std::string client; // for messages
};
using register_history = std::vector<register_op>;

struct check_result {
  bool linearizable = true;
  std::size_t operations = 0;  // ops that took part (failed ones left out)
  std::string why;             // when not linearizable: the ops the search got stuck on
};

inline check_result check_register(const register_history& history) {
  struct op {
    const register_op* o;
    std::int64_t call, ret;  // ret = max for unknown writes
    bool required;
  };
  std::vector<op> ops;
  for (const auto& o : history) {
    if (o.outcome == op_outcome::failed) continue;
    if (o.outcome == op_outcome::unknown && o.kind == op_kind::read) continue;
    const auto call = o.invoked.time_since_epoch().count();
    const auto ret = o.outcome == op_outcome::unknown ? std::numeric_limits<std::int64_t>::max()
                                                      : o.answered.time_since_epoch().count();
    ops.push_back({&o, call, ret, o.outcome == op_outcome::ok});
  }
  std::sort(ops.begin(), ops.end(), [](const op& a, const op& b) { return a.call < b.call; });
  check_result out;
  out.operations = ops.size();
  const std::size_t n = ops.size();
  std::size_t required_total = 0;
  for (const auto& o : ops) required_total += o.required;

  // State: which ops are linearised (a bitmap), and the register's value
  // (index of the write that set it, or -1 for absent).
  std::vector<char> done(n, 0);
  std::set<std::pair<std::string, long>> seen;
  auto key_of = [&](long value) { return std::make_pair(std::string(done.begin(), done.end()), value); };
  std::size_t deepest = 0;
  std::vector<std::size_t> deepest_candidates;

  // Iterative DFS would be safer for depth, but histories are a few hundred ops.
  auto search = [&](auto&& self, long value, std::size_t required_done, std::size_t depth) -> bool {
    if (required_done == required_total) return true;
    if (!seen.insert(key_of(value)).second) return false;
    // The earliest answer among the ops not yet linearised: an op invoked
    // after it cannot come next.
    std::int64_t min_ret = std::numeric_limits<std::int64_t>::max();
    for (std::size_t i = 0; i < n; ++i)
      if (!done[i]) min_ret = std::min(min_ret, ops[i].ret);
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      if (ops[i].call > min_ret) break;  // sorted by call
      candidates.push_back(i);
    }
    // Acknowledged ops first: an unknown write is tried only where needed.
    std::stable_partition(candidates.begin(), candidates.end(), [&](std::size_t i) { return ops[i].required; });
    if (depth >= deepest) {
      deepest = depth;
      deepest_candidates = candidates;
    }
    for (std::size_t i : candidates) {
      const register_op& o = *ops[i].o;
      long next = value;
      if (o.kind == op_kind::write) {
        next = static_cast<long>(i);
      } else {
        const bool absent = value < 0;
        if (o.found == absent) continue;
        if (!absent && ops[static_cast<std::size_t>(value)].o->value != o.value) continue;
      }
      done[i] = 1;
      if (self(self, next, required_done + (ops[i].required ? 1 : 0), depth + 1)) return true;
      done[i] = 0;
    }
    return false;
  };
  if (search(search, -1, 0, 0)) return out;
  out.linearizable = false;
  out.why = "no linearisation past " + std::to_string(deepest) + " of " + std::to_string(n) +
            " operations; the next could be one of:";
  for (std::size_t i : deepest_candidates) {
    const register_op& o = *ops[i].o;
    out.why += std::string(" [") + (o.kind == op_kind::write ? "write " : "read ") +
               (o.found ? o.value : std::string("<absent>")) + " by " + o.client +
               (o.outcome == op_outcome::unknown ? ", outcome unknown" : "") + "]";
  }
  return out;
}

}  // namespace keel::test
