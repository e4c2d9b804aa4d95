// tests/faults/full_disk_test.cpp - a full disk on every backend (issue 24):
// real ENOSPC from a small tmpfs (8 MiB) and a small loop-mounted ext4
// (16 MiB), and ENOSPC/EIO injected by strace into one file's system calls.
//
// Every scenario runs in an exec'd helper (full_disk_writer), so an abort
// (RocksDB's info log and FlushWAL used to SIGABRT on a full disk) is seen as
// the helper's exit status, never as the test runner dying. Checked each
// time: the write that meets the full disk returns no_space (never io_error,
// never an abort), the store stays readable, every acknowledged batch is
// there after a reopen and every batch is whole or absent, and after space is
// freed writes succeed again: in place for memory and hybrid stores in the
// memory tier, after a reopen for RocksDB (docs/durability.md, "Full disk").
#include "faults/support.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

#include <sys/statvfs.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

using namespace keel::test;
using namespace keel::test::faults;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t MiB = std::uint64_t{1} << 20;
constexpr auto line_timeout = std::chrono::seconds(60);

// Counts for the lead, printed at the end of the cases that make them.
struct counts {
  int scenarios = 0, sweep_points = 0, acked_checked = 0, lost = 0, aborts = 0;
} totals;

// Prints the counts so far (for the lead; cumulative over the cases run).
void report_counts() {
  KEEL_REPORT("full disk counts so far: " << totals.scenarios << " scenarios, " << totals.sweep_points
                                      << " sweep points, " << totals.acked_checked
                                      << " acknowledged batches checked, " << totals.lost << " lost, "
                                      << totals.aborts << " helper aborts or failures");
}

fs::path writer_program() {
  fs::path p = helper_path("faults/full_disk_writer");
  if (!fs::exists(p)) p = helper_path("full_disk_writer");
  return p;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Reads the helper's lines up to (and including) one starting with `until`,
// or to its end ("" : to the end).
std::vector<std::string> read_lines(child_process& child, const std::string& until = "") {
  std::vector<std::string> lines;
  while (auto line = child.read_line(line_timeout)) {
    lines.push_back(*line);
    if (!until.empty() && starts_with(*line, until)) break;
  }
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (starts_with(l, "ack ") ? std::string() : l + "\n");
  return out;
}

// The batches a helper acknowledged, and the first line starting with `what`.
std::set<long> acks(const std::vector<std::string>& lines) {
  std::set<long> out;
  for (const auto& l : lines)
    if (starts_with(l, "ack ")) out.insert(std::stol(l.substr(4)));
  return out;
}
std::string line_of(const std::vector<std::string>& lines, const std::string& what) {
  for (const auto& l : lines)
    if (starts_with(l, what + " ")) return l.substr(what.size() + 1);
  return "<none>";
}

// Runs the helper to its end; returns its lines, checks it exited 0.
std::vector<std::string> run_writer(const std::vector<std::string>& args) {
  child_process child(writer_program(), args);
  child.close_stdin();
  auto lines = read_lines(child);
  const int status = child.wait();
  if (status != 0) ++totals.aborts;
  INFO("full_disk_writer " << args.front() << " exited " << status << " (134: SIGABRT)\n" << joined(lines));
  REQUIRE(status == 0);
  return lines;
}

// Reopens the store (no fault), checks every batch in `acked` is there, every
// batch below `upto` whole or absent, and that a write succeeds.
void verify(const std::string& backend, const fs::path& dir, std::size_t value, const std::set<long>& acked,
            long upto) {
  auto lines = run_writer({"verify", backend, dir.string(), std::to_string(value), std::to_string(upto)});
  INFO(joined(lines));
  REQUIRE(lines.back() == "verified");
  const std::set<long> present = acks([&] {
    std::vector<std::string> as_acks;
    for (const auto& l : lines)
      if (starts_with(l, "present ")) as_acks.push_back("ack " + l.substr(8));
    return as_acks;
  }());
  for (long n : acked) {
    totals.acked_checked += 1;
    if (!present.count(n)) {
      ++totals.lost;
      FAIL_CHECK("acknowledged batch " << n << " is lost");
    }
  }
}

void fill_file(const fs::path& p, std::uint64_t bytes) {
  std::ofstream out(p, std::ios::binary);
  const std::string block(64 << 10, 'B');
  for (std::uint64_t done = 0; done < bytes; done += block.size())
    out.write(block.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(block.size(), bytes - done)));
  out.close();
  REQUIRE(out.good());
}

