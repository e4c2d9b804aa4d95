// tests/memory_log_writer.cpp - helper for the memory store log tests (exec'd).
//
//   memory_log_writer write FILE PREFIX [sync]
//       opens a memory store persisted at FILE (sync: sync_writes = true; a
//       small fold threshold, so background folds run often), then forever,
//       for round r = 0, 1, ...: r % 3 == 0: one batch of 10 puts
//       PREFIX/<r>/<i>; otherwise one put PREFIX/<r>. Prints "ack <r>" once
//       the write returned success; every 37 rounds flush()es (a fold) and
//       prints "folded <r>". The test SIGKILLs it at random moments.
//   memory_log_writer keyspaces FILE PREFIX [sync]
//       the same with keyspaces (issue 27): opens keyspaces "a" and
//       "k\0\xff" (created if missing), then for round r: one batch putting
//       PREFIX/<r>/<i>, i < 3, into "", "a" and "k\0\xff"; when r % 5 == 4
//       the keyspace "scratch" is dropped (if it exists) and created again
//       first, and the batch also puts PREFIX/<r> into it. Prints "ack <r>";
//       every 37 rounds flush()es and prints "folded <r>".
//   memory_log_writer expiry FILE PREFIX NOW_MS
//       expiry (issue 29): the store's clock stands at NOW_MS (ms since the
//       epoch); for round r: r % 2 == 0 a put PREFIX/<r> with ttl 1 s, else
//       a batch putting PREFIX/<r> with ttl 1000 s and PREFIX/<r>/p without;
//       a small fold threshold, flush() every 37 rounds as above. Prints
//       "ack <r>".
//   memory_log_writer watch FILE PREFIX
//       watch seqs across a crash (issue 28, tests/watch_memory_test.cpp):
//       opens FILE with sync_writes (every write synced before it returns),
//       makes a watch of every key (from now) and prints "ready
//       <last_seq>"; then for round r: r % 3 == 0 one batch putting
//       PREFIX/<r>/<i>, i < 3, otherwise one put PREFIX/<r>; reads the
//       round's changes from the watch (each with the round's value, all
//       with one seq) and prints "ack <r> <seq>". Every 50 rounds it
//       flush()es (a fold: the history a reopen reads back starts there) and
//       prints "folded <r> <last_seq>". A change that is not the round's:
//       "error mismatch ...", exit 1.
//   memory_log_writer hold FILE
//       opens FILE, prints "ready <pid>", waits for EOF on stdin, closes.
// Errors: "error <code> <message>" on stdout, exit 1. Bad usage: exit 64.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <keel/memory.hpp>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

int report_error(const keel::error& e) {
  std::printf("error %s %s\n", std::string(keel::to_string(e.code())).c_str(), e.message().c_str());
  std::fflush(stdout);
  return 1;
}

}  // namespace

// The value written for round r (the test checks it).
static std::string value_for(unsigned long r) { return "round " + std::to_string(r) + " " + std::string(90, 'v'); }

// The keyspaces mode (see the top of the file).
static int write_keyspaces(keel::memory_store& store, const std::string& prefix) {
  using namespace std::string_literals;
  auto a = store.keyspace("a");
  if (!a) return report_error(a.error());
  auto odd = store.keyspace("k\0\xff"s);
  if (!odd) return report_error(odd.error());
  for (unsigned long r = 0;; ++r) {
    const std::string value = value_for(r);
    keel::write_batch b;
    if (r % 5 == 4) {
      if (auto d = store.drop_keyspace("scratch"); !d && d.error().code() != keel::errc::not_found)
        return report_error(d.error());
      auto scratch = store.keyspace("scratch");
      if (!scratch) return report_error(scratch.error());
      b.put(*scratch, prefix + "/" + std::to_string(r), value);
    }
    for (int i = 0; i < 3; ++i) {
      const std::string key = prefix + "/" + std::to_string(r) + "/" + std::to_string(i);
      b.put(key, value).put(*a, key, value).put(*odd, key, value);
    }
    if (auto w = store.write(b); !w) return report_error(w.error());
    std::printf("ack %lu\n", r);
    std::fflush(stdout);
    if (r % 37 == 36) {
      if (auto f = store.flush(); !f) return report_error(f.error());
      std::printf("folded %lu\n", r);
      std::fflush(stdout);
    }
  }
}

