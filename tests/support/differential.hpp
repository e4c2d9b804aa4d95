// tests/support/differential.hpp - differential testing of keel's backends.
//
// One harness, two drivers: tests/differential_test.cpp feeds it from a
// seeded PRNG (deterministic, runs in CI), fuzz/differential_fuzz.cpp feeds it
// the bytes libFuzzer hands over. The harness applies one sequence of
// operations (put, erase, batch, get/contains, scans of every kind, snapshots
// and reads through them, a cursor held across writes, close + reopen) to a
// memory_store, a RocksDB store and std::map models, and compares every
// observable result. It does not depend on doctest: a mismatch is returned as
// a text that names the operation and the recent history.
//
// Models: RocksDB keeps its data across close + reopen, the memory store
// starts empty. So there are two models, `persistent_` (for RocksDB) and
// `volatile_` (for memory); every write goes to both, a reopen clears only
// `volatile_`. Snapshots carry a copy of each model as of their creation.
#pragma once

#include <keel/keel.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::test::differential {

using model = std::map<std::string, std::string>;
using entries = std::vector<std::pair<std::string, std::string>>;

// Where the operations come from: a seeded PRNG or fuzzer bytes.
class prng_source {
 public:
  explicit prng_source(std::uint64_t seed) : rng_(seed) {}
  bool exhausted() const noexcept { return false; }
  // A number in [0, bound). bound > 0.
  std::uint32_t pick(std::uint32_t bound) { return static_cast<std::uint32_t>(rng_() % bound); }

 private:
  std::mt19937_64 rng_;
};

// Reads choices from a byte string; exhausted once every byte is used (then
// picks return 0, and the driver stops at the next operation).
class byte_source {
 public:
  byte_source(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool exhausted() const noexcept { return pos_ >= size_; }
  std::uint32_t pick(std::uint32_t bound) {
    if (bound <= 1) return 0;
    std::uint32_t v = 0;
    // One byte for small bounds, two for larger ones.
    int bytes = bound <= 256 ? 1 : 2;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | (pos_ < size_ ? data_[pos_++] : 0);
    return v % bound;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

struct config {
  std::filesystem::path rocks_path;     // the RocksDB directory (created)
  rocksdb::Env* rocks_env = nullptr;    // e.g. rocksdb::NewMemEnv for the fuzzer; nullptr: disk
  std::size_t max_live_snapshots = 4;
  // Small memtables so that data is spread over memtables and SST files.
  std::size_t write_buffer_size = 64 << 10;
  // Weight of close + reopen among the operations (out of 1000).
  std::uint32_t reopen_per_mille = 5;
};

// Counts of what a run did, for reports.
struct stats {
  std::uint64_t ops = 0, puts = 0, erases = 0, batches = 0, point_reads = 0, scans = 0, snapshots = 0,
                snapshot_reads = 0, held_cursors = 0, reopens = 0;
  stats& operator+=(const stats& o) {
    ops += o.ops, puts += o.puts, erases += o.erases, batches += o.batches, point_reads += o.point_reads;
    scans += o.scans, snapshots += o.snapshots, snapshot_reads += o.snapshot_reads;
    held_cursors += o.held_cursors, reopens += o.reopens;
    return *this;
  }
};

inline std::string printable(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 48)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 48) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out + "\"";
}

inline std::string describe(const key_range& r) {
  std::string s = "[";
  s += r.lower() ? printable(*r.lower()) : "-inf";
  s += ", ";
  s += r.upper() ? printable(*r.upper()) : "+inf";
  s += ")";
  if (r.is_reversed()) s += " reversed";
  return s;
}

inline entries expected_scan(const model& m, const key_range& r) {
  entries out;
  for (const auto& [k, v] : m)
    if (r.contains(k)) out.emplace_back(k, v);
  if (r.is_reversed()) std::reverse(out.begin(), out.end());
  return out;
}

// A whole pass of a cursor, or the error that stopped it.
template <class Cursor>
result<entries> drain(Cursor&& c) {
  entries out;
  for (const auto& e : c) out.emplace_back(std::string(e.key), std::string(e.value));
  if (c.error()) return *c.error();
  return out;
}

class harness {
 public:
  explicit harness(config cfg) : cfg_(std::move(cfg)) {}
  ~harness() { close_all(); }

