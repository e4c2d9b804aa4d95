// keel/memory/snapshot_file.hpp - the snapshot file of a persisted memory
// store that has keyspaces other than "" (issue 27). A store without any is
// saved as a dump (docs/dump-format.md), byte for byte as before keyspaces;
// one with keyspaces in this format, which keeps every keyspace, empty ones
// included. Needs no library.
//
// Format (integers little-endian; docs/keyspaces.md):
//   header   "KEELMKS1" | u32 version (1) | u32 CRC32C of the 12 bytes before
//   blocks   "KSB1" | u32 items | u32 payload size | u32 CRC32C of the payload | payload
//            an item: 1 keyspace: varint size, name  (the entries after it are
//                                                     that keyspace's; the file
//                                                     starts in "")
//                     2 entry:    varint key size, key, varint value size, value
//                     3 entry with a deadline (version 2 only): as 2, then
//                                 u64 deadline (ms since the Unix epoch; expiry)
//   trailer  "KSE1" | u64 keyspaces | u64 entries | u32 CRC32C of the whole file before this field
// Every keyspace but "" has a keyspace item (in name order, each followed by
// its entries in key order); "" comes first, without one. Version 2 is
// written only for a store that holds deadlines (docs/expiry.md): one that
// never used ttl keeps version 1 (or the dump), byte for byte.
//
// Thread safety: a writer or reader is used by one thread. Errors: I/O
// failures as keel::error naming the file; a damaged or cut file is
// errc::corruption naming the file and the offset.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

#include "../detail/encoding.hpp"
#include "../detail/platform_file.hpp"
#include "../error.hpp"

namespace keel::detail {

inline constexpr std::string_view keyspaced_snapshot_magic = "KEELMKS1";
inline constexpr std::uint32_t keyspaced_snapshot_version = 1;
inline constexpr std::uint32_t keyspaced_snapshot_version_deadlines = 2;  // with item 3

// Whether the file at `path` starts with keyspaced_snapshot_magic (false when
// it cannot be read: the dump reader then reports why).
inline bool is_keyspaced_snapshot(const std::filesystem::path& path) {
  file f;
  if (f.open_read(path)) return false;
  char head[8];
  std::size_t got = 0, r = 0;
  while (got < sizeof head && !f.read_some(head + got, sizeof head - got, r) && r > 0) got += r;
  return got == sizeof head && std::string_view(head, sizeof head) == keyspaced_snapshot_magic;
}

// Writes the file through "<path>.tmp-<pid>": finish() syncs it, renames it
// over `path` and syncs the directory (the old content or the new, never a
// mix). Destroyed unfinished: the temporary file is removed.
class keyspaced_snapshot_writer {
 public:
  keyspaced_snapshot_writer() = default;
  keyspaced_snapshot_writer(const keyspaced_snapshot_writer&) = delete;
  keyspaced_snapshot_writer& operator=(const keyspaced_snapshot_writer&) = delete;
  ~keyspaced_snapshot_writer() {
    (void)file_.close();
    if (!temp_.empty()) remove_file(temp_);
  }

