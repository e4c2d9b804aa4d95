// The runtime selector: open_store(), fallback rules, environment switches,
// the log sink. (Every store operation through any_store is covered by the
// conformance suite, on both alternatives.)
#include <doctest/doctest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <keel/keel.hpp>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/fake_clock.hpp"
#include "support/no_lock_fs.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using keel::backend;
using keel::errc;
using keel::open_store;
using keel::store_config;
using keel::test::child_process;
using keel::test::helper_path;
using keel::test::no_lock_fs;
using keel::test::temp_dir;
using namespace std::chrono_literals;

using keel::test::contains;

namespace {


// Sets environment variables for the scope of one test and restores them.
class scoped_env {
 public:
  void set(const std::string& name, const char* value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }
  ~scoped_env() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

struct captured_log {
  std::vector<std::string> lines;
  keel::log_sink sink() {
    return [this](std::string_view l) { lines.emplace_back(l); };
  }
  std::string all() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
};

// Every file of a directory (but RocksDB's info LOG files, which an open
// rotates) with its bytes.
std::map<std::string, std::string> files_of(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("LOG", 0) == 0) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    out[name] = bytes.str();
  }
  return out;
}

}  // namespace

TEST_SUITE("any_store") {
  TEST_CASE("the preferred rocksdb backend opens and says so") {
    temp_dir tmp;
    captured_log log;
    store_config c;
    c.path = tmp.path() / "db";
    c.log = log.sink();
    auto s = open_store(c);
    REQUIRE(s);
    CHECK(s->backend() == backend::rocksdb);
    CHECK_FALSE(s->fallback_reason());
    CHECK(s->attempts().size() == 1);
    REQUIRE(log.lines.size() == 1);
    CHECK(contains(log.lines[0], "opened the rocksdb backend"));
    CHECK(contains(log.lines[0], c.path.string()));
    CHECK(s->get_if<keel::RocksPolicy<keel::NativeTuning>>() != nullptr);
    CHECK(s->get_if<keel::MemoryPolicy>() == nullptr);
  }

  TEST_CASE("forced memory through the environment") {
    scoped_env env;
    env.set("MERIDIAN_USE_MEMORY_STORAGE", "TRUE");
    env.set("MERIDIAN_FALLBACK_MEMORY", nullptr);
    temp_dir tmp;
    captured_log log;
    store_config base;
    base.path = tmp.path() / "db";
    base.log = log.sink();
    auto c = store_config::from_env("MERIDIAN", base);
    REQUIRE(c);
    CHECK(c->preferred == backend::memory);
    auto s = open_store(*c);
    REQUIRE(s);
    CHECK(s->backend() == backend::memory);
    CHECK_FALSE(fs::exists(base.path));  // RocksDB was never touched
    REQUIRE(log.lines.size() == 1);
    CHECK(contains(log.lines[0], "memory"));
    CHECK(contains(log.lines[0], "NOT be persisted"));
  }

  TEST_CASE("from_env reads exactly PREFIX_USE_MEMORY_STORAGE and PREFIX_FALLBACK_MEMORY") {
    scoped_env env;
    env.set("KEEL_USE_MEMORY_STORAGE", "garbage");  // other prefixes are not read
    env.set("MERIDIAN_USE_MEMORY_STORAGE", nullptr);
    env.set("MERIDIAN_FALLBACK_MEMORY", "on");
    env.set("MERIDIAN_USE_MEMORY", "1");  // near-miss names are not read
    auto c = store_config::from_env("MERIDIAN");
    REQUIRE(c);
    CHECK(c->preferred == backend::rocksdb);
    CHECK(c->fallback_to_memory);

    env.set("MERIDIAN_FALLBACK_MEMORY", "0");
    store_config base;
    base.fallback_to_memory = true;
    CHECK_FALSE(store_config::from_env("MERIDIAN", base)->fallback_to_memory);
    env.set("MERIDIAN_FALLBACK_MEMORY", nullptr);
    CHECK(store_config::from_env("MERIDIAN", base)->fallback_to_memory);  // unset keeps base

    // The default prefix is KEEL.
    env.set("KEEL_USE_MEMORY_STORAGE", "yes");
    CHECK(store_config::from_env()->preferred == backend::memory);
  }

  TEST_CASE("accepted and rejected environment values") {
    scoped_env env;
    env.set("KEELT_FALLBACK_MEMORY", nullptr);
    for (const char* v : {"1", "true", "TRUE", "True", "yes", "YES", "on", "On"}) {
      env.set("KEELT_USE_MEMORY_STORAGE", v);
      auto c = store_config::from_env("KEELT");
      REQUIRE(c);
      CHECK(c->preferred == backend::memory);
    }
    for (const char* v : {"0", "false", "FALSE", "no", "No", "off", "OFF"}) {
      env.set("KEELT_USE_MEMORY_STORAGE", v);
      auto c = store_config::from_env("KEELT");
      REQUIRE(c);
      CHECK(c->preferred == backend::rocksdb);
    }
    for (const char* v : {"", "2", "maybe", "tru", " yes", "y", "enable"}) {
      CAPTURE(v);
      env.set("KEELT_USE_MEMORY_STORAGE", v);
      auto c = store_config::from_env("KEELT");
      REQUIRE_FALSE(c);
      CHECK(c.error().code() == errc::invalid_argument);
      CHECK(contains(c.error().message(), "KEELT_USE_MEMORY_STORAGE"));
      CHECK(contains(c.error().message(), "'" + std::string(v) + "'"));
    }
    env.set("KEELT_USE_MEMORY_STORAGE", nullptr);
    env.set("KEELT_FALLBACK_MEMORY", "sometimes");
    auto c = store_config::from_env("KEELT");
    REQUIRE_FALSE(c);
    CHECK(contains(c.error().message(), "KEELT_FALLBACK_MEMORY"));
  }

  TEST_CASE("a filesystem without locks falls back to memory when enabled, and says why") {
    temp_dir tmp;
    auto fs_ptr = std::make_shared<no_lock_fs>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs_ptr);
    captured_log log;
    store_config c;
    c.path = tmp.path() / "db";
    c.rocks.env = env.get();
    c.log = log.sink();

    SUBCASE("fallback disabled: the error, with the reason there was no fallback") {
      auto s = open_store(c);
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::locks_unsupported);
      CHECK(contains(s.error().message(), "fallback to memory is not enabled"));
      CHECK(contains(log.all(), "rocksdb backend failed (locks_unsupported)"));
    }
    SUBCASE("fallback enabled") {
      c.fallback_to_memory = true;
      auto s = open_store(c);
      REQUIRE(s);
      CHECK(s->backend() == backend::memory);
      REQUIRE(s->fallback_reason());
      CHECK(s->fallback_reason()->code() == errc::locks_unsupported);
      REQUIRE(s->attempts().size() == 2);
      CHECK(s->attempts()[0].backend == backend::rocksdb);
      CHECK(s->attempts()[1].backend == backend::memory);
      REQUIRE(log.lines.size() == 2);
      CHECK(contains(log.lines[1], "falling back to the memory backend"));
      CHECK(contains(log.lines[1], "locks_unsupported"));
      CHECK(contains(log.lines[1], "NOT be persisted"));
      REQUIRE(s->put("k", "v"));
      CHECK(s->get("k")->value() == "v");
    }
    SUBCASE("fallback to a persisted memory store: the log line names its file, and the data is saved") {
      c.fallback_to_memory = true;
      const fs::path file = tmp.path() / "fallback.keeldump";
      c.memory.persist_path = file;
      auto s = open_store(c);
      REQUIRE(s);
      CHECK(s->backend() == backend::memory);
      REQUIRE(log.lines.size() == 2);
      CHECK_FALSE(contains(log.lines[1], "NOT be persisted"));
      CHECK(contains(log.lines[1], file.string()));
      REQUIRE(s->put("k", "v"));
      REQUIRE(s->close());
      keel::memory_options mo;
      mo.persist_path = file;
      auto again = keel::memory_store::open(mo);
      REQUIRE(again);
      CHECK(again->get("k")->value() == "v");
    }
    SUBCASE("fallback disabled and not for this kind of error: no note about a fallback (issue 25)") {
      c.fallback_on = {errc::io_error};
      auto s = open_store(c);
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::locks_unsupported);
      CHECK_FALSE(contains(s.error().message(), "fallback"));
    }
    SUBCASE("fallback enabled, but not for this kind of error") {
      c.fallback_to_memory = true;
      c.fallback_on = {errc::io_error};
      auto s = open_store(c);
      REQUIRE_FALSE(s);
      CHECK(s.error().code() == errc::locks_unsupported);
      CHECK(contains(s.error().message(), "not in fallback_on"));
    }
  }

  TEST_CASE("permission_denied falls back where there is no database, never over an existing one") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto created = keel::rocks_store::open({.path = db});
      REQUIRE(created);
      REQUIRE(created->put("k", "v"));
    }
    const auto before = files_of(db);
    // Nothing can be created under `locked`.
    const fs::path locked = tmp.path() / "locked";
    fs::create_directory(locked);
    const fs::path nowhere = locked / "db";
    if (geteuid() == 0) {
      // root ignores permissions: the opens run in a helper as nobody, who
      // may read but not write anything here.
      fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                      fs::perms::others_read | fs::perms::others_exec);
      fs::permissions(locked, fs::perms::owner_all | fs::perms::others_exec);
      {
        child_process probe(helper_path("keel_probe"), {"--drop-privileges", "65534", "--fallback", db.string()});
        auto line = probe.read_line(30s);
        REQUIRE(line);
        CHECK(contains(*line, "error permission_denied"));
        CHECK(contains(*line, "holds a database"));
        CHECK(probe.wait() == 1);
      }
      child_process probe(helper_path("keel_probe"), {"--drop-privileges", "65534", "--fallback", nowhere.string()});
      auto line = probe.read_line(30s);
      REQUIRE(line);
      CHECK(contains(*line, "opened memory"));
      CHECK(contains(*line, "reason permission_denied"));
      CHECK(probe.wait() == 0);
    } else {
      fs::permissions(db, fs::perms::owner_read | fs::perms::owner_exec);
      fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
      store_config c;
      c.fallback_to_memory = true;
      captured_log log;
      c.log = log.sink();
      c.path = db;
      auto refused = open_store(c);
      c.path = nowhere;
      auto s = open_store(c);
      fs::permissions(db, fs::perms::owner_all);
      fs::permissions(locked, fs::perms::owner_all);
      REQUIRE_FALSE(refused);
      CHECK(refused.error().code() == errc::permission_denied);
      CHECK(contains(refused.error().message(), "holds a database"));
      REQUIRE(s);
      CHECK(s->backend() == backend::memory);
      CHECK(s->fallback_reason()->code() == errc::permission_denied);
    }
    CHECK(files_of(db) == before);
    CHECK_FALSE(fs::exists(nowhere));
  }

  TEST_CASE("an existing database never becomes an empty memory store") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = keel::rocks_store::open({.path = db});
      REQUIRE(s);
      for (int i = 0; i < 100; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
      REQUIRE(s->policy().with_db([](rocksdb::DB& d) { return d.Flush({}).ok(); }).value());
    }
    auto manifest = [&] {
      std::ifstream in(db / "CURRENT");
      std::string name;
      std::getline(in, name);
      return name;
    };
    std::string missing;  // the file the error must name
    SUBCASE("the MANIFEST named by CURRENT is missing") {
      missing = manifest();
      fs::remove(db / missing);
    }
    SUBCASE("the MANIFEST named by CURRENT is a directory") {
      missing = manifest();
      fs::remove(db / missing);
      fs::create_directory(db / missing);
    }
    SUBCASE("an SST named by the MANIFEST is missing") {
      for (const auto& e : fs::directory_iterator(db))
        if (e.path().extension() == ".sst") missing = e.path().filename().string();
      REQUIRE_FALSE(missing.empty());
      fs::remove(db / missing);
    }
    SUBCASE("RocksDB files but no CURRENT") {
      missing = "no CURRENT file";
      fs::remove(db / "CURRENT");
    }
    const auto before = files_of(db);
    store_config c;
    c.path = db;
    c.fallback_to_memory = true;
    c.fallback_on = {errc::io_error, errc::permission_denied, errc::locks_unsupported, errc::no_space,
                     errc::not_found};  // every kind that can be listed
    captured_log log;
    c.log = log.sink();
    auto s = open_store(c);
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == errc::corruption);
    CHECK(contains(s.error().message(), missing));
    CHECK(contains(s.error().message(), db.string()));
    CHECK(contains(s.error().message(), "damaged"));
    CHECK_FALSE(contains(log.all(), "falling back"));
    CHECK(files_of(db) == before);
    // A read-only open says the same and changes nothing either.
    c.rocks.read_only = true;
    auto r = open_store(c);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::corruption);
    CHECK(files_of(db) == before);
  }

  TEST_CASE("over an existing database only lock errors may fall back, and the log says the data is not used") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = keel::rocks_store::open({.path = db});
      REQUIRE(s);
      REQUIRE(s->put("k", "v"));
    }
    auto fs_ptr = std::make_shared<no_lock_fs>(rocksdb::FileSystem::Default());
    std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs_ptr);
    store_config c;
    c.path = db;
    c.rocks.env = env.get();
    c.fallback_to_memory = true;
    captured_log log;
    c.log = log.sink();
    auto s = open_store(c);
    REQUIRE(s);
    CHECK(s->backend() == backend::memory);
    CHECK(s->fallback_reason()->code() == errc::locks_unsupported);
    CHECK(contains(log.all(), "the database at '" + db.string() + "' exists and is NOT being used"));

    // The rule itself.
    CHECK(c.may_fall_back(errc::locks_unsupported, true));
    CHECK_FALSE(c.may_fall_back(errc::io_error, true));
    CHECK_FALSE(c.may_fall_back(errc::permission_denied, true));
    CHECK(c.may_fall_back(errc::io_error, false));
    CHECK_FALSE(c.may_fall_back(errc::lock_held_by_other_process, true));  // not opted in
    c.fallback_on.push_back(errc::lock_held_by_other_process);
    c.fallback_on.push_back(errc::no_space);
    CHECK(c.may_fall_back(errc::lock_held_by_other_process, true));
    CHECK_FALSE(c.may_fall_back(errc::no_space, true));
    CHECK(c.may_fall_back(errc::no_space, false));
  }

  TEST_CASE("a lock held by another process falls back only when opted in") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    child_process holder(helper_path("lock_holder"), {db.string()});
    auto ready = holder.read_line(30s);
    REQUIRE(ready);
    REQUIRE(contains(*ready, "ready"));
    store_config c;
    c.path = db;
    c.fallback_to_memory = true;  // enabled, default kinds
    c.log = [](std::string_view) {};
    auto refused = open_store(c);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code() == errc::lock_held_by_other_process);
    CHECK(contains(refused.error().message(), std::to_string(holder.pid())));

    c.fallback_on.push_back(errc::lock_held_by_other_process);
    captured_log log;
    c.log = log.sink();
    auto s = open_store(c);
    REQUIRE(s);
    CHECK(s->backend() == backend::memory);
    CHECK(s->fallback_reason()->code() == errc::lock_held_by_other_process);
    CHECK(contains(log.all(), "exists and is NOT being used"));
    holder.write_line("quit");
    CHECK(holder.wait() == 0);
  }

  TEST_CASE("a corrupted database never falls back and is left byte-identical") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    {
      auto s = keel::rocks_store::open({.path = db});
      REQUIRE(s);
      for (int i = 0; i < 100; ++i) REQUIRE(s->put("k" + std::to_string(i), "v"));
    }
    SUBCASE("CURRENT damaged") {
      std::ofstream(db / "CURRENT", std::ios::trunc | std::ios::binary) << "MANIFEST-000001";  // no newline
    }
    SUBCASE("MANIFEST damaged") {
      bool damaged = false;
      for (const auto& e : fs::directory_iterator(db)) {
        if (e.path().filename().string().rfind("MANIFEST", 0) != 0) continue;
        std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(10);
        f << "garbage garbage garbage";
        damaged = true;
      }
      REQUIRE(damaged);
    }
    const auto before = files_of(db);
    store_config c;
    c.path = db;
    c.fallback_to_memory = true;
    c.fallback_on.push_back(errc::corruption);  // even when listed
    captured_log log;
    c.log = log.sink();
    auto s = open_store(c);
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == errc::corruption);
    CHECK(contains(s.error().message(), "never falls back"));
    CHECK_FALSE(contains(log.all(), "falling back"));
    CHECK(files_of(db) == before);
  }

  TEST_CASE("a double open in this process never falls back") {
    temp_dir tmp;
    const fs::path db = tmp.path() / "db";
    auto first = keel::rocks_store::open({.path = db});
    REQUIRE(first);
    store_config c;
    c.path = fs::path(db.string() + "/");
    c.fallback_to_memory = true;
    c.fallback_on.push_back(errc::already_open_in_process);
    c.log = [](std::string_view) {};
    auto s = open_store(c);
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == errc::already_open_in_process);
    CHECK(contains(s.error().message(), "never falls back"));
  }

  TEST_CASE("may_fall_back follows the rules") {
    store_config c;
    CHECK_FALSE(c.may_fall_back(errc::io_error));  // not enabled
    c.fallback_to_memory = true;
    CHECK(c.may_fall_back(errc::io_error));
    CHECK(c.may_fall_back(errc::permission_denied));
    CHECK(c.may_fall_back(errc::locks_unsupported));
    CHECK_FALSE(c.may_fall_back(errc::lock_held_by_other_process));
    CHECK_FALSE(c.may_fall_back(errc::corruption));
    CHECK_FALSE(c.may_fall_back(errc::already_open_in_process));
    CHECK_FALSE(c.may_fall_back(errc::no_space));
  }
}

