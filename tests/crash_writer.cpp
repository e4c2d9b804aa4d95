// tests/crash_writer.cpp - helper process for the crash-recovery test
// (tests/crash_test.cpp); run by exec, never just forked.
//
//   crash_writer [--no-sync] DB_PATH ROUND
//
// Opens a keel::rocks_store at DB_PATH (sync_writes = true unless --no-sync),
// prints "ready", then writes batches forever. Batch SEQ (from 0) puts
//   r<ROUND>/<SEQ>/k0 .. r<ROUND>/<SEQ>/k3   = "<ROUND>/<SEQ>"
//   r<ROUND>/last                            = "<SEQ>"
// and erases r<ROUND>/<SEQ-1>/tmp after putting r<ROUND>/<SEQ>/tmp, all in one
// write_batch; after each successful write it prints "ack SEQ" (flushed). The
// test SIGKILLs it at a moment of its choosing. An open or write failure
// prints "error <errc> <message>" and exits 1.
#include <keel/rocksdb.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  bool sync = true;
  int i = 1;
  if (argc > 1 && std::strcmp(argv[1], "--no-sync") == 0) {
    sync = false;
    ++i;
  }
  if (argc - i != 2) {
    std::fprintf(stderr, "usage: crash_writer [--no-sync] DB_PATH ROUND\n");
    return 64;
  }
  const std::string round = argv[i + 1];
  keel::rocks_options o;
  o.path = argv[i];
  o.sync_writes = sync;
  auto store = keel::rocks_store::open(o);
  if (!store) {
    std::printf("error %s %s\n", std::string(keel::to_string(store.error().code())).c_str(),
                store.error().message().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  const std::string base = "r" + round + "/";
  for (unsigned long seq = 0;; ++seq) {
    const std::string s = std::to_string(seq);
    const std::string prefix = base + s + "/";
    keel::write_batch b;
    for (int k = 0; k < 4; ++k) b.put(prefix + "k" + std::to_string(k), round + "/" + s);
    b.put(base + "last", s);
    b.put(prefix + "tmp", s);
    if (seq > 0) b.erase(base + std::to_string(seq - 1) + "/tmp");
    if (auto r = store->write(b); !r) {
      std::printf("error %s %s\n", std::string(keel::to_string(r.error().code())).c_str(),
                  r.error().message().c_str());
      return 1;
    }
    std::printf("ack %lu\n", seq);
    std::fflush(stdout);
  }
}