  // deadlines: the file may hold entries with a deadline (version 2).
  result<void> open(const std::filesystem::path& path, bool deadlines = false) {
    path_ = path;
    auto temp = path;
    temp += ".tmp-" + std::to_string(current_process_id());
    if (auto e = file_.create(temp)) return os_error(e, "cannot create '" + path_text(temp) + "'");
    temp_ = std::move(temp);
    std::string h(keyspaced_snapshot_magic);
    put_u32(h, deadlines ? keyspaced_snapshot_version_deadlines : keyspaced_snapshot_version);
    put_u32(h, crc32c(h));
    deadlines_ = deadlines;
    return emit(h);
  }
  // The entries added next are keyspace `name`'s (call in name order, after
  // the entries of "").
  result<void> keyspace(std::string_view name) {
    ++keyspaces_;
    return item(1, name, nullptr);
  }
  // `deadline` other than max (the file opened with deadlines): item 3.
  result<void> add(std::string_view key, std::string_view value,
                   std::int64_t deadline = std::numeric_limits<std::int64_t>::max()) {
    ++entries_;
    payload_ += key.size() + value.size();
    if (!deadlines_ || deadline == std::numeric_limits<std::int64_t>::max()) return item(2, key, &value);
    return item(3, key, &value, deadline);
  }
  // Returns the bytes of keys and values written.
  result<std::uint64_t> finish() {
    if (auto r = flush_block(); !r) return r.error();
    std::string t("KSE1");
    put_u64(t, keyspaces_);
    put_u64(t, entries_);
    crc_ = crc32c_extend(crc_, t.data(), t.size());
    put_u32(t, crc_);
    out_ += t;
    if (auto e = file_.write_all(out_.data(), out_.size())) return os_error(e, "cannot write '" + path_text(temp_) + "'");
    if (auto e = file_.sync()) return os_error(e, "cannot fsync '" + path_text(temp_) + "'");
    if (auto e = file_.close()) return os_error(e, "cannot close '" + path_text(temp_) + "'");
    if (auto e = replace_file(temp_, path_))
      return os_error(e, "cannot rename '" + path_text(temp_) + "' to '" + path_text(path_) + "'");
    temp_.clear();
    if (auto r = sync_directory(path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".")); !r)
      return r.error();
    return payload_;
  }

 private:
  result<void> item(char kind, std::string_view a, const std::string_view* b, std::int64_t deadline = 0) {
    block_.push_back(kind);
    put_varint(block_, a.size());
    block_.append(a);
    if (b) {
      put_varint(block_, b->size());
      block_.append(*b);
    }
    if (kind == 3) put_u64(block_, static_cast<std::uint64_t>(deadline));
    ++block_items_;
    if (block_.size() >= 64 * 1024) return flush_block();
    return {};
  }
  result<void> flush_block() {
    if (block_items_ == 0) return {};
    std::string h("KSB1");
    put_u32(h, block_items_);
    put_u32(h, static_cast<std::uint32_t>(block_.size()));
    put_u32(h, crc32c(block_));
    if (auto r = emit(h); !r) return r;
    if (auto r = emit(block_); !r) return r;
    block_.clear();
    block_items_ = 0;
    return {};
  }
  result<void> emit(std::string_view bytes) {
    crc_ = crc32c_extend(crc_, bytes.data(), bytes.size());
    out_.append(bytes);
    if (out_.size() < (1u << 20)) return {};
    if (auto e = file_.write_all(out_.data(), out_.size())) return os_error(e, "cannot write '" + path_text(temp_) + "'");
    out_.clear();
    return {};
  }

  file file_;
  std::filesystem::path path_, temp_;
  std::string block_, out_;
  std::uint32_t block_items_ = 0, crc_ = 0;
  std::uint64_t keyspaces_ = 0, entries_ = 0, payload_ = 0;
  bool deadlines_ = false;
};

// Reads the file one block at a time: next() gives each item in order,
// having checked every checksum up to it; false at the checked end.
class keyspaced_snapshot_reader {
 public:
  struct item {
    bool is_keyspace = false;  // true: `key` is a keyspace name
    std::string_view key, value;
    std::int64_t deadline = std::numeric_limits<std::int64_t>::max();  // item 3: when it expires
  };

  result<void> open(const std::filesystem::path& path) {
    path_ = path;
    if (auto e = file_.open_read(path)) return os_error(e, "cannot open '" + path_text(path) + "'");
    file_size_ = file_.regular_size().value_or(0);
    std::string h;
    if (auto r = read_exact(16, h); !r) return r;
    if (std::string_view(h).substr(0, 8) != keyspaced_snapshot_magic || get_u32(h.data() + 12) != crc32c(h.substr(0, 12)))
      return damaged(0, "bad header");
    version_ = get_u32(h.data() + 8);
    if (version_ != keyspaced_snapshot_version && version_ != keyspaced_snapshot_version_deadlines) {
      return keel::error(errc::not_supported, "'" + path_text(path) + "' has snapshot format version " +
                                                  std::to_string(version_) + "; this keel reads versions 1 and 2");
    }
    return {};
  }

