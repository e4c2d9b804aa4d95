// keel: the dump format (docs/dump-format.md): export a store to a file,
// verify a file, import it into a store. Needs no RocksDB headers; the
// RocksDB fast path (SstFileWriter + IngestExternalFile) is in
// <keel/dump_rocksdb.hpp>.
//
//   auto info = keel::export_dump(store, "backup.keeldump");
//   auto back = keel::import_dump(other, "backup.keeldump");
//
// Streaming: export and import hold one block (~64 KiB, or one record when a
// record is larger) in memory, whatever the size of the store.
// Checksums: every block carries a CRC32C of its payload and the trailer a
// CRC32C of the whole file before it, plus the record count. import_dump()
// reads the file twice: a first pass verifies everything (a truncated or
// damaged file is refused before anything is written), a second pass writes.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/encoding.hpp"
#include "detail/keyspace_text.hpp"
#include "detail/platform_file.hpp"
#include "detail/store_walk.hpp"
#include "expiry.hpp"
#include "error.hpp"
#include "key_range.hpp"
#include "write_batch.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// Format constants (docs/dump-format.md).
// ---------------------------------------------------------------------------
inline constexpr std::string_view dump_magic = "KEELDUMP";  // file header, 8 bytes
inline constexpr std::uint32_t dump_version = 3;            // the newest version this keel reads
inline constexpr std::uint32_t dump_version_flat = 1;       // no keyspace table: every record in ""
inline constexpr std::uint32_t dump_version_keyspaces = 2;  // a keyspace table, a keyspace per record
inline constexpr std::uint32_t dump_version_deadlines = 3;  // version 2 + a deadline per record that has one
inline constexpr std::string_view dump_block_tag = "BLK1";  // 4 bytes
inline constexpr std::string_view dump_keyspaces_tag = "KSP2";  // version 2: the keyspace table, 4 bytes
inline constexpr std::string_view dump_end_tag = "END1";    // 4 bytes
inline constexpr std::size_t dump_header_size = 16;         // magic, version, crc
inline constexpr std::size_t dump_block_header_size = 16;   // tag, count, size, crc
inline constexpr std::size_t dump_trailer_size = 28;        // tag, count, bytes, flags, crc
inline constexpr std::uint32_t dump_flag_sorted = 1;        // keys strictly ascending (bytewise) per
                                                            // keyspace, keyspaces in table order
inline constexpr std::size_t dump_block_target = 64 * 1024;

// What a dump holds, from its trailer.
struct dump_info {
  std::uint32_t version = dump_version_flat;
  std::uint64_t records = 0;        // key-value pairs
  std::uint64_t payload_bytes = 0;  // sum of key and value sizes
  std::uint64_t file_bytes = 0;     // size of the dump file
  bool sorted = true;               // keys strictly ascending: ingestible as SST files
  // The keyspaces the dump declares, sorted ({""} for a version-1 dump).
  std::vector<std::string> keyspaces{std::string()};
  std::uint64_t deadlines = 0;  // records that carry a deadline (version 3)
  // import_dump(): records whose deadline had passed by the destination's
  // clock, skipped (not written; not counted in `records`' writes).
  std::uint64_t expired_skipped = 0;
};

// Progress of a long operation; total_* are 0 when unknown.
struct progress_info {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;  // payload bytes (export, copy) or file bytes (import)
  std::uint64_t total_records = 0;
  std::uint64_t total_bytes = 0;
};
using progress_fn = std::function<void(const progress_info&)>;

// ---------------------------------------------------------------------------
// dump_writer: writes a dump to a file descriptor or (atomically) a path.
// ---------------------------------------------------------------------------
class dump_writer {
 public:
  dump_writer() = default;
  dump_writer(const dump_writer&) = delete;
  dump_writer& operator=(const dump_writer&) = delete;
  ~dump_writer() { abandon(); }

