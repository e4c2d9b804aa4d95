// tests/faults/crash_image_test.cpp - machine crashes (issue 24), on real
// crash images: a writer process (exec'd) keeps its store on a loop-mounted
// ext4 (commit=300: no journal commit but the ones syncs force) and prints
// each acknowledged write to a pipe outside the mount; it is SIGKILLed, the
// image is copied while still mounted (the copy holds only what reached the
// device, as after a power cut), the copy is mounted on a new loop device
// (ext4 replays its journal) and the store is opened there.
//
// The promise checked (docs/durability.md, "After a machine crash"):
// the store always opens; with sync_writes it holds every acknowledged
// write; batches are whole; it holds a prefix of its history (no write
// without every write acknowledged before that write started). Without
// sync_writes it may lose a recent suffix (counted, allowed), never refuse.
//
// Cases: persisted memory with and without sync_writes (background folds
// run often, so some kills land inside one), a crash at the log switch
// (between its two syncs, and after both), out-of-order writeback of the
// mapped log (some of its pages forced to the device with sync_file_range
// and a journal commit, the others not), hybrid (before, during and after
// the move to RocksDB, sync_writes), RocksDB (with and without sync_writes).
// Each case prints its counts (KEEL_REPORT, tests/support/skip.hpp): crash images, synced writes checked,
// lost, refused opens. Image counts scale with KEEL_FAULT_CRASH_IMAGES
// (default 2 per variant).
#include "faults/support.hpp"
#include "support/child_process.hpp"
#include "support/scale.hpp"
#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <keel/memory.hpp>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#if defined(KEEL_HAS_ROCKSDB)
#include <keel/hybrid.hpp>
#include <keel/rocksdb.hpp>
#endif

namespace fs = std::filesystem;
using namespace keel::test;
using namespace keel::test::faults;
using namespace std::chrono_literals;