  result<bool> next(item& out) {
    while (pos_ >= block_.size()) {
      if (left_ != 0) return damaged(block_at_, "the block holds fewer items than its header says");
      auto more = read_block();
      if (!more || !*more) return more;
    }
    if (left_ == 0) return damaged(block_at_, "the block holds more items than its header says");
    const std::string_view b(block_);
    const char kind = b[pos_++];
    auto field = [&](std::string_view& f) {
      std::uint64_t n = 0;
      if (!get_varint(b, pos_, n) || n > b.size() - pos_) return false;
      f = b.substr(pos_, static_cast<std::size_t>(n));
      pos_ += static_cast<std::size_t>(n);
      return true;
    };
    out.is_keyspace = kind == 1;
    const bool expiring = kind == 3 && version_ == keyspaced_snapshot_version_deadlines;
    if ((kind != 1 && kind != 2 && !expiring) || !field(out.key) || (kind != 1 && !field(out.value)) ||
        (kind == 1 && (out.key.empty() || out.key.size() > 255)) || (expiring && b.size() - pos_ < 8))
      return damaged(block_at_, "bad item");
    out.deadline = std::numeric_limits<std::int64_t>::max();
    if (expiring) {
      out.deadline = static_cast<std::int64_t>(get_u64(b.data() + pos_));
      pos_ += 8;
    }
    ++(kind == 1 ? keyspaces_ : entries_);
    --left_;
    return true;
  }

 private:
  keel::error damaged(std::uint64_t at, const std::string& what) const {
    return keel::error(errc::corruption, "memory store snapshot '" + path_text(path_) + "' is damaged at byte " +
                                             std::to_string(at) + ": " + what + "; nothing was loaded");
  }
  result<void> read_exact(std::size_t n, std::string& out) {
    out.resize(n);
    for (std::size_t got = 0, r = 0; got < n; got += r) {
      if (auto e = file_.read_some(out.data() + got, n - got, r)) return os_error(e, "cannot read '" + path_text(path_) + "'");
      if (r == 0) return damaged(offset_ + got, "the file ends early (cut short)");
    }
    crc_ = crc32c_extend(crc_, out.data(), n);
    offset_ += n;
    return {};
  }
  result<bool> read_block() {
    std::string h;
    block_at_ = offset_;
    if (auto r = read_exact(4, h); !r) return r.error();
    if (h == "KSE1") {
      std::string t, c;
      if (auto r = read_exact(16, t); !r) return r.error();
      const std::uint32_t expected = crc_;
      if (auto r = read_exact(4, c); !r) return r.error();
      if (get_u32(c.data()) != expected) return damaged(block_at_, "the whole-file checksum does not match");
      if (get_u64(t.data()) != keyspaces_ || get_u64(t.data() + 8) != entries_)
        return damaged(block_at_, "the trailer's counts do not match the file");
      return false;
    }
    if (h != "KSB1") return damaged(block_at_, "expected a block or the end marker");
    if (auto r = read_exact(12, h); !r) return r.error();
    left_ = get_u32(h.data());
    const std::uint32_t size = get_u32(h.data() + 4), crc = get_u32(h.data() + 8);
    if (left_ == 0 || left_ > size) return damaged(block_at_, "bad block header");
    if (file_size_ && (offset_ > file_size_ || size > file_size_ - offset_))
      return damaged(block_at_, "the block goes past the end of the file (cut short)");
    if (auto r = read_exact(size, block_); !r) return r.error();
    if (crc32c(block_) != crc) return damaged(block_at_, "the block checksum does not match");
    pos_ = 0;
    return true;
  }

  file file_;
  std::filesystem::path path_;
  std::string block_;
  std::size_t pos_ = 0;
  std::uint32_t left_ = 0, crc_ = 0, version_ = 0;
  std::uint64_t file_size_ = 0, offset_ = 0, block_at_ = 0, keyspaces_ = 0, entries_ = 0;
};

}  // namespace keel::detail