  // Writes to `path` through a temporary file "<path>.tmp-<pid>" in the same
  // directory; finish() fsyncs it, renames it over `path` and fsyncs the
  // directory, so `path` holds the old content or the new, never a mix
  // (Windows: FlushFileBuffers and MoveFileExW, detail/platform_file.hpp).
  result<void> open(const std::filesystem::path& path) {
    path_ = path;
    temp_ = path;
    temp_ += ".tmp-" + std::to_string(detail::current_process_id());
    if (auto e = file_.create(temp_)) {
      auto err = detail::os_error(e, "cannot create '" + detail::path_text(temp_) + "'");
      temp_.clear();  // nothing for abandon() to remove
      return err;
    }
    owns_fd_ = true;
    return {};
  }
  // Writes to an open C runtime descriptor (e.g. 1 for stdout), which stays open.
  result<void> open_fd(int fd, std::string name = "<stdout>") {
    if (auto e = file_.borrow_fd(fd)) return detail::os_error(e, "cannot write to " + name);
    owns_fd_ = false;
    path_ = name;
    return {};
  }

  // Declares the keyspaces the dump will hold (0-255 bytes each; sorted and
  // deduplicated here), after open() and before the first record. Names
  // other than "": a version-2 dump, whose records each carry their
  // keyspace; not called, or only "": a version-1 dump (what keel wrote
  // before keyspaces, readable by older keel). A name over 255 bytes, or a
  // call after a record: errc::invalid_argument.
  result<void> set_keyspaces(std::vector<std::string> names) {
    if (!file_.is_open()) return keel::error(errc::closed, "dump writer is not open");
    if (started_) return keel::error(errc::invalid_argument, "dump: set_keyspaces() comes before the first record");
    for (const auto& n : names) {
      if (n.size() > 255) return keel::error(errc::invalid_argument, "dump: a keyspace name is at most 255 bytes");
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    if (names.empty() || (names.size() == 1 && names[0].empty())) {
      keyspaces_.assign(1, std::string());
      version_ = dump_version_flat;
    } else {
      keyspaces_ = std::move(names);
      version_ = dump_version_keyspaces;
    }
    return {};
  }

  // Declares that records may carry deadlines (add() with a deadline): the
  // dump is then version 3, which keel before expiry refuses as a newer
  // version instead of importing the keys permanent. After open() and
  // before the first record; not called: version 1 or 2, as before expiry.
  result<void> allow_deadlines() {
    if (!file_.is_open()) return keel::error(errc::closed, "dump writer is not open");
    if (started_) return keel::error(errc::invalid_argument, "dump: allow_deadlines() comes before the first record");
    deadlines_allowed_ = true;
    return {};
  }

  // Appends one record, in keyspace "". Keys need not be sorted (the trailer
  // says whether they were).
  result<void> add(std::string_view key, std::string_view value) { return add(keyspace_name(""), key, value); }
  // With the key's deadline (ms since the Unix epoch; nullopt: permanent):
  // one without allow_deadlines() first is errc::invalid_argument.
  // Appends one record in keyspace `ks`, which set_keyspaces() declared
  // ("" needs no declaration in a version-1 dump); else errc::invalid_argument.
  // Sorted means: keyspaces in table order, keys strictly ascending in each.
  result<void> add(keyspace_name ks, std::string_view key, std::string_view value,
                   std::optional<deadline_ms> deadline = std::nullopt) {
    if (!file_.is_open()) return keel::error(errc::closed, "dump writer is not open");
    if (deadline && !deadlines_allowed_) {
      return keel::error(errc::invalid_argument, "dump: a record with a deadline needs allow_deadlines() first");
    }
    if (key.size() + value.size() + 40 > 0xFFFFFFFFull - dump_block_header_size) {
      return keel::error(errc::invalid_argument, "dump: a record larger than 4 GiB cannot be written");
    }
    if (ks.name != keyspaces_[index_]) {
      auto it = std::lower_bound(keyspaces_.begin(), keyspaces_.end(), ks.name);
      if (it == keyspaces_.end() || *it != ks.name) {
        return keel::error(errc::invalid_argument,
                           "dump: a record in keyspace '" + std::string(ks.name) +
                               "', which set_keyspaces() did not declare");
      }
      index_ = static_cast<std::size_t>(it - keyspaces_.begin());
    }
    if (auto r = start(); !r) return r;
    if (records_ > 0 && (index_ < last_index_ || (index_ == last_index_ && !(std::string_view(last_key_) < key)))) {
      sorted_ = false;
    }
    if (sorted_) last_key_.assign(key);
    last_index_ = index_;
    if (!block_.empty() && block_.size() + key.size() + value.size() + 40 > dump_block_target) {
      if (auto r = flush_block(); !r) return r;
    }
    if (version_ == dump_version_deadlines) {  // keyspace index * 2 + 1 when a deadline (8 bytes) follows
      detail::put_varint(block_, index_ * 2 + (deadline ? 1 : 0));
      if (deadline) {
        detail::put_u64(block_, static_cast<std::uint64_t>(*deadline));
        ++deadlines_;
      }
    } else if (version_ != dump_version_flat) {
      detail::put_varint(block_, index_);
    }
    detail::put_varint(block_, key.size());
    block_.append(key);
    detail::put_varint(block_, value.size());
    block_.append(value);
    ++block_records_;
    ++records_;
    payload_ += key.size() + value.size();
    return {};
  }

  // Writes the trailer; for a path: fsync, rename, fsync of the directory.
  result<dump_info> finish() {
    if (!file_.is_open()) return keel::error(errc::closed, "dump writer is not open");
    if (auto r = start(); !r) return r.error();
    if (auto r = flush_block(); !r) return r.error();
    std::string t(dump_end_tag);
    detail::put_u64(t, records_);
    detail::put_u64(t, payload_);
    detail::put_u32(t, sorted_ ? dump_flag_sorted : 0);
    crc_ = detail::crc32c_extend(crc_, t.data(), t.size());
    detail::put_u32(t, crc_);
    if (auto r = emit(t); !r) return r.error();
    if (auto r = drain(); !r) return r.error();
    dump_info info;
    info.version = version_;
    info.keyspaces = keyspaces_;
    info.records = records_;
    info.payload_bytes = payload_;
    info.file_bytes = written_;
    info.sorted = sorted_;
    info.deadlines = deadlines_;
    if (owns_fd_) {
      if (auto e = file_.sync()) return fail_io(e, "cannot fsync '" + detail::path_text(temp_) + "'");
      if (auto e = file_.close()) return fail_io(e, "cannot close '" + detail::path_text(temp_) + "'");
      if (auto e = detail::replace_file(temp_, path_)) {
        return fail_io(e, "cannot rename '" + detail::path_text(temp_) + "' to '" + detail::path_text(path_) + "'");
      }
      temp_.clear();
      if (auto r = detail::sync_directory(path_.parent_path()); !r) return r.error();
    }
    (void)file_.close();
    return info;
  }

  // Drops an unfinished dump (removes the temporary file). finish() or
  // the destructor call it.
  void abandon() noexcept {
    (void)file_.close();
    if (!temp_.empty()) detail::remove_file(temp_);
    temp_.clear();
  }

  std::uint64_t records() const noexcept { return records_; }
  std::uint64_t payload_bytes() const noexcept { return payload_; }

 private:
  // Writes the header (and a version-2 dump's keyspace table) once.
  result<void> start() {
    if (started_) return {};
    started_ = true;
    if (deadlines_allowed_) version_ = dump_version_deadlines;
    std::string h(dump_magic);
    detail::put_u32(h, version_);
    detail::put_u32(h, detail::crc32c(h));
    if (version_ != dump_version_flat) {
      std::string table;
      for (const auto& n : keyspaces_) {
        detail::put_varint(table, n.size());
        table.append(n);
      }
      h.append(dump_keyspaces_tag);
      detail::put_u32(h, static_cast<std::uint32_t>(keyspaces_.size()));
      detail::put_u32(h, static_cast<std::uint32_t>(table.size()));
      detail::put_u32(h, detail::crc32c(table));
      h.append(table);
    }
    return emit(h);
  }
  result<void> flush_block() {
    if (block_records_ == 0) return {};
    std::string h(dump_block_tag);
    detail::put_u32(h, block_records_);
    detail::put_u32(h, static_cast<std::uint32_t>(block_.size()));
    detail::put_u32(h, detail::crc32c(block_));
    if (auto r = emit(h); !r) return r;
    if (auto r = emit(block_); !r) return r;
    block_.clear();
    block_records_ = 0;
    return {};
  }
  result<void> emit(std::string_view bytes) {
    crc_ = detail::crc32c_extend(crc_, bytes.data(), bytes.size());
    out_.append(bytes);
    written_ += bytes.size();
    if (out_.size() >= (1u << 20)) return drain();
    return {};
  }
  result<void> drain() {
    if (auto e = file_.write_all(out_.data(), out_.size())) {
      return detail::os_error(e, "cannot write dump '" + detail::path_text(path_) + "'");
    }
    out_.clear();
    return {};
  }
  keel::error fail_io(detail::sys_error e, const std::string& what) {
    abandon();
    return detail::os_error(e, what);
  }

  detail::file file_;
  bool owns_fd_ = false;
  std::filesystem::path path_, temp_;
  std::string block_, out_, last_key_;
  std::uint32_t block_records_ = 0;
  std::uint64_t records_ = 0, payload_ = 0, written_ = 0;
  std::uint32_t crc_ = 0;
  bool sorted_ = true;
  bool started_ = false;  // the header is written
  std::uint32_t version_ = dump_version_flat;
  bool deadlines_allowed_ = false;  // allow_deadlines(): version 3
  std::uint64_t deadlines_ = 0;     // records written with a deadline
  std::vector<std::string> keyspaces_{std::string()};  // sorted; a record names its index
  std::size_t index_ = 0, last_index_ = 0;             // of the current and the previous record
};

// ---------------------------------------------------------------------------
// dump_reader: reads and checks a dump, one block at a time.
//
//   dump_reader r;
//   if (auto o = r.open(path); !o) ...;
//   while (true) { auto rec = r.next(); if (!rec) error; if (!*rec) break; use(r.key(), r.value()); }
//   // after the last record next() has checked the trailer: r.info() is final.
//
// Every check failure is errc::corruption (damaged, truncated) or
// errc::invalid_argument (not a dump) or errc::not_supported (newer version),
// with the file name, the offset and what is wrong.
// ---------------------------------------------------------------------------
class dump_reader {
 public:
  dump_reader() = default;
  dump_reader(const dump_reader&) = delete;
  dump_reader& operator=(const dump_reader&) = delete;
  ~dump_reader() = default;

