// keel::detail: how keel's keys and bytes are written in etcd's v3 JSON
// gateway (etcd 3.4 or later), for EtcdPolicy (<keel/etcd.hpp>). Private:
// names may change.
//
// - bytes fields (key, value, range_end) are standard base64 with '=' padding:
//   the gateway rejects the URL-safe alphabet and unpadded input (HTTP 400);
// - int64/uint64 fields come back as JSON strings ("7"); member IDs exceed
//   2^53, so they are never read through double;
// - proto3 leaves zero values out of answers: a missing field means 0, false
//   or empty;
// - unknown request fields are silently ignored by etcd ("range-end" for
//   "range_end" turns a range into a point read), so request bodies are built
//   through json_object by the few functions that name fields, each covered
//   by a test (tests/etcd_test.cpp);
// - etcd_keyspace: where a store's keys live under its prefix, per keyspace
//   (the layout is below and in docs/cluster.md).
//
// Everything here is a pure function of its arguments (thread-safe); no
// function throws except on std::bad_alloc.
#pragma once

#include <charconv>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../key_range.hpp"

namespace keel::detail {

// ---------------------------------------------------------------------------
// Standard base64 (RFC 4648 alphabet, always padded): the only encoding the
// gateway accepts for bytes fields.
// ---------------------------------------------------------------------------
inline void base64_append(std::string& out, std::string_view in) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size(), i = 0;
  out.reserve(out.size() + (n + 2) / 3 * 4);
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8) | p[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (n - i == 1) {
    const std::uint32_t v = std::uint32_t(p[i]) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
}

inline std::string base64_encode(std::string_view in) {
  std::string out;
  base64_append(out, in);
  return out;
}

// Decodes standard, padded base64; nullopt on anything else.
inline std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = in[i + j];
      if (c == '=' && last && j >= 2) {
        v[j] = 0;
        ++pad;
      } else {
        if (pad) return std::nullopt;  // data after padding
        v[j] = value(c);
        if (v[j] < 0) return std::nullopt;
      }
    }
    const std::uint32_t bits =
        (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) | (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
    out += static_cast<char>((bits >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((bits >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(bits & 0xFF);
  }
  return out;
}

// An int64/uint64 field of a gateway response: a JSON string ("7"), sometimes
// a number; absent means 0 (proto3 leaves zero values out). Never through
// double: member IDs exceed 2^53.
template <class Int = std::int64_t>
Int json_int(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) {
    const std::string& s = it->template get_ref<const std::string&>();
    Int v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  if (it->is_number_integer()) return it->template get<Int>();
  return 0;
}

// A bytes field (base64) of a gateway response; absent means empty.
inline std::string json_bytes(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return {};
  auto d = base64_decode(it->get_ref<const std::string&>());
  return d ? std::move(*d) : std::string();
}

// ---------------------------------------------------------------------------
// A tiny writer for request bodies: every field is base64 bytes, an integer
// (sent as a string, as etcd's own JSON does) or a bool, so strings are built
// directly. Field names are the proto names (snake_case) the gateway accepts;
// a misspelt name would be silently ignored by etcd, so they are written
// only in the request builders (etcd/paging.hpp, etcd/transactions.hpp,
// etcd/policy.hpp), each covered by a test.
// ---------------------------------------------------------------------------
class json_object {
 public:
  json_object() : s_("{") {}
  json_object& bytes(std::string_view name, std::string_view raw) {
    field(name);
    s_ += '"';
    base64_append(s_, raw);
    s_ += '"';
    return *this;
  }
  json_object& integer(std::string_view name, std::int64_t v) {
    field(name);
    s_ += '"';
    s_ += std::to_string(v);
    s_ += '"';
    return *this;
  }
  json_object& boolean(std::string_view name, bool v) {
    field(name);
    s_ += v ? "true" : "false";
    return *this;
  }
  json_object& text(std::string_view name, std::string_view plain) {  // plain ASCII only (enum names)
    field(name);
    s_ += '"';
    s_ += plain;
    s_ += '"';
    return *this;
  }
  // A field whose value is already JSON (an object or array).
  json_object& raw(std::string_view name, std::string_view json) {
    field(name);
    s_ += json;
    return *this;
  }
  // Closes the object and hands its text over (call once).
  std::string str() {
    s_ += '}';
    return std::move(s_);
  }

 private:
  void field(std::string_view name) {
    if (s_.size() > 1) s_ += ',';
    s_ += '"';
    s_ += name;
    s_ += "\":";
  }
  std::string s_;
};

// The revision in an answer's header (0 when absent).
inline std::int64_t etcd_header_revision(const nlohmann::json& j) {
  auto h = j.find("header");
  return h == j.end() ? 0 : json_int(*h, "revision");
}

// What one member says about itself (/v3/maintenance/status): read by
// EtcdPolicy::status() and by diagnose_cluster (etcd/doctor.hpp). The
// Maintenance messages keep their own proto names (dbSize, raftIndex).
struct etcd_member_status {
  std::uint64_t member_id = 0, leader = 0;  // leader 0: it knows none
  std::int64_t raft_term = 0, raft_index = 0, db_size = 0, db_size_in_use = 0;
  std::optional<std::int64_t> quota;  // dbSizeQuota, when this etcd reports it (3.4 does not)
  std::string version;
  bool learner = false;
  std::vector<std::string> errors;  // e.g. alarms ("memberID:... alarm:NOSPACE")
};

inline etcd_member_status parse_etcd_member_status(const nlohmann::json& st) {
  etcd_member_status s;
  if (auto h = st.find("header"); h != st.end()) s.member_id = json_int<std::uint64_t>(*h, "member_id");
  s.leader = json_int<std::uint64_t>(st, "leader");
  s.raft_term = json_int(st, "raftTerm");
  s.raft_index = json_int(st, "raftIndex");
  s.db_size = json_int(st, "dbSize");
  s.db_size_in_use = json_int(st, "dbSizeInUse");
  if (st.contains("dbSizeQuota")) s.quota = json_int(st, "dbSizeQuota");
  s.version = st.value("version", "");
  s.learner = st.value("isLearner", false);
  if (auto e = st.find("errors"); e != st.end() && e->is_array())
    for (const auto& x : *e)
      if (x.is_string()) s.errors.push_back(x.get<std::string>());
  return s;
}

// ---------------------------------------------------------------------------
// A store's keys in etcd, per keyspace (docs/cluster.md, "Keyspaces"). With
// P the store's prefix (non-empty; EtcdPolicy::open checks) and M eight 0xFF
// bytes (etcd_reserved_marker):
//   P + k                         key k of the default keyspace "", when k
//                                 does not begin with M (as before keyspaces)
//   P + M + 0x00 + r              key M + r of the default keyspace
//   P + M + 0x01 + N              the list entry of keyspace N (1-255 bytes);
//                                 its create_revision is N's generation
//   P + M + 0x02 + len(N) + N + k key k of keyspace N (len: one byte, 1-255)
// Every key that begins with M sorts after every key that does not, so the
// default keyspace is the one etcd range [P, P + M + 0x01) and its key order
// is kept; the etcd key P + M itself is never written. len(N) + N is
// prefix-free (equal lengths, then equal names), so a keyspace's range
// [P + M + 0x02 + len(N) + N, its successor) holds no other keyspace's keys.
// An empty user key is a valid etcd key (P is non-empty). Immutable after
// construction: safe to share between threads.
// ---------------------------------------------------------------------------
inline const std::string& etcd_reserved_marker() {
  static const std::string m(8, '\xff');
  return m;
}

class etcd_keyspace {
 public:
  // The default keyspace of the store with prefix `prefix`.
  explicit etcd_keyspace(std::string prefix)
      : prefix_(std::move(prefix)), base_(prefix_), end_(prefix_ + etcd_reserved_marker() + '\x01'), escapes_(true) {}

  // Keyspace `name` (1-255 bytes) of the same store.
  etcd_keyspace named(std::string_view name) const {
    std::string base = prefix_ + etcd_reserved_marker() + '\x02';
    base += static_cast<char>(static_cast<unsigned char>(name.size()));
    base += name;
    std::string end = key_range::prefix_successor(base).value_or(std::string(1, '\0'));
    return etcd_keyspace(prefix_, std::move(base), std::move(end));
  }
  // The list entry of keyspace `name`, and the etcd range of every entry.
  std::string list_entry(std::string_view name) const {
    std::string k = prefix_ + etcd_reserved_marker() + '\x01';
    k += name;
    return k;
  }
  std::pair<std::string, std::string> list_range() const {
    return {prefix_ + etcd_reserved_marker() + '\x01', prefix_ + etcd_reserved_marker() + '\x02'};
  }

  // The store's prefix.
  const std::string& prefix() const noexcept { return prefix_; }
  // Where this keyspace's etcd keys begin (the prefix, for the default one).
  const std::string& base() const noexcept { return base_; }
  // The etcd range end of the whole keyspace.
  const std::string& prefix_end() const noexcept { return end_; }

  std::string key(std::string_view user_key) const {
    std::string k;
    k.reserve(base_.size() + user_key.size() + 1);
    k += base_;
    if (escapes_ && user_key.starts_with(etcd_reserved_marker())) {
      k += etcd_reserved_marker();
      k += '\0';
      k += user_key.substr(etcd_reserved_marker().size());
    } else {
      k += user_key;
    }
    return k;
  }
  // The user key of an etcd key inside this keyspace.
  std::string user_key(const std::string& etcd_key) const {
    std::string k = etcd_key.substr(base_.size());
    if (escapes_ && k.starts_with(etcd_reserved_marker())) k.erase(etcd_reserved_marker().size(), 1);
    return k;
  }

  // The etcd range [lo, hi) of a user range (direction ignored; hi "\0": to
  // the end of etcd's keys, never for keel's layout); nullopt when the range
  // holds no key.
  std::optional<std::pair<std::string, std::string>> range(const key_range& r) const {
    if (r.is_empty()) return std::nullopt;
    std::string lo = key(r.lower().value_or(std::string()));
    std::string hi = r.upper() ? key(*r.upper()) : end_;
    if (hi != std::string(1, '\0') && lo >= hi) return std::nullopt;
    return std::pair{std::move(lo), std::move(hi)};
  }

 private:
  etcd_keyspace(std::string prefix, std::string base, std::string end)
      : prefix_(std::move(prefix)), base_(std::move(base)), end_(std::move(end)), escapes_(false) {}

  std::string prefix_;
  std::string base_;
  std::string end_;
  bool escapes_;  // the default keyspace: keys beginning with the marker are escaped
};

}  // namespace keel::detail