std::uint64_t free_space(const fs::path& p) {
  struct statvfs st {};
  REQUIRE(::statvfs(p.c_str(), &st) == 0);
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

// The scenario: a ballast file takes `ballast` bytes, the helper writes
// 4000-byte batches until the disk is full, then the test removes the ballast
// and the helper writes once more; then a reopen checks every acknowledged
// batch.
void fill_scenario(const fs::path& mnt, const std::string& backend, bool sync, std::uint64_t ballast) {
  CAPTURE(backend);
  CAPTURE(sync);
  const fs::path dir = mnt / (backend + (sync ? "-sync" : "-nosync"));
  fs::create_directories(dir);
  fill_file(mnt / "ballast", ballast);
  std::vector<std::string> lines;
  {
    child_process child(writer_program(), {"fill", backend, dir.string(), sync ? "sync" : "nosync", "4000", "0"});
    lines = read_lines(child, "waiting");
    fs::remove(mnt / "ballast");
    if (!lines.empty() && lines.back() == "waiting") child.write_line("freed");
    auto rest = read_lines(child);
    lines.insert(lines.end(), rest.begin(), rest.end());
    const int status = child.wait();
    if (status != 0) ++totals.aborts;
    INFO("full_disk_writer fill exited " << status << " (134: SIGABRT)\n" << joined(lines));
    REQUIRE(status == 0);
  }
  ++totals.scenarios;
  INFO(joined(lines));
  const std::string full = line_of(lines, "full");
  CHECK(starts_with(full, "no_space "));
  CHECK(line_of(lines, "read") == "ok");
  const std::string flush = line_of(lines, "flush");
  CHECK((flush == "ok" || starts_with(flush, "no_space ")));
  const std::string after = line_of(lines, "after");
  if (backend == "rocksdb") {
    // RocksDB: refuses writes until reopened (it resumes in place only with
    // 64 MiB free, which these disks never have); the error says so.
    CHECK(starts_with(after, "no_space "));
    CHECK(after.find("open it again") != std::string::npos);
    CHECK(after.find("67108864 bytes") != std::string::npos);
  } else {
    CHECK(after == "ok");  // memory and the hybrid memory tier go on in place
  }
  const std::string close = line_of(lines, "close");
  CHECK((close == "ok" || starts_with(close, "no_space ")));
  const std::set<long> acked = acks(lines);
  REQUIRE(!acked.empty());
  verify(backend, dir, 4000, acked, *acked.rbegin() + 3);
}

}  // namespace

TEST_CASE("full disk, 8 MiB tmpfs: no_space on every backend, no abort, nothing acknowledged lost") {
  if (::geteuid() != 0) return skip("full disk (tmpfs): needs root (mount -t tmpfs)");
  for (const std::string backend : {"memory", "rocksdb", "hybrid"}) {
    for (bool sync : {false, true}) {
      temp_dir tmp;
      tmpfs_mount small(tmp.path() / "small", 8 * MiB);
      fill_scenario(small.path(), backend, sync, 5 * MiB);
    }
  }
  report_counts();
}

TEST_CASE("full disk, 16 MiB ext4: no_space on every backend, no abort, nothing acknowledged lost") {
  if (auto why = loop_mounts_unavailable()) return skip("full disk (ext4): " + *why);
  for (const std::string backend : {"memory", "rocksdb", "hybrid"}) {
    for (bool sync : {false, true}) {
      temp_dir tmp;
      make_ext4_image(tmp.path() / "disk.img", 16 * MiB);
      loop_mount disk(tmp.path() / "disk.img", tmp.path() / "mnt");
      fill_scenario(disk.path(), backend, sync, 9 * MiB);
    }
  }
  report_counts();
}