// ---------------------------------------------------------------------------
// Keyspaces through basic_any_store (issue 27).
// ---------------------------------------------------------------------------
namespace {

// A memory store without keyspaces: MemoryPolicy's store_policy members
// only, so that basic_any_store's not_supported path is tested whatever the
// real backends have (hybrid, etcd and PostgreSQL are gaining keyspaces).
class flat_memory_policy {
 public:
  using options = keel::memory_options;
  // Types of its own (a variant of cursors holds each type once).
  struct cursor_type : keel::MemoryPolicy::cursor_type {
    explicit cursor_type(keel::MemoryPolicy::cursor_type c) : keel::MemoryPolicy::cursor_type(std::move(c)) {}
  };
  struct snapshot_type {
    keel::MemoryPolicy::snapshot_type view;
    keel::result<std::optional<std::string>> get(std::string_view k) const { return view.get(k); }
    keel::result<bool> contains(std::string_view k) const { return view.contains(k); }
    cursor_type scan(const keel::key_range& r) const { return cursor_type(view.scan(r)); }
  };
  static constexpr keel::backend backend_kind = keel::backend::memory;

  static keel::result<std::shared_ptr<flat_memory_policy>> open(const options& o) {
    auto m = keel::MemoryPolicy::open(o);
    if (!m) return std::move(m).error();
    auto p = std::make_shared<flat_memory_policy>();
    p->m_ = std::move(*m);
    return p;
  }
  keel::result<void> put(std::string_view k, std::string_view v) { return m_->put(k, v); }
  keel::result<std::optional<std::string>> get(std::string_view k) const { return m_->get(k); }
  keel::result<bool> contains(std::string_view k) const { return m_->contains(k); }
  keel::result<void> erase(std::string_view k) { return m_->erase(k); }
  keel::result<void> write(const keel::write_batch& b) { return m_->write(b); }
  cursor_type scan(const keel::key_range& r) const { return cursor_type(m_->scan(r)); }
  static cursor_type failed_cursor(keel::error e) {
    return cursor_type(keel::MemoryPolicy::failed_cursor(std::move(e)));
  }
  keel::result<snapshot_type> snapshot() const {
    auto v = m_->snapshot();
    if (!v) return std::move(v).error();
    return snapshot_type{std::move(*v)};
  }
  keel::result<void> close() { return m_->close(); }
  bool is_open() const noexcept { return m_->is_open(); }
  keel::result<void> erase_range(const keel::key_range& r) { return m_->erase_range(r); }
  keel::result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> k) const {
    return m_->multi_get(k);
  }
  keel::result<void> compact(const keel::key_range& r) { return m_->compact(r); }
  keel::result<void> checkpoint(const fs::path& p) const { return m_->checkpoint(p); }
  keel::result<keel::tx_start<snapshot_type>> begin_transaction() const {
    auto t = m_->begin_transaction();
    if (!t) return std::move(t).error();
    return keel::tx_start<snapshot_type>{snapshot_type{std::move(t->view)}, t->start, std::move(t->registration)};
  }
  keel::result<void> commit_transaction(const keel::tx_record& t) { return m_->commit_transaction(t); }