namespace {

struct crash_counts {
  int images = 0, refused = 0;
  long synced_checked = 0;  // acknowledged writes checked in images of sync_writes stores
  long lost_synced = 0;     // of those, missing (must be 0)
  long lost_unsynced = 0;   // acknowledged without sync_writes and missing (allowed)
  long torn = 0, gaps = 0, out_of_order = 0;  // broken batches, holes in a writer's rounds, non-prefix states
  int killed_in_fold = 0;   // images with a fold's temporary snapshot (the kill was inside a fold)
  int holes_amid_frames = 0;  // images whose newest log had a page of zeros before written frames
  std::string summary() const {
    std::ostringstream o;
    o << images << " crash images, " << synced_checked << " synced writes checked, " << lost_synced << " lost, "
      << refused << " refused opens; without sync_writes " << lost_unsynced << " acknowledged writes lost (allowed); "
      << torn << " torn batches, " << gaps << " gaps, " << out_of_order << " out-of-order states";
    if (killed_in_fold) o << "; " << killed_in_fold << " killed inside a fold";
    if (holes_amid_frames) o << "; " << holes_amid_frames << " logs with a page of zeros amid frames";
    return o.str();
  }
  void require_kept(bool sync) const {
    CHECK(refused == 0);
    CHECK(torn == 0);
    CHECK(gaps == 0);
    CHECK(out_of_order == 0);
    if (sync) CHECK(lost_synced == 0);
    CHECK(images > 0);
  }
};

long images_per_variant() { return scaled("KEEL_FAULT_CRASH_IMAGES", 2); }

// The writer's output, line by line.
using output = std::vector<std::string>;

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// One crash image: a fresh 128 MiB ext4 image, mounted; `program args(dir)`
// runs with its store under dir (on the mount) until stop(line) is true for
// a line it printed (REQUIREd within 60 s); it is SIGKILLed (its last lines
// are read: all acknowledged), before_copy(dir) runs, the image is copied;
// the copy is mounted and check(dir on the copy, output) runs.
// mount_options: of the writer's mount (the copy is mounted with defaults).
void crash_image(const std::string& program, const std::function<std::vector<std::string>(const fs::path&)>& args,
                 const std::function<bool(const std::string&)>& stop,
                 const std::function<void(const fs::path&)>& before_copy,
                 const std::function<void(const fs::path&, const output&)>& check,
                 const std::string& mount_options = "commit=300") {
  temp_dir dir;
  const fs::path image = dir.path() / "disk.img";
  const fs::path crash = dir.path() / "crash.img";
  make_ext4_image(image, 128u << 20);
  output lines;
  {
    loop_mount disk(image, dir.path() / "mnt", mount_options);
    const fs::path store_dir = disk.path() / "s";
    fs::create_directories(store_dir);
    child_process w(helper_path(program), args(store_dir));
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    bool stopped = false;
    while (!stopped && std::chrono::steady_clock::now() < deadline) {
      auto line = w.read_line(std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
      if (!line) break;
      INFO("writer: " << *line);
      REQUIRE_FALSE(starts_with(*line, "error"));
      lines.push_back(*line);
      stopped = stop(*line);
    }
    REQUIRE(stopped);
    w.kill(SIGKILL);
    w.wait();
    while (auto line = w.read_line(5s)) lines.push_back(*line);  // printed before it died: acknowledged
    before_copy(store_dir);
    copy_crash_image(image, crash);
  }
  fs::remove(image);
  loop_mount after(crash, dir.path() / "after");
  check(after.path() / "s", lines);
}

void no_forcing(const fs::path&) {}

// Out-of-order writeback: of each log, two pages of every three are written
// to the device (sync_file_range on a descriptor of our own), the third is
// not; then a journal commit (fsync of a new file) makes the written ones
// count (ext4 records a written extent of a preallocated file at commit).
void force_two_pages_of_three(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".wal-") == std::string::npos) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st{};
    REQUIRE(::fstat(fd, &st) == 0);
    for (off_t off = 0; off < st.st_size; off += 4096) {
      if ((off / 4096) % 3 == 2) continue;
      REQUIRE(::sync_file_range(fd, off, 4096,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) == 0);
    }
    ::close(fd);
  }
  const fs::path marker = dir / "journal-commit";
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "x", 1) == 1);
  REQUIRE(::fsync(fd) == 0);
  ::close(fd);
}

// Whether some log in `dir` has a 4 KiB page of zeros before non-zero bytes.
int logs_with_holes(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".wal-") == std::string::npos) continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string b((std::istreambuf_iterator<char>(in)), {});
    const std::size_t last = b.find_last_not_of('\0');
    if (last == std::string::npos) continue;
    for (std::size_t p = 0; p + 4096 <= last; p += 4096)
      if (b.find_first_not_of('\0', p) >= p + 4096) {
        ++n;
        break;
      }
  }
  return n;
}

// ---------------------------------------------------------------------------
// Persisted memory stores (memory_crash_writer: THREADS writers, "start t r"
// before and "ack t r" after each write; r % 3 == 0 a batch of 10 keys).

struct memory_history {
  std::vector<long> last_ack;  // per writer, -1: none
  // For each write (t, r): per writer, the last round acknowledged before it started.
  std::map<std::pair<int, long>, std::vector<long>> acked_before;
};

memory_history parse_memory_history(const output& lines, int threads) {
  memory_history h;
  h.last_ack.assign(static_cast<std::size_t>(threads), -1);
  for (const auto& l : lines) {
    int t = 0;
    long r = 0;
    if (std::sscanf(l.c_str(), "start %d %ld", &t, &r) == 2) h.acked_before[{t, r}] = h.last_ack;
    else if (std::sscanf(l.c_str(), "ack %d %ld", &t, &r) == 2) h.last_ack[static_cast<std::size_t>(t)] = r;
  }
  return h;
}

// Round r of writer t: "<t>/<r>" and padding of 'v' (60 or 6000 bytes).
bool memory_value_ok(std::string_view v, int t, long r) {
  const std::string head = std::to_string(t) + "/" + std::to_string(r);
  return v.size() >= head.size() + 60 && v.substr(0, head.size()) == head &&
         v.find_first_not_of('v', head.size()) == std::string_view::npos;
}

