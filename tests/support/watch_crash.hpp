// tests/support/watch_crash.hpp - watch seqs after a writer process was
// SIGKILLed (issue 28): the history a test knows (the commits a writer
// printed with the seqs its watch delivered, the one found in flight, the
// test's own), and what a watch of the reopened store must deliver from it.
// Used by tests/watch_memory_test.cpp (memory_log_writer watch) and
// tests/watch_rocks_test.cpp (crash_writer --watch).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <keel/error.hpp>
#include <keel/key_range.hpp>
#include <keel/watch.hpp>

namespace keel::test {

// One commit as a watch delivers it: its seq and its changes, sorted (the
// order within one commit is the backend's).
struct watched_commit {
  std::uint64_t seq = 0;
  std::vector<std::string> changes;  // "[keyspace] key = value" or "[keyspace] key erased"
  bool operator==(const watched_commit&) const = default;
};

inline std::string change_text(const change& c) {
  return "[" + c.keyspace + "] " + c.key + (c.value ? " = " + *c.value : std::string(" erased"));
}

inline std::string commits_text(const std::vector<watched_commit>& commits) {
  std::string out;
  for (const auto& c : commits) {
    out += std::to_string(c.seq) + ":";
    for (const auto& ch : c.changes) out += " {" + ch + "}";
    out += "\n";
  }
  return out;
}

// What a watch with after = S delivered until it had nothing more: the
// commits (changes grouped by seq), and, when it failed with
// snapshot_expired, the smallest `after` its message says works.
struct resumed {
  std::vector<watched_commit> commits;
  std::optional<std::uint64_t> expired_resume_after;
  std::string other_error;  // any other error: the check fails
};

// The smallest `after` a snapshot_expired message names: "resume with after
// >= N" / "after = N" (memory), else the oldest seq still available minus 1
// (RocksDB). nullopt when it names none.
inline std::optional<std::uint64_t> named_resume_after(const std::string& m) {
  for (const std::string marker : {"resume with after >= ", "resume with after = "}) {
    if (auto at = m.find(marker); at != std::string::npos) return std::stoull(m.substr(at + marker.size()));
  }
  const std::string oldest = "oldest seq still available is ";
  if (auto at = m.find(oldest); at != std::string::npos) {
    const std::uint64_t n = std::stoull(m.substr(at + oldest.size()));
    return n == 0 ? 0 : n - 1;
  }
  return std::nullopt;
}

// Reads a watch of every key with after = `after` until next() finds
// nothing at once (next(0) reads what is committed before it answers).
template <class Store>
resumed resume_from(const Store& store, std::uint64_t after) {
  resumed out;
  watch_options o;
  o.after = after;
  auto w = store.watch(key_range::all(), o);
  if (!w) {
    out.other_error = "watch(after = " + std::to_string(after) + "): " + w.error().message();
    return out;
  }
  for (;;) {
    auto c = w->next(std::chrono::milliseconds(0));
    if (!c) {
      if (c.error().code() == errc::snapshot_expired) {
        out.expired_resume_after = named_resume_after(c.error().message());
        if (!out.expired_resume_after) out.other_error = "snapshot_expired naming no seq: " + c.error().message();
      } else {
        out.other_error = std::string(to_string(c.error().code())) + ": " + c.error().message();
      }
      break;
    }
    if (!*c) break;
    if (out.commits.empty() || out.commits.back().seq != (*c)->seq) out.commits.push_back({(*c)->seq, {}});
    out.commits.back().changes.push_back(change_text(**c));
  }
  for (auto& c : out.commits) std::sort(c.changes.begin(), c.changes.end());
  return out;
}

// The commits of `known` with a seq greater than `after`.
inline std::vector<watched_commit> known_after(const std::vector<watched_commit>& known, std::uint64_t after) {
  std::vector<watched_commit> out;
  for (const auto& c : known)
    if (c.seq > after) out.push_back(c);
  return out;
}

// A watch with after = S (S = `after`) on the reopened store delivers
// exactly the commits of `known` after S, in order, with their seqs, as far
// as the history reaches: it may instead fail with snapshot_expired (after
// delivering none or a prefix of them) only when S < `kept_from` (the
// oldest `after` the store must still serve), naming an after above S and
// at most `kept_from`, from which a watch delivers exactly the known
// commits after it. Returns whether it was expired.
template <class Store>
bool check_resume(const Store& store, const std::vector<watched_commit>& known, std::uint64_t after,
                  std::uint64_t kept_from) {
  CAPTURE(after);
  CAPTURE(kept_from);
  const resumed got = resume_from(store, after);
  REQUIRE_MESSAGE(got.other_error.empty(), got.other_error);
  const std::vector<watched_commit> want = known_after(known, after);
  if (!got.expired_resume_after) {
    CHECK_MESSAGE(got.commits == want, "delivered:\n" << commits_text(got.commits) << "known:\n" << commits_text(want));
    return false;
  }
  const std::uint64_t named = *got.expired_resume_after;
  CAPTURE(named);
  CHECK_MESSAGE(after < kept_from, "snapshot_expired although the history must reach back to " << kept_from);
  CHECK(named > after);
  CHECK(named <= kept_from);
  const bool prefix = got.commits.size() <= want.size() && std::equal(got.commits.begin(), got.commits.end(), want.begin());
  CHECK_MESSAGE(prefix, "delivered before snapshot_expired:\n" << commits_text(got.commits));
  const resumed from_named = resume_from(store, named);
  REQUIRE_MESSAGE(from_named.other_error.empty(), from_named.other_error);
  CHECK_FALSE(from_named.expired_resume_after);
  CHECK_MESSAGE(from_named.commits == known_after(known, named),
                "from the named seq:\n" << commits_text(from_named.commits));
  return true;
}

}  // namespace keel::test