 private:
  std::shared_ptr<keel::MemoryPolicy> m_;
};
static_assert(keel::store_policy<flat_memory_policy> && !keel::keyspace_policy<flat_memory_policy>);

using ks_any_store = keel::basic_any_store<keel::RocksPolicy<keel::NativeTuning>, keel::MemoryPolicy, flat_memory_policy>;

// The keys of a cursor, in order ("!error" when it stopped early).
template <class Cursor>
std::vector<std::string> keys_of(Cursor&& c) {
  std::vector<std::string> out;
  for (const auto& e : c) out.emplace_back(e.key);
  if (c.error()) out.push_back("!" + std::string(keel::to_string(c.error()->code())));
  return out;
}

// Every keyed call through an any_store keyspace handle, on whichever
// backend `s` holds (one with keyspaces).
void check_any_keyspace_calls(ks_any_store& s) {
  REQUIRE(s.has_keyspaces());
  const std::string odd("u\0s\xff", 4);  // NUL and 0xFF in a name
  auto users = s.keyspace(odd);
  REQUIRE(users);
  CHECK(users->name() == odd);
  CHECK(bool(*users));
  REQUIRE(s.put("k1", "default"));
  REQUIRE(users->put("k1", "users"));
  REQUIRE(users->put("k2", "two"));
  REQUIRE(users->put("k3", "three"));
  CHECK(s.get("k1")->value() == "default");
  CHECK(users->get("k1")->value() == "users");
  CHECK_FALSE(s.get("k2")->has_value());  // the same key in two keyspaces is two entries
  CHECK(*users->contains("k2"));
  CHECK_FALSE(*users->contains("k9"));
  auto many = users->multi_get({"k3", "k9", "k1"});
  REQUIRE(many);
  CHECK((*many == std::vector<std::optional<std::string>>{"three", std::nullopt, "users"}));
  CHECK((keys_of(users->scan()) == std::vector<std::string>{"k1", "k2", "k3"}));
  CHECK((keys_of(s.scan()) == std::vector<std::string>{"k1"}));  // a scan never crosses keyspaces
  REQUIRE(users->erase("k2"));
  CHECK_FALSE(users->get("k2")->has_value());
  REQUIRE(users->compact());

  // One batch over two keyspaces, named by handle and by name.
  REQUIRE(s.write(keel::write_batch{}
                      .put(*users, "b1", "x")
                      .put(keel::keyspace_name(odd), "b2", "y")
                      .erase_range(*users, keel::key_range::between("k1", "k9"))
                      .put("b0", "z")));
  CHECK((keys_of(users->scan()) == std::vector<std::string>{"b1", "b2"}));
  CHECK(s.get("b0")->value() == "z");
  // A batch naming a keyspace that does not exist writes nothing.
  auto missing = s.write(keel::write_batch{}.put("b9", "no").put(keel::keyspace_name("nope"), "k", "v"));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == errc::not_found);
  CHECK_FALSE(s.get("b9")->has_value());

  // One snapshot covers every keyspace as of its creation.
  auto snap = s.snapshot();
  REQUIRE(users->put("b3", "later"));
  REQUIRE(s.put("b0", "later"));
  CHECK(snap.get(*users, "b1")->value() == "x");
  CHECK_FALSE(snap.get(*users, "b3")->has_value());
  CHECK(*snap.contains(*users, "b2"));
  CHECK((keys_of(snap.scan(*users)) == std::vector<std::string>{"b1", "b2"}));
  CHECK(snap.get("b0")->value() == "z");
  CHECK(users->get("b3")->value() == "later");

  auto second = s.keyspace("another");
  REQUIRE(second);
  auto names = s.keyspaces();
  REQUIRE(names);
  CHECK((*names == std::vector<std::string>{"", "another", odd}));

  // Bad input.
  CHECK(s.keyspace(std::string(256, 'n')).error().code() == errc::invalid_argument);
  CHECK(s.drop_keyspace("").error().code() == errc::invalid_argument);
  CHECK(s.drop_keyspace("never-made").error().code() == errc::not_found);
  keel::any_store::keyspace_type empty;
  CHECK_FALSE(bool(empty));
  CHECK(ks_any_store::keyspace_type{}.get("k").error().code() == errc::closed);

  // Drop: handles give not_found; recreating gives an empty keyspace.
  REQUIRE(s.drop_keyspace("another"));
  CHECK(second->get("k").error().code() == errc::not_found);
  CHECK(second->put("k", "v").error().code() == errc::not_found);
  auto again = s.keyspace("another");
  REQUIRE(again);
  CHECK((keys_of(again->scan()) == std::vector<std::string>{}));
  CHECK((*s.keyspaces() == std::vector<std::string>{"", "another", odd}));

  REQUIRE(s.close());
  CHECK(users->get("b1").error().code() == errc::closed);
  CHECK(users->put("b1", "v").error().code() == errc::closed);
  CHECK(s.keyspace("x").error().code() == errc::closed);
  CHECK(s.keyspaces().error().code() == errc::closed);
}

}  // namespace

