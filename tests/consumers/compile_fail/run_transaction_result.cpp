// The control for run_transaction_void.cpp (scripts/consumer-tests.sh, check
// compile_errors): the same program with a function that returns
// keel::result<void> compiles, so a failure of the other file is the return
// type's and nothing else's.
#include <keel/memory.hpp>

int main() {
  auto store = keel::memory_store::open({});
  if (!store) return 1;
  auto r = store->run_transaction([](auto& tx) -> keel::result<void> { return tx.put("k", "v"); });
  return r ? 0 : 1;
}