  // `source_name`: what messages call the file ("standard input" for a copy
  // of stdin); empty: its path, quoted.
  result<void> open(const std::filesystem::path& path, std::string_view source_name = {}) {
    path_ = path;
    name_ = source_name.empty() ? "'" + detail::path_text(path) + "'" : std::string(source_name);
    dump_name_ = source_name.empty() ? "dump " + name_ : "the dump on " + name_;
    if (auto e = file_.open_read(path)) return detail::os_error(e, "cannot open " + dump_name_);
    file_size_ = file_.regular_size().value_or(0);
    std::string h;
    if (auto r = read_exact(dump_header_size, h, "the header"); !r) {
      if (offset_ == 0 || h.size() < dump_magic.size() || std::string_view(h).substr(0, 8) != dump_magic)
        return keel::error(errc::invalid_argument, name_ + " is not a keel dump (too short)");
      return r;
    }
    if (std::string_view(h).substr(0, 8) != dump_magic) {
      return keel::error(errc::invalid_argument, name_ + " is not a keel dump (it does not start with KEELDUMP)");
    }
    std::uint32_t version = detail::get_u32(h.data() + 8);
    if (detail::get_u32(h.data() + 12) != detail::crc32c(std::string_view(h).substr(0, 12))) {
      return damaged(0, "the header checksum does not match");
    }
    if (version < dump_version_flat || version > dump_version) {
      return keel::error(errc::not_supported, dump_name_ + " has format version " + std::to_string(version) +
                                                  "; this keel reads versions 1 to " + std::to_string(dump_version));
    }
    info_.version = version;
    if (version != dump_version_flat) {
      if (auto t = read_keyspace_table(); !t) return t;
    }
    return {};
  }