// The expiry mode (see the top of the file).
static int write_expiring(keel::memory_store& store, const std::string& prefix) {
  using namespace std::chrono_literals;
  for (unsigned long r = 0;; ++r) {
    const std::string key = prefix + "/" + std::to_string(r), value = value_for(r);
    keel::result<void> w;
    if (r % 2 == 0)
      w = store.put(key, value, keel::put_options{1s});
    else
      w = store.write(keel::write_batch{}.put(key, value, keel::put_options{1000s}).put(key + "/p", value));
    if (!w) return report_error(w.error());
    std::printf("ack %lu\n", r);
    std::fflush(stdout);
    if (r % 37 == 36) {
      if (auto f = store.flush(); !f) return report_error(f.error());
      std::printf("folded %lu\n", r);
      std::fflush(stdout);
    }
  }
}

// The watch mode (see the top of the file).
static int write_watched(keel::memory_store& store, const std::string& prefix) {
  using namespace std::chrono_literals;
  auto w = store.watch();
  if (!w) return report_error(w.error());
  std::printf("ready %llu\n", static_cast<unsigned long long>(store.last_seq()));
  std::fflush(stdout);
  for (unsigned long r = 0;; ++r) {
    const std::string value = value_for(r);
    std::vector<std::string> keys;
    if (r % 3 == 0) {
      keel::write_batch b;
      for (int i = 0; i < 3; ++i) {
        keys.push_back(prefix + "/" + std::to_string(r) + "/" + std::to_string(i));
        b.put(keys.back(), value);
      }
      if (auto put = store.write(b); !put) return report_error(put.error());
    } else {
      keys.push_back(prefix + "/" + std::to_string(r));
      if (auto put = store.put(keys.back(), value); !put) return report_error(put.error());
    }
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto c = w->next(10s);
      if (!c) return report_error(c.error());
      if (!*c || (*c)->key != keys[i] || (*c)->value != value || (i > 0 && (*c)->seq != seq)) {
        std::printf("error mismatch round %lu change %zu: %s\n", r, i, *c ? (*c)->key.c_str() : "(none)");
        std::fflush(stdout);
        return 1;
      }
      seq = (*c)->seq;
    }
    std::printf("ack %lu %llu\n", r, static_cast<unsigned long long>(seq));
    std::fflush(stdout);
    if (r % 50 == 49) {
      if (auto f = store.flush(); !f) return report_error(f.error());
      std::printf("folded %lu %llu\n", r, static_cast<unsigned long long>(store.last_seq()));
      std::fflush(stdout);
    }
  }
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "expiry" && argc == 5) {
    keel::memory_options o;
    o.persist_path = argv[2];
    o.fold_log_bytes = 16 * 1024;
    const long long now_ms = std::stoll(argv[4]);
    o.clock = [now_ms] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms)); };
    auto store = keel::memory_store::open(o);
    if (!store) return report_error(store.error());
    return write_expiring(*store, argv[3]);
  }
  if (mode == "hold" && argc == 3) {
    keel::memory_options o;
    o.persist_path = argv[2];
    auto store = keel::memory_store::open(o);
    if (!store) return report_error(store.error());
    std::printf("ready %ld\n", static_cast<long>(::getpid()));
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    if (auto c = store->close(); !c) return report_error(c.error());
    return 0;
  }
  if (mode == "watch" && argc == 4) {
    keel::memory_options o;
    o.persist_path = argv[2];
    o.sync_writes = true;
    auto store = keel::memory_store::open(o);
    if (!store) return report_error(store.error());
    return write_watched(*store, argv[3]);
  }
  if ((mode != "write" && mode != "keyspaces") || (argc != 4 && argc != 5)) {
    std::fprintf(stderr, "usage: memory_log_writer write|keyspaces FILE PREFIX [sync] | expiry FILE PREFIX NOW_MS | watch FILE PREFIX | hold FILE\n");
    return 64;
  }
  keel::memory_options o;
  o.persist_path = argv[2];
  o.sync_writes = argc == 5 && std::string(argv[4]) == "sync";
  o.fold_log_bytes = 16 * 1024;
  auto store = keel::memory_store::open(o);
  if (!store) return report_error(store.error());
  const std::string prefix = argv[3];
  if (mode == "keyspaces") return write_keyspaces(*store, prefix);
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
    std::printf("ack %lu\n", r);
    std::fflush(stdout);
    if (r % 37 == 36) {
      if (auto f = store->flush(); !f) return report_error(f.error());
      std::printf("folded %lu\n", r);
      std::fflush(stdout);
    }
  }
}
