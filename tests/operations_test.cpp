// The conformance suite, the operations beyond get/put: erase_range,
// multi_get, compact, checkpoint. Every backend of KEEL_BACKENDS runs every
// case with the same results.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include "support/backends.hpp"

using namespace std::string_literals;
using keel::errc;
using keel::key_range;
using keel::write_batch;
using keel::test::keys_of;
using keel::test::open_or_fail;

namespace {
const std::vector<std::string> binary_keys = {""s,        "\0"s,          "\0\0"s, "a"s,         "a\0"s,
                                              "a\xff"s,   "b"s,           "\x7f"s, "\x80"s,      "\xff"s,
                                              "\xff\0"s,  "\xff\xff"s,    "\xff\xff\0"s, "\xff\xff\xff"s, "\xff\xff\xff\xff"s};

template <class Store>
void fill(Store& store) {
  for (const auto& k : binary_keys) REQUIRE(store.put(k, "v:" + k));
}

// The keys of binary_keys outside r, in order.
std::vector<std::string> keys_outside(const key_range& r) {
  std::vector<std::string> out;
  for (const auto& k : binary_keys)
    if (!r.contains(k)) out.push_back(k);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_SUITE("conformance") {
  TEST_CASE_TEMPLATE("erase_range erases exactly the keys in range, binary keys included", B, KEEL_BACKENDS) {
    const std::vector<key_range> ranges = {
        key_range::prefix("\xff\xff"),           key_range::prefix("a"),
        key_range::between("\0"s, "b"),          key_range::from("\x80"),
        key_range::until("a"),                   key_range::all(),
        key_range::between("a", "a"),            key_range::prefix(""),
        key_range::between("\xff"s, "\xff\xff\0"s).reversed(),
    };
    for (const auto& r : ranges) {
      B backend;
      auto store = open_or_fail(backend);
      fill(store);
      REQUIRE(store.erase_range(r));
      CHECK(keys_of(store.scan()) == keys_outside(r));
    }
  }

  TEST_CASE_TEMPLATE("erase_range: bad and empty ranges", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    fill(store);
    auto bad = store.erase_range(key_range::between("b", "a"));
    REQUIRE_FALSE(bad);
    CHECK(bad.error() == errc::invalid_argument);
    write_batch batch;
    batch.put("new", "1").erase_range(key_range::between("z", "y"));
    CHECK(store.write(batch).error() == errc::invalid_argument);
    CHECK_FALSE(store.get("new")->has_value());  // the whole batch was refused
    REQUIRE(store.erase_range(key_range::between("q", "q")));  // empty: nothing erased
    REQUIRE(store.erase_range(key_range::prefix("nothing-here")));
    CHECK(keys_of(store.scan()).size() == binary_keys.size());
  }

  TEST_CASE_TEMPLATE("a batch mixing puts and range erases applies in order", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (const char* k : {"a", "b", "c", "d"}) REQUIRE(store.put(k, "old"));
    write_batch batch;
    batch.put("e", "put-before")            // erased by the open-ended range below
        .put("zz\xff"s, "largest")          // larger than every stored key: still erased
        .erase_range(key_range::from("c"))
        .put("d", "put-after")              // survives
        .erase_range(key_range::until("b"))  // erases a
        .put("a0", "after-both");
    REQUIRE(store.write(batch));
    CHECK(keys_of(store.scan()) == std::vector<std::string>{"a0", "b", "d"});
    CHECK(store.get("d")->value() == "put-after");
  }

  TEST_CASE_TEMPLATE("erase_range is atomic for readers", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    for (int i = 0; i < 200; ++i) REQUIRE(store.put("r/" + std::to_string(1000 + i), "v"));
    auto before = store.snapshot();
    REQUIRE(store.erase_range(key_range::prefix("r/")));
    CHECK(keys_of(before.scan(key_range::prefix("r/"))).size() == 200);
    CHECK(keys_of(store.scan(key_range::prefix("r/"))).empty());
  }

  TEST_CASE_TEMPLATE("multi_get reads one view, in input order", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    fill(store);
    std::vector<std::string> keys = {"\xff\xff"s, "absent", ""s, "a\0"s, "\xff\xff"s};
    auto got = store.multi_get(keys);
    REQUIRE(got);
    REQUIRE(got->size() == keys.size());
    CHECK((*got)[0] == std::optional<std::string>("v:\xff\xff"s));
    CHECK_FALSE((*got)[1].has_value());
    CHECK((*got)[2] == std::optional<std::string>("v:"s));
    CHECK((*got)[3] == std::optional<std::string>("v:a\0"s));
    CHECK((*got)[4] == (*got)[0]);  // duplicates are answered each time
    auto listed = store.multi_get({"a", "b"});
    REQUIRE(listed);
    CHECK(listed->at(1) == std::optional<std::string>("v:b"));
    auto none = store.multi_get(std::vector<std::string>{});
    REQUIRE(none);
    CHECK(none->empty());
    auto s = store.stats();
    REQUIRE(s);
    CHECK(s->gets == 7);
  }

  TEST_CASE_TEMPLATE("compact keeps every key", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    fill(store);
    for (int i = 0; i < 500; ++i) REQUIRE(store.put("c/" + std::to_string(i), std::string(100, 'x')));
    REQUIRE(store.erase_range(key_range::prefix("c/")));
    REQUIRE(store.compact());
    REQUIRE(store.compact(key_range::prefix("a")));
    CHECK(store.compact(key_range::between("b", "a")).error() == errc::invalid_argument);
    CHECK(keys_of(store.scan()) == keys_outside(key_range::prefix("c/")));
  }

  TEST_CASE_TEMPLATE("checkpoint: a consistent copy that opens as the same backend", B, KEEL_BACKENDS) {
    B backend;
    auto store = open_or_fail(backend);
    fill(store);
    keel::test::temp_dir dir;
    const auto where = dir.path() / "checkpoint";
    if constexpr (!keel::test::supports_checkpoint<B>) {
      auto refused = store.checkpoint(where);
      REQUIRE_FALSE(refused);
      CHECK(refused.error() == errc::not_supported);
      CHECK_FALSE(std::filesystem::exists(where));
    } else {
    REQUIRE(store.checkpoint(where));
    REQUIRE(store.put("after", "not in the checkpoint"));

    // The path exists now: a second checkpoint there is refused, the first is untouched.
    auto again = store.checkpoint(where);
    REQUIRE_FALSE(again);
    CHECK(again.error() == errc::invalid_argument);
    CHECK(store.checkpoint(dir.path() / "no-such-parent" / "cp").error() == errc::invalid_argument);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "no-such-parent"));

    using store_type = typename B::store_type;
    auto open_copy = [&]() -> keel::result<store_type> {
      if constexpr (std::is_same_v<store_type, keel::memory_store>) {
        keel::memory_options o;
        o.persist_path = where;
        return keel::memory_store::open(o);
#if KEEL_HAS_ROCKSDB
      } else if constexpr (std::is_same_v<store_type, keel::any_store>) {
        keel::store_config c;
        c.log = [](std::string_view) {};
        c.path = where;
        c.preferred = store.backend();
        c.memory.persist_path = where;
        return keel::open_store(c);
      } else if constexpr (std::is_same_v<store_type, keel::hybrid_store>) {
        keel::hybrid_options o;
        o.path = where;
        return keel::hybrid_store::open(o);
      } else {
        keel::rocks_options o;
        o.path = where;
        o.create_if_missing = false;
        return store_type::open(o);
#endif
      }
    };
    auto copy = open_copy();
    REQUIRE_MESSAGE(copy, copy.error().message());
    std::vector<std::string> expected = binary_keys;
    std::sort(expected.begin(), expected.end());
    CHECK(keys_of(copy->scan()) == expected);
    CHECK(copy->get("\xff\xff"s)->value() == "v:\xff\xff"s);
    CHECK_FALSE(copy->get("after")->has_value());
    REQUIRE(copy->close());
    }

    REQUIRE(store.close());
    CHECK(store.checkpoint(dir.path() / "late").error() == errc::closed);
    CHECK(store.erase_range(key_range::all()).error() == errc::closed);
    CHECK(store.multi_get({"a"}).error() == errc::closed);
    CHECK(store.compact().error() == errc::closed);
  }
}