  // Moves to the next record: true (key()/value() valid until the next call),
  // false at the verified end of the file, or an error.
  result<bool> next() {
    if (done_) return false;
    while (pos_ >= block_.size()) {
      if (remaining_in_block_ != 0) {
        return damaged(block_offset_, "the block holds fewer records than its header says");
      }
      auto more = read_block();
      if (!more) return std::move(more).error();
      if (!*more) return false;
    }
    std::uint64_t klen = 0, vlen = 0;
    std::string_view b(block_);
    if (remaining_in_block_ == 0) return damaged(block_offset_, "the block holds more records than its header says");
    deadline_.reset();
    if (info_.version != dump_version_flat) {
      std::uint64_t index = 0;
      if (!detail::get_varint(b, pos_, index)) return damaged(block_offset_, "bad record");
      if (info_.version == dump_version_deadlines) {
        const bool has_deadline = (index & 1) != 0;
        index >>= 1;
        if (has_deadline) {
          if (b.size() - pos_ < 8) return damaged(block_offset_, "bad record");
          deadline_ = static_cast<deadline_ms>(detail::get_u64(b.data() + pos_));
          pos_ += 8;
          ++deadlines_;
        }
      }
      if (index >= info_.keyspaces.size()) {
        return damaged(block_offset_, "a record names keyspace #" + std::to_string(index) + "; the table has " +
                                          std::to_string(info_.keyspaces.size()));
      }
      index_ = static_cast<std::size_t>(index);
    }
    if (!detail::get_varint(b, pos_, klen) || klen > b.size() - pos_) return damaged(block_offset_, "bad record");
    key_ = b.substr(pos_, klen);
    pos_ += klen;
    if (!detail::get_varint(b, pos_, vlen) || vlen > b.size() - pos_) return damaged(block_offset_, "bad record");
    value_ = b.substr(pos_, vlen);
    pos_ += vlen;
    --remaining_in_block_;
    ++records_;
    payload_ += klen + vlen;
    return true;
  }