  // Opens both stores. Returns a failure text, or nullopt.
  std::optional<std::string> start() {
    if (auto e = open_rocks()) return e;
    auto m = memory_store::open({});
    if (!m) return "memory open failed: " + m.error().message();
    memory_.emplace(std::move(*m));
    return std::nullopt;
  }

  // Runs operations from `src` until it is exhausted or `max_ops` are done.
  // Returns the first mismatch (with the recent history), or nullopt.
  template <class Source>
  std::optional<std::string> run(Source& src, std::uint64_t max_ops) {
    for (std::uint64_t i = 0; i < max_ops && !src.exhausted(); ++i) {
      if (auto e = step(src)) return *e + "\nrecent operations (oldest first):\n" + history();
    }
    // A final full comparison.
    if (auto e = compare_scan(key_range::all())) return *e + "\nrecent operations:\n" + history();
    return std::nullopt;
  }

  const stats& counts() const noexcept { return stats_; }

  // For the harness's own test: a write the models do not see.
  bool sneak_put_rocks(std::string_view k, std::string_view v) { return rocks_ && rocks_->put(k, v).has_value(); }
  std::size_t persistent_size() const noexcept { return persistent_.size(); }

  // Closes both stores (held snapshots and cursors first).
  void close_all() {
    snaps_.clear();
    if (rocks_) (void)rocks_->close();
    if (memory_) (void)memory_->close();
    rocks_.reset();
    memory_.reset();
  }

 private:
  struct snap {
    memory_store::snapshot_type mem;
    rocks_store::snapshot_type rocks;
    model mem_model, rocks_model;
  };

  std::optional<std::string> open_rocks() {
    rocks_options o;
    o.path = cfg_.rocks_path;
    o.env = cfg_.rocks_env;
    o.sync_on_close = false;  // semantics, not durability: the crash test covers that
    std::size_t wbs = cfg_.write_buffer_size;
    o.customize = [wbs](rocksdb::Options& ro) {
      ro.write_buffer_size = wbs;
      ro.max_write_buffer_number = 2;
      ro.level0_file_num_compaction_trigger = 2;
      ro.target_file_size_base = 64 << 10;
      ro.max_bytes_for_level_base = 256 << 10;
      ro.max_background_jobs = 1;
      // No periodic stats threads: each open would start them and each close wait for them.
      ro.stats_dump_period_sec = 0;
      ro.stats_persist_period_sec = 0;
    };
    auto r = rocks_store::open(o);
    if (!r) return "rocksdb open failed: " + r.error().message();
    rocks_.emplace(std::move(*r));
    return std::nullopt;
  }

