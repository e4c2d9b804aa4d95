// tests/faults/memory_crash_writer.cpp - helper for the crash-image tests
// (tests/faults/crash_image_test.cpp); exec'd, never just forked.
//
//   memory_crash_writer FILE THREADS MODE [sync]
//       opens a memory store persisted at FILE (sync: sync_writes = true;
//       fold_log_bytes 32 KiB, so background folds run often) and starts
//       THREADS writers. Writer t, for round r = 0, 1, ...: prints
//       "start t r", writes (r % 3 == 0: one batch of 10 puts w<t>/<r>/<i>;
//       otherwise one put w<t>/<r>; value value_for(t, r)) and prints
//       "ack t r" once the write returned success. Writer 0 flush()es (a
//       fold) every 40 rounds (in switch:N mode a thread of its own does,
//       every 3 ms once writer 0 has written 30 rounds). Lines are printed under one mutex, so their order is the
//       order of the events.
//       MODE run: until killed.
//       MODE switch:N: from the second flush() on, the Nth fdatasync of a log
//       inside that flush() (the log switch: with this keel, 1 = the old log,
//       2 = the new log's header) is done, then the process prints
//       "switch N <file>" and waits to be killed: a crash at the switch (no
//       log sync of any thread starts after that point).
//       In this mode every other log sync takes 20 ms longer (a slow disk),
//       so writers append frames while a group sync is in flight and the
//       switch finds unsynced frames in the old log.
// Errors: "error <code> <message>" on stdout, exit 1. Bad usage: exit 64.
#include <keel/memory.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex out_mutex;

void say(const std::string& line) {
  std::lock_guard l(out_mutex);
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

int report_error(const keel::error& e) {
  say("error " + std::string(keel::to_string(e.code())) + " " + e.message());
  return 1;
}

thread_local bool in_flush = false;
std::atomic<int> flushes{0};
int switch_at = 0;        // N of switch:N; 0: run
thread_local int syncs_in_flush = 0;
std::atomic<bool> frozen{false};  // set at the switch: every later sync waits to be killed

int sync_at_switch(keel::detail::native_handle fd) {
  // Writers' group syncs are made slow (a slow disk): frames appended while
  // one is in flight are unsynced when the switch comes.
  if (!in_flush) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (frozen.load()) for (;;) ::pause();  // the crash came: no sync after it
  if (auto e = keel::detail::file::sync_data(fd)) {
    errno = static_cast<int>(e.code);
    return -1;
  }
  if (in_flush && flushes.load() >= 1 && ++syncs_in_flush == switch_at) {
    std::error_code ec;
    const auto p = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec);
    frozen.store(true);
    say("switch " + std::to_string(switch_at) + " " + p.filename().string());
    for (;;) ::pause();  // killed here
  }
  return 0;
}

}  // namespace

// The value of round r of writer t: "<t>/<r>" and padding (60 bytes; in
// switch:N mode 6000, so that an unsynced frame needs a new block, which
// ext4 allocates only at writeback: a journal commit does not carry it).
std::size_t padding = 60;
std::string value_for(int t, unsigned long r) { return std::to_string(t) + "/" + std::to_string(r) + std::string(padding, 'v'); }
std::atomic<unsigned long> rounds_of_writer0{0};

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: memory_crash_writer FILE THREADS run|switch:N [sync]\n");
    return 64;
  }
  const int threads = std::stoi(argv[2]);
  const std::string mode = argv[3];
  if (mode.rfind("switch:", 0) == 0) {
    switch_at = std::stoi(mode.substr(7));
    padding = 6000;
    keel::detail::log_io::sync_hook().store(&sync_at_switch);
  } else if (mode != "run") {
    return 64;
  }
  keel::memory_options o;
  o.persist_path = argv[1];
  o.sync_writes = argc == 5 && std::string(argv[4]) == "sync";
  o.fold_log_bytes = 32 * 1024;
  auto store = keel::memory_store::open(o);
  if (!store) return report_error(store.error());
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      for (unsigned long r = 0;; ++r) {
        const std::string value = value_for(t, r);
        const std::string key = "w" + std::to_string(t) + "/" + std::to_string(r);
        say("start " + std::to_string(t) + " " + std::to_string(r));
        keel::result<void> w;
        if (r % 3 == 0) {
          keel::write_batch b;
          for (int i = 0; i < 10; ++i) b.put(key + "/" + std::to_string(i), value);
          w = store->write(b);
        } else {
          w = store->put(key, value);
        }
        if (!w) std::_Exit(report_error(w.error()));
        say("ack " + std::to_string(t) + " " + std::to_string(r));
        if (t == 0) rounds_of_writer0.store(r + 1);
        if (switch_at == 0 && t == 0 && r % 40 == 39) {
          in_flush = true;
          syncs_in_flush = 0;
          auto f = store->flush();
          in_flush = false;
          if (!f) std::_Exit(report_error(f.error()));
          flushes.fetch_add(1);
        }
      }
    });
  }
  if (switch_at != 0) {
    // switch:N: folds from a thread of their own every 3 ms, so that they
    // come while writers' frames are appended and not yet synced.
    in_flush = true;
    while (rounds_of_writer0.load() < 30) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      syncs_in_flush = 0;
      if (auto f = store->flush(); !f) return report_error(f.error());
      flushes.fetch_add(1);
    }
  }
  for (auto& w : writers) w.join();
}