  std::string_view key() const noexcept { return key_; }
  std::string_view value() const noexcept { return value_; }
  // The current record's deadline (ms since the Unix epoch; version 3),
  // nullopt for a permanent key.
  std::optional<deadline_ms> deadline() const noexcept { return deadline_; }
  // The current record's keyspace ("" in a version-1 dump), and its index in keyspaces().
  std::string_view keyspace() const noexcept { return info_.keyspaces[index_]; }
  std::size_t keyspace_index() const noexcept { return index_; }
  // The keyspaces the dump declares, sorted ({""} for version 1); known after open().
  const std::vector<std::string>& keyspaces() const noexcept { return info_.keyspaces; }
  // Bytes of the file read so far, and its size (0 when not a regular file).
  std::uint64_t offset() const noexcept { return offset_; }
  std::uint64_t file_size() const noexcept { return file_size_; }
  std::uint64_t records_read() const noexcept { return records_; }
  // Complete once next() has returned false.
  const dump_info& info() const noexcept { return info_; }

 private:
  keel::error damaged(std::uint64_t at, const std::string& what) const {
    return keel::error(errc::corruption, dump_name_ + " is damaged at byte " + std::to_string(at) + ": " + what +
                                             "; nothing was imported from it");
  }
  // `ends_at`: where the file ends (its size; offset_ after a short read).
  keel::error truncated(const std::string& what, std::uint64_t ends_at) const {
    return keel::error(errc::corruption, dump_name_ + " is truncated (it ends at byte " + std::to_string(ends_at) +
                                             ", inside " + what +
                                             "): it was not completely written; nothing was imported from it");
  }
  result<void> read_exact(std::size_t n, std::string& out, const std::string& what) {
    out.resize(n);
    std::size_t got = 0;
    while (got < n) {
      std::size_t r = 0;
      if (auto e = file_.read_some(out.data() + got, n - got, r)) {
        return detail::os_error(e, "cannot read " + dump_name_);
      }
      if (r == 0) {
        out.resize(got);
        offset_ += got;
        return truncated(what, offset_);
      }
      got += r;
    }
    crc_ = detail::crc32c_extend(crc_, out.data(), n);
    offset_ += n;
    return {};
  }
  // A version-2 dump's keyspace table, right after the header: "KSP2",
  // count, size, CRC32C, then count names (varint length, bytes), strictly
  // ascending, each at most 255 bytes.
  result<void> read_keyspace_table() {
    const std::uint64_t at = offset_;
    std::string h;
    if (auto r = read_exact(dump_block_header_size, h, "the keyspace table"); !r) return r;
    if (std::string_view(h).substr(0, 4) != dump_keyspaces_tag) return damaged(at, "expected the keyspace table");
    std::uint32_t count = detail::get_u32(h.data() + 4);
    std::uint32_t size = detail::get_u32(h.data() + 8);
    std::uint32_t crc = detail::get_u32(h.data() + 12);
    if (file_size_ && (offset_ > file_size_ || size > file_size_ - offset_)) {
      return truncated("the keyspace table", file_size_);
    }
    if (count == 0 || count > size || size > count * 257ull) return damaged(at, "bad keyspace table header");
    std::string table;
    if (auto r = read_exact(size, table, "the keyspace table"); !r) return r;
    if (detail::crc32c(table) != crc) return damaged(at, "the keyspace table checksum does not match");
    std::vector<std::string> names;
    std::size_t pos = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
      std::uint64_t n = 0;
      if (!detail::get_varint(table, pos, n) || n > 255 || n > table.size() - pos) {
        return damaged(at, "bad keyspace name in the table");
      }
      names.emplace_back(table, pos, n);
      pos += n;
      if (i > 0 && !(names[i - 1] < names[i])) return damaged(at, "the keyspace table is not sorted");
    }
    if (pos != table.size()) return damaged(at, "bytes after the keyspace table's names");
    info_.keyspaces = std::move(names);
    return {};
  }
  // Reads the next block; false after a verified trailer.
  result<bool> read_block() {
    std::string h;
    block_offset_ = offset_;
    std::uint32_t crc_before = crc_;
    if (auto r = read_exact(4, h, "a block header"); !r) return r.error();
    if (h == dump_end_tag) return read_trailer(crc_before);
    if (h != dump_block_tag) return damaged(block_offset_, "expected a block or the end marker");
    std::string rest;
    if (auto r = read_exact(dump_block_header_size - 4, rest, "a block header"); !r) return r.error();
    std::uint32_t count = detail::get_u32(rest.data());
    std::uint32_t size = detail::get_u32(rest.data() + 4);
    std::uint32_t crc = detail::get_u32(rest.data() + 8);
    if (file_size_ && (offset_ > file_size_ || size > file_size_ - offset_)) {
      return truncated("the block that starts at byte " + std::to_string(block_offset_) + " and ends at byte " +
                           std::to_string(offset_ + size),
                       file_size_);
    }
    if (count == 0 || count > size) return damaged(block_offset_, "bad block header");
    if (auto r = read_exact(size, block_, "a block"); !r) return r.error();
    if (detail::crc32c(block_) != crc) return damaged(block_offset_, "the block checksum does not match");
    pos_ = 0;
    remaining_in_block_ = count;
    return true;
  }
  result<bool> read_trailer(std::uint32_t) {
    std::string t;
    if (auto r = read_exact(dump_trailer_size - 4 - 4, t, "the trailer"); !r) return r.error();
    std::uint32_t expected = crc_;  // everything up to the trailer's CRC field
    std::string c;
    if (auto r = read_exact(4, c, "the trailer"); !r) return r.error();
    std::uint64_t count = detail::get_u64(t.data());
    std::uint64_t bytes = detail::get_u64(t.data() + 8);
    std::uint32_t flags = detail::get_u32(t.data() + 16);
    if (detail::get_u32(c.data()) != expected) {
      return damaged(block_offset_, "the whole-file checksum does not match");
    }
    if (count != records_ || bytes != payload_) {
      return damaged(block_offset_, "the trailer counts " + std::to_string(count) + " records, the file holds " +
                                        std::to_string(records_));
    }
    char extra;
    std::size_t r = 0;
    if (auto e = file_.read_some(&extra, 1, r)) {
      return detail::os_error(e, "cannot read " + dump_name_);
    }
    if (r != 0) return damaged(offset_, "unexpected bytes after the end marker");
    info_.records = count;
    info_.payload_bytes = bytes;
    info_.file_bytes = offset_;
    info_.sorted = (flags & dump_flag_sorted) != 0;
    info_.deadlines = deadlines_;
    done_ = true;
    return false;
  }