  // Keys drawn to hit edge cases: the empty key, NUL, 0xFF runs, shared
  // prefixes, high-bit bytes, and now and then a long one.
  template <class Source>
  std::string key(Source& src) {
    static const std::string_view parts[] = {
        std::string_view("", 0), std::string_view("\0", 1), std::string_view("\xff", 1),
        std::string_view("\xff\xff", 2), std::string_view("\xff\xff\xff\xff", 4), "a", "ab", "abc", "b",
        std::string_view("a\0", 2), "\x80", "\x7f", "\x01", "k", "key/", "key/1", "key/10", "\xfe"};
    constexpr std::uint32_t n = sizeof(parts) / sizeof(parts[0]);
    std::string k;
    std::uint32_t len = src.pick(4);
    for (std::uint32_t i = 0; i < len; ++i) k += parts[src.pick(n)];
    if (src.pick(64) == 0) k += std::string(200 + src.pick(800), static_cast<char>(src.pick(256)));
    return k;
  }
  template <class Source>
  std::string value(Source& src) {
    switch (src.pick(8)) {
      case 0: return {};
      case 1: return std::string("\0\xff\0", 3);
      case 2: return std::string(100 + src.pick(4000), static_cast<char>('a' + src.pick(26)));
      default: return "v" + std::to_string(counter_++);
    }
  }
  template <class Source>
  key_range range(Source& src) {
    key_range r = key_range::all();
    switch (src.pick(6)) {
      case 0: break;
      case 1: r = key_range::prefix(key(src)); break;
      case 2: {
        std::string lo = key(src), hi = key(src);
        if (src.pick(4) != 0 && hi < lo) std::swap(lo, hi);  // mostly non-empty
        r = key_range::between(lo, hi);
        break;
      }
      case 3: r = key_range::from(key(src)); break;
      case 4: r = key_range::until(key(src)); break;
      case 5: {
        static const std::string_view ps[] = {std::string_view("\xff", 1), std::string_view("\xff\xff", 2),
                                              std::string_view("\0", 1), "a", "key/", std::string_view("", 0)};
        r = key_range::prefix(ps[src.pick(6)]);
        break;
      }
    }
    if (src.pick(2)) r = r.reversed();
    return r;
  }

  void note(std::string s) {
    recent_.push_back(std::to_string(stats_.ops) + ": " + std::move(s));
    if (recent_.size() > 24) recent_.pop_front();
  }
  std::string history() const {
    std::string out;
    for (const auto& s : recent_) out += "  " + s + "\n";
    return out;
  }

  static std::optional<std::string> expect_ok(const result<void>& r, const char* backend, std::string_view what) {
    if (r) return std::nullopt;
    return std::string(backend) + " " + std::string(what) + " failed: " + r.error().message();
  }

  std::optional<std::string> compare_point(std::string_view k, const memory_store::snapshot_type* ms,
                                           const rocks_store::snapshot_type* rs, const model& mm, const model& rm) {
    auto expect = [&](const model& m) -> std::optional<std::string> {
      auto it = m.find(std::string(k));
      if (it == m.end()) return std::nullopt;
      return it->second;
    };
    auto mg = ms ? ms->get(k) : memory_->get(k);
    auto rg = rs ? rs->get(k) : rocks_->get(k);
    auto mc = ms ? ms->contains(k) : memory_->contains(k);
    auto rc = rs ? rs->contains(k) : rocks_->contains(k);
    const char* where = ms ? " (snapshot)" : "";
    if (!mg || !mc) return std::string("memory get/contains failed") + where;
    if (!rg || !rc) return std::string("rocksdb get/contains failed") + where + ": " +
                           (!rg ? rg.error().message() : rc.error().message());
    if (*mg != expect(mm)) return std::string("memory get") + where + " of " + printable(k) + " disagrees with the model";
    if (*rg != expect(rm)) return std::string("rocksdb get") + where + " of " + printable(k) + " disagrees with the model";
    if (*mc != mg->has_value()) return std::string("memory contains disagrees with get") + where;
    if (*rc != rg->has_value()) return std::string("rocksdb contains disagrees with get") + where;
    return std::nullopt;
  }

  template <class M, class R>
  std::optional<std::string> compare_cursors(M&& mcur, R&& rcur, const key_range& r, const model& mm,
                                             const model& rm, const char* where) {
    auto got_m = drain(mcur);
    auto got_r = drain(rcur);
    if (!got_m) return std::string("memory scan") + where + " failed: " + got_m.error().message();
    if (!got_r) return std::string("rocksdb scan") + where + " failed: " + got_r.error().message();
    auto want_m = expected_scan(mm, r), want_r = expected_scan(rm, r);
    if (*got_m != want_m)
      return std::string("memory scan") + where + " of " + describe(r) + " gave " + std::to_string(got_m->size()) +
             " entries, the model " + std::to_string(want_m.size());
    if (*got_r != want_r)
      return std::string("rocksdb scan") + where + " of " + describe(r) + " gave " + std::to_string(got_r->size()) +
             " entries, the model " + std::to_string(want_r.size());
    return std::nullopt;
  }

