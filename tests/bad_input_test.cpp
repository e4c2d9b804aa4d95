// Bad input: very long keys (1 MiB) and values (64 MiB), invalid UTF-8
// (bytes are bytes), unusable paths. Each gives a result or a clear error;
// nothing crashes.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <string>
#include <vector>

#include "support/backends.hpp"

namespace fs = std::filesystem;
using namespace std::string_literals;
using keel::errc;
using keel::key_range;
using keel::write_batch;
using keel::test::collect;
using keel::test::keys_of;
using keel::test::open_or_fail;

namespace {

// A backend without expiry, for the case below only (every shipped backend
// is gaining it): the memory backend's store_policy members and nothing
// else (no put with put_options, no expiry()).
class no_expiry_policy {
 public:
  using options = keel::memory_options;
  using cursor_type = keel::MemoryPolicy::cursor_type;
  using snapshot_type = keel::MemoryPolicy::snapshot_type;
  using view = std::span<const std::string_view>;
  static constexpr keel::backend backend_kind = keel::backend::memory;
  explicit no_expiry_policy(std::shared_ptr<keel::MemoryPolicy> m) : m_(std::move(m)) {}
  static keel::result<std::shared_ptr<no_expiry_policy>> open(const options& o) {
    auto m = keel::MemoryPolicy::open(o);
    if (!m) return m.error();
    return std::make_shared<no_expiry_policy>(std::move(*m));
  }
  keel::result<void> put(std::string_view k, std::string_view v) { return m_->put(k, v); }
  keel::result<std::optional<std::string>> get(std::string_view k) const { return m_->get(k); }
  keel::result<bool> contains(std::string_view k) const { return m_->contains(k); }
  keel::result<void> erase(std::string_view k) { return m_->erase(k); }
  keel::result<void> write(const write_batch& b) { return m_->write(b); }
  cursor_type scan(const key_range& r) const { return m_->scan(r); }
  static cursor_type failed_cursor(keel::error e) { return keel::MemoryPolicy::failed_cursor(std::move(e)); }
  keel::result<snapshot_type> snapshot() const { return m_->snapshot(); }
  keel::result<void> close() { return m_->close(); }
  bool is_open() const noexcept { return m_->is_open(); }
  keel::result<void> erase_range(const key_range& r) { return m_->erase_range(r); }
  keel::result<std::vector<std::optional<std::string>>> multi_get(view keys) const { return m_->multi_get(keys); }
  keel::result<void> compact(const key_range& r) { return m_->compact(r); }
  keel::result<void> checkpoint(const fs::path& p) const { return m_->checkpoint(p); }
  keel::result<keel::tx_start<snapshot_type>> begin_transaction() const { return m_->begin_transaction(); }
  keel::result<void> commit_transaction(const keel::tx_record& tx) { return m_->commit_transaction(tx); }

 private:
  std::shared_ptr<keel::MemoryPolicy> m_;
};

}  // namespace