  detail::file file_;
  std::filesystem::path path_;
  std::string name_, dump_name_;  // "'PATH'" and "dump 'PATH'", or the source_name given to open()
  std::uint64_t file_size_ = 0, offset_ = 0, block_offset_ = 0;
  std::uint32_t crc_ = 0;
  std::string block_;
  std::size_t pos_ = 0;
  std::uint32_t remaining_in_block_ = 0;
  std::string_view key_, value_;
  std::size_t index_ = 0;  // the current record's keyspace, in info_.keyspaces
  std::optional<deadline_ms> deadline_;  // the current record's
  std::uint64_t records_ = 0, payload_ = 0, deadlines_ = 0;
  dump_info info_;
  bool done_ = false;
};

// Called for every record of a dump (its index from 0, key and value) in an
// import's verification pass; an error refuses the import.
using dump_record_check = std::function<std::optional<keel::error>(std::uint64_t, std::string_view, std::string_view)>;

namespace detail {

// Calls progress at most every `every` records and at the end.
struct progress_throttle {
  const progress_fn& fn;
  std::uint64_t every = 4096;
  void tick(const progress_info& p, bool force = false) const {
    if (fn && (force || p.records % every == 0)) fn(p);
  }
};

// verify_dump(), calling `check` (when set) for every record: its error stops
// the pass and is returned.
inline result<dump_info> verify_dump_records(const std::filesystem::path& path, const progress_fn& progress,
                                             std::string_view source_name, const dump_record_check& check) {
  dump_reader r;
  if (auto o = r.open(path, source_name); !o) return o.error();
  progress_info p;
  p.total_bytes = r.file_size();
  progress_throttle t{progress};
  for (;;) {
    auto more = r.next();
    if (!more) return std::move(more).error();
    if (!*more) break;
    if (check) {
      if (auto bad = check(r.records_read() - 1, r.key(), r.value())) return std::move(*bad);
    }
    p.records = r.records_read();
    p.bytes = r.offset();
    t.tick(p);
  }
  p.bytes = r.offset();
  t.tick(p, true);
  return r.info();
}

}  // namespace detail