TEST_SUITE("any_store") {
  TEST_CASE("keyspaces through any_store on memory: every keyed call, batches, snapshots, drop, close") {
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store s(std::move(*m));
    check_any_keyspace_calls(s);
  }

  TEST_CASE("keyspaces through any_store on RocksDB: every keyed call, batches, snapshots, drop, close") {
    temp_dir tmp;
    auto r = keel::rocks_store::open({.path = tmp.path() / "db"});
    REQUIRE(r);
    ks_any_store s(std::move(*r));
    CHECK(s.backend() == backend::rocksdb);
    check_any_keyspace_calls(s);
    // The keyspaces are column families: they are there after a reopen.
    auto back = keel::rocks_store::open({.path = tmp.path() / "db"});
    REQUIRE(back);
    ks_any_store s2(std::move(*back));
    CHECK((*s2.keyspaces() == std::vector<std::string>{"", "another", std::string("u\0s\xff", 4)}));
    auto users = s2.keyspace(std::string("u\0s\xff", 4));
    REQUIRE(users);
    CHECK(users->get("b3")->value() == "later");
    CHECK(users->get_if<keel::RocksPolicy<keel::NativeTuning>>() != nullptr);
    CHECK(users->get_if<keel::MemoryPolicy>() == nullptr);
  }

  TEST_CASE("a handle of one backend read through another's snapshot is invalid_argument") {
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store mem(std::move(*m));
    temp_dir tmp;
    auto r = keel::rocks_store::open({.path = tmp.path() / "db"});
    REQUIRE(r);
    ks_any_store rocks(std::move(*r));
    auto ks = mem.keyspace("a");
    REQUIRE(ks);
    auto snap = rocks.snapshot();
    CHECK(snap.get(*ks, "k").error().code() == errc::invalid_argument);
    CHECK(snap.contains(*ks, "k").error().code() == errc::invalid_argument);
    auto c = snap.scan(*ks);
    CHECK_FALSE(c.valid());
    REQUIRE(c.error());
    CHECK(c.error()->code() == errc::invalid_argument);
    CHECK(snap.get(ks_any_store::keyspace_type{}, "k").error().code() == errc::closed);
  }

  TEST_CASE("a backend without keyspaces: not_supported, the default keyspace listed, nothing written elsewhere") {
    auto f = keel::basic_store<flat_memory_policy>::open({});
    REQUIRE(f);
    ks_any_store s(std::move(*f));
    CHECK_FALSE(s.has_keyspaces());
    REQUIRE(s.put("k", "v"));
    CHECK(s.keyspace("users").error().code() == errc::not_supported);
    CHECK(s.keyspace("").error().code() == errc::not_supported);
    CHECK(s.keyspace(std::string(256, 'n')).error().code() == errc::invalid_argument);
    CHECK((*s.keyspaces() == std::vector<std::string>{""}));
    CHECK(s.drop_keyspace("users").error().code() == errc::not_supported);
    CHECK(s.drop_keyspace("").error().code() == errc::invalid_argument);
    auto w = s.write(keel::write_batch{}.put("k", "changed").put(keel::keyspace_name("users"), "k", "v"));
    REQUIRE_FALSE(w);
    CHECK(w.error().code() == errc::not_supported);
    CHECK(s.get("k")->value() == "v");
    // Its snapshot refuses a handle (of a store that has keyspaces).
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store mem(std::move(*m));
    auto ks = mem.keyspace("users");
    REQUIRE(ks);
    CHECK(s.snapshot().get(*ks, "k").error().code() == errc::not_supported);
    REQUIRE(s.close());
    CHECK(s.keyspaces().error().code() == errc::closed);
  }

  TEST_CASE("transactions through any_store span keyspaces: one atomic commit, conflicts per (keyspace, key)") {
    auto run = [](ks_any_store& s) {
      auto users = s.keyspace("users");
      REQUIRE(users);
      REQUIRE(users->put("alice", "1"));
      REQUIRE(s.put("alice", "default"));
      auto tx = s.transaction();
      CHECK(tx.get(*users, "alice")->value() == "1");
      CHECK(*tx.contains(*users, "alice"));
      REQUIRE(tx.put(*users, "bob", "2"));
      REQUIRE(tx.erase(*users, "alice"));
      REQUIRE(tx.put("log", "bob added"));
      CHECK((keys_of(tx.scan(*users)) == std::vector<std::string>{"bob"}));  // its own writes
      CHECK_FALSE(users->get("bob")->has_value());                           // not before commit
      REQUIRE(tx.commit());
      CHECK(users->get("bob")->value() == "2");
      CHECK_FALSE(users->get("alice")->has_value());
      CHECK(s.get("alice")->value() == "default");
      CHECK(s.get("log")->value() == "bob added");

      // A read of users/bob conflicts with a write of users/bob, not with a write of ""/bob.
      auto t1 = s.transaction();
      REQUIRE(t1.get(*users, "bob"));
      REQUIRE(s.put("bob", "default bob"));
      REQUIRE(t1.put(*users, "carol", "3"));
      REQUIRE(t1.commit());
      auto t2 = s.transaction();
      REQUIRE(t2.get(*users, "bob"));
      REQUIRE(users->put("bob", "changed"));
      REQUIRE(t2.put(*users, "dave", "4"));
      auto lost = t2.commit();
      REQUIRE_FALSE(lost);
      CHECK(lost.error().code() == errc::conflict);
      CHECK_FALSE(users->get("dave")->has_value());
      auto t3 = s.transaction();
      CHECK(t3.get(ks_any_store::keyspace_type{}, "k").error().code() == errc::closed);
    };
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store mem(std::move(*m));
    run(mem);
    temp_dir tmp;
    auto r = keel::rocks_store::open({.path = tmp.path() / "db"});
    REQUIRE(r);
    ks_any_store rocks(std::move(*r));
    run(rocks);
    // A handle of the other backend is refused.
    auto users = mem.keyspace("users");
    REQUIRE(users);
    auto tx = rocks.transaction();
    CHECK(tx.put(*users, "k", "v").error().code() == errc::invalid_argument);
    auto c = tx.scan(*users);
    REQUIRE(c.error());
    CHECK(c.error()->code() == errc::invalid_argument);
    // A backend without keyspaces: not_supported.
    auto f = keel::basic_store<flat_memory_policy>::open({});
    REQUIRE(f);
    ks_any_store flat(std::move(*f));
    auto ftx = flat.transaction();
    CHECK(ftx.get(*users, "k").error().code() == errc::not_supported);
    CHECK(ftx.put(*users, "k", "v").error().code() == errc::not_supported);
  }
}

