// Helper process for cross-process tests of keel's RocksDB backend (run by
// exec, never just forked: a forked child inherits RocksDB's in-process lock
// table and gives false results).
//
//   keel_probe [--drop-privileges UID] [--hold] PATH
//     Opens a keel rocks_store at PATH and prints "opened <pid>", or
//     "error <errc> <message>" and exits 1. With --hold it then waits for a
//     line "quit" (or EOF) on stdin, closes, prints "closed" and exits 0.
//     With --fallback it opens through open_store() with fallback to memory
//     enabled and prints "opened <backend> <pid> [reason <errc>]".
#include <grp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <keel/keel.hpp>
#include <string>

int main(int argc, char** argv) {
  bool hold = false, fallback = false;
  long uid = -1;
  int i = 1;
  for (; i < argc - 1; ++i) {
    if (std::strcmp(argv[i], "--hold") == 0) {
      hold = true;
    } else if (std::strcmp(argv[i], "--fallback") == 0) {
      fallback = true;
    } else if (std::strcmp(argv[i], "--drop-privileges") == 0 && i + 1 < argc - 1) {
      uid = std::strtol(argv[++i], nullptr, 10);
    } else {
      break;
    }
  }
  if (i != argc - 1) {
    std::cerr << "usage: keel_probe [--drop-privileges UID] [--hold] [--fallback] PATH\n";
    return 64;
  }
  if (uid >= 0) {
    if (setgroups(0, nullptr) != 0 || setgid(static_cast<gid_t>(uid)) != 0 || setuid(static_cast<uid_t>(uid)) != 0) {
      std::cout << "error drop-privileges " << std::strerror(errno) << std::endl;
      return 2;
    }
  }
  keel::store_config config;
  config.path = argv[i];
  config.fallback_to_memory = fallback;
  config.log = [](std::string_view) {};
  auto store = keel::open_store(config);
  if (!store) {
    std::cout << "error " << keel::to_string(store.error().code()) << " " << store.error().message() << std::endl;
    return 1;
  }
  if (fallback) {
    std::cout << "opened " << keel::to_string(store->backend()) << " " << getpid();
    if (store->fallback_reason()) std::cout << " reason " << keel::to_string(store->fallback_reason()->code());
    std::cout << std::endl;
  } else {
    std::cout << "opened " << getpid() << std::endl;
  }
  if (hold) {
    std::string line;
    while (std::getline(std::cin, line) && line != "quit") {
    }
  }
  auto closed = store->close();
  if (!closed) {
    std::cout << "error " << keel::to_string(closed.error().code()) << " " << closed.error().message() << std::endl;
    return 1;
  }
  std::cout << "closed" << std::endl;
  return 0;
}
