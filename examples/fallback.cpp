// keel example: choosing the backend at run time, the way an existing
// deployment ("Meridian") does it with environment variables.
//
//   MERIDIAN_USE_MEMORY_STORAGE=1 ./fallback      # memory only, nothing on disk
//   MERIDIAN_FALLBACK_MEMORY=1 ./fallback PATH    # RocksDB, or memory if it cannot open
//   ./fallback PATH                               # RocksDB or a clear error
//
// Values: 1/0, true/false, yes/no, on/off (any case). Anything else is an
// error naming the variable.
#include <cstdio>
#include <filesystem>
#include <keel/keel.hpp>

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  keel::store_config base;
  base.path = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "keel-fallback-example";
  base.log = [](std::string_view line) { std::printf("[log] %.*s\n", static_cast<int>(line.size()), line.data()); };

  auto config = keel::store_config::from_env("MERIDIAN", base);
  if (!config) {
    std::fprintf(stderr, "bad configuration: %s\n", config.error().message().c_str());
    return 2;
  }
  auto store = keel::open_store(*config);
  if (!store) {
    std::fprintf(stderr, "cannot open storage: [%s] %s\n", std::string(keel::to_string(store.error().code())).c_str(),
                 store.error().message().c_str());
    return 1;
  }
  std::printf("backend: %s\n", std::string(keel::to_string(store->backend())).c_str());
  if (const auto& why = store->fallback_reason()) {
    std::printf("fell back because: [%s] %s\n", std::string(keel::to_string(why->code())).c_str(),
                why->message().c_str());
  }
  if (auto r = store->put("greeting", "hello"); !r) {
    std::fprintf(stderr, "put failed: %s\n", r.error().message().c_str());
    return 1;
  }
  auto v = store->get("greeting");
  std::printf("greeting = %s\n", v && *v ? (*v)->c_str() : "(missing)");
  if (auto r = store->close(); !r) {
    std::fprintf(stderr, "close failed: %s\n", r.error().message().c_str());
    return 1;
  }
  if (argc <= 1 && store->backend() == keel::backend::rocksdb) fs::remove_all(base.path);
  return 0;
}
