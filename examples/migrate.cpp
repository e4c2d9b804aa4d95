// keel example: migrating a memory store to RocksDB.
//
//   ./migrate [PATH]      (default: a fresh temporary directory, removed after)
//
// Fills a memory store (the kind a program or its tests start with), then
// copies everything to a new RocksDB store: one ordered scan of a snapshot of
// the source, written in write_batch chunks of 1000 entries, with progress.
// The snapshot makes the copy consistent even if the source were still being
// written. Then it verifies the copy entry by entry, closes the RocksDB
// store, reopens it at once and counts again. Exits 0 when the copy is exact.
//
// The same loop copies between any two keel stores (memory, RocksDB, any_store).

#include <keel/keel.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

constexpr std::size_t chunk_entries = 1000;

int fail(std::string_view step, const keel::error& e) {
  std::fprintf(stderr, "migrate: %.*s: [%s] %s\n", static_cast<int>(step.size()), step.data(),
               std::string(keel::to_string(e.code())).c_str(), e.message().c_str());
  return 1;
}

// Copies every entry of `from` (as of now) into `to`, chunk by chunk. Returns
// the number of entries copied, or the error that stopped the copy.
template <class From, class To>
keel::result<std::size_t> copy_all(const From& from, To& to) {
  auto view = from.snapshot();  // the copy reads one consistent version
  auto cursor = view.scan();
  keel::write_batch batch;
  std::size_t copied = 0;
  for (const auto& e : cursor) {
    batch.put(e.key, e.value);  // the batch keeps its own copy of the bytes
    if (batch.size() == chunk_entries) {
      if (auto r = to.write(batch); !r) return r.error();
      copied += batch.size();
      batch.clear();
      if (copied % 10000 == 0) std::printf("  copied %zu entries\n", copied);
    }
  }
  if (cursor.error()) return *cursor.error();  // the scan stopped early
  if (!batch.empty()) {
    if (auto r = to.write(batch); !r) return r.error();
    copied += batch.size();
  }
  return copied;
}

// Whether `a` and `b` hold exactly the same entries; counts them.
template <class A, class B>
keel::result<std::size_t> compare(const A& a, const B& b) {
  auto ca = a.scan();
  auto cb = b.scan();
  auto ia = ca.begin();
  auto ib = cb.begin();
  std::size_t n = 0;
  for (; ia != ca.end() && ib != cb.end(); ++ia, ++ib, ++n) {
    if (ia->key != ib->key || ia->value != ib->value) {
      return keel::error(keel::errc::corruption, "entry " + std::to_string(n) + " differs");
    }
  }
  if (ca.error()) return *ca.error();
  if (cb.error()) return *cb.error();
  if ((ia != ca.end()) != (ib != cb.end())) return keel::error(keel::errc::corruption, "entry counts differ");
  return n;
}

int run(const fs::path& path) {
  auto memory = keel::memory_store::open({});
  if (!memory) return fail("open memory store", memory.error());

  // 25,000 entries, some of them binary (NUL bytes, 0xFF), some empty values.
  keel::write_batch fill;
  for (int i = 0; i < 25000; ++i) {
    std::string key = "item/" + std::to_string(i);
    if (i % 1000 == 0) key += std::string("\0\xff", 2);
    fill.put(key, i % 7 == 0 ? std::string() : "value " + std::to_string(i * 31));
    if (fill.size() == 5000) {
      if (auto r = memory->write(fill); !r) return fail("fill", r.error());
      fill.clear();
    }
  }
  std::printf("memory store: %zu entries\n", memory->policy().size());

  auto rocks = keel::rocks_store::open({.path = path});
  if (!rocks) return fail("open RocksDB store", rocks.error());
  std::printf("copying to RocksDB at %s, %zu entries per batch\n", path.string().c_str(), chunk_entries);
  auto copied = copy_all(*memory, *rocks);
  if (!copied) return fail("copy", copied.error());
  std::printf("copied %zu entries\n", *copied);

  auto same = compare(*memory, *rocks);
  if (!same) return fail("verify", same.error());
  std::printf("verified: %zu entries identical, in the same order\n", *same);

  if (auto r = rocks->close(); !r) return fail("close", r.error());
  // The close guarantee: reopen at once, no sleep, no retry.
  auto reopened = keel::rocks_store::open({.path = path});
  if (!reopened) return fail("reopen", reopened.error());
  auto again = compare(*memory, *reopened);
  if (!again) return fail("verify after reopen", again.error());
  std::printf("after close and reopen: %zu entries identical\n", *again);
  if (auto r = reopened->close(); !r) return fail("close", r.error());
  return *again == memory->policy().size() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool temporary = argc <= 1;
  const fs::path path = temporary ? fs::temp_directory_path() / ("keel-migrate-" + std::to_string(::getpid()))
                                  : fs::path(argv[1]);
  const int status = run(path);
  if (temporary) {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::printf("migrate: %s\n", status == 0 ? "ok" : "FAILED");
  return status;
}