TEST_SUITE("bad input") {
  TEST_CASE_TEMPLATE("a 1 MiB key and a 64 MiB value", B, keel::test::memory_backend,
                     keel::test::rocks_default_backend) {
    B backend;
    std::string big_key(1 << 20, 'k');
    big_key[0] = '\0';
    big_key.back() = '\xff';
    std::string big_value(64 << 20, '\0');
    for (std::size_t i = 0; i < big_value.size(); i += 4096) big_value[i] = static_cast<char>(i / 4096);
    {
      auto store = open_or_fail(backend);
      REQUIRE(store.put(big_key, "small"));
      REQUIRE(store.put("big", big_value));
      CHECK(store.get(big_key)->value() == "small");
      CHECK(*store.contains(big_key));
      auto got = store.get("big");
      REQUIRE(got);
      REQUIRE(got->has_value());
      CHECK((**got == big_value));
      // Scans carry them whole.
      auto entries = collect(store.scan(key_range::prefix(big_key.substr(0, 1000))));
      REQUIRE(entries.size() == 1);
      CHECK((entries[0].first == big_key));
      auto rev = collect(store.scan(key_range::between("b", "c").reversed()));
      REQUIRE(rev.size() == 1);
      CHECK(rev[0].second.size() == big_value.size());
      // In a batch too.
      write_batch b;
      b.put(big_key + "2", big_value).erase(big_key);
      REQUIRE(store.write(b));
      CHECK_FALSE(*store.contains(big_key));
      CHECK(store.get(big_key + "2")->value().size() == big_value.size());
      REQUIRE(store.close());
    }
    if constexpr (B::persistent) {
      auto store = open_or_fail(backend);  // survives a reopen (WAL replay of 64 MiB records)
      auto got = store.get("big");
      REQUIRE(got);
      REQUIRE(got->has_value());
      CHECK((**got == big_value));
      CHECK(store.get(big_key + "2")->value().size() == big_value.size());
    }
  }

  TEST_CASE_TEMPLATE("invalid UTF-8 is just bytes", B, keel::test::memory_backend, keel::test::rocks_default_backend,
                     keel::test::any_memory_backend, keel::test::any_rocks_backend) {
    B backend;
    auto store = open_or_fail(backend);
    const std::vector<std::string> bad = {
        "\xc3\x28"s,              // bad continuation
        "\xa0\xa1"s,              // lone continuation bytes
        "\xe2\x28\xa1"s,          // truncated 3-byte sequence
        "\xed\xa0\x80"s,          // UTF-16 surrogate
        "\xf8\xa1\xa1\xa1\xa1"s,  // 5-byte form
        "\xc0\xaf"s,              // overlong '/'
        "\xef\xbb\xbf"s,          // a BOM on its own
        "\xf4\x90\x80\x80"s,      // beyond U+10FFFF
        "\xfe\xff\x00\x41"s,      // UTF-16 BOM and NUL
    };
    for (const auto& k : bad) REQUIRE(store.put(k, k + "\xff"s));
    for (const auto& k : bad) CHECK(store.get(k)->value() == k + "\xff"s);
    std::vector<std::string> sorted = bad;
    std::sort(sorted.begin(), sorted.end());  // std::string compares as unsigned char: memcmp order
    CHECK(keys_of(store.scan()) == sorted);
    CHECK(keys_of(store.scan(key_range::prefix("\xed"s))) == std::vector<std::string>{"\xed\xa0\x80"s});
  }

  TEST_CASE("unusable paths give a clear error") {
    keel::test::temp_dir tmp;
    auto open_at = [](const fs::path& p) {
      keel::rocks_options o;
      o.path = p;
      return keel::rocks_store::open(o);
    };
    struct bad_path {
      const char* what;
      fs::path path;
      std::vector<errc> allowed;
    };
    const std::string long_name(NAME_MAX + 1, 'n');
    std::string long_path = tmp.path().string();
    while (long_path.size() <= PATH_MAX) long_path += "/" + std::string(200, 'p');
    const std::vector<bad_path> cases = {
        {"a NUL byte inside the path", fs::path(tmp.path().string() + "/a\0b"s), {errc::invalid_argument}},
        {"under /proc", "/proc/keel-test-db", {errc::permission_denied, errc::io_error, errc::not_found}},
        {"under /proc/self", "/proc/self/keel-test-db", {errc::permission_denied, errc::io_error}},
        {"under /dev/null", "/dev/null/db", {errc::invalid_argument}},
        {"a component longer than NAME_MAX", tmp.path() / long_name, {errc::invalid_argument, errc::io_error}},
        {"longer than PATH_MAX", fs::path(long_path), {errc::invalid_argument, errc::io_error}},
    };
    for (const auto& c : cases) {
      const std::string what = c.what;
      CAPTURE(what);
      auto s = open_at(c.path);
      REQUIRE_FALSE(s);
      bool allowed = false;
      for (errc e : c.allowed) allowed = allowed || s.error().code() == e;
      CHECK_MESSAGE(allowed, keel::to_string(s.error().code()) << ": " << s.error().message());
      CHECK_FALSE(s.error().message().empty());
    }
    // The NUL case must not have touched the path before the NUL.
    CHECK_FALSE(fs::exists(tmp.path() / "a"));
  }

  // The shared checks of expiry.hpp, and the refusal of a backend without
  // expiry: a batch with a ttl is never written as permanent keys.
  TEST_CASE("ttl checks: zero, negative and overflowing deadlines are invalid_argument") {
    using namespace std::chrono;
    const auto now = system_clock::time_point(milliseconds(1'700'000'000'000));
    CHECK(keel::ttl_error(milliseconds(0)).value().code() == errc::invalid_argument);
    CHECK(keel::ttl_error(milliseconds(-5)).value().code() == errc::invalid_argument);
    CHECK_FALSE(keel::ttl_error(milliseconds(1)).has_value());
    auto d = keel::deadline_after(now, seconds(30));
    REQUIRE(d);
    CHECK(*d == 1'700'000'030'000);
    CHECK(keel::deadline_after(now, milliseconds(0)).error().code() == errc::invalid_argument);
    CHECK(keel::deadline_after(now, milliseconds::max()).error().code() == errc::invalid_argument);
    CHECK(keel::read_clock([now] { return now; }) == now);
  }

  TEST_CASE("a backend without expiry refuses a batch with a ttl and writes nothing of it") {
    static_assert(keel::store_policy<no_expiry_policy> && !keel::expiry_policy<no_expiry_policy>);
    auto opened = keel::basic_store<no_expiry_policy>::open(keel::memory_options{});
    REQUIRE(opened);
    auto store = std::move(*opened);
    write_batch batch;
    batch.put("plain", "1").put("short-lived", "2", keel::put_options{.ttl = std::chrono::seconds(30)});
    CHECK(batch.has_ttl());
    auto r = store.write(batch);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == errc::not_supported);
    CHECK_FALSE(store.get("plain")->has_value());
    CHECK_FALSE(store.get("short-lived")->has_value());
    // A put_options without a ttl is a plain put, accepted everywhere.
    write_batch plain;
    plain.put("plain", "1", keel::put_options{});
    CHECK_FALSE(plain.has_ttl());
    CHECK(store.write(plain));
    CHECK(store.get("plain")->value() == "1");
  }
}
