// tests/lock_diagnosis_test.cpp - keel::detail::find_lock_holder and
// filesystem_name against real RocksDB LOCK files held by a helper process
// (tests/lock_holder.cpp, found via keel::test::helper_path).

#include <doctest/doctest.h>

#include <keel/detail/lock_diagnosis.hpp>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using keel::detail::filesystem_name;
using keel::detail::find_lock_holder;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::temp_dir;

using keel::test::contains;

namespace {

constexpr auto startup_timeout = 30s;  // generous: sanitizer builds are slow

// Raw open from this process. "" on success (the DB is closed again),
// otherwise the status text.
std::string raw_open_error(const fs::path& db_path) {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, db_path.string(), &raw);
    if (!s.ok()) return s.ToString();
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::Status c = db->Close();
    return c.ok() ? std::string() : "close: " + c.ToString();
}

// Starts lock_holder on `db_path` and waits for "ready <pid>".
child_process start_holder(const fs::path& db_path) {
    child_process child(helper_path("lock_holder"), {db_path.string()});
    auto line = child.read_line(startup_timeout);
    REQUIRE(line.has_value());
    REQUIRE(*line == "ready " + std::to_string(child.pid()));
    return child;
}

// Runs `lock_holder args...` to completion; returns (exit status, first line).
std::pair<int, std::string> run_helper(std::vector<std::string> args) {
    child_process child(helper_path("lock_holder"), std::move(args));
    child.close_stdin();
    auto line = child.read_line(startup_timeout);
    auto status = child.wait_for(startup_timeout);
    REQUIRE(status.has_value());
    return {*status, line.value_or("")};
}

}  // namespace

TEST_CASE("find_lock_holder names another process holding the LOCK") {
    temp_dir tmp;
    fs::path const db = tmp.path() / "db";
    fs::path const lock = db / "LOCK";
    child_process holder = start_holder(db);

    auto h = find_lock_holder(lock);
    REQUIRE(h.has_value());
    CHECK(h->pid == holder.pid());
    CHECK(contains(h->command, "lock_holder"));
    CHECK(contains(h->command, db.string()));
    MESSAGE("holder command: " << h->command);

    // Allowing the fallback changes nothing on Linux (still /proc/locks).
    auto h2 = find_lock_holder(lock, true);
    REQUIRE(h2.has_value());
    CHECK(h2->pid == holder.pid());

    // The F_GETLK path used off Linux; safe here: this process holds no lock.
    auto h3 = keel::detail::lock_diagnosis_impl::query_with_getlk(lock);
    REQUIRE(h3.has_value());
    CHECK(h3->pid == holder.pid());
    CHECK(contains(h3->command, "lock_holder"));

    SUBCASE("RocksDB's error text when another process holds the lock") {
        std::string const err = raw_open_error(db);
        MESSAGE("cross-process open error: " << err);
        CHECK(contains(err, "While lock file"));
        CHECK(contains(err, "Resource temporarily unavailable"));
        CHECK(contains(err, lock.string()));
        // Still held: the failed open in this process did not disturb it.
        auto again = find_lock_holder(lock);
        REQUIRE(again.has_value());
        CHECK(again->pid == holder.pid());
    }

    SUBCASE("quit releases the lock") {
        holder.write_line("quit");
        auto status = holder.wait_for(startup_timeout);
        REQUIRE(status.has_value());
        CHECK(*status == 0);
        CHECK(fs::exists(lock));
        CHECK_FALSE(find_lock_holder(lock).has_value());
        CHECK_FALSE(keel::detail::lock_diagnosis_impl::query_with_getlk(lock).has_value());
        auto [rc, line] = run_helper({"--probe", db.string()});
        CHECK(rc == 0);
        CHECK(line == "opened");
    }

    SUBCASE("EOF on stdin releases the lock too") {
        holder.close_stdin();
        auto status = holder.wait_for(startup_timeout);
        REQUIRE(status.has_value());
        CHECK(*status == 0);
        CHECK_FALSE(find_lock_holder(lock).has_value());
    }
}

TEST_CASE("a SIGKILLed holder leaves LOCK behind but no lock") {
    temp_dir tmp;
    fs::path const db = tmp.path() / "db";
    fs::path const lock = db / "LOCK";
    child_process holder = start_holder(db);
    REQUIRE(find_lock_holder(lock).has_value());

    holder.kill(SIGKILL);
    CHECK(holder.wait() == 128 + SIGKILL);
    CHECK(holder.wait() == 128 + SIGKILL);  // cached

    CHECK(fs::exists(lock));
    CHECK_FALSE(find_lock_holder(lock).has_value());
    CHECK(raw_open_error(db) == "");
}

