// tests/pg_writer.cpp - helper for the PostgreSQL backend's two-process tests.
//
//   pg_writer CONNINFO TABLE COUNTER N
//       opens the store, prints "ready", waits for a line on stdin (so that
//       both processes start together), then adds 1 to the decimal value of
//       key COUNTER N times, each in its own run_transaction, and prints
//       "done <conflicts retried>".
//   pg_writer CONNINFO TABLE tx READS SCAN KEY VALUE
//       one transaction, in two steps: it gets each key of READS (comma
//       separated, "-" for none) and scans prefix SCAN ("-" for none), prints
//       "read <keys seen by the scan>", waits for a line on stdin, then puts
//       KEY = VALUE (VALUE "ERASE": erases KEY), commits and prints
//       "committed", "conflict" or "error <message>".
// Errors: "error <message>" on stdout, exit 1. Bad usage: exit 64.
#include <cstdio>
#include <iostream>
#include <keel/postgres.hpp>
#include <sstream>
#include <string>

namespace {

int counter_mode(keel::postgres_store& store, const std::string& counter, int n) {
  std::printf("ready\n");
  std::fflush(stdout);
  std::string go;
  std::getline(std::cin, go);
  for (int i = 0; i < n; ++i) {
    auto r = store.run_transaction(
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
  auto s = store.stats();
  std::printf("done %llu\n", s ? static_cast<unsigned long long>(s->tx_conflicts) : 0ull);
  std::fflush(stdout);
  return 0;
}

int tx_mode(keel::postgres_store& store, const std::string& reads, const std::string& scan, const std::string& key,
            const std::string& value) {
  auto tx = store.transaction();
  auto report = [](const keel::error& e) {
    std::printf("%s\n", e == keel::errc::conflict ? "conflict" : ("error " + e.message()).c_str());
    std::fflush(stdout);
    return e == keel::errc::conflict ? 0 : 1;
  };
  if (reads != "-") {
    std::stringstream list(reads);
    for (std::string k; std::getline(list, k, ',');)
      if (auto v = tx.get(k); !v) return report(v.error());
  }
  std::size_t seen = 0;
  if (scan != "-") {
    auto c = tx.scan(keel::key_range::prefix(scan));
    for ([[maybe_unused]] const auto& e : c) ++seen;
    if (c.error()) return report(*c.error());
  }
  std::printf("read %zu\n", seen);
  std::fflush(stdout);
  std::string go;
  std::getline(std::cin, go);
  auto w = value == "ERASE" ? tx.erase(key) : tx.put(key, value);
  if (!w) return report(w.error());
  if (auto c = tx.commit(); !c) return report(c.error());
  std::printf("committed\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool tx = argc == 8 && std::string(argv[3]) == "tx";
  if (argc != 5 && !tx) {
    std::fprintf(stderr, "usage: pg_writer CONNINFO TABLE COUNTER N | pg_writer CONNINFO TABLE tx READS SCAN KEY VALUE\n");
    return 64;
  }
  keel::postgres_options o;
  o.conninfo = argv[1];
  o.table = argv[2];
  auto store = keel::postgres_store::open(o);
  if (!store) {
    std::printf("error %s\n", store.error().message().c_str());
    return 1;
  }
  return tx ? tx_mode(*store, argv[4], argv[5], argv[6], argv[7]) : counter_mode(*store, argv[3], std::stoi(argv[4]));
}