// ---------------------------------------------------------------------------
// Watch through basic_any_store (issue 28): basic_any_watch over the live
// backend's watch; a backend without watch is not_supported, never a watch
// that stays silent.
// ---------------------------------------------------------------------------
namespace {

// The next change of `w`, failing the case when none comes within 10 s.
template <class Watch>
keel::change next_change(Watch& w) {
  auto c = w.next(10s);
  REQUIRE_MESSAGE(c, c.error().message());
  REQUIRE_MESSAGE(*c, "no change within 10 s");
  return std::move(**c);
}
// Whether `w` has nothing now (waits briefly).
template <class Watch>
bool quiet(Watch& w) {
  auto c = w.next(50ms);
  return c && !*c;
}

// Every watch call through an any_store and its keyspace handles, on
// whichever backend `s` holds (one with watch and keyspaces).
void check_any_watch_calls(ks_any_store& s) {
  using keel::change;
  using keel::key_range;
  REQUIRE(s.has_watch());
  const std::uint64_t start = s.last_seq();
  auto w = s.watch(key_range::prefix("k"));  // from now
  REQUIRE_MESSAGE(w, w.error().message());
  CHECK(static_cast<bool>(*w));
  REQUIRE(s.put("k1", "a"));
  REQUIRE(s.put("x", "outside the range"));
  REQUIRE(s.write(keel::write_batch{}.put("k2", "b").erase("k1")));
  REQUIRE(s.erase_range(key_range::prefix("k")));  // removes k2
  const change put1 = next_change(*w);
  CHECK(put1.seq > start);
  CHECK(put1 == change{put1.seq, "", "k1", "a"});
  const change put2 = next_change(*w);
  CHECK(put2.seq > put1.seq);
  CHECK(put2 == change{put2.seq, "", "k2", "b"});
  CHECK(next_change(*w) == change{put2.seq, "", "k1", std::nullopt});  // the batch: one seq
  const change erased = next_change(*w);
  CHECK(erased == change{erased.seq, "", "k2", std::nullopt});
  CHECK(erased.seq > put2.seq);
  CHECK(s.last_seq() == erased.seq);
  CHECK(quiet(*w));

  // Resume after S: everything after it, the x outside the first range too.
  auto r = s.watch(key_range::all(), {.after = put1.seq});
  REQUIRE_MESSAGE(r, r.error().message());
  CHECK(next_change(*r).key == "x");
  CHECK(next_change(*r) == change{put2.seq, "", "k2", "b"});
  CHECK(next_change(*r).key == "k1");
  CHECK(next_change(*r) == erased);
  CHECK(quiet(*r));
  auto beyond = s.watch(key_range::all(), {.after = s.last_seq() + 1});
  REQUIRE_FALSE(beyond);
  CHECK(beyond.error() == errc::invalid_argument);
  CHECK(s.watch(key_range::all(), {.after = std::nullopt, .buffer = 0}).error() == errc::invalid_argument);

  // A keyspace's watch: its changes only, with its name; a drop ends it.
  auto users = s.keyspace("users");
  REQUIRE(users);
  auto kw = users->watch(key_range::prefix("u"));
  REQUIRE_MESSAGE(kw, kw.error().message());
  REQUIRE(s.put("u1", "default keyspace"));
  REQUIRE(users->put("u1", "1"));
  const change u1 = next_change(*kw);
  CHECK(u1 == change{u1.seq, "users", "u1", "1"});
  CHECK(quiet(*kw));
  REQUIRE(s.drop_keyspace("users"));
  auto ended = kw->next(10s);
  REQUIRE_FALSE(ended);
  CHECK(ended.error() == errc::not_found);
  CHECK(kw->next(0ms).error() == errc::not_found);

  // Close: a watch gives closed, and so does a new one.
  REQUIRE(s.close());
  auto after_close = w->next(1s);
  REQUIRE_FALSE(after_close);
  CHECK(after_close.error() == errc::closed);
  CHECK(s.watch().error() == errc::closed);
}

}  // namespace

