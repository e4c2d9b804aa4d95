// tests/faults/full_disk_writer.cpp - helper for tests/faults/full_disk_test.cpp
// (exec'd, so that an abort kills this process, not the test runner).
//
// BACKEND is memory (persisted: DIR/store), rocksdb (DIR/db) or hybrid
// (DIR/hybrid, no automatic move). SYNC is "sync" (sync_writes) or "nosync".
// Batch n is three puts b/<n>/0..2 of value_for(n, i), VALUE bytes each.
//
//   full_disk_writer fill BACKEND DIR SYNC VALUE FROM
//       writes batches FROM, FROM+1, ... printing "ack <n>" for each one
//       acknowledged, until a write fails: "full <errc> <message>". Then
//       "read <ok|errc>" (a get of an acknowledged key, if any), "flush
//       <ok|errc> ..." and "waiting"; reads one line from stdin (the test frees
//       space meanwhile) and writes one batch more: "after <ok|errc> ...";
//       RocksDB: if that failed, "resume <status>" (DB::Resume()) and one more
//       try, "after-resume <ok|errc> ...". Last "close <ok|errc> ...".
//       Stops after 100000 batches ("never-full").
//   full_disk_writer sweep BACKEND DIR SYNC COUNT [VALUE]
//       writes batches 0..COUNT-1 (VALUE bytes each, default 100) ("ack <n>" or "fail <n> <errc> <message>"),
//       going on after a failure; then "flush ...", "close ...".
//   full_disk_writer move DIR SYNC VALUE COUNT
//       hybrid: writes batches 0..COUNT-1 into the memory tier (acks), calls
//       move_to_large(): "move <ok|errc> ...", then "tier <memory|rocksdb>";
//       writes batches COUNT.. until one fails or 20 more are written (acks,
//       "full ..."), "close ...".
//   full_disk_writer open BACKEND DIR SYNC VALUE FROM
//       "open <ok|errc> ..."; if open: as fill from FROM but without waiting
//       (no stdin), then "close ...".
//   full_disk_writer verify BACKEND DIR VALUE UPTO
//       opens, checks that each of batches 0..UPTO-1 is whole (with its
//       values) or absent, printing "present <n>" for each whole one, writes
//       one batch more, closes: "verified" (exit 0) or "bad <what>" (exit 1).
// Exit 0 when the scenario ran (whatever errors the store returned), 64 on
// bad usage; an abort or crash shows as the signal.
#include <keel/hybrid.hpp>
#include <keel/memory.hpp>
#include <keel/rocksdb.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

