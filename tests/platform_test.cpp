// The platform layer (include/keel/detail/platform_file.hpp, dir_identity.hpp,
// lock_diagnosis.hpp): the same contract on POSIX and on Windows (run under
// wine by scripts/windows-test.sh). Where the platforms differ the test says
// which branch it checks.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <keel/detail/dir_registry.hpp>
#include <keel/detail/lock_diagnosis.hpp>
#include <keel/detail/platform_file.hpp>
#include <string>
#include <system_error>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::temp_dir;
using namespace std::chrono_literals;

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::string read_all(keel::detail::file& f) {
  std::string out;
  char buf[256];
  for (;;) {
    std::size_t got = 0;
    auto e = f.read_some(buf, sizeof buf, got);
    REQUIRE_FALSE(e);
    if (got == 0) return out;
    out.append(buf, got);
  }
}

}  // namespace

TEST_SUITE("platform") {
  TEST_CASE("replace_file swaps a file atomically; over a file open elsewhere it depends on the platform") {
    temp_dir tmp;
    const fs::path target = tmp.path() / "data";
    const fs::path next = tmp.path() / "data.tmp";
    write_text(target, "old");
    write_text(next, "new");
    {
      keel::detail::file reader;
      REQUIRE_FALSE(reader.open_read(target));
      auto e = keel::detail::replace_file(next, target);
#if defined(_WIN32)
      // Windows: a file open elsewhere (even with FILE_SHARE_DELETE, as keel
      // opens files) cannot be renamed over: access denied, nothing changed.
      // A save of a persisted store then fails with permission_denied and
      // keeps the old file.
      REQUIRE(e);
      CHECK(keel::detail::os_error(e, "replace").code() == keel::errc::permission_denied);
      CHECK(fs::exists(next));
#else
      // POSIX: rename(2) replaces it; the open descriptor keeps the old content.
      CHECK_MESSAGE(!e, keel::detail::system_message(e.code));
#endif
      CHECK(read_all(reader) == "old");
    }
    if (fs::exists(next)) {
      auto e = keel::detail::replace_file(next, target);  // nobody has it open now
      CHECK_MESSAGE(!e, keel::detail::system_message(e.code));
    }
    keel::detail::file again;
    REQUIRE_FALSE(again.open_read(target));
    CHECK(read_all(again) == "new");
    CHECK_FALSE(fs::exists(next));
    CHECK(keel::detail::sync_directory(tmp.path()));
  }

  TEST_CASE("file errors map to keel error codes with the system's message") {
    temp_dir tmp;
    keel::detail::file f;
    auto e = f.open_read(tmp.path() / "missing");
    REQUIRE(e);
    auto err = keel::detail::os_error(e, "cannot open 'missing'");
    CHECK(err.code() == keel::errc::not_found);
    CHECK(err.message().rfind("cannot open 'missing': ", 0) == 0);
    CHECK(err.message().size() > std::string("cannot open 'missing': ").size());
    // A write, sync and size on a created file.
    REQUIRE_FALSE(f.create(tmp.path() / "out"));
    REQUIRE_FALSE(f.write_all("0123456789", 10));
    CHECK_FALSE(f.sync());
    CHECK(f.regular_size() == std::optional<std::uint64_t>(10));
    CHECK_FALSE(f.close());
    CHECK(fs::file_size(tmp.path() / "out") == 10);
  }

  TEST_CASE("every spelling of a directory has one identity; another directory another") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    fs::create_directories(db);
    fs::create_directories(tmp.path() / "other");
    keel::detail::sys_error err;
    const auto id = keel::detail::identify(db, err);
    REQUIRE_FALSE(err);
    auto same = [&](const fs::path& spelling) {
      CAPTURE(spelling.string());
      keel::detail::sys_error e;
      auto other = keel::detail::identify(spelling, e);
      CHECK_MESSAGE(!e, keel::detail::system_message(e.code));
      CHECK(other == id);
    };
    same(db / "");                                   // trailing separator
    same(tmp.path() / "other" / ".." / "db");        // a detour
    same(tmp.path() / "." / "db");
#if defined(_WIN32)
    same(tmp.path() / "DB");                         // letter case
    same(fs::path(db.native() + L"\\"));             // backslash
#endif
    // A symlink (Windows: a directory symbolic link; junctions are
    // followed the same way, FILE_FLAG_OPEN_REPARSE_POINT is never used).
    std::error_code ec;
    fs::create_directory_symlink(db, tmp.path() / "link", ec);
    if (ec) {
      MESSAGE("no directory symlink here (" << ec.message() << "): that spelling is not checked");
    } else {
      same(tmp.path() / "link");
    }
    keel::detail::sys_error e;
    CHECK(keel::detail::identify(tmp.path() / "other", e) != id);
    CHECK_FALSE(e);
    keel::detail::identify(tmp.path() / "missing", e);
    CHECK(e);
  }

  TEST_CASE("the directory registry refuses a second open of one directory under another spelling") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    fs::create_directories(db);
    auto& registry = keel::detail::dir_registry::instance();
    auto first = registry.acquire(db);
    REQUIRE(first);