TEST_CASE("the holding process sees itself, and looking does not drop its lock") {
    temp_dir tmp;
    fs::path const db = tmp.path() / "db";
    fs::path const lock = db / "LOCK";

    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(options, db.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> held(raw);

    for (int i = 0; i < 3; ++i) {
        auto h = find_lock_holder(lock);
        REQUIRE(h.has_value());
        CHECK(h->pid == static_cast<long>(::getpid()));
        CHECK_FALSE(h->command.empty());
    }

    // Another process still cannot open it: find_lock_holder never opened LOCK.
    auto [rc, line] = run_helper({"--probe", db.string()});
    CHECK(rc == 1);
    CHECK(contains(line, "Resource temporarily unavailable"));
    MESSAGE("helper's open error while the test process holds the DB: " << line);

    // Same-process second open (RocksDB's own map, not the kernel).
    std::string const err = raw_open_error(db);
    MESSAGE("same-process open error: " << err);
    CHECK(contains(err, "lock hold by current process"));
    CHECK(contains(err, "No locks available"));

    CHECK(held->Close().ok());
    held.reset();
    CHECK_FALSE(find_lock_holder(lock).has_value());
}

TEST_CASE("find_lock_holder on missing or unlocked files") {
    temp_dir tmp;
    CHECK_FALSE(find_lock_holder(tmp.path() / "missing" / "LOCK").has_value());
    CHECK_FALSE(find_lock_holder(tmp.path() / "missing" / "LOCK", true).has_value());
    fs::path const plain = tmp.path() / "LOCK";
    std::ofstream(plain) << "";
    CHECK_FALSE(find_lock_holder(plain).has_value());
    CHECK_FALSE(find_lock_holder(plain, true).has_value());
    CHECK_FALSE(find_lock_holder("").has_value());
}

#if defined(__linux__)
TEST_CASE("/proc/locks line parsing") {
    using keel::detail::lock_diagnosis_impl::parse_proc_locks_line;
    auto e = parse_proc_locks_line("1: POSIX  ADVISORY  WRITE 4242 fe:0a:123456 0 EOF");
    REQUIRE(e.has_value());
    CHECK(e->pid == 4242);
    CHECK(e->dev_major == 0xfe);
    CHECK(e->dev_minor == 0x0a);
    CHECK(e->inode == 123456);
    CHECK(parse_proc_locks_line("2: POSIX  MANDATORY WRITE 7 00:2d:99 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("1: -> POSIX  ADVISORY  WRITE 4243 fe:0a:123456 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("3: FLOCK  ADVISORY  WRITE 4242 fe:0a:123456 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("4: OFDLCK ADVISORY  WRITE -1 fe:0a:123456 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("5: POSIX  ADVISORY  READ 4242 fe:0a:123456 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("6: LEASE  ACTIVE    READ 4242 fe:0a:123456 0 EOF").has_value());
    CHECK_FALSE(parse_proc_locks_line("").has_value());
    CHECK_FALSE(parse_proc_locks_line("7: POSIX  ADVISORY  WRITE 4242 garbage 0 EOF").has_value());
}
#endif

TEST_CASE("filesystem_name") {
    temp_dir tmp;
    std::string const name = filesystem_name(tmp.path());
    MESSAGE("temp dir " << tmp.path().string() << " is on: " << name);
    CHECK_FALSE(name.empty());
    CHECK(name.rfind("unknown", 0) != 0);
    CHECK(filesystem_name(tmp.path() / "missing") == "");
#if defined(__linux__)
    CHECK(filesystem_name("/proc") == "proc");
#endif
}

TEST_CASE("an unprivileged process cannot open a root-owned DB") {
    if (::geteuid() != 0) {
        MESSAGE("not root: skipped");
        return;
    }
    temp_dir tmp;
    fs::path const db = tmp.path() / "db";
    REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);  // mkdtemp made it 0700
    REQUIRE(raw_open_error(db) == "");                // root creates it
    {
        // Directory not writable: the info LOG rotation fails before LOCK.
        auto [rc, line] = run_helper({"--drop-privileges", "65534", db.string()});
        MESSAGE("open error as uid 65534, read-only DB dir: " << line);
        CHECK(rc == 1);
        CHECK(contains(line, "Permission denied"));
    }
    {
        // Directory writable, LOCK (root, 0644) not: open(LOCK) fails.
        REQUIRE(::chmod(db.c_str(), 0777) == 0);
        auto [rc, line] = run_helper({"--drop-privileges", "65534", db.string()});
        MESSAGE("open error as uid 65534, root-owned LOCK: " << line);
        CHECK(rc == 1);
        CHECK(contains(line, "while open a file for lock"));
        CHECK(contains(line, "Permission denied"));
    }
}

TEST_CASE("temp_dir cleans up even after chmod") {
    fs::path kept;
    {
        temp_dir tmp;
        kept = tmp.path();
        CHECK(kept.filename().string().rfind("keel-test-", 0) == 0);
        fs::create_directories(kept / "a" / "b");
        std::ofstream(kept / "a" / "b" / "f") << "x";
        REQUIRE(::chmod((kept / "a" / "b").c_str(), 0) == 0);
        REQUIRE(::chmod((kept / "a").c_str(), 0) == 0);
        temp_dir moved(std::move(tmp));
        CHECK(tmp.path().empty());
        CHECK(moved.path() == kept);
    }
    CHECK_FALSE(fs::exists(kept));
}

TEST_CASE("child_process basics") {
    child_process cat("cat");
    cat.write_line("hello");
    auto line = cat.read_line(5s);
    REQUIRE(line.has_value());
    CHECK(*line == "hello");
    CHECK_FALSE(cat.read_line(50ms).has_value());  // timeout, nothing pending
    cat.close_stdin();
    CHECK_FALSE(cat.read_line(5s).has_value());  // EOF
    CHECK(cat.wait() == 0);

    child_process sh("/bin/sh", {"-c", "printf 'a\\nb'; exit 3"});
    CHECK(sh.read_line(5s) == std::optional<std::string>("a"));
    CHECK(sh.read_line(5s) == std::optional<std::string>("b"));
    CHECK(sh.wait() == 3);

    child_process gone("/bin/sh", {"-c", "exec 0<&-; exit 0"});
    CHECK(gone.wait() == 0);
    CHECK_THROWS_AS(gone.write_line(std::string(1 << 20, 'x')), std::system_error);  // EPIPE, no SIGPIPE

    CHECK_THROWS_AS(child_process("/nonexistent/program"), std::system_error);
}
