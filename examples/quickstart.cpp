// keel quickstart: the RocksDB backend, start to finish.
//
//   bash scripts/quickstart.sh        (builds and runs build/examples/quickstart)
//
// Opens a store in a fresh temporary directory, writes single keys (one of
// them binary, with an embedded NUL) and a batch, reads, scans a prefix, shows
// a snapshot's isolation, closes, reopens at once and checks that the data
// persisted. Prints a short transcript; exits 0 on success, 1 with the error
// on any failure. The temporary directory is removed either way.
//
// Every keel call returns keel::result<T>: a value, or a keel::error with a
// code (keel::errc) to branch on and a message for people. keel throws for no
// expected failure; this example turns an unexpected one into an exception
// only to keep the happy path readable.

#include <keel/keel.hpp>

#include <rocksdb/version.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace fs = std::filesystem;

namespace {

struct step_failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The value of r, or stop with the error's code and message.
template <class T>
T check(keel::result<T> r, std::string_view step) {
  if (!r) {
    throw step_failed(std::string(step) + ": " + std::string(keel::to_string(r.error().code())) + ": " +
                      r.error().message());
  }
  return std::move(r).value();
}
void check(const keel::result<void>& r, std::string_view step) {
  if (!r) {
    throw step_failed(std::string(step) + ": " + std::string(keel::to_string(r.error().code())) + ": " +
                      r.error().message());
  }
}
void expect(bool ok, std::string_view what) {
  if (!ok) throw step_failed("unexpected result: " + std::string(what));
}

// Bytes as readable text: printable ASCII as is, anything else as \xNN.
std::string show(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}
std::string show_value(const std::optional<std::string>& v) { return v ? "\"" + show(*v) + "\"" : "(absent)"; }

void say(std::string_view step, std::string_view what) {
  std::cout << "  " << std::left << std::setw(22) << step << what << '\n';
}

// "k=v k=v ..." for every entry of a cursor; stops the example if the scan
// ended early (cursor.error() is how a scan reports failure).
template <class Cursor>
std::string list(Cursor&& cursor, std::string_view step) {
  std::string out;
  for (const auto& e : cursor) {
    if (!out.empty()) out += ' ';
    out += show(e.key) + "=" + show(e.value);
  }
  if (cursor.error()) {
    throw step_failed(std::string(step) + ": " + std::string(keel::to_string(cursor.error()->code())) + ": " +
                      cursor.error()->message());
  }
  return out;
}

// A new, empty directory under the system's temporary directory, removed with
// everything in it when this object goes.
class temp_dir {
 public:
  temp_dir() {
    std::random_device random;
    for (int attempt = 0;; ++attempt) {
      path_ = fs::temp_directory_path() /
              ("keel-quickstart-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
      if (fs::create_directory(path_)) return;  // false: it exists already, try another name
      if (attempt == 100) throw step_failed("cannot create a fresh temporary directory");
    }
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

int run() {
  temp_dir tmp;
  const fs::path db_path = tmp.path() / "db";
  const std::string blob_key("blob\0id", 7);     // keys and values are bytes: NUL is fine
  const std::string blob_value("\x00\x01\xff", 3);

  std::cout << "keel quickstart (RocksDB " << ROCKSDB_MAJOR << '.' << ROCKSDB_MINOR << '.' << ROCKSDB_PATCH
            << ")\nstore: " << db_path.string() << "\n\n";

  // Declared before the store so that it outlives the store's own close.
  std::optional<keel::rocks_store::snapshot_type> snap;
  {
    // Creates the directory (create_if_missing defaults to true).
    keel::rocks_store store = check(keel::rocks_store::open({.path = db_path}), "open");
    say("open", "ok, new store");

    check(store.put("user/alice", "admin"), "put user/alice");
    check(store.put("user/bob", "editor"), "put user/bob");
    check(store.put("config/theme", "dark"), "put config/theme");
    check(store.put(blob_key, blob_value), "put binary key");
    say("put", "user/alice, user/bob, config/theme, " + show(blob_key));

    // A batch is applied atomically: readers see all of it or none of it.
    keel::write_batch batch;
    batch.put("user/carol", "viewer").erase("user/bob").put("counter", "1");
    check(store.write(batch), "write batch");
    say("write(batch)", "put user/carol, erase user/bob, put counter (atomic)");

    auto alice = check(store.get("user/alice"), "get user/alice");
    expect(alice == "admin", "user/alice is admin");
    say("get user/alice", show_value(alice));
    auto bob = check(store.get("user/bob"), "get user/bob");
    expect(!bob, "user/bob was erased");
    say("get user/bob", show_value(bob) + " (a missing key is nullopt, not an error)");
    auto blob = check(store.get(blob_key), "get binary key");
    expect(blob == blob_value, "the binary value round-trips");
    say("get " + show(blob_key), show_value(blob));

    // Ordered by bytes; the cursor is a range, its error() is checked after.
    std::string users = list(store.scan(keel::key_range::prefix("user/")), "scan user/");
    expect(users == "user/alice=admin user/carol=viewer", "scan of user/");
    say("scan prefix user/", users);

    // A snapshot is a point-in-time view: later writes do not show through it.
    snap = store.snapshot();
    expect(snap->valid(), "snapshot of an open store");
    check(store.put("user/alice", "owner"), "put user/alice");
    check(store.put("user/dave", "editor"), "put user/dave");
    auto alice_now = check(store.get("user/alice"), "get user/alice");
    auto alice_then = check(snap->get("user/alice"), "snapshot get user/alice");
    expect(alice_now == "owner" && alice_then == "admin", "snapshot isolation");
    say("snapshot", "taken; then put user/alice=owner, user/dave=editor");
    say("  store.get alice", show_value(alice_now));
    say("  snapshot.get alice", show_value(alice_then));
    std::string users_then = list(snap->scan(keel::key_range::prefix("user/")), "snapshot scan user/");
    expect(users_then == "user/alice=admin user/carol=viewer", "snapshot scan of user/");
    say("  snapshot scan user/", users_then);

    // One open per directory per process, whatever the spelling of the path.
    auto again = keel::rocks_store::open({.path = db_path / "."});
    expect(!again && again.error().code() == keel::errc::already_open_in_process,
           "a second open of the same directory is refused");
    say("open db/. (same dir)", "refused: " + std::string(keel::to_string(again.error().code())));

    // close() releases everything (the live snapshot included) and the LOCK.
    check(store.close(), "close");
    say("close", "ok: DB closed, LOCK released");
  }
  auto late = snap->get("user/alice");
  expect(!late && late.error().code() == keel::errc::closed, "a snapshot of a closed store reports closed");
  say("snapshot.get", "after close: errc::closed (never undefined behaviour)");

  {
    // Reopen at once: no sleep, no retry.
    keel::rocks_store store = check(keel::rocks_store::open({.path = db_path}), "reopen");
    say("reopen", "ok, immediately");
    expect(check(store.get("user/alice"), "get user/alice") == "owner", "user/alice persisted");
    expect(check(store.get("user/dave"), "get user/dave") == "editor", "user/dave persisted");
    expect(!check(store.get("user/bob"), "get user/bob"), "user/bob stays erased");
    expect(check(store.get(blob_key), "get binary key") == blob_value, "the binary key persisted");
    std::string all = list(store.scan(), "scan all");
    expect(all == "blob\\x00id=\\x00\\x01\\xff config/theme=dark counter=1 user/alice=owner user/carol=viewer "
                  "user/dave=editor",
           "full scan after reopen");
    say("scan all", all);
    check(store.close(), "close");
    say("close", "ok");
  }

  std::cout << "\nquickstart: ok\n";
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "quickstart: FAILED: " << e.what() << '\n';
    return 1;
  }
}
