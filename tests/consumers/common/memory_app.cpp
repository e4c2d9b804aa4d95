// Consumer test program: <keel/memory.hpp> alone. It must compile with no
// RocksDB header reachable and link with no RocksDB library (see
// scripts/consumer-tests.sh, memory_only). Prints "consumer memory app: ok".
#include <keel/memory.hpp>

#include <cstdio>
#include <string>

int main() {
  auto store = keel::memory_store::open({});
  if (!store) return 1;
  keel::write_batch batch;
  batch.put("user/alice", "admin").put("user/bob", "editor");
  bool ok = static_cast<bool>(store->write(batch));
  auto snap = store->snapshot();  // O(1): a version of the tree, not a copy
  ok = ok && store->put("user/alice", "owner") && store->erase("user/bob");
  auto then = snap.get("user/alice");
  auto now = store->get("user/alice");
  ok = ok && then && *then == "admin" && now && *now == "owner";
  std::string keys;
  auto cursor = snap.scan(keel::key_range::prefix("user/"));
  for (const auto& e : cursor) keys += std::string(e.key) + ' ';
  ok = ok && !cursor.error() && keys == "user/alice user/bob ";
  ok = ok && store->close() && !store->get("user/alice");  // closed: errc::closed
#if defined(KEEL_HAVE_ZSTD) || defined(KEEL_HAVE_LZ4)
  // Value compression: the build system that gave KEEL_HAVE_* must also link
  // the library (a compressed value is compressed, then read back).
  keel::memory_options compressed;
#if defined(KEEL_HAVE_ZSTD)
  compressed.compression = keel::compression::zstd;
#else
  compressed.compression = keel::compression::lz4;
#endif
  auto zs = keel::memory_store::open(compressed);
  ok = ok && zs;
  if (zs) {
    for (int i = 0; i < 2000 && ok; ++i)
      ok = static_cast<bool>(zs->put("k" + std::to_string(i), "{\"name\":\"value " + std::to_string(i % 97) + "\",\"kind\":\"consumer\"}"));
    ok = ok && zs->compact();
    auto v = zs->get("k42");
    ok = ok && v && *v && **v == "{\"name\":\"value 42\",\"kind\":\"consumer\"}";
    ok = ok && zs->close();
  }
#endif
  std::printf("consumer memory app: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
