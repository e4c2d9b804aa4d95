// Consumer test program: <keel/keel.hpp>, RocksDB and memory backends. Built
// by every consumer test (Meson subproject, pkg-config, CMake); prints
// "consumer app: ok" and exits 0 when keel works.
#include <keel/keel.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

int main() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("keel-consumer-app-" + std::to_string(::getpid()));
  int status = 1;
  {
    auto store = keel::rocks_store::open({.path = dir});
    if (!store) {
      std::fprintf(stderr, "open: %s\n", store.error().message().c_str());
      return 1;
    }
    keel::write_batch batch;
    batch.put("a", "1").put("b", "2");
    if (store->write(batch) && store->get("b") && *store->get("b") == "2" && store->close()) {
      // Reopen at once: the close guarantee.
      auto again = keel::rocks_store::open({.path = dir});
      if (again && again->get("a") && *again->get("a") == "1") status = 0;
    }
  }
  auto memory = keel::memory_store::open({});
  if (!memory || !memory->put("k", "v")) status = 1;
  fs::remove_all(dir);
  std::printf("consumer app: %s\n", status == 0 ? "ok" : "FAILED");
  return status;
}
