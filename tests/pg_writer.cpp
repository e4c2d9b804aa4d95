// tests/pg_writer.cpp - helper for the PostgreSQL backend's two-process tests.
//
//   pg_writer CONNINFO TABLE COUNTER N
//       opens the store, prints "ready", waits for a line on stdin (so that
//       both processes start together), then adds 1 to the decimal value of
//       key COUNTER N times, each in its own run_transaction, and prints
//       "done <conflicts retried>".
// Errors: "error <message>" on stdout, exit 1. Bad usage: exit 64.
#include <cstdio>
#include <iostream>
#include <keel/postgres.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: pg_writer CONNINFO TABLE COUNTER N\n");
    return 64;
  }
  keel::postgres_options o;
  o.conninfo = argv[1];
  o.table = argv[2];
  const std::string counter = argv[3];
  const int n = std::stoi(argv[4]);
  auto store = keel::postgres_store::open(o);
  if (!store) {
    std::printf("error %s\n", store.error().message().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::string go;
  std::getline(std::cin, go);
  for (int i = 0; i < n; ++i) {
    auto r = store->run_transaction(
        [&](auto& tx) -> keel::result<void> {
          auto v = tx.get(counter);
          if (!v) return std::move(v).error();
          const long now = *v ? std::stol(**v) : 0;
          return tx.put(counter, std::to_string(now + 1));
        },
        1000);
    if (!r) {
      std::printf("error %s\n", r.error().message().c_str());
      return 1;
    }
  }
  auto s = store->stats();
  std::printf("done %llu\n", s ? static_cast<unsigned long long>(s->tx_conflicts) : 0ull);
  std::fflush(stdout);
  return 0;
}