TEST_SUITE("any_store") {
  TEST_CASE("watch through any_store on memory: ranges, batches, erase_range, resume, keyspaces, drop, close") {
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store s(std::move(*m));
    check_any_watch_calls(s);
  }

  TEST_CASE("watch through any_store on RocksDB: ranges, batches, erase_range, resume, keyspaces, drop, close") {
    temp_dir tmp;
    auto r = keel::rocks_store::open({.path = tmp.path() / "db"});
    REQUIRE(r);
    ks_any_store s(std::move(*r));
    check_any_watch_calls(s);
  }

  TEST_CASE("watch through any_store: the backend's watch inside; an empty watch is closed") {
    auto m = keel::memory_store::open({});
    REQUIRE(m);
    ks_any_store s(std::move(*m));
    auto w = s.watch();
    REQUIRE(w);
    CHECK(w->get_if<keel::MemoryPolicy>() != nullptr);
    const bool not_rocks = w->get_if<keel::RocksPolicy<keel::NativeTuning>>() == nullptr;
    CHECK(not_rocks);
    ks_any_store::watch_type empty;
    CHECK_FALSE(static_cast<bool>(empty));
    CHECK(empty.next(0ms).error() == errc::closed);
    CHECK(ks_any_store::keyspace_type{}.watch().error() == errc::closed);
  }

  TEST_CASE("watch through any_store on a backend without watch: not_supported naming it, last_seq 0") {
    auto f = keel::basic_store<flat_memory_policy>::open({});
    REQUIRE(f);
    ks_any_store s(std::move(*f));
    CHECK_FALSE(s.has_watch());
    REQUIRE(s.put("k", "v"));
    CHECK(s.last_seq() == 0);
    auto w = s.watch();
    REQUIRE_FALSE(w);
    CHECK(w.error() == errc::not_supported);
    CHECK(w.error().message().find("the memory backend has no watch") != std::string::npos);
    REQUIRE(s.close());
    CHECK(s.watch().error() == errc::closed);
  }
}