// Checks a dump from end to end without importing it: every checksum, the
// record count, that nothing is missing or extra. Constant memory.
// `source_name`: what messages call the file (dump_reader::open()).
inline result<dump_info> verify_dump(const std::filesystem::path& path, const progress_fn& progress = {},
                                     std::string_view source_name = {}) {
  return detail::verify_dump_records(path, progress, source_name, {});
}

// Writes every entry of `store` in `range` to an open writer and finishes it
// (to stdout: writer.open_fd(1)). Every keyspace (store.keyspaces()): a
// store with keyspaces other than "" gives a version-2 dump (the range
// applies in each keyspace), read through one snapshot; a store with only ""
// (or a snapshot, or a backend without keyspaces) a version-1 dump, as
// before keyspaces. `store` is taken by non-const reference to open
// keyspace handles (nothing is created: the names are listed first).
// Expiry (issue 29): each record carries its key's deadline, and keys
// expired at the time of the read are not written; that makes a version-3
// dump, but only when a keyspace read may hold deadlines (memory: the store
// has held one since it was opened; RocksDB: the keyspace has had a ttl,
// docs/expiry.md): a store that never used ttl gives the dump it gave before.
template <class Store>
result<dump_info> export_to(Store& store, dump_writer& w, const key_range& range = key_range::all(),
                            const progress_fn& progress = {}) {
  progress_info p;
  detail::progress_throttle t{progress};
  auto walked = detail::walk_keyspaces(
      store, range,
      [&](const std::vector<std::string>& names, bool deadlines) -> result<void> {
        if (auto r = w.set_keyspaces(names); !r) return r;
        if (deadlines) return w.allow_deadlines();
        return {};
      },
      [&](std::string_view ks, std::string_view key, std::string_view value,
          std::optional<deadline_ms> deadline) -> result<void> {
        if (auto r = w.add(keyspace_name(ks), key, value, deadline); !r) return r;
        p.records = w.records();
        p.bytes = w.payload_bytes();
        t.tick(p);
        return {};
      });
  if (!walked) return walked.error();
  auto info = w.finish();
  t.tick(p, true);
  return info;
}

// Writes every entry of `store` in `range` (a consistent view: one scan, or
// one snapshot over every keyspace) to a dump at `path` (atomically:
// temporary file, fsync, rename, fsync of the directory). Works with any
// keel store (basic_store, basic_any_store, a snapshot: its default
// keyspace).
template <class Store>
result<dump_info> export_dump(Store& store, const std::filesystem::path& path,
                              const key_range& range = key_range::all(), const progress_fn& progress = {}) {
  dump_writer w;
  if (auto o = w.open(path); !o) return o.error();
  return export_to(store, w, range, progress);
}