TEST_CASE("full disk, ext4 with ~3 MiB free: RocksDB's open and close do not abort") {
  if (auto why = loop_mounts_unavailable()) return skip("full disk at open (ext4): " + *why);
  temp_dir tmp;
  make_ext4_image(tmp.path() / "disk.img", 16 * MiB);
  loop_mount disk(tmp.path() / "disk.img", tmp.path() / "mnt");
  const fs::path dir = disk.path() / "store";
  fs::create_directories(dir);
  auto first = run_writer({"sweep", "rocksdb", dir.string(), "nosync", "50", "1000"});
  std::set<long> acked = acks(first);
  REQUIRE(acked.size() == 50);
  const std::uint64_t free = free_space(disk.path());
  REQUIRE(free > 3 * MiB);
  fill_file(disk.path() / "ballast", free - 3 * MiB);
  auto lines = run_writer({"open", "rocksdb", dir.string(), "nosync", "1000", "50"});
  ++totals.scenarios;
  INFO(joined(lines));
  const std::string open = line_of(lines, "open");
  CHECK((open == "ok" || starts_with(open, "no_space ")));
  if (open == "ok") {
    CHECK(starts_with(line_of(lines, "full"), "no_space "));
    const std::string close = line_of(lines, "close");
    CHECK((close == "ok" || starts_with(close, "no_space ")));
  } else {
    CHECK(open.find("Free some space") != std::string::npos);
  }
  for (long n : acks(lines)) acked.insert(n);
  fs::remove(disk.path() / "ballast");
  verify("rocksdb", dir, 1000, acked, *acked.rbegin() + 3);
  KEEL_REPORT("open with 3 MiB free: " << open.substr(0, 200));
  report_counts();
}

TEST_CASE("full disk, hybrid move: no_space, the data stays in the memory tier, nothing lost") {
  if (::geteuid() != 0) return skip("full disk during a hybrid move (tmpfs): needs root");
  temp_dir tmp;
  tmpfs_mount small(tmp.path() / "small", 8 * MiB);
  const fs::path dir = small.path() / "h";
  fs::create_directories(dir);
  // 300 batches of 3 x 1000 bytes in the memory tier (its log reserves
  // 1 MiB); about 4.5 MiB left: the move's RocksDB opens (a 4 MiB MANIFEST)
  // and then runs out of space while copying.
  fill_file(small.path() / "ballast", 8 * MiB - MiB - 4608 * 1024);
  auto lines = run_writer({"move", dir.string(), "nosync", "1000", "300"});
  ++totals.scenarios;
  INFO(joined(lines));
  const std::string move = line_of(lines, "move");
  CHECK(starts_with(move, "no_space "));
  CHECK(move.find("stays in memory") != std::string::npos);
  CHECK(line_of(lines, "tier") == "memory");
  CHECK(line_of(lines, "close") == "ok");
  const std::set<long> acked = acks(lines);
  CHECK(acked.size() == 320);  // 300 before the move, 20 after it, in the memory tier
  CHECK(!fs::exists(dir / "hybrid" / "rocksdb"));  // the partial copy is gone
  fs::remove(small.path() / "ballast");
  verify("hybrid", dir, 1000, acked, 330);
  report_counts();
}