// ---------------------------------------------------------------------------
// Expiry through basic_any_store (issue 29): put(k, v, put_options) and
// expiry(k) on the store, a keyspace handle and a transaction, forwarded by
// concept; a backend without expiry refuses a ttl (not_supported), never
// writes the key permanent.
// ---------------------------------------------------------------------------
namespace {

// Every expiry call through an any_store, on whichever backend `s` holds
// (one with expiry and keyspaces, reading `clock`).
void check_any_expiry_calls(ks_any_store& s, keel::test::fake_clock& clock) {
  using keel::key_expiry;
  using keel::put_options;
  REQUIRE(s.has_expiry());
  const keel::deadline_ms t0 = clock.now();
  REQUIRE(s.put("a", "1", put_options{.ttl = 10s}));
  REQUIRE(s.put("b", "2", put_options{}));  // no ttl: permanent
  CHECK(*s.expiry("a") == key_expiry{true, t0 + 10000});
  CHECK(*s.expiry("b") == key_expiry{true, std::nullopt});
  CHECK(*s.expiry("never") == key_expiry{false, std::nullopt});
  CHECK(s.put("c", "3", put_options{.ttl = 0ms}).error() == errc::invalid_argument);
  CHECK(s.put("c", "3", put_options{.ttl = -5s}).error() == errc::invalid_argument);
  CHECK_FALSE(s.get("c")->has_value());

  auto users = s.keyspace("users");
  REQUIRE(users);
  REQUIRE(users->put("u", "v", put_options{.ttl = 5s}));
  REQUIRE(users->put("p", "permanent", put_options{}));
  CHECK(*users->expiry("u") == key_expiry{true, t0 + 5000});
  CHECK(*users->expiry("p") == key_expiry{true, std::nullopt});
  CHECK(*s.expiry("u") == key_expiry{false, std::nullopt});  // another keyspace
  CHECK(users->put("bad", "v", put_options{.ttl = 0ms}).error() == errc::invalid_argument);

  auto tx = s.transaction();
  REQUIRE(tx.put("t", "x", put_options{.ttl = 20s}));
  REQUIRE(tx.put(*users, "tu", "y", put_options{.ttl = 30s}));
  REQUIRE(tx.put("tp", "z", put_options{}));
  CHECK(tx.put("bad", "v", put_options{.ttl = 0ms}).error() == errc::invalid_argument);
  REQUIRE(tx.commit());
  CHECK(*s.expiry("t") == key_expiry{true, t0 + 20000});
  CHECK(*users->expiry("tu") == key_expiry{true, t0 + 30000});
  CHECK(*s.expiry("tp") == key_expiry{true, std::nullopt});

  REQUIRE(s.write(keel::write_batch{}.put("w", "1", put_options{.ttl = 1s}).put(*users, "wu", "2", {.ttl = 2s})));
  CHECK(*s.expiry("w") == key_expiry{true, t0 + 1000});
  CHECK(*users->expiry("wu") == key_expiry{true, t0 + 2000});

  clock.advance(10s);  // a, u, w, wu expire; t, tu stay
  CHECK_FALSE(s.get("a")->has_value());
  CHECK(*s.expiry("a") == key_expiry{false, std::nullopt});
  CHECK(*users->expiry("u") == key_expiry{false, std::nullopt});
  CHECK_FALSE(users->get("wu")->has_value());
  CHECK(s.get("b")->value() == "2");
  CHECK(s.get("t")->value() == "x");
  CHECK(users->get("tu")->value() == "y");

  REQUIRE(s.close());
  CHECK(s.expiry("b").error() == errc::closed);
  CHECK(s.put("b", "v", put_options{.ttl = 1s}).error() == errc::closed);
  CHECK(users->expiry("p").error() == errc::closed);
  CHECK(ks_any_store::keyspace_type{}.expiry("k").error() == errc::closed);
  CHECK(ks_any_store::keyspace_type{}.put("k", "v", put_options{.ttl = 1s}).error() == errc::closed);
}

}  // namespace