void check_memory(const fs::path& dir, const output& lines, int threads, bool sync, crash_counts& c) {
  const memory_history h = parse_memory_history(lines, threads);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) ++c.killed_in_fold;
  c.holes_amid_frames += logs_with_holes(dir);
  ++c.images;
  keel::memory_options o;
  o.persist_path = dir / "store.keeldump";
  auto s = keel::memory_store::open(o);
  if (!s) {
    ++c.refused;
    FAIL_CHECK("refused open: " << s.error().message());
    return;
  }
  std::vector<std::map<long, int>> present(static_cast<std::size_t>(threads));
  auto cur = s->scan();
  for (const auto& e : cur) {
    int t = 0;
    long r = 0;
    REQUIRE(std::sscanf(std::string(e.key).c_str(), "w%d/%ld", &t, &r) == 2);
    REQUIRE(t < threads);
    CHECK(memory_value_ok(e.value, t, r));
    ++present[static_cast<std::size_t>(t)][r];
  }
  REQUIRE_FALSE(cur.error());
  std::vector<long> highest(static_cast<std::size_t>(threads), -1);
  for (std::size_t t = 0; t < present.size(); ++t) {
    long expect_next = 0;
    for (const auto& [r, n] : present[t]) {
      if (n != (r % 3 == 0 ? 10 : 1)) ++c.torn;
      if (r != expect_next) ++c.gaps;
      expect_next = r + 1;
    }
    highest[t] = expect_next - 1;
    CHECK(highest[t] <= h.last_ack[t] + 1);  // nothing that was not yet written
    const long missing = std::max(0L, h.last_ack[t] - highest[t]);
    if (sync) {
      c.synced_checked += h.last_ack[t] + 1;
      c.lost_synced += missing;
    } else {
      c.lost_unsynced += missing;
    }
  }
  // A prefix of history: a present write implies every write acknowledged before it started.
  for (std::size_t t = 0; t < present.size(); ++t)
    for (const auto& [r, n] : present[t]) {
      auto it = h.acked_before.find({static_cast<int>(t), r});
      if (it == h.acked_before.end()) continue;
      for (std::size_t a = 0; a < it->second.size(); ++a)
        if (highest[a] < it->second[a]) ++c.out_of_order;
    }
  REQUIRE(s->close());
}

// Stops once `acks` writes were acknowledged.
std::function<bool(const std::string&)> after_acks(long acks) {
  auto seen = std::make_shared<long>(0);
  return [seen, acks](const std::string& l) { return starts_with(l, "ack ") && ++*seen >= acks; };
}

void memory_images(bool sync, int threads, const std::string& mode, const std::function<void(const fs::path&)>& force,
                   std::function<bool(const std::string&)> (*stop)(long), long first_acks, crash_counts& c) {
  for (long i = 0; i < images_per_variant(); ++i) {
    CAPTURE(i);
    crash_image(
        "memory_crash_writer",
        [&](const fs::path& d) {
          std::vector<std::string> a{(d / "store.keeldump").string(), std::to_string(threads), mode};
          if (sync) a.push_back("sync");
          return a;
        },
        stop(first_acks + i * 173), force,
        [&](const fs::path& d, const output& lines) { check_memory(d, lines, threads, sync, c); });
  }
}

}  // namespace