namespace {

void say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

std::string value_for(long n, int i, std::size_t bytes) {
  std::string v = "v" + std::to_string(n) + "/" + std::to_string(i) + "/";
  if (v.size() < bytes) v.append(bytes - v.size(), static_cast<char>('a' + (n + i) % 26));
  return v;
}

std::string key_for(long n, int i) { return "b/" + std::to_string(n) + "/" + std::to_string(i); }

keel::write_batch batch_for(long n, std::size_t bytes) {
  keel::write_batch b;
  for (int i = 0; i < 3; ++i) b.put(key_for(n, i), value_for(n, i, bytes));
  return b;
}

std::string outcome(const keel::result<void>& r) {
  if (r) return "ok";
  return std::string(keel::to_string(r.error().code())) + " " + r.error().message();
}

struct args {
  std::string backend;
  std::filesystem::path dir;
  bool sync = false;
};

template <class Store>
keel::result<Store> open_store(const args& a);

template <>
keel::result<keel::memory_store> open_store(const args& a) {
  keel::memory_options o;
  o.persist_path = a.dir / "store";
  o.sync_writes = a.sync;
  return keel::memory_store::open(o);
}
template <>
keel::result<keel::rocks_store> open_store(const args& a) {
  keel::rocks_options o;
  o.path = a.dir / "db";
  o.sync_writes = a.sync;
  return keel::rocks_store::open(o);
}
template <>
keel::result<keel::hybrid_store> open_store(const args& a) {
  keel::hybrid_options o;
  o.path = a.dir / "hybrid";
  o.sync_writes = a.sync;
  o.spill_bytes = std::numeric_limits<std::size_t>::max();
  return keel::hybrid_store::open(o);
}

template <class Store>
std::string resume(Store&) {
  return "n/a";
}
template <>
std::string resume(keel::rocks_store& s) {
  auto r = s.policy().with_db([](rocksdb::DB& db) { return db.Resume().ToString(); });
  return r ? *r : "closed";
}

// Writes batches from `from` until one fails; returns the next batch number.
template <class Store>
long fill_until_full(Store& store, long from, std::size_t value) {
  long n = from;
  for (; n < from + 100000; ++n) {
    auto w = store.write(batch_for(n, value));
    if (!w) {
      say("full " + outcome(w));
      return n;
    }
    say("ack " + std::to_string(n));
  }
  say("never-full");
  return n;
}

template <class Store>
int fill(const args& a, std::size_t value, long from, bool wait) {
  auto store = open_store<Store>(a);
  if (!store) {
    say("open " + std::string(keel::to_string(store.error().code())) + " " + store.error().message());
    return 0;
  }
  if (!wait) say("open ok");
  long n = fill_until_full(*store, from, value);
  if (n > 0) {
    auto g = store->get(key_for(n - 1, 0));
    say(std::string("read ") + (!g ? std::string(keel::to_string(g.error().code())) : g->has_value() ? "ok" : "missing"));
  }
  say("flush " + outcome(store->flush()));
  if (wait) {
    say("waiting");
    std::string line;
    std::getline(std::cin, line);
    auto w = store->write(batch_for(n, value));
    say("after " + outcome(w));
    if (w) {
      say("ack " + std::to_string(n));
    } else if (a.backend == "rocksdb") {
      say("resume " + resume(*store));
      auto again = store->write(batch_for(n, value));
      say("after-resume " + outcome(again));
      if (again) say("ack " + std::to_string(n));
    }
  }
  say("close " + outcome(store->close()));
  return 0;
}

template <class Store>
int sweep(const args& a, long count, std::size_t value) {
  auto store = open_store<Store>(a);
  if (!store) {
    say("open " + std::string(keel::to_string(store.error().code())) + " " + store.error().message());
    return 0;
  }
  for (long n = 0; n < count; ++n) {
    auto w = store->write(batch_for(n, value));
    if (w)
      say("ack " + std::to_string(n));
    else
      say("fail " + std::to_string(n) + " " + outcome(w));
  }
  say("flush " + outcome(store->flush()));
  say("close " + outcome(store->close()));
  return 0;
}

template <class Store>
int verify(const args& a, std::size_t value, long upto) {
  auto store = open_store<Store>(a);
  if (!store) {
    say("bad open " + std::string(keel::to_string(store.error().code())) + " " + store.error().message());
    return 1;
  }
  for (long n = 0; n < upto; ++n) {
    int present = 0;
    for (int i = 0; i < 3; ++i) {
      auto g = store->get(key_for(n, i));
      if (!g) {
        say("bad get " + key_for(n, i) + " " + g.error().message());
        return 1;
      }
      if (g->has_value()) {
        if (**g != value_for(n, i, value)) {
          say("bad value " + key_for(n, i));
          return 1;
        }
        ++present;
      }
    }
    if (present != 0 && present != 3) {
      say("bad torn batch " + std::to_string(n) + " (" + std::to_string(present) + " of 3 keys)");
      return 1;
    }
    if (present == 3) say("present " + std::to_string(n));
  }
  if (auto w = store->write(batch_for(upto + 1000000, value)); !w) {
    say("bad write after reopen: " + outcome(w));
    return 1;
  }
  if (auto c = store->close(); !c) {
    say("bad close " + outcome(c));
    return 1;
  }
  say("verified");
  return 0;
}

int move(const args& a, std::size_t value, long count) {
  auto store = open_store<keel::hybrid_store>(a);
  if (!store) {
    say("open " + std::string(keel::to_string(store.error().code())) + " " + store.error().message());
    return 0;
  }
  long n = 0;
  for (; n < count; ++n) {
    auto w = store->write(batch_for(n, value));
    if (!w) {
      say("full " + outcome(w));
      break;
    }
    say("ack " + std::to_string(n));
  }
  say("move " + outcome(store->policy().move_to_large()));
  say(std::string("tier ") + (store->policy().current_tier() == keel::hybrid_store::policy_type::tier::large ? "rocksdb" : "memory"));
  for (long end = n + 20; n < end; ++n) {
    auto w = store->write(batch_for(n, value));
    if (!w) {
      say("full " + outcome(w));
      break;
    }
    say("ack " + std::to_string(n));
  }
  say("close " + outcome(store->close()));
  return 0;
}

template <class F>
int with_backend(const std::string& backend, F&& f) {
  if (backend == "memory") return f.template operator()<keel::memory_store>();
  if (backend == "rocksdb") return f.template operator()<keel::rocks_store>();
  if (backend == "hybrid") return f.template operator()<keel::hybrid_store>();
  return 64;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  auto usage = [] {
    std::fprintf(stderr, "usage: see tests/faults/full_disk_writer.cpp\n");
    return 64;
  };
  if (mode == "move") {
    if (argc != 6) return usage();
    args a{"hybrid", argv[2], std::string(argv[3]) == "sync"};
    return move(a, std::stoul(argv[4]), std::stol(argv[5]));
  }
  if (argc < 5) return usage();
  args a{argv[2], argv[3], std::string(argv[4]) == "sync"};
  if ((mode == "fill" || mode == "open") && argc == 7) {
    const std::size_t value = std::stoul(argv[5]);
    const long from = std::stol(argv[6]);
    const bool wait = mode == "fill";
    return with_backend(a.backend, [&]<class S>() { return fill<S>(a, value, from, wait); });
  }
  if (mode == "sweep" && (argc == 6 || argc == 7)) {
    const long count = std::stol(argv[5]);
    const std::size_t value = argc == 7 ? std::stoul(argv[6]) : 100;
    return with_backend(a.backend, [&]<class S>() { return sweep<S>(a, count, value); });
  }
  if (mode == "verify" && argc == 6) {
    a.sync = false;
    const std::size_t value = std::stoul(argv[4]);
    const long upto = std::stol(argv[5]);
    return with_backend(a.backend, [&]<class S>() { return verify<S>(a, value, upto); });
  }
  return usage();
}
