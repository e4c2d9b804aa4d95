// keel/memory/log_format.hpp - the bytes of a persisted memory store's
// write-ahead log (memory/log.hpp has the files, appends and replay): the
// file and frame headers' constants, the ops of a frame payload, the encoder
// that builds a frame (log_encoder) and the decoder (decode_log_payload).
// Needs no library. Thread safety: a log_encoder is used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "../detail/encoding.hpp"  // put_u64, get_u64, varints
#include "../key_range.hpp"

namespace keel::detail {

// ---------------------------------------------------------------------------
// Frames. A log file: a 24-byte header ("KEELWAL1", u64 first sequence number,
// u32 version (2; 1 is still read), u32 CRC32C of the 20 bytes before), then
// frames (version 2):
//   u32 magic "KWF2" | u32 payload size | u64 sequence number |
//   u64 synced: the highest sequence number durable (fdatasync'd) before this
//       frame was written |
//   u32 CRC32C of the payload | u32 CRC32C of the 28 header bytes before | payload
// Version 1 frames (written by older keel; read, never written):
//   u32 magic "KWF1" | u32 payload size | u64 sequence number |
//   u32 CRC32C of the payload | u32 CRC32C of the 20 header bytes before | payload
// A payload is one or more ops, each a kind byte and its fields:
//   1 put:          varint key size, key, varint value size, value
//   2 erase:        varint key size, key
//   3 erase_range:  flags (1: has lower, 2: has upper), [varint size, lower], [varint size, upper]
//   4 keyspace: varint size, name: later ops of the frame act on it (a frame starts in "")
//   5 create / 6 drop keyspace: varint size, name (only stores with keyspaces write 4-6)
//   7 put with a deadline: as put, then u64 deadline (ms since the Unix epoch; expiry,
//     docs/expiry.md; only puts with a ttl are written so)
// Integers little-endian. Sequence numbers rise by one per frame, across files.
// ---------------------------------------------------------------------------
inline constexpr std::string_view log_file_magic = "KEELWAL1";
inline constexpr std::uint32_t log_version = 2;  // written; 1 is read too
inline constexpr std::size_t log_file_header_size = 24;
inline constexpr std::uint32_t log_frame_magic = 0x3246574Bu;  // "KWF2"
inline constexpr std::size_t log_frame_header_size = 32;
inline constexpr std::uint32_t log_frame_magic_v1 = 0x3146574Bu;  // "KWF1"
inline constexpr std::size_t log_frame_header_size_v1 = 24;

inline void store_u32(char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
inline void store_u64(char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

struct log_op {
  // keyspace_select sets `keyspace` of the ops after it (never passed on).
  enum kind_t : std::uint8_t {
    put = 1, erase = 2, erase_range = 3, keyspace_select = 4, create_keyspace = 5, drop_keyspace = 6,
    put_expiring = 7  // a put with a deadline (expiry): key, value, then the deadline (u64 LE, ms since the epoch)
  };
  kind_t kind;  // put_expiring is passed on as put, with `deadline` set
  std::string_view key;    // put, erase; erase_range: the lower bound (if has_lower); create/drop: the name
  std::string_view value;  // put; erase_range: the upper bound (if has_upper)
  bool has_lower = false, has_upper = false;
  std::string_view keyspace;  // put, erase, erase_range: the keyspace ("" unless the frame selected one)
  std::int64_t deadline = std::numeric_limits<std::int64_t>::max();  // put: when it expires (max: never)
};

// Builds one frame: room for the header, then the payload (so that
// memory_log::append() writes it without another copy).
class log_encoder {
 public:
  log_encoder() { clear(); }
  // `deadline` (expiry) other than max: logged as put_expiring (a store
  // that never used ttl logs only plain puts, as before expiry).
  void put(std::string_view key, std::string_view value,
           std::int64_t deadline = std::numeric_limits<std::int64_t>::max()) {
    const bool expires = deadline != std::numeric_limits<std::int64_t>::max();
    out_.push_back(static_cast<char>(expires ? log_op::put_expiring : log_op::put));
    put_varint(out_, key.size());
    out_.append(key);
    put_varint(out_, value.size());
    out_.append(value);
    if (expires) put_u64(out_, static_cast<std::uint64_t>(deadline));
  }
  void erase(std::string_view key) {
    out_.push_back(static_cast<char>(log_op::erase));
    put_varint(out_, key.size());
    out_.append(key);
  }
  void erase_range(const key_range& r) {
    out_.push_back(static_cast<char>(log_op::erase_range));
    out_.push_back(static_cast<char>((r.lower() ? 1 : 0) | (r.upper() ? 2 : 0)));
    for (const auto* b : {&r.lower(), &r.upper()}) {
      if (!*b) continue;
      put_varint(out_, (*b)->size());
      out_.append(**b);
    }
  }
  // The ops after this act on keyspace `name` (written only when it differs
  // from the frame's current one, which starts as "": a frame of default
  // keyspace ops holds no keyspace op).
  void select_keyspace(std::string_view name) {
    if (name == keyspace_) return;
    named(log_op::keyspace_select, name);
    keyspace_.assign(name);
  }
  void create_keyspace(std::string_view name) { named(log_op::create_keyspace, name); }
  void drop_keyspace(std::string_view name) { named(log_op::drop_keyspace, name); }
  std::string_view payload() const noexcept { return std::string_view(out_).substr(log_frame_header_size); }
  bool empty() const noexcept { return out_.size() == log_frame_header_size; }
  void clear() {
    out_.assign(log_frame_header_size, '\0');
    keyspace_.clear();
  }

 private:
  friend class memory_log;
  void named(log_op::kind_t kind, std::string_view name) {
    out_.push_back(static_cast<char>(kind));
    put_varint(out_, name.size());
    out_.append(name);
  }
  std::string out_;
  std::string keyspace_;  // the keyspace the frame's next op acts on
};

// Calls fn(const log_op&) for each op of a payload; false if it is malformed.
template <class Fn>
bool decode_log_payload(std::string_view p, Fn&& fn) {
  std::size_t pos = 0;
  auto field = [&](std::string_view& out) {
    std::uint64_t n = 0;
    if (!get_varint(p, pos, n) || n > p.size() - pos) return false;
    out = p.substr(pos, static_cast<std::size_t>(n));
    pos += static_cast<std::size_t>(n);
    return true;
  };
  if (p.empty()) return false;
  std::string_view keyspace;  // each frame starts in ""
  while (pos < p.size()) {
    log_op op{};
    op.keyspace = keyspace;
    const auto kind = static_cast<unsigned char>(p[pos++]);
    if (kind == log_op::keyspace_select) {
      if (!field(keyspace) || keyspace.size() > 255) return false;
      continue;
    }
    if (kind == log_op::create_keyspace || kind == log_op::drop_keyspace) {
      op.kind = static_cast<log_op::kind_t>(kind);
      if (!field(op.key) || op.key.empty() || op.key.size() > 255) return false;
    } else if (kind == log_op::put || kind == log_op::put_expiring) {
      op.kind = log_op::put;
      if (!field(op.key) || !field(op.value)) return false;
      if (kind == log_op::put_expiring) {
        if (p.size() - pos < 8) return false;
        op.deadline = static_cast<std::int64_t>(get_u64(p.data() + pos));
        pos += 8;
      }
    } else if (kind == log_op::erase) {
      op.kind = log_op::erase;
      if (!field(op.key)) return false;
    } else if (kind == log_op::erase_range) {
      op.kind = log_op::erase_range;
      if (pos >= p.size()) return false;
      const auto flags = static_cast<unsigned char>(p[pos++]);
      if (flags > 3) return false;
      op.has_lower = flags & 1;
      op.has_upper = flags & 2;
      if (op.has_lower && !field(op.key)) return false;
      if (op.has_upper && !field(op.value)) return false;
    } else {
      return false;
    }
    fn(op);
  }
  return true;
}

}  // namespace keel::detail