TEST_SUITE("faults") {
  TEST_CASE("crash images: persisted memory store with sync_writes holds every acknowledged write") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts c;
    memory_images(true, 3, "run", no_forcing, after_acks, 300, c);
    KEEL_REPORT("memory, sync_writes: " << c.summary());
    c.require_kept(true);
    CHECK(c.synced_checked > 0);
  }

  TEST_CASE("crash images: persisted memory store without sync_writes opens with a prefix") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts c;
    memory_images(false, 2, "run", no_forcing, after_acks, 2000, c);
    KEEL_REPORT("memory, no sync_writes: " << c.summary());
    c.require_kept(false);
  }

  // Defect 2 of issue 24: the mapped log's pages reach the disk out of order.
  TEST_CASE("crash images: out-of-order writeback of the mapped log drops the unsynced suffix, never refuses") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts c;
    memory_images(false, 2, "run", force_two_pages_of_three, after_acks, 1500, c);
    KEEL_REPORT("memory, no sync_writes, out-of-order writeback: " << c.summary());
    c.require_kept(false);
    CHECK(c.holes_amid_frames > 0);  // the case made what it is about
    crash_counts s;
    memory_images(true, 3, "run", force_two_pages_of_three, after_acks, 400, s);
    KEEL_REPORT("memory, sync_writes, out-of-order writeback: " << s.summary());
    s.require_kept(true);
  }

  // Defect 1 of issue 24: the log switch synced the new log before the old one.
  TEST_CASE("crash images: a crash at the log switch (4 synced writers) loses no acknowledged write") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts c;
    for (int step : {1, 2}) {
      CAPTURE(step);
      for (long i = 0; i < images_per_variant(); ++i) {
        crash_image(
            "memory_crash_writer",
            [&](const fs::path& d) {
              return std::vector<std::string>{(d / "store.keeldump").string(), "4", "switch:" + std::to_string(step),
                                              "sync"};
            },
            [](const std::string& l) { return starts_with(l, "switch "); }, no_forcing,
            [&](const fs::path& d, const output& lines) { check_memory(d, lines, 4, true, c); },
            // data=writeback: a journal commit (the new log's fdatasync makes one) writes no other
            // file's data, as on filesystems that do not order data; with data=ordered ext4 often
            // carries the old log's unsynced tail to the disk with it, which hid the defect.
            "commit=300,data=writeback");
      }
    }
    KEEL_REPORT("memory, sync_writes, killed at the log switch: " << c.summary());
    c.require_kept(true);
  }

