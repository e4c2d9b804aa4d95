// tests/crash_writer.cpp - helper process for the crash-recovery test
// (tests/crash_test.cpp); run by exec, never just forked.
//
//   crash_writer [--no-sync] [--keyspaces] [--ttl] [--watch] DB_PATH ROUND
//
// Opens a keel::rocks_store at DB_PATH (sync_writes = true unless --no-sync),
// prints "ready", then writes batches forever. Batch SEQ (from 0) puts
//   r<ROUND>/<SEQ>/k0 .. r<ROUND>/<SEQ>/k3   = "<ROUND>/<SEQ>"
//   r<ROUND>/last                            = "<SEQ>"
// and erases r<ROUND>/<SEQ-1>/tmp after putting r<ROUND>/<SEQ>/tmp, all in one
// write_batch; after each successful write it prints "ack SEQ" (flushed). The
// test SIGKILLs it at a moment of its choosing. An open or write failure
// prints "error <errc> <message>" and exits 1.
//
// --keyspaces: before "ready" it opens (creating if missing) the keyspaces
// of crash_keyspaces ("", "a", "\0\xff"), and batch SEQ writes all of the
// above in each of them (k0 .. k3, last, tmp and the erase of the previous
// tmp): one write_batch across three keyspaces.
//
// --ttl (expiry, tests/expiry_rocks_test.cpp): the store's clock stands
// still at crash_writer_epoch_ms, and batch SEQ also puts
//   r<ROUND>/<SEQ>/t = "<SEQ>" with a ttl of 1 + SEQ % 10 seconds.
//
// --watch (watch seqs across a crash, tests/watch_rocks_test.cpp): before
// "ready" it makes a watch of the default keyspace (from now), prints
// "ready <last_seq>" instead, and after each write reads the batch's changes
// from it (the 6 puts and, from SEQ 1 on, the erase of the previous tmp:
// all with one seq) and prints "ack SEQ <seq>"; a change that is not the
// batch's prints "error mismatch ..." and exits 1.
#include <keel/rocksdb.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "support/crash_keyspaces.hpp"

// The time the --ttl writer's clock shows (ms since the epoch).
constexpr long long crash_writer_epoch_ms = 1'700'000'000'000;

int main(int argc, char** argv) {
  bool sync = true, keyspaces = false, ttl = false, watched = false;
  int i = 1;
  if (argc > i && std::strcmp(argv[i], "--no-sync") == 0) {
    sync = false;
    ++i;
  }
  if (argc > i && std::strcmp(argv[i], "--keyspaces") == 0) {
    keyspaces = true;
    ++i;
  }
  if (argc > i && std::strcmp(argv[i], "--ttl") == 0) {
    ttl = true;
    ++i;
  }
  if (argc > i && std::strcmp(argv[i], "--watch") == 0) {
    watched = true;
    ++i;
  }
  if (argc - i != 2) {
    std::fprintf(stderr, "usage: crash_writer [--no-sync] [--keyspaces] [--ttl] [--watch] DB_PATH ROUND\n");
    return 64;
  }
  const std::string round = argv[i + 1];
  keel::rocks_options o;
  o.path = argv[i];
  o.sync_writes = sync;
  if (ttl) o.clock = [] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(crash_writer_epoch_ms)); };
  auto store = keel::rocks_store::open(o);
  if (!store) {
    std::printf("error %s %s\n", std::string(keel::to_string(store.error().code())).c_str(),
                store.error().message().c_str());
    return 1;
  }
  std::vector<std::string> names = {""};
  if (keyspaces) names = keel::test::crash_keyspaces();
  for (const auto& name : names) {
    if (auto ks = store->keyspace(name); !ks) {
      std::printf("error %s %s\n", std::string(keel::to_string(ks.error().code())).c_str(),
                  ks.error().message().c_str());
      return 1;
    }
  }
  std::optional<std::remove_cvref_t<decltype(*store->watch())>> watch;
  if (watched) {
    auto w = store->watch();
    if (!w) {
      std::printf("error %s %s\n", std::string(keel::to_string(w.error().code())).c_str(), w.error().message().c_str());
      return 1;
    }
    watch.emplace(std::move(*w));
    std::printf("ready %llu\n", static_cast<unsigned long long>(store->last_seq()));
  } else {
    std::printf("ready\n");
  }
  std::fflush(stdout);
  const std::string base = "r" + round + "/";
  for (unsigned long seq = 0;; ++seq) {
    const std::string s = std::to_string(seq);
    const std::string prefix = base + s + "/";
    keel::write_batch b;
    for (const auto& name : names) {
      const keel::keyspace_name ks(name);
      for (int k = 0; k < 4; ++k) b.put(ks, prefix + "k" + std::to_string(k), round + "/" + s);
      b.put(ks, base + "last", s);
      b.put(ks, prefix + "tmp", s);
      if (seq > 0) b.erase(ks, base + std::to_string(seq - 1) + "/tmp");
      if (ttl) b.put(ks, prefix + "t", s, keel::put_options{.ttl = std::chrono::seconds(1 + seq % 10)});
    }
    if (auto r = store->write(b); !r) {
      std::printf("error %s %s\n", std::string(keel::to_string(r.error().code())).c_str(),
                  r.error().message().c_str());
      return 1;
    }
    if (!watch) {
      std::printf("ack %lu\n", seq);
      std::fflush(stdout);
      continue;
    }
    // The batch's changes (the default keyspace's): one seq, its keys.
    const std::size_t expected = 6 + (seq > 0 ? 1 : 0);
    std::uint64_t first = 0;
    for (std::size_t n = 0; n < expected; ++n) {
      auto c = watch->next(std::chrono::seconds(10));
      if (!c) {
        std::printf("error %s %s\n", std::string(keel::to_string(c.error().code())).c_str(), c.error().message().c_str());
        return 1;
      }
      const bool ours = *c && (*c)->key.rfind(base, 0) == 0 && (n == 0 || (*c)->seq == first);
      if (!ours) {
        std::printf("error mismatch batch %lu change %zu: %s\n", seq, n, *c ? (*c)->key.c_str() : "(none)");
        return 1;
      }
      first = (*c)->seq;
    }
    std::printf("ack %lu %llu\n", seq, static_cast<unsigned long long>(first));
    std::fflush(stdout);
  }
}