  std::optional<std::string> compare_scan(const key_range& r) {
    return compare_cursors(memory_->scan(r), rocks_->scan(r), r, volatile_, persistent_, "");
  }

  void apply_put(const std::string& k, const std::string& v) {
    volatile_[k] = v;
    persistent_[k] = v;
  }
  void apply_erase(const std::string& k) {
    volatile_.erase(k);
    persistent_.erase(k);
  }

  template <class Source>
  std::optional<std::string> step(Source& src) {
    ++stats_.ops;
    // Reopen at the top of the range: runs of zero bytes (common in fuzzer
    // input) then mean puts, not a costly reopen per operation.
    std::uint32_t op = src.pick(1000);
    if (op >= 1000 - cfg_.reopen_per_mille) return reopen();
    op = src.pick(100);
    if (op < 30) {  // put
      ++stats_.puts;
      std::string k = key(src), v = value(src);
      note("put " + printable(k) + " = " + printable(v));
      if (auto e = expect_ok(memory_->put(k, v), "memory", "put")) return e;
      if (auto e = expect_ok(rocks_->put(k, v), "rocksdb", "put")) return e;
      apply_put(k, v);
      return std::nullopt;
    }
    if (op < 40) {  // erase, half the time of a key that exists
      ++stats_.erases;
      std::string k = key(src);
      if (!persistent_.empty() && src.pick(2)) {
        auto it = persistent_.begin();
        std::advance(it, src.pick(static_cast<std::uint32_t>(std::min<std::size_t>(persistent_.size(), 1 << 16))));
        k = it->first;
      }
      note("erase " + printable(k));
      if (auto e = expect_ok(memory_->erase(k), "memory", "erase")) return e;
      if (auto e = expect_ok(rocks_->erase(k), "rocksdb", "erase")) return e;
      apply_erase(k);
      return std::nullopt;
    }
    if (op < 52) {  // batch: puts and erases, later ops on a key win
      ++stats_.batches;
      write_batch b;
      std::vector<std::pair<std::string, std::optional<std::string>>> ops;
      std::uint32_t n = src.pick(9);
      std::string text = "batch{";
      for (std::uint32_t i = 0; i < n; ++i) {
        std::string k = key(src);
        if (src.pick(3) == 0) {
          b.erase(k);
          ops.emplace_back(k, std::nullopt);
          text += " erase " + printable(k);
        } else {
          std::string v = value(src);
          b.put(k, v);
          text += " put " + printable(k);
          ops.emplace_back(std::move(k), std::move(v));
        }
      }
      note(text + " }");
      if (auto e = expect_ok(memory_->write(b), "memory", "write")) return e;
      if (auto e = expect_ok(rocks_->write(b), "rocksdb", "write")) return e;
      for (auto& [k, v] : ops) {
        if (v)
          apply_put(k, *v);
        else
          apply_erase(k);
      }
      return std::nullopt;
    }
    if (op < 67) {  // get + contains, of an existing key half the time
      ++stats_.point_reads;
      std::string k = key(src);
      if (!persistent_.empty() && src.pick(2)) {
        auto it = persistent_.begin();
        std::advance(it, src.pick(static_cast<std::uint32_t>(std::min<std::size_t>(persistent_.size(), 1 << 16))));
        k = it->first;
      }
      note("get " + printable(k));
      return compare_point(k, nullptr, nullptr, volatile_, persistent_);
    }
    if (op < 80) {  // scan
      ++stats_.scans;
      key_range r = range(src);
      note("scan " + describe(r));
      return compare_scan(r);
    }
    if (op < 85) {  // take a snapshot
      ++stats_.snapshots;
      if (snaps_.size() >= cfg_.max_live_snapshots) snaps_.erase(snaps_.begin() + src.pick(static_cast<std::uint32_t>(snaps_.size())));
      note("snapshot");
      auto ms = memory_->snapshot();
      auto rs = rocks_->snapshot();
      if (!ms.valid() || !rs.valid()) return std::string("snapshot of an open store is not valid");
      snaps_.push_back(snap{std::move(ms), std::move(rs), volatile_, persistent_});
      return std::nullopt;
    }
    if (op < 95) {  // read through a snapshot
      if (snaps_.empty()) return std::nullopt;
      ++stats_.snapshot_reads;
      snap& s = snaps_[src.pick(static_cast<std::uint32_t>(snaps_.size()))];
      if (src.pick(2)) {
        std::string k = key(src);
        if (!s.rocks_model.empty() && src.pick(2)) k = s.rocks_model.begin()->first;
        note("snapshot get " + printable(k));
        return compare_point(k, &s.mem, &s.rocks, s.mem_model, s.rocks_model);
      }
      key_range r = range(src);
      note("snapshot scan " + describe(r));
      return compare_cursors(s.mem.scan(r), s.rocks.scan(r), r, s.mem_model, s.rocks_model, " (snapshot)");
    }
    // A cursor opened, then writes, then read: it sees the view of its creation.
    ++stats_.held_cursors;
    key_range r = range(src);
    auto mcur = memory_->scan(r);
    auto rcur = rocks_->scan(r);
    model mm = volatile_, rm = persistent_;
    std::string k = key(src), v = value(src);
    note("held cursor over " + describe(r) + " across put " + printable(k) + " and erase of the first key");
    if (auto e = expect_ok(memory_->put(k, v), "memory", "put")) return e;
    if (auto e = expect_ok(rocks_->put(k, v), "rocksdb", "put")) return e;
    apply_put(k, v);
    std::string first = persistent_.begin()->first;
    if (auto e = expect_ok(memory_->erase(first), "memory", "erase")) return e;
    if (auto e = expect_ok(rocks_->erase(first), "rocksdb", "erase")) return e;
    apply_erase(first);
    return compare_cursors(std::move(mcur), std::move(rcur), r, mm, rm, " (held cursor)");
  }

