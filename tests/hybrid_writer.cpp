// tests/hybrid_writer.cpp - helper for the hybrid store tests (exec'd).
//
//   hybrid_writer write PATH PREFIX [STEP] [sync]
//       opens a hybrid store at PATH (no automatic move), writes
//       PREFIX/pre/<i> for i < 20000 in batches, ttl/<i> for i < 100 with a
//       ttl of 1 h (its clock fixed at ttl_clock_ms) and prints "loaded"; then
//       starts a thread that moves the data to RocksDB (printing "moving",
//       then "moved" or "error ..."), while this thread writes, for round
//       r = 0, 1, ...: r % 3 == 0: one batch of 10 puts PREFIX/<r>/<i>;
//       otherwise one put PREFIX/<r>, printing "ack <r>" once acknowledged.
//       STEP (copied, caught_up, synced, committed, released; "none": no
//       hook): the process ends with _exit(42) when the move reaches it,
//       after printing "crash STEP". The test SIGKILLs it otherwise.
//       STEP "never": no move (the writes stay in the memory tier).
//   hybrid_writer ks-write PATH [STEP] [sync]
//       the same across keyspaces: creates keyspaces "a" and "b\0\xff" (3
//       bytes), writes pre/<i> for i < 5000 in each of them and in "" in
//       cross-keyspace batches, prints "loaded", starts the move as above
//       and writes, for round r = 0, 1, ...: one batch putting r/<r> in
//       "", "a" and "b\0\xff" (and, when r is odd, r/<r>/x in "a"),
//       printing "ack <r>" once acknowledged. STEP as above.
//   hybrid_writer hold PATH
//       opens PATH, prints "ready <pid>", waits for EOF on stdin, closes.
// Errors: "error <code> <message>" on stdout, exit 1. Bad usage: exit 64.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <keel/hybrid.hpp>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

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

keel::detail::hybrid_move_step crash_step;

void crash_at(keel::detail::hybrid_move_step step) {
  if (step != crash_step) return;
  say("crash");
  ::_exit(42);
}

}  // namespace

// write's clock (hybrid_options::clock): fixed at this time (ms since the
// epoch; the test's fake clock starts there), so that the deadlines of
// ttl/<i> are this + 1 h exactly.
constexpr long long ttl_clock_ms = 1767225600000;

// The value written for round r (the test checks it).
static std::string value_for(unsigned long r) { return "round " + std::to_string(r) + " " + std::string(90, 'v'); }

// Sets the crash hook for STEP; false when STEP names no step.
static bool set_crash_step(const std::string& step) {
  using keel::detail::hybrid_move_step;
  if (step == "none" || step == "never") return true;
  if (step == "copied") crash_step = hybrid_move_step::copied;
  else if (step == "caught_up") crash_step = hybrid_move_step::caught_up;
  else if (step == "synced") crash_step = hybrid_move_step::synced;
  else if (step == "committed") crash_step = hybrid_move_step::committed;
  else if (step == "released") crash_step = hybrid_move_step::released;
  else return false;
  keel::detail::hybrid_move_hook().store(&crash_at);
  return true;
}

// ks-write (argv as write's: PATH at 2, STEP at 4, sync at 5).
static int run_keyspace_writer(int argc, char** argv) {
  const std::string step = argc > 4 ? argv[4] : "none";
  if (!set_crash_step(step)) return 64;
  keel::hybrid_options o;
  o.path = argv[2];
  o.spill_bytes = std::numeric_limits<std::size_t>::max();
  o.sync_writes = argc > 5 && std::string(argv[5]) == "sync";
  auto store = keel::hybrid_store::open(o);
  if (!store) return report_error(store.error());
  auto a = store->keyspace("a");
  if (!a) return report_error(a.error());
  auto b = store->keyspace(std::string("b\0\xff", 3));
  if (!b) return report_error(b.error());
  for (int i = 0; i < 5000;) {
    keel::write_batch batch;
    for (int j = 0; j < 500; ++j, ++i) {
      const std::string key = "pre/" + std::to_string(i);
      batch.put(key, std::string(100, 'p')).put(*a, key, std::string(100, 'a')).put(*b, key, std::string(100, 'b'));
    }
    if (auto w = store->write(batch); !w) return report_error(w.error());
  }
  say("loaded");
  if (step != "never") std::thread([&] {
    say("moving");
    auto m = store->policy().move_to_large();
    if (m)
      say("moved");
    else
      say("error " + std::string(keel::to_string(m.error().code())) + " " + m.error().message());
  }).detach();  // the process ends by a signal or _exit
  for (unsigned long r = 0;; ++r) {
    const std::string key = "r/" + std::to_string(r), value = value_for(r);
    keel::write_batch batch;
    batch.put(key, value).put(*a, key, value).put(*b, key, value);
    if (r % 2 == 1) batch.put(*a, key + "/x", value);
    if (auto w = store->write(batch); !w) return report_error(w.error());
    say("ack " + std::to_string(r));
  }
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "hold" && argc == 3) {
    auto store = keel::hybrid_store::open({.path = argv[2]});
    if (!store) return report_error(store.error());
    say("ready " + std::to_string(::getpid()));
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    if (auto c = store->close(); !c) return report_error(c.error());
    return 0;
  }
  const bool keyspaces = mode == "ks-write";
  if (keyspaces) {  // the same argument positions as write (PREFIX unused)
    std::vector<char*> args(argv, argv + argc);
    args.insert(args.begin() + 3, const_cast<char*>(""));
    return run_keyspace_writer(static_cast<int>(args.size()), args.data());
  }
  if (mode != "write" || argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: hybrid_writer write PATH PREFIX [STEP] [sync] | ks-write PATH [STEP] [sync] | hold PATH\n");
    return 64;
  }
  const std::string step = argc > 4 ? argv[4] : "none";
  if (!set_crash_step(step)) return 64;
  keel::hybrid_options o;
  o.path = argv[2];
  o.spill_bytes = std::numeric_limits<std::size_t>::max();
  o.sync_writes = argc > 5 && std::string(argv[5]) == "sync";
  o.clock = [] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(ttl_clock_ms)); };
  auto store = keel::hybrid_store::open(o);
  if (!store) return report_error(store.error());
  const std::string prefix = argv[3];
  for (int i = 0; i < 20000;) {
    keel::write_batch b;
    for (int j = 0; j < 1000; ++j, ++i) b.put(prefix + "/pre/" + std::to_string(i), std::string(100, 'p'));
    if (auto w = store->write(b); !w) return report_error(w.error());
  }
  keel::write_batch with_ttl;
  for (int i = 0; i < 100; ++i) with_ttl.put("ttl/" + std::to_string(i), "t", keel::put_options{std::chrono::hours(1)});
  if (auto w = store->write(with_ttl); !w) return report_error(w.error());
  say("loaded");
  if (step != "never") std::thread([&] {
    say("moving");
    auto m = store->policy().move_to_large();
    if (m)
      say("moved");
    else
      say("error " + std::string(keel::to_string(m.error().code())) + " " + m.error().message());
  }).detach();  // the process ends by a signal or _exit
  for (unsigned long r = 0;; ++r) {
    const std::string value = value_for(r);
    keel::result<void> w;
    if (r % 3 == 0) {
      keel::write_batch b;
      for (int i = 0; i < 10; ++i) b.put(prefix + "/" + std::to_string(r) + "/" + std::to_string(i), value);
      w = store->write(b);
    } else {
      w = store->put(prefix + "/" + std::to_string(r), value);
    }
    if (!w) return report_error(w.error());
    say("ack " + std::to_string(r));
  }
}