#if defined(_WIN32)
    const fs::path spelling = tmp.path() / "DB" / "";
#else
    const fs::path spelling = tmp.path() / "." / "db" / "";
#endif
    auto second = registry.acquire(spelling);
    REQUIRE_FALSE(second);
    CHECK(second.error().code() == keel::errc::already_open_in_process);
    first->release();
    CHECK(registry.acquire(spelling));
  }

  TEST_CASE("process ids: this process is alive, a finished helper is gone") {
    temp_dir tmp;
    CHECK_FALSE(keel::detail::process_gone(keel::detail::current_process_id()));
    long pid = 0;
    {
      child_process helper(helper_path("file_lock_helper"), {(tmp.path() / "f").string()});
      auto line = helper.read_line(30s);
      REQUIRE(line.has_value());
      REQUIRE(line->rfind("locked ", 0) == 0);
      pid = helper.pid();
      CHECK_FALSE(keel::detail::process_gone(pid));
      helper.close_stdin();
      CHECK(helper.wait() == 0);
    }
    CHECK(keel::detail::process_gone(pid));
  }

  TEST_CASE("a lock file held by another process is reported held, with its holder or the reason why not") {
    temp_dir tmp;
    const fs::path lock = tmp.path() / "LOCK";
    auto before = keel::detail::query_lock(lock);
    CHECK(before.held == std::optional<bool>(false));  // no such file: not held
    child_process helper(helper_path("file_lock_helper"), {lock.string()});
    auto line = helper.read_line(30s);
    REQUIRE(line.has_value());
    REQUIRE(line->rfind("locked ", 0) == 0);
    auto s = keel::detail::query_lock(lock);
    CAPTURE(s.note);
#if defined(__linux__)
    REQUIRE(s.held == std::optional<bool>(true));
    REQUIRE(s.holder);  // /proc/locks always names it
#elif defined(_WIN32)
    REQUIRE(s.held == std::optional<bool>(true));  // the sharing-violation probe
#endif
    if (s.holder) {
      CHECK(s.holder->pid == helper.pid());
      CHECK(s.note.empty());
    } else {
      // Windows under wine: its Restart Manager is a stub and names nobody.
      CHECK(s.note.find("cannot be told") != std::string::npos);
      MESSAGE("holder not named here: " << s.note);
    }
    helper.close_stdin();
    CHECK(helper.wait() == 0);
    auto after = keel::detail::query_lock(lock);
    CHECK(after.held == std::optional<bool>(false));  // released at exit
    CHECK_FALSE(after.holder);
  }

  TEST_CASE("file::try_lock: one process at a time; released when the holder exits") {
    temp_dir tmp;
    const fs::path file = tmp.path() / "store.lock";
    {
      child_process holder(helper_path("file_lock_helper"), {"--keel", file.string()});
      auto line = holder.read_line(30s);
      REQUIRE(line.has_value());
      REQUIRE(line->rfind("locked ", 0) == 0);
      keel::detail::file mine;
      REQUIRE_FALSE(mine.open_or_create(file));
      bool busy = false;
      auto e = mine.try_lock(busy);
      CHECK_MESSAGE(!e, keel::detail::system_message(e.code));
      CHECK(busy);  // held by the helper
      // A second helper is refused the same way.
      child_process second(helper_path("file_lock_helper"), {"--keel", file.string()});
      CHECK(second.read_line(30s) == std::optional<std::string>("busy"));
      CHECK(second.wait() == 2);
      holder.close_stdin();
      CHECK(holder.wait() == 0);
      e = mine.try_lock(busy);  // the holder is gone: free
      CHECK_MESSAGE(!e, keel::detail::system_message(e.code));
      CHECK_FALSE(busy);
      // Now this process holds it: a helper is refused.
      child_process third(helper_path("file_lock_helper"), {"--keel", file.string()});
      CHECK(third.read_line(30s) == std::optional<std::string>("busy"));
      CHECK(third.wait() == 2);
    }
    // Closed: free again.
    child_process fourth(helper_path("file_lock_helper"), {"--keel", file.string()});
    auto line = fourth.read_line(30s);
    REQUIRE(line.has_value());
    CHECK(line->rfind("locked ", 0) == 0);
    fourth.close_stdin();
    CHECK(fourth.wait() == 0);
  }
}