  // Close both stores with live snapshots and cursors, check that everything
  // then reports closed, and reopen: RocksDB keeps its data, memory does not.
  std::optional<std::string> reopen() {
    ++stats_.reopens;
    note("close + reopen");
    auto mcur = memory_->scan();
    auto rcur = rocks_->scan();
    if (auto e = expect_ok(memory_->close(), "memory", "close")) return e;
    if (auto e = expect_ok(rocks_->close(), "rocksdb", "close")) return e;
    if (memory_->is_open() || rocks_->is_open()) return std::string("a store is open after close");
    if (memory_->get("a").error() != errc::closed || rocks_->get("a").error() != errc::closed)
      return std::string("get after close did not report closed");
    for (auto& s : snaps_) {
      auto mg = s.mem.get("a");
      auto rg = s.rocks.get("a");
      if (mg || mg.error() != errc::closed || rg || rg.error() != errc::closed)
        return std::string("a snapshot read after close did not report closed");
    }
    for (const auto& e : mcur) (void)e;
    for (const auto& e : rcur) (void)e;
    if (!mcur.error() || mcur.error()->code() != errc::closed) {
      // An empty store gives a cursor that is done at once: no error then.
      if (!volatile_.empty()) return std::string("memory cursor after close did not report closed");
    }
    if (!rcur.error() || rcur.error()->code() != errc::closed) {
      if (!persistent_.empty()) return std::string("rocksdb cursor after close did not report closed");
    }
    snaps_.clear();
    rocks_.reset();
    memory_.reset();
    if (auto e = open_rocks()) return e;
    auto m = memory_store::open({});
    if (!m) return "memory reopen failed: " + m.error().message();
    memory_.emplace(std::move(*m));
    volatile_.clear();
    return compare_scan(key_range::all());
  }

  config cfg_;
  std::optional<memory_store> memory_;
  std::optional<rocks_store> rocks_;
  model volatile_, persistent_;
  std::vector<snap> snaps_;
  std::deque<std::string> recent_;
  stats stats_;
  std::uint64_t counter_ = 0;
};

}  // namespace keel::test::differential