namespace {

struct sweep_spec {
  std::string backend;
  bool sync;
  std::string file;     // relative to the store's directory: the file the faults hit
  std::string syscall;  // write, pwrite64, fdatasync, fallocate, rename, openat
  std::string error;    // ENOSPC or EIO
  int from, to;         // the Nth call of syscall on file, N in [from, to]
};

// One point: the helper writes 12 batches under strace, which fails the Nth
// `syscall` on `file` with `error`; then a reopen without faults.
void sweep_point(const sweep_spec& s, int n) {
  CAPTURE(s.backend);
  CAPTURE(s.syscall);
  CAPTURE(s.error);
  CAPTURE(n);
  temp_dir tmp;
  const fs::path dir = fs::absolute(tmp.path());
  const fs::path store_dir = s.backend == "memory" ? dir : dir / "db";
  const std::string target = (store_dir / s.file).string();
  // LeakSanitizer cannot run under ptrace: off for a sanitized helper here.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_options =
      std::string("ASAN_OPTIONS=") + (asan && *asan ? std::string(asan) + ":" : std::string()) + "detect_leaks=0";
  std::vector<std::string> args = {"-f", "-o", "/dev/null", "-E", asan_options, "-e", "trace=" + s.syscall,
                                   "-e", "inject=" + s.syscall + ":error=" + s.error + ":when=" + std::to_string(n),
                                   "-P", target, writer_program().string(), "sweep", s.backend, dir.string(),
                                   s.sync ? "sync" : "nosync", "12"};
  child_process child("strace", args);
  child.close_stdin();
  auto lines = read_lines(child);
  const int status = child.wait();
  ++totals.sweep_points;
  if (status != 0) ++totals.aborts;
  INFO("strace ... full_disk_writer sweep exited " << status << "\n" << joined(lines));
  REQUIRE(status == 0);
  const std::string wanted = s.error == "EIO" ? "io_error " : "no_space ";
  bool failed = false;
  for (const auto& l : lines) {
    if (starts_with(l, "fail ")) {
      failed = true;
      const std::string what = l.substr(l.find(' ', 5) + 1);
      CHECK(starts_with(what, wanted));
    }
  }
  const std::string open = line_of(lines, "open");
  if (open != "<none>") {
    CHECK(starts_with(open, wanted));  // the open failed: no flush, no close
  } else {
    for (const char* op : {"flush", "close"}) {
      const std::string r = line_of(lines, op);
      CHECK((r == "ok" || starts_with(r, wanted)));
    }
  }
  if (s.error == "EIO" && failed) {
    // A failed fdatasync is final: no write after it is acknowledged.
    bool seen_fail = false;
    for (const auto& l : lines) {
      if (starts_with(l, "fail ")) seen_fail = true;
      if (seen_fail) CHECK(!starts_with(l, "ack "));
    }
  }
  verify(s.backend, dir, 100, acks(lines), 12);
}

}  // namespace

TEST_CASE("ENOSPC sweep (strace): memory log and RocksDB WAL, every point no_space, nothing lost") {
  if (::geteuid() != 0) return skip("ENOSPC sweep: needs root (strace -e inject)");
  if (run_command("command -v strace").status != 0) return skip("ENOSPC sweep: strace not found (Debian: strace)");
  const std::string wal = "store.wal-000000000001";
  const std::vector<sweep_spec> specs = {
      // Memory, synced: one write() per frame (the first is the log header),
      // an fdatasync per write.
      {"memory", true, wal, "write", "ENOSPC", 1, 8},
      {"memory", true, wal, "fdatasync", "ENOSPC", 1, 4},
      {"memory", true, wal, "fdatasync", "EIO", 1, 3},
      {"memory", true, wal, "openat", "ENOSPC", 1, 1},
      // Memory, not synced: the log is mapped over posix_fallocate'd space.
      {"memory", false, wal, "fallocate", "ENOSPC", 1, 2},
      // The fold at close renames the new snapshot over the old.
      {"memory", false, "store", "rename", "ENOSPC", 1, 1},
      // RocksDB: the WAL of a new database is 000004.log.
      {"rocksdb", true, "000004.log", "write", "ENOSPC", 1, 8},
      {"rocksdb", true, "000004.log", "fdatasync", "ENOSPC", 1, 4},
      {"rocksdb", true, "000004.log", "fdatasync", "EIO", 1, 3},
      {"rocksdb", false, "000004.log", "write", "ENOSPC", 1, 4},
      {"rocksdb", true, "000004.log", "openat", "ENOSPC", 1, 1},
  };
  const int before = totals.sweep_points;
  for (const auto& s : specs)
    for (int n = s.from; n <= s.to; ++n) sweep_point(s, n);
  KEEL_REPORT("ENOSPC/EIO sweep: " << totals.sweep_points - before << " points swept");
  report_counts();
}
