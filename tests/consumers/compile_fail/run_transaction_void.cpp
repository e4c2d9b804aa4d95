// Must NOT compile (scripts/consumer-tests.sh, check compile_errors): the
// function given to run_transaction returns void. The compiler must stop at
// keel's static_assert, whose message says what the function must return
// (keel::result<T>), instead of errors deep inside store.hpp.
#include <keel/memory.hpp>

int main() {
  auto store = keel::memory_store::open({});
  if (!store) return 1;
  auto r = store->run_transaction([](auto& tx) { (void)tx.put("k", "v"); });
  (void)r;
  return 0;
}