struct import_options {
  // What messages call the dump ("standard input" for a copy of stdin);
  // empty: its path, quoted.
  std::string source_name;
  // Called for every record in the verification pass, before anything is
  // written: an error it returns refuses the import (nothing was written) and
  // is returned as it is. For a store that refuses records a dump may hold
  // (etcd: a record over max_request_bytes). Not called with skip_verify.
  dump_record_check check_record{};
  // Bytes of keys and values per write_batch in the import pass.
  std::size_t batch_bytes = 4 << 20;
  // Records per write_batch in the import pass; 0: no limit. For a store
  // whose batches are capped in operations (etcd: etcd_options::max_txn_ops).
  std::size_t batch_records = 0;
  // Skip the verification pass (the file was just verified). Not recommended:
  // a damaged file is then detected only part way through.
  bool skip_verify = false;
  progress_fn progress{};
};

// Imports a dump into `store` (puts; existing keys are overwritten, other
// keys are kept), every record into its keyspace: the dump's keyspaces are
// created first (a version-1 dump: everything into ""); a destination
// without keyspaces refuses a dump naming any (errc::not_supported, nothing
// written). Two streaming passes: verify_dump() first, so a truncated
// or damaged file is refused before anything is written; then the records in
// write_batches of import_options::batch_bytes. If the file changes between
// the passes, the second pass reports it, but the batches already written
// stay: do not modify a dump while it is imported.
// Deadlines (version 3): a record with one is put with a ttl of its deadline
// minus the destination's clock (detail::record_batcher: the deadline stays
// absolute to within a batch's write); one whose deadline has passed is
// skipped and counted (dump_info::expired_skipped). A destination without
// expiry given a dump that holds deadlines: errc::not_supported naming their
// number, before anything is written.
template <class Store>
result<dump_info> import_dump_batches(Store& store, const std::filesystem::path& path,
                                      const import_options& opts = {}) {
  dump_info verified;
  if (!opts.skip_verify) {
    auto v = detail::verify_dump_records(path, {}, opts.source_name, opts.check_record);
    if (!v) return std::move(v).error();
    verified = *v;
  }
  dump_reader r;
  if (auto o = r.open(path, opts.source_name); !o) return o.error();
  if (r.info().version == dump_version_deadlines && !detail::takes_ttl(store)) {
    if (opts.skip_verify) {  // count the deadlines first
      auto v = detail::verify_dump_records(path, {}, opts.source_name, {});
      if (!v) return std::move(v).error();
      verified = *v;
    }
    if (verified.deadlines != 0) {
      return keel::error(errc::not_supported,
                         "the dump holds " + std::to_string(verified.deadlines) +
                             " records with a deadline (ttl), and the destination has no expiry; nothing was written");
    }
  }
  if (auto c = detail::create_keyspaces(store, r.keyspaces(), "the dump"); !c) return c.error();
  progress_info p;
  p.total_records = verified.records;
  p.total_bytes = r.file_size();
  detail::progress_throttle t{opts.progress};
  detail::record_batcher<Store> batches(store, opts.batch_bytes, opts.batch_records, "the dump");
  for (;;) {
    auto more = r.next();
    if (!more) return std::move(more).error();
    if (!*more) break;
    if (auto w = batches.add(r.keyspace(), r.key(), r.value(), r.deadline()); !w) return w.error();
    p.records = r.records_read();
    p.bytes = r.offset();
    t.tick(p);
  }
  if (auto w = batches.flush(); !w) return w.error();
  p.bytes = r.offset();
  t.tick(p, true);
  dump_info info = r.info();
  info.expired_skipped = batches.expired_skipped();
  return info;
}

// import_dump_batches() for any store; <keel/dump_rocksdb.hpp> adds the
// SST-file fast path for RocksDB stores.
template <class Store>
result<dump_info> import_dump(Store& store, const std::filesystem::path& path, const import_options& opts = {}) {
  return import_dump_batches(store, path, opts);
}

}  // namespace keel