#if defined(KEEL_HAS_ROCKSDB)
  // RocksDB (crash_writer: batch SEQ puts r0/SEQ/k0..k3 and r0/last, and moves r0/<seq>/tmp).
  TEST_CASE("crash images: RocksDB with and without sync_writes") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts with, without;
    for (const bool sync : {true, false}) {
      crash_counts& c = sync ? with : without;
      for (long i = 0; i < images_per_variant(); ++i) {
        crash_image(
            "crash_writer",
            [&](const fs::path& d) {
              std::vector<std::string> a;
              if (!sync) a.push_back("--no-sync");
              a.push_back((d / "db").string());
              a.push_back("0");
              return a;
            },
            after_acks(sync ? 200 + i * 150 : 3000 + i * 1000), no_forcing,
            [&](const fs::path& d, const output& lines) {
              long last_ack = -1;
              for (const auto& l : lines)
                if (starts_with(l, "ack ")) last_ack = std::stol(l.substr(4));
              ++c.images;
              keel::rocks_options o;
              o.path = d / "db";
              o.create_if_missing = false;
              auto s = keel::rocks_store::open(o);
              if (!s) {
                ++c.refused;
                FAIL_CHECK("refused open: " << s.error().message());
                return;
              }
              std::map<long, int> keys;  // seq -> k0..k3 present
              std::vector<long> tmps;
              std::string last;
              auto cur = s->scan(keel::key_range::prefix("r0/"));
              for (const auto& e : cur) {
                const std::string k(e.key);
                if (k == "r0/last") {
                  last = std::string(e.value);
                  continue;
                }
                const long seq = std::stol(k.substr(3));
                if (k.size() > 4 && k.compare(k.size() - 4, 4, "/tmp") == 0)
                  tmps.push_back(seq);
                else
                  ++keys[seq];
              }
              REQUIRE_FALSE(cur.error());
              long expect_next = 0;
              for (const auto& [seq, n] : keys) {
                if (n != 4) ++c.torn;
                if (seq != expect_next) ++c.gaps;
                expect_next = seq + 1;
              }
              const long highest = expect_next - 1;
              // The batch that put the highest seq erased the tmp before it: one tmp, the newest batch's.
              if (highest >= 0) {
                if (last != std::to_string(highest) || tmps.size() != 1 || tmps[0] != highest) ++c.torn;
              }
              CHECK(highest <= last_ack + 1);
              if (sync) {
                c.synced_checked += last_ack + 1;
                c.lost_synced += std::max(0L, last_ack - highest);
              } else {
                c.lost_unsynced += std::max(0L, last_ack - highest);
              }
              REQUIRE(s->close());
            });
      }
    }
    KEEL_REPORT("RocksDB, sync_writes: " << with.summary());
    KEEL_REPORT("RocksDB, no sync_writes: " << without.summary());
    with.require_kept(true);
    without.require_kept(false);
  }

  // Hybrid (hybrid_writer, sync_writes: 20000 keys h/pre/<i> in batches, then
  // rounds "ack r" while a thread moves the data to RocksDB).
  TEST_CASE("crash images: hybrid store with sync_writes, before, during and after the move") {
    if (auto why = loop_mounts_unavailable()) return skip(*why);
    crash_counts c;
    struct variant {
      const char* name;
      const char* step;
      std::function<bool(const std::string&)> (*stop)();
    };
    const variant variants[] = {
        {"before the move", "never", [] { return after_acks(150); }},
        // The move's own hook ends the process (_exit) once it has copied and caught up.
        {"during the move", "caught_up", [] {
           return std::function<bool(const std::string&)>([](const std::string& l) { return l == "crash"; });
         }},
        {"after the move", "none", [] {
           auto moved = std::make_shared<long>(-1);
           return std::function<bool(const std::string&)>([moved](const std::string& l) {
             if (l == "moved") *moved = 0;
             else if (*moved >= 0 && starts_with(l, "ack ")) ++*moved;
             return *moved >= 50;
           });
         }},
    };
    for (const auto& v : variants) {
      CAPTURE(v.name);
      crash_image(
          "hybrid_writer",
          [&](const fs::path& d) {
            return std::vector<std::string>{"write", (d / "h").string(), "h", v.step, "sync"};
          },
          v.stop(), no_forcing,
          [&](const fs::path& d, const output& lines) {
            long last_ack = -1;
            bool loaded = false;
            for (const auto& l : lines) {
              if (starts_with(l, "ack ")) last_ack = std::stol(l.substr(4));
              if (l == "loaded") loaded = true;
            }
            REQUIRE(loaded);
            ++c.images;
            keel::hybrid_options o;
            o.path = d / "h";
            o.spill_bytes = std::numeric_limits<std::size_t>::max();
            auto s = keel::hybrid_store::open(o);
            if (!s) {
              ++c.refused;
              FAIL_CHECK("refused open: " << s.error().message());
              return;
            }
            long pre = 0;
            std::map<long, int> rounds;
            auto cur = s->scan(keel::key_range::prefix("h/"));
            for (const auto& e : cur) {
              const std::string k(e.key);
              if (starts_with(k, "h/pre/")) {
                ++pre;
                continue;
              }
              const long r = std::stol(k.substr(2));
              CHECK(std::string(e.value).rfind("round " + std::to_string(r) + " ", 0) == 0);
              ++rounds[r];
            }
            REQUIRE_FALSE(cur.error());
            c.synced_checked += 20000 + last_ack + 1;
            c.lost_synced += 20000 - pre;
            long expect_next = 0;
            for (const auto& [r, n] : rounds) {
              if (n != (r % 3 == 0 ? 10 : 1)) ++c.torn;
              if (r != expect_next) ++c.gaps;
              expect_next = r + 1;
            }
            CHECK(expect_next - 1 <= last_ack + 1);
            c.lost_synced += std::max(0L, last_ack - (expect_next - 1));
            REQUIRE(s->close());
          });
    }
    KEEL_REPORT("hybrid, sync_writes (before, during, after the move): " << c.summary());
    c.require_kept(true);
  }
#endif
}
