// tests/persist_helper.cpp - helper for the persistence crash test.
//
//   persist_helper FILE
//       opens a memory store persisted at FILE, then forever: sets the keys
//       k000..k999 all to "round <i>" plus padding in one batch, flush()es,
//       prints "saved <i>". The test SIGKILLs it at random moments.
// Errors: "error <message>" on stdout, exit 1. Bad usage: exit 64.
#include <cstdio>
#include <keel/memory.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: persist_helper FILE\n");
    return 64;
  }
  keel::memory_options o;
  o.persist_path = argv[1];
  auto store = keel::memory_store::open(o);
  if (!store) {
    std::printf("error %s\n", store.error().message().c_str());
    return 1;
  }
  for (unsigned long round = 0;; ++round) {
    keel::write_batch b;
    const std::string value = "round " + std::to_string(round) + " " + std::string(300, 'p');
    char key[16];
    for (int i = 0; i < 1000; ++i) {
      std::snprintf(key, sizeof key, "k%03d", i);
      b.put(key, value);
    }
    if (auto w = store->write(b); !w) {
      std::printf("error %s\n", w.error().message().c_str());
      return 1;
    }
    if (auto f = store->flush(); !f) {
      std::printf("error %s\n", f.error().message().c_str());
      return 1;
    }
    std::printf("saved %lu\n", round);
    std::fflush(stdout);
  }
}
