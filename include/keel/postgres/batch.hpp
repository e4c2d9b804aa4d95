// keel::detail::pg: a write_batch reduced to what PostgresPolicy sends, one
// job. Per keyspace, the batch's effect: ranges erased first, then keys
// erased, then keys put (the last op per key wins; a range erase drops the
// earlier ops inside it), which applied in that order give the batch's
// result. Pure functions; nothing here talks to the server.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/keyspace_text.hpp"
#include "../error.hpp"
#include "../expiry.hpp"
#include "../key_range.hpp"
#include "../write_batch.hpp"

namespace keel::detail::pg {

// The largest key or value PostgreSQL stores in a bytea (1 GiB less its
// header). Keys are also limited by the primary key's B-tree to about
// 2.7 KB (the server refuses longer ones: invalid_argument).
inline constexpr std::size_t max_bytea = 0x3fffffff - 4;

inline std::optional<keel::error> too_large(std::string_view key, std::string_view value) {
  if (key.size() <= max_bytea && value.size() <= max_bytea) return std::nullopt;
  return keel::error(errc::invalid_argument, "postgres: a key or value of " +
                                                 std::to_string(std::max(key.size(), value.size())) +
                                                 " bytes exceeds PostgreSQL's bytea limit of 1 GiB; it was not sent");
}

// One keyspace's part of a batch.
struct plan {
  std::vector<key_range> ranges;  // forward, non-empty
  std::vector<std::string> erased;
  std::vector<std::string> put_keys, put_values;
  std::vector<std::int64_t> put_ttls;  // ms per put, 0: permanent (expiry.hpp)
  bool has_ttl = false;                // some put_ttls entry is not 0
  std::size_t statements() const { return ranges.size() + (erased.empty() ? 0 : 1) + (put_keys.empty() ? 0 : 1); }
};

// A whole batch: the default keyspace's plan and one per other keyspace it
// names (sorted by name, each once).
struct batch_plan {
  plan default_keyspace;
  std::vector<std::pair<std::string, plan>> keyspaces;
  bool has_ttl() const { return default_keyspace.has_ttl; }  // a put with a ttl in ""
  bool has_keyspace_ttl() const {                            // ... in another keyspace (T_ks)
    return std::any_of(keyspaces.begin(), keyspaces.end(), [](const auto& k) { return k.second.has_ttl; });
  }
  std::size_t statements() const {
    std::size_t n = default_keyspace.statements();
    for (const auto& [name, p] : keyspaces) n += p.statements();
    return n;
  }
};

// invalid_argument for a key or value over bytea's limit, a range whose
// lower bound is above its upper bound, a keyspace name over 255 bytes, or a
// ttl of zero or less (write_batch keeps those as negative).
inline result<batch_plan> compile(const write_batch& batch) {
  struct put_op {
    std::string value;
    std::int64_t ttl_ms = 0;
  };
  struct builder {
    std::map<std::string, std::optional<put_op>, std::less<>> last;
    plan p;
  };
  std::map<std::string, builder, std::less<>> by_keyspace;
  auto it = by_keyspace.end();  // the previous op's keyspace: runs of one keyspace look up nothing
  for (const auto& op : batch) {
    if (it == by_keyspace.end() || it->first != op.keyspace) {
      it = by_keyspace.find(op.keyspace);
      if (it == by_keyspace.end()) {
        if (auto bad = keyspace_name_error(op.keyspace)) return *bad;
        it = by_keyspace.emplace(std::string(op.keyspace), builder{}).first;
      }
    }
    auto& last = it->second.last;
    switch (op.kind) {
      case write_batch::op_kind::put:
        if (auto bad = too_large(op.key, op.value)) return *bad;
        if (op.ttl.count() < 0) return *ttl_error(op.ttl);
        last.insert_or_assign(std::string(op.key), std::optional<put_op>(put_op{std::string(op.value), op.ttl.count()}));
        break;
      case write_batch::op_kind::erase:
        last.insert_or_assign(std::string(op.key), std::nullopt);
        break;
      case write_batch::op_kind::erase_range: {
        key_range r = op.range();
        if (!erase_range_is_valid(r))
          return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
        if (r.is_reversed()) r = r.reversed();
        if (r.is_empty()) break;
        auto first = r.lower() ? last.lower_bound(*r.lower()) : last.begin();
        auto end = r.upper() ? last.lower_bound(*r.upper()) : last.end();
        last.erase(first, end);
        it->second.p.ranges.push_back(std::move(r));
        break;
      }
    }
  }
  batch_plan out;
  for (auto& [name, b] : by_keyspace) {
    for (auto& [k, v] : b.last) {
      if (v) {
        b.p.put_keys.push_back(k);
        b.p.put_values.push_back(std::move(v->value));
        b.p.put_ttls.push_back(v->ttl_ms);
        b.p.has_ttl = b.p.has_ttl || v->ttl_ms != 0;
      } else {
        b.p.erased.push_back(k);
      }
    }
    if (name.empty())
      out.default_keyspace = std::move(b.p);
    else
      out.keyspaces.emplace_back(name, std::move(b.p));
  }
  return out;
}

}  // namespace keel::detail::pg