TEST_SUITE("any_store") {
  TEST_CASE("expiry through any_store on memory: put with options, expiry, keyspaces, transactions, batches") {
    keel::test::fake_clock clock;
    keel::memory_options o;
    o.clock = clock.source();
    auto m = keel::memory_store::open(o);
    REQUIRE(m);
    ks_any_store s(std::move(*m));
    check_any_expiry_calls(s, clock);
  }

  TEST_CASE("expiry through any_store on RocksDB: put with options, expiry, keyspaces, transactions, batches") {
    temp_dir tmp;
    keel::test::fake_clock clock;
    keel::rocks_options o;
    o.path = tmp.path() / "db";
    o.clock = clock.source();
    auto r = keel::rocks_store::open(o);
    REQUIRE(r);
    ks_any_store s(std::move(*r));
    check_any_expiry_calls(s, clock);
  }

  TEST_CASE("expiry through any_store on a backend without it: a ttl is not_supported and writes nothing") {
    using keel::put_options;
    auto f = keel::basic_store<flat_memory_policy>::open({});
    REQUIRE(f);
    ks_any_store s(std::move(*f));
    CHECK_FALSE(s.has_expiry());
    auto refused = s.put("k", "v", put_options{.ttl = 1h});
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == errc::not_supported);
    CHECK(refused.error().message().find("the memory backend has no expiry") != std::string::npos);
    CHECK_FALSE(s.get("k")->has_value());
    CHECK(s.put("k", "v", put_options{.ttl = 0ms}).error() == errc::invalid_argument);  // as on every backend
    REQUIRE(s.put("k", "v", put_options{}));  // no ttl: a plain put
    CHECK(s.get("k")->value() == "v");
    auto e = s.expiry("k");
    REQUIRE_FALSE(e);
    CHECK(e.error() == errc::not_supported);
    CHECK(e.error().message().find("has no expiry") != std::string::npos);
    // A batch with a ttl: refused whole (basic_store::write), through any_store too.
    auto w = s.write(keel::write_batch{}.put("b1", "1").put("b2", "2", {.ttl = 1s}));
    REQUIRE_FALSE(w);
    CHECK(w.error() == errc::not_supported);
    CHECK_FALSE(s.get("b1")->has_value());
    REQUIRE(s.write(keel::write_batch{}.put("b1", "1", put_options{})));
    CHECK(s.get("b1")->value() == "1");
    // A transaction's put with a ttl: refused at once, nothing buffered.
    auto tx = s.transaction();
    CHECK(tx.put("t1", "x", put_options{.ttl = 1s}).error() == errc::not_supported);
    REQUIRE(tx.put("t2", "y", put_options{}));
    REQUIRE(tx.commit());
    CHECK_FALSE(s.get("t1")->has_value());
    CHECK(s.get("t2")->value() == "y");
    REQUIRE(s.close());
    CHECK(s.expiry("k").error() == errc::closed);
    CHECK(s.put("k", "v", put_options{.ttl = 1s}).error() == errc::closed);
  }
}
